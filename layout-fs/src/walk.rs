//! Listings of the layout's directories: sorted, empty where a directory
//! does not exist yet, and the repository tree walked as registry:2 walks
//! it.

use std::fs;
use std::io;
use std::path::Path;

/// The names of the entries of `dir`, sorted; empty if it does not exist.
/// Names that are not UTF-8 are nobody's (no valid name, tag or digest is
/// one) and left out.
pub fn sorted_entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                if let Ok(name) = entry?.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    names.sort();
    Ok(names)
}

/// Whether `dir` is a repository: it has manifests or linked blobs (an
/// upload alone does not make one, as in registry:2).
pub fn is_repository(dir: &Path) -> bool {
    dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()
}

/// Every repository under `root` (the layout's `repositories/`), by name,
/// sorted (as strings: a walk alone would put `a/b` before `a-b`).
/// Directories starting with `_` are a repository's own data, never nested
/// repositories.
pub fn repositories(root: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    collect(root, "", &mut names)?;
    names.sort();
    Ok(names)
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    for name in sorted_entries(dir)? {
        if name.starts_with('_') {
            continue;
        }
        let path = dir.join(&name);
        if !path.is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if is_repository(&path) {
            out.push(full.clone());
        }
        collect(&path, &full, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_repositories_and_skips_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for made in [
            "b/_manifests",
            "a/_layers",
            "a/nested/_manifests",
            "a/_uploads/x/_manifests",
            "only-uploads/_uploads/id",
            "team/app/_manifests",
            "a-b/_manifests",
        ] {
            fs::create_dir_all(root.join(made)).unwrap();
        }
        fs::write(root.join("stray-file"), b"").unwrap();
        assert_eq!(
            repositories(root).unwrap(),
            ["a", "a-b", "a/nested", "b", "team/app"]
        );
        assert!(repositories(&root.join("absent")).unwrap().is_empty());
        assert_eq!(
            sorted_entries(&root.join("a")).unwrap(),
            ["_layers", "_uploads", "nested"]
        );
    }
}
