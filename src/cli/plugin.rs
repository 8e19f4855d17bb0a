//! `fxgraph plugin`: loads a WebAssembly plugin, sets an instance up, prints what it declares.

use crate::Failure;
#[cfg(feature = "wasm")]
use crate::bad_input;
use std::path::Path;

#[cfg(feature = "wasm")]
pub(crate) fn run(path: &Path) -> Result<(), Failure> {
    use fxgraph::node::{BuildContext, GraphFormat, NodeSpec, ProcessConfig};
    use fxgraph::nodes::wasm::{ABI_VERSION, WasmParams, inspect};
    let (manifest, module) = inspect(path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    // Set an instance up with the defaults, as a graph would: proves the exports and the buffers are sound.
    let mut spec = WasmParams::new(path.display().to_string(), Default::default());
    let format = GraphFormat { sample_rate: 48000, channels: 2 };
    let ctx = BuildContext { format, base_dir: Path::new("") };
    spec.bind(&ctx);
    let mut processor = spec.build(&ctx).map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
    // A stereo graph; a plugin with buses gets each as declared, optional inputs unconnected.
    let mut setup = ProcessConfig::effect(48000, 2, 512);
    if manifest.buses.is_some() {
        setup.layout = spec.ports(&format).unconnected(2);
        setup.channels = setup.layout.block_channels();
    }
    processor.initialize(&setup).map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
    processor.cleanup();
    println!("{}: {} {} ({})", path.display(), manifest.name, manifest.version, manifest.id);
    println!(
        "ABI version {}.{} (host implements {ABI_VERSION}.{})",
        manifest.abi_version,
        manifest.abi_minor,
        fxgraph::nodes::wasm::ABI_MINOR
    );
    if let Some(b) = &manifest.buses {
        let bus = |b: &fxgraph::nodes::wasm::BusDecl| {
            let width = match (b.optional, b.channels) {
                (true, _) => "optional".to_string(),
                (false, 0) => "graph's channels".to_string(),
                (false, n) => format!("{n} ch"),
            };
            format!("{} ({width})", b.name)
        };
        let list = |v: &[fxgraph::nodes::wasm::BusDecl]| {
            if v.is_empty() { "none".to_string() } else { v.iter().map(bus).collect::<Vec<_>>().join(", ") }
        };
        println!("audio buses: in {}; out {}", list(&b.inputs), list(&b.outputs));
    }
    let config = ProcessConfig::effect(48000, 2, 512);
    println!(
        "limits: memory {} KiB (host cap {} KiB), {} us per block; hard deadline {} ms at 512 frames, 48 kHz",
        manifest.memory_cap() / 1024,
        fxgraph::nodes::wasm::HOST_MEMORY_CAP / 1024,
        manifest.block_budget_us,
        fxgraph::nodes::wasm::deadline_ticks(manifest.block_budget_us, &config)
            * fxgraph::nodes::wasm::TICK.as_millis() as u64
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
            fxgraph::nodes::wasm::ConfigValue::Number(n) => n.to_string(),
            fxgraph::nodes::wasm::ConfigValue::Text(t) => format!("\"{t}\""),
        };
        println!("  {:>2}  {:<12} {:<16} {range}, default {default}", p.id, p.key, p.name);
    }
    let imports: Vec<String> = module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect();
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    println!("imports: {}", if imports.is_empty() { "none".into() } else { imports.join(", ") });
    if let Some(declared) = &manifest.host_functions {
        println!("declared host functions: {}", if declared.is_empty() { "none".into() } else { declared.join(", ") });
    }
    println!("exports: {}", exports.join(", "));
    println!("setup: ok (initialized at 48000 Hz, 2 channels, 512 frames)");
    Ok(())
}

/// `fxgraph plugin PATH`: a WebAssembly module, a native plugin or a LADSPA library.
pub(crate) fn info(path: &Path) -> Result<(), Failure> {
    #[cfg(target_os = "linux")]
    if path.extension().is_none_or(|e| e != "wasm") {
        print!("{}", fxgraph::nodes::native::describe(path)?);
        return Ok(());
    }
    run(path)
}

#[cfg(not(feature = "wasm"))]
pub(crate) fn run(_path: &Path) -> Result<(), Failure> {
    Err(Failure::Other(anyhow::anyhow!("this build of fxgraph has no WebAssembly support (feature `wasm`)")))
}

