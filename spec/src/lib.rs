//! What Wharf's host and its protocol component must agree on, in one
//! small crate both depend on: the digest grammar and the hasher that
//! verifies content ([`digest`]), repository names, tags and references
//! ([`names`]), byte ranges ([`ranges`]), the digests a manifest names
//! ([`references`]), and the OCI error codes with their one JSON rendering
//! ([`errors`]). Nothing here does I/O; every parser is fuzzed
//! (`fuzz/fuzz_targets/`).

pub mod digest;
pub mod errors;
pub mod names;
pub mod ranges;
pub mod references;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use errors::Code;
