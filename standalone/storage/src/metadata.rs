//! Manifests, tags, referrers, blob links and the repository tree, in
//! registry:2's layout (`wharf_spec::layout`), as the native host's
//! filesystem backend (`host/src/storage/fs.rs`) keeps them, so either can
//! serve what the other wrote.
//!
//! Ordering, the host's: a manifest's bytes, `wharf-media-type`,
//! `wharf-subject` and referrer link are written before its revision
//! `link`, which makes it visible; a tag's index link before its
//! `current/link`. Deletes remove a manifest's tags before the revision,
//! and the referrer link after it. Without the host's per-repository lock
//! (instances share no memory), a tag written while its manifest is being
//! deleted can be left naming nothing; listings skip such tags, as they
//! skip those registry:2 leaves.

use crate::error::{At, Result, StoreError};
use crate::files::{
    self, read_link, read_optional, remove_tree, size_of, sorted_entries, write_atomic, write_link,
};
use crate::settings::Settings;
use std::path::PathBuf;
use wharf_layout_fs::{links, walk};
use wharf_spec::layout::Layout;
use wharf_spec::pages::{Page, page, page_kept};
use wharf_spec::{Digest, Hasher};

/// What deletes answer while the operator has not switched them on; the
/// native host's words.
pub const DELETES_DISABLED: &str = "deletes are disabled on this registry (storage.delete.enabled / REGISTRY_STORAGE_DELETE_ENABLED)";

/// The media type of a manifest stored without one and naming none.
const DEFAULT_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The registry's storage: a layout under the data directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub layout: Layout,
    delete_enabled: bool,
}

/// A manifest found in a repository: what `manifest` answers, the bytes
/// left on disk for a stream to read.
#[derive(Debug)]
pub struct FoundManifest {
    pub media_type: String,
    pub size: u64,
    pub data: PathBuf,
}

/// A manifest to store.
pub struct NewManifest<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub content: &'a [u8],
    pub subject: Option<&'a Digest>,
}

impl Store {
    pub fn new(settings: &Settings) -> Store {
        Store {
            layout: Layout::new(&settings.root),
            delete_enabled: settings.delete_enabled,
        }
    }

    pub fn tmp(&self) -> PathBuf {
        self.layout.tmp()
    }

    fn check_delete(&self) -> Result<()> {
        if self.delete_enabled {
            Ok(())
        } else {
            Err(StoreError::Unsupported(DELETES_DISABLED.into()))
        }
    }

    // Blobs.