/// `fxgraph plugin install|list|remove|pack`.
#[cfg(feature = "wasm")]
pub(crate) mod packages {
    use crate::{Failure, bad_input};
    use fxgraph::nodes::wasm::packages;
    use std::path::Path;

    fn failure(e: fxgraph::Error) -> Failure {
        Failure::from(e)
    }

    pub(crate) fn install(source: &Path, force: bool) -> Result<(), Failure> {
        let root = packages::search_path().into_iter().next().ok_or_else(|| {
            Failure::Other(anyhow::anyhow!("no plugin folder: set FXGRAPH_PLUGIN_PATH, XDG_DATA_HOME or HOME"))
        })?;
        let installed = packages::install(source, &root, force).map_err(failure)?;
        let m = &installed.manifest;
        println!(
            "installed {} {} ({}, {} module{}, {} parameters) in {}",
            m.id,
            m.version,
            m.name,
            m.modules.len(),
            if m.modules.len() == 1 { "" } else { "s" },
            m.parameters,
            installed.dir.display()
        );
        Ok(())
    }

    pub(crate) fn list() -> Result<(), Failure> {
        let all = packages::installed();
        if all.is_empty() {
            let roots: Vec<String> = packages::search_path().iter().map(|p| p.display().to_string()).collect();
            println!("no plugins installed (looked in {})", roots.join(":"));
        }
        for i in all {
            let m = &i.manifest;
            let modules: Vec<String> = m
                .modules
                .iter()
                .map(|x| {
                    let digest = fxgraph::nodes::plugin::file_sha256(&i.dir.join(&x.path))
                        .unwrap_or_else(|e| format!("unreadable: {e}"));
                    let language = x.language.as_deref().map(|l| format!(", {l}")).unwrap_or_default();
                    format!("{} (sha256 {digest}{language})", x.path)
                })
                .collect();
            println!(
                "{} {}  {}  {}, {} parameters, modules: {}  {}",
                m.id,
                m.version,
                m.name,
                m.kind,
                m.parameters,
                modules.join(", "),
                i.dir.display()
            );
        }
        Ok(())
    }

    pub(crate) fn remove(spec: &str) -> Result<(), Failure> {
        let (id, version) = match spec.split_once('@') {
            Some((id, v)) => (id, Some(v)),
            None => (spec, None),
        };
        for dir in packages::remove(id, version).map_err(failure)? {
            println!("removed {}", dir.display());
        }
        Ok(())
    }

    pub(crate) fn pack(dir: &Path, out: Option<&Path>) -> Result<(), Failure> {
        let text = std::fs::read_to_string(dir.join(packages::MANIFEST))
            .map_err(|e| bad_input(anyhow::anyhow!("cannot read {}: {e}", dir.join(packages::MANIFEST).display())))?;
        let m = packages::PackageManifest::parse(&text)
            .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", dir.display())))?;
        let default = std::path::PathBuf::from(format!("{}-{}.tar.gz", m.id, m.version));
        let out = out.unwrap_or(&default);
        let m = packages::pack(dir, out).map_err(failure)?;
        println!("packed {} {} -> {}", m.id, m.version, out.display());
        Ok(())
    }
}

/// `fxgraph plugin lv2 [URI]`: the installed LV2 plugins, or one plugin's features, buses and ports.
#[cfg(target_os = "linux")]
pub(crate) fn lv2(uri: Option<&str>) -> Result<(), Failure> {
    use fxgraph::nodes::native::lv2;
    let fail = |e: String| crate::bad_input(anyhow::anyhow!(e));
    match uri {
        Some(uri) => print!("{}", lv2::describe(uri).map_err(fail)?),
        None => {
            let plugins = lv2::list().map_err(fail)?;
            for (uri, name) in &plugins {
                println!("{uri}  {name}");
            }
            println!("{} LV2 plugin(s)", plugins.len());
        }
    }
    Ok(())
}

/// `fxgraph plugin clap PATH`: the plugins of a CLAP bundle, with their ports and parameters.
#[cfg(target_os = "linux")]
pub(crate) fn clap(path: &Path) -> Result<(), Failure> {
    let text = fxgraph::nodes::native::clap::describe(path).map_err(|e| crate::bad_input(anyhow::anyhow!(e)))?;
    print!("{text}");
    Ok(())
}
