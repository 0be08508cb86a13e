//! The settings of Wharf's wasmtime engine that shape compiled code, in one
//! place for the two that compile with them: the host's engine at run time
//! (`host/src/sandbox/runtime.rs`), and `wharf-precompile` at build time
//! (`host/build.rs`), whose output the host loads instead of compiling. If
//! the two ever disagree, wasmtime refuses the precompiled component when it
//! is loaded and the host compiles it (and says so in its log).

use wasmtime::Config;

/// Apply the settings that compiled code depends on. The instance pool and
/// every other run-time setting are the host's alone.
pub fn compiled_for_wharf(config: &mut Config) -> &mut Config {
    // Each running guest checks the epoch, so a request can be stopped at
    // its deadline and a busy guest yields its thread.
    config.epoch_interruption(true)
}
