//! Wharf against Debian's `docker-registry` (CNCF Distribution), side by
//! side in one run on loopback: uploads, downloads, manifest lookups with
//! and without authentication, Docker push and pull, and peak memory during
//! a large upload. Every line is repeated and its median reported.
//!
//!     cargo run --release -p wharf-bench [-- --write]
//!
//! builds the release `wharf`, prints the table, and with `--write` replaces
//! `BENCHMARKS.md` at the workspace root with it and the machine it ran on.

mod client;
mod docker;
#[path = "../../tests/it/support/garage.rs"]
mod garage;
mod gc;
mod load;
mod pushes;
mod scale;
mod servers;
mod standalone;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use client::Registry;
use servers::{Auth, Binaries, Kind, Server, Store};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark Wharf against docker-registry (CNCF Distribution)")]
pub(crate) struct Args {
    /// Repetitions of every line; the table shows medians.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Size of the blob uploaded and downloaded, in MiB.
    #[arg(long, default_value_t = 256)]
    blob_mib: usize,
    /// Size of the streamed upload during which peak RSS is measured, in MiB.
    #[arg(long, default_value_t = 1024)]
    rss_mib: usize,
    /// Seconds of each manifest-lookup run.
    #[arg(long, default_value_t = 5)]
    wrk_seconds: u32,
    /// Size of the Docker image (two layers of half each), in MiB.
    #[arg(long, default_value_t = 200)]
    image_mib: usize,
    /// Skip docker push and pull (they need root and Debian's docker.io).
    #[arg(long)]
    skip_docker: bool,
    /// Size of the blob uploaded and downloaded on S3, in MiB.
    #[arg(long, default_value_t = 64)]
    s3_blob_mib: usize,
    /// Run only these groups of lines (comma-separated: blobs, manifests,
    /// docker, rss, s3, standalone, scale, gc, pushes); all of them when not
    /// given. `--write` needs all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Group>,
    /// Use this `wharf` binary instead of building it with cargo.
    #[arg(long)]
    wharf: Option<PathBuf>,
    /// Replace BENCHMARKS.md at the workspace root with this run's table.
    #[arg(long)]
    write: bool,
}

/// Groups of lines `--only` can select.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Group {
    Blobs,
    Manifests,
    Docker,
    Rss,
    S3,
    Standalone,
    Scale,
    Gc,
    Pushes,
}

impl Args {
    fn runs(&self, group: Group) -> bool {
        (self.only.is_empty() || self.only.contains(&group))
            && !(group == Group::Docker && self.skip_docker)
    }
}

/// What makes a line's result good.
#[derive(Clone, Copy)]
enum Goal {
    /// Wharf/Distribution of a higher-is-better figure at least this.
    FasterBy(f64),
    /// Wharf/Distribution of a time at most this (lower is better).
    TimeAtMost(f64),
    /// Wharf's own figure at most this many MiB.
    MibAtMost(f64),
    /// Wharf's own figure at most this many milliseconds.
    MsAtMost(f64),
    /// No target: a figure that explains another line.
    Explains,
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::FasterBy(x) => format!("≥ {x}×"),
            Goal::TimeAtMost(x) => format!("≤ {x}× (time)"),
            Goal::MibAtMost(x) => format!("Wharf ≤ {x} MiB"),
            Goal::MsAtMost(x) => format!("Wharf ≤ {x} ms"),
            Goal::Explains => "none".to_string(),
        }
    }

    /// Whether the target is met; `None` for a line without one.
    fn met(self, distribution: f64, wharf: f64) -> Option<bool> {
        Some(match self {
            Goal::FasterBy(x) => wharf / distribution >= x,
            Goal::TimeAtMost(x) => wharf / distribution <= x,
            Goal::MibAtMost(x) | Goal::MsAtMost(x) => wharf <= x,
            Goal::Explains => return None,
        })
    }
}

