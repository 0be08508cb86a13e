//! Wharf's configuration, read like CNCF Distribution's (registry:2): the
//! same YAML keys in an optional file, and every `REGISTRY_<PATH>`
//! environment variable overriding the file (`REGISTRY_HTTP_TLS_CERTIFICATE`
//! sets `http.tls.certificate`).
//!
//! The rules of reading are here, once: the file, then `REGISTRY_*`
//! variables applied to its tree, unknown keys refused, and the checks that
//! span sections. Each section's types and defaults live beside what they
//! configure:
//!
//! | section | types |
//! |---|---|
//! | `log` | [`crate::logging`] |
//! | `storage` (`s3` in [`crate::storage::s3::config`]) | [`crate::storage::config`] |
//! | `http`, `health`, `tenants` | [`crate::serving::config`] |
//! | `auth` | [`crate::access::config`] |
//! | `limits`, `capacity` | [`crate::sandbox::config`] |
//! | `notifications` | [`crate::capabilities::notifications`] |
//!
//! Values written the way registry:2 writes them (Go durations such as
//! `1h30m`, `:5000`, header lists) are read by [`values`].
//!
//! Nothing is silently ignored: a key Wharf does not support, in the file or
//! as a `REGISTRY_*` variable, is an error naming it, and the file and the
//! variables accept the same keys (`variables.rs` describes them once).
//! Every key that changes what is stored or who may do what is honoured.
//! One registry:2 key that changes neither is accepted with a warning, so
//! that registry:2's own `config.yml` starts: `storage.cache` (a cache
//! Wharf does not need). Variables Docker links
//! and Kubernetes services inject for a container or service named
//! `registry` are not configuration (see [`is_injected_variable`]).
//!
//! This module only reads and checks values; it opens no file but the
//! configuration itself.

pub mod values;
mod variables;

use crate::access::config::Auth;
use crate::capabilities::notifications::Notifications;
use crate::logging::Log;
use crate::sandbox::config::{Capacity, Limits};
use crate::serving::config::{Health, Http, Tenant};
use crate::storage::config::{Storage, StorageDriver};
use crate::storage::s3::config::S3;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Malformed YAML or an unsupported key; serde_yaml_ng's message names
    /// the key path and the line and column.
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "environment variable {name} is not a configuration key Wharf supports \
         (supported: {supported}); unset it"
    )]
    UnknownVariable { name: String, supported: String },
    #[error(
        "configuration key {key} is not one Wharf supports; remove it (README, \"Configuration\", lists the keys)"
    )]
    UnknownKey { key: String },
    #[error("{key}={value:?}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// The configuration file's top level (`config.yml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `version`: the configuration format; registry:2 files say `0.1`,
    /// the only version there is. Optional here.
    pub version: Option<Version>,
    /// `log`: what the server logs.
    pub log: Log,
    /// `storage`: where images live.
    pub storage: Storage,
    /// `http`: the listener.
    pub http: Http,
    /// `auth`: who may do what. No section: everyone may do everything.
    pub auth: Auth,
    /// `health`: registry:2's storage health check.
    pub health: Health,
    /// `notifications`: registry:2's events, sent to webhooks.
    pub notifications: Notifications,
    /// `limits` (Wharf only): what one request of the registry may spend,
    /// and how much it may store. Each tenant's `limits` default to these,
    /// field by field.
    pub limits: Limits,
    /// `capacity` (Wharf only): what the whole process may hold at once.
    pub capacity: Capacity,
    /// `tenants` (Wharf only): several registries in one process, each with
    /// its own hosts, storage, credentials and limits. No section: one
    /// registry, configured by `storage` and `auth`, serving every host.
    pub tenants: Option<Vec<Tenant>>,
    /// Warnings found while reading, logged once logging is set up.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `version`, a string or a number in YAML (`version: 0.1`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Version {
    Text(String),
    Number(f64),
}

