//! Manifest lookups under load: Debian's `wrk` at a fixed number of
//! connections, requests per second, and no run counted that saw an error.

use anyhow::{Context as _, bail};
use std::process::Command;

/// Connections kept open by the load generator.
pub const CONNECTIONS: u32 = 32;

/// GET `url` for `seconds` over [`CONNECTIONS`] connections; requests per second.
pub fn wrk(
    url: &str,
    accept: &str,
    authorization: Option<&str>,
    seconds: u32,
) -> anyhow::Result<f64> {
    let mut command = Command::new("wrk");
    command
        .arg("--threads")
        .arg("2")
        .arg("--connections")
        .arg(CONNECTIONS.to_string())
        .arg("--duration")
        .arg(format!("{seconds}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("--header")
        .arg(format!("Accept: {accept}"));
    if let Some(value) = authorization {
        command
            .arg("--header")
            .arg(format!("Authorization: {value}"));
    }
    let out = command
        .arg(url)
        .output()
        .context("running wrk (Debian package wrk; tests/install installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for bad in ["Non-2xx or 3xx responses", "Socket errors"] {
        if stdout.contains(bad) {
            bail!("wrk saw failed requests; the run does not count:\n{stdout}");
        }
    }
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{stdout}"))
}