struct Row {
    line: String,
    unit: &'static str,
    distribution: f64,
    wharf: f64,
    goal: Goal,
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub(crate) fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

/// Samples of one line, per kind of server.
#[derive(Default)]
pub(crate) struct Samples(Vec<(Kind, Vec<f64>)>);

impl Samples {
    pub(crate) fn push(&mut self, kind: Kind, value: f64) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, values)) => values.push(value),
            None => self.0.push((kind, vec![value])),
        }
    }

    fn of(&self, kind: Kind) -> &[f64] {
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[], |(_, values)| values.as_slice())
    }

    /// The median of a kind's samples; NaN without any.
    pub(crate) fn median(&self, kind: Kind) -> f64 {
        median(self.of(kind).to_vec())
    }

    /// A kind's latest sample, for the progress lines; NaN without any.
    pub(crate) fn last(&self, kind: Kind) -> f64 {
        self.of(kind).last().copied().unwrap_or(f64::NAN)
    }

    /// Distribution's and Wharf's medians as a row of the table.
    fn row(self, line: String, unit: &'static str, goal: Goal) -> Row {
        Row {
            line,
            unit,
            distribution: self.median(Kind::Distribution),
            wharf: self.median(Kind::Wharf),
            goal,
        }
    }
}

/// Distribution and Wharf, the first one alternating between repetitions.
pub(crate) fn order(rep: usize) -> [Kind; 2] {
    alternate(rep, [Kind::Distribution, Kind::Wharf])
}

/// Two kinds, the first one alternating between repetitions so that
/// neither always runs on a warmer (or busier) machine.
pub(crate) fn alternate(rep: usize, [a, b]: [Kind; 2]) -> [Kind; 2] {
    if rep.is_multiple_of(2) {
        [a, b]
    } else {
        [b, a]
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_path_buf()
}

/// `cargo build --release -p wharf`, and the binary it produced.
fn build_wharf() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the release wharf (cargo build --release -p wharf)…");
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "wharf",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("cargo build --release -p wharf failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "wharf")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo did not report the wharf executable")
}

