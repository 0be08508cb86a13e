//! The debug listener (`http.debug.addr`), apart from the registry's own:
//! `/debug/health` answers 200 when every tenant's storage answers and 503
//! naming each one that does not, and with `http.debug.prometheus.enabled`
//! the metrics (`metrics.rs`) are served at `http.debug.prometheus.path`.
//! Plain HTTP, no credentials, no component: put it where only operators
//! and their monitoring reach it, as registry:2's.

use crate::metrics::METRICS;
use crate::serving::tenants::Tenants;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a storage check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Debug {
    pub tenants: Arc<Tenants>,
    /// The metrics path, when Prometheus is enabled.
    pub metrics_path: Option<String>,
}

impl Debug {
    /// Serve `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let debug = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let debug = debug.clone();
                    async move { Ok::<_, std::convert::Infallible>(debug.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn answer<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        let path = req.uri().path();
        if path == "/debug/health" {
            return self.health().await;
        }
        if self.metrics_path.as_deref() == Some(path) {
            self.count_storage().await;
            let mut response = text(StatusCode::OK, &METRICS.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return response;
        }
        text(StatusCode::NOT_FOUND, "not found: try /debug/health\n")
    }

    /// 200 `{}` when every tenant's storage answers; 503 with what failed,
    /// by tenant, when one does not.
    async fn health(&self) -> Response<Full<Bytes>> {
        let mut failures = serde_json::Map::new();
        for tenant in self.tenants.all() {
            let storage = tenant.held.storage().clone();
            let Err(failure) = crate::serving::storage_check::check(storage, CHECK_TIMEOUT).await
            else {
                continue;
            };
            tracing::warn!(tenant = tenant.name, failure, "health check failed");
            failures.insert(format!("storage {}", tenant.name), failure.into());
        }
        let status = if failures.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut response = text(status, &serde_json::Value::Object(failures).to_string());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// Bring each tenant's upload and storage gauges up to date.
    async fn count_storage(&self) {
        for tenant in self.tenants.all() {
            let held = tenant.held.clone();
            let name = tenant.name.clone();
            let counted = tokio::task::spawn_blocking(move || held.usage())
                .await
                .map_err(|e| e.to_string())
                .and_then(|counted| counted.map_err(|e| e.to_string()));
            match counted {
                Ok((open, bytes)) => METRICS.held(&name, open, bytes),
                Err(error) => {
                    tracing::warn!(tenant = name, error, "cannot count the tenant's storage")
                }
            }
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
