//! `wharf`: an OCI registry whose protocol logic runs as a WebAssembly
//! component. This binary owns the sockets, the storage and the credentials,
//! and lends them to the component one request at a time.

mod access_rules;
mod allocator;
mod auth;
mod bindings;
mod capacity;
mod cert;
mod config;
mod debug;
mod gc;
mod guest_memory;
mod health;
mod htpasswd;
mod logging;
mod metrics;
mod notifications;
mod open_files;
mod progress;
mod quota;
mod reload;
mod repositories;
mod runtime;
mod server;
mod standalone;
mod state;
mod storage;
mod storage_check;
mod sync;
mod tenants;
mod tls;
mod token;
mod wasi_streams;

/// The static (musl) build's allocator: see `allocator.rs`.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::{Read as _, Write as _};
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
        /// Read this configuration file if it exists, and start on defaults
        /// if it does not (the container image passes registry:2's
        /// /etc/docker/registry/config.yml).
        #[arg(long, value_name = "PATH", conflicts_with = "config")]
        config_if_exists: Option<PathBuf>,
        /// Serve with this component (a `wasm32-wasip2` component built for
        /// the `wharf:registry/registry` world, or a standalone registry,
        /// whose core is used) instead of the built-in one; it is reloaded
        /// when the file changes and on SIGHUP.
        #[arg(long, value_name = "PATH")]
        component: Option<PathBuf>,
    },
    /// The registry component itself, for other hosts and for registries.
    Component {
        #[command(subcommand)]
        action: ComponentCommand,
    },
    /// Remove what no manifest references, offline (stop the registry, or
    /// keep pushes away, while it runs): blobs no manifest names, and with
    /// --delete-untagged the manifests no tag reaches (directly, as an index
    /// child, a subject or a referrer). Reads the same configuration as
    /// `serve` for the data directory. To collect blobs while serving, set
    /// storage.maintenance.gc instead.
    Gc {
        /// A registry:2 configuration file (config.yml).
        config: Option<PathBuf>,
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove manifests that no tag reaches.
        #[arg(long)]
        delete_untagged: bool,
    },
    /// Ask the registry configured as for `serve` (same file and
    /// REGISTRY_* variables) whether it is well: /debug/health on
    /// http.debug.addr when set, else GET / on http.addr. Exits 0 if it is,
    /// 1 if not; the container image's HEALTHCHECK.
    Health {
        /// A registry:2 configuration file (config.yml).
        config: Option<PathBuf>,
        /// Read this configuration file if it exists.
        #[arg(long, value_name = "PATH", conflicts_with = "config")]
        config_if_exists: Option<PathBuf>,
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

#[derive(Subcommand)]
enum ComponentCommand {
    /// Write the registry component that `wharf serve` runs to OUT; with
    /// --standalone, the one that runs in any wasi-http host
    /// (`wasmtime serve -S cli --dir DATA::/var/lib/registry OUT`): the same
    /// component composed with storage on wasi:filesystem and htpasswd
    /// authentication (README: "Run the registry in your own wasmtime host").
    Export {
        out: PathBuf,
        /// Write the standalone form, which imports only WASI 0.2.
        #[arg(long)]
        standalone: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            config,
            config_if_exists,
            component,
        } => serve(existing(config, config_if_exists), component),
        Command::Health {
            config,
            config_if_exists,
        } => {
            let config = config::Config::load(
                existing(config, config_if_exists).as_deref(),
                std::env::vars(),
            )?;
            match health::check(&config) {
                Ok(answer) => {
                    println!("healthy: {answer}");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("unhealthy: {e:#}");
                    std::process::exit(1);
                }
            }
        }
        Command::Gc {
            config,
            dry_run,
            delete_untagged,
        } => {
            let config = config::Config::load(config.as_deref(), std::env::vars())?;
            logging::init(&config.log);
            gc::run(
                &config,
                gc::Options {
                    dry_run,
                    delete_untagged,
                },
            )
        }
        Command::Htpasswd {
            user,
            password_stdin,
            cost,
        } => htpasswd_line(&user, password_stdin, cost),
        Command::Cert { hosts, port, out } => make_cert(&hosts, port, &out),
        Command::Component {
            action: ComponentCommand::Export { out, standalone },
        } => standalone::export(&out, standalone),
    }
}

/// The configuration file to read: the one given, or `if_exists` when it
/// exists.
fn existing(config: Option<PathBuf>, if_exists: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| if_exists.filter(|path| path.exists()))
}

