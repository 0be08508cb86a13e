//! `wharf-precompile COMPONENT OUT [TARGET]`: compile a component ahead of
//! time with the settings of Wharf's engine, for `TARGET` (a Rust target
//! triple; this machine's when absent), and write the result to `OUT`.
//! `host/build.rs` runs it on the registry component, so `wharf serve`
//! starts without compiling.

use anyhow::Context as _;
use std::path::PathBuf;
use wasmtime::{Config, Engine};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: wharf-precompile COMPONENT OUT [TARGET]";
    let component = PathBuf::from(args.next().context(usage)?);
    let out = PathBuf::from(args.next().context(usage)?);
    let target = args.next().map(|t| t.to_string_lossy().into_owned());

    let mut config = Config::new();
    wharf_precompile::compiled_for_wharf(&mut config);
    if let Some(target) = &target {
        // Another machine's code: only the features every CPU of that
        // target has, so the result runs wherever the binary does.
        config
            .target(target)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("wasmtime cannot compile for {target}"))?;
    }
    let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
    let wasm = std::fs::read(&component)
        .with_context(|| format!("reading the component {}", component.display()))?;
    let compiled = engine
        .precompile_component(&wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling {}", component.display()))?;
    std::fs::write(&out, compiled).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
