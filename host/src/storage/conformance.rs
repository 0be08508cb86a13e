//! The storage conformance suite: one set of test functions, run against
//! every backend (as distribution's storage driver suites are).
//!
//! A test takes a [`Fixture`], which opens the backend under test (again,
//! for tests of what survives a restart) and stands in for time passing.
//! [`on_every_backend!`] runs the listed tests on each backend; garbage
//! collection and quota tests use it too, so they run on every backend
//! through the seam alone.

use super::{Backend, Manifest, Page, Sink, Source, StoreError};
use super::{FsStorage, memory::MemoryStorage, streams::tests::drain};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wharf_spec::{Algorithm, Digest};

/// A backend under test.
pub trait Fixture: Send + Sync {
    /// The backend; opened again on each call where the backend can be
    /// (the filesystem: a new instance on the same directory, as after a
    /// restart), else the same one.
    fn open(&self) -> Arc<dyn Backend>;
    /// Make the blob look last stored or linked `age` ago.
    fn backdate_blob(&self, digest: &Digest, age: Duration);
    /// Make the upload session look idle for `age`.
    fn backdate_upload(&self, repository: &str, id: &str, age: Duration);
}

pub struct FsFixture {
    dir: tempfile::TempDir,
}

impl FsFixture {
    pub fn new() -> FsFixture {
        FsFixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn layout(&self) -> super::layout::Layout {
        super::layout::Layout::new(self.dir.path())
    }
}

fn set_mtime(path: &std::path::Path, when: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

impl Fixture for FsFixture {
    fn open(&self) -> Arc<dyn Backend> {
        Arc::new(FsStorage::open(self.dir.path(), true).unwrap())
    }

    fn backdate_blob(&self, digest: &Digest, age: Duration) {
        set_mtime(&self.layout().blob_data(digest), SystemTime::now() - age);
    }

    fn backdate_upload(&self, repository: &str, id: &str, age: Duration) {
        let dir = self.layout().upload_dir(repository, id);
        let when = SystemTime::now() - age;
        let started = when.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        std::fs::write(dir.join("startedat"), started.as_secs().to_string()).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            set_mtime(&entry.unwrap().path(), when);
        }
    }
}

pub struct MemoryFixture(Arc<MemoryStorage>);

impl MemoryFixture {
    pub fn new() -> MemoryFixture {
        MemoryFixture(Arc::new(MemoryStorage::new(true)))
    }
}

impl Fixture for MemoryFixture {
    fn open(&self) -> Arc<dyn Backend> {
        self.0.clone()
    }

    fn backdate_blob(&self, digest: &Digest, age: Duration) {
        self.0.set_modified(digest, SystemTime::now() - age);
    }

    fn backdate_upload(&self, repository: &str, id: &str, age: Duration) {
        self.0
            .set_upload_active(repository, id, SystemTime::now() - age);
    }
}

#[path = "../../../tests/it/support/garage.rs"]
mod garage;

/// The Garage cluster the S3 fixtures share: three nodes, started by the
/// first fixture on a thread of its own that lives as long as the test
/// process, so the nodes die with the process (they are its thread's
/// children, killed when it exits).
fn cluster() -> &'static (String, String, String) {
    static CLUSTER: std::sync::OnceLock<(String, String, String)> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (send, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let garage = garage::Garage::start(3, BUCKET);
            let _ = send.send((
                garage.endpoint(0),
                garage.key_id.clone(),
                garage.secret.clone(),
            ));
            loop {
                std::thread::park();
            }
        });
        started.recv().expect("the Garage cluster started")
    })
}

const BUCKET: &str = "wharf-conformance";

/// A registry of its own (a fresh `rootdirectory`) in the shared bucket.
pub struct S3Fixture {
    config: crate::storage::s3::config::S3,
}

