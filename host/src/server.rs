//! The HTTP server: accepts connections (over TLS when configured), picks
//! each request's tenant by host (refusing, with 421 and an OCI error, a
//! host no tenant serves), hands the request to the current runtime with
//! that tenant's capabilities and limits and the caller's credentials and
//! address, and logs one line per request.
//!
//! Connection limits keep hostile or broken clients from holding resources:
//! a connection must deliver its TLS handshake and first request head
//! within [`ConnectionLimits::header_read`] (and every later head within
//! the same time after the previous response, so idle keep-alive
//! connections close), request heads are limited in bytes and header
//! count (431 beyond), and response bodies are pulled by hyper only as the
//! socket drains, so a client that stops reading pins one 1 MiB batch at
//! most.

use crate::auth::Caller;
use crate::runtime::Current;
use crate::tenants::Tenants;
use crate::tls::Tls;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
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
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub struct Server {
    /// The component serving new requests (replaced by a reload).
    pub runtime: Arc<Current>,
    /// The registries served, chosen per request by host.
    pub tenants: Tenants,
    /// Serve HTTPS only, with this certificate; `None`: plain HTTP.
    pub tls: Option<Tls>,
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
        loop {
            let (stream, peer) = match listener.accept().await {
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
            tokio::spawn(async move {
                match server.tls.clone() {
                    None => {
                        server
                            .serve_connection(stream, ends, Transport::Plain, limits)
                            .await
                    }
                    Some(tls) => {
                        match tokio::time::timeout(limits.header_read, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let sni = stream.get_ref().1.server_name().map(Arc::<str>::from);
                                let transport = Transport::Tls { sni };
                                server
                                    .serve_connection(stream, ends, transport, limits)
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
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let server = self;
        // Set by the first request: until then the connection is on the
        // clock (hyper's own header timeout starts only once it knows the
        // connection speaks HTTP/1, not while it tells HTTP/1 from HTTP/2).
        let spoke = Arc::new(AtomicBool::new(false));
        let first = spoke.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            let transport = transport.clone();
            first.store(true, Ordering::Release);
            async move { Ok::<_, std::convert::Infallible>(server.handle(req, ends, transport).await) }
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
            .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX));
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let result = tokio::select! {
            result = &mut connection => result,
            _ = tokio::time::sleep(limits.header_read) => {
                if spoke.load(Ordering::Acquire) {
                    connection.await
                } else {
                    tracing::info!(peer = %ends.peer, "closing a connection that sent no request in time");
                    return;
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %ends.peer, error = %e, "connection ended with an error");
        }
    }

    async fn handle(
        &self,
        mut req: Request<hyper::body::Incoming>,
        ends: Ends,
        transport: Transport,
    ) -> Response<LoggedBody> {
        let peer = ends.peer;
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let credentials = req
            .headers_mut()
            .remove(AUTHORIZATION)
            .and_then(|v| v.to_str().ok().map(str::to_string));
        let caller = Caller {
            credentials,
            peer: Some(peer),
        };
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
        let mut tenant_name = String::from("-");
        // HTTP/1.1 requires Host (RFC 9112, section 3.2): refused before any
        // tenant is looked for.
        let selected = if host.is_none() && req.version() == Version::HTTP_11 {
            None
        } else {
            Some(self.tenants.select(host.as_deref(), sni))
        };
        let response = match selected {
            None => {
                tracing::info!(%method, %path, "HTTP/1.1 request without a Host header refused");
                oci_error(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "HTTP/1.1 request without a Host header: send the registry's host name in Host",
                )
            }
            Some(Err(refused)) => {
                tracing::info!(%method, %path, host, sni, reason = %refused, "request for no tenant refused");
                oci_error(
                    StatusCode::MISDIRECTED_REQUEST,
                    "DENIED",
                    &format!("{refused}: check the registry host name in the image reference"),
                )
            }
            Some(Ok(tenant)) => {
                tenant_name.clone_from(&tenant.name);
                if host.is_none() {
                    // HTTP/1.0, or HTTP/2 without :authority: the request
                    // is for the host the client reached, by TLS server
                    // name or else by address.
                    let reached = sni.map_or_else(|| ends.local.to_string(), str::to_string);
                    if let Ok(value) = HeaderValue::try_from(reached) {
                        req.headers_mut().insert(HOST, value);
                    }
                }
                let runtime = self.runtime.get();
                match runtime.handle(req, &tenant, caller, https).await {
                    Ok(response) => response,
                    Err(e) => {
                        tracing::error!(tenant = tenant.name, %method, %path, error = format!("{e:#}"), "request failed in the component");
                        oci_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "UNKNOWN",
                            "internal server error: the request failed inside the registry; see the server log",
                        )
                    }
                }
            }
        };
        let status = response.status();
        response.map(|inner| {
            let expected = inner.size_hint().exact();
            LoggedBody {
                inner,
                bytes: 0,
                expected,
                started,
                tenant: tenant_name,
                method,
                path,
                status,
                logged: false,
            }
        })
    }
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

/// A response with an OCI error body, made by the host itself: a request
/// for no tenant, a malformed request, or one the component failed.
fn oci_error(status: StatusCode, code: &str, message: &str) -> Response<HyperOutgoingBody> {
    use http_body_util::BodyExt;
    let body = serde_json::json!({"errors": [{
        "code": code,
        "message": message,
        "detail": null,
    }]})
    .to_string();
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
/// abandoned): method, path, status, bytes sent, duration.
pub struct LoggedBody {
    inner: HyperOutgoingBody,
    bytes: u64,
    /// The body's length when known up front: hyper stops polling once it
    /// has sent that many bytes, so reaching it means complete.
    expected: Option<u64>,
    started: Instant,
    /// The tenant that served the request (`-`: none did).
    tenant: String,
    method: hyper::Method,
    path: String,
    status: StatusCode,
    logged: bool,
}

impl LoggedBody {
    fn log(&mut self, complete: bool) {
        if self.logged {
            return;
        }
        self.logged = true;
        tracing::info!(
            tenant = self.tenant,
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            bytes = self.bytes,
            ms = format!("{:.3}", self.started.elapsed().as_secs_f64() * 1e3),
            complete,
            "request"
        );
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = <HyperOutgoingBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
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
        let complete = self.inner.is_end_stream() || self.expected == Some(self.bytes);
        self.log(complete);
    }
}
