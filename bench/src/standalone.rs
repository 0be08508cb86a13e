//! What portability costs: the standalone component under stock `wasmtime
//! serve`, next to `wharf serve` on the same machine in the same run. No
//! targets: the lines say what a stock host's per-request instances,
//! storage on `wasi:filesystem` and hashing in wasm cost, and the table's
//! notes say why.

use crate::servers::Binaries;
use crate::servers::{Auth, Kind, Server, Store};
use crate::{Args, Samples, alternate, client, load, mb_per_s, random_bytes, settle};
use std::fmt::Write as _;
use std::time::Duration;

/// One line: `wharf serve`'s figure, the standalone component's, the unit.
pub struct Line {
    line: String,
    unit: &'static str,
    wharf: f64,
    standalone: f64,
}

/// Both forms' medians of one line's samples.
fn line(samples: Samples, line: String, unit: &'static str) -> Line {
    Line {
        line,
        unit,
        wharf: samples.median(Kind::Wharf),
        standalone: samples.median(Kind::Standalone),
    }
}

/// Both forms, alternating which goes first as the other lines do.
fn kinds(rep: usize) -> [Kind; 2] {
    alternate(rep, [Kind::Standalone, Kind::Wharf])
}

pub async fn lines(args: &Args, bins: &Binaries, auth: &Auth) -> anyhow::Result<Vec<Line>> {
    if !bins.wasmtime.exists() {
        anyhow::bail!(
            "{} is missing: tests/install builds wasmtime-cli",
            bins.wasmtime.display()
        );
    }
    let mib = args.blob_mib;
    let size = mib << 20;
    eprintln!(
        "standalone lines: wasmtime serve next to wharf serve, {mib} MiB, {} repetitions",
        args.reps
    );
    let servers = [
        Server::start_on(Kind::Wharf, bins, None, &Store::Disk)?,
        Server::start_on(Kind::Standalone, bins, None, &Store::Disk)?,
    ];
    let server = |kind: Kind| servers.iter().find(|s| s.kind == kind).expect("both");
    let random = random_bytes(size)?;
    let (mut mono, mut mono_cpu, mut get, mut get_cpu) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for rep in 0..args.reps {
        let blob = crate::stamped(&random, rep);
        let digest = client::sha256(&blob);
        for kind in kinds(rep) {
            let server = server(kind);
            let registry = client::Registry::new(server.base(), None)?;
            let repo = format!("bench/standalone-{rep}");
            settle().await?;
            let before = server.cpu_time()?;
            let took = registry
                .upload_monolithic(&repo, blob.clone(), &digest)
                .await?;
            mono.push(kind, mb_per_s(size, took));
            mono_cpu.push(kind, ms(server.cpu_time()?.saturating_sub(before)));
            settle().await?;
            let before = server.cpu_time()?;
            let mut took = Duration::ZERO;
            for _ in 0..crate::GETS_PER_REP {
                took += registry.get_blob(&repo, &digest, size as u64).await?;
            }
            get.push(kind, mb_per_s(size * crate::GETS_PER_REP, took));
            get_cpu.push(
                kind,
                ms(server.cpu_time()?.saturating_sub(before)) / crate::GETS_PER_REP as f64,
            );
            eprintln!(
                "  rep {rep} {kind}: monolithic {:.0} MB/s, GET {:.0} MB/s",
                mono.last(kind),
                get.last(kind)
            );
        }
    }
    drop(servers);
    let mut lines = vec![
        line(mono, format!("monolithic upload, {mib} MiB"), "MB/s"),
        line(
            mono_cpu,
            format!("server CPU time per monolithic upload, {mib} MiB"),
            "ms",
        ),
        line(get, format!("blob GET, {mib} MiB"), "MB/s"),
        line(
            get_cpu,
            format!("server CPU time per blob GET, {mib} MiB"),
            "ms",
        ),
    ];
    lines.push(manifests(args, bins, None).await?);
    lines.push(manifests(args, bins, Some(auth)).await?);
    Ok(lines)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn manifests(args: &Args, bins: &Binaries, auth: Option<&Auth>) -> anyhow::Result<Line> {
    let label = auth.map_or("anonymous", Auth::label);
    eprintln!("standalone: manifest GET by tag, {label}");
    let servers = [
        Server::start_on(Kind::Wharf, bins, auth, &Store::Disk)?,
        Server::start_on(Kind::Standalone, bins, auth, &Store::Disk)?,
    ];
    let authorization = auth.map(Auth::authorization);
    let mut urls = Vec::new();
    for server in &servers {
        let registry = client::Registry::new(server.base(), authorization.clone())?;
        let path = registry
            .push_small_image("bench/manifest", "latest")
            .await?;
        urls.push((server.kind, format!("{}{path}", server.base())));
    }
    let mut rps = Samples::default();
    for rep in 0..args.reps {
        for kind in kinds(rep) {
            let url = urls
                .iter()
                .find(|(k, _)| *k == kind)
                .expect("both")
                .1
                .clone();
            let (seconds, authorization) = (args.wrk_seconds, authorization.clone());
            let value = tokio::task::spawn_blocking(move || {
                load::wrk(
                    &url,
                    client::OCI_MANIFEST,
                    authorization.as_deref(),
                    seconds,
                )
            })
            .await??;
            eprintln!("  rep {rep} {kind}: {value:.0} req/s");
            rps.push(kind, value);
        }
    }
    Ok(line(
        rps,
        format!(
            "manifest GET by tag, {} connections, {label}",
            load::CONNECTIONS
        ),
        "req/s",
    ))
}

pub fn table(lines: &[Line]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### The standalone component under stock `wasmtime serve`\n\n\
         The same machine and run: `wharf component export --standalone` under `wasmtime serve -S cli \
         --dir DATA::/var/lib/registry` (wasmtime-cli 48.0.8, default settings: a fresh instance per \
         request), next to `wharf serve`. No targets: this is what portability costs.\n"
    );
    let _ = writeln!(
        s,
        "| line | unit | wharf serve | wasmtime serve | wasmtime serve / wharf serve |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|");
    for l in lines {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.2} |",
            l.line,
            l.unit,
            l.wharf,
            l.standalone,
            l.standalone / l.wharf
        );
    }
    s
}
