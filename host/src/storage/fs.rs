//! The filesystem backend: blobs, uploads and metadata under one root
//! directory, in registry:2's layout (see [`super::layout`]).
//!
//! Durability: a blob, manifest or link becomes visible only by a rename
//! after its bytes were fsynced, and the rename is fsynced in its directory
//! (as is every directory created on the way). A crash leaves at most
//! staging files in `wharf-tmp/` and upload sessions: [`FsStorage::open`]
//! removes the former and sessions that never got a data file; sessions
//! with data resume, and [`FsStorage::purge_uploads`] reclaims idle ones.
//!
//! Tags: the manifest and tag writes and the deletes of one repository never
//! interleave ([`RepositoryLocks`]). A tag is written only if its manifest
//! is present, checked under that lock, and a delete removes the manifest's
//! tags under it, so no tag is left naming a deleted manifest. Reads take no
//! lock; [`MetadataStore::list_tags`] skips a tag that names a manifest no
//! longer present (left by registry:2, or by a crash of an older Wharf).

use super::files::{self, read_optional, remove_tree, write_atomic};
use super::layout::Layout;
use super::listings::{Listings, RepositoryIndex, Shape, names_after};
use super::locks::RepositoryLocks;
use super::streams::FileRange;
use super::uploads::{Sessions, data_bytes, is_stillborn};
use super::{
    Backend, BlobStore, Manifest, MetadataStore, Page, Pins, Purged, Result, Source, StoreError,
    StoredBlob, StoredUpload, UploadSession, page, page_read,
};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use wharf_layout_fs::walk::{is_repository, repositories, sorted_entries};
use wharf_layout_fs::{links, parts};
use wharf_spec::references::references;
use wharf_spec::{Algorithm, Digest};

pub struct FsStorage {
    layout: Layout,
    sessions: Arc<Sessions>,
    /// Keeps online garbage collection from deleting what pushes use.
    pins: Arc<Pins>,
    delete_enabled: bool,
    locks: RepositoryLocks,
    /// The catalog, filled by the walk at start.
    repositories: Arc<RepositoryIndex>,
    /// Tags and referrers, as listed.
    listings: Listings,
    /// The walk at start, which runs beside serving.
    recovery: Arc<Recovery>,
}

/// Where the walk at start is: what waits for it (the catalog, opening an
/// upload session, listing sessions) blocks until it ends.
#[derive(Default)]
struct Recovery {
    /// `None` while it runs; whether it completed.
    ended: Mutex<Option<bool>>,
    changed: Condvar,
}

impl Recovery {
    fn end(&self, completed: bool) {
        *crate::sync::lock(&self.ended) = Some(completed);
        self.changed.notify_all();
    }

