//! Garbage collection of a filesystem data directory, offline (`wharf
//! gc`, in the spirit of `registry garbage-collect`) and online (in the
//! serving process, `storage.maintenance.gc`). Both run [`collect_with`].
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

use crate::storage::{FsStorage, MetadataStore};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
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

/// Names of `dir`'s entries, sorted; empty if it does not exist.
fn entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = match fs::read_dir(dir) {
        Ok(read) => read
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names)
}

/// Digests stored as `<dir>/<alg>/<hex>` directories.
fn digests_under(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut digests = Vec::new();
    for algorithm in entries(dir)? {
        for hex in entries(&dir.join(&algorithm))? {
            if let Ok(d) = Digest::parse(&format!("{algorithm}:{hex}")) {
                digests.push(d);
            }
        }
    }
    Ok(digests)
}

/// Every stored blob (`blobs/<alg>/<xx>/<hex>/data`) with its size.
fn stored_blobs(blobs: &Path) -> io::Result<Vec<(Digest, PathBuf, u64)>> {
    let mut found = Vec::new();
    for algorithm in entries(blobs)? {
        for prefix in entries(&blobs.join(&algorithm))? {
            for hex in entries(&blobs.join(&algorithm).join(&prefix))? {
                let dir = blobs.join(&algorithm).join(&prefix).join(&hex);
                let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
                    continue;
                };
                let size = fs::metadata(dir.join("data")).map_or(0, |m| m.len());
                found.push((digest, dir, size));
            }
        }
    }
    Ok(found)
}

/// What one manifest points at: blobs, index children, subject.
type Pointers = (Vec<Digest>, Vec<Digest>, Option<Digest>);

/// Collect garbage in `store`, which nothing else writes to meanwhile.
pub fn collect(store: &FsStorage, options: Options) -> anyhow::Result<Report> {
    collect_with(store, options, None)
}

/// Collect garbage in `store` while it serves: never manifests, and no
/// blob modified within `grace`.
pub fn collect_online(store: &FsStorage, grace: Duration, dry_run: bool) -> anyhow::Result<Report> {
    let options = Options {
        dry_run,
        delete_untagged: false,
    };
    collect_with(store, options, Some(grace))
}

/// When a blob was last stored or linked.
fn modified(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir.join("data"))
        .or_else(|_| fs::metadata(dir))
        .and_then(|m| m.modified())
        .ok()
}

/// Mark and sweep; with `grace`, online (see the module documentation).
pub fn collect_with(
    store: &FsStorage,
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
    layer_links: HashMap<Digest, Vec<PathBuf>>,
    report: Report,
}

