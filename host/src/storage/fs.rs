//! The filesystem backend: blobs, uploads and metadata under one root
//! directory, in registry:2's layout (see [`super::layout`]).
//!
//! Durability: a blob, manifest or link becomes visible only by a rename
//! after its bytes were fsynced, and the rename is fsynced in its directory.

use super::files::{read_optional, remove_tree, write_atomic};
use super::layout::Layout;
use super::streams::FileRange;
use super::uploads::Sessions;
use super::{BlobStore, Manifest, MetadataStore, Page, Result, StorageError, UploadSession, page};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime_wasi::p2::DynInputStream;
use wharf_guest::{Algorithm, Digest};

pub struct FsStorage {
    layout: Layout,
    sessions: Arc<Sessions>,
    delete_enabled: bool,
}

impl FsStorage {
    /// Open (creating if needed) a storage root.
    pub fn open(rootdirectory: &Path, delete_enabled: bool) -> io::Result<FsStorage> {
        let layout = Layout::new(rootdirectory);
        fs::create_dir_all(layout.repositories()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create the data directory {}: {e} (set REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY to a writable directory)",
                    rootdirectory.display()
                ),
            )
        })?;
        fs::create_dir_all(layout.tmp())?;
        Ok(FsStorage {
            layout,
            sessions: Arc::default(),
            delete_enabled,
        })
    }

    fn check_delete(&self) -> Result<()> {
        if self.delete_enabled {
            Ok(())
        } else {
            Err(StorageError::Unsupported(
                "deletes are disabled on this registry (storage.delete.enabled / REGISTRY_STORAGE_DELETE_ENABLED)".into(),
            ))
        }
    }

    fn write_link(&self, path: &Path, digest: &Digest) -> Result<()> {
        write_atomic(&self.layout.tmp(), path, digest.to_string().as_bytes())?;
        Ok(())
    }

    fn read_link(&self, path: &Path) -> Result<Option<Digest>> {
        match read_optional(path)? {
            None => Ok(None),
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                Digest::parse(text.trim()).map(Some).map_err(|e| {
                    StorageError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt link {}: {e}", path.display()),
                    ))
                })
            }
        }
    }

    fn repository_exists(&self, repository: &str) -> bool {
        is_repository(&self.layout.repository(repository))
    }
}

fn is_repository(dir: &Path) -> bool {
    dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()
}

/// Names of the entries of `dir`, sorted; empty if it does not exist.
fn sorted_entries(dir: &Path) -> io::Result<Vec<String>> {
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

/// Every repository under `dir`, depth first; directories starting with `_`
/// are a repository's own data, never nested repositories.
fn collect_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    for name in sorted_entries(dir)? {
        if name.starts_with('_') {
            continue;
        }
        let path: PathBuf = dir.join(&name);
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
        collect_repositories(&path, &full, out)?;
    }
    Ok(())
}

/// The media type recorded inside a manifest, for manifests stored without
/// one (registry:2 data).
fn embedded_media_type(content: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(content).ok()?;
    value.get("mediaType")?.as_str().map(str::to_string)
}

impl BlobStore for FsStorage {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.layout.blob_data(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<DynInputStream> {
        let file = match File::open(self.layout.blob_data(digest)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        let end = match length {
            Some(len) => offset.checked_add(len),
            None => Some(size),
        };
        match end {
            Some(end) if offset <= size && end <= size => {
                Ok(Box::new(FileRange::new(file, offset, end - offset)))
            }
            _ => Err(StorageError::Invalid(format!(
                "range {offset}+{length:?} is outside the blob's {size} bytes"
            ))),
        }
    }

    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        self.sessions.start(&self.layout, repository, algorithm)
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
        self.sessions.open(&self.layout, repository, id)
    }
}

impl MetadataStore for FsStorage {
    fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>> {
        if self
            .read_link(&self.layout.revision_link(repository, digest))?
            .is_none()
        {
            return Ok(None);
        }
        let Some(content) = read_optional(&self.layout.blob_data(digest))? else {
            return Ok(None);
        };
        let media_type = match read_optional(&self.layout.revision_media_type(repository, digest))?
        {
            Some(t) => String::from_utf8_lossy(&t).into_owned(),
            None => embedded_media_type(&content)
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into()),
        };
        let subject = self.read_link(&self.layout.revision_subject(repository, digest))?;
        Ok(Some(Manifest {
            digest: digest.clone(),
            media_type,
            content,
            subject,
        }))
    }

