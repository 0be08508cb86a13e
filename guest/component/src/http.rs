//! Translation between `wasi:http` and the protocol core's request and
//! response: headers and status as data, bodies as host streams.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::capabilities::HostBody;
use crate::streams::{self, InputStream};
use wharf_guest::{Body, Method, Request, Response};

/// The core's view of an incoming request; the body stays a host stream.
pub fn translate_request(request: IncomingRequest) -> Request<HostBody> {
    let method = match request.method() {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Connect => Method::Other("CONNECT".into()),
        WasiMethod::Options => Method::Other("OPTIONS".into()),
        WasiMethod::Trace => Method::Other("TRACE".into()),
        WasiMethod::Other(m) => Method::Other(m),
    };
    let target = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target, None),
    };
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let body = HostBody::new(request.consume().ok());
    Request {
        method,
        path,
        query,
        headers,
        body,
    }
}

/// Send the core's response: head first, then the body, spliced from the
/// blob's host stream when it is one.
pub fn send(response: Response<InputStream>, out: ResponseOutparam) {
    let headers = Fields::new();
    for (name, value) in &response.headers {
        // Names and values come from the core, which only emits valid ones.
        let _ = headers.append(name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    if let Body::Empty = response.body {
        ResponseOutparam::set(out, Ok(outgoing));
        return;
    }
    let body = outgoing.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(outgoing));
    let stream = body.write().expect("a new body has a stream");
    let sent = match response.body {
        Body::Empty => Ok(()),
        Body::Bytes(bytes) => streams::write_all(&stream, &bytes),
        Body::Blob(source) => {
            let length = response
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.parse().ok());
            streams::copy(&source, &stream, length).map(|_| ())
        }
    };
    drop(stream);
    match sent {
        Ok(()) => {
            let _ = OutgoingBody::finish(body, None);
        }
        // The client sees the connection end before Content-Length, which
        // is all HTTP allows once the head is sent.
        Err(failure) => {
            eprintln!("wharf component: response body aborted: {failure}");
            drop(body);
        }
    }
}
