//! The HTTP server: accepts connections (over TLS when configured), picks
//! each request's tenant by host (refusing, with 421 and an OCI error, a
//! host no tenant serves), hands the request to the current runtime with
//! that tenant's capabilities and limits and the caller's credentials and
//! address, and logs one line per request.
//!
//! Before a request may take a component instance, the server checks its
//! credentials (`access/mod.rs`: a refusal is answered 401 here) and admits it
//! (`sandbox/capacity.rs`: slots per client address, per tenant and in the
//! process; a refusal is answered 429 or 503 here, with `Retry-After`).
//! Its request body gives up when the client sends nothing for the idle
//! timeout, and its response body tells the runtime when the client stops
//! reading (`sandbox/progress.rs`).
//!
//! Connection limits keep hostile or broken clients from holding resources:
//! a connection must deliver its TLS handshake and first request head
//! within [`ConnectionLimits::header_read`] (and every later head within
//! the same time after the previous response, so idle keep-alive
//! connections close), request heads are limited in bytes and header
//! count (431 beyond), and response bodies are pulled by hyper only as the
//! socket drains, so a client that stops reading pins a few 4 MiB
//! windows, until the idle timeout closes its connection. An HTTP/2
//! connection carries at most `capacity.http2_streams` requests at once.

use crate::access::Caller;
use crate::sandbox::capacity::{Admission, Refusal};
use crate::sandbox::memory::Overloaded;
use crate::sandbox::progress::{Progress, RequestBody, Tracked, Written};
use crate::sandbox::runtime::Current;
use crate::serving::tenants::Tenants;
use crate::serving::tls::Tls;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, LOCATION, RETRY_AFTER,
    USER_AGENT, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wharf_spec::Code;

pub struct Server {
    /// The component serving new requests (replaced by a reload).
    pub runtime: Arc<Current>,
    /// The registries served, chosen per request by host.
    pub tenants: Arc<Tenants>,
    /// Serve HTTPS only, with this certificate; `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// The process's instance slots.
    pub admission: Admission,
    /// How long a request body may send nothing (and a response go
    /// untaken) before the request is cut.
    pub idle_timeout: Duration,
    /// Requests one HTTP/2 connection may carry at once.
    pub http2_streams: u32,
    /// What the host adds to or changes in every answer.
    pub answers: Answers,
    /// Set to true to stop: no new connections, and each open one closes
    /// once its request in flight is answered. Every connection holds a
    /// receiver, so the sender's `closed()` tells when all have ended.
    pub stop: tokio::sync::watch::Sender<bool>,
}

/// Operator settings for every answer, whoever makes it.
pub struct Answers {
    /// `storage.maintenance.readonly`: pushes and deletes are refused.
    pub read_only: bool,
    /// `http.headers`: added to every response that lacks them.
    pub headers: hyper::header::HeaderMap,
    /// How `Location` headers are written.
    pub locations: Locations,
    /// `log.accesslog.disabled` unset: a line per request.
    pub access_log: bool,
}

