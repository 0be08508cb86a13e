//! The component runtime: compiles the protocol component, links the
//! capabilities, and runs each request in a fresh instance held to its
//! tenant's limits.
//!
//! One [`Sandbox`] (the wasmtime engine, its instance pool and its epoch
//! clock) lives as long as the process; a [`Runtime`] is one compiled
//! component on it. [`Current`] holds the runtime new requests use, so the
//! component can be replaced while requests in flight finish on the old one.
//!
//! The pool holds `capacity.instances` requests' worth of instances, sized
//! from what one request really takes (core instances, memories, tables,
//! stacks, not just component instances); admission (`sandbox/capacity.rs`) lets
//! no more requests than that in, so taking an instance never fails for
//! want of a slot. A component that needs more per request than the pool
//! allows is refused when it is loaded.
//!
//! Limits: an instance's memories may grow to its tenant's `memory_bytes`
//! within the process's guest memory budget (`sandbox/memory.rs`; growing
//! past the first traps, the second waits), and it may run until
//! its tenant's `request_timeout` (epoch interruption: the engine's epoch
//! advances every [`TICK`], and each time a running guest reaches its
//! epoch deadline it yields to other tasks and is stopped once past the
//! request's deadline; a guest blocked in a host call is stopped by a timer
//! around the call). A trap costs its own request only. Once the response
//! head is out, an instance whose client has taken nothing of the body for
//! the idle timeout is stopped (`sandbox/progress.rs`).

use crate::access::Identity;
use crate::capabilities::bindings::{Registry, RegistryPre};
use crate::metrics::METRICS;
use crate::sandbox::capacity::Slots;
use crate::sandbox::config::Limits;
use crate::sandbox::memory::{InstanceLimiter, MemoryBudget};
use crate::sandbox::progress::{Progress, RequestBody};
use crate::sandbox::state::{Capabilities, RequestState};
use anyhow::Context as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracing::Instrument as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The protocol component built from `guest/component` by `build.rs`.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("WHARF_COMPONENT_WASM"));
/// The same component compiled ahead of time by `wharf-precompile`
/// (`build.rs`), with the engine settings of `wharf_precompile`, so a start
/// need not compile it.
pub static EMBEDDED_PRECOMPILED: &[u8] = include_bytes!(env!("WHARF_COMPONENT_CWASM"));

/// What one request's component may instantiate, at most: the pool holds
/// this much per request slot. Wharf's component takes 3 core instances,
/// 1 memory and 2 tables.
pub const CORE_INSTANCES_PER_REQUEST: u32 = 16;
pub const MEMORIES_PER_REQUEST: u32 = 2;
pub const TABLES_PER_REQUEST: u32 = 8;
/// Linear memory one instance may grow to when its tenant sets no
/// `memory_bytes`; the pool reserves at least this much per instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Linear memory per pool slot kept mapped between requests and reset with
/// `memset`; a registry request touches well under this.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;
/// Slots whose remaining memory is decommitted together, in one batch.
const DECOMMIT_BATCH: usize = 16;
/// How often the engine's epoch advances: the granularity of
/// `request_timeout`, and how long a busy guest runs before it yields its
/// thread to other requests.
pub const TICK: Duration = Duration::from_millis(10);

/// The engine every component runs on, its epoch clock, and what its
/// instances may take.
pub struct Sandbox {
    engine: Engine,
    /// Linear memory all instances together may hold.
    budget: Arc<MemoryBudget>,
    /// How long a request waits for memory from the budget.
    queue_timeout: Duration,
}

/// How many requests the sandbox serves at once, and with what.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Requests that may hold an instance at once.
    pub instances: u32,
    /// The largest of the tenants' `memory_bytes`.
    pub max_memory_bytes: u64,
    /// Linear memory all instances together may hold.
    pub guest_memory_bytes: u64,
    pub queue_timeout: Duration,
}

