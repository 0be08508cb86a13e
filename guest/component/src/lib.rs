//! The `wasm32-wasip2` component: a thin shell that binds the protocol core's
//! capability traits to the WIT imports of `wharf:registry/registry` and
//! serves `wasi:http/incoming-handler` with `wharf_guest::handle`.
//!
//! Everything here only translates: HTTP types to the core's, capability
//! calls to WIT calls, WIT errors to `StoreError`. Bulk bytes are spliced
//! from host stream to host stream and never copied into guest memory.
#![cfg(target_arch = "wasm32")]

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wharf:registry/registry",
        generate_all,
    });
}

mod capabilities;
mod streams;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wharf_guest::{Body, Capabilities, Method, Request, Response};

struct Component;

bindings::export!(Component with_types_in bindings);

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = translate_request(request);
        let caps = Capabilities {
            blobs: &capabilities::HostBlobs,
            metadata: &capabilities::HostMetadata,
            auth: &capabilities::HostAuth,
        };
        send(wharf_guest::handle(&caps, request), out);
    }
}

fn translate_request(request: IncomingRequest) -> Request<capabilities::HostBody> {
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
    let body = capabilities::HostBody::new(request.consume().ok());
    Request {
        method,
        path,
        query,
        headers,
        body,
    }
}

fn send(response: Response<streams::InputStream>, out: ResponseOutparam) {
    let headers = Fields::new();
    for (name, value) in &response.headers {
        // Names and values come from the core, which only emits valid ones.
        let _ = headers.append(name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    match response.body {
        Body::Empty => ResponseOutparam::set(out, Ok(outgoing)),
        Body::Bytes(bytes) => {
            let body = outgoing.body().expect("a new response has a body");
            ResponseOutparam::set(out, Ok(outgoing));
            let stream = body.write().expect("a new body has a stream");
            let written = streams::write_all(&stream, &bytes);
            drop(stream);
            finish(body, written);
        }
        Body::Blob(source) => {
            let body = outgoing.body().expect("a new response has a body");
            ResponseOutparam::set(out, Ok(outgoing));
            let stream = body.write().expect("a new body has a stream");
            let copied = streams::copy(&source, &stream).map(|_| ());
            drop(stream);
            drop(source);
            finish(body, copied);
        }
    }
}

/// Close the body; if sending failed half way, the client sees the
/// connection end before Content-Length, which is all HTTP allows now.
fn finish(body: OutgoingBody, sent: Result<(), streams::StreamFailure>) {
    match sent {
        Ok(()) => {
            let _ = OutgoingBody::finish(body, None);
        }
        Err(failure) => {
            eprintln!("wharf component: response body aborted: {failure}");
            drop(body);
        }
    }
}
