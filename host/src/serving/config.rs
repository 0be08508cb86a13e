//! The sections that shape serving: `http` (listener, TLS, headers,
//! draining, the debug listener), `health` (the storage check) and
//! `tenants` (several registries in one process).

use crate::access::config::Auth;
use crate::config::values::{HeaderValues, de_addr, de_duration};
use crate::sandbox::config::Limits;
use crate::storage::config::{Delete, Filesystem, StorageDriver};
use crate::storage::s3::config::S3;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `health`. registry:2's `file`, `http` and `tcp` checkers are not
/// supported (refused, as any unknown key).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub storagedriver: StorageCheck,
}

/// `health.storagedriver`: check each registry's storage every `interval`;
/// after `threshold` failures in a row the registry answers 503
/// `UNAVAILABLE` until a check passes, as registry:2 does.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageCheck {
    pub enabled: bool,
    /// Default `10s`, as registry:2.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Option<Duration>,
    /// Failures in a row that make the registry unavailable; 0 and 1 both
    /// mean the first.
    pub threshold: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// `http.addr`: where to listen, `host:port` or `:port` (all
    /// interfaces). Default `:5000`.
    #[serde(deserialize_with = "de_addr")]
    pub addr: SocketAddr,
    /// `http.host`: the registry's external URL (`https://registry.example`).
    /// When set, `Location` headers are absolute URLs under it.
    pub host: Option<String>,
    /// `http.relativeurls`: `Location` headers are paths (`/v2/...`), the
    /// default; `false` makes them absolute, from `http.host` or else the
    /// request's `X-Forwarded-Proto`, `X-Forwarded-Host` and `Host`.
    pub relativeurls: Option<bool>,
    /// `http.tls`: serve HTTPS only. No section: plain HTTP.
    pub tls: Option<Tls>,
    /// `http.secret`: registry:2 signs the upload state it hands clients
    /// with it. Wharf keeps upload state on the server and hands out only
    /// a random session id, so it has nothing to sign: accepted, unused.
    pub secret: Option<String>,
    /// `http.headers`: headers added to every response (a list of values
    /// per name, as registry:2 writes them; one value may be a plain text).
    pub headers: std::collections::BTreeMap<String, HeaderValues>,
    /// `http.draintimeout`: on SIGTERM or SIGINT, how long requests in
    /// flight may take to finish before the process exits. Default `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub draintimeout: Option<Duration>,
    /// `http.debug`: a second listener for health and metrics.
    pub debug: Option<DebugListener>,
}

/// The drain time when `http.draintimeout` is not set: less than the 10 s
/// `docker stop` waits before it kills.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `http.debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugListener {
    /// `http.debug.addr`: where the debug listener listens (`:5001`).
    #[serde(deserialize_with = "de_addr")]
    pub addr: SocketAddr,
    /// `http.debug.prometheus`: serve metrics.
    #[serde(default)]
    pub prometheus: Prometheus,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    pub enabled: bool,
    /// Default `/metrics`, as registry:2.
    pub path: String,
}

impl Default for Prometheus {
    fn default() -> Prometheus {
        Prometheus {
            enabled: false,
            path: "/metrics".to_string(),
        }
    }
}

impl Default for Http {
    fn default() -> Http {
        Http {
            addr: SocketAddr::from(([0, 0, 0, 0], 5000)),
            host: None,
            relativeurls: None,
            tls: None,
            secret: None,
            headers: Default::default(),
            draintimeout: None,
            debug: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// `http.tls.certificate`: PEM file with the server certificate chain,
    /// leaf first.
    pub certificate: PathBuf,
    /// `http.tls.key`: PEM file with the certificate's private key (RSA,
    /// ECDSA or Ed25519; PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `http.tls.clientcas`: PEM files of CAs whose client certificates are
    /// accepted. When set, every client must present one.
    pub clientcas: Vec<PathBuf>,
}

/// One entry of `tenants`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// `name`: how logs name the tenant. Required, unique.
    pub name: String,
    /// `hosts`: the host names whose requests are this tenant's, matched
    /// case-insensitively against the `Host` header without its port (and
    /// the TLS server name). Required; no host may belong to two tenants.
    pub hosts: Vec<String>,
    /// `storage`: the tenant's own storage root. Required; tenants' roots
    /// may not overlap.
    pub storage: TenantStorage,
    /// `auth`: the tenant's credentials. No section: everyone may do
    /// everything in this tenant.
    #[serde(default)]
    pub auth: Auth,
    /// `limits`: the tenant's limits, defaulting to the top-level `limits`.
    #[serde(default)]
    pub limits: Limits,
}

impl TenantStorage {
    /// The tenant's driver; `None` when it names both.
    pub fn driver(&self) -> Option<StorageDriver> {
        match (&self.filesystem, &self.s3) {
            (Some(_), Some(_)) => None,
            (_, Some(s3)) => Some(StorageDriver::S3(Box::new(s3.clone()))),
            (fs, None) => Some(StorageDriver::Filesystem(fs.clone().unwrap_or(
                Filesystem {
                    rootdirectory: PathBuf::new(),
                },
            ))),
        }
    }
}

/// A tenant's `storage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantStorage {
    /// `storage.filesystem.rootdirectory`: the tenant's data directory.
    pub filesystem: Option<Filesystem>,
    /// `storage.s3`: the tenant's bucket (and prefix), instead.
    pub s3: Option<S3>,
    /// `storage.delete.enabled`: default, the top-level `storage.delete`.
    pub delete: Option<Delete>,
}
