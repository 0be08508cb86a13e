//! What the component may call: one module per WIT interface the host
//! implements for it (`wit/`), and the events those calls raise.
//!
//! | WIT | module |
//! |---|---|
//! | the `wharf:registry/registry` world | [`bindings`] (`bindgen!`) |
//! | `wharf:registry/repositories` | [`repositories`]: handles opened for the access the caller holds, every call checked against its handle |
//! | `wasi:io/streams` over storage | [`streams`]: blob and manifest reads and upload writes as `wasi:io` streams |
//!
//! `wasi:http` and the rest of WASI are wasmtime's own implementations,
//! given nothing to reach (`crate::sandbox::state`). [`notifications`]
//! sends registry:2's events, which only the capabilities raise.

pub mod bindings;
pub mod notifications;
pub mod repositories;
pub mod streams;
