//! What the process counts, for Prometheus (`http.debug.prometheus`):
//! requests by tenant, method, route and status, their latency, bytes in
//! and out, upload sessions and stored bytes per tenant, component
//! instantiations, guest traps and timeouts, and the credential cache.
//!
//! One process-wide set of metrics ([`METRICS`]): each part of the host
//! bumps its own counters, and the debug listener (`serving/debug.rs`) encodes
//! them in Prometheus's text format with the `prometheus-client` crate.
//! Labels take bounded values only: a method Wharf does not serve is
//! `OTHER`, and a path is reduced to its route.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub tenant: String,
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    pub tenant: String,
    /// `cached` (a recent success, no bcrypt), `verified` (bcrypt said
    /// yes) or `failed`.
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub received_bytes: Family<TenantLabels, Counter>,
    pub sent_bytes: Family<TenantLabels, Counter>,
    pub uploads_open: Family<TenantLabels, Gauge>,
    pub stored_bytes: Family<TenantLabels, Gauge>,
    pub instantiations: Counter,
    pub traps: Counter,
    pub timeouts: Counter,
    pub credentials: Family<CredentialLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wharf");
        let metrics = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            uploads_open: Family::default(),
            stored_bytes: Family::default(),
            instantiations: Counter::default(),
            traps: Counter::default(),
            timeouts: Counter::default(),
            credentials: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "Requests answered, by tenant, method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival until its response was sent, by method and route",
            metrics.latency.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Request body bytes received, by tenant",
            metrics.received_bytes.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent, by tenant",
            metrics.sent_bytes.clone(),
        );
        registry.register(
            "upload_sessions_open",
            "Upload sessions started and not yet finished or cancelled, by tenant",
            metrics.uploads_open.clone(),
        );
        registry.register(
            "storage_bytes",
            "Bytes of blobs, manifests and upload data stored, by tenant (counted from disk at most once a minute)",
            metrics.stored_bytes.clone(),
        );
        registry.register(
            "component_instantiations",
            "Component instances made (one per request that reached the component)",
            metrics.instantiations.clone(),
        );
        registry.register(
            "guest_traps",
            "Requests whose component instance trapped or failed",
            metrics.traps.clone(),
        );
        registry.register(
            "guest_timeouts",
            "Requests stopped at their request_timeout",
            metrics.timeouts.clone(),
        );
        registry.register(
            "credential_checks",
            "Credential checks by result: cached (no bcrypt), verified, failed",
            metrics.credentials.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Count one answered request.
    pub fn request(
        &self,
        tenant: &str,
        method: &hyper::Method,
        path: &str,
        status: u16,
        seconds: f64,
        sent: u64,
    ) {
        let method = method_label(method);
        let route = route(path);
        self.requests
            .get_or_create(&RequestLabels {
                tenant: tenant.to_string(),
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
        if sent > 0 {
            self.sent_bytes
                .get_or_create(&TenantLabels {
                    tenant: tenant.to_string(),
                })
                .inc_by(sent);
        }
    }

    /// A counter of request body bytes for `tenant`.
    pub fn received(&self, tenant: &str) -> Counter {
        self.received_bytes
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .clone()
    }

    /// Count one credential check.
    pub fn credential(&self, tenant: &str, result: &str) {
        self.credentials
            .get_or_create(&CredentialLabels {
                tenant: tenant.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Set what a tenant holds, as last counted.
    pub fn held(&self, tenant: &str, uploads_open: u32, stored_bytes: u64) {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        self.uploads_open
            .get_or_create(&labels)
            .set(i64::from(uploads_open));
        self.stored_bytes
            .get_or_create(&labels)
            .set(i64::try_from(stored_bytes).unwrap_or(i64::MAX));
    }

    /// Everything, in Prometheus's text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn method_label(method: &hyper::Method) -> &'static str {
    use hyper::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The distribution API route a path is for, with repository names,
/// digests and session ids left out.
pub fn route(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return if path == "/" || path == "/v2" {
            "base"
        } else {
            "other"
        };
    };
    if rest.is_empty() {
        return "base";
    }
    if rest == "_catalog" {
        return "catalog";
    }
    if rest.ends_with("/tags/list") {
        return "tags";
    }
    if rest.contains("/manifests/") {
        return "manifest";
    }
    if rest.contains("/blobs/uploads") {
        return "blob_upload";
    }
    if rest.contains("/blobs/") {
        return "blob";
    }
    if rest.contains("/referrers/") {
        return "referrers";
    }
    "other"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_routes_without_names() {
        assert_eq!(route("/v2/"), "base");
        assert_eq!(route("/"), "base");
        assert_eq!(route("/v2/_catalog"), "catalog");
        assert_eq!(route("/v2/a/b/tags/list"), "tags");
        assert_eq!(route("/v2/a/manifests/latest"), "manifest");
        assert_eq!(route("/v2/a/blobs/sha256:ab"), "blob");
        assert_eq!(route("/v2/a/blobs/uploads/"), "blob_upload");
        assert_eq!(route("/v2/a/blobs/uploads/0c2f"), "blob_upload");
        assert_eq!(route("/v2/a/referrers/sha256:ab"), "referrers");
        assert_eq!(route("/favicon.ico"), "other");
    }

    #[test]
    fn counted_requests_are_in_the_text() {
        let metrics = Metrics::new();
        metrics.request(
            "acme",
            &hyper::Method::GET,
            "/v2/a/manifests/x",
            200,
            0.004,
            512,
        );
        metrics.held("acme", 2, 4096);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"wharf_http_requests_total{tenant="acme",method="GET",route="manifest",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"wharf_http_sent_bytes_total{tenant="acme"} 512"#),
            "{text}"
        );
        assert!(
            text.contains(r#"wharf_upload_sessions_open{tenant="acme"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("wharf_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