fn serve(file: Option<PathBuf>, component: Option<PathBuf>) -> anyhow::Result<()> {
    allocator::tune_for_streaming();
    let config = config::Config::load(file.as_deref(), std::env::vars())?;
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
    let tenants = Arc::new(open_tenants(&config, file.as_deref(), events.clone())?);
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
        .unwrap_or_else(guest_memory::default_budget);
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
        Some(path) => reload::Source::File(path),
        None => reload::Source::Embedded,
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
        tokio::spawn(reload::watch(sandbox, runtime.clone(), source));
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

/// The registries to serve: each configured tenant, or the single registry
/// of `storage` and `auth`.
fn open_tenants(
    config: &config::Config,
    file: Option<&std::path::Path>,
    events: Option<Arc<notifications::Notifier>>,
) -> anyhow::Result<tenants::Tenants> {
    let Some(list) = &config.tenants else {
        let options = storage::Options {
            delete_enabled: config.storage.delete.enabled,
            redirect: !config.storage.redirect.disable,
        };
        let tenant = open_tenant(
            "default",
            &config.storage.driver(),
            options,
            (
                &config.auth,
                file.map(|file| access_rules::Source {
                    file: file.to_path_buf(),
                    tenant: None,
                }),
            ),
            config.limits,
            &config.storage.maintenance,
            events,
        )?;
        return Ok(tenants::Tenants::single(tenant));
    };
    let mut opened = Vec::new();
    for t in list {
        let delete = t
            .storage
            .delete
            .as_ref()
            .map_or(config.storage.delete.enabled, |d| d.enabled);
        let driver = t
            .storage
            .driver()
            .with_context(|| format!("tenant {} names two storage drivers", t.name))?;
        let options = storage::Options {
            delete_enabled: delete,
            redirect: !config.storage.redirect.disable,
        };
        let tenant = open_tenant(
            &t.name,
            &driver,
            options,
            (
                &t.auth,
                file.map(|file| access_rules::Source {
                    file: file.to_path_buf(),
                    tenant: Some(t.name.clone()),
                }),
            ),
            t.limits.or(config.limits),
            &config.storage.maintenance,
            events.clone(),
        )
        .with_context(|| format!("tenant {}", t.name))?;
        tracing::info!(tenant = t.name, hosts = ?t.hosts, storage = %driver.describe(), delete_enabled = delete, "tenant");
        opened.push((tenant, t.hosts.clone()));
    }
    Ok(tenants::Tenants::new(opened))
}

fn open_tenant(
    name: &str,
    driver: &config::StorageDriver,
    options: storage::Options,
    (auth, rules_source): (&config::Auth, Option<access_rules::Source>),
    limits: config::Limits,
    maintenance: &config::Maintenance,
    events: Option<Arc<notifications::Notifier>>,
) -> anyhow::Result<tenants::Tenant> {
    let storage = storage::open(driver, options).with_context(|| {
        format!(
            "opening the storage of registry {name} ({})",
            driver.describe()
        )
    })?;
    let purging = maintenance.uploadpurging;
    if purging.enabled {
        storage::start_upload_purging(
            storage.clone(),
            name,
            purging.age,
            purging.interval,
            purging.dryrun,
        );
    }
    if maintenance.gc.enabled && maintenance.readonly.enabled {
        tracing::info!(
            tenant = name,
            "online garbage collection is off in read-only mode: run `wharf gc` now"
        );
    } else if maintenance.gc.enabled {
        gc::start_online(storage.clone(), maintenance.gc, name);
    }
    let concurrent_uploads = limits
        .concurrent_uploads
        .unwrap_or(config::DEFAULT_CONCURRENT_UPLOADS);
    let held = Arc::new(
        quota::Quota::new(
            storage,
            name,
            limits.storage_bytes,
            Some(concurrent_uploads),
        )
        .context("counting the tenant's storage")?,
    );
    let (blobs, metadata): (Arc<dyn storage::BlobStore>, Arc<dyn storage::MetadataStore>) =
        (held.clone(), held.clone());
    let read_only = maintenance.readonly.enabled;
    let auth: Arc<dyn auth::Authenticator> = match (&auth.htpasswd, &auth.token, read_only) {
        (None, None, false) => Arc::new(auth::AllowAll),
        (None, None, true) => Arc::new(auth::ReadOnly(auth::AllowAll)),
        (_, Some(t), read_only) => {
            let keys = token::TrustedKeys::load(t.rootcertbundle.as_deref(), t.jwks.as_deref())?;
            let token = token::Token::new(t, keys, name)?;
            tracing::info!(
                tenant = name,
                realm = t.realm,
                service = t.service,
                issuer = t.issuer,
                "token authentication"
            );
            if read_only {
                Arc::new(auth::ReadOnly(token))
            } else {
                Arc::new(token)
            }
        }
        (Some(h), None, read_only) => {
            let htpasswd = htpasswd::Htpasswd::open(&h.path, &h.realm, name)?;
            tracing::info!(tenant = name, path = %h.path.display(), users = htpasswd.users(), realm = h.realm, "htpasswd authentication");
            // The rules govern even when there are none yet, so that
            // adding them to the file takes effect without a restart.
            if let Some(rules) = &auth.access {
                tracing::info!(tenant = name, rules = rules.len(), "access rules");
            }
            let governed =
                access_rules::Governed::new(htpasswd, auth.access.clone(), rules_source, name);
            if read_only {
                Arc::new(auth::ReadOnly(governed))
            } else {
                Arc::new(governed)
            }
        }
    };
    Ok(tenants::Tenant {
        name: name.to_string(),
        capabilities: state::Capabilities {
            blobs,
            metadata,
            auth,
            events,
        },
        limits,
        held,
        storage_status: Default::default(),
        gate: capacity::TenantGate::new(
            limits
                .concurrent_requests
                .unwrap_or(capacity::DEFAULT_CONCURRENT_REQUESTS),
            limits
                .client_requests
                .unwrap_or(capacity::DEFAULT_CLIENT_REQUESTS),
        ),
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