pub(crate) fn random_bytes(len: usize) -> anyhow::Result<Bytes> {
    use std::io::Read as _;
    let mut buf = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn registries(servers: &[Server], auth: Option<&Auth>) -> anyhow::Result<Vec<(Kind, Registry)>> {
    servers
        .iter()
        .map(|s| {
            Ok((
                s.kind,
                Registry::new(s.base(), auth.map(Auth::authorization))?,
            ))
        })
        .collect()
}

fn start_both(bins: &Binaries, auth: Option<&Auth>, store: &Store) -> anyhow::Result<Vec<Server>> {
    Ok(vec![
        Server::start_on(Kind::Distribution, bins, auth, store)?,
        Server::start_on(Kind::Wharf, bins, auth, store)?,
    ])
}

fn lookup<T>(items: &[(Kind, T)], kind: Kind) -> &T {
    &items
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("both kinds")
        .1
}

/// Let the machine settle before a timed operation: write back what the
/// last one left dirty (Distribution does not fsync its uploads, Wharf
/// frees an ended session's pages after answering) and give background
/// work a moment, so that neither registry is timed while paying for the
/// other's, or its own, previous step.
pub(crate) async fn settle() -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sync").status().await?;
    ensure!(status.success(), "sync failed: {status}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Uploads at once in the concurrent RSS line, 64 MiB each.
const CONCURRENT_UPLOADS: usize = 100;

/// Downloads timed together in each repetition of the GET line.
pub(crate) const GETS_PER_REP: usize = 4;

/// What a line's label says about where the registries store.
fn on(store: &Store) -> &'static str {
    match store {
        Store::Disk | Store::Existing(_) => "",
        Store::S3 { .. } => "S3 (Garage, 3 nodes): ",
    }
}

async fn blob_lines(
    args: &Args,
    bins: &Binaries,
    store: &Store,
    mib: usize,
) -> anyhow::Result<Vec<Row>> {
    let size = mib << 20;
    eprintln!(
        "{}blob lines: {mib} MiB of random bytes, {} repetitions",
        on(store),
        args.reps
    );
    let random = random_bytes(size)?;
    let servers = start_both(bins, None, store)?;
    let registries = registries(&servers, None)?;
    let (mut mono, mut streamed, mut get, mut get_cpu) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut mono_cpu, mut streamed_cpu) = (Samples::default(), Samples::default());
    let ms = |cpu: Duration| cpu.as_secs_f64() * 1e3;
    for rep in 0..args.reps {
        // Every upload stores new content, as a push does: a registry that
        // already holds a blob has less to do.
        let (blob, streamed_blob) = (stamped(&random, 2 * rep), stamped(&random, 2 * rep + 1));
        let (digest, streamed_digest) = (client::sha256(&blob), client::sha256(&streamed_blob));
        for kind in order(rep) {
            let registry = lookup(&registries, kind);
            let server = servers.iter().find(|s| s.kind == kind).expect("both kinds");
            let repo = format!("bench/blob-{rep}");
            // An upload's server CPU time runs to after the next settle,
            // so that work left for after the answer counts.
            settle().await?;
            let cpu_before = server.cpu_time()?;
            let took = registry
                .upload_monolithic(&repo, blob.clone(), &digest)
                .await?;
            mono.push(kind, mb_per_s(size, took));
            settle().await?;
            let cpu_between = server.cpu_time()?;
            mono_cpu.push(kind, ms(cpu_between.saturating_sub(cpu_before)));
            let took = registry
                .upload_streamed(
                    &format!("bench/stream-{rep}"),
                    streamed_blob.clone().into(),
                    Some(size as u64),
                    &streamed_digest,
                )
                .await?;
            streamed.push(kind, mb_per_s(size, took));
            settle().await?;
            let cpu_before = server.cpu_time()?;
            streamed_cpu.push(kind, ms(cpu_before.saturating_sub(cpu_between)));
            // Back to back: a GET is short (under 0.1 s), and the first one
            // after the machine idled runs a third slower on this VM (CPUs
            // waking up), for either registry; several in a row measure the
            // serving, not the wake-up.
            let mut took = Duration::ZERO;
            for _ in 0..GETS_PER_REP {
                took += registry.get_blob(&repo, &digest, size as u64).await?;
            }
            let cpu = server.cpu_time()?.saturating_sub(cpu_before);
            get.push(kind, mb_per_s(size * GETS_PER_REP, took));
            get_cpu.push(kind, ms(cpu) / GETS_PER_REP as f64);
            eprintln!(
                "  rep {rep} {kind}: monolithic {:.0} MB/s ({:.0} ms of server CPU), streamed \
                 {:.0} MB/s ({:.0} ms), GET {:.0} MB/s ({:.0} ms each)",
                mono.last(kind),
                mono_cpu.last(kind),
                streamed.last(kind),
                streamed_cpu.last(kind),
                get.last(kind),
                get_cpu.last(kind)
            );
        }
    }
    // No targets on S3 yet: the first figures say where the time goes.
    let goal = |target| match store {
        Store::Disk | Store::Existing(_) => target,
        Store::S3 { .. } => Goal::Explains,
    };
    let on = on(store);
    Ok(vec![
        mono.row(
            format!("{on}monolithic upload, {mib} MiB (POST + PUT)"),
            "MB/s",
            goal(Goal::FasterBy(4.0)),
        ),
        streamed.row(
            format!("{on}streamed upload, {mib} MiB (POST + PATCH + PUT)"),
            "MB/s",
            goal(Goal::FasterBy(4.0)),
        ),
        get.row(
            format!("{on}blob GET, {mib} MiB"),
            "MB/s",
            goal(Goal::FasterBy(1.5)),
        ),
        mono_cpu.row(
            format!("{on}server CPU time per monolithic upload, {mib} MiB"),
            "ms",
            goal(Goal::TimeAtMost(0.25)),
        ),
        streamed_cpu.row(
            format!("{on}server CPU time per streamed upload, {mib} MiB"),
            "ms",
            goal(Goal::TimeAtMost(0.25)),
        ),
        get_cpu.row(
            format!("{on}server CPU time per blob GET, {mib} MiB"),
            "ms",
            goal(Goal::TimeAtMost(0.5)),
        ),
    ])
}

