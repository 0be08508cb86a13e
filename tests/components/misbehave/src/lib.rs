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

// The real component's capability bindings, stream helpers and HTTP
// translation, shared as
// source so this component serves the real protocol.
#[path = "../../../../guest/component/src/capabilities.rs"]
mod capabilities;
#[path = "../../../../guest/component/src/http.rs"]
mod http;
#[path = "../../../../guest/component/src/streams.rs"]
mod streams;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use http::{send, translate_request};
use wharf_guest::{Body, Capabilities, Response};

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
