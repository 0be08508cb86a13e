//! Garbage collection, offline (`wharf gc`, in the spirit of `registry
//! garbage-collect`) and online (in the serving process,
//! `storage.maintenance.gc`). Both run [`collect_with`], on any
//! [`Backend`]: it reads and deletes through the backend's listings only.
//!
//! Mark: in every repository, the roots are its tagged manifests (with
//! `--delete-untagged`) or all its manifests (without; always online). From
//! a kept manifest, its index children, its `subject` and the manifests
//! whose subject it is (its referrers) are kept too, to a fixed point;
//! every blob a kept manifest names (config, layers, blobs) and the kept
//! manifests' own bytes are marked, across all repositories.
//!
//! Sweep: with `--delete-untagged` (offline only), the manifests not kept
//! are removed from their repository; then every blob no kept manifest
//! names is removed, with the repositories' layer links to it.
//!
//! Online, pushes go on while this runs; see [`crate::storage::pins`] for
//! how they are kept apart. The collection begins by asking writes to pin
//! what they touch, so a manifest put after the mark read its repository
//! keeps its blobs; each blob is deleted under the exclusive side of the
//! pins' lock, after checking it was not pinned; and blobs modified (stored
//! or linked) within the grace period are left, since a push uploads its
//! blobs before the manifest that names them.

use crate::storage::Backend;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wharf_spec::Digest;
use wharf_spec::references::references;

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Default)]
pub struct Report {
    /// `(repository, manifest)` pairs removed.
    pub manifests: Vec<(String, Digest)>,
    /// Blobs removed, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Repository layer links removed because their blob was.
    pub links: usize,
    /// Unreferenced blobs left because they are younger than the grace
    /// period (online only).
    pub young: usize,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, size)| size).sum()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dry_run: bool,
    pub delete_untagged: bool,
}

/// What one manifest points at: blobs, index children, subject.
type Pointers = (Vec<Digest>, Vec<Digest>, Option<Digest>);

/// Collect garbage in `store`, which nothing else writes to meanwhile.
pub fn collect(store: &dyn Backend, options: Options) -> anyhow::Result<Report> {
    collect_with(store, options, None)
}

/// Collect garbage in `store` while it serves: never manifests, and no
/// blob modified within `grace`.
pub fn collect_online(
    store: &dyn Backend,
    grace: Duration,
    dry_run: bool,
) -> anyhow::Result<Report> {
    let options = Options {
        dry_run,
        delete_untagged: false,
    };
    collect_with(store, options, Some(grace))
}

/// Mark and sweep; with `grace`, online (see the module documentation).
pub fn collect_with(
    store: &dyn Backend,
    options: Options,
    grace: Option<Duration>,
) -> anyhow::Result<Report> {
    let pins = store.pins();
    pins.begin();
    let report = mark(store, options.delete_untagged && grace.is_none())
        .and_then(|marked| sweep(store, marked, options.dry_run, grace));
    pins.end(grace.unwrap_or_default());
    report
}

/// What the mark found: the blobs to keep, every repository's layer links
/// by blob, and (in `report`) the manifests to remove.
struct Marked {
    blobs: HashSet<Digest>,
    layer_links: HashMap<Digest, Vec<String>>,
    report: Report,
}