impl Sandbox {
    /// An engine with room for `sizing.instances` requests, each of whose
    /// instances may grow up to `sizing.max_memory_bytes`, with its epoch
    /// clock started.
    pub fn new(sizing: Sizing) -> anyhow::Result<Sandbox> {
        let max_memory = usize::try_from(sizing.max_memory_bytes.max(DEFAULT_MEMORY_BYTES))
            .context("memory_bytes is larger than this machine's address space")?;
        let n = sizing.instances.max(1);
        let times = |per: u32| {
            n.checked_mul(per)
                .context("capacity.instances is too large for the instance pool")
        };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(times(CORE_INSTANCES_PER_REQUEST)?)
            .total_memories(times(MEMORIES_PER_REQUEST)?)
            .total_tables(times(TABLES_PER_REQUEST)?)
            .total_stacks(n)
            .max_core_instances_per_component(CORE_INSTANCES_PER_REQUEST)
            .max_memories_per_component(MEMORIES_PER_REQUEST)
            .max_tables_per_component(TABLES_PER_REQUEST)
            .max_memory_size(max_memory)
            // Per-request cost: give a slot back by zeroing the pages the
            // request touched (found with PAGEMAP_SCAN where the kernel has
            // it) instead of `madvise`, whose TLB shootdowns across cores
            // and page faults on the next instance cost more than the
            // request itself; and decommit what is left in batches.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut config = Config::new();
        wharf_precompile::compiled_for_wharf(&mut config);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        // A plain thread, so the clock keeps time even when every runtime
        // thread is busy running guests.
        let clock = engine.weak();
        std::thread::Builder::new()
            .name("wharf-epoch".into())
            .spawn(move || {
                while let Some(engine) = clock.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .context("starting the epoch clock")?;
        Ok(Sandbox {
            engine,
            budget: MemoryBudget::new(sizing.guest_memory_bytes),
            queue_timeout: sizing.queue_timeout,
        })
    }

    /// Compile `component` and link it against the host's capabilities;
    /// refused unless it targets the `wharf:registry/registry` world.
    pub fn load(&self, component: &[u8]) -> anyhow::Result<Runtime> {
        fits_a_request_slot(component)?;
        self.link(self.compile(component)?, Compiled::AtLoad)
    }

    /// The same for the built-in component, from its code compiled ahead of
    /// time when this engine accepts it (same wasmtime, settings and CPU
    /// features), compiled now otherwise.
    pub fn load_embedded(&self) -> anyhow::Result<Runtime> {
        // SAFETY: native code made for this binary by its own build
        // (`wharf-precompile`), trusted as the binary is.
        unsafe { self.load_precompiled(EMBEDDED_COMPONENT, EMBEDDED_PRECOMPILED) }
    }

    /// # Safety
    /// `precompiled` must be `component` compiled by `wharf-precompile` (or
    /// any bytes wasmtime will refuse): accepted, it runs as native code.
    /// wasmtime checks that it was made by this wasmtime for this engine's
    /// settings and this machine's CPU before it uses it.
    unsafe fn load_precompiled(
        &self,
        component: &[u8],
        precompiled: &[u8],
    ) -> anyhow::Result<Runtime> {
        fits_a_request_slot(component)?;
        match unsafe { Component::deserialize(&self.engine, precompiled) } {
            Ok(component) => self.link(component, Compiled::AheadOfTime),
            Err(e) => {
                tracing::warn!(
                    reason = format!("{e:#}"),
                    "the built-in component's precompiled code does not suit this engine; \
                     compiling it instead (this start is slower, serving is the same)"
                );
                self.link(self.compile(component)?, Compiled::AtLoad)
            }
        }
    }

    fn compile(&self, component: &[u8]) -> anyhow::Result<Component> {
        Component::new(&self.engine, component)
            .map_err(anyhow::Error::from)
            .context("compiling the registry component")
    }

    fn link(&self, component: Component, compiled: Compiled) -> anyhow::Result<Runtime> {
        let engine = &self.engine;

        let mut linker = Linker::new(engine);
        // WASI for the guest's standard library: no directories, no network.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // `wasi:http/types` only: the guest serves requests, it never sends
        // any, so `outgoing-handler` is not linked at all.
        let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
        wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<
            _,
            wasmtime_wasi_http::WasiHttp,
        >(&mut linker, &options.into(), RequestState::http)?;
        crate::capabilities::bindings::types::add_to_linker::<_, HasSelf<RequestState>>(
            &mut linker,
            |s| s,
        )?;
        crate::capabilities::bindings::repositories::add_to_linker::<_, HasSelf<RequestState>>(
            &mut linker,
            |s| s,
        )?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(RegistryPre::new)
            .map_err(anyhow::Error::from)
            .context("the component does not fit the wharf:registry/registry world")?;
        Ok(Runtime {
            pre,
            compiled,
            budget: self.budget.clone(),
            queue_timeout: self.queue_timeout,
        })
    }
}

/// Refuse a component that would take more of the pool per request than a
/// request slot holds: otherwise every request would fail to instantiate.
fn fits_a_request_slot(component: &[u8]) -> anyhow::Result<()> {
    let mut core_instances = 0u32;
    let mut memories = 0u32;
    let mut tables = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.context("reading the registry component")? {
            wasmparser::Payload::InstanceSection(s) => {
                // Only instantiations take a slot; a bag of exports does not.
                for instance in s {
                    let instance = instance.context("reading the registry component")?;
                    if matches!(instance, wasmparser::Instance::Instantiate { .. }) {
                        core_instances += 1;
                    }
                }
            }
            wasmparser::Payload::MemorySection(s) => memories += s.count(),
            wasmparser::Payload::TableSection(s) => tables += s.count(),
            _ => {}
        }
    }
    for (what, needed, room) in [
        ("core instances", core_instances, CORE_INSTANCES_PER_REQUEST),
        ("memories", memories, MEMORIES_PER_REQUEST),
        ("tables", tables, TABLES_PER_REQUEST),
    ] {
        anyhow::ensure!(
            needed <= room,
            "the registry component makes {needed} {what} per request; Wharf's instance pool \
             holds {room} per request"
        );
    }
    Ok(())
}

/// Where a loaded component's native code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Made at build time (`wharf-precompile`) and accepted by the engine.
    AheadOfTime,
    /// Compiled when it was loaded.
    AtLoad,
}

