//! The standalone registry's entry: the `wasi:http/incoming-handler` a
//! stock host (`wasmtime serve`) calls. It holds nothing and reaches
//! nothing: each request goes to the gate, which answers it itself when its
//! credentials are wrong, and otherwise hands back the core's view of it,
//! which goes to the protocol core.
#![cfg(target_arch = "wasm32")]

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wharf:registry/entry",
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use bindings::wharf::registry::{admission, protocol};

struct Entry;

bindings::export!(Entry with_types_in bindings);

impl Guest for Entry {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if let Some((request, out)) = admission::admit(request, out) {
            protocol::handle(request, out);
        }
    }
}
