//! Lines whose cost must not grow with the registry: a page of the catalog,
//! of a repository's tags and of a subject's referrers, and the start-up,
//! each on registries of several sizes. The catalog and tag registries are
//! written straight into registry:2's filesystem layout (which both
//! registries read) once per run; referrers, which only Wharf stores, are
//! pushed through the API.

use crate::client::{self, OCI_MANIFEST, Registry};
use crate::servers::{Binaries, Kind, Server, Store};
use crate::{Args, Samples, alternate};
use anyhow::{Context as _, ensure};
use futures::StreamExt as _;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Entries in a page: the `n` of every request.
const PAGE: usize = 100;

/// Requests timed back to back in each repetition of a page line.
pub const REQUESTS_PER_REP: usize = 3;

/// The registry sizes of the catalog and tag lines.
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// The sizes of the S3 lines: their repositories, tags and referrers are
/// pushed through the API, a few thousand a minute.
const S3_SIZES: [usize; 2] = [1_000, 10_000];

/// The numbers of referrers of the referrers line.
const REFERRERS: [usize; 2] = [1_000, 10_000];

/// Starts of each registry per repetition of the start-up line.
pub const STARTS_PER_REP: usize = 3;

/// A line measured at several sizes, for both registries.
pub struct ScaleRow {
    line: String,
    unit: &'static str,
    sizes: Vec<usize>,
    distribution: Vec<f64>,
    wharf: Vec<f64>,
    /// Wharf's figure at the largest size over the one at the smallest,
    /// at most this; `None` for a line that only explains.
    flat_within: Option<f64>,
}

impl ScaleRow {
    /// Each kind's medians at `sizes`, from one set of samples per size.
    pub fn new(
        line: &str,
        unit: &'static str,
        sizes: Vec<usize>,
        samples: &[Samples],
        flat_within: Option<f64>,
    ) -> ScaleRow {
        ScaleRow {
            line: line.to_string(),
            unit,
            sizes,
            distribution: medians(samples, Kind::Distribution),
            wharf: medians(samples, Kind::Wharf),
            flat_within,
        }
    }
}

/// A repository's name in the generated registries: sorted as numbered.
fn repository(i: usize) -> String {
    format!("scale/r{i:06}")
}

fn tag(i: usize) -> String {
    format!("t{i:06}")
}

/// Write `bytes` at `path`, making its directories.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::create_dir_all(path.parent().context("a path with a parent")?)?;
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// A registry:2 filesystem root holding `repositories` repositories with
/// the same small image, the first with `tags` tags of it, every other one
/// tagged `latest`: what registry:2 itself would have written, file for
/// file.
fn populate(root: &Path, repositories: usize, tags: usize) -> anyhow::Result<()> {
    let v2 = root.join("docker/registry/v2");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer: Vec<u8> = (0..1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let descriptor = |bytes: &[u8], media_type: &str| serde_json::json!({"mediaType": media_type, "digest": client::sha256(bytes), "size": bytes.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(&layer, "application/vnd.oci.image.layer.v1.tar")],
    })
    .to_string();
    let hex = |bytes: &[u8]| client::sha256(bytes)["sha256:".len()..].to_string();
    for blob in [&config[..], &layer, manifest.as_bytes()] {
        let h = hex(blob);
        write(&v2.join(format!("blobs/sha256/{}/{h}/data", &h[..2])), blob)?;
    }
    let (config, layer, manifest) = (hex(config), hex(&layer), hex(manifest.as_bytes()));
    let link = |hex: &str| format!("sha256:{hex}");
    let tag_files = |repo: &Path, tag: &str| -> anyhow::Result<()> {
        let dir = repo.join("_manifests/tags").join(tag);
        write(&dir.join("current/link"), link(&manifest).as_bytes())?;
        write(
            &dir.join(format!("index/sha256/{manifest}/link")),
            link(&manifest).as_bytes(),
        )
    };
    let one = |i: usize| -> anyhow::Result<()> {
        let repo = v2.join("repositories").join(repository(i));
        for blob in [&config, &layer] {
            write(
                &repo.join(format!("_layers/sha256/{blob}/link")),
                link(blob).as_bytes(),
            )?;
        }
        write(
            &repo.join(format!("_manifests/revisions/sha256/{manifest}/link")),
            link(&manifest).as_bytes(),
        )?;
        if i == 0 {
            for t in 0..tags {
                tag_files(&repo, &tag(t))?;
            }
        } else {
            tag_files(&repo, "latest")?;
        }
        Ok(())
    };
    // Two writers: the machine's cores, and far fewer than its disk's queue.
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                scope.spawn(move || -> anyhow::Result<()> {
                    (w..repositories).step_by(2).try_for_each(one)
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("a writer panicked"))
    })
}

