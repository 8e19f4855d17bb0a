//! The WebAssembly load path up to a running instance: validation and compilation, the import allowlist,
//! linking, instantiation under the memory cap, the setup calls under their deadline, and the buffer
//! table's checks.
#![no_main]

use fxgraph::node::ProcessConfig;
use fxgraph::nodes::wasm::{Manifest, try_module};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn manifest() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| {
        Manifest::parse(
            r#"{"id": "fuzz", "name": "Fuzz", "version": "0", "abi_version": 1, "memory_limit_bytes": 4194304,
                "block_budget_us": 2000, "parameters": [
                {"id": 0, "key": "type", "name": "T", "enum": ["a", "b"], "default": "a"},
                {"id": 1, "key": "cutoff_hz", "name": "C", "min": 10, "max": 20000, "default": 1000}]}"#,
        )
        .expect("valid manifest")
    })
}

fuzz_target!(|data: &[u8]| {
    // No disk cache: every input is compiled, nothing is written.
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: set once, on the fuzzing thread, before the engine reads it or starts threads of its own.
        unsafe { std::env::set_var("FXGRAPH_CACHE_DIR", "") };
    });
    let config = ProcessConfig::effect(48000, 2, 512);
    let _ = try_module(data, manifest(), &[(0, 0.0), (1, 1000.0)], &config);
});
