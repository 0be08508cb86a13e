//! The catalog on S3: an empty object per repository under
//! `wharf-catalog/`, keyed by the repository's name. S3 lists keys in byte
//! order, which is the catalog's order, starting after any key
//! (`start-after`), so a page is one listing of the entries after the name
//! it starts from and one check per entry that its repository is there:
//! what the page holds, not what the bucket holds. (registry:2's catalog
//! walks every "directory" under `repositories/`, a listing each.)
//!
//! Every write that can make a repository (a blob linked, a manifest
//! stored) writes the repository's entry first, once per process. An entry
//! whose repository is gone (its last manifest and link deleted, or a push
//! that failed after its entry) is skipped, never listed. A bucket written
//! without entries (by registry:2, or a Wharf from before them) is walked
//! once, in the background at start, its missing entries written, and then
//! `wharf-catalog-complete`; until that object is there, pages come from a
//! walk of the bucket, as before. A repository that registry:2 creates in
//! the bucket afterwards has no entry: delete `wharf-catalog-complete` and
//! restart to index it.

use super::levels::{AT_ONCE, MAX_KEYS, list, listing};
use super::{Inner, key};
use crate::storage::Result;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectMeta;
use object_store::list::PaginatedListOptions;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many names `known` holds before it starts over (an entry written
/// again is harmless).
const MAX_KNOWN: usize = 1 << 20;

#[derive(Default)]
pub struct Catalog {
    /// Whether every repository in the bucket has its entry.
    complete: AtomicBool,
    /// Repositories whose entry this process has written.
    known: Mutex<HashSet<String>>,
}

impl Catalog {
    /// Whether pages can come from the entries.
    pub fn complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Write `repository`'s entry unless this process already has: before
    /// any write that can make the repository.
    pub async fn enter(&self, s3: &Inner, repository: &str) -> Result<()> {
        if crate::sync::lock(&self.known).contains(repository) {
            return Ok(());
        }
        write_entry(s3, repository).await?;
        let mut known = crate::sync::lock(&self.known);
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert(repository.to_string());
        Ok(())
    }

    /// Entries for the bucket's repositories that have none, then
    /// `wharf-catalog-complete`, unless it is there already. Returns how
    /// many entries were written.
    pub async fn build(&self, s3: &Inner) -> Result<usize> {
        let complete = key(s3.layout.catalog_complete());
        if s3.head(&complete).await?.is_some() {
            self.complete.store(true, Ordering::Release);
            return Ok(0);
        }
        let (repositories, _) = s3.walk().await?;
        let prefix = prefix(s3);
        let entered: HashSet<String> = s3
            .list(&key(s3.layout.catalog()))
            .await?
            .iter()
            .filter_map(|o| name_of(&prefix, o))
            .collect();
        let missing: Vec<String> = repositories
            .into_iter()
            .filter(|r| !entered.contains(r))
            .collect();
        let written = missing.len();
        futures::stream::iter(missing)
            .map(|repository| async move { write_entry(s3, &repository).await })
            .buffer_unordered(AT_ONCE)
            .try_for_each(|()| async { Ok(()) })
            .await?;
        s3.put(
            &complete,
            Bytes::from_static(b"every repository has its entry\n"),
        )
        .await?;
        self.complete.store(true, Ordering::Release);
        Ok(written)
    }
}

/// Up to `n` entries after `after`, in order, each with whether its
/// repository is there; fewer only at the end.
pub async fn entries(s3: &Inner, after: Option<&str>, n: usize) -> Result<Vec<(String, bool)>> {
    let prefix = prefix(s3);
    // `n` is a page's size plus one, and a page may be unbounded: S3 lists
    // at most 1,000 keys a request, and only what it returns is held.
    let mut names = Vec::new();
    let mut page_token = None;
    while names.len() < n {
        let offset = after.map(|after| format!("{prefix}{after}"));
        let options = PaginatedListOptions {
            page_token: page_token.take(),
            ..listing(offset, (n - names.len()).min(MAX_KEYS))
        };
        let listed = list(s3, &prefix, options).await?;
        names.extend(
            listed
                .result
                .objects
                .iter()
                .filter_map(|o| name_of(&prefix, o)),
        );
        match listed.page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    names.truncate(n);
    futures::stream::iter(names)
        .map(|name| async move {
            let there = s3.repository_exists(&name).await?;
            Ok((name, there))
        })
        .buffered(AT_ONCE)
        .try_collect()
        .await
}

/// The entries' common prefix, as listed keys begin.
fn prefix(s3: &Inner) -> String {
    format!("{}/", key(s3.layout.catalog()))
}

/// The repository a listed entry stands for.
fn name_of(prefix: &str, entry: &ObjectMeta) -> Option<String> {
    entry
        .location
        .as_ref()
        .strip_prefix(prefix)
        .map(str::to_string)
}

/// `repository`'s entry, written.
async fn write_entry(s3: &Inner, repository: &str) -> Result<()> {
    s3.put(&key(s3.layout.catalog_entry(repository)), Bytes::new())
        .await
}

#[cfg(test)]
mod tests {
    use super::super::S3Storage;
    use crate::storage::conformance::S3Fixture;
    use crate::storage::{Manifest, MetadataStore};
    use bytes::Bytes;
    use std::time::{Duration, Instant};
    use wharf_spec::Algorithm;

    fn manifest() -> Manifest {
        let content = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
        Manifest {
            digest: Algorithm::Sha256.digest(&content),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            subject: None,
            content,
        }
    }

    fn wait_complete(store: &S3Storage) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !store.catalog.complete() {
            assert!(Instant::now() < deadline, "the catalog was not indexed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An object written under the store's keys, as another writer would.
    fn raw_put(store: &S3Storage, path: std::path::PathBuf, bytes: &'static [u8]) {
        store
            .with(|s3| async move { s3.put(&super::key(path), Bytes::from_static(bytes)).await })
            .unwrap();
    }

    #[test]
    fn repositories_written_without_entries_are_indexed_at_start() {
        let fixture = S3Fixture::new();
        let store = fixture.open_s3();
        wait_complete(&store);
        let m = manifest();
        store.put_manifest("team/app", &m).unwrap();
        // Repositories as registry:2 writes them: links, no entries; and the
        // completion marker gone, as after an operator deleted it.
        let layout = store.inner.layout.clone();
        for name in ["old/one", "old/two", "a-b"] {
            raw_put(&store, layout.revision_link(name, &m.digest), b"x");
        }
        store
            .with(move |s3| async move {
                s3.delete(&super::key(layout.catalog_complete())).await?;
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = fixture.open_s3();
        wait_complete(&store);
        let page = store.list_repositories(None, 10).unwrap();
        assert_eq!(page.entries, ["a-b", "old/one", "old/two", "team/app"]);
        let entries = store
            .with(|s3| async move { s3.list(&super::key(s3.layout.catalog())).await })
            .unwrap();
        assert_eq!(entries.len(), 4, "each repository has its entry now");
    }

    #[test]
    fn entries_without_a_repository_are_skipped_and_pages_still_fill() {
        let store = S3Fixture::new().open_s3();
        wait_complete(&store);
        let m = manifest();
        let layout = store.inner.layout.clone();
        // Stale entries among the real ones, more than a page's worth.
        for i in 0..12 {
            raw_put(&store, layout.catalog_entry(&format!("gone/{i:02}")), b"");
        }
        for name in ["a", "gone/05x", "z"] {
            store.put_manifest(name, &m).unwrap();
        }
        let page = store.list_repositories(None, 2).unwrap();
        assert_eq!(page.entries, ["a", "gone/05x"]);
        assert!(page.more);
        let page = store.list_repositories(Some("gone/05x"), 2).unwrap();
        assert_eq!(page.entries, ["z"]);
        assert!(!page.more);
        // An unbounded page (a catalog GET without `n`) holds only what is listed.
        let all = store.list_repositories(None, u32::MAX).unwrap();
        assert_eq!(all.entries, ["a", "gone/05x", "z"]);
        // A repository whose last manifest is deleted is gone from the catalog.
        store.delete_manifest("z", &m.digest).unwrap();
        assert_eq!(
            store.list_repositories(Some("a"), 5).unwrap().entries,
            ["gone/05x"]
        );
    }
}