/// What a page's body must be.
type Check<'a> = Box<dyn Fn(&serde_json::Value) -> anyhow::Result<()> + Sync + 'a>;

/// Time one page: `REQUESTS_PER_REP` GETs back to back, each checked by
/// `check`; the mean in milliseconds.
async fn page_ms(
    registry: &Registry,
    path: &str,
    accept: &str,
    check: &(dyn Fn(&serde_json::Value) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<f64> {
    let mut total = Duration::ZERO;
    for _ in 0..REQUESTS_PER_REP {
        let (took, body) = registry.get_json(path, accept).await?;
        check(&body).with_context(|| format!("GET {path}"))?;
        total += took;
    }
    Ok(total.as_secs_f64() * 1e3 / REQUESTS_PER_REP as f64)
}

/// That `body[key]` is a page of `PAGE` names starting with `first`, or,
/// for a registry that does not page (`all` entries, Distribution 2.8's
/// tag list), every name.
fn expect_page(body: &serde_json::Value, key: &str, first: &str, all: usize) -> anyhow::Result<()> {
    let names = body[key]
        .as_array()
        .with_context(|| format!("no {key} array in {body:.200}"))?;
    let got = names.first().and_then(|n| n.as_str()).unwrap_or("");
    ensure!(
        names.len() == PAGE || names.len() == all,
        "{} {key}, expected {PAGE}",
        names.len()
    );
    if names.len() == PAGE {
        ensure!(
            got == first,
            "the page starts at {got:?}, expected {first:?}"
        );
    }
    Ok(())
}

/// Median of a kind's figure for each size, in order.
fn medians(samples: &[Samples], kind: Kind) -> Vec<f64> {
    samples.iter().map(|s| s.median(kind)).collect()
}

/// Catalog and tag pages, first and deep, and the start-up, on registries
/// of each of [`SIZES`].
pub async fn lines(args: &Args, bins: &Binaries) -> anyhow::Result<Vec<ScaleRow>> {
    let work = tempfile::Builder::new()
        .prefix("wharf-bench-scale-")
        .tempdir()?;
    let mut samples: [Vec<Samples>; 5] = Default::default();
    for &size in &SIZES {
        let root = work.path().join(size.to_string());
        let started = std::time::Instant::now();
        let root_for = root.clone();
        tokio::task::spawn_blocking(move || populate(&root_for, size, size)).await??;
        eprintln!(
            "scale lines at {size}: {size} repositories, {size} tags written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        crate::settle().await?;
        let store = Store::Existing(root.clone());
        let deep = size * 9 / 10;
        let catalog_first = format!("/v2/_catalog?n={PAGE}");
        let catalog_deep = format!("/v2/_catalog?n={PAGE}&last={}", repository(deep - 1));
        let tags_first = format!("/v2/{}/tags/list?n={PAGE}", repository(0));
        let tags_deep = format!(
            "/v2/{}/tags/list?n={PAGE}&last={}",
            repository(0),
            tag(deep - 1)
        );
        let all_tags = size;
        // Each page with the key of its names, the first name it must
        // hold, and how many a registry that does not page returns.
        let pages = [
            (catalog_first, "repositories", repository(0), size),
            (catalog_deep, "repositories", repository(deep), size),
            (tags_first, "tags", tag(0), all_tags),
            (tags_deep, "tags", tag(deep), all_tags),
        ];
        let checks: Vec<(&str, Check)> = pages
            .iter()
            .map(|(path, key, first, all)| {
                let check: Check = Box::new(move |b| expect_page(b, key, first, *all));
                (path.as_str(), check)
            })
            .collect();
        let mut at_size: [Samples; 5] = Default::default();
        for rep in 0..args.reps {
            for kind in alternate(rep, [Kind::Distribution, Kind::Wharf]) {
                for _ in 0..STARTS_PER_REP {
                    let server = Server::start_on(kind, bins, None, &store)?;
                    at_size[4].push(kind, server.ready_after.as_secs_f64() * 1e3);
                }
                let server = Server::start_on(kind, bins, None, &store)?;
                let registry = Registry::new(server.base(), None)?;
                // One untimed round first: what a running registry has
                // read once (a tag listing) it may keep.
                for (path, check) in &checks {
                    page_ms(&registry, path, "application/json", check.as_ref()).await?;
                }
                for (i, (path, check)) in checks.iter().enumerate() {
                    let ms = page_ms(&registry, path, "application/json", check.as_ref()).await?;
                    at_size[i].push(kind, ms);
                }
                eprintln!(
                    "  rep {rep} {kind}: catalog {:.1} / {:.1} ms, tags {:.1} / {:.1} ms (first / deep), \
                     start-up {:.0} ms",
                    at_size[0].last(kind),
                    at_size[1].last(kind),
                    at_size[2].last(kind),
                    at_size[3].last(kind),
                    at_size[4].last(kind),
                );
            }
        }
        for (all, one) in samples.iter_mut().zip(at_size) {
            all.push(one);
        }
        let root_for = root.clone();
        tokio::task::spawn_blocking(move || fs::remove_dir_all(root_for)).await??;
    }
    let row = |line: &str, unit, samples: &[Samples], flat_within| {
        ScaleRow::new(line, unit, SIZES.to_vec(), samples, flat_within)
    };
    let [catalog_first, catalog_deep, tags_first, tags_deep, start] = samples;
    let mut rows = vec![
        row(
            &format!("catalog, first page of {PAGE} (by repositories)"),
            "ms",
            &catalog_first,
            Some(1.5),
        ),
        row(
            &format!("catalog, page of {PAGE} at 90 % (by repositories)"),
            "ms",
            &catalog_deep,
            Some(1.5),
        ),
        row(
            &format!(
                "tag list, first page of {PAGE} (by tags; Distribution 2.8 returns every tag)"
            ),
            "ms",
            &tags_first,
            Some(1.5),
        ),
        row(
            &format!(
                "tag list, page of {PAGE} at 90 % (by tags; Distribution 2.8 returns every tag)"
            ),
            "ms",
            &tags_deep,
            Some(1.5),
        ),
        row(
            "start-up, exec to answering (by repositories)",
            "ms",
            &start,
            None,
        ),
    ];
    rows.push(referrers_line(args, bins).await?);
    Ok(rows)
}

/// A page of a subject's referrers with [`REFERRERS`] of them, pushed
/// through the API. Distribution 2.8 has no referrers API: Wharf only.
async fn referrers_line(args: &Args, bins: &Binaries) -> anyhow::Result<ScaleRow> {
    let server = Server::start(Kind::Wharf, bins, None)?;
    let registry = Registry::new(server.base(), None)?;
    let mut subjects = Vec::new();
    for &count in &REFERRERS {
        let repo = format!("scale/referrers-{count}");
        let subject = registry.push_small_image(&repo, "subject").await?;
        let (digest, size) = registry.head_manifest(&subject).await?;
        registry
            .upload_monolithic(&repo, bytes::Bytes::from_static(b"{}"), EMPTY)
            .await?;
        let started = std::time::Instant::now();
        push_all(0..count, |i| {
            let registry = registry.clone();
            let (repo, digest) = (repo.clone(), digest.clone());
            async move {
                let manifest = referrer(&digest, size, i);
                let reference = client::sha256(manifest.as_bytes());
                registry.put_manifest(&repo, &reference, manifest).await
            }
        })
        .await?;
        eprintln!(
            "referrers line: {count} referrers pushed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        subjects.push((repo.clone(), digest.clone(), count));
    }
    let mut samples: Vec<Samples> = REFERRERS.iter().map(|_| Samples::default()).collect();
    let accept = "application/vnd.oci.image.index.v1+json";
    for rep in 0..args.reps {
        for ((repo, digest, count), samples) in subjects.iter().zip(&mut samples) {
            let path = format!("/v2/{repo}/referrers/{digest}?n={PAGE}");
            let count = *count;
            let check = move |body: &serde_json::Value| -> anyhow::Result<()> {
                let n = body["manifests"].as_array().map_or(0, Vec::len);
                ensure!(n == PAGE.min(count), "{n} referrers on the page");
                Ok(())
            };
            page_ms(&registry, &path, accept, &check).await?;
            samples.push(
                Kind::Wharf,
                page_ms(&registry, &path, accept, &check).await?,
            );
            eprintln!(
                "  rep {rep} at {count}: {:.1} ms",
                samples.last(Kind::Wharf)
            );
        }
    }
    Ok(ScaleRow {
        line: format!("referrers, first page of {PAGE} (by referrers; Wharf only)"),
        unit: "ms",
        sizes: REFERRERS.to_vec(),
        distribution: vec![f64::NAN; REFERRERS.len()],
        wharf: medians(&samples, Kind::Wharf),
        flat_within: Some(1.5),
    })
}

/// Catalog, tag and referrer pages on S3 at each of [`S3_SIZES`], Wharf
/// only: repositories are made by pushing a two-byte blob through the API
/// (which writes each one's catalog entry), tags and referrers by pushing
/// artifacts that name one subject, each under a tag of its own.
/// registry:2's S3 catalog lists every "directory" of the bucket for each
/// page, and 2.8 has no referrers API, so it is left out.
pub async fn s3_lines(
    args: &Args,
    bins: &Binaries,
    store: &Store,
) -> anyhow::Result<Vec<ScaleRow>> {
    let server = Server::start_on(Kind::Wharf, bins, None, store)?;
    let registry = Registry::new(server.base(), None)?;
    let tags_repo = "scale/tags";
    // Tagged after every `t…` tag, so the tag pages start at `tag(0)`.
    let subject = registry.push_small_image(tags_repo, "z-subject").await?;
    let (digest, size) = registry.head_manifest(&subject).await?;
    registry
        .upload_monolithic(tags_repo, bytes::Bytes::from_static(b"{}"), EMPTY)
        .await?;
    let mut samples: [Vec<Samples>; 5] = Default::default();
    let mut made = 0;
    for &n in &S3_SIZES {
        let started = std::time::Instant::now();
        push_all(made..n, |i| {
            let (registry, digest) = (registry.clone(), digest.clone());
            async move {
                let blob = bytes::Bytes::from_static(b"{}");
                registry
                    .upload_monolithic(&repository(i), blob, EMPTY)
                    .await?;
                // Tagged: one manifest makes both a tag and a referrer.
                let manifest = referrer(&digest, size, i);
                registry.put_manifest(tags_repo, &tag(i), manifest).await
            }
        })
        .await?;
        eprintln!(
            "S3 lines: {} repositories, tags and referrers made in {:.1} s",
            n - made,
            started.elapsed().as_secs_f64()
        );
        made = n;
        let at = n * 9 / 10;
        let names = |key: &'static str, first: String| -> Check<'static> {
            Box::new(move |b| expect_page(b, key, &first, n + 1))
        };
        let referrers: Check = Box::new(move |b| {
            let listed = b["manifests"].as_array().map_or(0, Vec::len);
            ensure!(listed == PAGE, "{listed} referrers on the page");
            Ok(())
        });
        let pages: [(String, &str, Check); 5] = [
            (
                format!("/v2/_catalog?n={PAGE}"),
                "application/json",
                names("repositories", repository(0)),
            ),
            (
                format!("/v2/_catalog?n={PAGE}&last={}", repository(at - 1)),
                "application/json",
                names("repositories", repository(at)),
            ),
            (
                format!("/v2/{tags_repo}/tags/list?n={PAGE}"),
                "application/json",
                names("tags", tag(0)),
            ),
            (
                format!("/v2/{tags_repo}/tags/list?n={PAGE}&last={}", tag(at - 1)),
                "application/json",
                names("tags", tag(at)),
            ),
            (
                format!("/v2/{tags_repo}/referrers/{digest}?n={PAGE}"),
                "application/vnd.oci.image.index.v1+json",
                referrers,
            ),
        ];
        let mut at_size: [Samples; 5] = Default::default();
        for rep in 0..args.reps {
            for ((path, accept, check), samples) in pages.iter().zip(&mut at_size) {
                page_ms(&registry, path, accept, check.as_ref()).await?;
                samples.push(
                    Kind::Wharf,
                    page_ms(&registry, path, accept, check.as_ref()).await?,
                );
            }
            let ms: Vec<String> = at_size
                .iter()
                .map(|s| format!("{:.1}", s.last(Kind::Wharf)))
                .collect();
            eprintln!(
                "  rep {rep} at {n}: {} ms (catalog first / deep, tags first / deep, referrers)",
                ms.join(" / ")
            );
        }
        for (all, at_size) in samples.iter_mut().zip(at_size) {
            all.push(at_size);
        }
    }
    let lines = [
        format!("catalog, first page of {PAGE} (by repositories)"),
        format!("catalog, page of {PAGE} at 90 % (by repositories)"),
        format!("tag list, first page of {PAGE} (by tags)"),
        format!("tag list, page of {PAGE} at 90 % (by tags)"),
        format!("referrers, first page of {PAGE} (by referrers)"),
    ];
    Ok(lines
        .into_iter()
        .zip(&samples)
        .map(|(line, samples)| ScaleRow {
            line: format!("S3 (Garage, 3 nodes): {line}; Wharf only"),
            unit: "ms",
            sizes: S3_SIZES.to_vec(),
            distribution: vec![f64::NAN; S3_SIZES.len()],
            wharf: medians(samples, Kind::Wharf),
            flat_within: Some(1.5),
        })
        .collect())
}

/// `push(i)` for each `i` of `range`, 16 at a time; the first failure
/// ends it.
async fn push_all<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    range: std::ops::Range<usize>,
    push: impl FnMut(usize) -> F,
) -> anyhow::Result<()> {
    let pushes = futures::stream::iter(range).map(push).buffer_unordered(16);
    futures::pin_mut!(pushes);
    while let Some(pushed) = pushes.next().await {
        pushed?;
    }
    Ok(())
}

/// The OCI empty descriptor's digest: of `{}`, every referrer's config.
const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The `i`th artifact referring to `subject` (an image manifest of `size`).
fn referrer(subject: &str, size: u64, i: usize) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.wharf.bench.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size},
        "annotations": {"wharf.bench.n": i.to_string()},
    })
    .to_string()
}

