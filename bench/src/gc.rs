//! Offline garbage collection at two sizes: `wharf gc` against Distribution's
//! `garbage-collect`, on the same registry:2 layout written directly. Of
//! every ten blobs six are reached (a manifest, its config and four layers,
//! in a repository of its own) and four are reached by nothing; each run
//! removes those four, which are written again before the next one. The
//! figure is the time per 1,000 blobs, which should not grow with the
//! registry.

use crate::client;
use crate::scale::ScaleRow;
use crate::servers::{Binaries, Kind};
use crate::{Args, Samples, alternate};
use anyhow::{Context as _, bail, ensure};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Blobs in the registries collected.
const SIZES: [usize; 2] = [10_000, 100_000];

/// A small blob of new content: the `i`th of kind `what`.
fn blob(what: &str, i: usize) -> Vec<u8> {
    format!("{what} {i:08} wharf-bench gc").into_bytes()
}

/// Where `bytes` is stored, by digest, and its hex digest.
fn blob_path(v2: &Path, bytes: &[u8]) -> (PathBuf, String) {
    let digest = client::sha256(bytes);
    let hex = digest["sha256:".len()..].to_string();
    (
        v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
        hex,
    )
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::create_dir_all(path.parent().context("a path with a parent")?)?;
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `blobs` / 10 repositories, each with a tagged manifest of a config and
/// four layers (six blobs reached); the unreached blobs are [`orphans`].
fn populate(root: &Path, blobs: usize) -> anyhow::Result<()> {
    let v2 = root.join("docker/registry/v2");
    for r in 0..blobs / 10 {
        let descriptor = |bytes: Vec<u8>, media_type: &str| -> anyhow::Result<_> {
            let (path, hex) = blob_path(&v2, &bytes);
            write(&path, &bytes)?;
            Ok(serde_json::json!({
                "mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len(),
            }))
        };
        let config = descriptor(
            blob("config", r),
            "application/vnd.oci.image.config.v1+json",
        )?;
        let layers = (0..4)
            .map(|l| {
                descriptor(
                    blob("layer", r * 4 + l),
                    "application/vnd.oci.image.layer.v1.tar",
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": client::OCI_MANIFEST,
            "config": config,
            "layers": layers,
        })
        .to_string();
        let (path, manifest_hex) = blob_path(&v2, manifest.as_bytes());
        write(&path, manifest.as_bytes())?;
        let repo = v2.join(format!("repositories/gc/r{r:06}"));
        let link = |hex: &str| format!("sha256:{hex}");
        let mut linked = vec![config["digest"].clone()];
        linked.extend(layers.iter().map(|l| l["digest"].clone()));
        for digest in linked {
            let digest = digest.as_str().context("a digest")?;
            let hex = &digest["sha256:".len()..];
            write(
                &repo.join(format!("_layers/sha256/{hex}/link")),
                digest.as_bytes(),
            )?;
        }
        write(
            &repo.join(format!("_manifests/revisions/sha256/{manifest_hex}/link")),
            link(&manifest_hex).as_bytes(),
        )?;
        let tag = repo.join("_manifests/tags/latest");
        write(&tag.join("current/link"), link(&manifest_hex).as_bytes())?;
        write(
            &tag.join(format!("index/sha256/{manifest_hex}/link")),
            link(&manifest_hex).as_bytes(),
        )?;
    }
    Ok(())
}

/// Write the `blobs` × 4/10 blobs nothing reaches, stored a day ago (older
/// than any grace period).
fn orphans(root: &Path, blobs: usize) -> anyhow::Result<()> {
    let v2 = root.join("docker/registry/v2");
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    for i in 0..blobs * 4 / 10 {
        let bytes = blob("orphan", i);
        let (path, _) = blob_path(&v2, &bytes);
        write(&path, &bytes)?;
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(day_ago)?;
    }
    Ok(())
}

/// Blob data files under `root`.
fn count_blobs(root: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    let blobs = root.join("docker/registry/v2/blobs/sha256");
    for prefix in fs::read_dir(blobs)? {
        for blob in fs::read_dir(prefix?.path())? {
            n += usize::from(blob?.path().join("data").exists());
        }
    }
    Ok(n)
}

/// Run one registry's offline collector on `config`; the wall time.
fn collect(kind: Kind, bins: &Binaries, config: &Path) -> anyhow::Result<Duration> {
    let mut command = match kind {
        Kind::Distribution => {
            let mut c = Command::new(&bins.distribution);
            c.arg("garbage-collect");
            c
        }
        Kind::Wharf => {
            let mut c = Command::new(&bins.wharf);
            c.arg("gc").env_remove("WHARF_LOG");
            c
        }
        Kind::Standalone => bail!("the standalone component has no collector"),
    };
    command.arg(config);
    let started = Instant::now();
    let out = command
        .output()
        .with_context(|| format!("running {kind}'s collector"))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{kind}'s collector failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// The line: ms per 1,000 blobs at each of [`SIZES`].
pub async fn line(args: &Args, bins: &Binaries) -> anyhow::Result<ScaleRow> {
    let work = tempfile::Builder::new()
        .prefix("wharf-bench-gc-")
        .tempdir()?;
    let mut samples = Vec::new();
    for &size in &SIZES {
        let root = work.path().join(size.to_string());
        let started = Instant::now();
        populate(&root, size)?;
        let config = work.path().join(format!("config-{size}.yml"));
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
                root.display()
            ),
        )?;
        eprintln!(
            "gc line at {size} blobs: written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut at_size = Samples::default();
        for rep in 0..args.reps {
            for kind in alternate(rep, [Kind::Distribution, Kind::Wharf]) {
                orphans(&root, size)?;
                ensure!(
                    count_blobs(&root)? == size,
                    "{size} blobs before collecting"
                );
                crate::settle().await?;
                let took = collect(kind, bins, &config)?;
                let left = count_blobs(&root)?;
                ensure!(
                    left == size * 6 / 10,
                    "{kind}'s collector left {left} of {size} blobs, expected {}",
                    size * 6 / 10
                );
                at_size.push(kind, took.as_secs_f64() * 1e3 / (size as f64 / 1000.0));
                eprintln!(
                    "  rep {rep} {kind}: {:.0} ms ({:.1} ms per 1,000 blobs)",
                    took.as_secs_f64() * 1e3,
                    at_size.last(kind)
                );
            }
        }
        samples.push(at_size);
        fs::remove_dir_all(&root)?;
    }
    Ok(ScaleRow::new(
        "offline GC, 40 % unreached, time per 1,000 blobs (by blobs)",
        "ms",
        SIZES.to_vec(),
        &samples,
        Some(1.5),
    ))
}
