//! The standalone registry in a stock wasi-http host: `wasmtime serve` from
//! crates.io's `wasmtime-cli`, the version Wharf embeds, which `tests/install`
//! builds into /opt/wharf-tools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `wasmtime` as `tests/install` installs it.
pub const WASMTIME: &str = "/opt/wharf-tools/wasmtime-48.0.8/bin/wasmtime";
/// Where the component's data directory is preopened, as registry:2's.
pub const DATA: &str = "/var/lib/registry";
/// Where the directory with the htpasswd file is preopened.
pub const AUTH: &str = "/auth";

/// With `WHARF_TEST_HOST=wasmtime`, every [`super::Wharf`] is the standalone
/// component under `wasmtime serve` instead of `wharf serve`: how
/// `tests/run` runs the conformance suite in a stock host.
pub fn selected() -> bool {
    std::env::var("WHARF_TEST_HOST").as_deref() == Ok("wasmtime")
}

/// Write the standalone component to `out` with `wharf component export`.
pub fn export(out: &Path) -> PathBuf {
    let done = super::wharf_run(
        &["component", "export", "--standalone", out.to_str().unwrap()],
        &[],
        "",
    );
    assert!(
        done.status.success(),
        "wharf component export --standalone: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    out.to_path_buf()
}

/// `wasmtime serve` of `component` on `listen`, with `data` preopened as
/// the data directory, `auth` (if any) as `/auth`, and `env` passed to the
/// component: the README's command line.
pub fn command(
    component: &Path,
    listen: &str,
    data: &Path,
    auth: Option<&Path>,
    env: &[(String, String)],
) -> Command {
    assert!(
        Path::new(WASMTIME).exists(),
        "{WASMTIME} is missing: run tests/install"
    );
    let mut cmd = Command::new(WASMTIME);
    cmd.args(["serve", "-S", "cli", "--addr", listen])
        .arg("--dir")
        .arg(format!("{}::{DATA}", data.display()));
    if let Some(auth) = auth {
        cmd.arg("--dir").arg(format!("{}::{AUTH}", auth.display()));
    }
    for (key, value) in env {
        cmd.arg("--env").arg(format!("{key}={value}"));
    }
    cmd.arg(component);
    cmd
}

/// The address in `wasmtime serve`'s `Serving HTTP on http://ADDR/` line.
pub fn serving(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("Serving HTTP on http://")?;
    rest.trim_end().trim_end_matches('/').parse().ok()
}