/// Start-up on an empty data directory, median of several starts.
pub fn start_up(args: &Args, bins: &Binaries) -> anyhow::Result<Samples> {
    eprintln!(
        "start-up on an empty data directory, {} × {STARTS_PER_REP} starts",
        args.reps
    );
    let mut samples = Samples::default();
    for rep in 0..args.reps {
        for kind in alternate(rep, [Kind::Distribution, Kind::Wharf]) {
            for _ in 0..STARTS_PER_REP {
                let server = Server::start(kind, bins, None)?;
                samples.push(kind, server.ready_after.as_secs_f64() * 1e3);
            }
        }
        eprintln!(
            "  rep {rep}: start-up Distribution {:.0} ms, Wharf {:.0} ms",
            samples.last(Kind::Distribution),
            samples.last(Kind::Wharf)
        );
    }
    Ok(samples)
}

fn size_label(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn figure(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// The table of the scale lines: each registry's figure at each size, and
/// Wharf's largest over its smallest.
pub fn table(rows: &[ScaleRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n| line | unit | sizes | Distribution | Wharf | Wharf, largest / smallest | target | met |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---|---|");
    for r in rows {
        let join = |v: &[f64]| v.iter().map(|&x| figure(x)).collect::<Vec<_>>().join(" / ");
        let sizes = r
            .sizes
            .iter()
            .map(|&n| size_label(n))
            .collect::<Vec<_>>()
            .join(" / ");
        let growth = r.wharf.last().unwrap_or(&f64::NAN) / r.wharf.first().unwrap_or(&f64::NAN);
        let (target, met) = match r.flat_within {
            Some(x) => (
                format!("≤ {x}×"),
                if growth <= x { "yes" } else { "**no**" },
            ),
            None => ("none".into(), ""),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {sizes} | {} | {} | {growth:.2} | {target} | {met} |",
            r.line,
            r.unit,
            join(&r.distribution),
            join(&r.wharf),
        );
    }
    s
}
