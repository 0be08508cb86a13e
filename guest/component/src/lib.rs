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
mod http;
mod streams;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Component;

bindings::export!(Component with_types_in bindings);

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = http::translate_request(request);
        http::send(
            wharf_guest::handle(&capabilities::HostRegistry, request),
            out,
        );
    }
}
