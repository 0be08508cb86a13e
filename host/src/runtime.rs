//! The component runtime: compiles the protocol component once, links the
//! capabilities, and runs each request in a fresh instance.

use crate::auth::Caller;
use crate::bindings::{Registry, RegistryPre};
use crate::state::{Capabilities, RequestState};
use anyhow::Context as _;
use hyper::body::Incoming;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The protocol component built from `guest/component` by `build.rs`.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("WHARF_COMPONENT_WASM"));

/// Instances that may run at once; a request beyond that waits for a slot.
const MAX_INSTANCES: u32 = 1000;
/// Linear memory one instance may grow to.
const MAX_MEMORY_BYTES: usize = 256 << 20;

pub struct Runtime {
    pre: RegistryPre<RequestState>,
}

impl Runtime {
    /// Compile `component` and link it against the host's capabilities.
    pub fn new(component: &[u8]) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_INSTANCES)
            .total_memories(MAX_INSTANCES)
            .total_tables(MAX_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES);
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let component = Component::new(&engine, component)
            .map_err(anyhow::Error::from)
            .context("compiling the registry component")?;

        let mut linker = Linker::new(&engine);
        // WASI for the guest's standard library: no directories, no network.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // `wasi:http/types` only: the guest serves requests, it never sends
        // any, so `outgoing-handler` is not linked at all.
        let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
        wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<
            _,
            wasmtime_wasi_http::WasiHttp,
        >(&mut linker, &options.into(), RequestState::http)?;
        crate::bindings::blobs::add_to_linker::<_, HasSelf<RequestState>>(&mut linker, |s| s)?;
        crate::bindings::metadata::add_to_linker::<_, HasSelf<RequestState>>(&mut linker, |s| s)?;
        crate::bindings::auth::add_to_linker::<_, HasSelf<RequestState>>(&mut linker, |s| s)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(RegistryPre::new)
            .map_err(anyhow::Error::from)
            .context("the component does not fit the wharf:registry/registry world")?;
        Ok(Runtime { pre })
    }

    /// Serve one request from `caller` (received over TLS when `https`) in
    /// a fresh instance lent `capabilities`.
    pub async fn handle(
        &self,
        request: hyper::Request<Incoming>,
        capabilities: Capabilities,
        caller: Caller,
        https: bool,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = Store::new(self.pre.engine(), RequestState::new(capabilities, caller));
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();

        // The guest keeps running after it sets the response head, to
        // stream the body; the task owns the store until then.
        let task = tokio::task::spawn(async move {
            let registry: Registry = pre.instantiate_async(&mut store).await?;
            registry
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(anyhow::anyhow!(
                "the component answered with an error: {code:?}"
            )),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(anyhow::anyhow!("the component returned without a response")),
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("the component failed")),
                Err(e) => Err(anyhow::Error::from(e).context("the component task failed")),
            },
        }
    }
}
