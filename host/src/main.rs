//! `wharf`: an OCI registry whose protocol logic runs as a WebAssembly
//! component. This binary owns the sockets, the storage and the credentials,
//! and lends them to the component one request at a time.

mod auth;
mod bindings;
mod blobs;
mod cert;
mod config;
mod htpasswd;
mod metadata;
mod runtime;
mod server;
mod state;
mod storage;
mod tls;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
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
    /// Run the registry, configured like registry:2: an optional YAML file
    /// with Distribution's keys, overridden by REGISTRY_<PATH> variables
    /// (REGISTRY_HTTP_ADDR, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY,
    /// REGISTRY_STORAGE_DELETE_ENABLED, REGISTRY_HTTP_TLS_CERTIFICATE,
    /// REGISTRY_HTTP_TLS_KEY, REGISTRY_HTTP_TLS_CLIENTCAS, REGISTRY_AUTH=htpasswd,
    /// REGISTRY_AUTH_HTPASSWD_PATH, REGISTRY_AUTH_HTPASSWD_REALM, REGISTRY_LOG_LEVEL).
    /// Without any: plain HTTP on :5000, data in /var/lib/registry.
    Serve {
        /// A registry:2 configuration file (config.yml).
        config: Option<PathBuf>,
    },
    /// Print an htpasswd line with a bcrypt hash for USER, as
    /// `htpasswd -Bbn USER PASSWORD` does: `wharf htpasswd alice >> auth/htpasswd`.
    Htpasswd {
        user: String,
        /// Read the password from standard input (first line) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
        /// bcrypt cost: each step doubles the time to check a password.
        #[arg(long, default_value_t = htpasswd::DEFAULT_COST, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
    /// Make a local CA (once per directory) and a server certificate signed
    /// by it, valid for the given names plus localhost, 127.0.0.1 and ::1.
    Cert {
        /// A name or address clients use to reach the registry (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// The registry's port, for the path Docker reads the CA from.
        #[arg(long, default_value_t = 5000)]
        port: u16,
        /// Where to write ca.crt, ca-key.pem, <host>.pem and <host>-key.pem.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => serve(config),
        Command::Htpasswd {
            user,
            password_stdin,
            cost,
        } => htpasswd_line(&user, password_stdin, cost),
        Command::Cert { hosts, port, out } => make_cert(&hosts, port, &out),
    }
}

fn init_logging(level: Option<config::LogLevel>) {
    let default = level.map_or("info", config::LogLevel::directive);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}

fn serve(file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::Config::load(file.as_deref(), std::env::vars())?;
    init_logging(config.log.level);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let addr = config.addr();
    let rootdirectory = &config.storage.filesystem.rootdirectory;
    let delete_enabled = config.storage.delete.enabled;
    let storage = Arc::new(
        storage::FsStorage::open(rootdirectory, delete_enabled).context("opening storage")?,
    );
    let auth: Arc<dyn auth::Authenticator> = match &config.auth.htpasswd {
        None => Arc::new(auth::AllowAll),
        Some(h) => {
            let htpasswd = htpasswd::Htpasswd::open(&h.path, &h.realm)?;
            tracing::info!(path = %h.path.display(), users = htpasswd.users(), realm = h.realm, "htpasswd authentication");
            Arc::new(htpasswd)
        }
    };
    let tls = match &config.http.tls {
        None => None,
        Some(t) => Some(tls::Tls::load(&t.certificate, &t.key, &t.clientcas)?),
    };
    if config.auth.htpasswd.is_some() && tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "WARNING: htpasswd authentication WITHOUT TLS on a non-loopback address: passwords \
             cross the network in clear text. Configure http.tls (REGISTRY_HTTP_TLS_CERTIFICATE \
             and REGISTRY_HTTP_TLS_KEY; `wharf cert` makes them) or listen on 127.0.0.1 only."
        );
    }
    let capabilities = state::Capabilities {
        blobs: storage.clone(),
        metadata: storage,
        auth,
    };
    let runtime = Arc::new(runtime::Runtime::new(runtime::EMBEDDED_COMPONENT)?);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, rootdirectory = %config.storage.filesystem.rootdirectory.display(), delete_enabled, tls = tls.is_some(), "wharf serving");
        // Tests and scripts wait for this line to know the port.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        let server = Arc::new(server::Server {
            runtime,
            capabilities,
            tls,
        });
        tokio::select! {
            served = server.serve(listener) => served,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
        }
    })
}

fn htpasswd_line(user: &str, password_stdin: bool, cost: u32) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        text.lines().next().unwrap_or_default().to_string()
    } else {
        let first = rpassword::prompt_password(format!("Password for {user}: "))
            .context("reading the password (no terminal? use --password-stdin)")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        anyhow::ensure!(first == again, "the passwords differ; nothing written");
        first
    };
    anyhow::ensure!(!password.is_empty(), "empty password; nothing written");
    println!("{}", htpasswd::entry(user, &password, cost)?);
    Ok(())
}

fn make_cert(hosts: &[String], port: u16, out: &std::path::Path) -> anyhow::Result<()> {
    let issued = cert::issue(out, hosts)?;
    let host = &issued.names[0];
    let ca = issued.ca_certificate.display();
    println!(
        "CA certificate:     {ca} ({})",
        if issued.ca_created {
            "new"
        } else {
            "existing, reused"
        }
    );
    println!("server certificate: {}", issued.certificate.display());
    println!("server key:         {}", issued.key.display());
    println!("valid for:          {}", issued.names.join(", "));
    println!();
    println!("Serve with:");
    println!(
        "  REGISTRY_HTTP_TLS_CERTIFICATE={} REGISTRY_HTTP_TLS_KEY={} wharf serve",
        issued.certificate.display(),
        issued.key.display()
    );
    println!("Make Docker trust it (on each Docker host, as root):");
    println!("  mkdir -p /etc/docker/certs.d/{host}:{port}");
    println!("  cp {ca} /etc/docker/certs.d/{host}:{port}/ca.crt");
    println!("Docker treats names resolving to 127.0.0.0/8 as insecure and skips the check there.");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
