//! What one request's component instance holds: its WASI contexts, its
//! resource table, and the capabilities lent to it. Nothing else is
//! reachable from the guest.

use crate::access::{AccessControl, Identity};
use crate::sandbox::memory::InstanceLimiter;
use crate::storage::{BlobStore, MetadataStore};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The capabilities a registry lends to each of its requests.
#[derive(Clone)]
pub struct Capabilities {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub auth: Arc<dyn AccessControl>,
    /// Where events about what the requests did go, if anywhere.
    pub events: Option<Arc<crate::capabilities::notifications::Notifier>>,
}

pub struct RequestState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub capabilities: Capabilities,
    /// Who the caller proved to be, established by the host before the
    /// instance existed; the credentials themselves stay with the host.
    pub identity: Identity,
    /// How far the instance's memories may grow: its tenant's
    /// `memory_bytes`, within the process's guest memory budget. Installed
    /// as the store's limiter.
    pub limiter: InstanceLimiter,
    pub hooks: BodyHooks,
    /// The request, as events describe it; `None` when no endpoint listens.
    pub request: Option<crate::capabilities::notifications::Request>,
    /// Whether the request's pull event was raised (once per request).
    pub pull_told: bool,
}

/// wasi-http's defaults, except that a response body takes writes of up to
/// [`BODY_CHUNK`] bytes.
pub struct BodyHooks;

/// Largest write to a response body: a blob download moves 4 MiB windows.
pub const BODY_CHUNK: usize = 4 << 20;

impl WasiHttpHooks for BodyHooks {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }
}

impl RequestState {
    pub fn new(
        capabilities: Capabilities,
        identity: Identity,
        limiter: InstanceLimiter,
        request: Option<crate::capabilities::notifications::Request>,
    ) -> RequestState {
        RequestState {
            table: ResourceTable::new(),
            // No preopened directories, no environment, no arguments, no
            // network: the guest's only way out is the capabilities above.
            // Its stderr (panic messages) goes to Wharf's stderr.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            capabilities,
            identity,
            limiter,
            hooks: BodyHooks,
            request,
            pull_told: false,
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
