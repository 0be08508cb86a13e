//! The S3 backend: blobs, uploads and metadata as objects in a bucket, in
//! registry:2's layout (the keys are [`Layout`]'s paths under
//! `rootdirectory`), so a bucket Distribution's S3 driver wrote is served
//! by Wharf and back, and several Wharf hosts can serve one bucket.
//!
//! The client is Apache Arrow's `object_store` (SigV4 signing, multipart
//! parts, retries with backoff). Its calls are async; the storage traits
//! are blocking and run on tokio's blocking pool, so each call is a future
//! spawned on this backend's own small runtime and waited for there.
//! Sources and sinks are polled from the serving runtime and talk to tasks
//! on this one through channels and join handles.
//!
//! Consistency: S3 (and Garage) give read-after-write consistency for
//! objects; a manifest is visible once its revision link is written, after
//! its bytes, as on disk. Repository writes are made exclusive per process
//! (striped locks, as on disk); hosts sharing a bucket do not lock each
//! other, as registry:2's do not. Upload sessions keep their state in the
//! bucket (`uploads.rs`), so one started on one host is continued and
//! finished on another.

mod catalog;
pub mod config;
mod levels;
mod source;
mod uploads;

use super::layout::Layout;
use super::{
    Backend, BlobStore, Manifest, MetadataStore, Page, Pins, Purged, Result, Source, StoreError,
    StoredBlob, StoredUpload, UploadSession, page, page_read,
};
use bytes::Bytes;
use config::S3;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, PutPayload, RetryConfig};
use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uploads::Sessions;
use wharf_spec::references::references;
use wharf_spec::{Algorithm, Digest};

/// How long one S3 call may take before it counts as failed (and is
/// retried, within the retry budget).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a blob GET's signed URL is good for (registry:2's 20 minutes).
const REDIRECT_TTL: Duration = Duration::from_secs(20 * 60);

pub struct S3Storage {
    inner: Arc<Inner>,
    catalog: Arc<catalog::Catalog>,
    sessions: Arc<Sessions>,
    pins: Arc<Pins>,
    delete_enabled: bool,
    /// Whether blob GETs go to signed URLs of the bucket.
    redirect: bool,
    locks: super::locks::RepositoryLocks,
    runtime: Runtime,
}

/// What every call needs: the client and where the keys are.
struct Inner {
    store: AmazonS3,
    layout: Layout,
    /// `s3://bucket/prefix`, for messages.
    name: String,
    chunk_size: usize,
}