    /// Wait for the walk; whether it completed (if not, its error is in
    /// the log and the repository index is incomplete).
    fn wait(&self) -> bool {
        let mut ended = crate::sync::lock(&self.ended);
        loop {
            if let Some(completed) = *ended {
                return completed;
            }
            ended = self.changed.wait(ended).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What one walk of `repositories/` found.
#[derive(Default)]
struct Walked {
    repositories: Vec<String>,
    /// Every `_uploads/` directory, with its repository's name.
    uploads: Vec<(String, PathBuf)>,
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
        let pins = Arc::new(Pins::default());
        let storage = FsStorage {
            layout,
            sessions: Arc::new(Sessions::new(pins.clone())),
            pins,
            delete_enabled,
            locks: RepositoryLocks::default(),
            repositories: Arc::default(),
            listings: Listings::default(),
            recovery: Arc::default(),
        };
        storage.remove_staged()?;
        storage.start_recovery()?;
        Ok(storage)
    }

    /// Remove the staging files a crash can leave in `wharf-tmp/` (never
    /// visible under a real name). Runs before serving.
    fn remove_staged(&self) -> io::Result<()> {
        let mut staged = 0;
        for name in sorted_entries(&self.layout.tmp())? {
            let path = self.layout.tmp().join(name);
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => staged += 1,
                // Gone already: a session this process ended is removed on
                // a thread of its own, which may be at it too.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if staged > 0 {
            files::sync_dir(&self.layout.tmp())?;
            tracing::info!(
                staged,
                "recovered from an interrupted run: removed temporary files"
            );
        }
        Ok(())
    }

    /// Walk `repositories/` on a thread of its own, beside serving (it
    /// takes about 30 µs a repository): fill the repository index, give
    /// sessions the standalone component wrote as parts a data file so
    /// they resume here, and remove sessions a crash left before they got
    /// one. What needs the walk waits for it; everything else is served
    /// at once.
    fn start_recovery(&self) -> io::Result<()> {
        let (layout, index, recovery) = (
            self.layout.clone(),
            self.repositories.clone(),
            self.recovery.clone(),
        );
        // A session this process starts while the walk runs is not one a
        // crash left, however empty it still is. The start is read from the
        // filesystem's clock, which session directories are stamped by: it
        // lags the system clock by up to a tick, so a directory made just
        // after `SystemTime::now()` could look older than it.
        let started = filesystem_now(&self.layout.tmp())?;
        std::thread::Builder::new()
            .name("wharf-recovery".into())
            .spawn(move || {
                let took = std::time::Instant::now();
                match recover(&layout, &index, started) {
                    Ok(repositories) => {
                        tracing::debug!(
                            repositories,
                            ms = took.elapsed().as_millis() as u64,
                            "walked the repositories"
                        );
                        recovery.end(true);
                    }
                    Err(e) => {
                        tracing::error!(
                            "walking {} failed: {e}; the catalog is listed by walking it again for each page",
                            layout.repositories().display()
                        );
                        recovery.end(false);
                    }
                }
            })?;
        Ok(())
    }

    /// Every `_uploads/` directory with its repository's name (after the
    /// walk at start, which may fold sessions into ones that resume here).
    fn uploads_dirs(&self) -> io::Result<Vec<(String, PathBuf)>> {
        self.recovery.wait();
        Ok(walk(&self.layout)?.uploads)
    }

    /// Every upload session with its directory.
    fn upload_sessions(&self) -> io::Result<Vec<(StoredUpload, PathBuf)>> {
        let mut sessions = Vec::new();
        for (repository, uploads) in self.uploads_dirs()? {
            for id in sorted_entries(&uploads)? {
                let dir = uploads.join(&id);
                let bytes = match data_bytes(&dir) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let upload = StoredUpload {
                    repository: repository.clone(),
                    id,
                    bytes,
                };
                sessions.push((upload, dir));
            }
        }
        Ok(sessions)
    }

    fn check_delete(&self) -> Result<()> {
        if self.delete_enabled {
            Ok(())
        } else {
            Err(StoreError::Unsupported(
                "deletes are disabled on this registry (storage.delete.enabled / REGISTRY_STORAGE_DELETE_ENABLED)".into(),
            ))
        }
    }

    fn write_link(&self, path: &Path, digest: &Digest) -> Result<()> {
        write_atomic(&self.layout.tmp(), path, digest.to_string().as_bytes())?;
        Ok(())
    }

    fn read_link(&self, path: &Path) -> Result<Option<Digest>> {
        Ok(links::read_link(path)?)
    }

    /// Store a manifest naming `named`, under [`Pins::referencing`].
    fn write_manifest(
        &self,
        repository: &str,
        manifest: &Manifest,
        named: &[Digest],
    ) -> Result<()> {
        // A blob this push found in place but a collector removed since:
        // refuse, rather than store a manifest whose blobs are gone. (The
        // manifest's own bytes are in hand, and a subject may come later.)
        let needed = |d: &&Digest| *d != &manifest.digest && Some(*d) != manifest.subject.as_ref();
        if let Some(gone) = named
            .iter()
            .filter(needed)
            .find(|d| self.pins.swept(d) && matches!(self.stat(d), Ok(None)))
        {
            return Err(StoreError::Invalid(format!(
                "blob {gone} was garbage-collected while this push was in flight; push it again"
            )));
        }
        let data = self.layout.blob_data(&manifest.digest);
        if !data.exists() {
            write_atomic(&self.layout.tmp(), &data, &manifest.content)?;
        }
        // The revision's files, under the lock: a delete removing the
        // revision directory while they are renamed into it would fail
        // either request, or leave the revision half written.
        let _exclusive = self.locks.lock(repository);
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
            self.listings
                .forget(&self.layout.referrers(repository, subject));
        }
        // The link last: it is what makes the manifest visible.
        self.write_link(
            &self.layout.revision_link(repository, &manifest.digest),
            &manifest.digest,
        )?;
        self.repositories.add(repository);
        Ok(())
    }

    /// Whether `tag` names a manifest present in `repository`. A tag whose
    /// link cannot be read is reported and counted as not resolving, so one
    /// bad file does not fail the listing.
    fn tag_resolves(&self, repository: &str, tag: &str) -> bool {
        match self.read_link(&self.layout.tag_current(repository, tag)) {
            Ok(Some(digest)) => self.layout.revision_link(repository, &digest).exists(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(repository, tag, error = %e, "skipping a tag that cannot be read");
                false
            }
        }
    }

    fn repository_exists(&self, repository: &str) -> bool {
        is_repository(&self.layout.repository(repository))
    }
}

/// Every repository, and every `_uploads/` directory with its
/// repository's name (including those of repositories that hold
/// nothing else yet), in one walk of the tree. Repositories are found
/// as registry:2 finds them (`walk::repositories`): a directory with
/// `_manifests` or `_layers`, under directories not starting with `_`.
fn walk(layout: &Layout) -> io::Result<Walked> {
    fn walk(dir: &Path, prefix: &str, found: &mut Walked) -> io::Result<()> {
        let names = sorted_entries(dir)?;
        if !prefix.is_empty()
            && names.iter().any(|n| n == "_manifests" || n == "_layers")
            && is_repository(dir)
        {
            found.repositories.push(prefix.to_string());
        }
        for name in names {
            let path = dir.join(&name);
            if name == "_uploads" {
                found.uploads.push((prefix.to_string(), path));
            } else if !name.starts_with('_') && path.is_dir() {
                let repository = match prefix {
                    "" => name,
                    _ => format!("{prefix}/{name}"),
                };
                walk(&path, &repository, found)?;
            }
        }
        Ok(())
    }
    let mut found = Walked::default();
    walk(&layout.repositories(), "", &mut found)?;
    Ok(found)
}

/// The time the filesystem stamps a file made in `dir` now with.
fn filesystem_now(dir: &Path) -> io::Result<std::time::SystemTime> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!("clock-{}", uuid::Uuid::new_v4()));
    fs::write(&probe, b"")?;
    let now = fs::metadata(&probe).and_then(|m| m.modified());
    fs::remove_file(&probe)?;
    now
}