impl S3Fixture {
    pub fn new() -> S3Fixture {
        let (endpoint, key, secret) = cluster().clone();
        let yaml = format!(
            "region: garage\nbucket: {BUCKET}\nregionendpoint: {endpoint}\naccesskey: {key}\n\
             secretkey: {secret}\nforcepathstyle: true\nsecure: false\nchunksize: 5242880\n\
             rootdirectory: /t-{}\n",
            uuid::Uuid::new_v4()
        );
        S3Fixture {
            config: serde_yaml_ng::from_str(&yaml).unwrap(),
        }
    }

    /// The store itself, for tests of the S3 backend's own parts.
    pub fn open_s3(&self) -> super::s3::S3Storage {
        super::s3::S3Storage::open(&self.config, true, false).unwrap()
    }
}

impl Fixture for S3Fixture {
    fn open(&self) -> Arc<dyn Backend> {
        Arc::new(self.open_s3())
    }

    /// Object times are the server's: S3 cannot backdate.
    fn backdate_blob(&self, _: &Digest, _: Duration) {
        panic!("S3 objects cannot be backdated: list this test among the timeless ones")
    }

    fn backdate_upload(&self, _: &str, _: &str, _: Duration) {
        panic!("S3 objects cannot be backdated: list this test among the timeless ones")
    }
}

/// Run each listed `async fn test(&dyn Fixture)` of the calling module on
/// every backend, as `on_fs::test`, `on_memory::test` and `on_s3::test`;
/// tests listed after `; only_local:` need time to pass (a backdated
/// object) and run on the filesystem and memory only.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)? $(; only_local: $($local:ident),* $(,)?)?) => {
        $crate::storage::conformance::on_every_backend!(@local $($test,)* $($($local,)*)?);
        mod on_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let fixture = tokio::task::spawn_blocking(
                        $crate::storage::conformance::S3Fixture::new,
                    )
                    .await
                    .unwrap();
                    super::$test(&fixture).await
                }
            )*
        }
    };
    (@local $($test:ident),* $(,)?) => {
        mod on_fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&$crate::storage::conformance::FsFixture::new()).await
                }
            )*
        }
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&$crate::storage::conformance::MemoryFixture::new()).await
                }
            )*
        }
    };
}
pub(crate) use on_every_backend;

/// Bytes that differ at every offset, so a misplaced chunk shows.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Write all of `bytes` the way the guest's splice does: in pieces no
/// larger than the room the sink reports, waiting when there is none; then
/// flush and close.
pub async fn write_all(sink: &mut Box<dyn Sink>, bytes: &[u8], piece: usize) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let room = sink.room().expect("room");
        if room == 0 {
            sink.ready().await;
            continue;
        }
        let n = room.min(piece).min(rest.len());
        sink.write(Bytes::copy_from_slice(&rest[..n]))
            .expect("write");
        rest = &rest[n..];
    }
    sink.flush().expect("flush");
    sink.ready().await;
    sink.close().await;
}

pub async fn read_all(mut source: Box<dyn Source>) -> Vec<u8> {
    drain(&mut *source).await.expect("reading the blob")
}

/// Store `bytes` as a blob through an upload session of `repository`.
pub async fn store_blob(store: &dyn Backend, repository: &str, bytes: &[u8]) -> Digest {
    let mut session = store.start_upload(repository, Algorithm::Sha256).unwrap();
    let mut sink = session.writer().unwrap();
    write_all(&mut sink, bytes, 1 << 20).await;
    drop(sink);
    let digest = Algorithm::Sha256.digest(bytes);
    assert_eq!(session.finish(&digest).unwrap(), bytes.len() as u64);
    digest
}

/// A manifest of `content`, with `subject`.
pub fn manifest(content: &[u8], subject: Option<&Digest>) -> Manifest {
    Manifest {
        digest: Algorithm::Sha256.digest(content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: content.to_vec(),
        subject: subject.cloned(),
    }
}

/// An image manifest whose config and only layer is `layer`.
pub fn image(layer: &Digest) -> Manifest {
    let content = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layer.to_string(), "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 1}],
    }))
    .unwrap();
    manifest(&content, None)
}

