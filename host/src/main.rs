//! `wharf`: an OCI registry whose protocol logic runs as a WebAssembly
//! component. This binary owns the sockets, the storage and the credentials,
//! and lends them to the component one request at a time.

mod auth;
mod bindings;
mod blobs;
mod config;
mod metadata;
mod runtime;
mod server;
mod state;
mod storage;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "An OCI registry whose protocol runs as a WebAssembly component"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry. Configured like registry:2, with REGISTRY_* variables:
    /// REGISTRY_HTTP_ADDR (default 0.0.0.0:5000),
    /// REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY (default /var/lib/registry),
    /// REGISTRY_STORAGE_DELETE_ENABLED (default false).
    Serve,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve => serve(),
    }
}

fn serve() -> anyhow::Result<()> {
    let config = config::Config::from_env(|k| std::env::var(k).ok())?;
    let storage = Arc::new(
        storage::FsStorage::open(&config.rootdirectory, config.delete_enabled)
            .context("opening storage")?,
    );
    let capabilities = state::Capabilities {
        blobs: storage.clone(),
        metadata: storage,
        auth: Arc::new(auth::AllowAll),
    };
    let runtime = Arc::new(runtime::Runtime::new(runtime::EMBEDDED_COMPONENT)?);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("listening on {}", config.addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, rootdirectory = %config.rootdirectory.display(), delete_enabled = config.delete_enabled, "wharf serving");
        // Tests and scripts wait for this line to know the port.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        let server = Arc::new(server::Server { runtime, capabilities });
        tokio::select! {
            served = server.serve(listener) => served,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