/// Variables that are not configuration although they start with
/// `REGISTRY_`: Docker links to a container named `registry` inject
/// `REGISTRY_PORT`, `REGISTRY_PORT_5000_TCP_ADDR`, `REGISTRY_NAME` and
/// `REGISTRY_ENV_*`; a Kubernetes service named `registry` injects
/// `REGISTRY_SERVICE_HOST` and `REGISTRY_SERVICE_PORT*` into every pod of its
/// namespace, the registry's own included. registry:2 ignores them too.
pub fn is_injected_variable(name: &str) -> bool {
    name == "REGISTRY_PORT"
        || name == "REGISTRY_NAME"
        || ["REGISTRY_PORT_", "REGISTRY_ENV_", "REGISTRY_SERVICE_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

impl Config {
    /// The configuration: defaults, then `file` if given, then every
    /// `REGISTRY_*` variable among `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let file_error = |message: String| ConfigError::File {
                    path: path.to_path_buf(),
                    message,
                };
                // Read once as it is, for errors that name the line.
                Config::parse(&text).map_err(file_error)?;
                let tree: Value =
                    serde_yaml_ng::from_str(&text).map_err(|e| file_error(e.to_string()))?;
                variables::check(&tree).map_err(|e| file_error(e.to_string()))?;
                tree
            }
            None => Value::Null,
        };
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("REGISTRY_") && !is_injected_variable(k))
            .collect();
        // By key path, indices as numbers: REGISTRY_AUTH (the auth type)
        // before REGISTRY_AUTH_HTPASSWD_*, TENANTS_2 before TENANTS_10.
        vars.sort();
        let mut ordered = Vec::new();
        for (name, value) in vars {
            ordered.push((variables::path_of(&name)?, name, value));
        }
        ordered.sort();
        let mut set = Vec::new();
        for (_, name, value) in &ordered {
            set.push((variables::apply(&mut tree, name, value)?, name, value));
        }
        if tree.is_null() {
            tree = Value::Mapping(Default::default());
        }
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            // The file alone was read above: a variable made this wrong.
            let at = e.path().to_string();
            let culprit = set
                .iter()
                .filter(|(path, _, _)| {
                    let path = variables::display(path);
                    at == path
                        || at.starts_with(&format!("{path}."))
                        || at.starts_with(&format!("{path}["))
                })
                .max_by_key(|(path, _, _)| path.len());
            match culprit {
                Some((_, name, value)) => ConfigError::BadValue {
                    key: name.to_string(),
                    value: value.to_string(),
                    reason: e.inner().to_string(),
                },
                None => ConfigError::BadValue {
                    key: at,
                    value: String::new(),
                    reason: e.inner().to_string(),
                },
            }
        })?;
        config.check()?;
        config.collect_warnings();
        Ok(config)
    }

    /// A configuration file's text; the error names the key and the line.
    fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }

    /// What must hold once file and variables are combined.
    fn check(&self) -> Result<(), ConfigError> {
        let missing = |key: &str, variable: &str, what: &str| ConfigError::BadValue {
            key: key.to_string(),
            value: String::new(),
            reason: format!("{what} is required; set {key} or {variable}"),
        };
        if let Some(version) = &self.version {
            let ok = match version {
                Version::Text(t) => t.trim() == "0.1",
                Version::Number(n) => *n == 0.1,
            };
            if !ok {
                return Err(ConfigError::BadValue {
                    key: "version".into(),
                    value: format!("{version:?}"),
                    reason: "the only configuration version is 0.1".into(),
                });
            }
        }
        if let Some(tls) = &self.http.tls {
            if tls.certificate.as_os_str().is_empty() {
                return Err(missing(
                    "http.tls.certificate",
                    "REGISTRY_HTTP_TLS_CERTIFICATE",
                    "with TLS configured, the certificate file",
                ));
            }
            if tls.key.as_os_str().is_empty() {
                return Err(missing(
                    "http.tls.key",
                    "REGISTRY_HTTP_TLS_KEY",
                    "with TLS configured, the private key file",
                ));
            }
        }
        if let Some(htpasswd) = &self.auth.htpasswd
            && htpasswd.path.as_os_str().is_empty()
        {
            return Err(missing(
                "auth.htpasswd.path",
                "REGISTRY_AUTH_HTPASSWD_PATH",
                "with htpasswd authentication, the htpasswd file",
            ));
        }
        if let Some((key, value, reason)) = self.auth.problem() {
            return Err(ConfigError::BadValue {
                key: format!("auth.{key}"),
                value,
                reason,
            });
        }
        if self.auth.access.is_some() && self.auth.htpasswd.is_none() {
            return Err(ConfigError::BadValue {
                key: "auth.access".into(),
                value: String::new(),
                reason: "access rules name htpasswd users: configure auth.htpasswd too".into(),
            });
        }
        let capacity = &self.capacity;
        let limits = std::iter::once(("limits".to_string(), &self.limits)).chain(
            self.tenants
                .iter()
                .flatten()
                .map(|t| (format!("tenants.{}.limits", t.name), &t.limits)),
        );
        let counts = [
            ("capacity.instances".to_string(), Some(capacity.instances)),
            (
                "capacity.http2_streams".to_string(),
                Some(capacity.http2_streams),
            ),
        ]
        .into_iter()
        .chain(limits.flat_map(|(at, l)| {
            [
                (format!("{at}.concurrent_requests"), l.concurrent_requests),
                (format!("{at}.client_requests"), l.client_requests),
            ]
        }));
        for (key, value) in counts {
            if value == Some(0) {
                return Err(ConfigError::BadValue {
                    key,
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if let Some(tenants) = &self.tenants {
            self.check_tenants(tenants)?;
        }
        self.check_storage()?;
        self.check_host()?;
        self.check_endpoints()
    }

    /// One storage driver, and what Wharf can do with it.
    fn check_storage(&self) -> Result<(), ConfigError> {
        if let Some(s3) = &self.storage.s3 {
            if self.storage.filesystem.is_some() {
                return Err(ConfigError::BadValue {
                    key: "storage".into(),
                    value: "filesystem, s3".into(),
                    reason: "choose one storage driver: storage.filesystem or storage.s3".into(),
                });
            }
            check_s3(s3, "storage.s3")?;
        }
        let uses_s3 = match &self.tenants {
            None => self.storage.s3.is_some(),
            Some(tenants) => tenants.iter().any(|t| t.storage.s3.is_some()),
        };
        if uses_s3 && self.storage.maintenance.gc.enabled {
            return Err(ConfigError::BadValue {
                key: "storage.maintenance.gc.enabled".into(),
                value: "true".into(),
                reason: "online garbage collection coordinates with this process's pushes \
                         only, and several hosts may share a bucket: run `wharf gc` with the \
                         registry in read-only mode instead"
                    .into(),
            });
        }
        Ok(())
    }

    /// `http.host` is a base URL, one for the whole process.
    fn check_host(&self) -> Result<(), ConfigError> {
        let Some(host) = &self.http.host else {
            return Ok(());
        };
        let bad = |reason: &str| ConfigError::BadValue {
            key: "http.host".into(),
            value: host.clone(),
            reason: reason.into(),
        };
        let rest = host
            .strip_prefix("https://")
            .or_else(|| host.strip_prefix("http://"))
            .ok_or_else(|| bad("expected a URL like https://registry.example.com"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) {
            return Err(bad(
                "expected a scheme and host (and port) only, like https://registry.example.com:5000",
            ));
        }
        if self.tenants.is_some() {
            return Err(bad(
                "with tenants, each has hosts of its own: leave http.host unset and set \
                 http.relativeurls: false to make Location headers absolute per request",
            ));
        }
        Ok(())
    }

    /// Each endpoint needs a name of its own and a URL Wharf can POST to.
    fn check_endpoints(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, endpoint) in self.notifications.endpoints.iter().enumerate() {
            let bad = |field: &str, value: &str, reason: &str| ConfigError::BadValue {
                key: format!("notifications.endpoints[{i}].{field}"),
                value: value.to_string(),
                reason: reason.to_string(),
            };
            if endpoint.name.trim().is_empty() {
                return Err(bad("name", &endpoint.name, "an endpoint needs a name"));
            }
            if !names.insert(endpoint.name.as_str()) {
                return Err(bad("name", &endpoint.name, "two endpoints have this name"));
            }
            let url = endpoint.url.trim();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(bad(
                    "url",
                    url,
                    "expected an http:// or https:// URL with a host",
                ));
            }
            if endpoint.threshold == Some(0) {
                return Err(bad("threshold", "0", "must be at least 1"));
            }
            for action in &endpoint.ignore.actions {
                if !["push", "pull", "mount", "delete"].contains(&action.as_str()) {
                    return Err(bad(
                        "ignore.actions",
                        action,
                        "the actions are push, pull, mount and delete",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Tenants must be told apart by name, host and storage root, and each
    /// must be complete.
    fn check_tenants(&self, tenants: &[Tenant]) -> Result<(), ConfigError> {
        let bad = |key: String, value: &str, reason: String| ConfigError::BadValue {
            key,
            value: value.to_string(),
            reason,
        };
        if tenants.is_empty() {
            return Err(bad(
                "tenants".into(),
                "[]",
                "list at least one tenant, or remove the section to serve one registry".into(),
            ));
        }
        if self.auth.htpasswd.is_some() || self.auth.token.is_some() {
            return Err(bad(
                "auth".into(),
                "",
                "with tenants configured, credentials are per tenant: move the top-level auth \
                 section into each tenant that needs it"
                    .into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut hosts = std::collections::HashMap::new();
        let mut roots: Vec<(&str, PathBuf, String)> = Vec::new();
        for tenant in tenants {
            let key = |field: &str| format!("tenants[{}].{field}", tenant.name);
            if tenant.name.trim().is_empty() {
                return Err(bad(
                    "tenants[].name".into(),
                    &tenant.name,
                    "a tenant needs a name".into(),
                ));
            }
            if !names.insert(tenant.name.as_str()) {
                return Err(bad(
                    key("name"),
                    &tenant.name,
                    "two tenants have this name".into(),
                ));
            }
            if tenant.hosts.is_empty() {
                return Err(bad(
                    key("hosts"),
                    "[]",
                    "list the host names this tenant serves".into(),
                ));
            }
            for host in &tenant.hosts {
                let normal = host.trim().to_ascii_lowercase();
                if normal.is_empty() || normal.contains(['/', ' ', ':']) {
                    return Err(bad(
                        key("hosts"),
                        host,
                        "a host is a name or address without scheme, port or path".into(),
                    ));
                }
                if let Some(other) = hosts.insert(normal, tenant.name.as_str()) {
                    return Err(bad(
                        key("hosts"),
                        host,
                        format!("this host is already tenant {other}'s"),
                    ));
                }
            }
            // Where the tenant's data is, as a path: a bucket and its
            // prefix overlap another's as directories do.
            let (root, root_key, shown) = match tenant.storage.driver() {
                Some(StorageDriver::Filesystem(fs)) => {
                    let shown = fs.rootdirectory.display().to_string();
                    (fs.rootdirectory, "storage.filesystem.rootdirectory", shown)
                }
                Some(StorageDriver::S3(s3)) => {
                    check_s3(&s3, &key("storage.s3"))?;
                    let prefix = s3.rootdirectory.trim_matches('/');
                    let root = PathBuf::from(format!("/s3/{}/{prefix}", s3.bucket));
                    (
                        root,
                        "storage.s3.rootdirectory",
                        format!("s3://{}/{prefix}", s3.bucket),
                    )
                }
                None => {
                    return Err(bad(
                        key("storage"),
                        "",
                        "a tenant names both storage.filesystem and storage.s3: choose one".into(),
                    ));
                }
            };
            if root.as_os_str().is_empty() {
                return Err(missing_root(&key(root_key)));
            }
            for (other, other_root, other_shown) in &roots {
                if root.starts_with(other_root) || other_root.starts_with(&root) {
                    return Err(bad(
                        key(root_key),
                        &shown,
                        format!(
                            "overlaps tenant {other}'s {other_shown}: tenants' data must be apart"
                        ),
                    ));
                }
            }
            roots.push((&tenant.name, root, shown));
            if let Some(htpasswd) = &tenant.auth.htpasswd
                && htpasswd.path.as_os_str().is_empty()
            {
                return Err(bad(
                    key("auth.htpasswd.path"),
                    "",
                    "with htpasswd authentication, the htpasswd file is required".into(),
                ));
            }
            if let Some((field, value, reason)) = tenant.auth.problem() {
                return Err(bad(key(&format!("auth.{field}")), &value, reason));
            }
            if tenant.auth.access.is_some() && tenant.auth.htpasswd.is_none() {
                return Err(bad(
                    key("auth.access"),
                    "",
                    "access rules name htpasswd users: configure auth.htpasswd too".into(),
                ));
            }
        }
        Ok(())
    }

    fn collect_warnings(&mut self) {
        let present = [(
            "storage.cache",
            self.storage.cache.is_some(),
            "Wharf needs no blob descriptor cache",
        )];
        for (key, _, why) in present.iter().filter(|(_, set, _)| *set) {
            self.warnings
                .push(format!("configuration key {key} is ignored: {why}"));
        }
    }

    /// Where to listen.
    pub fn addr(&self) -> SocketAddr {
        self.http.addr
    }
}

/// `s3`'s settings, with errors naming keys under `prefix`.
fn check_s3(s3: &S3, prefix: &str) -> Result<(), ConfigError> {
    s3.check()
        .map_err(|(key, value, reason)| ConfigError::BadValue {
            key: format!("{prefix}.{key}"),
            value,
            reason,
        })
}

fn missing_root(key: &str) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        value: String::new(),
        reason: "each tenant needs its own data directory".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::LogLevel;
    use crate::storage::config::OnlineGc;
    use std::time::Duration;
    use values::{header_map, parse_duration};

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let f = file(text);
        Config::load(Some(f.path()), env(vars))
    }

    #[test]
    fn online_gc_is_off_by_default_and_configured_by_file_or_variables() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.storage.maintenance.gc, OnlineGc::default());
        assert!(!c.storage.maintenance.gc.enabled);
        let text = "storage:\n  maintenance:\n    gc:\n      enabled: true\n      interval: 10m\n      grace: 2h\n";
        let c = load(text, &[("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "90s")]).unwrap();
        let gc = c.storage.maintenance.gc;
        assert!(gc.enabled && !gc.dryrun);
        assert_eq!(gc.interval, Duration::from_secs(600));
        assert_eq!(gc.grace, Duration::from_secs(90));
        let bad = load(
            text,
            &[("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "often")],
        );
        assert!(bad.unwrap_err().to_string().contains("often"));
    }

    #[test]
    fn defaults_match_registry_2() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.addr().to_string(), "0.0.0.0:5000");
        assert_eq!(
            c.storage.filesystem().rootdirectory,
            PathBuf::from("/var/lib/registry")
        );
        assert!(!c.storage.delete.enabled);
        assert!(c.http.tls.is_none());
        assert!(c.auth.htpasswd.is_none());
    }

    #[test]
    fn file_only() {
        let c = load(
            "version: 0.1\n\
             log:\n  level: debug\n\
             storage:\n  filesystem:\n    rootdirectory: /data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:5443\n  host: https://registry.example\n  tls:\n    certificate: /certs/c.pem\n    key: /certs/k.pem\n    clientcas:\n      - /certs/ca1.pem\n      - /certs/ca2.pem\n\
             auth:\n  htpasswd:\n    realm: Somewhere\n    path: /auth/htpasswd\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.log.level, Some(LogLevel::Debug));
        assert_eq!(c.storage.filesystem().rootdirectory, PathBuf::from("/data"));
        assert!(c.storage.delete.enabled);
        assert_eq!(c.addr().to_string(), "127.0.0.1:5443");
        assert_eq!(c.http.host.as_deref(), Some("https://registry.example"));
        let tls = c.http.tls.unwrap();
        assert_eq!(tls.certificate, PathBuf::from("/certs/c.pem"));
        assert_eq!(tls.key, PathBuf::from("/certs/k.pem"));
        assert_eq!(tls.clientcas.len(), 2);
        let h = c.auth.htpasswd.unwrap();
        assert_eq!(h.realm, "Somewhere");
        assert_eq!(h.path, PathBuf::from("/auth/htpasswd"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    /// The environment of the compose file in issue #5, with no file.
    #[test]
    fn env_only_as_in_the_registry_2_compose_file() {
        let c = Config::load(
            None,
            env(&[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/localhost.pem"),
                ("REGISTRY_HTTP_TLS_KEY", "/certs/localhost-key.pem"),
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
                ("REGISTRY_HTTP_ADDR", ":5001"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.addr().to_string(), "0.0.0.0:5001");
        assert_eq!(c.storage.filesystem().rootdirectory, PathBuf::from("/data"));
        assert!(c.storage.delete.enabled);
        let tls = c.http.tls.unwrap();
        assert_eq!(tls.certificate, PathBuf::from("/certs/localhost.pem"));
        assert_eq!(tls.key, PathBuf::from("/certs/localhost-key.pem"));
        let h = c.auth.htpasswd.unwrap();
        assert_eq!(h.realm, "Registry Realm");
        assert_eq!(h.path, PathBuf::from("/auth/htpasswd"));
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "http:\n  addr: :5000\n  tls:\n    certificate: /c.pem\n    key: /k.pem\nstorage:\n  filesystem:\n    rootdirectory: /from-file\nauth:\n  htpasswd:\n    realm: file realm\n    path: /file/htpasswd\n",
            &[
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/env/htpasswd"),
                ("REGISTRY_HTTP_TLS_CLIENTCAS", "[/a.pem, /b.pem]"),
            ],
        )
        .unwrap();
        assert_eq!(c.addr().to_string(), "127.0.0.1:6000");
        assert_eq!(
            c.storage.filesystem().rootdirectory,
            PathBuf::from("/from-file")
        );
        let h = c.auth.htpasswd.unwrap();
        assert_eq!(h.realm, "file realm", "the file's value stays");
        assert_eq!(h.path, PathBuf::from("/env/htpasswd"));
        assert_eq!(
            c.http.tls.unwrap().clientcas,
            vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]
        );
    }

    #[test]
    fn unknown_key_in_the_file_is_an_error_naming_it() {
        let e = load(
            "version: 0.1\nhttp:\n  addr: :5000\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n    minimumtls: tls1.3\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("minimumtls"), "{e}");
        assert!(e.contains("http.tls"), "{e}");
        assert!(e.contains("line 7"), "{e}");

        let e = load("storage:\n  azure:\n    accountname: a\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("azure"), "{e}");
        let e = load("auth:\n  token:\n    realm: r\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("token"), "{e}");
    }

    #[test]
    fn bad_yaml_is_an_error_with_line_and_column() {
        let e = load("storage:\n  delete:\n    enabled: true\n  - item\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4 column 3"), "{e}");
    }

    #[test]
    fn unknown_variable_is_an_error_naming_it() {
        let e = Config::load(None, env(&[("REGISTRY_HTTP_TLS_MINIMUMTLS", "tls1.3")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("REGISTRY_HTTP_TLS_MINIMUMTLS"), "{e}");
        let e = Config::load(None, env(&[("REGISTRY_AUTH", "token")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("REGISTRY_AUTH"), "{e}");
    }

    #[test]
    fn injected_link_and_service_variables_are_not_configuration() {
        Config::load(
            None,
            env(&[
                ("REGISTRY_PORT", "tcp://10.0.0.2:5000"),
                ("REGISTRY_PORT_5000_TCP_ADDR", "10.0.0.2"),
                ("REGISTRY_SERVICE_HOST", "10.0.0.2"),
                ("REGISTRY_NAME", "/web/registry"),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::load(None, env(&[("REGISTRY_HTTP_ADDR", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("REGISTRY_HTTP_ADDR"), "{e}");
        let e =
            Config::load(None, env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")])).unwrap_err();
        assert!(
            e.to_string().contains("REGISTRY_STORAGE_DELETE_ENABLED"),
            "{e}"
        );
        let e = load("http:\n  addr: nowhere\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("addr \"nowhere\"") && e.contains("line 2"),
            "{e}"
        );
        let e = Config::load(None, env(&[("REGISTRY_AUTH", "htpasswd")])).unwrap_err();
        assert!(e.to_string().contains("REGISTRY_AUTH_HTPASSWD_PATH"), "{e}");
        let e = Config::load(None, env(&[("REGISTRY_HTTP_TLS_KEY", "/k.pem")])).unwrap_err();
        assert!(
            e.to_string().contains("REGISTRY_HTTP_TLS_CERTIFICATE"),
            "{e}"
        );
        let e = load("version: 0.2\n", &[]).unwrap_err().to_string();
        assert!(e.contains("version"), "{e}");
    }

    const TENANTS: &str = "tenants:
  - name: acme
    hosts: [\"acme.localhost\", \"registry.acme.example\"]
    storage: { filesystem: { rootdirectory: /var/lib/wharf/acme } }
    auth: { htpasswd: { realm: acme, path: /etc/wharf/acme.htpasswd } }
    limits: { storage_bytes: 10737418240, memory_bytes: 67108864, request_timeout: 30s, concurrent_uploads: 16 }
  - name: globex
    hosts: [\"globex.localhost\"]
    storage: { filesystem: { rootdirectory: /var/lib/wharf/globex } }
    auth: { htpasswd: { realm: globex, path: /etc/wharf/globex.htpasswd } }
";

    #[test]
    fn tenants_as_in_the_issue() {
        let c = load(
            &format!("limits:\n  request_timeout: 500ms\n{TENANTS}"),
            &[],
        )
        .unwrap();
        let tenants = c.tenants.unwrap();
        assert_eq!(tenants.len(), 2);
        let acme = &tenants[0];
        assert_eq!(acme.hosts, ["acme.localhost", "registry.acme.example"]);
        assert!(matches!(
            acme.storage.driver(),
            Some(StorageDriver::Filesystem(fs)) if fs.rootdirectory == Path::new("/var/lib/wharf/acme")
        ));
        assert_eq!(acme.auth.htpasswd.as_ref().unwrap().realm, "acme");
        assert_eq!(acme.limits.storage_bytes, Some(10737418240));
        assert_eq!(acme.limits.memory_bytes, Some(67108864));
        assert_eq!(acme.limits.request_timeout, Some(Duration::from_secs(30)));
        assert_eq!(acme.limits.concurrent_uploads, Some(16));
        let globex = tenants[1].limits.or(c.limits);
        assert_eq!(
            globex.request_timeout,
            Some(Duration::from_millis(500)),
            "inherited"
        );
        assert_eq!(globex.storage_bytes, None);
    }

    #[test]
    fn tenants_must_be_told_apart() {
        let e = load(&TENANTS.replace("globex.localhost", "ACME.localhost"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already tenant acme's"), "{e}");
        let e = load(&TENANTS.replace("wharf/globex", "wharf/acme/sub"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps tenant acme"), "{e}");
        let e = load(&TENANTS.replace("name: globex", "name: acme"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("two tenants"), "{e}");
        let e = load(&format!("auth:\n  htpasswd:\n    path: /a\n{TENANTS}"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("per tenant"), "{e}");
        let e = load("tenants: []\n", &[]).unwrap_err().to_string();
        assert!(e.contains("at least one tenant"), "{e}");
    }

    #[test]
    fn tenant_keys_are_checked_too() {
        let e = load(
            &TENANTS.replace("concurrent_uploads", "concurrent_pulls"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("concurrent_pulls"), "{e}");
        let e = load(&TENANTS.replace("30s", "30"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("500ms, 30s"), "{e}");
        let e = load(
            &TENANTS.replace(
                "  - name: globex\n    hosts: [\"globex.localhost\"]\n",
                "  - name: globex\n",
            ),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hosts"), "{e}");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in ["30", "s", "0s", "-1s", "3d", "1h30", ".s", ""] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    /// registry:2's image ships this config.yml; it must start Wharf.
    #[test]
    fn registry_2_default_config_starts_with_warnings() {
        let c = load(
            "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.health.storagedriver.enabled);
        assert_eq!(c.health.storagedriver.threshold, 3);
        assert_eq!(c.log.fields.unwrap()["service"], "registry");
        assert_eq!(
            c.http.headers["X-Content-Type-Options"].values(),
            ["nosniff"]
        );
        assert!(c.warnings.iter().any(|w| w.contains("storage.cache")));
    }

    #[test]
    fn headers_take_plain_values_and_a_variable_replaces_the_files_entry() {
        let c = load(
            "http:\n  headers:\n    Access-Control-Allow-Origin: ['https://ui.example']\n    Access-Control-Allow-Credentials: [true]\n    Access-Control-Max-Age: [600]\n    X-One: plain\n",
            &[("REGISTRY_HTTP_HEADERS_ACCESS-CONTROL-ALLOW-ORIGIN", "*")],
        )
        .unwrap();
        let h = &c.http.headers;
        assert_eq!(h.len(), 4, "{h:?}");
        assert_eq!(h["Access-Control-Allow-Origin"].values(), ["*"]);
        assert_eq!(h["Access-Control-Allow-Credentials"].values(), ["true"]);
        assert_eq!(h["Access-Control-Max-Age"].values(), ["600"]);
        assert_eq!(h["X-One"].values(), ["plain"]);
        let c = Config::load(
            None,
            env(&[("REGISTRY_HTTP_HEADERS_VARY", "[Origin, Accept]")]),
        )
        .unwrap();
        assert_eq!(c.http.headers["vary"].values(), ["Origin", "Accept"]);
    }

    #[test]
    fn list_entries_by_variable_are_applied_in_index_order() {
        let mut vars = Vec::new();
        let names: Vec<String> = (0..12).map(|i| format!("n{i}")).collect();
        let urls: Vec<String> = (0..12)
            .map(|i| format!("http://127.0.0.1:{}/", 9000 + i))
            .collect();
        let keys: Vec<(String, String)> = (0..12)
            .map(|i| {
                (
                    format!("REGISTRY_NOTIFICATIONS_ENDPOINTS_{i}_NAME"),
                    format!("REGISTRY_NOTIFICATIONS_ENDPOINTS_{i}_URL"),
                )
            })
            .collect();
        for i in 0..12 {
            vars.push((keys[i].0.as_str(), names[i].as_str()));
            vars.push((keys[i].1.as_str(), urls[i].as_str()));
        }
        let c = Config::load(None, env(&vars)).unwrap();
        let got: Vec<&str> = c
            .notifications
            .endpoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(got, names);
    }

    #[test]
    fn http_host_is_a_base_url_and_not_for_tenants() {
        let ok = Config::load(
            None,
            env(&[("REGISTRY_HTTP_HOST", "https://r.example:5000/")]),
        )
        .unwrap();
        assert_eq!(ok.http.host.as_deref(), Some("https://r.example:5000/"));
        for bad in ["r.example", "https://", "https://r.example/registry"] {
            let e = Config::load(None, env(&[("REGISTRY_HTTP_HOST", bad)])).unwrap_err();
            assert!(e.to_string().contains("http.host"), "{bad}: {e}");
        }
        let e = load(&format!("http:\n  host: https://r.example\n{TENANTS}"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("with tenants"), "{e}");
    }

    #[test]
    fn wharfs_own_sections_are_set_by_variables_too() {
        let c = Config::load(
            None,
            env(&[
                ("REGISTRY_LIMITS_STORAGE_BYTES", "1048576"),
                ("REGISTRY_CAPACITY_QUEUE_TIMEOUT", "2s"),
                (
                    "REGISTRY_TENANTS",
                    "[{name: a, hosts: [a.localhost], storage: {filesystem: {rootdirectory: /a}}}]",
                ),
                ("REGISTRY_TENANTS_0_LIMITS_CONCURRENT_UPLOADS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.storage_bytes, Some(1 << 20));
        assert_eq!(c.capacity.queue_timeout, Duration::from_secs(2));
        let tenants = c.tenants.unwrap();
        assert_eq!(tenants[0].hosts, ["a.localhost"]);
        assert_eq!(tenants[0].limits.concurrent_uploads, Some(3));
    }

    #[test]
    fn token_auth_comes_from_the_file_or_registry_2_variables() {
        let file = "auth:\n  token:\n    realm: https://auth.example.com/token\n    service: registry.example.com\n    issuer: auth.example.com\n    rootcertbundle: /certs/bundle.pem\n";
        let t = load(file, &[]).unwrap().auth.token.unwrap();
        assert_eq!(t.realm, "https://auth.example.com/token");
        assert_eq!(t.rootcertbundle, Some(PathBuf::from("/certs/bundle.pem")));
        let t = load(
            "",
            &[
                ("REGISTRY_AUTH", "token"),
                ("REGISTRY_AUTH_TOKEN_REALM", "https://a/token"),
                ("REGISTRY_AUTH_TOKEN_SERVICE", "s"),
                ("REGISTRY_AUTH_TOKEN_ISSUER", "i"),
                ("REGISTRY_AUTH_TOKEN_JWKS", "/certs/jwks.json"),
                ("REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS", "[ES256, EdDSA]"),
            ],
        )
        .unwrap()
        .auth
        .token
        .unwrap();
        assert_eq!(t.jwks, Some(PathBuf::from("/certs/jwks.json")));
        assert_eq!(t.signingalgorithms, ["ES256", "EdDSA"]);
        let refused = |text: &str, wanted: &[&str]| {
            let e = load(text, &[]).unwrap_err().to_string();
            for w in wanted {
                assert!(e.contains(w), "{e} (wanted {w})");
            }
        };
        refused(
            "auth:\n  token:\n    service: s\n    issuer: i\n    jwks: /j\n",
            &["auth.token.realm", "REGISTRY_AUTH_TOKEN_REALM"],
        );
        refused(
            "auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n",
            &["auth.token.rootcertbundle", "jwks"],
        );
        refused(
            &format!("{file}    signingalgorithms: [HS256]\n"),
            &["auth.token.signingalgorithms", "shared secret"],
        );
        refused(
            &format!("{file}    autoredirect: true\n"),
            &["auth.token.autoredirect", "realm"],
        );
        refused(
            &format!("{file}  htpasswd:\n    path: /auth/htpasswd\n"),
            &["not both"],
        );
        refused(
            &format!("{file}  access: {{rules: []}}\n"),
            &["auth.access", "token server"],
        );
        refused(&format!("{file}    audience: x\n"), &["audience"]);
        // Per tenant, as htpasswd is; at the top level beside tenants, not.
        let tenant = |auth: &str| {
            format!(
                "tenants:\n  - name: acme\n    hosts: [acme.localhost]\n    storage: {{ filesystem: {{ rootdirectory: /a }} }}\n    auth: {auth}\n"
            )
        };
        let c = load(
            &tenant("{ token: { realm: r, service: s, issuer: i, jwks: /j } }"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.tenants.unwrap()[0].auth.token.as_ref().unwrap().service,
            "s"
        );
        refused(
            &tenant("{ token: { realm: r, service: s, issuer: i } }"),
            &["tenants[acme].auth.token.rootcertbundle"],
        );
        refused(&format!("{file}{}", tenant("{}")), &["per tenant"]);
    }

    #[test]
    fn header_maps_hold_one_entry_per_header_and_refuse_what_http_cannot_carry() {
        let c = load(
            "http:\n  headers:\n    Vary: [Origin, Accept]\n    vary: [Cookie]\n    X-Max: [600]\n",
            &[],
        )
        .unwrap();
        let map = header_map(&c.http.headers, "http.headers").unwrap();
        let vary: Vec<_> = map.get_all("vary").iter().collect();
        assert_eq!(vary, ["Cookie"], "the spelling sorting last wins");
        assert_eq!(map["x-max"], "600");
        let bad = load("http:\n  headers:\n    Bad Name: [x]\n", &[]).unwrap();
        let e = header_map(&bad.http.headers, "http.headers").unwrap_err();
        assert!(e.to_string().contains("Bad Name"), "{e}");
    }

    #[test]
    fn s3_is_read_from_the_file_and_registry_2_variables() {
        let c = load(
            "storage:\n  s3:\n    region: garage\n    bucket: images\n    forcepathstyle: true\n",
            &[
                (
                    "REGISTRY_STORAGE_S3_REGIONENDPOINT",
                    "http://127.0.0.1:3900",
                ),
                ("REGISTRY_STORAGE_S3_ACCESSKEY", "GK1"),
                ("REGISTRY_STORAGE_S3_SECRETKEY", "secret"),
                ("REGISTRY_STORAGE_S3_SECURE", "false"),
                ("REGISTRY_STORAGE_S3_CHUNKSIZE", "5242880"),
                ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/registry"),
            ],
        )
        .unwrap();
        let StorageDriver::S3(s3) = c.storage.driver() else {
            panic!("expected s3: {:?}", c.storage);
        };
        assert_eq!(
            (s3.region.as_str(), s3.bucket.as_str()),
            ("garage", "images")
        );
        assert_eq!(s3.regionendpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert!(s3.forcepathstyle && !s3.secure);
        assert_eq!(s3.chunk_size(), 5 << 20);
        assert_eq!(s3.rootdirectory, "/registry");
        // The variable alone selects the driver, as REGISTRY_STORAGE does.
        let c = load(
            "",
            &[
                ("REGISTRY_STORAGE", "s3"),
                ("REGISTRY_STORAGE_S3_REGION", "us-east-1"),
                ("REGISTRY_STORAGE_S3_BUCKET", "b"),
            ],
        )
        .unwrap();
        assert!(matches!(c.storage.driver(), StorageDriver::S3(s) if s.chunk_size() == 10 << 20));
    }

    #[test]
    fn s3_settings_wharf_cannot_honour_stop_the_start_naming_the_key() {
        let s3 = "storage:\n  s3:\n    region: r\n    bucket: b\n";
        let cases = [
            (
                format!("{s3}    chunksize: 1048576\n"),
                "storage.s3.chunksize",
            ),
            (format!("{s3}    encrypt: true\n"), "storage.s3.encrypt"),
            (
                format!("{s3}    accesskey: only-half\n"),
                "storage.s3.accesskey",
            ),
            (
                format!("{s3}    regionendpoint: 127.0.0.1:3900\n"),
                "storage.s3.regionendpoint",
            ),
            (
                format!("{s3}  filesystem:\n    rootdirectory: /d\n"),
                "choose one storage driver",
            ),
            (
                format!("{s3}  maintenance:\n    gc:\n      enabled: true\n"),
                "storage.maintenance.gc.enabled",
            ),
        ];
        for (yaml, want) in cases {
            let e = load(&yaml, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn access_rules_come_from_the_file_or_a_variable_and_need_htpasswd() {
        let htpasswd = "auth:\n  htpasswd:\n    path: /auth/htpasswd\n";
        let rules = "{rules: [{repositories: [\"**\"], users: [\"*\"], actions: [pull]}]}";
        let c = load(htpasswd, &[("REGISTRY_AUTH_ACCESS", rules)]).unwrap();
        assert_eq!(c.auth.access.unwrap().len(), 1);
        let in_file = format!("{htpasswd}  access: {rules}\n");
        assert_eq!(load(&in_file, &[]).unwrap().auth.access.unwrap().len(), 1);
        let e = load(&format!("auth:\n  access: {rules}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.htpasswd"), "{e}");
        let e = load(
            htpasswd,
            &[("REGISTRY_AUTH_ACCESS", "{rules: [{repositories: [x]}]}")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("REGISTRY_AUTH_ACCESS"), "{e}");
    }
}
