//! Tenants: the registries one Wharf process serves, each with its own
//! hosts, capabilities (storage, credentials) and limits.
//!
//! A request belongs to the tenant whose hosts include the request's host:
//! the `Host` header (or HTTP/2 `:authority`) without its port, compared
//! case-insensitively, and under TLS the server name the client sent (SNI).
//! Without a `tenants` section there is one tenant, serving every host.
//! The tenant is chosen by the host before any component runs, and the
//! component instance is lent that tenant's capabilities only.

use crate::access::rules;
use crate::capabilities::notifications::Notifier;
use crate::config::Config;
use crate::operations::gc;
use crate::sandbox::capacity::{self, TenantGate};
use crate::sandbox::config::{DEFAULT_CONCURRENT_UPLOADS, Limits};
use crate::sandbox::runtime::Lent;
use crate::sandbox::state::Capabilities;
use crate::storage::quota::Quota;
use crate::storage::{self, Backend};
use anyhow::Context as _;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One registry: what its requests may reach and spend.
pub struct Tenant {
    /// How logs name it (`default` for the single registry).
    pub name: String,
    pub capabilities: Capabilities,
    pub limits: Limits,
    /// Its share of the process's instances, and each client's share of it.
    pub gate: TenantGate,
    /// Its storage as the quota counts it: for health and metrics.
    pub held: Arc<Quota<dyn Backend>>,
    /// What `health.storagedriver` last found.
    pub storage_status: Arc<crate::serving::storage_check::Status>,
}

/// Why a request has no tenant.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoTenant {
    #[error("no registry is served here for host {0:?}")]
    UnknownHost(String),
    #[error("the request names host {host:?} but the TLS connection was opened for {sni:?}")]
    Misdirected { host: String, sni: String },
}

/// Every tenant, by host.
pub struct Tenants {
    by_host: HashMap<String, Arc<Tenant>>,
    /// The single registry, when no `tenants` are configured.
    single: Option<Arc<Tenant>>,
    all: Vec<Arc<Tenant>>,
}

impl Tenants {
    /// One registry serving every host.
    pub fn single(tenant: Tenant) -> Tenants {
        let tenant = Arc::new(tenant);
        Tenants {
            by_host: HashMap::new(),
            single: Some(tenant.clone()),
            all: vec![tenant],
        }
    }

    /// Several registries, each serving its hosts. The configuration
    /// already refused a host listed twice.
    pub fn new(tenants: impl IntoIterator<Item = (Tenant, Vec<String>)>) -> Tenants {
        let mut by_host = HashMap::new();
        let mut all = Vec::new();
        for (tenant, hosts) in tenants {
            let tenant = Arc::new(tenant);
            for host in hosts {
                by_host.insert(normalize(&host), tenant.clone());
            }
            all.push(tenant);
        }
        Tenants {
            by_host,
            single: None,
            all,
        }
    }

    pub fn all(&self) -> &[Arc<Tenant>] {
        &self.all
    }

    /// The tenant serving a request for `host` (a `Host` header value, port
    /// included or not) over a connection whose TLS server name was `sni`.
    pub fn select(&self, host: Option<&str>, sni: Option<&str>) -> Result<Arc<Tenant>, NoTenant> {
        if let Some(single) = &self.single {
            return Ok(single.clone());
        }
        let host = host.map(strip_port).map(normalize);
        let sni = sni.map(normalize);
        let name = match (&host, &sni) {
            (Some(host), Some(sni)) => {
                // A connection opened for one tenant carries only its requests.
                let by_host = self.by_host.get(host);
                let by_sni = self.by_host.get(sni);
                match (by_host, by_sni) {
                    (Some(a), Some(b)) if !Arc::ptr_eq(a, b) => {
                        return Err(NoTenant::Misdirected {
                            host: host.clone(),
                            sni: sni.clone(),
                        });
                    }
                    _ => host,
                }
            }
            (Some(host), None) => host,
            (None, Some(sni)) => sni,
            (None, None) => return Err(NoTenant::UnknownHost(String::new())),
        };
        self.by_host
            .get(name)
            .cloned()
            .ok_or_else(|| NoTenant::UnknownHost(name.clone()))
    }
}

fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `name:port` → `name`, `[::1]:port` → `::1`, `[::1]` → `::1`.
fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

impl Tenant {
    /// What each of its requests' instances is lent and held to.
    pub fn lent(&self) -> Lent<'_> {
        Lent {
            tenant: &self.name,
            capabilities: &self.capabilities,
            limits: &self.limits,
        }
    }
}

/// The registries to serve: each configured tenant, or the single registry
/// of `storage` and `auth`.
pub fn open(
    config: &Config,
    file: Option<&Path>,
    events: Option<Arc<Notifier>>,
) -> anyhow::Result<Tenants> {
    let Some(list) = &config.tenants else {
        return Ok(Tenants::single(open_one(config, file, None, events)?));
    };
    let mut opened = Vec::new();
    for entry in list {
        let tenant = open_one(config, file, Some(entry), events.clone())
            .with_context(|| format!("tenant {}", entry.name))?;
        opened.push((tenant, entry.hosts.clone()));
    }
    Ok(Tenants::new(opened))
}

