//! Where a request enters: the listeners and the accept loop
//! ([`server`]), TLS ([`tls`]), the tenants a host name selects
//! ([`tenants`]), the debug listener ([`debug`]) and the storage health
//! check ([`storage_check`]), the process settings made before serving
//! ([`allocator`], [`open_files`]); and [`serve`], which wires them to the
//! sandbox for `wharf serve`.

pub mod allocator;
pub mod config;
pub mod debug;
pub mod open_files;
pub mod server;
pub mod storage_check;
pub mod tenants;
pub mod tls;

use crate::capabilities::notifications;
use crate::config::Config;
use crate::logging;
use crate::sandbox::{capacity, hot_swap, memory, runtime};
use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// `wharf serve`: reads the configuration (`file`, then `REGISTRY_*`),
/// opens every tenant's storage and credentials, loads the component
/// (`component`, or the built-in one) and serves until SIGTERM or SIGINT,
/// then drains the requests in flight.
pub fn serve(file: Option<PathBuf>, component: Option<PathBuf>) -> anyhow::Result<()> {
    allocator::tune_for_streaming();
    let config = Config::load(file.as_deref(), std::env::vars())?;
    logging::init(&config.log);
    match open_files::raise_to_hard_limit() {
        Ok((before, after)) if before != after => {
            tracing::debug!("open file limit raised from {before} to {after}");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let addr = config.addr();
    let delete_enabled = config.storage.delete.enabled;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let events = {
        // The delivery tasks run on the runtime.
        let _runtime = tokio.enter();
        notifications::Notifier::start(&config.notifications, addr)?
    };
    let tenants = Arc::new(tenants::open(&config, file.as_deref(), events.clone())?);
    let answers = server::Answers::new(&config)?;
    if answers.read_only {
        tracing::warn!(
            "read-only mode (storage.maintenance.readonly.enabled): pushes and deletes are refused"
        );
    }
    let tls = match &config.http.tls {
        None => None,
        Some(t) => Some(tls::Tls::load(&t.certificate, &t.key, &t.clientcas)?),
    };
    let any_htpasswd = config.auth.htpasswd.is_some()
        || config
            .tenants
            .iter()
            .flatten()
            .any(|t| t.auth.htpasswd.is_some());
    if any_htpasswd && tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "WARNING: htpasswd authentication WITHOUT TLS on a non-loopback address: passwords \
             cross the network in clear text. Configure http.tls (REGISTRY_HTTP_TLS_CERTIFICATE \
             and REGISTRY_HTTP_TLS_KEY; `wharf cert` makes them) or listen on 127.0.0.1 only."
        );
    }
    let max_memory = tenants
        .all()
        .iter()
        .filter_map(|t| t.limits.memory_bytes)
        .max()
        .unwrap_or(0);
    let capacity = config.capacity;
    let guest_memory_bytes = capacity
        .guest_memory_bytes
        .unwrap_or_else(memory::default_budget);
    tracing::info!(
        instances = capacity.instances,
        guest_memory_bytes,
        queue_timeout = ?capacity.queue_timeout,
        idle_timeout = ?capacity.idle_timeout,
        http2_streams = capacity.http2_streams,
        "capacity"
    );
    let sandbox = Arc::new(runtime::Sandbox::new(runtime::Sizing {
        instances: capacity.instances,
        max_memory_bytes: max_memory,
        guest_memory_bytes,
        queue_timeout: capacity.queue_timeout,
    })?);
    let source = match component {
        Some(path) => hot_swap::Source::File(path),
        None => hot_swap::Source::Embedded,
    };
    let loading = std::time::Instant::now();
    let loaded = source.load(&sandbox)?;
    tracing::info!(
        compiled = ?loaded.compiled,
        ms = loading.elapsed().as_millis() as u64,
        "component loaded"
    );
    let runtime = Arc::new(runtime::Current::new(loaded));
    let drain = config
        .http
        .draintimeout
        .unwrap_or(config::DEFAULT_DRAIN_TIMEOUT);
    let served = tokio.block_on(async move {
        let listener = bind(addr, "http.addr / REGISTRY_HTTP_ADDR").await?;
        let addr = listener.local_addr()?;
        if let Some(debug) = &config.http.debug {
            let listener = bind(debug.addr, "http.debug.addr / REGISTRY_HTTP_DEBUG_ADDR").await?;
            let metrics_path = debug.prometheus.enabled.then(|| debug.prometheus.path.clone());
            let debug_addr = listener.local_addr()?;
            tracing::info!(addr = %debug_addr, metrics = metrics_path.as_deref().unwrap_or("off"), "debug listener (health: /debug/health)");
            // Before `listening on`, so that whoever waits for that line
            // has this one too.
            let mut stdout = std::io::stdout();
            writeln!(stdout, "debug listening on {debug_addr}")?;
            stdout.flush()?;
            let debug = Arc::new(debug::Debug { tenants: tenants.clone(), metrics_path });
            tokio::spawn(debug.serve(listener));
        }
        let names: Vec<&str> = tenants.all().iter().map(|t| t.name.as_str()).collect();
        if config.tenants.is_some() {
            // Each tenant's storage was logged as it opened.
            tracing::info!(%addr, tls = tls.is_some(), tenants = ?names, "wharf serving");
        } else {
            tracing::info!(%addr, storage = %config.storage.driver().describe(), delete_enabled, tls = tls.is_some(), "wharf serving");
        }
        tokio::spawn(hot_swap::watch(sandbox, runtime.clone(), source));
        let check = config.health.storagedriver;
        if check.enabled {
            for tenant in tenants.all() {
                tokio::spawn(storage_check::watch(
                    tenant.name.clone(),
                    tenant.held.storage().clone(),
                    check,
                    tenant.storage_status.clone(),
                ));
            }
        }
        // Before the line below: a SIGTERM from then on drains.
        let stopped = shutdown_signal()?;
        // Tests and scripts wait for this line to know the port.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        let server = Arc::new(server::Server {
            runtime,
            tenants,
            tls,
            admission: capacity::Admission::new(capacity.instances, capacity.queue_timeout),
            idle_timeout: capacity.idle_timeout,
            http2_streams: capacity.http2_streams,
            answers,
            stop: tokio::sync::watch::channel(false).0,
        });
        tokio::select! {
            served = server.clone().serve(listener) => served?,
            () = stopped => {}
        }
        // Stop accepting; let each connection finish its request in flight.
        let deadline = tokio::time::Instant::now() + drain;
        server.stop.send_replace(true);
        let open = server.stop.receiver_count();
        tracing::info!(connections = open, ?drain, "shutting down: finishing the requests in flight");
        match tokio::time::timeout_at(deadline, server.stop.closed()).await {
            Ok(()) => tracing::info!("every request in flight finished"),
            Err(_) => tracing::warn!(
                connections = server.stop.receiver_count(),
                ?drain,
                "http.draintimeout passed with requests still in flight; they are cut"
            ),
        }
        // What they did is told to the notification endpoints, in the
        // time left.
        if let Some(events) = &events {
            events.flush(deadline).await;
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    // Background work (purging, online GC, reload) does not hold the exit.
    tokio.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

/// A listener on `addr`, or an error that says what to do: set `key`.
async fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "port {} is already in use (another registry running?): stop it, or listen \
                 elsewhere with {key}",
                addr.port()
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "not allowed to listen on port {} (ports below 1024 need privileges): pick \
                 another with {key}",
                addr.port()
            ),
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot listen on {addr}: {hint}")
    })
}

/// SIGTERM or SIGINT, whichever comes first; the handlers are in place
/// when this returns.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
