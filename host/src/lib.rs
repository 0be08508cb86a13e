//! Wharf's host: the native runner that owns the sockets, TLS, storage and
//! credentials, and lends them to the registry component one request at a
//! time. `main.rs` is only the command line; read this crate by its
//! folders, in the order a request meets them:
//!
//! - [`serving`]: where a request enters. Listeners, TLS, tenants (which
//!   registry a host name is), the debug listener, and the wiring of
//!   `wharf serve`.
//! - [`access`]: who the caller is and what they may do (htpasswd, tokens,
//!   access rules), decided by the host before and during the guest's call.
//! - [`sandbox`]: where a request crosses into the component. The engine,
//!   one instance per request with its state, the limits it runs under
//!   (admission, guest memory, time), and hot swap of the component.
//! - [`capabilities`]: what the component may call, one module per WIT
//!   interface the host implements, each call checked against the handle it
//!   comes through.
//! - [`storage`]: the backends behind the capabilities (filesystem in
//!   registry:2's layout, S3, memory) and the tenant's quota around them.
//! - [`operations`]: the operator's commands (`wharf gc`, `cert`,
//!   `htpasswd`, `health`).
//! - [`config`]: registry:2's configuration rules (file, `REGISTRY_*`
//!   variables, unknown keys refused); each section's types live beside
//!   what they configure.

pub mod access;
pub mod capabilities;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod operations;
pub mod sandbox;
pub mod serving;
pub mod storage;
pub mod sync;