/// The backend's runtime, shut down without waiting when the backend goes.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Storage {
    /// Connect to the bucket `config` names and check that it answers;
    /// with `redirect`, blob GETs are sent to signed URLs of the bucket.
    pub fn open(config: &S3, delete_enabled: bool, redirect: bool) -> io::Result<S3Storage> {
        let name = format!(
            "s3://{}/{}",
            config.bucket,
            config.rootdirectory.trim_matches('/')
        );
        let mut builder = AmazonS3Builder::from_env()
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.forcepathstyle)
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(CALL_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_invalid_certificates(config.skipverify),
            );
        if let Some(endpoint) = &config.regionendpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_allow_http(endpoint.starts_with("http://") || !config.secure);
        }
        if let (Some(key), Some(secret)) = (&config.accesskey, &config.secretkey) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(token) = &config.sessiontoken {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(|e| {
            io::Error::other(format!(
                "cannot use {name}: {e} (check storage.s3 / REGISTRY_STORAGE_S3_*)"
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wharf-s3")
            .enable_all()
            .build()?;
        let prefix = config.rootdirectory.trim_matches('/');
        let storage = S3Storage {
            inner: Arc::new(Inner {
                store,
                layout: Layout::new(std::path::Path::new(prefix)),
                name,
                chunk_size: config.chunk_size() as usize,
            }),
            catalog: Arc::default(),
            sessions: Arc::default(),
            pins: Arc::default(),
            delete_enabled,
            redirect,
            locks: super::locks::RepositoryLocks::default(),
            runtime: Runtime(Some(runtime)),
        };
        storage.check_health().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (is the bucket there, and the endpoint and keys right?)"),
            )
        })?;
        storage.start_indexing();
        Ok(storage)
    }

    /// Index the catalog in the background if the bucket's is not
    /// complete ([`catalog`]); pages come from a walk meanwhile.
    fn start_indexing(&self) {
        let (catalog, s3) = (self.catalog.clone(), self.inner.clone());
        self.handle().spawn(async move {
            match catalog.build(&s3).await {
                Ok(0) => tracing::debug!(bucket = %s3.name, "catalog indexed"),
                Ok(written) => tracing::info!(
                    bucket = %s3.name,
                    written,
                    "catalog indexed: entries written for repositories that had none"
                ),
                Err(e) => tracing::warn!(
                    bucket = %s3.name,
                    error = %e,
                    "cannot index the catalog; its pages walk the bucket until a restart indexes it"
                ),
            }
        });
    }

    /// Run `future` on the backend's runtime and wait for it. Called from
    /// blocking threads (never from the serving runtime's own).
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        run_on(self.handle(), future)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .0
            .as_ref()
            .expect("the runtime lives as long as the backend")
            .handle()
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

    /// Run `work` with the backend's state, on its runtime.
    fn with<T: Send + 'static, F: Future<Output = Result<T>> + Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<T> {
        self.run(work(self.inner.clone()))
    }

    /// A page read a chunk at a time ([`page_read`]): `chunk(s3, after, n)`
    /// lists up to `n` names after `after`, in order (fewer only at the
    /// end), each with whether it is there, checked many at a time.
    fn page_checked<F: Future<Output = Result<Vec<(String, bool)>>> + Send + 'static>(
        &self,
        after: Option<&str>,
        limit: u32,
        chunk: impl Fn(Arc<Inner>, Option<String>, usize) -> F,
    ) -> Result<Page> {
        let there = RefCell::new(HashSet::new());
        let failed = RefCell::new(None);
        let next = |after: Option<&str>, n| {
            let after = after.map(str::to_string);
            match self.with(|s3| chunk(s3, after, n)) {
                Ok(names) => {
                    let listed = names.iter().map(|(name, _)| name.clone()).collect();
                    there
                        .borrow_mut()
                        .extend(names.into_iter().filter(|(_, t)| *t).map(|(name, _)| name));
                    listed
                }
                Err(e) => {
                    *failed.borrow_mut() = Some(e);
                    Vec::new()
                }
            }
        };
        let page = page_read(next, after, limit, |name| there.borrow().contains(name));
        match failed.into_inner() {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }
}

/// Wait on a blocking thread for `future`, run on `handle`'s runtime.
fn run_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    // Unconstrained: waited for on a thread that is inside a tokio task
    // (a test's body, say), a join handle polled past that task's budget
    // would answer "not yet" at once, every time, and this would spin.
    match futures::executor::block_on(tokio::task::unconstrained(handle.spawn(future))) {
        Ok(result) => result,
        Err(e) => Err(StoreError::Io(io::Error::other(format!(
            "an S3 call was lost: {e}"
        )))),
    }
}

/// A layout path as a key.
fn key(path: PathBuf) -> Key {
    Key::from(path.to_string_lossy().as_ref())
}

