//! The HTTP server: accepts connections (over TLS when configured), hands
//! each request to the runtime with the capabilities of the registry and the
//! caller's credentials and address, and logs one line per request.

use crate::auth::Caller;
use crate::runtime::Runtime;
use crate::state::Capabilities;
use crate::tls::Tls;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub struct Server {
    pub runtime: Arc<Runtime>,
    pub capabilities: Capabilities,
    /// Serve HTTPS only, with this certificate; `None`: plain HTTP.
    pub tls: Option<Tls>,
}

impl Server {
    /// Serve connections from `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
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
            let server = self.clone();
            tokio::spawn(async move {
                match server.tls.clone() {
                    None => server.serve_connection(stream, peer, false).await,
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => server.serve_connection(stream, peer, true).await,
                        Err(e) => tracing::info!(%peer, error = %e, "connection refused"),
                    },
                }
            });
        }
    }

    async fn serve_connection<I>(self: Arc<Self>, io: I, peer: SocketAddr, https: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let server = self;
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(server.handle(req, peer, https).await) }
        });
        if let Err(e) = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), service)
            .await
        {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    async fn handle(
        &self,
        mut req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
        https: bool,
    ) -> Response<LoggedBody> {
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
        let response = match self
            .runtime
            .handle(req, self.capabilities.clone(), caller, https)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(%method, %path, error = format!("{e:#}"), "request failed in the component");
                internal_error()
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
                method,
                path,
                status,
                logged: false,
            }
        })
    }
}

/// 500 with an OCI error body, for a request the component could not serve.
fn internal_error() -> Response<HyperOutgoingBody> {
    use http_body_util::BodyExt;
    let body = r#"{"errors":[{"code":"UNKNOWN","message":"internal server error: the request failed inside the registry; see the server log","detail":null}]}"#;
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("valid"));
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, body.len().into());
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
