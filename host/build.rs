//! Builds the protocol component (`guest/component`) for `wasm32-wasip2` and
//! hands its path to `sandbox/runtime.rs`, which embeds it, so `cargo build` and
//! `cargo run` need nothing else. The component is also compiled ahead of
//! time (`wharf-precompile`, with the engine's own settings), so a start
//! need not compile it. The standalone registry's other components
//! (`standalone/`) are built in the same run and composed with it
//! (`wharf-standalone-compose`) into the component
//! `wharf component export --standalone` writes. Each nested cargo has its
//! own target directory, so it never waits on the outer one's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let host = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = host.parent().unwrap().to_path_buf();
    for watched in [
        "spec/src",
        "spec/Cargo.toml",
        "layout-fs",
        "guest/src",
        "guest/Cargo.toml",
        "guest/component/src",
        "guest/component/Cargo.toml",
        "standalone/gate",
        "standalone/storage",
        "standalone/front",
        "standalone/compose/src",
        "host/precompile",
        "wit",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=WHARF_COMPONENT_FEATURES");

    ensure_target();

    // Optional features of the component, for measurements (see ARCHITECTURE.md),
    // built apart so they never replace the default component.
    let features = env::var("WHARF_COMPONENT_FEATURES").unwrap_or_default();
    let target_dir = match features.as_str() {
        "" => workspace.join("target").join("component"),
        f => workspace
            .join("target")
            .join(format!("component-{}", f.replace([',', ' '], "-"))),
    };
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "-p",
            "wharf-component",
            "-p",
            "wharf-standalone-gate",
            "-p",
            "wharf-standalone-storage",
            "-p",
            "wharf-standalone-front",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    without_outer_build(&mut build);
    if !features.is_empty() {
        let qualified: Vec<String> = features
            .split([',', ' '])
            .filter(|f| !f.is_empty())
            .map(|f| format!("wharf-component/{f}"))
            .collect();
        build.args(["--features", &qualified.join(",")]);
    }
    let status = build
        .status()
        .expect("running cargo to build the component");
    assert!(
        status.success(),
        "building the registry component (guest/component) for {TARGET} failed"
    );

    let release = target_dir.join(TARGET).join("release");
    let wasm = release.join("wharf_component.wasm");
    assert!(
        wasm.exists(),
        "the component build produced no {}",
        wasm.display()
    );
    println!("cargo:rustc-env=WHARF_COMPONENT_WASM={}", wasm.display());
    let precompiled = precompile(&workspace, &wasm);
    println!(
        "cargo:rustc-env=WHARF_COMPONENT_CWASM={}",
        precompiled.display()
    );

    let read = |name: &str| {
        let path = release.join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    };
    let (core, gate, storage, entry) = (
        read("wharf_component.wasm"),
        read("wharf_standalone_gate.wasm"),
        read("wharf_standalone_storage.wasm"),
        read("wharf_standalone_front.wasm"),
    );
    let standalone = wharf_standalone_compose::compose(&wharf_standalone_compose::Parts {
        core: &core,
        gate: &gate,
        storage: &storage,
        entry: &entry,
    })
    .unwrap_or_else(|e| panic!("composing the standalone registry: {e:#}"));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("wharf_standalone.wasm");
    std::fs::write(&out, standalone).expect("writing the standalone component");
    println!("cargo:rustc-env=WHARF_STANDALONE_WASM={}", out.display());
}

/// Compile the component ahead of time with `wharf-precompile` (built in
/// its own target directory, once for every profile of the host), for the
/// target the host is built for, so the host loads it without compiling.
fn precompile(workspace: &Path, wasm: &Path) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = workspace.join("target").join("precompile");
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "wharf-precompile",
            "--target-dir",
        ])
        .arg(&target_dir);
    let status = without_outer_build(&mut build)
        .status()
        .expect("running cargo to build wharf-precompile");
    assert!(status.success(), "building wharf-precompile failed");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("wharf_component.cwasm");
    let mut run = Command::new(target_dir.join("release").join("wharf-precompile"));
    run.arg(wasm).arg(&out);
    // Built for another machine (a static musl build, say): code that runs
    // on any CPU of that target rather than on this one's alone.
    let (host, target) = (env::var("HOST").unwrap(), env::var("TARGET").unwrap());
    if host != target {
        run.arg(&target);
    }
    let status = run.status().expect("running wharf-precompile");
    assert!(
        status.success(),
        "precompiling the registry component failed"
    );
    out
}

/// A nested cargo without the outer build's flags, wrappers (clippy,
/// coverage) and target settings, which are for the host.
fn without_outer_build(cargo: &mut Command) -> &mut Command {
    for name in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(name);
    }
    cargo
}

/// Add the wasm target through rustup if it is missing, or say how.
fn ensure_target() {
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |root: &Path| root.join("lib/rustlib").join(TARGET).exists();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !matches!(added, Ok(s) if s.success()) {
        panic!(
            "the Rust target {TARGET} is missing and `rustup target add {TARGET}` failed: install it, then build again"
        );
    }
}