impl Inner {
    /// An S3 failure as the storage layer reports it.
    fn failed(&self, what: &str, e: object_store::Error) -> StoreError {
        StoreError::Io(io::Error::other(format!("{} {what}: {e}", self.name)))
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(result) => match result.bytes().await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) => Err(self.failed("reading an object", e)),
            },
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("reading an object", e)),
        }
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("looking up an object", e)),
        }
    }

    async fn put(&self, key: &Key, bytes: impl Into<PutPayload>) -> Result<()> {
        self.store
            .put(key, bytes.into())
            .await
            .map(drop)
            .map_err(|e| self.failed("writing an object", e))
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        match self.store.delete(key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("deleting an object", e)),
        }
    }

    /// Every object under `prefix` (a "directory"), however deep.
    async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>> {
        use futures::TryStreamExt as _;
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.failed("listing objects", e))
    }

    /// Remove every object under `prefix`; whether there were any.
    async fn delete_tree(&self, prefix: &Key) -> Result<bool> {
        let objects = self.list(prefix).await?;
        for object in &objects {
            self.delete(&object.location).await?;
        }
        Ok(!objects.is_empty())
    }

    /// The names of the "directories" right under `prefix`, sorted.
    async fn dirs(&self, prefix: &Key) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| self.failed("listing objects", e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn read_link(&self, key: &Key) -> Result<Option<Digest>> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Digest::parse(text.trim()).map(Some).map_err(|e| {
            StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: corrupt link {key}: {e}", self.name),
            ))
        })
    }

    async fn write_link(&self, key: &Key, digest: &Digest) -> Result<()> {
        self.put(key, Bytes::from(digest.to_string())).await
    }

    /// Digests stored as `<prefix>/<alg>/<hex>/…` "directories", sorted.
    async fn digests_under(&self, prefix: &Key) -> Result<Vec<Digest>> {
        let mut digests = Vec::new();
        for algorithm in self.dirs(prefix).await? {
            for hex in self.dirs(&prefix.child(algorithm.as_str())).await? {
                if let Ok(d) = Digest::parse(&format!("{algorithm}:{hex}")) {
                    digests.push(d);
                }
            }
        }
        Ok(digests)
    }

    /// Every repository (a "directory" holding `_manifests` or `_layers`)
    /// and every `_uploads` "directory" with its repository, depth first.
    async fn walk(&self) -> Result<(Vec<String>, Vec<(String, Key)>)> {
        let mut repositories = Vec::new();
        let mut uploads = Vec::new();
        let mut pending = vec![(String::new(), key(self.layout.repositories()))];
        while let Some((name, prefix)) = pending.pop() {
            let children = self.dirs(&prefix).await?;
            if holds_repository(&children) {
                repositories.push(name.clone());
            }
            for child in children {
                if child == "_uploads" {
                    uploads.push((name.clone(), prefix.child("_uploads")));
                } else if !child.starts_with('_') {
                    let full = match name.as_str() {
                        "" => child.clone(),
                        _ => format!("{name}/{child}"),
                    };
                    pending.push((full, prefix.child(child.as_str())));
                }
            }
        }
        repositories.sort();
        Ok((repositories, uploads))
    }

    /// Whether `name` is a repository: its "directory" holds `_manifests`
    /// or `_layers`.
    async fn repository_exists(&self, name: &str) -> Result<bool> {
        Ok(holds_repository(
            &self.dirs(&key(self.layout.repository(name))).await?,
        ))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .head(&key(self.layout.blob_data(digest)))
            .await?
            .map(|m| m.size))
    }

    /// Mark the blob stored or linked now, for the collector's grace
    /// period: an object's time cannot be changed in place, so a small
    /// object beside it records the latest.
    async fn touch(&self, digest: &Digest) -> Result<()> {
        let marker = key(self.layout.blob_dir(digest).join(TOUCHED));
        self.put(&marker, Bytes::new()).await
    }

    async fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>> {
        let layout = &self.layout;
        if self
            .read_link(&key(layout.revision_link(repository, digest)))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let Some(content) = self.get(&key(layout.blob_data(digest))).await? else {
            return Ok(None);
        };
        let media_type = match self
            .get(&key(layout.revision_media_type(repository, digest)))
            .await?
        {
            Some(t) => String::from_utf8_lossy(&t).into_owned(),
            None => wharf_spec::layout::embedded_media_type(&content)
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into()),
        };
        let subject = self
            .read_link(&key(layout.revision_subject(repository, digest)))
            .await?;
        Ok(Some(Manifest {
            digest: digest.clone(),
            media_type,
            content: content.to_vec(),
            subject,
        }))
    }

    /// Whether `tag` names a manifest present in `repository`.
    async fn tag_resolves(&self, repository: &str, tag: &str) -> bool {
        let layout = &self.layout;
        match self
            .read_link(&key(layout.tag_current(repository, tag)))
            .await
        {
            Ok(Some(digest)) => matches!(
                self.head(&key(layout.revision_link(repository, &digest)))
                    .await,
                Ok(Some(_))
            ),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(repository, tag, error = %e, "skipping a tag that cannot be read");
                false
            }
        }
    }
}