    fn put_manifest(&self, repository: &str, manifest: &Manifest) -> Result<()> {
        let actual = manifest.digest.algorithm().digest(&manifest.content);
        if actual != manifest.digest {
            return Err(StorageError::DigestMismatch(actual));
        }
        let data = self.layout.blob_data(&manifest.digest);
        if !data.exists() {
            write_atomic(&self.layout.tmp(), &data, &manifest.content)?;
        }
        write_atomic(
            &self.layout.tmp(),
            &self
                .layout
                .revision_media_type(repository, &manifest.digest),
            manifest.media_type.as_bytes(),
        )?;
        if let Some(subject) = &manifest.subject {
            let digest = &manifest.digest;
            self.write_link(&self.layout.revision_subject(repository, digest), subject)?;
            self.write_link(
                &self.layout.referrer_link(repository, subject, digest),
                digest,
            )?;
        }
        // The link last: it is what makes the manifest visible.
        self.write_link(
            &self.layout.revision_link(repository, &manifest.digest),
            &manifest.digest,
        )
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let revision = self.layout.revision_dir(repository, digest);
        if !revision.join("link").exists() {
            return Ok(false);
        }
        for tag in sorted_entries(&self.layout.tags(repository))? {
            if self
                .read_link(&self.layout.tag_current(repository, &tag))?
                .as_ref()
                == Some(digest)
            {
                remove_tree(&self.layout.tag_dir(repository, &tag))?;
            }
        }
        let subject = self.read_link(&self.layout.revision_subject(repository, digest))?;
        let removed = remove_tree(&revision)?;
        if let Some(subject) = subject {
            remove_tree(&self.layout.referrer_dir(repository, &subject, digest))?;
        }
        Ok(removed)
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        self.read_link(&self.layout.tag_current(repository, tag))
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        if !self.layout.revision_link(repository, digest).exists() {
            return Err(StorageError::NotFound);
        }
        self.write_link(&self.layout.tag_index(repository, tag, digest), digest)?;
        self.write_link(&self.layout.tag_current(repository, tag), digest)
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        self.check_delete()?;
        Ok(remove_tree(&self.layout.tag_dir(repository, tag))?)
    }

    fn list_tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Option<Page>> {
        if !self.repository_exists(repository) {
            return Ok(None);
        }
        let tags = sorted_entries(&self.layout.tags(repository))?
            .into_iter()
            .filter(|t| self.layout.tag_current(repository, t).exists())
            .collect();
        Ok(Some(page(tags, after, limit)))
    }

    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page> {
        let mut names = Vec::new();
        collect_repositories(&self.layout.repositories(), "", &mut names)?;
        names.sort();
        Ok(page(names, after, limit))
    }

    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let dir = self.layout.referrers(repository, subject);
        let mut referrers = Vec::new();
        for algorithm in sorted_entries(&dir)? {
            for hex in sorted_entries(&dir.join(&algorithm))? {
                // Only canonical digests with a link: anything else is not ours.
                if let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}"))
                    && self
                        .read_link(&self.layout.referrer_link(repository, subject, &digest))?
                        .as_ref()
                        == Some(&digest)
                {
                    referrers.push(digest.to_string());
                }
            }
        }
        referrers.sort();
        Ok(page(referrers, after, limit))
    }

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        if self.stat(digest)?.is_none() {
            return Err(StorageError::NotFound);
        }
        let link = self.layout.layer_link(repository, digest);
        if link.exists() {
            return Ok(());
        }
        self.write_link(&link, digest)
    }

    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .read_link(&self.layout.layer_link(repository, digest))?
            .as_ref()
            == Some(digest))
    }

    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let link = self.layout.layer_link(repository, digest);
        let dir = link.parent().expect("a link has a directory");
        Ok(remove_tree(dir)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(content: &[u8], subject: Option<&Digest>) -> Manifest {
        Manifest {
            digest: Algorithm::Sha256.digest(content),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: content.to_vec(),
            subject: subject.cloned(),
        }
    }

    #[test]
    fn referrers_are_indexed_on_put_and_dropped_on_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        let subject = Algorithm::Sha512.digest(b"subject");
        let a = manifest(b"referrer a", Some(&subject));
        let b = manifest(b"referrer b", Some(&subject));
        let other = manifest(b"no subject", None);
        for m in [&a, &b, &other] {
            store.put_manifest("team/app", m).unwrap();
        }
        let mut want = vec![a.digest.to_string(), b.digest.to_string()];
        want.sort();
        let all = store
            .list_referrers("team/app", &subject, None, 10)
            .unwrap();
        assert_eq!(all.entries, want);
        assert!(!all.more);
        let first = store.list_referrers("team/app", &subject, None, 1).unwrap();
        assert_eq!((first.entries.as_slice(), first.more), (&want[..1], true));
        let rest = store
            .list_referrers("team/app", &subject, Some(&want[0]), 10)
            .unwrap();
        assert_eq!(rest.entries, &want[1..]);
        let stored = store.get_manifest("team/app", &a.digest).unwrap().unwrap();
        assert_eq!(stored.subject, Some(subject.clone()));

        assert!(store.delete_manifest("team/app", &a.digest).unwrap());
        let left = store
            .list_referrers("team/app", &subject, None, 10)
            .unwrap();
        assert_eq!(left.entries, [b.digest.to_string()]);
        let elsewhere = store.list_referrers("other", &subject, None, 10).unwrap();
        assert!(elsewhere.entries.is_empty());
    }
}
