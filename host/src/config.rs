//! Wharf's configuration, read like CNCF Distribution's: the same names,
//! given as `REGISTRY_*` environment variables. Defaults live here and only
//! here.

use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    /// `http.addr` / `REGISTRY_HTTP_ADDR`: where to listen. Default `0.0.0.0:5000`.
    pub addr: SocketAddr,
    /// `storage.filesystem.rootdirectory` / `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`:
    /// where blobs and metadata live. Default `/var/lib/registry`, as registry:2.
    pub rootdirectory: PathBuf,
    /// `storage.delete.enabled` / `REGISTRY_STORAGE_DELETE_ENABLED`: whether
    /// manifests, tags and blob links may be deleted. Default false.
    pub delete_enabled: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: SocketAddr::from(([0, 0, 0, 0], 5000)),
            rootdirectory: PathBuf::from("/var/lib/registry"),
            delete_enabled: false,
        }
    }
}

impl Config {
    /// The defaults, overridden by `REGISTRY_*` variables from `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let mut config = Config::default();
        if let Some(addr) = env("REGISTRY_HTTP_ADDR") {
            config.addr =
                parse_addr(&addr).with_context(|| format!("REGISTRY_HTTP_ADDR={addr:?}"))?;
        }
        if let Some(dir) = env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") {
            config.rootdirectory = PathBuf::from(dir);
        }
        if let Some(enabled) = env("REGISTRY_STORAGE_DELETE_ENABLED") {
            config.delete_enabled = parse_bool(&enabled)
                .with_context(|| format!("REGISTRY_STORAGE_DELETE_ENABLED={enabled:?}"))?;
        }
        Ok(config)
    }
}

/// `host:port` or `:port` (all interfaces), as registry:2 accepts.
fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .with_context(|| "expected an address like 0.0.0.0:5000, 127.0.0.1:5000 or :5000")
}

fn parse_bool(s: &str) -> anyhow::Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("expected true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_match_registry_2() {
        let c = Config::from_env(env(&[])).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:5000");
        assert_eq!(c.rootdirectory, PathBuf::from("/var/lib/registry"));
        assert!(!c.delete_enabled);
    }

    #[test]
    fn registry_variables_override_defaults() {
        let c = Config::from_env(env(&[
            ("REGISTRY_HTTP_ADDR", ":5001"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ]))
        .unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:5001");
        assert_eq!(c.rootdirectory, PathBuf::from("/data"));
        assert!(c.delete_enabled);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = Config::from_env(env(&[("REGISTRY_HTTP_ADDR", "nowhere")])).unwrap_err();
        assert!(format!("{e:#}").contains("REGISTRY_HTTP_ADDR"));
        let e = Config::from_env(env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")])).unwrap_err();
        assert!(format!("{e:#}").contains("REGISTRY_STORAGE_DELETE_ENABLED"));
    }
}
