//! What requests may spend: `limits` (per registry: storage, memory and
//! time of one request's instance, sessions, requests in flight) and
//! `capacity` (the whole process: instance slots, guest memory, queue and
//! idle timeouts).

use crate::config::values::{de_duration, de_required_duration};
use serde::Deserialize;
use std::time::Duration;

/// `limits` (top level or a tenant's): every field optional; absent means
/// unlimited (within Wharf's own ceilings), except where a field names its
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// `storage_bytes`: the most bytes of blobs and manifests the registry
    /// may hold; a push beyond is refused (DENIED) and stores nothing.
    pub storage_bytes: Option<u64>,
    /// `memory_bytes`: the most linear memory one request's component
    /// instance may grow to; growing beyond traps that request (500).
    pub memory_bytes: Option<u64>,
    /// `request_timeout`: how long one request's instance may run, from its
    /// start until it has sent the whole response (`30s`, `500ms`, `2m`,
    /// `1h`); beyond, the instance is stopped and the request fails (500, or
    /// a cut connection once the response head is out). Set it above the
    /// time your largest layer takes to upload.
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Option<Duration>,
    /// `concurrent_uploads`: the most upload sessions that may be open
    /// (started, not yet finished or cancelled) at once; starting another
    /// is refused (DENIED). Absent: [`DEFAULT_CONCURRENT_UPLOADS`].
    pub concurrent_uploads: Option<u32>,
    /// `concurrent_requests`: the most requests of the registry that may
    /// hold a component instance at once; more wait (at most
    /// `capacity.queue_timeout`, then 503). Default 256.
    pub concurrent_requests: Option<u32>,
    /// `client_requests`: the most requests one client address may have in
    /// flight in the registry; more are refused at once (429). Default 64.
    /// Behind a reverse proxy every request comes from the proxy's
    /// address: raise it to `concurrent_requests` there.
    pub client_requests: Option<u32>,
}

/// `concurrent_uploads` when no `limits` sets it: far more than real
/// clients hold open, few enough that a tenant cannot fill its storage
/// with idle sessions.
pub const DEFAULT_CONCURRENT_UPLOADS: u32 = 1024;

impl Limits {
    /// These limits, with each absent field taken from `defaults`.
    pub fn or(self, defaults: Limits) -> Limits {
        Limits {
            storage_bytes: self.storage_bytes.or(defaults.storage_bytes),
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
            request_timeout: self.request_timeout.or(defaults.request_timeout),
            concurrent_uploads: self.concurrent_uploads.or(defaults.concurrent_uploads),
            concurrent_requests: self.concurrent_requests.or(defaults.concurrent_requests),
            client_requests: self.client_requests.or(defaults.client_requests),
        }
    }
}

/// `capacity` (Wharf only): what all requests of all tenants together may
/// hold. See ARCHITECTURE.md, "Capacity".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capacity {
    /// `instances`: requests that may hold a component instance at once,
    /// in the whole process; the instance pool is sized for this many.
    /// Default 1000.
    pub instances: u32,
    /// `queue_timeout`: how long a request waits for an instance slot (its
    /// tenant's and the process's) or for guest memory before it is
    /// answered 503 with `Retry-After`. Default `10s`.
    #[serde(deserialize_with = "de_required_duration")]
    pub queue_timeout: Duration,
    /// `guest_memory_bytes`: linear memory all instances together may
    /// hold. Default: half the machine's memory, at most 8 GiB.
    pub guest_memory_bytes: Option<u64>,
    /// `idle_timeout`: a request body that delivers nothing, or a response
    /// the client takes nothing of, for this long is cut and its instance
    /// stopped. Default `60s`.
    #[serde(deserialize_with = "de_required_duration")]
    pub idle_timeout: Duration,
    /// `http2_streams`: requests one HTTP/2 connection may carry at once.
    /// Default 100.
    pub http2_streams: u32,
}

impl Default for Capacity {
    fn default() -> Capacity {
        Capacity {
            instances: 1000,
            queue_timeout: Duration::from_secs(10),
            guest_memory_bytes: None,
            idle_timeout: Duration::from_secs(60),
            http2_streams: 100,
        }
    }
}
