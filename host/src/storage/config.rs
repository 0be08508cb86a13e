//! The `storage` section: which driver holds a registry's data (the
//! filesystem, or S3 with its keys in [`super::s3::config`]), whether
//! deletes are allowed, and maintenance (upload purging, online GC,
//! read-only mode).

use super::s3::config::S3;
use crate::config::values::de_required_duration;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// `storage.filesystem`: the default driver (see [`Storage::driver`]).
    pub filesystem: Option<Filesystem>,
    /// `storage.s3`: objects in an S3 bucket, in registry:2's layout.
    pub s3: Option<S3>,
    /// `storage.delete`.
    pub delete: Delete,
    /// `storage.maintenance`: upload purging, online GC, read-only mode.
    pub maintenance: Maintenance,
    /// `storage.cache`: registry:2's blob descriptor cache. Ignored (warned).
    pub cache: Option<IgnoredAny>,
    /// `storage.redirect.disable`: registry:2 redirects blob GETs only on
    /// object storage; on the filesystem neither it nor Wharf ever does, so
    /// either value serves blobs directly.
    pub redirect: Redirect,
}

/// Where a registry's images live: the storage driver configured.
#[derive(Debug, Clone)]
pub enum StorageDriver {
    Filesystem(Filesystem),
    S3(Box<S3>),
}

impl Storage {
    /// `storage.filesystem`, or its default.
    pub fn filesystem(&self) -> Filesystem {
        self.filesystem.clone().unwrap_or_default()
    }

    /// The driver in use: `s3` if configured, else the filesystem.
    pub fn driver(&self) -> StorageDriver {
        match &self.s3 {
            Some(s3) => StorageDriver::S3(Box::new(s3.clone())),
            None => StorageDriver::Filesystem(self.filesystem()),
        }
    }
}

impl StorageDriver {
    /// Where the data is, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            StorageDriver::Filesystem(fs) => fs.rootdirectory.display().to_string(),
            StorageDriver::S3(s3) => {
                format!("s3://{}/{}", s3.bucket, s3.rootdirectory.trim_matches('/'))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redirect {
    pub disable: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystem {
    /// `storage.filesystem.rootdirectory`: where blobs and metadata live, in
    /// registry:2's layout. Default `/var/lib/registry`, as registry:2.
    pub rootdirectory: PathBuf,
}

impl Default for Filesystem {
    fn default() -> Filesystem {
        Filesystem {
            rootdirectory: PathBuf::from("/var/lib/registry"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delete {
    /// `storage.delete.enabled`: whether manifests, tags and blob links may be
    /// deleted. Default false.
    pub enabled: bool,
}

/// `storage.maintenance`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    pub uploadpurging: UploadPurging,
    /// `storage.maintenance.gc` (Wharf only): online garbage collection.
    pub gc: OnlineGc,
    /// `storage.maintenance.readonly.enabled`: pushes and deletes are
    /// refused (405 UNSUPPORTED, as registry:2), pulls served.
    pub readonly: ReadOnly,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadOnly {
    pub enabled: bool,
}

/// `storage.maintenance.uploadpurging`: remove upload sessions idle for
/// longer than `age`, every `interval`, as registry:2 does (same defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadPurging {
    pub enabled: bool,
    #[serde(deserialize_with = "de_required_duration")]
    pub age: Duration,
    #[serde(deserialize_with = "de_required_duration")]
    pub interval: Duration,
    /// Only log what would be removed.
    pub dryrun: bool,
}

impl Default for UploadPurging {
    fn default() -> UploadPurging {
        UploadPurging {
            enabled: true,
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    }
}

/// `storage.maintenance.gc` (Wharf only): collect unreferenced blobs
/// every `interval` while serving, leaving blobs stored or linked within
/// `grace` (a push uploads its blobs before the manifest naming them: make
/// `grace` longer than your slowest push). Off by default; manifests are
/// never removed online (`wharf gc --delete-untagged` does, offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineGc {
    pub enabled: bool,
    #[serde(deserialize_with = "de_required_duration")]
    pub interval: Duration,
    #[serde(deserialize_with = "de_required_duration")]
    pub grace: Duration,
    /// Only log what would be removed.
    pub dryrun: bool,
}

impl Default for OnlineGc {
    fn default() -> OnlineGc {
        OnlineGc {
            enabled: false,
            interval: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(3600),
            dryrun: false,
        }
    }
}