/// `random` with its first bytes replaced by `n`: new content, same size.
pub(crate) fn stamped(random: &Bytes, n: usize) -> Bytes {
    let mut blob = random.to_vec();
    let stamp = (n as u64).to_le_bytes();
    let len = stamp.len().min(blob.len());
    blob[..len].copy_from_slice(&stamp[..len]);
    Bytes::from(blob)
}

async fn manifest_line(
    args: &Args,
    bins: &Binaries,
    auth: Option<&Auth>,
    store: &Store,
) -> anyhow::Result<Row> {
    let label = auth.map_or("anonymous", Auth::label);
    eprintln!(
        "manifest GET by tag, {label}: wrk, {} connections, {} s × {}",
        load::CONNECTIONS,
        args.wrk_seconds,
        args.reps
    );
    let servers = start_both(bins, auth, store)?;
    let registries = registries(&servers, auth)?;
    let mut paths = Vec::new();
    for (kind, registry) in &registries {
        paths.push((
            *kind,
            registry
                .push_small_image("bench/manifest", "latest")
                .await?,
        ));
    }
    let authorization = auth.map(Auth::authorization);
    let mut rps = Samples::default();
    for rep in 0..args.reps {
        for kind in order(rep) {
            let server = servers.iter().find(|s| s.kind == kind).expect("both kinds");
            let url = format!("{}{}", server.base(), lookup(&paths, kind));
            let seconds = args.wrk_seconds;
            let accept = client::OCI_MANIFEST;
            let authorization = authorization.clone();
            let value = tokio::task::spawn_blocking(move || {
                load::wrk(&url, accept, authorization.as_deref(), seconds)
            })
            .await??;
            eprintln!("  rep {rep} {kind}: {value:.0} req/s");
            rps.push(kind, value);
        }
    }
    Ok(rps.row(
        format!(
            "{}manifest GET by tag, {} connections, {label}",
            on(store),
            load::CONNECTIONS
        ),
        "req/s",
        match store {
            Store::Disk | Store::Existing(_) => Goal::FasterBy(12.0),
            Store::S3 { .. } => Goal::Explains,
        },
    ))
}

/// Peak RSS of each server while it receives `uploads` streamed uploads of
/// `mib` MiB at once (chunked PATCH, as Docker sends them), each of new
/// content, through `/proc/<pid>/status`.
async fn rss_line(args: &Args, bins: &Binaries, uploads: usize, mib: usize) -> anyhow::Result<Row> {
    const CHUNK: usize = 1 << 20;
    let total = mib << 20;
    let what = match uploads {
        1 => format!("a {mib} MiB streamed upload"),
        n => format!("{n} concurrent {mib} MiB streamed uploads"),
    };
    eprintln!("peak RSS during {what}, {} repetitions", args.reps);
    // A 16 MiB random pattern repeated, its first chunk stamped with the
    // upload's number: no server can tell, and the client does not need
    // the bodies in memory.
    let pattern = random_bytes(16 << 20)?;
    let chunks = move |n: usize| {
        let first = stamped(&pattern.slice(..CHUNK), n);
        (0..total / CHUNK).map({
            let pattern = pattern.clone();
            move |i| match i {
                0 => first.clone(),
                _ => {
                    let at = (i * CHUNK) % pattern.len();
                    pattern.slice(at..at + CHUNK)
                }
            }
        })
    };
    let digest = |n: usize| {
        let mut hasher = Sha256::new();
        for chunk in chunks(n) {
            hasher.update(&chunk);
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    };
    let digests: Vec<String> = (0..uploads * args.reps).map(digest).collect();
    let mut peak = Samples::default();
    for rep in 0..args.reps {
        // Fresh registries each repetition: what the last one stored (6.4
        // GB for 100 uploads of 64 MiB) is deleted with its data directory,
        // so the line needs the disk space of one repetition, not of all.
        let servers = start_both(bins, None, &Store::Disk)?;
        for kind in order(rep) {
            let server = servers.iter().find(|s| s.kind == kind).expect("both kinds");
            settle().await?;
            server.reset_peak_rss()?;
            let pid = server.pid();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = std::thread::spawn({
                let stop = stop.clone();
                move || {
                    let mut max = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                            && let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))
                            && let Ok(kib) = kib.trim().trim_end_matches("kB").trim().parse::<u64>()
                        {
                            max = max.max(kib * 1024);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    max
                }
            });
            let sent = (0..uploads).map(|i| {
                let n = rep * uploads + i;
                let body = reqwest::Body::wrap_stream(futures::stream::iter(
                    chunks(n).map(Ok::<Bytes, std::io::Error>),
                ));
                // Each from an address of its own, as many clients' would be.
                let registry =
                    Registry::from_address(server.base(), None, Some(client::client_address(i)));
                let digest = digests[n].clone();
                tokio::spawn(async move {
                    registry?
                        .upload_streamed(&format!("bench/rss-{n}"), body, None, &digest)
                        .await
                })
            });
            let results = futures::future::join_all(sent.collect::<Vec<_>>()).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let sampled = sampler.join().unwrap_or(0);
            for result in results {
                result??;
            }
            let bytes = server.peak_rss()?.max(sampled).max(server.rss()?);
            let mib = bytes as f64 / (1 << 20) as f64;
            eprintln!("  rep {rep} {kind}: peak RSS {mib:.1} MiB");
            peak.push(kind, mib);
        }
    }
    Ok(peak.row(
        format!("peak RSS during {what}"),
        "MiB",
        Goal::MibAtMost(if uploads == 1 { 64.0 } else { 256.0 }),
    ))
}