/// Whether a "directory" with these children is a repository's.
fn holds_repository(children: &[String]) -> bool {
    children.iter().any(|c| c == "_manifests" || c == "_layers")
}

/// Beside a blob's `data`: when it was last linked or stored again.
const TOUCHED: &str = "wharf-touched";

impl BlobStore for S3Storage {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let digest = digest.clone();
        self.with(|s3| async move { s3.blob_size(&digest).await })
    }

    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<Box<dyn Source>> {
        let size = self.stat(digest)?.ok_or(StoreError::NotFound)?;
        Ok(Box::new(source::Ranged::start(
            self.handle(),
            self.inner.clone(),
            key(self.inner.layout.blob_data(digest)),
            super::range_within(offset, length, size)?,
        )))
    }

    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        uploads::start(self, repository, algorithm)
    }

    /// A GET of the blob's object, signed (SigV4 in the query) for
    /// `REDIRECT_TTL`: the client needs no credentials of the bucket.
    fn redirect(&self, digest: &Digest) -> Result<Option<String>> {
        if !self.redirect {
            return Ok(None);
        }
        let object = key(self.inner.layout.blob_data(digest));
        self.with(|s3| async move {
            use object_store::signer::Signer as _;
            let url = s3
                .store
                .signed_url(hyper::Method::GET, &object, REDIRECT_TTL)
                .await
                .map_err(|e| s3.failed("signing a blob URL", e))?;
            Ok(Some(url.to_string()))
        })
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
        uploads::open(self, repository, id)
    }
}

impl MetadataStore for S3Storage {
    fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>> {
        let (repository, digest) = (repository.to_string(), digest.clone());
        self.with(|s3| async move { s3.get_manifest(&repository, &digest).await })
    }