fn names(entries: &[&str], more: bool) -> Page {
    Page {
        entries: entries.iter().map(|t| t.to_string()).collect(),
        more,
    }
}

on_every_backend!(
    bytes_written_in_two_requests_are_stored_whole_and_read_back_by_range,
    a_writer_dropped_without_close_leaves_a_session_that_finishes_right,
    a_wrong_digest_stores_nothing_and_ends_the_session,
    a_session_is_held_by_one_request_at_a_time,
    ranges_outside_a_blob_are_refused,
    referrers_are_indexed_on_put_and_dropped_on_delete,
    a_manifest_delete_removes_its_tags_and_only_its_tags,
    a_tag_names_only_a_manifest_the_repository_holds,
    a_manifest_whose_bytes_do_not_match_its_digest_is_refused,
    repositories_and_tags_are_listed_in_pages,
    tags_that_extend_others_are_paged_in_tag_order,
    referrers_are_paged_in_digest_order,
    links_are_per_repository,
    maintenance_listings_see_everything_stored;
    only_local:
    uploading_a_stored_blob_again_keeps_it_and_restarts_its_grace_period,
    idle_sessions_are_purged_and_held_ones_kept,
);

async fn bytes_written_in_two_requests_are_stored_whole_and_read_back_by_range(f: &dyn Fixture) {
    let store = f.open();
    let blob = pattern(11 * (1 << 20) + 4093, 7);
    let (first, second) = blob.split_at(5 * (1 << 20) + 17);

    let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
    let id = session.id().to_string();
    let mut writer = session.writer().unwrap();
    write_all(&mut writer, first, 300_001).await;
    drop(writer);
    assert_eq!(session.offset(), first.len() as u64);
    drop(session);

    // A later request (after a restart) carries on from an offset that is
    // not a multiple of anything, with pieces of another size.
    let store = f.open();
    let mut session = store.open_upload("team/app", &id).unwrap();
    assert_eq!(session.offset(), first.len() as u64);
    let mut writer = session.writer().unwrap();
    write_all(&mut writer, second, 1 << 20).await;
    drop(writer);
    let digest = Algorithm::Sha256.digest(&blob);
    assert_eq!(session.finish(&digest).unwrap(), blob.len() as u64);

    assert_eq!(store.stat(&digest).unwrap(), Some(blob.len() as u64));
    assert_eq!(read_all(store.read(&digest, 0, None).unwrap()).await, blob);
    // Ranges that start off a page boundary and cross read windows.
    for (offset, len) in [(1, 4096), (4095, 5 << 20), (8 << 20, 3 << 20), (123, 0)] {
        let got = read_all(store.read(&digest, offset, Some(len)).unwrap()).await;
        let at = offset as usize;
        assert_eq!(got, &blob[at..at + len as usize], "range {offset}+{len}");
    }
}

async fn uploading_a_stored_blob_again_keeps_it_and_restarts_its_grace_period(f: &dyn Fixture) {
    let store = f.open();
    let blob = pattern(3 << 20, 11);
    let digest = Algorithm::Sha256.digest(&blob);
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    for round in 0..2 {
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        let id = session.id().to_string();
        let mut writer = session.writer().unwrap();
        write_all(&mut writer, &blob, 1 << 20).await;
        drop(writer);
        assert_eq!(session.finish(&digest).unwrap(), blob.len() as u64);
        assert!(
            matches!(
                store.open_upload("team/app", &id),
                Err(StoreError::NotFound)
            ),
            "round {round}: the finished session is gone"
        );
        if round == 0 {
            f.backdate_blob(&digest, Duration::from_secs(86_400));
        }
    }
    assert_eq!(read_all(store.read(&digest, 0, None).unwrap()).await, blob);
    let stored = store.list_blobs().unwrap();
    let modified = stored[0].modified.unwrap();
    assert!(modified > day_ago + Duration::from_secs(3600));
    assert!(store.list_uploads().unwrap().is_empty());
}

