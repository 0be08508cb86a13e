//! A test-only component for the `wharf:registry/registry` world: Wharf's
//! protocol (the real core, bound by the real capability code of
//! `guest/component`), plus routes under `/v2/__misbehave/` that misbehave
//! on purpose, to prove the sandbox holds:
//!
//! - `hello`: answers 200 `misbehave` (tells this component from the real one);
//! - `trap`: panics (a trap);
//! - `loop`: spins forever;
//! - `oom`: allocates without bound;
//! - `trap-after-head`: sends a response head, then traps mid-body;
//! - `sleep`: answers 200 `slept` after five seconds (a request in flight).
#![cfg(target_arch = "wasm32")]

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "wharf:registry/registry",
        generate_all,
    });
}

// The real component's capability bindings and stream helpers, shared as
// source so this component serves the real protocol.
#[path = "../../../../guest/component/src/capabilities.rs"]
mod capabilities;
#[path = "../../../../guest/component/src/streams.rs"]
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
        let path = request.path_with_query().unwrap_or_default();
        if let Some(what) = path.strip_prefix("/v2/__misbehave/") {
            misbehave(what, out);
            return;
        }
        let request = translate_request(request);
        let caps = Capabilities {
            blobs: &capabilities::HostBlobs,
            metadata: &capabilities::HostMetadata,
            auth: &capabilities::HostAuth,
        };
        send(wharf_guest::handle(&caps, request), out);
    }
}

fn misbehave(what: &str, out: ResponseOutparam) {
    match what {
        "hello" => send_text(out, 200, b"misbehave"),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(5));
            send_text(out, 200, b"slept");
        }
        "trap" => panic!("misbehave: trapping on request"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                hoard.push(std::hint::black_box(chunk));
            }
        }
        "trap-after-head" => {
            let headers = Fields::new();
            let _ = headers.append("content-length", b"1000");
            let response = OutgoingResponse::new(headers);
            let body = response.body().expect("a new response has a body");
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().expect("a new body has a stream");
            let _ = stream.blocking_write_and_flush(b"partial");
            panic!("misbehave: trapping after the response head");
        }
        _ => send_text(out, 404, b"no such misbehaviour"),
    }
}

fn send_text(out: ResponseOutparam, status: u16, text: &[u8]) {
    send(
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Body::Bytes(text.to_vec()),
        },
        out,
    );
}

// The two functions below mirror guest/component/src/lib.rs, which keeps
// them private to the shipped component.

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
        Body::Blob(source) => streams::copy(&source, &stream).map(|_| ()),
    };
    drop(stream);
    match sent {
        Ok(()) => {
            let _ = OutgoingBody::finish(body, None);
        }
        Err(_) => drop(body),
    }
}
