//! `wharf`: an OCI registry whose protocol logic runs as a WebAssembly
//! component. This binary owns the sockets, the storage and the credentials,
//! and lends them to the component one request at a time. This file is the
//! command line only; what each command does is in the library (`lib.rs`).

/// The static (musl) build's allocator: see `serving/allocator.rs`.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use wharf::access::htpasswd;
use wharf::config::Config;
use wharf::operations::{cert, gc, health};
use wharf::sandbox::standalone;
use wharf::{logging, operations, serving};

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
        } => serving::serve(existing(config, config_if_exists), component),
        Command::Health {
            config,
            config_if_exists,
        } => {
            let config = Config::load(
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
            let config = Config::load(config.as_deref(), std::env::vars())?;
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
        } => operations::htpasswd::print_line(&user, password_stdin, cost),
        Command::Cert { hosts, port, out } => cert::make(&hosts, port, &out),
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
