//! registry:2's link files: a digest as text, saying what a repository
//! holds (a blob, a revision, a tag's target, a referrer).

use std::io;
use std::path::Path;
use wharf_spec::Digest;
use wharf_spec::layout::Layout;

/// The digest a link file names; `None` if there is no such file, an
/// `InvalidData` error naming the file if it holds no digest.
pub fn read_link(path: &Path) -> io::Result<Option<Digest>> {
    // A link is whole once it parses: one `read`, no second to find the end.
    let parses = |bytes: &[u8]| {
        std::str::from_utf8(bytes).is_ok_and(|text| Digest::parse(text.trim()).is_ok())
    };
    let Some(bytes) = crate::durable::read_until(path, parses)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    Digest::parse(text.trim()).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt link {}: {e}", path.display()),
        )
    })
}

/// The digests of the manifests of `repository` whose subject is
/// `subject`, sorted: each `<alg>/<hex>` under the subject's referrers
/// directory that is a canonical digest with a link naming it. Anything
/// else there is not Wharf's and is passed over.
pub fn referrers(layout: &Layout, repository: &str, subject: &Digest) -> io::Result<Vec<String>> {
    let dir = layout.referrers(repository, subject);
    let mut referrers = Vec::new();
    for algorithm in crate::walk::sorted_entries(&dir)? {
        for hex in crate::walk::sorted_entries(&dir.join(&algorithm))? {
            if let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}"))
                && read_link(&layout.referrer_link(repository, subject, &digest))?.as_ref()
                    == Some(&digest)
            {
                referrers.push(digest.to_string());
            }
        }
    }
    referrers.sort();
    Ok(referrers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use wharf_spec::Algorithm;

    #[test]
    fn a_link_names_a_digest_or_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let d = Algorithm::Sha256.digest(b"x");
        let path = dir.path().join("link");
        assert_eq!(read_link(&path).unwrap(), None);
        fs::write(&path, format!("{d}\n")).unwrap();
        assert_eq!(read_link(&path).unwrap(), Some(d));
        fs::write(&path, "not a digest").unwrap();
        let e = read_link(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("corrupt link"), "{e}");
    }

    #[test]
    fn referrers_are_the_linked_canonical_digests() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let subject = Algorithm::Sha256.digest(b"subject");
        let (a, b) = (
            Algorithm::Sha256.digest(b"a"),
            Algorithm::Sha256.digest(b"b"),
        );
        for (d, names) in [(&a, &a), (&b, &a)] {
            let link = layout.referrer_link("r", &subject, d);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            fs::write(link, names.to_string()).unwrap();
        }
        let stray = layout.referrers("r", &subject).join("sha256/NOT-HEX");
        fs::create_dir_all(stray).unwrap();
        // b's link names another digest: not a referrer.
        assert_eq!(referrers(&layout, "r", &subject).unwrap(), [a.to_string()]);
        assert!(referrers(&layout, "none", &subject).unwrap().is_empty());
    }
}