fn mark(store: &dyn Backend, delete_untagged: bool) -> anyhow::Result<Marked> {
    let mut repositories = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_repositories(after.as_deref(), 1000)?;
        after = page.entries.last().cloned();
        repositories.extend(page.entries);
        if !page.more {
            break;
        }
    }
    let mut report = Report::default();
    let mut marked_blobs: HashSet<Digest> = HashSet::new();
    let mut layer_links: HashMap<Digest, Vec<String>> = HashMap::new();
    for repository in &repositories {
        // Every manifest of the repository, with what it points at.
        let mut manifests: HashMap<Digest, Pointers> = HashMap::new();
        for digest in store.list_manifests(repository)? {
            let Some(manifest) = store.get_manifest(repository, &digest)? else {
                continue;
            };
            let named = references(&manifest.content);
            manifests.insert(digest, (named.blobs, named.manifests, manifest.subject));
        }
        let mut kept: HashSet<Digest> = if delete_untagged {
            let mut tagged = HashSet::new();
            if let Some(page) = store.list_tags(repository, None, u32::MAX)? {
                for tag in page.entries {
                    if let Some(d) = store.resolve_tag(repository, &tag)? {
                        tagged.insert(d);
                    }
                }
            }
            tagged
        } else {
            manifests.keys().cloned().collect()
        };
        // Close over children, subjects and referrers.
        loop {
            let mut more = Vec::new();
            for (digest, (_, children, subject)) in &manifests {
                if kept.contains(digest) {
                    more.extend(children.iter().cloned());
                    more.extend(subject.iter().cloned());
                } else if subject.as_ref().is_some_and(|s| kept.contains(s)) {
                    more.push(digest.clone());
                }
            }
            let before = kept.len();
            kept.extend(more.into_iter().filter(|d| manifests.contains_key(d)));
            if kept.len() == before {
                break;
            }
        }
        for (digest, (blobs, _, _)) in &manifests {
            if kept.contains(digest) {
                marked_blobs.insert(digest.clone());
                marked_blobs.extend(blobs.iter().cloned());
            } else {
                report.manifests.push((repository.clone(), digest.clone()));
            }
        }
        for digest in store.list_linked_blobs(repository)? {
            layer_links
                .entry(digest)
                .or_default()
                .push(repository.clone());
        }
    }
    report
        .manifests
        .sort_by_key(|(repository, digest)| (repository.clone(), digest.to_string()));
    Ok(Marked {
        blobs: marked_blobs,
        layer_links,
        report,
    })
}

