//! Host bindings of the `wharf:registry/registry` world (`wit/world.wit`).
//!
//! `wasi:io` and `wasi:http` are wasmtime's own implementations;
//! `wharf:registry/repositories` is implemented by [`crate::capabilities::repositories`],
//! whose handle types stand behind the WIT resources.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wharf:registry/registry",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wharf:registry/repositories.repository": crate::capabilities::repositories::RepositoryHandle,
        "wharf:registry/repositories.catalog": crate::capabilities::repositories::CatalogHandle,
        "wharf:registry/repositories.upload": crate::capabilities::repositories::UploadHandle,
    },
    require_store_data_send: true,
});

pub use wharf::registry::{repositories, types};
