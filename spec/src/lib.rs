//! What Wharf's host and its protocol component must agree on, in one
//! small crate both depend on: the digest grammar and the hasher that
//! verifies content ([`digest`]), repository names, tags and references
//! ([`names`]), byte ranges ([`ranges`]), pages of sorted listings
//! ([`pages`]), the digests a manifest names ([`references`]), the OCI error codes with their one JSON rendering
//! ([`errors`]), and two things of registry:2's that every storage and
//! every authenticator of Wharf reads the same way: its on-disk layout
//! ([`layout`]), the text of its htpasswd files ([`htpasswd`]) and of its
//! configuration values ([`settings`]). Nothing
//! here does I/O; every parser of what clients send is fuzzed
//! (`fuzz/fuzz_targets/`).

pub mod digest;
pub mod errors;
pub mod htpasswd;
pub mod layout;
pub mod names;
pub mod pages;
pub mod ranges;
pub mod references;
pub mod settings;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use errors::Code;