/// One compiled component, ready to instantiate per request.
pub struct Runtime {
    pre: RegistryPre<RequestState>,
    pub compiled: Compiled,
    budget: Arc<MemoryBudget>,
    queue_timeout: Duration,
}

/// The runtime new requests use; replaced by a reload.
pub struct Current(RwLock<Arc<Runtime>>);

impl Current {
    pub fn new(runtime: Runtime) -> Current {
        Current(RwLock::new(Arc::new(runtime)))
    }

    /// The runtime to serve the next request with.
    pub fn get(&self) -> Arc<Runtime> {
        crate::sync::read(&self.0).clone()
    }

    /// Serve new requests with `runtime`; requests in flight keep the one
    /// they started on until they end.
    pub fn replace(&self, runtime: Runtime) {
        *crate::sync::write(&self.0) = Arc::new(runtime);
    }
}

/// What one request's instance is lent and held to: its registry's
/// capabilities and limits, and the registry's name for the log.
pub struct Lent<'a> {
    pub tenant: &'a str,
    pub capabilities: &'a Capabilities,
    pub limits: &'a Limits,
}

/// Who sent a request, and how.
pub struct Origin {
    /// Who the caller proved to be.
    pub identity: Identity,
    /// Received over TLS.
    pub https: bool,
    /// The request as events describe it, when someone listens for them.
    pub event: Option<crate::capabilities::notifications::Request>,
}

impl Runtime {
    /// Serve one request from `origin` in a fresh instance given what is
    /// `lent`, held to its limits. `slots` are held until the
    /// instance is gone; `progress` tells how the client takes the
    /// response body.
    pub async fn handle(
        &self,
        request: hyper::Request<RequestBody>,
        lent: Lent<'_>,
        origin: Origin,
        slots: Slots,
        progress: Arc<Progress>,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        let Origin {
            identity,
            https,
            event,
        } = origin;
        let Lent {
            tenant,
            capabilities,
            limits,
        } = lent;
        let memory = limits.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES);
        let limiter = InstanceLimiter::new(
            self.budget.clone(),
            usize::try_from(memory).unwrap_or(usize::MAX),
            self.queue_timeout,
        );
        let state = RequestState::new(capabilities.clone(), identity, limiter, event);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter_async(|state| &mut state.limiter);
        let deadline = limits.request_timeout.map(|t| Instant::now() + t);
        // Set when the deadline stops the guest, to count it as a timeout
        // rather than a trap.
        let timed_out = Arc::new(AtomicBool::new(false));
        let stopped = timed_out.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| match deadline {
            Some(deadline) if Instant::now() >= deadline => {
                stopped.store(true, Ordering::Relaxed);
                Err(wasmtime::Error::msg(
                    "the request ran past its request_timeout and was stopped",
                ))
            }
            // Give the thread to other requests at every tick.
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();

        // The guest keeps running after it sets the response head, to
        // stream the body; the task owns the store until then. A guest
        // blocked in a host call is not interrupted by the epoch: the timer
        // ends it (dropping the store) at the same deadline.
        // One value, so that however the task ends (returns, or is
        // aborted) the store, and with it the pool's instance, is dropped
        // before the slots that admitted it are given back.
        let held = Held {
            store,
            _slots: slots,
        };
        let mut task = tokio::task::spawn(async move {
            // The whole value moves into the task, not just the field used.
            let mut held = held;
            let store = &mut held.store;
            let run = async {
                let registry: Registry = pre.instantiate_async(&mut *store).await?;
                METRICS.instantiations.inc();
                registry
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, req, out)
                    .await
            };
            let ended = match deadline {
                None => run.await,
                Some(deadline) => tokio::time::timeout_at(deadline.into(), run)
                    .await
                    .unwrap_or_else(|_| {
                        timed_out.store(true, Ordering::Relaxed);
                        Err(wasmtime::Error::msg(
                            "the request ran past its request_timeout while waiting in a host call and was stopped",
                        ))
                    }),
            };
            if ended.is_err() {
                if timed_out.load(Ordering::Relaxed) {
                    METRICS.timeouts.inc();
                } else {
                    METRICS.traps.inc();
                }
            }
            ended
        }
        // What the host logs while it serves the request (a storage
        // failure, say) names the tenant. An error-level span, so that it
        // is on whenever errors are logged.
        .instrument(tracing::error_span!("request", tenant = %tenant)));