    fn put_manifest(&self, repository: &str, manifest: &Manifest) -> Result<()> {
        let actual = manifest.digest.algorithm().digest(&manifest.content);
        if actual != manifest.digest {
            return Err(StoreError::DigestMismatch(actual));
        }
        let mut named: Vec<Digest> = references(&manifest.content).all().cloned().collect();
        named.push(manifest.digest.clone());
        self.pins.referencing(&named, || {
            let needed =
                |d: &&Digest| *d != &manifest.digest && Some(*d) != manifest.subject.as_ref();
            for gone in named.iter().filter(needed).filter(|d| self.pins.swept(d)) {
                if self.stat(gone)?.is_none() {
                    return Err(StoreError::Invalid(format!(
                        "blob {gone} was garbage-collected while this push was in flight; push it again"
                    )));
                }
            }
            let _exclusive = self.locks.lock(repository);
            let (repository, manifest) = (repository.to_string(), manifest.clone());
            let catalog = self.catalog.clone();
            self.with(|s3| async move {
                catalog.enter(&s3, &repository).await?;
                let layout = &s3.layout;
                let digest = &manifest.digest;
                let data = key(layout.blob_data(digest));
                if s3.head(&data).await?.is_none() {
                    s3.put(&data, Bytes::from(manifest.content.clone())).await?;
                }
                s3.put(
                    &key(layout.revision_media_type(&repository, digest)),
                    Bytes::from(manifest.media_type.clone()),
                )
                .await?;
                if let Some(subject) = &manifest.subject {
                    s3.write_link(&key(layout.revision_subject(&repository, digest)), subject)
                        .await?;
                    s3.write_link(
                        &key(layout.referrer_link(&repository, subject, digest)),
                        digest,
                    )
                    .await?;
                }
                // The link last: it is what makes the manifest visible.
                s3.write_link(&key(layout.revision_link(&repository, digest)), digest)
                    .await
            })
        })
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let _exclusive = self.locks.lock(repository);
        let (repository, digest) = (repository.to_string(), digest.clone());
        self.with(|s3| async move {
            let layout = &s3.layout;
            if s3
                .head(&key(layout.revision_link(&repository, &digest)))
                .await?
                .is_none()
            {
                return Ok(false);
            }
            for tag in s3.dirs(&key(layout.tags(&repository))).await? {
                if s3
                    .read_link(&key(layout.tag_current(&repository, &tag)))
                    .await?
                    .as_ref()
                    == Some(&digest)
                {
                    s3.delete_tree(&key(layout.tag_dir(&repository, &tag)))
                        .await?;
                }
            }
            let subject = s3
                .read_link(&key(layout.revision_subject(&repository, &digest)))
                .await?;
            // The link first: the manifest is gone once it is.
            s3.delete(&key(layout.revision_link(&repository, &digest)))
                .await?;
            s3.delete_tree(&key(layout.revision_dir(&repository, &digest)))
                .await?;
            if let Some(subject) = subject {
                s3.delete_tree(&key(layout.referrer_dir(&repository, &subject, &digest)))
                    .await?;
            }
            Ok(true)
        })
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        let link = key(self.inner.layout.tag_current(repository, tag));
        self.with(|s3| async move { s3.read_link(&link).await })
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let _exclusive = self.locks.lock(repository);
        let layout = &self.inner.layout;
        let revision = key(layout.revision_link(repository, digest));
        let index = key(layout.tag_index(repository, tag, digest));
        let current = key(layout.tag_current(repository, tag));
        let digest = digest.clone();
        self.with(|s3| async move {
            if s3.head(&revision).await?.is_none() {
                return Err(StoreError::NotFound);
            }
            s3.write_link(&index, &digest).await?;
            s3.write_link(&current, &digest).await
        })
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        self.check_delete()?;
        let _exclusive = self.locks.lock(repository);
        let dir = key(self.inner.layout.tag_dir(repository, tag));
        self.with(|s3| async move { s3.delete_tree(&dir).await })
    }

    /// Listed from the page's start (`levels.rs`), each tag checked to name
    /// a manifest that is there.
    fn list_tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Option<Page>> {
        let name = repository.to_string();
        if !self.with(|s3| async move { s3.repository_exists(&name).await })? {
            return Ok(None);
        }
        let repository = Arc::<str>::from(repository);
        self.page_checked(after, limit, |s3, after, n| {
            let repository = repository.clone();
            async move { levels::tags(&s3, &repository, after.as_deref(), n).await }
        })
        .map(Some)
    }

    /// From the catalog's entries (`catalog.rs`), each checked to be a
    /// repository; from a walk of the bucket until they are complete.
    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page> {
        if !self.catalog.complete() {
            let (names, _) = self.with(|s3| async move { s3.walk().await })?;
            return Ok(page(names, after, limit));
        }
        self.page_checked(after, limit, |s3, after, n| async move {
            catalog::entries(&s3, after.as_deref(), n).await
        })
    }

    /// Listed from the page's start (`levels.rs`), each referrer checked to
    /// be linked.
    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let (repository, subject) = (Arc::<str>::from(repository), subject.clone());
        self.page_checked(after, limit, |s3, after, n| {
            let (repository, subject) = (repository.clone(), subject.clone());
            async move { levels::referrers(&s3, &repository, &subject, after.as_deref(), n).await }
        })
    }

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        let link = key(self.inner.layout.layer_link(repository, digest));
        self.pins.referencing([digest], || {
            let (repository, digest) = (repository.to_string(), digest.clone());
            let catalog = self.catalog.clone();
            self.with(|s3| async move {
                if s3.blob_size(&digest).await?.is_none() {
                    return Err(StoreError::NotFound);
                }
                catalog.enter(&s3, &repository).await?;
                // Linked now: a grace period against collection starts anew.
                s3.touch(&digest).await?;
                s3.write_link(&link, &digest).await
            })
        })
    }

    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let link = key(self.inner.layout.layer_link(repository, digest));
        let digest = digest.clone();
        self.with(|s3| async move { Ok(s3.read_link(&link).await?.as_ref() == Some(&digest)) })
    }

    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let link = key(self.inner.layout.layer_link(repository, digest));
        // S3 deletes answer alike whether the key was there or not.
        self.with(|s3| async move {
            let linked = s3.head(&link).await?.is_some();
            if linked {
                s3.delete(&link).await?;
            }
            Ok(linked)
        })
    }
}