/// The walk at start ([`FsStorage::start_recovery`]); the number of
/// repositories found.
fn recover(
    layout: &Layout,
    index: &RepositoryIndex,
    started: std::time::SystemTime,
) -> io::Result<usize> {
    let walked = walk(layout)?;
    let repositories = walked.repositories.len();
    index.extend(walked.repositories);
    let (mut stillborn, mut folded) = (0, 0);
    for (_, uploads) in walked.uploads {
        for id in sorted_entries(&uploads)? {
            let dir = uploads.join(id);
            // A session the standalone component wrote as parts.
            let staging = layout.tmp().join(uuid::Uuid::new_v4().to_string());
            if parts::fold_into_data(&dir, &staging)? {
                folded += 1;
            }
            let before_start = fs::metadata(&dir)
                .and_then(|m| m.modified())
                .is_ok_and(|made| made < started);
            if before_start && is_stillborn(&dir) {
                remove_tree(&dir)?;
                stillborn += 1;
            }
        }
    }
    if stillborn > 0 {
        tracing::info!(
            stillborn,
            "recovered from an interrupted run: removed empty upload sessions"
        );
    }
    if folded > 0 {
        tracing::info!(
            folded,
            "upload sessions written as parts (by the standalone component) now resume here"
        );
    }
    Ok(repositories)
}