async fn a_writer_dropped_without_close_leaves_a_session_that_finishes_right(f: &dyn Fixture) {
    let store = f.open();
    let blob = pattern(6 << 20, 9);
    let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
    let id = session.id().to_string();
    let mut writer = session.writer().unwrap();
    // No flush, no close: what an instance that traps leaves behind.
    let mut rest = &blob[..];
    while !rest.is_empty() {
        let room = writer.room().unwrap();
        if room == 0 {
            writer.ready().await;
            continue;
        }
        let n = room.min(rest.len());
        writer.write(Bytes::copy_from_slice(&rest[..n])).unwrap();
        rest = &rest[n..];
    }
    drop(writer);
    drop(session);

    let session = store.open_upload("team/app", &id).unwrap();
    assert_eq!(session.offset(), blob.len() as u64);
    let digest = Algorithm::Sha256.digest(&blob);
    assert_eq!(session.finish(&digest).unwrap(), blob.len() as u64);
    assert_eq!(read_all(store.read(&digest, 0, None).unwrap()).await, blob);
}

async fn a_wrong_digest_stores_nothing_and_ends_the_session(f: &dyn Fixture) {
    let store = f.open();
    let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
    let id = session.id().to_string();
    let mut writer = session.writer().unwrap();
    write_all(&mut writer, b"the bytes sent", 1 << 20).await;
    drop(writer);
    let claimed = Algorithm::Sha256.digest(b"other bytes");
    let actual = Algorithm::Sha256.digest(b"the bytes sent");
    match session.finish(&claimed) {
        Err(StoreError::DigestMismatch(d)) => assert_eq!(d, actual),
        other => panic!("finish under a wrong digest: {other:?}"),
    }
    assert_eq!(store.stat(&claimed).unwrap(), None);
    assert_eq!(store.stat(&actual).unwrap(), None);
    assert!(matches!(
        store.open_upload("team/app", &id),
        Err(StoreError::NotFound)
    ));
    assert!(store.list_blobs().unwrap().is_empty());
}

async fn a_session_is_held_by_one_request_at_a_time(f: &dyn Fixture) {
    let store = f.open();
    let session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
    let id = session.id().to_string();
    assert!(matches!(
        store.open_upload("team/app", &id),
        Err(StoreError::Busy)
    ));
    drop(session);
    let again = store.open_upload("team/app", &id).unwrap();
    assert_eq!(again.offset(), 0);
    // Sessions are their repository's: another cannot continue them.
    assert!(matches!(
        store.open_upload("team/other", &id),
        Err(StoreError::NotFound)
    ));
    again.cancel().unwrap();
    assert!(matches!(
        store.open_upload("team/app", &id),
        Err(StoreError::NotFound)
    ));
}