/// `Location` headers as the component writes them (paths), or absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locations {
    Relative,
    /// Under this base (`http.host`), or with none under the request's
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` (or `Host`).
    Absolute(Option<String>),
}

impl Answers {
    /// From the configuration; a header that HTTP cannot carry is an
    /// error naming it.
    pub fn new(config: &crate::config::Config) -> anyhow::Result<Answers> {
        let headers = crate::config::values::header_map(&config.http.headers, "http.headers")?;
        let http = &config.http;
        let locations = match (&http.host, http.relativeurls) {
            (_, Some(true)) | (None, None) => Locations::Relative,
            (host, _) => {
                Locations::Absolute(host.as_ref().map(|h| h.trim_end_matches('/').to_string()))
            }
        };
        Ok(Answers {
            read_only: config.storage.maintenance.readonly.enabled,
            headers,
            locations,
            access_log: !config.log.accesslog.disabled,
        })
    }
}

/// Limits on what one connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time for the TLS handshake plus a request head, and for each later
    /// request head of a kept-alive connection.
    pub header_read: Duration,
    /// Largest request head (request line plus headers), in bytes.
    pub max_head_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read: Duration::from_secs(30),
            max_head_bytes: 400 * 1024,
            max_headers: 100,
        }
    }
}

impl ConnectionLimits {
    /// The defaults, with the header read timeout overridable in whole
    /// seconds by `WHARF_HEADER_READ_TIMEOUT` (tests use a short one).
    pub fn from_env() -> ConnectionLimits {
        let mut limits = ConnectionLimits::default();
        if let Some(secs) = std::env::var("WHARF_HEADER_READ_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
        {
            limits.header_read = Duration::from_secs(secs);
        }
        limits
    }
}

impl Server {
    /// Serve connections from `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
        let limits = ConnectionLimits::from_env();
        let mut stopping = self.stop.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopping.wait_for(|stop| *stop) => return Ok(()),
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            // The address the client reached: the authority of a request
            // that names none.
            let local = stream
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let ends = Ends { peer, local };
            let server = self.clone();
            let stopping = self.stop.subscribe();
            tokio::spawn(async move {
                match server.tls.clone() {
                    None => {
                        server
                            .serve_connection(stream, ends, Transport::Plain, limits, stopping)
                            .await
                    }
                    Some(tls) => {
                        match tokio::time::timeout(limits.header_read, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let sni = stream.get_ref().1.server_name().map(Arc::<str>::from);
                                let transport = Transport::Tls { sni };
                                server
                                    .serve_connection(stream, ends, transport, limits, stopping)
                                    .await
                            }
                            Ok(Err(e)) => tracing::info!(%peer, error = %e, "connection refused"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }

    async fn serve_connection<I>(
        self: Arc<Self>,
        io: I,
        ends: Ends,
        transport: Transport,
        limits: ConnectionLimits,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let server = self;
        let http2_streams = server.http2_streams;
        // Told when a request finds its client has stopped reading: the
        // connection, whose socket no longer drains, is closed.
        let cut = Arc::new(Notify::new());
        let cut_request = cut.clone();
        let written = Written::new();
        let written_request = written.clone();
        // Set by the first request: until then the connection is on the
        // clock (hyper's own header timeout starts only once it knows the
        // connection speaks HTTP/1, not while it tells HTTP/1 from HTTP/2).
        let spoke = Arc::new(AtomicBool::new(false));
        let first = spoke.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            let transport = transport.clone();
            let cut = cut_request.clone();
            let written = written_request.clone();
            first.store(true, Ordering::Release);
            async move {
                Ok::<_, std::convert::Infallible>(
                    server.handle(req, ends, transport, cut, written).await,
                )
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .max_buf_size(limits.max_head_bytes)
            .max_headers(limits.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(http2_streams);
        let connection = builder.serve_connection(TokioIo::new(Tracked::new(io, written)), service);
        tokio::pin!(connection);
        // Resolves only if no request came within the header read time.
        let silent = async {
            tokio::time::sleep(limits.header_read).await;
            if spoke.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(silent);
        let mut draining = false;
        let result = loop {
            tokio::select! {
                result = &mut connection => break result,
                () = cut.notified() => {
                    tracing::info!(peer = %ends.peer, "closing the connection of a client that stopped reading");
                    return;
                }
                () = &mut silent => {
                    tracing::info!(peer = %ends.peer, "closing a connection that sent no request in time");
                    return;
                }
                // Shutting down: finish the request in flight, take no more.
                _ = stopping.wait_for(|stop| *stop), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %ends.peer, error = %e, "connection ended with an error");
        }
    }

    async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        ends: Ends,
        transport: Transport,
        cut: Arc<Notify>,
        written: Arc<Written>,
    ) -> Response<LoggedBody> {
        let peer = ends.peer;
        let started = Instant::now();
        // From here on an unread body is drained after the answer, whoever
        // answers, so that clients that send before they read see it.
        let mut req = req.map(|body| RequestBody::new(body, self.idle_timeout));
        let mut line = Line {
            tenant: String::from("-"),
            peer,
            user: None,
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_string),
            user_agent: req
                .headers()
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let head = req.method() == hyper::Method::HEAD;
        let base = match &self.answers.locations {
            Locations::Relative => None,
            Locations::Absolute(Some(host)) => Some(host.clone()),
            Locations::Absolute(None) => {
                request_base(&req, matches!(transport, Transport::Tls { .. }))
            }
        };
        let credentials = req
            .headers_mut()
            .remove(AUTHORIZATION)
            .and_then(|v| v.to_str().ok().map(str::to_string));
        let caller = Caller {
            credentials,
            peer: Some(peer),
        };
        // A connection whose client stops reading is closed, HTTP/2 too:
        // a stalled stream would keep the frames it was handed.
        let progress = Progress::new(written, cut, self.idle_timeout);
        let response = self
            .respond(req, ends, transport, caller, &mut line, progress.clone())
            .await;
        let status = response.status();
        // hyper stops pulling once it has sent Content-Length bytes, so
        // that is what complete means; wasi-http's body does not know it.
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let access_log = self.answers.access_log;
        let mut response = response.map(|inner| {
            let expected = declared.or(inner.size_hint().exact());
            LoggedBody {
                inner,
                bytes: 0,
                expected,
                head,
                started,
                line,
                status,
                progress,
                logged: false,
                access_log,
            }
        });
        let headers = response.headers_mut();
        // Manifests and blobs are served with the type they were pushed
        // with: never let a browser guess another.
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(base) = base
            && let Some(path) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
            && path.starts_with('/')
            && let Ok(absolute) = HeaderValue::try_from(format!("{base}{path}"))
        {
            headers.insert(LOCATION, absolute);
        }
        // The operator's headers, unless the answer set its own.
        for name in self.answers.headers.keys() {
            if !headers.contains_key(name) {
                for value in self.answers.headers.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        response
    }

    /// The answer to one request: the host's own (no tenant, bad
    /// credentials, no capacity) or the component's.
    async fn respond(
        &self,
        mut req: Request<RequestBody>,
        ends: Ends,
        transport: Transport,
        caller: Caller,
        line: &mut Line,
        progress: Arc<Progress>,
    ) -> Response<HyperOutgoingBody> {
        let (method, path) = (line.method.clone(), line.path.clone());
        // The tenant is chosen before any component runs: a request for
        // no tenant never reaches one.
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
        let (sni, https) = match &transport {
            Transport::Plain => (None, false),
            Transport::Tls { sni } => (sni.as_deref(), true),
        };
        // HTTP/1.1 requires Host (RFC 9112, section 3.2): refused before any
        // tenant is looked for.
        if host.is_none() && req.version() == Version::HTTP_11 {
            tracing::info!(%method, %path, "HTTP/1.1 request without a Host header refused");
            return oci_error(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                "HTTP/1.1 request without a Host header: send the registry's host name in Host",
            );
        }
        // registry:2 answers its root; orchestrators probe it: 503 while
        // a storage health check fails.
        if path == "/" && (method == hyper::Method::GET || method == hyper::Method::HEAD) {
            if self
                .tenants
                .all()
                .iter()
                .any(|t| t.storage_status.failing().is_some())
            {
                return unavailable();
            }
            return empty(StatusCode::OK);
        }
        let tenant = match self.tenants.select(host.as_deref(), sni) {
            Ok(tenant) => tenant,
            Err(refused) => {
                tracing::info!(%method, %path, host, sni, reason = %refused, "request for no tenant refused");
                return oci_error(
                    StatusCode::MISDIRECTED_REQUEST,
                    Code::Denied,
                    &format!("{refused}: check the registry host name in the image reference"),
                );
            }
        };
        line.tenant.clone_from(&tenant.name);
        if tenant.storage_status.failing().is_some() {
            return unavailable();
        }
        if host.is_none() {
            // HTTP/1.0, or HTTP/2 without :authority: the request is for
            // the host the client reached, by TLS server name or else by
            // address.
            let reached = sni.map_or_else(|| ends.local.to_string(), str::to_string);
            if let Ok(value) = HeaderValue::try_from(reached) {
                req.headers_mut().insert(HOST, value);
            }
        }
        // A client's slot first, so that one client cannot queue bcrypt
        // work or instances in front of everyone else.
        let client = match tenant.gate.client(crate::access::client_of(ends.peer.ip())) {
            Ok(slot) => slot,
            Err(refusal) => return refused(&tenant.name, line, &refusal),
        };
        let identity = match tenant.capabilities.auth.authenticate(&caller).await {
            Ok(identity) => identity,
            Err(refused) => return challenged(refused.challenge),
        };
        drop(caller);
        line.user = identity.user().map(str::to_string);
        // The catalog handle the component opens serves `GET /v2/` too, so
        // whether the caller may list the catalog is asked here.
        if path == "/v2/_catalog" {
            match tenant.capabilities.auth.authorize_catalog(&identity) {
                crate::access::Verdict::Allow(_) => {}
                crate::access::Verdict::Challenge(challenge) => return challenged(challenge),
                crate::access::Verdict::Deny(why) => {
                    return oci_error(StatusCode::FORBIDDEN, Code::Denied, &why);
                }
            }
        }
        // In read-only mode a push or delete is refused here, as
        // registry:2 refuses it, once the caller may use the registry at
        // all (an anonymous caller is asked to log in first, by the
        // component, as for any request).
        if self.answers.read_only
            && path.starts_with("/v2/")
            && !matches!(method, hyper::Method::GET | hyper::Method::HEAD)
            && matches!(
                tenant
                    .capabilities
                    .auth
                    .authorize(&identity, None, crate::access::Action::Pull),
                crate::access::Verdict::Allow(_)
            )
        {
            // As registry:2 answers: the method is not allowed here now.
            let mut response = oci_error(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unsupported,
                crate::access::READ_ONLY,
            );
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        req.body_mut()
            .count_into(crate::metrics::METRICS.received(&tenant.name));
        let slots = match self.admission.admit(&tenant.gate, client).await {
            Ok(slots) => slots,
            Err(refusal) => return refused(&tenant.name, line, &refusal),
        };
        // Only built when someone listens for events.
        let event = tenant.capabilities.events.as_ref().map(|_| {
            crate::capabilities::notifications::Request {
                id: uuid::Uuid::new_v4().to_string(),
                addr: ends.peer.to_string(),
                host: req
                    .headers()
                    .get(HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                method: method.to_string(),
                user_agent: line.user_agent.clone().unwrap_or_default(),
                path: path.clone(),
                https,
                user: line.user.clone(),
            }
        });
        let runtime = self.runtime.get();
        let e = match runtime
            .handle(
                req,
                tenant.lent(),
                crate::sandbox::runtime::Origin {
                    identity,
                    https,
                    event,
                },
                slots,
                progress,
            )
            .await
        {
            Ok(response) => return response,
            Err(e) => e,
        };
        if let Some(overloaded) = e.chain().find_map(|c| c.downcast_ref::<Overloaded>()) {
            tracing::warn!(tenant = tenant.name, %method, %path, error = format!("{e:#}"), "request refused: guest memory budget exhausted");
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                &overloaded.to_string(),
            );
        }
        tracing::error!(tenant = tenant.name, %method, %path, error = format!("{e:#}"), "request failed in the component");
        oci_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unknown,
            "internal server error: the request failed inside the registry; see the server log",
        )
    }
}

/// The answer to a request that was not admitted.
fn refused(tenant: &str, line: &Line, refusal: &Refusal) -> Response<HyperOutgoingBody> {
    tracing::warn!(tenant, peer = %line.peer, method = %line.method, path = line.path, reason = %refusal, "request not admitted");
    let (status, code) = match refusal {
        Refusal::Client(_) => (StatusCode::TOO_MANY_REQUESTS, Code::TooManyRequests),
        Refusal::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
    };
    retry_later(status, code, &refusal.to_string())
}

/// An OCI error with `Retry-After`: the registry is at capacity, or the
/// client past its share, not broken.
fn retry_later(status: StatusCode, code: Code, message: &str) -> Response<HyperOutgoingBody> {
    let mut response = oci_error(status, code, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// What the access log says of a request.
struct Line {
    /// The tenant that served the request (`-`: none did).
    tenant: String,
    peer: SocketAddr,
    /// The authenticated user, if any.
    user: Option<String>,
    method: hyper::Method,
    path: String,
    query: Option<String>,
    user_agent: Option<String>,
}

/// The two ends of a connection.
#[derive(Clone, Copy)]
struct Ends {
    peer: SocketAddr,
    local: SocketAddr,
}

/// How a connection arrived.
#[derive(Clone)]
enum Transport {
    Plain,
    /// TLS, with the server name the client asked for (SNI), if any.
    Tls {
        sni: Option<Arc<str>>,
    },
}

/// registry:2's answer while a health check fails.
/// registry:2's 401: `UNAUTHORIZED`, with this `WWW-Authenticate` value.
fn challenged(challenge: String) -> Response<HyperOutgoingBody> {
    let mut response = oci_error(
        StatusCode::UNAUTHORIZED,
        Code::Unauthorized,
        "authentication required",
    );
    if let Ok(value) = HeaderValue::try_from(challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn unavailable() -> Response<HyperOutgoingBody> {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        Code::Unavailable,
        "health check failed: please see /debug/health",
    )
}

/// A response with no body.
fn empty(status: StatusCode) -> Response<HyperOutgoingBody> {
    use http_body_util::BodyExt;
    let mut response = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_LENGTH, 0.into());
    response
}

/// The scheme and host a client used, as a proxy in front reports them
/// (`X-Forwarded-Proto`, `X-Forwarded-Host`; the first of each when
/// several proxies added theirs), or else as the request says; `None` for
/// a request that names no host (its `Location`s stay paths).
fn request_base<B>(req: &Request<B>, tls: bool) -> Option<String> {
    let first = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let scheme = first("x-forwarded-proto")
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| if tls { "https".into() } else { "http".into() });
    let host = first("x-forwarded-host")
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .filter(|host| !host.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// A response with an OCI error body, made by the host itself: a request
/// for no tenant, a malformed request, or one the component failed.
fn oci_error(status: StatusCode, code: Code, message: &str) -> Response<HyperOutgoingBody> {
    use http_body_util::BodyExt;
    let body = wharf_spec::errors::body(code, message, &serde_json::Value::Null);
    let length = body.len();
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("valid"));
    response.headers_mut().insert(CONTENT_LENGTH, length.into());
    response
}

/// A response body that logs the request's line once it is fully sent (or
/// abandoned), and tells [`Progress`] when the client takes its frames.
pub struct LoggedBody {
    inner: HyperOutgoingBody,
    bytes: u64,
    /// The body's length when known up front: hyper stops polling once it
    /// has sent that many bytes, so reaching it means complete.
    expected: Option<u64>,
    /// A HEAD request: hyper sends no body at all, so none is complete.
    head: bool,
    started: Instant,
    line: Line,
    status: StatusCode,
    progress: Arc<Progress>,
    logged: bool,
    /// Whether to write the access log line (metrics count it either way).
    access_log: bool,
}

impl LoggedBody {
    fn log(&mut self, complete: bool) {
        if self.logged {
            return;
        }
        self.logged = true;
        let line = &self.line;
        let elapsed = self.started.elapsed().as_secs_f64();
        crate::metrics::METRICS.request(
            &line.tenant,
            &line.method,
            &line.path,
            self.status.as_u16(),
            elapsed,
            self.bytes,
        );
        if !self.access_log {
            return;
        }
        tracing::info!(
            tenant = line.tenant,
            peer = %line.peer,
            user = line.user.as_deref().unwrap_or("-"),
            method = %line.method,
            path = %line.path,
            query = line.query.as_deref().unwrap_or(""),
            status = self.status.as_u16(),
            bytes = self.bytes,
            ms = format!("{:.3}", elapsed * 1e3),
            complete,
            user_agent = line.user_agent.as_deref().unwrap_or("-"),
            "request"
        );
    }

    /// Whether everything the response had to send was sent.
    fn complete(&self) -> bool {
        self.head
            || self.inner.is_end_stream()
            || self.expected == Some(self.bytes)
            || !status_has_body(self.status)
    }
}

/// 1xx, 204 and 304 responses never carry a body.
fn status_has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = <HyperOutgoingBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        this.progress.polled();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    let done = this.expected == Some(this.bytes);
                    if !done {
                        this.progress.handed();
                    }
                }
            }
            Poll::Ready(None) => this.log(true),
            Poll::Ready(Some(Err(_))) => this.log(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let complete = self.complete();
        self.log(complete);
    }
}
