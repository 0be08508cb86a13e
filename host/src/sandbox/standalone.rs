//! The registry component's two forms. `wharf serve` runs the plain one:
//! the protocol core, importing `wharf:registry/repositories` from this
//! host. `wharf component export --standalone` writes the other: the same
//! core composed at build time (`standalone/compose`) with a gate, a
//! storage on `wasi:filesystem` and an entry, so that it imports only WASI
//! 0.2 and runs in any wasi-http host. `--component` takes either: from a
//! standalone component, the core inside it is what this host runs.

use anyhow::Context as _;
use std::path::Path;
use wasmparser::{Parser, Payload};

/// The plain component: the protocol core `build.rs` built.
pub use crate::sandbox::runtime::EMBEDDED_COMPONENT as PLAIN;
/// The standalone component `build.rs` composed.
pub static STANDALONE: &[u8] = include_bytes!(env!("WHARF_STANDALONE_WASM"));

/// What the core imports from this host, and only the core.
const CONTRACT: &str = "wharf:registry/repositories@";

/// Write the plain component, or with `standalone` the composed one, to `out`.
pub fn export(out: &Path, standalone: bool) -> anyhow::Result<()> {
    let bytes = if standalone { STANDALONE } else { PLAIN };
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    let form = if standalone {
        "standalone registry component (imports WASI 0.2 only; run it with `wasmtime serve -S cli`)"
    } else {
        "registry component (for `wharf serve --component`)"
    };
    println!(
        "wrote the {form} to {} ({} bytes)",
        out.display(),
        bytes.len()
    );
    Ok(())
}

/// The registry core `component` holds: itself when it imports the
/// contract, else the one component nested in it that does (a standalone
/// registry), else `component` unchanged, for the engine to refuse with
/// its own words.
pub fn registry_core(component: &[u8]) -> anyhow::Result<&[u8]> {
    if imports_contract(component)? {
        return Ok(component);
    }
    for nested in nested_components(component)? {
        if imports_contract(nested)? {
            return Ok(nested);
        }
    }
    Ok(component)
}

/// Whether `component` itself imports `wharf:registry/repositories`.
fn imports_contract(component: &[u8]) -> anyhow::Result<bool> {
    let mut found = false;
    walk(component, |payload| {
        if let Payload::ComponentImportSection(imports) = payload {
            for import in imports.clone() {
                found |= import?.name.name.starts_with(CONTRACT);
            }
        }
        Ok(())
    })?;
    Ok(found)
}

/// The components defined at the top level of `component`.
fn nested_components(component: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let mut nested = Vec::new();
    walk(component, |payload| {
        if let Payload::ComponentSection {
            unchecked_range, ..
        } = payload
        {
            nested.push(&component[unchecked_range.clone()]);
        }
        Ok(())
    })?;
    Ok(nested)
}

/// Visit the top-level sections of `bytes`, not those of the modules and
/// components nested in it (each nested one starts with its own `Version`
/// and ends with its own `End`).
fn walk<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(&Payload<'a>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.context("not a WebAssembly component")?;
        if let Payload::Version { .. } = payload {
            depth += 1;
        }
        if depth == 1 {
            visit(&payload)?;
        }
        if let Payload::End(_) = payload {
            depth -= 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_component_is_its_own_core() {
        assert!(imports_contract(PLAIN).unwrap());
        assert_eq!(registry_core(PLAIN).unwrap(), PLAIN);
    }

    #[test]
    fn the_standalone_component_imports_no_contract_and_holds_the_core() {
        assert!(!imports_contract(STANDALONE).unwrap());
        let core = registry_core(STANDALONE).unwrap();
        assert_ne!(core.len(), STANDALONE.len());
        assert!(imports_contract(core).unwrap());
        assert_eq!(
            core, PLAIN,
            "the standalone form carries the very core wharf serve runs"
        );
    }

    fn imports(component: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        walk(component, |payload| {
            if let Payload::ComponentImportSection(imports) = payload {
                for import in imports.clone() {
                    names.push(import?.name.name.to_string());
                }
            }
            Ok(())
        })
        .unwrap();
        names
    }

    #[test]
    fn the_standalone_component_imports_wasi_only_and_the_core_no_filesystem() {
        let outside = imports(STANDALONE);
        assert!(
            outside.iter().all(|name| name.starts_with("wasi:")),
            "the standalone component imports more than WASI: {outside:?}"
        );
        assert!(
            outside
                .iter()
                .any(|n| n.starts_with("wasi:filesystem/preopens@"))
        );
        let core = imports(registry_core(STANDALONE).unwrap());
        assert!(
            !core
                .iter()
                .any(|n| n.starts_with("wasi:filesystem") || n.starts_with("wasi:sockets")),
            "the core reaches a filesystem or sockets: {core:?}"
        );
    }

    #[test]
    fn something_else_is_left_for_the_engine_to_refuse() {
        assert!(registry_core(b"not wasm").is_err());
        let module = b"\0asm\x01\0\0\0";
        assert_eq!(registry_core(module).unwrap(), module);
    }
}