/// One registry: the tenant `entry` configures, each of its settings
/// defaulting to the top level's, or without one the single registry of
/// the top-level `storage`, `auth` and `limits`.
fn open_one(
    config: &Config,
    file: Option<&Path>,
    entry: Option<&super::config::Tenant>,
    events: Option<Arc<Notifier>>,
) -> anyhow::Result<Tenant> {
    let (name, driver, auth, limits) = match entry {
        None => (
            "default",
            config.storage.driver(),
            &config.auth,
            config.limits,
        ),
        Some(t) => (
            t.name.as_str(),
            t.storage.driver().context("names two storage drivers")?,
            &t.auth,
            t.limits.or(config.limits),
        ),
    };
    let delete_enabled = entry
        .and_then(|t| t.storage.delete.as_ref())
        .map_or(config.storage.delete.enabled, |d| d.enabled);
    let options = storage::Options {
        delete_enabled,
        redirect: !config.storage.redirect.disable,
    };
    let rules_source = file.map(|file| rules::Source {
        file: file.to_path_buf(),
        tenant: entry.map(|t| t.name.clone()),
    });
    let maintenance = &config.storage.maintenance;
    let storage = storage::open(&driver, options).with_context(|| {
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
        .unwrap_or(DEFAULT_CONCURRENT_UPLOADS);
    let held = Arc::new(
        Quota::new(
            storage,
            name,
            limits.storage_bytes,
            Some(concurrent_uploads),
        )
        .context("counting the tenant's storage")?,
    );
    let (blobs, metadata): (Arc<dyn storage::BlobStore>, Arc<dyn storage::MetadataStore>) =
        (held.clone(), held.clone());
    let access = crate::access::open(auth, rules_source, maintenance.readonly.enabled, name)?;
    if let Some(t) = entry {
        tracing::info!(tenant = t.name, hosts = ?t.hosts, storage = %driver.describe(), delete_enabled, "tenant");
    }
    Ok(Tenant {
        name: name.to_string(),
        capabilities: Capabilities {
            blobs,
            metadata,
            auth: access,
            events,
        },
        limits,
        held,
        storage_status: Default::default(),
        gate: TenantGate::new(
            limits
                .concurrent_requests
                .unwrap_or(capacity::DEFAULT_CONCURRENT_REQUESTS),
            limits
                .client_requests
                .unwrap_or(capacity::DEFAULT_CLIENT_REQUESTS),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AllowAll;

    fn tenant(name: &str, dir: &std::path::Path) -> Tenant {
        let root = dir.join(name);
        let storage: Arc<dyn Backend> =
            Arc::new(crate::storage::FsStorage::open(&root, false).unwrap());
        let held = Arc::new(Quota::new(storage, name, None, None).unwrap());
        Tenant {
            name: name.into(),
            capabilities: Capabilities {
                blobs: held.clone(),
                metadata: held.clone(),
                auth: Arc::new(AllowAll),
                events: None,
            },
            limits: Limits::default(),
            gate: TenantGate::new(4, 4),
            held,
            storage_status: Default::default(),
        }
    }

    fn two(dir: &std::path::Path) -> Tenants {
        Tenants::new([
            (
                tenant("acme", dir),
                vec!["acme.localhost".into(), "Registry.Acme.Example".into()],
            ),
            (tenant("globex", dir), vec!["globex.localhost".into()]),
        ])
    }

    fn name(t: Result<Arc<Tenant>, NoTenant>) -> Result<String, NoTenant> {
        t.map(|t| t.name.clone())
    }

    #[test]
    fn host_header_selects_the_tenant_without_port_and_case() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = two(dir.path());
        assert_eq!(
            name(tenants.select(Some("acme.localhost:5000"), None)).unwrap(),
            "acme"
        );
        assert_eq!(
            name(tenants.select(Some("REGISTRY.acme.example"), None)).unwrap(),
            "acme"
        );
        assert_eq!(
            name(tenants.select(Some("globex.localhost."), None)).unwrap(),
            "globex"
        );
    }

    #[test]
    fn unknown_or_missing_host_has_no_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = two(dir.path());
        assert_eq!(
            name(tenants.select(Some("initech.localhost:5000"), None)),
            Err(NoTenant::UnknownHost("initech.localhost".into()))
        );
        assert!(tenants.select(Some("127.0.0.1:5000"), None).is_err());
        assert!(tenants.select(Some("[::1]:5000"), None).is_err());
        assert!(tenants.select(None, None).is_err());
    }

    #[test]
    fn sni_selects_without_host_and_must_agree_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = two(dir.path());
        assert_eq!(
            name(tenants.select(None, Some("globex.localhost"))).unwrap(),
            "globex"
        );
        assert_eq!(
            name(tenants.select(Some("acme.localhost"), Some("registry.acme.example"))).unwrap(),
            "acme"
        );
        assert!(matches!(
            tenants.select(Some("acme.localhost"), Some("globex.localhost")),
            Err(NoTenant::Misdirected { .. })
        ));
    }

    #[test]
    fn a_single_registry_serves_every_host() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = Tenants::single(tenant("default", dir.path()));
        assert_eq!(
            name(tenants.select(Some("anything:1"), None)).unwrap(),
            "default"
        );
        assert_eq!(name(tenants.select(None, None)).unwrap(), "default");
    }

    #[test]
    fn ports_are_stripped_but_ipv6_addresses_kept() {
        assert_eq!(strip_port("a.example:443"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
