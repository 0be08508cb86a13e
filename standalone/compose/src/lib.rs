//! The standalone registry, composed at build time (`host/build.rs`) with
//! `wac-graph`: four components wired into one that imports only WASI 0.2
//! and exports `wasi:http/incoming-handler`.
//!
//! ```text
//!  stock host ──▶ entry ──admission──▶ gate ◀──access── storage
//!                   │                   │ http-types      ▲ repositories
//!                   └──protocol──▶ core ◀┘ environment    │
//!                                   └─────────────────────┘
//! ```
//!
//! - `entry` exports the host-facing handler and reaches only the gate and
//!   the core.
//! - `gate` reads the host's request and the htpasswd file, and lends the
//!   core a view of the request without `Authorization`, storage its
//!   access decisions, and the core an empty environment.
//! - `storage` reaches the preopened data directory and the environment
//!   (`REGISTRY_STORAGE_*`), and serves `wharf:registry/repositories`.
//! - `core` is the very component `wharf serve` runs: it imports the
//!   contract, the gate's view of HTTP and `wasi:io`, and no filesystem.
//!
//! Whatever a component imports that is not wired here (`wasi:io`, the
//! host's `wasi:http/types`, `wasi:filesystem`, clocks, random, stdio) is
//! imported from the host by the composition.

use anyhow::Context as _;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions, NodeId, PackageId};

/// The contract's package version, in the interface names wired here.
const REGISTRY: &str = "0.4.0";
/// The WASI version of `wit/deps`.
const WASI: &str = "0.2.12";

/// The four components, as built for `wasm32-wasip2`.
pub struct Parts<'a> {
    pub core: &'a [u8],
    pub gate: &'a [u8],
    pub storage: &'a [u8],
    pub entry: &'a [u8],
}

/// The standalone component's bytes.
pub fn compose(parts: &Parts) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let mut register = |name: &str, bytes: &[u8]| -> anyhow::Result<PackageId> {
        let package = Package::from_bytes(name, None, bytes.to_vec(), graph.types_mut())
            .with_context(|| format!("reading the {name} component"))?;
        graph
            .register_package(package)
            .with_context(|| format!("registering the {name} component"))
    };
    let core = register("wharf:core", parts.core)?;
    let gate = register("wharf:gate", parts.gate)?;
    let storage = register("wharf:storage", parts.storage)?;
    let entry = register("wharf:entry", parts.entry)?;

    let gate = graph.instantiate(gate);
    let storage = graph.instantiate(storage);
    let core = graph.instantiate(core);
    let entry = graph.instantiate(entry);

    let registry = |name: &str| format!("wharf:registry/{name}@{REGISTRY}");
    let wire = |graph: &mut CompositionGraph,
                from: (NodeId, &str),
                to: (NodeId, &str)|
     -> anyhow::Result<()> {
        let export = graph
            .alias_instance_export(from.0, from.1)
            .with_context(|| format!("finding the export {}", from.1))?;
        graph
            .set_instantiation_argument(to.0, to.1, export)
            .with_context(|| format!("plugging {} into the import {}", from.1, to.1))
    };

    wire(
        &mut graph,
        (gate, &registry("types")),
        (storage, &registry("types")),
    )?;
    wire(
        &mut graph,
        (gate, &registry("access")),
        (storage, &registry("access")),
    )?;

    wire(
        &mut graph,
        (gate, &registry("types")),
        (core, &registry("types")),
    )?;
    wire(
        &mut graph,
        (storage, &registry("repositories")),
        (core, &registry("repositories")),
    )?;
    wire(
        &mut graph,
        (gate, &registry("http-types")),
        (core, &format!("wasi:http/types@{WASI}")),
    )?;
    let environment = format!("wasi:cli/environment@{WASI}");
    let core_environment = imported(parts.core, "wasi:cli/environment@")?;
    wire(&mut graph, (gate, &environment), (core, &core_environment))?;

    wire(
        &mut graph,
        (gate, &registry("http-types")),
        (entry, &registry("http-types")),
    )?;
    wire(
        &mut graph,
        (gate, &registry("admission")),
        (entry, &registry("admission")),
    )?;
    wire(
        &mut graph,
        (core, &format!("wasi:http/incoming-handler@{WASI}")),
        (entry, &registry("protocol")),
    )?;

    let handler = format!("wasi:http/incoming-handler@{WASI}");
    let served = graph.alias_instance_export(entry, &handler)?;
    graph.export(served, &handler)?;

    let bytes = graph
        .encode(EncodeOptions::default())
        .context("encoding the standalone component")?;
    Ok(bytes)
}

/// The full name (with the version the component was built with) of the
/// import of `component` starting with `prefix`: the core's `wasi:cli`
/// version is whatever Rust's standard library links.
fn imported(component: &[u8], prefix: &str) -> anyhow::Result<String> {
    let mut types = wac_graph::types::Types::default();
    let package = Package::from_bytes("probe", None, component.to_vec(), &mut types)?;
    let world = &types[package.ty()];
    world
        .imports
        .keys()
        .find(|name| name.starts_with(prefix))
        .cloned()
        .with_context(|| format!("the core imports no {prefix}*"))
}
