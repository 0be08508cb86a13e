//! Test-only components, built from source by the tests that need them.

use std::path::PathBuf;
use std::process::Command;

/// Builds `tests/components/misbehave` for `wasm32-wasip2` (once per test
/// binary run; cargo makes repeated builds no-ops) and returns the
/// component's path.
pub fn misbehave() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = root.join("tests/components/misbehave/Cargo.toml");
    let target_dir = root.join("target/test-components");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("running cargo to build the misbehave component");
    assert!(
        status.success(),
        "building tests/components/misbehave failed"
    );
    let wasm = target_dir.join("wasm32-wasip2/release/wharf_misbehave.wasm");
    assert!(wasm.exists(), "no {}", wasm.display());
    wasm
}

/// The real protocol component, as embedded in the `wharf` binary.
pub fn real() -> PathBuf {
    PathBuf::from(env!("WHARF_COMPONENT_WASM"))
}