/// Remove what `marked` does not keep; with `grace`, only blobs last
/// modified before it, and only those no write pinned meanwhile.
fn sweep(
    store: &dyn Backend,
    marked: Marked,
    dry_run: bool,
    grace: Option<Duration>,
) -> anyhow::Result<Report> {
    let Marked {
        blobs: marked_blobs,
        layer_links,
        mut report,
    } = marked;
    let cutoff = grace.map(|g| {
        SystemTime::now()
            .checked_sub(g)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    for blob in store.list_blobs()? {
        let digest = blob.digest;
        if marked_blobs.contains(&digest) {
            continue;
        }
        if let Some(cutoff) = cutoff
            && blob.modified.is_none_or(|m| m > cutoff)
        {
            report.young += 1;
            continue;
        }
        let links = layer_links
            .get(&digest)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let removed = dry_run
            || store
                .pins()
                .sweep(&digest, || store.sweep_blob(&digest, links))?;
        if removed {
            report.links += links.len();
            report.blobs.push((digest, blob.size));
        }
    }
    if !dry_run {
        for (repository, digest) in &report.manifests {
            store.delete_manifest(repository, digest)?;
        }
    }
    Ok(report)
}

/// Collect garbage in `storage` every `settings.interval`, on a thread of
/// its own, for as long as the process runs (the first run one interval
/// after start).
pub fn start_online(
    storage: Arc<dyn Backend>,
    settings: crate::storage::config::OnlineGc,
    tenant: &str,
) {
    let tenant = tenant.to_string();
    let spawned = std::thread::Builder::new()
        .name("gc".into())
        .spawn(move || {
            loop {
                std::thread::sleep(settings.interval);
                let started = std::time::Instant::now();
                match collect_online(&*storage, settings.grace, settings.dryrun) {
                    Ok(report) => tracing::info!(
                        tenant,
                        blobs = report.blobs.len(),
                        layer_links = report.links,
                        bytes = report.bytes(),
                        young = report.young,
                        dry_run = settings.dryrun,
                        took_ms = started.elapsed().as_millis() as u64,
                        "online garbage collection"
                    ),
                    Err(e) => tracing::warn!(tenant, error = %e, "online garbage collection failed; retrying next interval"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start online garbage collection; run `wharf gc` offline");
    }
}

/// `wharf gc`: open the data directory the configuration names, collect,
/// print what was (or would be) removed.
pub fn run(config: &crate::config::Config, options: Options) -> anyhow::Result<()> {
    let driver = config.storage.driver();
    if let crate::storage::config::StorageDriver::Filesystem(fs) = &driver {
        anyhow::ensure!(
            fs.rootdirectory.is_dir(),
            "the data directory {} does not exist (set storage.filesystem.rootdirectory or \
             REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY)",
            fs.rootdirectory.display()
        );
    }
    let opening = crate::storage::Options {
        delete_enabled: true,
        redirect: false,
    };
    let store = crate::storage::open(&driver, opening)?;
    let report = collect(&*store, options)?;
    let verb = if options.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (repository, digest) in &report.manifests {
        println!("{verb} manifest {repository}@{digest}");
    }
    for (digest, size) in &report.blobs {
        println!("{verb} blob {digest} ({size} bytes)");
    }
    println!(
        "{}: {} manifests, {} blobs, {} layer links; {} bytes {}",
        if options.dry_run { "dry run" } else { "done" },
        report.manifests.len(),
        report.blobs.len(),
        report.links,
        report.bytes(),
        if options.dry_run {
            "would be reclaimed"
        } else {
            "reclaimed"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{Fixture, image, on_every_backend, store_blob};

    /// A stored blob, as a finished upload leaves it, last modified `age` ago.
    async fn blob(f: &dyn Fixture, store: &dyn Backend, bytes: &[u8], age: Duration) -> Digest {
        let digest = store_blob(store, "uploads", bytes).await;
        if !age.is_zero() {
            f.backdate_blob(&digest, age);
        }
        digest
    }

    const HOUR: Duration = Duration::from_secs(3600);

    on_every_backend!(
        offline_gc_with_delete_untagged_removes_untagged_manifests_and_their_blobs;
        only_local:
        online_gc_keeps_unreferenced_blobs_younger_than_the_grace_period,
        linking_an_old_blob_restarts_its_grace_period,
        a_manifest_put_after_the_mark_keeps_its_blobs,
        a_sweep_without_pins_would_remove_a_blob_referenced_after_the_mark,
        a_manifest_naming_a_blob_collected_meanwhile_is_refused,
        online_gc_never_removes_manifests,
    );

    async fn online_gc_keeps_unreferenced_blobs_younger_than_the_grace_period(f: &dyn Fixture) {
        let store = f.open();
        let store = &*store;
        let young = blob(f, store, b"young", Duration::from_secs(60)).await;
        let old = blob(f, store, b"old", 2 * HOUR).await;
        let report = collect_online(store, HOUR, false).unwrap();
        assert_eq!(report.young, 1);
        assert_eq!(report.blobs, [(old.clone(), 3)]);
        assert_eq!(store.stat(&young).unwrap(), Some(5));
        assert_eq!(store.stat(&old).unwrap(), None);
    }

    async fn linking_an_old_blob_restarts_its_grace_period(f: &dyn Fixture) {
        let store = f.open();
        let store = &*store;
        let old = blob(f, store, b"old but linked", 2 * HOUR).await;
        store.link_blob("app", &old).unwrap();
        let report = collect_online(store, HOUR, false).unwrap();
        assert_eq!((report.blobs.len(), report.young), (0, 1));
        assert!(store.stat(&old).unwrap().is_some());
    }

    async fn a_manifest_put_after_the_mark_keeps_its_blobs(f: &dyn Fixture) {
        let store = f.open();
        let store = &*store;
        let layer = blob(f, store, b"old layer, no manifest yet", 2 * HOUR).await;
        let orphan = blob(f, store, b"old orphan", 2 * HOUR).await;
        store.pins().begin();
        let marked = mark(store, false).unwrap();
        // The push lands between the mark and the sweep.
        store.put_manifest("app", &image(&layer)).unwrap();
        let report = sweep(store, marked, false, Some(HOUR)).unwrap();
        store.pins().end(HOUR);
        assert_eq!(report.blobs.len(), 1, "{report:?}");
        assert_eq!(report.blobs[0].0, orphan);
        assert!(store.stat(&layer).unwrap().is_some());
        // Without pinning (no collection begun), the same mark would have
        // taken it: what kept it was the pin.
        let marked = mark(store, false).unwrap();
        assert!(marked.blobs.contains(&layer));
    }

    async fn a_sweep_without_pins_would_remove_a_blob_referenced_after_the_mark(f: &dyn Fixture) {
        // The control for the test above: the race is real.
        let store = f.open();
        let store = &*store;
        let layer = blob(f, store, b"old layer, no manifest yet", 2 * HOUR).await;
        let marked = mark(store, false).unwrap();
        let report = sweep(store, marked, false, Some(HOUR)).unwrap();
        assert_eq!(report.blobs.len(), 1);
        assert_eq!(store.stat(&layer).unwrap(), None);
    }

    async fn a_manifest_naming_a_blob_collected_meanwhile_is_refused(f: &dyn Fixture) {
        let store = f.open();
        let store = &*store;
        let layer = blob(f, store, b"seen by a client, then collected", 2 * HOUR).await;
        let report = collect_online(store, HOUR, false).unwrap();
        assert_eq!(report.blobs.len(), 1);
        let manifest = image(&layer);
        let err = store.put_manifest("app", &manifest).unwrap_err();
        assert!(err.to_string().contains("garbage-collected"), "{err}");
        assert!(
            store
                .get_manifest("app", &manifest.digest)
                .unwrap()
                .is_none()
        );
    }

    async fn online_gc_never_removes_manifests(f: &dyn Fixture) {
        let store = f.open();
        let store = &*store;
        let layer = blob(f, store, b"layer", 2 * HOUR).await;
        let manifest = image(&layer);
        store.put_manifest("app", &manifest).unwrap();
        let report = collect_online(store, Duration::from_secs(1), false).unwrap();
        assert!(report.manifests.is_empty() && report.blobs.is_empty());
        assert!(
            store
                .get_manifest("app", &manifest.digest)
                .unwrap()
                .is_some()
        );
    }

    async fn offline_gc_with_delete_untagged_removes_untagged_manifests_and_their_blobs(
        f: &dyn Fixture,
    ) {
        let store = f.open();
        let store = &*store;
        let kept_layer = blob(f, store, b"tagged layer", Duration::ZERO).await;
        let lost_layer = blob(f, store, b"untagged layer", Duration::ZERO).await;
        for layer in [&kept_layer, &lost_layer] {
            store.link_blob("app", layer).unwrap();
        }
        let (kept, lost) = (image(&kept_layer), image(&lost_layer));
        store.put_manifest("app", &kept).unwrap();
        store.put_manifest("app", &lost).unwrap();
        store.set_tag("app", "latest", &kept.digest).unwrap();
        let options = Options {
            dry_run: false,
            delete_untagged: true,
        };
        let dry = collect(
            store,
            Options {
                dry_run: true,
                ..options
            },
        )
        .unwrap();
        assert_eq!(dry.manifests, [("app".to_string(), lost.digest.clone())]);
        assert!(store.stat(&lost_layer).unwrap().is_some());
        let report = collect(store, options).unwrap();
        assert_eq!(report.manifests, dry.manifests);
        let mut removed: Vec<Digest> = report.blobs.iter().map(|(d, _)| d.clone()).collect();
        removed.sort_by_key(|d| d.to_string());
        let mut want = vec![lost_layer.clone(), lost.digest.clone()];
        want.sort_by_key(|d| d.to_string());
        assert_eq!(removed, want);
        assert_eq!(report.links, 1);
        assert!(store.get_manifest("app", &lost.digest).unwrap().is_none());
        assert!(!store.blob_linked("app", &lost_layer).unwrap());
        assert!(store.get_manifest("app", &kept.digest).unwrap().is_some());
        assert!(store.blob_linked("app", &kept_layer).unwrap());
        assert_eq!(store.stat(&kept_layer).unwrap(), Some(12));
    }
}