/// `docker push` and `docker pull` of a two-layer image, wall time. Each
/// repetition uses fresh registries on new ports, so Docker can neither
/// mount layers it pushed before nor skip them.
fn docker_lines(args: &Args, bins: &Binaries) -> anyhow::Result<Vec<Row>> {
    eprintln!(
        "docker push/pull of a {} MiB two-layer image, {} repetitions",
        args.image_mib, args.reps
    );
    let work = tempfile::tempdir()?;
    let dockerd = docker::Dockerd::start()?;
    let local = "wharf-bench/image:latest";
    dockerd.build_image(local, (args.image_mib << 20) / 2, work.path())?;
    let mut current = local.to_string();
    let (mut push, mut pull) = (Samples::default(), Samples::default());
    for rep in 0..args.reps {
        for kind in order(rep) {
            let server = Server::start(kind, bins, None)?;
            let name = format!("{}/bench/image:latest", server.addr);
            dockerd.docker_ok(&["tag", &current, &name])?;
            let took = dockerd.timed(&["push", &name])?;
            push.push(kind, took.as_secs_f64());
            // Remove every tag of the image, so that the pull fetches all layers.
            let id = dockerd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &name])?;
            dockerd.docker_ok(&["rmi", "-f", &id])?;
            let took_pull = dockerd.timed(&["pull", &name])?;
            pull.push(kind, took_pull.as_secs_f64());
            eprintln!(
                "  rep {rep} {kind}: push {:.2} s, pull {:.2} s",
                took.as_secs_f64(),
                took_pull.as_secs_f64()
            );
            current = name;
        }
    }
    let mib = args.image_mib;
    Ok(vec![
        push.row(
            format!("docker push, {mib} MiB two-layer image"),
            "s",
            Goal::TimeAtMost(1.0),
        ),
        pull.row(
            format!("docker pull, {mib} MiB two-layer image"),
            "s",
            Goal::TimeAtMost(1.0),
        ),
    ])
}

fn read_command(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The machine and versions, as markdown list items.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let sha_ni = cpuinfo.split_whitespace().any(|f| f == "sha_ni");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / (1 << 20) as f64)
        });
    let tmp = std::env::temp_dir();
    let df = read_command("df", &["--output=source,fstype", &tmp.to_string_lossy()]);
    let filesystem = df
        .lines()
        .nth(1)
        .unwrap_or("unknown")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let commit = read_command(
        "git",
        &[
            "-C",
            &workspace_root().to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let distribution = read_command(servers::DISTRIBUTION_BIN, &["--version"]);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- CPU: {model}, {cores} cores{}",
        if sha_ni { " (SHA-NI)" } else { "" }
    );
    let _ = writeln!(s, "- memory: {memory}; kernel {}", kernel.trim());
    let _ = writeln!(s, "- data directories: {} on {filesystem}", tmp.display());
    let _ = writeln!(
        s,
        "- load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        s,
        "- Wharf: commit {commit} (release build); Distribution: {distribution}"
    );
    s
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| line | unit | Distribution | Wharf | Wharf/Distribution | target | met |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|---|");
    for r in rows {
        let precision = if r.unit == "s" {
            2
        } else if r.unit == "MiB" {
            1
        } else {
            0
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.p$} | {:.p$} | {:.2} | {} | {} |",
            r.line,
            r.unit,
            r.distribution,
            r.wharf,
            r.wharf / r.distribution,
            r.goal.describe(),
            match r.goal.met(r.distribution, r.wharf) {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            },
            p = precision
        );
    }
    s
}