impl Backend for S3Storage {
    /// The bucket can be listed and an object written to and removed from
    /// it, within the call timeout.
    fn check_health(&self) -> io::Result<()> {
        let probe = key(self
            .inner
            .layout
            .tmp()
            .join(format!("health-{}", uuid::Uuid::new_v4())));
        self.with(|s3| async move {
            s3.store
                .list_with_delimiter(Some(&key(s3.layout.repositories())))
                .await
                .map_err(|e| s3.failed("cannot be listed", e))?;
            let written = s3.put(&probe, Bytes::from_static(b"ok")).await;
            let _ = s3.delete(&probe).await;
            written
        })
        .map_err(|e| match e {
            StoreError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }

    fn list_manifests(&self, repository: &str) -> Result<Vec<Digest>> {
        let dir = key(self.inner.layout.revisions(repository));
        self.with(|s3| async move { s3.digests_under(&dir).await })
    }

    fn list_linked_blobs(&self, repository: &str) -> Result<Vec<Digest>> {
        let dir = key(self.inner.layout.layers(repository));
        self.with(|s3| async move { s3.digests_under(&dir).await })
    }

    /// One listing of `blobs/`: each blob's `data` gives its size, and the
    /// newest of it and its `wharf-touched` when it was last stored or
    /// linked.
    fn list_blobs(&self) -> Result<Vec<StoredBlob>> {
        let objects = self.with(|s3| async move { s3.list(&key(s3.layout.blobs())).await })?;
        let mut blobs: std::collections::BTreeMap<String, StoredBlob> = Default::default();
        let mut touched: Vec<(String, SystemTime)> = Vec::new();
        for object in objects {
            let parts: Vec<String> = object
                .location
                .parts()
                .map(|p| p.as_ref().to_string())
                .collect();
            // …/blobs/<alg>/<xx>/<hex>/<file>
            let [.., algorithm, _, hex, file] = parts.as_slice() else {
                continue;
            };
            let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                continue;
            };
            let modified = SystemTime::from(object.last_modified);
            match file.as_str() {
                "data" => {
                    blobs.insert(
                        digest.to_string(),
                        StoredBlob {
                            digest,
                            size: object.size,
                            modified: Some(modified),
                        },
                    );
                }
                TOUCHED => touched.push((digest.to_string(), modified)),
                _ => {}
            }
        }
        for (digest, when) in touched {
            if let Some(blob) = blobs.get_mut(&digest) {
                blob.modified = blob.modified.max(Some(when));
            }
        }
        Ok(blobs.into_values().collect())
    }

    fn list_uploads(&self) -> Result<Vec<StoredUpload>> {
        Ok(uploads::list(self)?
            .into_iter()
            .map(|(upload, _)| upload)
            .collect())
    }

    fn sweep_blob(&self, digest: &Digest, linked_from: &[String]) -> Result<()> {
        let dir = key(self.inner.layout.blob_dir(digest));
        let links: Vec<Key> = linked_from
            .iter()
            .map(|r| key(self.inner.layout.layer_link(r, digest)))
            .collect();
        self.with(|s3| async move {
            s3.delete_tree(&dir).await?;
            for link in &links {
                s3.delete(link).await?;
            }
            Ok(())
        })
    }

    fn purge_uploads(&self, age: Duration, dry_run: bool) -> Result<Purged> {
        uploads::purge(self, age, dry_run)
    }

    fn pins(&self) -> &Pins {
        &self.pins
    }
}
