//! Hot swap of the protocol component: on SIGHUP, or when the file given
//! with `--component` changes (checked every [`POLL`]), the component is
//! compiled again and, if it compiles and fits the `wharf:registry/registry`
//! world, serves every request from then on. Requests in flight finish on
//! the component they started on; upload sessions live in host storage, so
//! an upload started before a swap finishes after it. A component that is
//! refused is logged, and the one serving keeps serving.

use crate::sandbox::runtime::{Current, Runtime, Sandbox};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the component file is checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// Where the component comes from.
#[derive(Clone)]
pub enum Source {
    /// The component built into this binary.
    Embedded,
    /// A component file (`--component PATH`).
    File(PathBuf),
}

impl Source {
    /// Compile the component; refused unless it fits the world.
    pub fn load(&self, sandbox: &Sandbox) -> anyhow::Result<Runtime> {
        match self {
            Source::Embedded => sandbox.load_embedded(),
            Source::File(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading the component {}", path.display()))?;
                let core = crate::sandbox::standalone::registry_core(&bytes)
                    .with_context(|| format!("reading the component {}", path.display()))?;
                sandbox
                    .load(core)
                    .with_context(|| format!("loading the component {}", path.display()))
            }
        }
    }
}

/// What identifies a version of the file: its modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reload on SIGHUP and on changes of the component file, until the
/// process ends. Must run inside the tokio runtime.
pub async fn watch(sandbox: Arc<Sandbox>, current: Arc<Current>, source: Source) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    let path = match &source {
        Source::File(path) => Some(path.clone()),
        Source::Embedded => None,
    };
    let mut seen = path.as_deref().and_then(stamp);
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = async {
                match hangup.as_mut() {
                    Some(h) => { h.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => "SIGHUP",
            _ = poll.tick() => {
                let Some(path) = &path else { continue };
                let now = stamp(path);
                if now.is_none() || now == seen {
                    continue;
                }
                seen = now;
                "the component file changed"
            }
        };
        if path.is_none() {
            tracing::info!(
                "{why}: serving the built-in component, nothing to reload (use --component PATH)"
            );
            continue;
        }
        let (sandbox, source) = (sandbox.clone(), source.clone());
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || source.load(&sandbox)).await {
            Ok(Ok(runtime)) => {
                current.replace(runtime);
                tracing::info!(
                    reason = why,
                    ms = started.elapsed().as_millis() as u64,
                    "reloaded the component: new requests use it, requests in flight finish on the old one"
                );
            }
            Ok(Err(e)) => tracing::error!(
                reason = why,
                error = format!("{e:#}"),
                "refused the new component; the previous one keeps serving"
            ),
            Err(e) => {
                tracing::error!(reason = why, error = %e, "reloading the component failed; the previous one keeps serving")
            }
        }
    }
}