impl BlobStore for FsStorage {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.layout.blob_data(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<Box<dyn Source>> {
        let file = match File::open(self.layout.blob_data(digest)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let range = super::range_within(offset, length, file.metadata()?.len())?;
        Ok(Box::new(FileRange::new(
            file,
            range.start,
            range.end - range.start,
        )))
    }

    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        self.sessions.start(&self.layout, repository, algorithm)
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
        // A session written as parts gets its data file in the walk.
        self.recovery.wait();
        self.sessions.open(&self.layout, repository, id)
    }
}

impl MetadataStore for FsStorage {
    fn local_reads(&self) -> bool {
        true
    }

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
            None => wharf_spec::layout::embedded_media_type(&content)
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
            return Err(StoreError::DigestMismatch(actual));
        }
        let mut named: Vec<Digest> = references(&manifest.content).all().cloned().collect();
        named.push(manifest.digest.clone());
        self.pins
            .referencing(&named, || self.write_manifest(repository, manifest, &named))
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let _exclusive = self.locks.lock(repository);
        let revision = self.layout.revision_dir(repository, digest);
        if !revision.join("link").exists() {
            return Ok(false);
        }
        let tags = self.layout.tags(repository);
        for tag in sorted_entries(&tags)? {
            if self
                .read_link(&self.layout.tag_current(repository, &tag))?
                .as_ref()
                == Some(digest)
            {
                remove_tree(&self.layout.tag_dir(repository, &tag))?;
                self.listings.forget(&tags);
            }
        }
        let subject = self.read_link(&self.layout.revision_subject(repository, digest))?;
        let removed = remove_tree(&revision)?;
        if let Some(subject) = subject {
            remove_tree(&self.layout.referrer_dir(repository, &subject, digest))?;
            self.listings
                .forget(&self.layout.referrers(repository, &subject));
        }
        Ok(removed)
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        self.read_link(&self.layout.tag_current(repository, tag))
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        // Under the lock: a delete of the manifest either finished before
        // (and the check fails) or starts after (and removes this tag).
        let _exclusive = self.locks.lock(repository);
        if !self.layout.revision_link(repository, digest).exists() {
            return Err(StoreError::NotFound);
        }
        self.write_link(&self.layout.tag_index(repository, tag, digest), digest)?;
        self.write_link(&self.layout.tag_current(repository, tag), digest)?;
        self.listings.forget(&self.layout.tags(repository));
        Ok(())
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        self.check_delete()?;
        let _exclusive = self.locks.lock(repository);
        let removed = remove_tree(&self.layout.tag_dir(repository, tag))?;
        self.listings.forget(&self.layout.tags(repository));
        Ok(removed)
    }

    /// From the kept listing of the tags directory; each tag on the page
    /// is checked to resolve (a tag that does not is skipped and the next
    /// one takes its place).
    fn list_tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Option<Page>> {
        if !self.repository_exists(repository) {
            return Ok(None);
        }
        let dir = self.layout.tags(repository);
        let names = self
            .listings
            .get(&dir, Shape::Flat, || sorted_entries(&dir))?;
        let next = |after: Option<&str>, n| names_after(&names, after, n);
        Ok(Some(page_read(next, after, limit, |tag| {
            self.tag_resolves(repository, tag)
        })))
    }

    /// From the index; each repository on the page is checked to be there.
    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page> {
        if !self.recovery.wait() {
            let names = repositories(&self.layout.repositories())?;
            return Ok(page(names, after, limit));
        }
        let next = |after: Option<&str>, n| self.repositories.after(after, n);
        Ok(page_read(next, after, limit, |name| {
            self.repository_exists(name)
        }))
    }

    /// From the kept listing of the subject's referrers directory.
    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let dir = self.layout.referrers(repository, subject);
        let referrers = self.listings.get(&dir, Shape::Nested, || {
            links::referrers(&self.layout, repository, subject)
        })?;
        let next = |after: Option<&str>, n| names_after(&referrers, after, n);
        Ok(page_read(next, after, limit, |_| true))
    }

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.pins.referencing([digest], || {
            if self.stat(digest)?.is_none() {
                return Err(StoreError::NotFound);
            }
            // Linked now: a grace period against collection starts anew.
            files::touch(&self.layout.blob_data(digest))?;
            let link = self.layout.layer_link(repository, digest);
            if !link.exists() {
                self.write_link(&link, digest)?;
            }
            self.repositories.add(repository);
            Ok(())
        })
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

/// Digests stored as `<dir>/<alg>/<hex>` directories, sorted.
fn digests_under(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut digests = Vec::new();
    for algorithm in sorted_entries(dir)? {
        for hex in sorted_entries(&dir.join(&algorithm))? {
            if let Ok(d) = Digest::parse(&format!("{algorithm}:{hex}")) {
                digests.push(d);
            }
        }
    }
    Ok(digests)
}