/// Where the part of BENCHMARKS.md that `--write` leaves alone begins.
const KEPT: &str = "\n## Per-request cost";

fn markdown(args: &Args, table: &str, machine: &str) -> String {
    format!(
        "# Benchmarks\n\n\
         Wharf against Debian's `docker-registry` (CNCF Distribution), measured side by side in one \
         run on loopback by `bench/` (crate `wharf-bench`). Each registry runs from the same \
         `registry:2` configuration file with a fresh data directory and `log.level: error`; each \
         line is repeated {reps} times, the two registries alternating which goes first, and the \
         table shows medians. Throughput is in MB/s (10^6 bytes per second); docker push and pull \
         are wall times (lower is better, so their ratio below 1 means Wharf is faster). Uploads \
         and GETs are made by the bench itself over loopback, every upload of new content (random \
         bytes with a counter in the first eight); before each it runs `sync` and waits \
         300 ms so that no registry is timed while the machine writes back the previous step, and \
         each GET repetition is {gets} downloads back to back, read like curl into a 64 KiB buffer \
         (see \"Large blobs\" below for why), with the CPU time the server spent on them (from \
         `/proc/<pid>/stat`); an upload's CPU time runs until after the `sync` that follows it, \
         so that work a registry leaves for after its answer counts.\n\n\
         The second table holds the lines that must not grow with the registry, each measured at \
         several sizes (the sizes column, in the unit the line names). The catalog and tag \
         registries are written straight into registry:2's filesystem layout (one small image, \
         the same files registry:2 writes), once per run, and both registries serve the same \
         root in turn with upload purging off; a page is `n=100`, first or from `last` at \
         90 % of the names, {requests} requests back to back after one untimed round (what a \
         running registry has read once it may keep), and each is checked to hold the right \
         names. Start-up is exec to the first answer to `GET /v2/`, polled every 2 ms, \
         {starts} starts per repetition. Referrers are pushed through the API (Distribution \
         2.8 has none). GC is each registry's offline collector (`wharf gc`, \
         `docker-registry garbage-collect`) on a layout where 6 blobs in 10 are reached and \
         the other 4, stored a day ago, are removed by each run and written again before the \
         next. \"Wharf, largest / smallest\" is Wharf's figure at the largest size over the \
         one at the smallest: the target is that it stays within 1.5.\n\n\
         ## Latest run\n\n{table}\n\
         ## Machine\n\n{machine}\n\
         ## Reproduce\n\n\
         ```sh\n\
         tests/install                                  # docker.io, docker-registry, apache2-utils, wrk, …\n\
         cargo run --release -p wharf-bench -- --write  # builds the release wharf, runs everything, rewrites this file\n\
         ```\n\n\
         It needs root for the private `dockerd` behind the docker lines (`--skip-docker` leaves them out), \
         Garage (`tests/install` builds it) for the S3 lines, about 15 GB of free disk (the 100 \
         concurrent uploads store 6.4 GB per registry and repetition), takes about 50 minutes on \
         2 cores, and wants a quiet machine: anything compiling at the same time moves the figures \
         by tens of percent. `--help` lists the knobs (repetitions, sizes, \
         wrk duration).\n",
        reps = args.reps,
        gets = GETS_PER_REP,
        requests = scale::REQUESTS_PER_REP,
        starts = scale::STARTS_PER_REP,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if args.write && !args.only.is_empty() {
        bail!("--write replaces the whole table: run every line (drop --only)");
    }
    let wharf = match &args.wharf {
        Some(path) => path.clone(),
        None => build_wharf()?,
    };
    let bins = Binaries {
        wharf,
        distribution: PathBuf::from(servers::DISTRIBUTION_BIN),
        wasmtime: PathBuf::from(servers::WASMTIME_BIN),
    };
    if !bins.distribution.exists() {
        bail!(
            "{} is missing: install Debian's docker-registry (tests/install does)",
            servers::DISTRIBUTION_BIN
        );
    }
    let machine = machine();
    let work = tempfile::tempdir()?;
    let auth = Auth::Htpasswd(servers::htpasswd(work.path())?);
    let token = Auth::Token(servers::token(work.path(), "bench/manifest")?);

    let mut rows = Vec::new();
    if args.runs(Group::Blobs) {
        rows.extend(blob_lines(&args, &bins, &Store::Disk, args.blob_mib).await?);
    }
    if args.runs(Group::Manifests) {
        rows.push(manifest_line(&args, &bins, None, &Store::Disk).await?);
        rows.push(manifest_line(&args, &bins, Some(&auth), &Store::Disk).await?);
        rows.push(manifest_line(&args, &bins, Some(&token), &Store::Disk).await?);
    }
    if args.runs(Group::Docker) {
        let docker_args = args.clone();
        let docker_bins = bins.clone();
        rows.extend(
            tokio::task::spawn_blocking(move || docker_lines(&docker_args, &docker_bins)).await??,
        );
    }
    if args.runs(Group::Rss) {
        rows.push(rss_line(&args, &bins, 1, args.rss_mib).await?);
        rows.push(rss_line(&args, &bins, CONCURRENT_UPLOADS, 64).await?);
    }
    let mut s3_scale_rows = Vec::new();
    if args.runs(Group::S3) {
        // Both registries on one three-node Garage cluster, each under a
        // prefix of its own in one bucket.
        // Started on the main thread: the nodes die with the thread that
        // started them, and a blocking-pool thread may exit when idle.
        let garage = garage::Garage::start(3, "bench");
        let store = Store::S3 {
            endpoint: garage.endpoint(0),
            bucket: "bench".into(),
            key_id: garage.key_id.clone(),
            secret: garage.secret.clone(),
        };
        rows.extend(blob_lines(&args, &bins, &store, args.s3_blob_mib).await?);
        rows.push(manifest_line(&args, &bins, None, &store).await?);
        s3_scale_rows = scale::s3_lines(&args, &bins, &store).await?;
        drop(garage);
    }

    let mut scale_rows = Vec::new();
    if args.runs(Group::Scale) {
        let starts = scale::start_up(&args, &bins)?;
        rows.push(starts.row(
            "start-up on an empty data directory, exec to answering GET /v2/".into(),
            "ms",
            Goal::MsAtMost(100.0),
        ));
        scale_rows = scale::lines(&args, &bins).await?;
    }
    if args.runs(Group::Gc) {
        scale_rows.push(gc::line(&args, &bins).await?);
    }
    scale_rows.extend(s3_scale_rows);
    if args.runs(Group::Pushes) {
        rows.extend(pushes::lines(&args, &bins).await?);
    }

    let mut portability = Vec::new();
    if args.runs(Group::Standalone) {
        portability = standalone::lines(&args, &bins, &auth).await?;
    }

    // `--only standalone` measures no line against Distribution.
    let mut table = if rows.is_empty() {
        String::new()
    } else {
        table(&rows)
    };
    if !scale_rows.is_empty() {
        table.push_str(&scale::table(&scale_rows));
    }
    if !portability.is_empty() {
        table.push_str(&standalone::table(&portability));
    }
    println!("\n{table}\n{machine}");
    if args.write {
        let path = workspace_root().join("BENCHMARKS.md");
        // Sections measured by hand (the per-request breakdown) are kept.
        let kept = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find(KEPT).map(|at| old[at..].to_string()))
            .unwrap_or_default();
        std::fs::write(&path, markdown(&args, &table, &machine) + &kept)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
