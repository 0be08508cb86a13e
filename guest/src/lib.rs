//! Wharf's protocol core: the OCI distribution-spec as a plain Rust library.
//!
//! [`handle`] turns a [`Request`] into a [`Response`], reaching storage and
//! credentials only through the [`Blobs`], [`Metadata`] and [`Auth`] traits.
//! It never touches a file, a socket or a credential itself, and never
//! panics on input: every bad request becomes an OCI error response.
//!
//! The `wharf-component` crate binds these traits to the WIT imports for the
//! `wasm32-wasip2` component; [`memory`] binds them to an in-memory store, so
//! the whole protocol is testable natively with `cargo test`.

pub mod capabilities;
pub mod digest;
pub mod http;

pub use capabilities::*;
pub use digest::{Algorithm, Digest, DigestError};
pub use http::{Body, Method, Request, Response};

/// Everything one request may reach: the capabilities the host lent it.
pub struct Capabilities<'a, B, M, A> {
    pub blobs: &'a B,
    pub metadata: &'a M,
    pub auth: &'a A,
}