async fn ranges_outside_a_blob_are_refused(f: &dyn Fixture) {
    let store = f.open();
    let digest = store_blob(&*store, "team/app", &pattern(1000, 3)).await;
    assert!(matches!(
        store.read(&digest, 1001, None),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.read(&digest, 990, Some(11)),
        Err(StoreError::Invalid(_))
    ));
    let tail = read_all(store.read(&digest, 990, Some(10)).unwrap()).await;
    assert_eq!(tail, &pattern(1000, 3)[990..]);
    let missing = Algorithm::Sha256.digest(b"missing");
    assert!(matches!(
        store.read(&missing, 0, None),
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.stat(&missing).unwrap(), None);
}

async fn referrers_are_indexed_on_put_and_dropped_on_delete(f: &dyn Fixture) {
    let store = f.open();
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
    assert_eq!(stored.content, b"referrer a");
    assert_eq!(stored.media_type, a.media_type);

    assert!(store.delete_manifest("team/app", &a.digest).unwrap());
    assert!(!store.delete_manifest("team/app", &a.digest).unwrap());
    let left = store
        .list_referrers("team/app", &subject, None, 10)
        .unwrap();
    assert_eq!(left.entries, [b.digest.to_string()]);
    let elsewhere = store.list_referrers("other", &subject, None, 10).unwrap();
    assert!(elsewhere.entries.is_empty());
}

async fn a_manifest_delete_removes_its_tags_and_only_its_tags(f: &dyn Fixture) {
    let store = f.open();
    let (a, b) = (manifest(b"a", None), manifest(b"b", None));
    store.put_manifest("team/app", &a).unwrap();
    store.put_manifest("team/app", &b).unwrap();
    store.set_tag("team/app", "one", &a.digest).unwrap();
    store.set_tag("team/app", "two", &a.digest).unwrap();
    store.set_tag("team/app", "other", &b.digest).unwrap();
    assert!(store.delete_manifest("team/app", &a.digest).unwrap());
    let tags = store.list_tags("team/app", None, 10).unwrap().unwrap();
    assert_eq!(tags.entries, ["other"]);
    assert_eq!(store.resolve_tag("team/app", "one").unwrap(), None);
    assert!(store.get_manifest("team/app", &a.digest).unwrap().is_none());
    assert!(store.get_manifest("team/app", &b.digest).unwrap().is_some());
    assert!(store.delete_tag("team/app", "other").unwrap());
    assert!(!store.delete_tag("team/app", "other").unwrap());
    assert!(store.get_manifest("team/app", &b.digest).unwrap().is_some());
}

async fn a_tag_names_only_a_manifest_the_repository_holds(f: &dyn Fixture) {
    let store = f.open();
    let m = manifest(b"held elsewhere", None);
    store.put_manifest("team/app", &m).unwrap();
    assert!(matches!(
        store.set_tag("team/other", "latest", &m.digest),
        Err(StoreError::NotFound)
    ));
    store.set_tag("team/app", "latest", &m.digest).unwrap();
    assert_eq!(
        store.resolve_tag("team/app", "latest").unwrap(),
        Some(m.digest.clone())
    );
    // Moving a tag replaces what it names.
    let newer = manifest(b"newer", None);
    store.put_manifest("team/app", &newer).unwrap();
    store.set_tag("team/app", "latest", &newer.digest).unwrap();
    assert_eq!(
        store.resolve_tag("team/app", "latest").unwrap(),
        Some(newer.digest.clone())
    );
    assert!(
        store
            .get_manifest("team/other", &m.digest)
            .unwrap()
            .is_none()
    );
}

async fn a_manifest_whose_bytes_do_not_match_its_digest_is_refused(f: &dyn Fixture) {
    let store = f.open();
    let mut m = manifest(b"claimed", None);
    m.content = b"sent".to_vec();
    assert!(matches!(
        store.put_manifest("team/app", &m),
        Err(StoreError::DigestMismatch(_))
    ));
    assert!(store.get_manifest("team/app", &m.digest).unwrap().is_none());
    assert!(store.list_blobs().unwrap().is_empty());
}

async fn repositories_and_tags_are_listed_in_pages(f: &dyn Fixture) {
    let store = f.open();
    let m = manifest(b"listed", None);
    for repository in ["b/two", "a", "b", "c/d/e"] {
        store.put_manifest(repository, &m).unwrap();
    }
    let list = |after, limit| store.list_repositories(after, limit).unwrap();
    assert_eq!(list(None, 2), names(&["a", "b"], true));
    assert_eq!(list(Some("b"), 2), names(&["b/two", "c/d/e"], false));
    assert_eq!(list(None, 10).entries, ["a", "b", "b/two", "c/d/e"]);
    for tag in ["v2", "latest", "v1"] {
        store.set_tag("a", tag, &m.digest).unwrap();
    }
    let tags = |after, limit| store.list_tags("a", after, limit).unwrap().unwrap();
    assert_eq!(tags(None, 2), names(&["latest", "v1"], true));
    assert_eq!(tags(Some("v1"), 2), names(&["v2"], false));
    assert_eq!(
        store.list_tags("b", None, 10).unwrap(),
        Some(names(&[], false))
    );
    assert_eq!(store.list_tags("nothing/here", None, 10).unwrap(), None);
}

/// Every page of `list(after, limit)` from the start, at each page size up
/// to 4, joined: each page's `more` must say whether another follows.
fn walk_pages(list: impl Fn(Option<&str>, u32) -> Page, from: Option<&str>) -> Vec<Vec<String>> {
    (1..=4)
        .map(|limit| {
            let mut all = Vec::new();
            let mut after = from.map(str::to_string);
            loop {
                let page = list(after.as_deref(), limit);
                assert!(page.entries.len() <= limit as usize);
                all.extend(page.entries.iter().cloned());
                after = page.entries.last().cloned();
                if !page.more {
                    break;
                }
                assert_eq!(
                    page.entries.len(),
                    limit as usize,
                    "a full page before more"
                );
            }
            all
        })
        .collect()
}

/// `-` and `.` sort before `/`, so on S3 a tag's key sorts after the keys
/// of the tags that extend it with them; pages still follow the tags' order.
async fn tags_that_extend_others_are_paged_in_tag_order(f: &dyn Fixture) {
    let store = f.open();
    let m = manifest(b"tagged", None);
    store.put_manifest("a", &m).unwrap();
    let mut tags = vec![
        "v1",
        "v1-rc",
        "v1.0",
        "v1.0-rc.1",
        "v1.0.1",
        "v1.1",
        "v10",
        "v1_x",
        "v2",
        "a",
        "a.b.c",
        "a-",
        "latest",
    ];
    for tag in &tags {
        store.set_tag("a", tag, &m.digest).unwrap();
    }
    tags.sort();
    let list = |after: Option<&str>, limit| store.list_tags("a", after, limit).unwrap().unwrap();
    for walked in walk_pages(list, None) {
        assert_eq!(walked, tags);
    }
    for from in ["v1", "v1.0-rc.1", "a-", "v"] {
        let after: Vec<&str> = tags.iter().copied().filter(|t| *t > from).collect();
        for walked in walk_pages(list, Some(from)) {
            assert_eq!(walked, after, "after {from}");
        }
    }
}

async fn referrers_are_paged_in_digest_order(f: &dyn Fixture) {
    let store = f.open();
    let subject = Algorithm::Sha256.digest(b"subject");
    let mut want = Vec::new();
    for i in 0..7 {
        let m = manifest(format!("referrer {i}").as_bytes(), Some(&subject));
        store.put_manifest("team/app", &m).unwrap();
        want.push(m.digest.to_string());
    }
    let other = Algorithm::Sha512.digest(b"another subject");
    let sha512 = manifest(b"of another", Some(&other));
    store.put_manifest("team/app", &sha512).unwrap();
    want.sort();
    let list = |after: Option<&str>, limit| {
        store
            .list_referrers("team/app", &subject, after, limit)
            .unwrap()
    };
    for walked in walk_pages(list, None) {
        assert_eq!(walked, want);
    }
    for walked in walk_pages(list, Some(&want[2])) {
        assert_eq!(walked, want[3..]);
    }
}

async fn links_are_per_repository(f: &dyn Fixture) {
    let store = f.open();
    let digest = store_blob(&*store, "team/app", b"a layer").await;
    store.link_blob("team/app", &digest).unwrap();
    assert!(store.blob_linked("team/app", &digest).unwrap());
    assert!(!store.blob_linked("team/other", &digest).unwrap());
    store.link_blob("team/other", &digest).unwrap();
    assert!(store.unlink_blob("team/app", &digest).unwrap());
    assert!(!store.unlink_blob("team/app", &digest).unwrap());
    assert!(!store.blob_linked("team/app", &digest).unwrap());
    assert!(store.blob_linked("team/other", &digest).unwrap());
    let missing = Algorithm::Sha256.digest(b"never uploaded");
    assert!(matches!(
        store.link_blob("team/app", &missing),
        Err(StoreError::NotFound)
    ));
}

async fn maintenance_listings_see_everything_stored(f: &dyn Fixture) {
    let store = f.open();
    let layer = store_blob(&*store, "team/app", &pattern(5000, 1)).await;
    store.link_blob("team/app", &layer).unwrap();
    let img = image(&layer);
    store.put_manifest("team/app", &img).unwrap();
    let loose = manifest(b"untagged", None);
    store.put_manifest("team/app", &loose).unwrap();
    let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
    let mut writer = session.writer().unwrap();
    write_all(&mut writer, &pattern(777, 2), 1 << 20).await;
    drop(writer);
    let id = session.id().to_string();
    drop(session);

    let mut manifests = vec![img.digest.clone(), loose.digest.clone()];
    manifests.sort_by_key(|d| d.to_string());
    assert_eq!(store.list_manifests("team/app").unwrap(), manifests);
    assert!(store.list_manifests("team/none").unwrap().is_empty());
    assert_eq!(
        store.list_linked_blobs("team/app").unwrap(),
        std::slice::from_ref(&layer)
    );
    let mut blobs: Vec<(String, u64)> = store
        .list_blobs()
        .unwrap()
        .into_iter()
        .map(|b| (b.digest.to_string(), b.size))
        .collect();
    blobs.sort();
    let mut want = vec![
        (layer.to_string(), 5000),
        (img.digest.to_string(), img.content.len() as u64),
        (loose.digest.to_string(), loose.content.len() as u64),
    ];
    want.sort();
    assert_eq!(blobs, want);
    let uploads = store.list_uploads().unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        (
            uploads[0].repository.as_str(),
            uploads[0].id.as_str(),
            uploads[0].bytes
        ),
        ("team/app", id.as_str(), 777)
    );
    store.check_health().unwrap();

    store.sweep_blob(&layer, &["team/app".to_string()]).unwrap();
    assert_eq!(store.stat(&layer).unwrap(), None);
    assert!(store.list_linked_blobs("team/app").unwrap().is_empty());
}