        let mut receiver = receiver;
        let response = tokio::select! {
            biased;
            response = &mut receiver => response,
            // The guest may end (trap, time out) while the sender is still
            // held by its resource table: whichever comes first.
            ended = &mut task => {
                let failure = match ended {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(anyhow::Error::from(e).context("the component failed")),
                    Err(e) => Some(anyhow::Error::from(e).context("the component task failed")),
                };
                match (receiver.try_recv(), failure) {
                    (Ok(Ok(response)), failure) => {
                        if let Some(e) = failure {
                            log_cut(tenant, &e);
                        }
                        return Ok(response);
                    }
                    (Ok(Err(code)), _) => return Err(anyhow::anyhow!(
                        "the component answered with an error: {code:?}"
                    )),
                    (Err(_), Some(e)) => return Err(e),
                    (Err(_), None) => return Err(anyhow::anyhow!("the component returned without a response")),
                }
            }
        };
        match response {
            Ok(Ok(response)) => {
                // The head is out; a failure while streaming the body can
                // only cut the connection now, and is logged here.
                let tenant = tenant.to_string();
                tokio::spawn(async move {
                    let ended = tokio::select! {
                        ended = &mut task => ended,
                        () = progress.stalled() => {
                            // Dropping the store frees the instance and its slots.
                            task.abort();
                            tracing::info!(
                                tenant,
                                idle = ?progress.idle(),
                                "the client took nothing of the response for the idle timeout; \
                                 its instance was stopped and the response cut"
                            );
                            progress.cut();
                            return;
                        }
                    };
                    match ended {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log_cut(&tenant, &anyhow::Error::from(e)),
                        Err(e) => log_cut(&tenant, &anyhow::Error::from(e)),
                    }
                });
                Ok(response)
            }
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

/// A request's store and the slots that admitted it. Fields drop in
/// order: the instance goes back to the pool before the slots are free.
struct Held {
    store: Store<RequestState>,
    _slots: Slots,
}

/// A guest failed after its response head was sent: the client sees the
/// connection end early, the log says why.
fn log_cut(tenant: &str, e: &anyhow::Error) {
    tracing::error!(
        tenant,
        error = format!("{e:#}"),
        "the component failed after sending the response head; the response was cut"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox::new(Sizing {
            instances: 2,
            max_memory_bytes: 0,
            guest_memory_bytes: 1 << 30,
            queue_timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    /// The engine's settings and `wharf-precompile`'s agree: were they to
    /// drift apart, every start would compile again, and only the log
    /// would say so.
    #[test]
    fn the_built_in_component_is_loaded_as_compiled_at_build_time() {
        let runtime = sandbox().load_embedded().unwrap();
        assert_eq!(runtime.compiled, Compiled::AheadOfTime);
    }

    #[test]
    fn code_this_engine_would_not_make_is_refused_and_compiled_again() {
        let sandbox = sandbox();
        // Compiled without epoch interruption: it could not be stopped at
        // a deadline, and wasmtime tells.
        let other = Engine::new(&Config::new()).unwrap();
        let unstoppable = other.precompile_component(EMBEDDED_COMPONENT).unwrap();
        for precompiled in [&unstoppable[..], b"not compiled code"] {
            // SAFETY: code for another engine, or no code: both refused.
            let runtime = unsafe { sandbox.load_precompiled(EMBEDDED_COMPONENT, precompiled) };
            assert_eq!(runtime.unwrap().compiled, Compiled::AtLoad);
        }
    }
}