impl Backend for FsStorage {
    /// Its repositories can be listed and a file written to and removed
    /// from its temporary directory.
    fn check_health(&self) -> io::Result<()> {
        let repositories = self.layout.repositories();
        fs::read_dir(&repositories).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot list {}: {e}", repositories.display()),
            )
        })?;
        let probe = self
            .layout
            .tmp()
            .join(format!("health-{}", uuid::Uuid::new_v4()));
        let written = fs::write(&probe, b"ok");
        let _ = fs::remove_file(&probe);
        written
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", probe.display())))
    }

    fn list_manifests(&self, repository: &str) -> Result<Vec<Digest>> {
        Ok(digests_under(&self.layout.revisions(repository))?)
    }

    fn list_linked_blobs(&self, repository: &str) -> Result<Vec<Digest>> {
        Ok(digests_under(&self.layout.layers(repository))?)
    }

    /// `blobs/<alg>/<xx>/<hex>/data`; a blob's modification time is its
    /// data file's, which uploads and links set to the present.
    fn list_blobs(&self) -> Result<Vec<StoredBlob>> {
        let blobs = self.layout.blobs();
        let mut found = Vec::new();
        for algorithm in sorted_entries(&blobs)? {
            for prefix in sorted_entries(&blobs.join(&algorithm))? {
                for hex in sorted_entries(&blobs.join(&algorithm).join(&prefix))? {
                    let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                        continue;
                    };
                    let dir = self.layout.blob_dir(&digest);
                    let meta = fs::metadata(dir.join("data")).or_else(|_| fs::metadata(&dir));
                    let (size, modified) = match meta {
                        Ok(m) if m.is_file() => (m.len(), m.modified().ok()),
                        Ok(m) => (0, m.modified().ok()),
                        // Removed meanwhile.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    };
                    found.push(StoredBlob {
                        digest,
                        size,
                        modified,
                    });
                }
            }
        }
        Ok(found)
    }

    fn list_uploads(&self) -> Result<Vec<StoredUpload>> {
        Ok(self
            .upload_sessions()?
            .into_iter()
            .map(|(upload, _)| upload)
            .collect())
    }

    fn sweep_blob(&self, digest: &Digest, linked_from: &[String]) -> Result<()> {
        remove_tree(&self.layout.blob_dir(digest))?;
        for repository in linked_from {
            let link = self.layout.layer_link(repository, digest);
            if let Some(dir) = link.parent() {
                remove_tree(dir)?;
            }
        }
        Ok(())
    }

    fn purge_uploads(&self, age: std::time::Duration, dry_run: bool) -> Result<Purged> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::UNIX_EPOCH);
        Ok(self
            .sessions
            .purge(self.upload_sessions()?, cutoff, dry_run)?)
    }

    fn pins(&self) -> &Pins {
        &self.pins
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_the_standalone_component_wrote_as_parts_resumes_here() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0b4f3e5c-3c1e-4a57-9d3e-5b2f6a1c9d70";
        let session = Layout::new(dir.path()).upload_dir("team/app", id);
        fs::create_dir_all(&session).unwrap();
        fs::write(session.join("wharf-algorithm"), "sha256").unwrap();
        fs::write(session.join("startedat"), "1700000000").unwrap();
        fs::write(session.join(parts::part_name(0)), b"hello ").unwrap();
        fs::write(session.join(parts::part_name(6)), b"world").unwrap();
        fs::write(session.join("wharf-writing-1f2e"), b"uncommitted").unwrap();

        let store = FsStorage::open(dir.path(), true).unwrap();
        let mut upload = store.open_upload("team/app", id).unwrap();
        assert_eq!(upload.offset(), 11);
        let mut sink = upload.writer().unwrap();
        super::super::conformance::write_all(&mut sink, b"!", 1).await;
        drop(sink);
        let digest = Algorithm::Sha256.digest(b"hello world!");
        assert_eq!(upload.finish(&digest).unwrap(), 12);
        let read = store.read(&digest, 0, None).unwrap();
        assert_eq!(
            super::super::conformance::read_all(read).await,
            b"hello world!"
        );
    }

    #[test]
    fn a_tag_is_never_set_to_a_manifest_deleted_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        let m = manifest(b"raced", None);
        store.put_manifest("team/app", &m).unwrap();
        std::thread::scope(|s| {
            // A delete in progress: it holds the repository's lock and has
            // removed the revision, not yet looked at the tags.
            let deleting = store.locks.lock("team/app");
            let tagging = s.spawn(|| store.set_tag("team/app", "latest", &m.digest));
            std::thread::sleep(std::time::Duration::from_millis(100));
            remove_tree(&store.layout.revision_dir("team/app", &m.digest)).unwrap();
            drop(deleting);
            assert!(matches!(tagging.join().unwrap(), Err(StoreError::NotFound)));
        });
        assert_eq!(store.resolve_tag("team/app", "latest").unwrap(), None);
        assert!(matches!(
            store.set_tag("team/app", "latest", &m.digest),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn tags_naming_a_missing_manifest_are_not_listed_and_pages_stay_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        let kept = manifest(b"kept", None);
        store.put_manifest("team/app", &kept).unwrap();
        for tag in ["a", "c", "e"] {
            store.set_tag("team/app", tag, &kept.digest).unwrap();
        }
        // Dangling tags as registry:2 or a crash can leave them: a current
        // link naming a revision this repository does not hold.
        let gone = Algorithm::Sha256.digest(b"gone");
        for tag in ["b", "d"] {
            store
                .write_link(&store.layout.tag_current("team/app", tag), &gone)
                .unwrap();
        }
        let list = |after, limit| store.list_tags("team/app", after, limit).unwrap().unwrap();
        let want = |entries: &[&str], more| Page {
            entries: entries.iter().map(|t| t.to_string()).collect(),
            more,
        };
        assert_eq!(list(None, 2), want(&["a", "c"], true));
        assert_eq!(list(Some("c"), 2), want(&["e"], false));
        assert_eq!(list(Some("a"), 2), want(&["c", "e"], false));
        assert_eq!(list(None, 10).entries, ["a", "c", "e"]);
    }

    /// Make every directory under `dir` look long unchanged, so that the
    /// kept listings trust their stamps.
    fn settle_tree(dir: &Path) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                settle_tree(&path);
            }
        }
        File::open(dir).unwrap().set_modified(old).unwrap();
    }

    #[test]
    fn the_catalog_is_walked_again_at_start_and_never_lists_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(b"listed", None);
        {
            let store = FsStorage::open(dir.path(), true).unwrap();
            for repo in ["b/app", "a", "c"] {
                store.put_manifest(repo, &m).unwrap();
            }
            // Made while serving: listed at once.
            assert_eq!(
                store.list_repositories(None, 10).unwrap().entries,
                ["a", "b/app", "c"]
            );
        }
        // As after kill -9: nothing of the index was stored, the walk at
        // start finds what the layout holds, including what another
        // process wrote meanwhile.
        let layout = Layout::new(dir.path());
        fs::create_dir_all(layout.layers("d/e")).unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        let list = |after, n| store.list_repositories(after, n).unwrap();
        assert_eq!(list(None, 10).entries, ["a", "b/app", "c", "d/e"]);
        // Removed behind the index's back: passed over, and the page is
        // still full.
        remove_tree(&layout.repository("b")).unwrap();
        assert_eq!(
            list(None, 2),
            Page {
                entries: vec!["a".into(), "c".into()],
                more: true
            }
        );
        assert_eq!(list(Some("a"), 10).entries, ["c", "d/e"]);
    }

    #[test]
    fn a_kept_tag_listing_follows_this_process_and_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        let m = manifest(b"tagged", None);
        store.put_manifest("team/app", &m).unwrap();
        for tag in ["v1", "v2"] {
            store.set_tag("team/app", tag, &m.digest).unwrap();
        }
        settle_tree(dir.path());
        let tags = || {
            store
                .list_tags("team/app", None, 10)
                .unwrap()
                .unwrap()
                .entries
        };
        assert_eq!(tags(), ["v1", "v2"]);
        // This process's own writes are listed at once.
        store.set_tag("team/app", "v3", &m.digest).unwrap();
        store.delete_tag("team/app", "v1").unwrap();
        assert_eq!(tags(), ["v2", "v3"]);
        // Another process's tag: the directory's stamp changed, so the
        // listing is read again.
        let other = FsStorage::open(dir.path(), true).unwrap();
        other.set_tag("team/app", "v4", &m.digest).unwrap();
        assert_eq!(tags(), ["v2", "v3", "v4"]);
        // Deleting the manifest takes its tags out of the listing.
        store.delete_manifest("team/app", &m.digest).unwrap();
        assert!(tags().is_empty());
    }
}
