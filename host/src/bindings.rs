//! Host bindings of the `wharf:registry/registry` world (`wit/world.wit`).
//!
//! `wasi:io` and `wasi:http` are wasmtime's own implementations; the three
//! `wharf:registry` interfaces are implemented by [`crate::blobs`],
//! [`crate::metadata`] and [`crate::auth`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wharf:registry/registry",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wharf:registry/blobs.upload": crate::blobs::UploadHandle,
    },
    require_store_data_send: true,
});

pub use wharf::registry::{auth, blobs, metadata, types};
