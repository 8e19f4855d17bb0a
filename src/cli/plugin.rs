//! `fxgraph plugin`: loads a WebAssembly plugin, sets an instance up, prints what it declares.

use crate::Failure;
#[cfg(feature = "wasm")]
use crate::bad_input;
use std::path::Path;

#[cfg(feature = "wasm")]
pub(crate) fn run(path: &Path) -> Result<(), Failure> {
    use fxgraph::node::{BuildContext, GraphFormat, NodeSpec, ProcessConfig};
    use fxgraph::wasm::{ABI_VERSION, WasmParams, inspect};
    let (manifest, module) = inspect(path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    // Set an instance up with the defaults, as a graph would: proves the exports and the buffers are sound.
    let mut spec = WasmParams::new(path.display().to_string(), Default::default());
    let format = GraphFormat { sample_rate: 48000, channels: 2 };
    let ctx = BuildContext { format, base_dir: Path::new("") };
    spec.bind(&ctx);
    let mut processor = spec.build(&ctx).map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
    processor
        .initialize(&ProcessConfig { sample_rate: 48000, channels: 2, max_block: 512 })
        .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
    processor.cleanup();
    println!("{}: {} {} ({})", path.display(), manifest.name, manifest.version, manifest.id);
    println!("ABI version {} (host implements {ABI_VERSION})", manifest.abi_version);
    let config = ProcessConfig { sample_rate: 48000, channels: 2, max_block: 512 };
    println!(
        "limits: memory {} KiB (host cap {} KiB), {} us per block; hard deadline {} ms at 512 frames, 48 kHz",
        manifest.memory_cap() / 1024,
        fxgraph::wasm::HOST_MEMORY_CAP / 1024,
        manifest.block_budget_us,
        fxgraph::wasm::deadline_ticks(manifest.block_budget_us, &config) * fxgraph::wasm::host::TICK.as_millis() as u64
    );
    println!("parameters:");
    for p in &manifest.parameters {
        let range = match &p.choices {
            Some(c) => format!("one of {}", c.join(", ")),
            None => {
                let (lo, hi) = p.range(48000);
                let unit = if p.unit.is_empty() { String::new() } else { format!(" {}", p.unit) };
                let rate = match p.max_nyquist_fraction {
                    Some(f) => format!(" (at most {f} of Nyquist; at 48 kHz)"),
                    None => String::new(),
                };
                format!("{lo} to {hi}{unit}{rate}")
            }
        };
        let default = match &p.default {
            fxgraph::wasm::ConfigValue::Number(n) => n.to_string(),
            fxgraph::wasm::ConfigValue::Text(t) => format!("\"{t}\""),
        };
        println!("  {:>2}  {:<12} {:<16} {range}, default {default}", p.id, p.key, p.name);
    }
    let imports: Vec<String> = module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect();
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    println!("imports: {}", if imports.is_empty() { "none".into() } else { imports.join(", ") });
    println!("exports: {}", exports.join(", "));
    println!("setup: ok (initialized at 48000 Hz, 2 channels, 512 frames)");
    Ok(())
}

#[cfg(not(feature = "wasm"))]
pub(crate) fn run(_path: &Path) -> Result<(), Failure> {
    Err(Failure::Other(anyhow::anyhow!("this build of fxgraph has no WebAssembly support (feature `wasm`)")))
}
