//! The operator's configuration, read from the environment as registry:2
//! (and `wharf serve`) read it: `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`
//! (default `/var/lib/registry`, a directory the host preopens) and
//! `REGISTRY_STORAGE_DELETE_ENABLED` (off unless true).

use std::path::PathBuf;

/// The data directory when the environment names none: registry:2's.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub root: PathBuf,
    pub delete_enabled: bool,
}

impl Settings {
    /// The settings `var` (an environment lookup) describes.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let root = var("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
            .filter(|root| !root.is_empty())
            .unwrap_or_else(|| DEFAULT_ROOT.to_string());
        let delete_enabled = var("REGISTRY_STORAGE_DELETE_ENABLED")
            .and_then(|v| wharf_spec::settings::parse_bool(&v))
            .unwrap_or(false);
        Settings {
            root: PathBuf::from(root),
            delete_enabled,
        }
    }

    /// The settings of this process's environment.
    pub fn from_env() -> Settings {
        Settings::from_vars(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_to_registry2s_root_and_no_deletes() {
        let s = settings(&[]);
        assert_eq!(s.root, PathBuf::from("/var/lib/registry"));
        assert!(!s.delete_enabled);
    }

    #[test]
    fn reads_the_root_and_the_delete_switch() {
        let s = settings(&[
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "TRUE"),
        ]);
        assert_eq!(s.root, PathBuf::from("/data"));
        assert!(s.delete_enabled);
        for off in ["false", "no", "0", "maybe", ""] {
            assert!(
                !settings(&[("REGISTRY_STORAGE_DELETE_ENABLED", off)]).delete_enabled,
                "{off}"
            );
        }
    }
}