fn mark(store: &FsStorage, delete_untagged: bool) -> anyhow::Result<Marked> {
    let layout = store.layout();
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
    let mut layer_links: HashMap<Digest, Vec<PathBuf>> = HashMap::new();
    for repository in &repositories {
        // Every manifest of the repository, with what it points at.
        let mut manifests: HashMap<Digest, Pointers> = HashMap::new();
        for digest in digests_under(&layout.revisions(repository))? {
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
        for digest in digests_under(&layout.layers(repository))? {
            layer_links
                .entry(digest.clone())
                .or_default()
                .push(layout.layer_link(repository, &digest));
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
    store: &FsStorage,
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
    for (digest, dir, size) in stored_blobs(&store.layout().blobs())? {
        if marked_blobs.contains(&digest) {
            continue;
        }
        if let Some(cutoff) = cutoff
            && modified(&dir).is_none_or(|m| m > cutoff)
        {
            report.young += 1;
            continue;
        }
        let links = layer_links
            .get(&digest)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let removed = dry_run
            || store.pins().sweep(&digest, || -> io::Result<()> {
                crate::storage::files::remove_tree(&dir)?;
                for link in links {
                    if let Some(dir) = link.parent() {
                        crate::storage::files::remove_tree(dir)?;
                    }
                }
                Ok(())
            })?;
        if removed {
            report.links += links.len();
            report.blobs.push((digest, size));
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
pub fn start_online(storage: Arc<FsStorage>, settings: crate::config::OnlineGc, tenant: &str) {
    let tenant = tenant.to_string();
    let spawned = std::thread::Builder::new()
        .name("gc".into())
        .spawn(move || {
            loop {
                std::thread::sleep(settings.interval);
                let started = std::time::Instant::now();
                match collect_online(&storage, settings.grace, settings.dryrun) {
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
    let root = &config.storage.filesystem.rootdirectory;
    anyhow::ensure!(
        root.is_dir(),
        "the data directory {} does not exist (set storage.filesystem.rootdirectory or \
         REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY)",
        root.display()
    );
    let store = FsStorage::open(root, true)?;
    let report = collect(&store, options)?;
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
    use crate::storage::files::write_atomic;
    use crate::storage::{BlobStore, Manifest};
    use wharf_spec::Algorithm;

    /// A stored blob, as a finished upload leaves it, last modified `age` ago.
    fn blob(store: &FsStorage, bytes: &[u8], age: Duration) -> Digest {
        let digest = Algorithm::Sha256.digest(bytes);
        let data = store.layout().blob_data(&digest);
        write_atomic(&store.layout().tmp(), &data, bytes).unwrap();
        fs::File::options()
            .write(true)
            .open(&data)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        digest
    }

    fn image(layer: &Digest) -> Manifest {
        let content = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layer.to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 1}],
        }))
        .unwrap();
        Manifest {
            digest: Algorithm::Sha256.digest(&content),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content,
            subject: None,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn open() -> (tempfile::TempDir, FsStorage) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        (dir, store)
    }

    #[test]
    fn online_gc_keeps_unreferenced_blobs_younger_than_the_grace_period() {
        let (_dir, store) = open();
        let young = blob(&store, b"young", Duration::from_secs(60));
        let old = blob(&store, b"old", 2 * HOUR);
        let report = collect_online(&store, HOUR, false).unwrap();
        assert_eq!(report.young, 1);
        assert_eq!(report.blobs, [(old.clone(), 3)]);
        assert_eq!(store.stat(&young).unwrap(), Some(5));
        assert_eq!(store.stat(&old).unwrap(), None);
    }

    #[test]
    fn linking_an_old_blob_restarts_its_grace_period() {
        let (_dir, store) = open();
        let old = blob(&store, b"old but linked", 2 * HOUR);
        store.link_blob("app", &old).unwrap();
        let report = collect_online(&store, HOUR, false).unwrap();
        assert_eq!((report.blobs.len(), report.young), (0, 1));
        assert!(store.stat(&old).unwrap().is_some());
    }

    #[test]
    fn a_manifest_put_after_the_mark_keeps_its_blobs() {
        let (_dir, store) = open();
        let layer = blob(&store, b"old layer, no manifest yet", 2 * HOUR);
        let orphan = blob(&store, b"old orphan", 2 * HOUR);
        store.pins().begin();
        let marked = mark(&store, false).unwrap();
        // The push lands between the mark and the sweep.
        store.put_manifest("app", &image(&layer)).unwrap();
        let report = sweep(&store, marked, false, Some(HOUR)).unwrap();
        store.pins().end(HOUR);
        assert_eq!(report.blobs.len(), 1, "{report:?}");
        assert_eq!(report.blobs[0].0, orphan);
        assert!(store.stat(&layer).unwrap().is_some());
        // Without pinning (no collection begun), the same mark would have
        // taken it: what kept it was the pin.
        let marked = mark(&store, false).unwrap();
        assert!(marked.blobs.contains(&layer));
    }

    #[test]
    fn a_sweep_without_pins_would_remove_a_blob_referenced_after_the_mark() {
        // The control for the test above: the race is real.
        let (_dir, store) = open();
        let layer = blob(&store, b"old layer, no manifest yet", 2 * HOUR);
        let marked = mark(&store, false).unwrap();
        let report = sweep(&store, marked, false, Some(HOUR)).unwrap();
        assert_eq!(report.blobs.len(), 1);
        assert_eq!(store.stat(&layer).unwrap(), None);
    }

    #[test]
    fn a_manifest_naming_a_blob_collected_meanwhile_is_refused() {
        let (_dir, store) = open();
        let layer = blob(&store, b"seen by a client, then collected", 2 * HOUR);
        let report = collect_online(&store, HOUR, false).unwrap();
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

    #[test]
    fn online_gc_never_removes_manifests() {
        let (_dir, store) = open();
        let layer = blob(&store, b"layer", 2 * HOUR);
        let manifest = image(&layer);
        store.put_manifest("app", &manifest).unwrap();
        let report = collect_online(&store, Duration::from_secs(1), false).unwrap();
        assert!(report.manifests.is_empty() && report.blobs.is_empty());
        assert!(
            store
                .get_manifest("app", &manifest.digest)
                .unwrap()
                .is_some()
        );
    }
}
