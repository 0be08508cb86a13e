//! registry:2's notifications (`notifications.endpoints`): an event for
//! each manifest or blob pushed, pulled, mounted or deleted, POSTed to
//! each endpoint in registry:2's envelope
//! (`application/vnd.docker.distribution.events.v1+json`).
//!
//! Events are raised by the capabilities (`capabilities/repositories.rs`), where the
//! host does what a component asked, so a component can neither invent an
//! event nor hide one. Raising one only appends it to each endpoint's
//! queue in memory; a task per endpoint sends the queue in order, in
//! batches, and retries a failed batch until the endpoint takes it
//! (after `threshold` failures in a row, every `backoff`). A request never
//! waits for an endpoint, and no event is dropped while the process runs;
//! the queue of an endpoint that never recovers grows, and says so in the
//! log.

use crate::config::values::{HeaderValues, de_duration};
use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// `notifications`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub events: Events,
    pub endpoints: Vec<Endpoint>,
}

/// `notifications.events`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    /// `includereferences`: manifest events list the descriptors the
    /// manifest references.
    pub includereferences: bool,
}

/// One of `notifications.endpoints`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// How logs name it. Required.
    pub name: String,
    /// `http://` or `https://` URL events are POSTed to. Required.
    pub url: String,
    #[serde(default)]
    pub disabled: bool,
    /// Headers sent with each POST (`Authorization: [Bearer …]`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, HeaderValues>,
    /// How long one POST may take. Default `1s`, as registry:2.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Failures in a row before waiting `backoff` between tries. Default 10.
    #[serde(default)]
    pub threshold: Option<u32>,
    /// The wait between tries once `threshold` failed. Default `1s`.
    #[serde(default, deserialize_with = "de_duration")]
    pub backoff: Option<Duration>,
    /// Events whose target has one of these media types are not sent.
    #[serde(default)]
    pub ignoredmediatypes: Vec<String>,
    #[serde(default)]
    pub ignore: Ignore,
}

/// An endpoint's `ignore`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ignore {
    pub mediatypes: Vec<String>,
    /// `push`, `pull`, `mount`, `delete`.
    pub actions: Vec<String>,
}

/// The envelope's media type.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// Most events in one POST.
const BATCH: usize = 64;

/// What happened to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Push,
    Pull,
    Mount,
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Mount => "mount",
            Action::Delete => "delete",
        }
    }
}

/// The request an event came from.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub id: String,
    /// The client's address.
    pub addr: String,
    /// The `Host` the client asked for.
    pub host: String,
    pub method: String,
    pub user_agent: String,
    /// The request's path: a pull is told only of what it names.
    pub path: String,
    pub https: bool,
    /// Who the caller proved to be, if anyone.
    pub user: Option<String>,
}

/// What kind of thing a target is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Manifest,
    Blob,
}

/// What an event is about.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub kind: Kind,
    pub repository: String,
    /// Empty for a tag delete, which names no digest.
    pub digest: String,
    pub media_type: String,
    pub size: Option<u64>,
    pub tag: Option<String>,
    /// A mount's source repository.
    pub from_repository: Option<String>,
    /// A manifest target's content, only when its event lists references
    /// (`includereferences`).
    pub manifest: Option<Vec<u8>>,
}

/// Where events go.
pub struct Notifier {
    sinks: Vec<Arc<Sink>>,
    include_references: bool,
    /// registry:2's `source`: this process.
    source: Value,
}

struct Sink {
    endpoint: Endpoint,
    client: reqwest::Client,
    /// The endpoint's `headers`, checked at start.
    headers: hyper::header::HeaderMap,
    queue: Mutex<VecDeque<Value>>,
    wake: Notify,
}