async fn idle_sessions_are_purged_and_held_ones_kept(f: &dyn Fixture) {
    let store = f.open();
    let start = |bytes: &[u8]| {
        let store = store.clone();
        let bytes = bytes.to_vec();
        async move {
            let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
            let mut writer = session.writer().unwrap();
            write_all(&mut writer, &bytes, 1 << 20).await;
            drop(writer);
            session
        }
    };
    let idle = start(b"idle for a day").await;
    let held = start(b"held by a request").await;
    let fresh = start(b"just written").await;
    let (idle_id, held_id, fresh_id) = (
        idle.id().to_string(),
        held.id().to_string(),
        fresh.id().to_string(),
    );
    drop((idle, fresh));
    for id in [&idle_id, &held_id] {
        f.backdate_upload("team/app", id, Duration::from_secs(86_400));
    }
    let age = Duration::from_secs(3600);
    let dry = store.purge_uploads(age, true).unwrap();
    assert_eq!(dry.sessions.len(), 1);
    assert_eq!(dry.sessions[0].id, idle_id);
    assert_eq!(dry.bytes, 14);
    assert_eq!(store.list_uploads().unwrap().len(), 3);

    let purged = store.purge_uploads(age, false).unwrap();
    assert_eq!(purged.sessions.len(), 1);
    assert!(matches!(
        store.open_upload("team/app", &idle_id),
        Err(StoreError::NotFound)
    ));
    let mut left: Vec<String> = store
        .list_uploads()
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    left.sort();
    let mut want = vec![held_id, fresh_id];
    want.sort();
    assert_eq!(left, want);
    drop(held);
}