    /// The size of a stored blob, or none.
    pub fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        size_of(&self.layout.blob_data(digest))
    }

    /// Whether `repository` links `digest` (pushed or mounted there).
    pub fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        Ok(read_link(&self.layout.layer_link(repository, digest))?.as_ref() == Some(digest))
    }

    /// The size of `digest` if `repository` may see it: linked there and
    /// stored.
    pub fn linked_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        if !self.blob_linked(repository, digest)? {
            return Ok(None);
        }
        self.stat_blob(digest)
    }

    /// Link a stored blob into `repository`; `NotFound` if it is not
    /// stored. Linking restarts the blob's grace period against garbage
    /// collection, as on the native host.
    pub fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        let data = self.layout.blob_data(digest);
        if size_of(&data)?.is_none() {
            return Err(StoreError::NotFound);
        }
        files::touch(&data)?;
        let link = self.layout.layer_link(repository, digest);
        if link.exists() {
            return Ok(());
        }
        write_link(&self.tmp(), &link, digest)
    }

    /// Make a blob unreachable from `repository`; false if it was not linked.
    pub fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let link = self.layout.layer_link(repository, digest);
        remove_tree(files::parent(&link)?)
    }

    // Manifests.

    /// The manifest `digest` of `repository`, or none.
    pub fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<FoundManifest>> {
        if read_link(&self.layout.revision_link(repository, digest))?.is_none() {
            return Ok(None);
        }
        let data = self.layout.blob_data(digest);
        let recorded = read_optional(&self.layout.revision_media_type(repository, digest))?;
        let (media_type, size) = match recorded {
            Some(t) => {
                let Some(size) = size_of(&data)? else {
                    return Ok(None);
                };
                (String::from_utf8_lossy(&t).into_owned(), size)
            }
            // Stored by registry:2: the type the manifest names itself.
            None => {
                let Some(content) = read_optional(&data)? else {
                    return Ok(None);
                };
                let media_type = wharf_spec::layout::embedded_media_type(&content)
                    .unwrap_or_else(|| DEFAULT_MANIFEST_TYPE.to_string());
                (media_type, content.len() as u64)
            }
        };
        Ok(Some(FoundManifest {
            media_type,
            size,
            data,
        }))
    }

    /// Store a manifest in `repository`, after checking that its bytes
    /// hash to its digest.
    pub fn put_manifest(&self, repository: &str, manifest: &NewManifest) -> Result<()> {
        let digest = manifest.digest;
        let mut hasher = Hasher::new(digest.algorithm());
        hasher.update(manifest.content);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(StoreError::DigestMismatch(actual));
        }
        let tmp = self.tmp();
        let data = self.layout.blob_data(digest);
        if !data.exists() {
            write_atomic(&tmp, &data, manifest.content)?;
        }
        write_atomic(
            &tmp,
            &self.layout.revision_media_type(repository, digest),
            manifest.media_type.as_bytes(),
        )?;
        if let Some(subject) = manifest.subject {
            write_link(
                &tmp,
                &self.layout.revision_subject(repository, digest),
                subject,
            )?;
            write_link(
                &tmp,
                &self.layout.referrer_link(repository, subject, digest),
                digest,
            )?;
        }
        // Last: the link is what makes the manifest visible.
        write_link(&tmp, &self.layout.revision_link(repository, digest), digest)
    }

    /// Remove a manifest, the tags pointing at it and its referrer entry;
    /// false if it was not there.
    pub fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let revision = self.layout.revision_dir(repository, digest);
        if !revision.join("link").exists() {
            return Ok(false);
        }
        let subject = read_link(&self.layout.revision_subject(repository, digest))?;
        // The revision goes first: a tag written after this sees it gone
        // and takes itself back (`set_tag`); one written before is found
        // here.
        let removed = remove_tree(&revision)?;
        for tag in sorted_entries(&self.layout.tags(repository))? {
            self.remove_tag_naming(repository, &tag, digest)?;
        }
        if let Some(subject) = subject {
            remove_tree(&self.layout.referrer_dir(repository, &subject, digest))?;
        }
        Ok(removed)
    }

    // Tags.

    /// What `tag` points at, or none.
    pub fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        read_link(&self.layout.tag_current(repository, tag))
    }

    /// Point `tag` at the manifest `digest`; `NotFound` unless the manifest
    /// is in `repository`.
    ///
    /// Instances take no lock, so a delete of the manifest may run at the
    /// same time. It removes the revision before it looks for the tags
    /// naming it, so looking at the revision again once the tag is written
    /// settles it: still there, and the delete (if any) will find this tag;
    /// gone, and the tag is taken back here. No tag outlives its manifest.
    pub fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let revision = self.layout.revision_link(repository, digest);
        if !revision.exists() {
            return Err(StoreError::NotFound);
        }
        let tmp = self.tmp();
        write_link(
            &tmp,
            &self.layout.tag_index(repository, tag, digest),
            digest,
        )?;
        write_link(&tmp, &self.layout.tag_current(repository, tag), digest)?;
        if !revision.exists() {
            self.remove_tag_naming(repository, tag, digest)?;
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Remove `tag` if it points at `digest`.
    fn remove_tag_naming(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        if read_link(&self.layout.tag_current(repository, tag))?.as_ref() == Some(digest) {
            remove_tree(&self.layout.tag_dir(repository, tag))?;
        }
        Ok(())
    }

    /// Remove a tag; false if it was not there.
    pub fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        self.check_delete()?;
        remove_tree(&self.layout.tag_dir(repository, tag))
    }

    /// Whether `tag` names a manifest present in `repository`. A tag that
    /// cannot be read counts as not resolving, so one bad file does not
    /// fail the listing.
    fn tag_resolves(&self, repository: &str, tag: &str) -> bool {
        match self.resolve_tag(repository, tag) {
            Ok(Some(digest)) => self.layout.revision_link(repository, &digest).exists(),
            _ => false,
        }
    }

    /// A page of the tags of `repository` that name a manifest still
    /// there; none if the repository does not exist.
    pub fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page>> {
        if !walk::is_repository(&self.layout.repository(repository)) {
            return Ok(None);
        }
        let names = sorted_entries(&self.layout.tags(repository))?;
        Ok(Some(page_kept(names, after, limit, |tag| {
            self.tag_resolves(repository, tag)
        })))
    }

    // Referrers.

    /// A page of the digests of the manifests of `repository` whose
    /// subject is `subject`.
    pub fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let referrers = links::referrers(&self.layout, repository, subject)
            .at(&self.layout.referrers(repository, subject))?;
        Ok(page(referrers, after, limit))
    }

    // The catalog.

    /// Every repository, sorted.
    pub fn all_repositories(&self) -> Result<Vec<String>> {
        let root = self.layout.repositories();
        walk::repositories(&root).at(&root)
    }

    /// A page of the repository names.
    pub fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page> {
        Ok(page(self.all_repositories()?, after, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;
    use wharf_spec::Algorithm;

    fn store(dir: &TestDir, delete_enabled: bool) -> Store {
        Store::new(&Settings {
            root: dir.path().to_path_buf(),
            delete_enabled,
        })
    }

    fn put(store: &Store, repo: &str, content: &[u8], subject: Option<&Digest>) -> Digest {
        let digest = Algorithm::Sha256.digest(content);
        store
            .put_manifest(
                repo,
                &NewManifest {
                    digest: &digest,
                    media_type: "application/vnd.oci.image.manifest.v1+json",
                    content,
                    subject,
                },
            )
            .unwrap();
        digest
    }

    #[test]
    fn a_tag_written_while_its_manifest_is_deleted_never_outlives_it() {
        let dir = TestDir::new();
        let s = store(&dir, true);
        for round in 0..200u32 {
            let content = format!("{{\"round\":{round}}}");
            let d = put(&s, "race/app", content.as_bytes(), None);
            let tag = format!("t{}", round % 4);
            std::thread::scope(|scope| {
                let tagging = scope.spawn(|| s.set_tag("race/app", &tag, &d));
                assert!(s.delete_manifest("race/app", &d).unwrap());
                match tagging.join().unwrap() {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => panic!("set_tag failed: {e:?}"),
                }
            });
            assert_ne!(
                s.resolve_tag("race/app", &tag).unwrap(),
                Some(d),
                "round {round}: the tag names a deleted manifest"
            );
        }
    }

    #[test]
    fn a_manifest_is_stored_in_registry2s_layout() {
        let dir = TestDir::new();
        let s = store(&dir, false);
        let subject = Algorithm::Sha256.digest(b"subject");
        let d = put(&s, "team/app", b"{}", Some(&subject));
        let v2 = dir.path().join("docker/registry/v2");
        let hex = d.hex();
        let read = |p: &str| std::fs::read_to_string(v2.join(p)).unwrap();
        assert_eq!(
            read(&format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
            "{}"
        );
        let rev = format!("repositories/team/app/_manifests/revisions/sha256/{hex}");
        assert_eq!(read(&format!("{rev}/link")), d.to_string());
        assert_eq!(
            read(&format!("{rev}/wharf-media-type")),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(read(&format!("{rev}/wharf-subject")), subject.to_string());
        assert_eq!(
            read(&format!(
                "repositories/team/app/_manifests/referrers/sha256/{}/sha256/{hex}/link",
                subject.hex()
            )),
            d.to_string()
        );
        let found = s.manifest("team/app", &d).unwrap().unwrap();
        assert_eq!(found.size, 2);
        assert!(s.manifest("team/other", &d).unwrap().is_none());
        let page = s.list_referrers("team/app", &subject, None, 10).unwrap();
        assert_eq!(page.entries, [d.to_string()]);
        assert!(
            std::fs::read_dir(v2.join("wharf-tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn a_manifest_that_is_not_its_digest_is_refused() {
        let dir = TestDir::new();
        let s = store(&dir, false);
        let wrong = Algorithm::Sha256.digest(b"other");
        let refused = s.put_manifest(
            "a",
            &NewManifest {
                digest: &wrong,
                media_type: "x",
                content: b"{}",
                subject: None,
            },
        );
        assert!(
            matches!(refused, Err(StoreError::DigestMismatch(d)) if d == Algorithm::Sha256.digest(b"{}"))
        );
        assert!(s.all_repositories().unwrap().is_empty());
    }

    #[test]
    fn registry2_manifests_take_their_embedded_media_type() {
        let dir = TestDir::new();
        let s = store(&dir, false);
        let content = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        let d = put(&s, "r", content, None);
        std::fs::remove_file(s.layout.revision_media_type("r", &d)).unwrap();
        let found = s.manifest("r", &d).unwrap().unwrap();
        assert_eq!(
            found.media_type,
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(found.size, content.len() as u64);
    }

    #[test]
    fn tags_list_only_what_resolves_and_deletes_take_them_along() {
        let dir = TestDir::new();
        let s = store(&dir, true);
        assert_eq!(s.list_tags("r", None, 10).unwrap(), None);
        let a = put(&s, "r", b"a", None);
        let b = put(&s, "r", b"b", None);
        for tag in ["1", "2"] {
            s.set_tag("r", tag, &a).unwrap();
        }
        s.set_tag("r", "3", &b).unwrap();
        let gone = Algorithm::Sha256.digest(b"gone");
        assert!(matches!(
            s.set_tag("r", "4", &gone),
            Err(StoreError::NotFound)
        ));
        write_link(&s.tmp(), &s.layout.tag_current("r", "0"), &gone).unwrap();
        let tags = s.list_tags("r", None, 2).unwrap().unwrap();
        assert_eq!(tags.entries, ["1", "2"]);
        assert!(tags.more);
        assert!(s.delete_manifest("r", &a).unwrap());
        assert!(!s.delete_manifest("r", &a).unwrap());
        assert_eq!(s.list_tags("r", None, 10).unwrap().unwrap().entries, ["3"]);
        assert!(s.delete_tag("r", "3").unwrap());
        assert!(!s.delete_tag("r", "3").unwrap());
        assert_eq!(s.resolve_tag("r", "3").unwrap(), None);
    }

    #[test]
    fn deletes_are_refused_unless_enabled() {
        let dir = TestDir::new();
        let s = store(&dir, false);
        let d = put(&s, "r", b"x", None);
        for refused in [
            s.delete_manifest("r", &d),
            s.delete_tag("r", "t"),
            s.unlink_blob("r", &d),
        ] {
            assert!(matches!(refused, Err(StoreError::Unsupported(m)) if m == DELETES_DISABLED));
        }
    }

    #[test]
    fn the_catalog_lists_repositories_with_content_only() {
        let dir = TestDir::new();
        let s = store(&dir, true);
        put(&s, "b/nested", b"1", None);
        let d = put(&s, "b", b"2", None);
        s.link_blob("a", &d).unwrap();
        std::fs::create_dir_all(s.layout.uploads("c")).unwrap();
        assert_eq!(s.all_repositories().unwrap(), ["a", "b", "b/nested"]);
        let p = s.list_repositories(Some("a"), 1).unwrap();
        assert_eq!(p.entries, ["b"]);
        assert!(p.more);
        assert!(s.blob_linked("a", &d).unwrap());
        assert_eq!(s.linked_size("a", &d).unwrap(), Some(1));
        assert_eq!(s.linked_size("c", &d).unwrap(), None);
        assert!(s.unlink_blob("a", &d).unwrap());
        assert!(!s.blob_linked("a", &d).unwrap());
        let absent = Algorithm::Sha256.digest(b"absent");
        assert!(matches!(
            s.link_blob("a", &absent),
            Err(StoreError::NotFound)
        ));
    }
}