impl Notifier {
    /// The notifier for `config`, its delivery tasks started on the
    /// current runtime; `None` without enabled endpoints.
    pub fn start(
        config: &Notifications,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<Option<Arc<Notifier>>> {
        let mut sinks = Vec::new();
        for endpoint in config.endpoints.iter().filter(|e| !e.disabled) {
            let context = || format!("notifications endpoint {}", endpoint.name);
            reqwest::Url::parse(&endpoint.url)
                .map_err(|e| anyhow::anyhow!("url {:?}: {e}", endpoint.url))
                .with_context(context)?;
            let headers = crate::config::values::header_map(&endpoint.headers, "headers")
                .with_context(context)?;
            let client = reqwest::Client::builder()
                .timeout(endpoint.timeout.unwrap_or(Duration::from_secs(1)))
                .build()?;
            tracing::info!(
                endpoint = endpoint.name,
                url = endpoint.url,
                "notifications"
            );
            sinks.push(Arc::new(Sink {
                endpoint: endpoint.clone(),
                client,
                headers,
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
            }));
        }
        if sinks.is_empty() {
            return Ok(None);
        }
        for sink in &sinks {
            tokio::spawn(sink.clone().deliver());
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "wharf".into());
        Ok(Some(Arc::new(Notifier {
            sinks,
            include_references: config.events.includereferences,
            source: json!({
                "addr": format!("{host}:{}", addr.port()),
                "instanceID": uuid::Uuid::new_v4().to_string(),
            }),
        })))
    }

    /// Wait until every endpoint has taken its queue, or `deadline`; the
    /// events still queued then are lost with the process, and logged.
    pub async fn flush(&self, deadline: tokio::time::Instant) {
        loop {
            let queued: usize = self
                .sinks
                .iter()
                .map(|s| crate::sync::lock(&s.queue).len())
                .sum();
            if queued == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    events = queued,
                    "stopping with notification events not delivered"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether manifest events list references (`includereferences`), and
    /// so need the manifest's content.
    pub fn wants_references(&self) -> bool {
        self.include_references
    }

    /// Queue an event for every endpoint that does not ignore it.
    pub fn emit(&self, action: Action, target: Target, request: &Request) {
        let event = self.event(action, &target, request);
        for sink in &self.sinks {
            let endpoint = &sink.endpoint;
            let ignored = endpoint.ignoredmediatypes.contains(&target.media_type)
                || endpoint.ignore.mediatypes.contains(&target.media_type)
                || endpoint.ignore.actions.iter().any(|a| a == action.name());
            if ignored {
                continue;
            }
            let queued = {
                let mut queue = crate::sync::lock(&sink.queue);
                queue.push_back(event.clone());
                queue.len()
            };
            if queued.is_multiple_of(10_000) {
                tracing::warn!(
                    endpoint = endpoint.name,
                    queued,
                    "notification events are piling up: the endpoint is not taking them"
                );
            }
            sink.wake.notify_one();
        }
    }

    /// registry:2's event object.
    fn event(&self, action: Action, target: &Target, request: &Request) -> Value {
        let kind = match target.kind {
            Kind::Manifest => "manifests",
            Kind::Blob => "blobs",
        };
        let scheme = if request.https { "https" } else { "http" };
        let mut t = json!({ "repository": target.repository });
        if !target.media_type.is_empty() {
            t["mediaType"] = target.media_type.clone().into();
        }
        if !target.digest.is_empty() {
            t["digest"] = target.digest.clone().into();
            t["url"] = format!(
                "{scheme}://{}/v2/{}/{kind}/{}",
                request.host, target.repository, target.digest
            )
            .into();
        }
        if let Some(size) = target.size {
            t["size"] = size.into();
            t["length"] = size.into();
        }
        if let Some(tag) = &target.tag {
            t["tag"] = tag.clone().into();
        }
        if let Some(from) = &target.from_repository {
            t["fromRepository"] = from.clone().into();
        }
        if self.include_references
            && let Some(content) = &target.manifest
        {
            t["references"] = references(content).into();
        }
        let mut event = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "timestamp": rfc3339(SystemTime::now()),
            "action": action.name(),
            "target": t,
            "request": {
                "id": request.id,
                "addr": request.addr,
                "host": request.host,
                "method": request.method,
                "useragent": request.user_agent,
            },
            "actor": {},
            "source": self.source,
        });
        if let Some(user) = &request.user {
            event["actor"]["name"] = user.clone().into();
        }
        event
    }
}

impl Sink {
    /// Send the queue, in order, for as long as the process runs.
    async fn deliver(self: Arc<Self>) {
        let endpoint = &self.endpoint;
        let threshold = endpoint.threshold.unwrap_or(10);
        let backoff = endpoint.backoff.unwrap_or(Duration::from_secs(1));
        let mut failures: u32 = 0;
        // Halved after each failure, down to one event, in case the batch
        // itself is what the endpoint refuses (too large, one bad event).
        let mut batch_size = BATCH;
        loop {
            let batch: Vec<Value> = {
                let queue = crate::sync::lock(&self.queue);
                queue.iter().take(batch_size).cloned().collect()
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            match self.send(&batch).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            endpoint = endpoint.name,
                            failures,
                            "notification endpoint recovered"
                        );
                    }
                    failures = 0;
                    batch_size = BATCH;
                    let mut queue = crate::sync::lock(&self.queue);
                    queue.drain(..batch.len());
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    batch_size = (batch.len() / 2).max(1);
                    if failures == 1 || failures.is_multiple_of(threshold) {
                        tracing::warn!(endpoint = endpoint.name, failures, events = batch.len(), error = %e, "notification delivery failed; retrying");
                    }
                    let pause = if failures >= threshold {
                        backoff
                    } else {
                        backoff.min(Duration::from_millis(100))
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn send(&self, events: &[Value]) -> anyhow::Result<()> {
        let request = self
            .client
            .post(&self.endpoint.url)
            .header(reqwest::header::CONTENT_TYPE, EVENTS_MEDIA_TYPE)
            .headers(self.headers.clone())
            .body(json!({ "events": events }).to_string());
        let response = request.send().await?;
        let status = response.status();
        // registry:2 takes any 2xx or 3xx as delivered.
        anyhow::ensure!(
            (200..400).contains(&status.as_u16()),
            "the endpoint answered {status}"
        );
        Ok(())
    }
}

/// The descriptors a manifest references (config, layers, index
/// entries, subject), as `includereferences` lists them.
fn references(content: &[u8]) -> Vec<Value> {
    let Ok(manifest) = serde_json::from_slice::<Value>(content) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |d: &Value| {
        if d.get("digest").is_some() {
            out.push(json!({
                "mediaType": d.get("mediaType").cloned().unwrap_or(Value::Null),
                "digest": d["digest"],
                "size": d.get("size").cloned().unwrap_or(Value::Null),
            }));
        }
    };
    for key in ["config", "subject"] {
        if let Some(d) = manifest.get(key) {
            add(d);
        }
    }
    for key in ["layers", "manifests"] {
        for d in manifest
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(d);
        }
    }
    out
}

/// `2026-12-02T03:04:05.123456789Z`.
fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_796_180_645, 5);
        assert_eq!(rfc3339(at), "2026-12-02T03:04:05.000000005Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn references_are_the_manifests_descriptors() {
        let m = br#"{"config":{"mediaType":"c","digest":"sha256:1","size":2},"layers":[{"mediaType":"l","digest":"sha256:2","size":3}],"subject":{"mediaType":"s","digest":"sha256:3","size":4}}"#;
        let r = references(m);
        let digests: Vec<&str> = r.iter().map(|d| d["digest"].as_str().unwrap()).collect();
        assert_eq!(digests, ["sha256:1", "sha256:3", "sha256:2"]);
    }
}
