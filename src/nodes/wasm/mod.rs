//! WebAssembly plugin nodes: `Wasm(path: "...", config: {...})`, run in wasmtime's sandbox.
//!
//! The ABI is documented in `plugins/ABI.md`. In short: the module exports `memory` and the `fxg_*`
//! functions, may import only `fxgraph.log` and `fxgraph.emit_event`, and a JSON manifest beside it
//! (`NAME.json` for `NAME.wasm`) declares its id, version, ABI version, memory limit, per-block time budget
//! and parameters. Audio crosses as planar `f32` in the guest's memory, at offsets the guest reports once
//! and the host validates once and keeps.
//!
//! A plugin that traps (deadline, out-of-bounds access, `unreachable`, stack overflow, division by zero, a
//! bad indirect call...), returns an error, outputs non-finite or absurd samples, or overruns its time budget
//! for [`WATCHDOG_BLOCKS`] blocks in a row is faulted, as every plugin node is (see
//! [`crate::nodes::plugin`]): bypassed for the block, counted and reported, replaced from the compiled
//! module after a backoff, bypassed for good after [`MAX_FAULTS`] faults in a row. Other nodes and the host
//! are not affected. Nothing is instantiated on the audio side.
//!
//! Log lines and events the plugin sends through its imports are copied (bounds-checked, truncated to
//! [`MESSAGE_BYTES`]) into [`MESSAGE_SLOTS`] preallocated slots, and handed to the control side after each
//! block through the engine's queue, where they are delivered as untrusted text.
//!
//! Numeric parameters are smoothed: a change ramps over [`RAMP_MS`](crate::node::RAMP_MS), sent to the
//! plugin every [`RAMP_STEP`](crate::node::RAMP_STEP) frames (the block is cut there).

mod cache;
pub(crate) mod host;
pub mod manifest;
pub mod packages;

pub use cache::cache_dir;
pub(crate) use host::compile;
pub use host::{TICK, deadline_ticks};
pub use manifest::{ABI_MINOR, ABI_VERSION, BusDecl, Buses, ConfigValue, HOST_MEMORY_CAP, Manifest, ParamDecl};

use super::plugin::{ABSURD, Counts, Instance, PluginProcessor, replacement, text};
pub use super::plugin::{FORGIVE_SECONDS, Fault, MAX_FAULTS, OnFault, WATCHDOG_BLOCKS};
use super::spec_boilerplate;
use crate::clock::CpuMark;
use crate::node::AudioOut;
use crate::node::MESSAGE_BYTES;
use crate::node::{
    BuildContext, MessageKind, NodeError, NodeSpec, ParamError, ParamInfo, PollContext, ProcessConfig, Processor,
};
use crate::node::{NodeKind, Registry};
use bevy_ecs::component::Component;
pub use host::MESSAGE_SLOTS;
use host::{HostState, Live, Ticking, compile_pinned, instantiate, prelink};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::InstancePre;

pub(crate) fn register(registry: &mut Registry) {
    registry.register(NodeKind::new::<WasmParams>("Wasm", "a WebAssembly plugin, sandboxed"));
}

/// The module and manifest a [`WasmParams`] names, found from the graph's folder.
#[derive(Debug, Clone)]
struct Bound {
    module: PathBuf,
    manifest: Arc<Manifest>,
}

/// `Wasm(path, config, on_fault)`: the parameters of a plugin node. Its automatable parameters are the
/// manifest's, by key, in the manifest's order.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WasmParams {
    /// The module, relative to the graph file (or give `id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// An installed plugin by id (see [`packages`]), instead of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::nodes::native::plain_some")]
    pub id: Option<String>,
    /// With `id`: the versions accepted (semver requirement, e.g. `^1.0`) [default: any].
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::nodes::native::plain_some")]
    pub version: Option<String>,
    /// Values for the plugin's parameters by key; the rest take their defaults.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// What the node outputs while the plugin is bypassed.
    #[serde(default)]
    pub on_fault: OnFault,
    /// The file's SHA-256, pinned: a file that does not match is refused before any of its code runs.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::nodes::plugin::plain_pin")]
    pub sha256: Option<crate::nodes::plugin::Sha256Pin>,
    #[serde(skip)]
    bound: Option<Bound>,
}

impl WasmParams {
    /// A plugin node for the module at `path` (relative to the graph's folder), with `config`.
    pub fn new(path: impl Into<String>, config: BTreeMap<String, ConfigValue>) -> Self {
        Self { path: path.into(), id: None, version: None, config, on_fault: OnFault::Dry, sha256: None, bound: None }
    }

    /// An installed plugin by id, with a version requirement.
    pub fn by_id(id: impl Into<String>, version: Option<String>, config: BTreeMap<String, ConfigValue>) -> Self {
        Self {
            path: String::new(),
            id: Some(id.into()),
            version,
            config,
            on_fault: OnFault::Dry,
            sha256: None,
            bound: None,
        }
    }

    /// The module: `path` against the graph's folder, or the preferred module of the newest installed
    /// version of `id` that `version` accepts. Errors name the field.
    fn locate(&self, base_dir: &Path) -> Result<PathBuf, ParamError> {
        match (&self.id, self.path.is_empty()) {
            (Some(_), false) => Err(ParamError::new("id", "give `path` or `id`, not both".to_string())),
            (None, true) => Err(ParamError::new(
                "path",
                "a Wasm node needs `path` (a module) or `id` (an installed plugin)".to_string(),
            )),
            (None, false) => {
                if self.version.is_some() {
                    return Err(ParamError::new("version", "`version` goes with `id`, not with `path`".to_string()));
                }
                Ok(base_dir.join(&self.path))
            }
            (Some(id), true) => crate::nodes::wasm::packages::resolve(id, self.version.as_deref().unwrap_or("*"))
                .map(|i| i.module())
                .map_err(|e| ParamError::new(if e.contains("matches") { "version" } else { "id" }, e)),
        }
    }

    fn module_path(&self, base_dir: &Path) -> Result<PathBuf, String> {
        match &self.bound {
            Some(b) => Ok(b.module.clone()),
            None => self.locate(base_dir).map_err(|e| e.message),
        }
    }

    /// The manifest: the one found when the node was bound to its folder, else read now.
    fn manifest(&self, base_dir: &Path) -> Result<Arc<Manifest>, String> {
        match &self.bound {
            Some(b) => Ok(b.manifest.clone()),
            None => Manifest::for_module(&self.module_path(base_dir)?),
        }
    }
}

impl NodeSpec for WasmParams {
    fn kind(&self) -> &'static str {
        "Wasm"
    }

    fn ports(&self, _format: &crate::node::GraphFormat) -> crate::node::Ports {
        use crate::node::{Port, Ports, Width};
        let Some(buses) = self.bound.as_ref().and_then(|b| b.manifest.buses.as_ref()) else { return Ports::effect() };
        let port = |b: &BusDecl| Port::new(b.name.clone(), Width::of_bus(b.channels, b.optional));
        Ports { inputs: buses.inputs.iter().map(port).collect(), outputs: buses.outputs.iter().map(port).collect() }
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        self.bound = self
            .locate(ctx.base_dir)
            .ok()
            .and_then(|module| Manifest::for_module(&module).ok().map(|manifest| Bound { module, manifest }));
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let path = match &self.bound {
            Some(b) => b.module.clone(),
            None => self.locate(ctx.base_dir)?,
        };
        let field = if self.id.is_some() { "id" } else { "path" };
        let manifest = Manifest::for_module(&path).map_err(|e| ParamError::new(field, e))?;
        manifest.resolve(&self.config, ctx.format.sample_rate)?;
        crate::nodes::plugin::check_pin(self.sha256.as_ref(), &path).map_err(|e| ParamError::new("sha256", e))?;
        let module = compile_pinned(&path, self.sha256.as_ref()).map_err(|e| ParamError::new(field, e))?;
        host::check_declared(&module, &manifest, &path).map_err(|e| ParamError::new(field, e))?;
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let path = self.module_path(ctx.base_dir).map_err(NodeError)?;
        let manifest = Manifest::for_module(&path).map_err(NodeError)?;
        let params = manifest.resolve(&self.config, ctx.format.sample_rate).map_err(|e| NodeError(e.to_string()))?;
        let module = compile_pinned(&path, self.sha256.as_ref()).map_err(NodeError)?;
        host::check_declared(&module, &manifest, &path).map_err(NodeError)?;
        let pre = prelink(&module).map_err(NodeError)?;
        Ok(Box::new(processor(pre, manifest, params, self.on_fault)))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        match self.manifest(ctx.base_dir) {
            Ok(m) => m.parameters.iter().map(|p| p.info(ctx.format.sample_rate)).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn param(&self, index: usize) -> f64 {
        let Some(b) = &self.bound else { return 0.0 };
        let Some(p) = b.manifest.parameters.get(index) else { return 0.0 };
        let value = self.config.get(&p.key).unwrap_or(&p.default);
        match (&p.choices, value) {
            (Some(c), ConfigValue::Text(t)) => c.iter().position(|x| x == t).unwrap_or(0) as f64,
            (_, ConfigValue::Number(n)) => *n,
            (None, ConfigValue::Text(_)) => 0.0,
        }
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let Some(b) = &self.bound else { return };
        let Some(p) = b.manifest.parameters.get(index) else { return };
        let v = match &p.choices {
            Some(c) => ConfigValue::Text(c.get(value as usize).cloned().unwrap_or_default()),
            None => ConfigValue::Number(value),
        };
        self.config.insert(p.key.clone(), v);
    }

    fn shape(&self) -> String {
        let module = self.bound.as_ref().map_or_else(|| PathBuf::from(&self.path), |b| b.module.clone());
        format!("{} {:?} {:?} {:?}", module.display(), self.id, self.version, self.on_fault)
    }

    fn source(&self) -> String {
        match &self.bound {
            Some(b) => match &b.manifest.package_version {
                Some(v) => format!("{}@{v}", b.manifest.id),
                None => b.manifest.id.clone(),
            },
            None => self.id.clone().unwrap_or_else(|| self.path.clone()),
        }
    }

    fn build_replacement(
        &self,
        ctx: &BuildContext<'_>,
        config: &ProcessConfig,
    ) -> Option<Result<Box<dyn std::any::Any + Send>, NodeError>> {
        replacement(
            || self.source(),
            || {
                let path = self.module_path(ctx.base_dir)?;
                let manifest = Manifest::for_module(&path)?;
                let params = manifest.resolve(&self.config, config.sample_rate).map_err(|e| e.to_string())?;
                let pre = prelink(&compile_pinned(&path, self.sha256.as_ref())?)?;
                instantiate(&pre, &manifest, &params, config)
            },
        )
    }

    spec_boilerplate!();
}

fn fault_of(e: &wasmtime::Error) -> Fault {
    Fault::Trap(e.downcast_ref::<wasmtime::Trap>().copied())
}

/// The audio side of a `Wasm` node: the shared plugin processor over a wasmtime instance.
pub type WasmProcessor = PluginProcessor<Live>;

fn processor(
    pre: InstancePre<HostState>,
    manifest: Arc<Manifest>,
    params: Vec<(i32, f32)>,
    on_fault: OnFault,
) -> WasmProcessor {
    let keys = manifest.parameters.iter().map(|p| p.key.clone()).collect();
    let numeric = manifest.parameters.iter().map(|p| p.choices.is_none()).collect();
    let values = params.iter().map(|&(id, v)| (id as u32, f64::from(v))).collect();
    let budget = Duration::from_micros(manifest.block_budget_us.max(1));
    let id: Arc<str> = manifest.id.as_str().into();
    let ticking = Ticking::new();
    let make = Box::new(move |config: &ProcessConfig, params: &[(u32, f64)]| {
        let _ = &ticking; // the epoch keeps ticking while the node exists
        let params: Vec<(i32, f32)> = params.iter().map(|&(id, v)| (id as i32, v as f32)).collect();
        instantiate(&pre, &manifest, &params, config)
    });
    PluginProcessor::new(id, keys, values, numeric, on_fault, budget, make)
}

/// A plane of samples in the plugin's memory: `f32`, little-endian (WebAssembly's byte order). On a
/// little-endian host whose view of the plane is aligned (the memory's base is page-aligned and each
/// buffer's offset was checked to be a multiple of 4), its bytes are the samples, read as they are.
enum Samples<'a> {
    Native(&'a [f32]),
    Bytes(&'a [u8]),
}

impl<'a> Samples<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        match bytemuck::try_cast_slice(bytes) {
            Ok(samples) if cfg!(target_endian = "little") => Samples::Native(samples),
            _ => Samples::Bytes(bytes),
        }
    }

    /// Whether every sample is finite and at most [`ABSURD`] in magnitude. Not `all`, which stops early
    /// and so runs a sample at a time: `&` over the whole plane vectorizes (and a NaN is not `<=` anything).
    fn all_sane(&self) -> bool {
        match self {
            Samples::Native(x) => x.iter().fold(true, |ok, v| ok & (v.abs() <= ABSURD)),
            Samples::Bytes(b) => {
                b.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).all(|v| v.abs() <= ABSURD)
            }
        }
    }

    fn copy_to(&self, out: &mut [f32]) {
        match self {
            Samples::Native(x) => out.copy_from_slice(x),
            Samples::Bytes(b) => {
                for (y, b) in out.iter_mut().zip(b.chunks_exact(4)) {
                    *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
    }
}

/// Writes samples into a plane of the plugin's memory (see [`Samples`]).
fn write_samples(plane: &mut [u8], x: &[f32]) {
    if cfg!(target_endian = "little") {
        plane.copy_from_slice(bytemuck::cast_slice(x));
    } else {
        for (dst, s) in plane.chunks_exact_mut(4).zip(x) {
            dst.copy_from_slice(&s.to_le_bytes());
        }
    }
}

/// Hands over what an instance logged since the last poll.
fn drain_slots(live: &mut Live, ctx: &mut dyn PollContext) {
    let state = live.store.data_mut();
    for slot in &state.slots[..state.used] {
        ctx.message(slot.kind, &slot.bytes[..slot.len]);
    }
    if state.dropped > 0 {
        let mut buf = [0u8; MESSAGE_BYTES];
        ctx.message(
            MessageKind::Dropped(state.dropped),
            text(&mut buf, format_args!("{} messages dropped", state.dropped)),
        );
    }
    state.used = 0;
    state.dropped = 0;
}

impl Live {
    /// Calls `f` inside a real-time call: no memory growth, the block deadline armed from `mark`.
    fn guarded<R>(&mut self, mark: CpuMark, f: impl FnOnce(&mut Self) -> wasmtime::Result<R>) -> Result<R, Fault> {
        self.store.data_mut().in_block = true;
        HostState::arm(&mut self.store, mark, self.deadline_ticks);
        let result = f(self);
        self.store.data_mut().in_block = false;
        result.map_err(|e| fault_of(&e))
    }
}

impl Instance for Live {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        let mark = CpuMark::start(self.mark_age, false);
        self.guarded(mark, |live| live.set_param.call(&mut live.store, (id as i32, value as f32)))
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, mark: &CpuMark) -> Result<(), Fault> {
        let n = audio.frames();
        let plane = 4 * self.max_block;
        {
            // The block's channels go to the input buses in order.
            let mem = self.memory.data_mut(&mut self.store);
            let mut c = 0;
            for &(offset, width) in &self.inputs {
                for k in 0..width.min(audio.channels().saturating_sub(c)) {
                    let at = offset + k * plane;
                    write_samples(&mut mem[at..at + 4 * n], audio.channel(c + k));
                }
                c += width;
            }
        }
        match self.guarded(*mark, |live| live.process.call(&mut live.store, n as i32))? {
            0 if self.memory.data_size(&self.store) != self.memory_size => Err(Fault::MemoryGrew),
            0 => {
                let mem = self.memory.data(&self.store);
                // Output channel `c` of the block: a channel of one of the output buses, in order.
                let outputs = &self.outputs;
                let plane_of = |c: usize| {
                    let mut c = c;
                    for &(offset, width) in outputs {
                        if c < width {
                            return Samples::of(&mem[offset + c * plane..offset + c * plane + 4 * n]);
                        }
                        c -= width;
                    }
                    Samples::of(&mem[..0])
                };
                let channels = self.out_channels.min(audio.channels());
                // Checked before anything is written: the block holds the dry input until then.
                let good = (0..channels).all(|c| plane_of(c).all_sane());
                if !good {
                    return Err(Fault::BadOutput);
                }
                for c in 0..channels {
                    plane_of(c).copy_to(audio.channel_mut(c));
                }
                Ok(())
            }
            code => Err(Fault::ErrorReturn(code)),
        }
    }

    fn start(&mut self) -> Result<(), Fault> {
        let mark = CpuMark::start(self.mark_age, false);
        self.guarded(mark, |live| live.start.call(&mut live.store, ()))
    }

    fn stop(&mut self) -> Result<(), Fault> {
        HostState::arm(&mut self.store, CpuMark::start(0, true), host::SETUP_DEADLINE_TICKS);
        self.stop.call(&mut self.store, ()).map_err(|e| fault_of(&e))
    }

    fn cleanup(&mut self) {
        HostState::arm(&mut self.store, CpuMark::start(0, true), host::SETUP_DEADLINE_TICKS);
        let _ = self.cleanup.call(&mut self.store, ());
    }

    fn take_counts(&mut self) -> Counts {
        Counts { preempted_calls: std::mem::take(&mut self.store.data_mut().preempted), ..Counts::default() }
    }

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        drain_slots(self, ctx);
    }

    fn memory(&self) -> Option<(usize, usize)> {
        Some((self.memory.data_size(&self.store), self.memory_cap))
    }
}

/// Validates, compiles and links WebAssembly module `bytes` and sets up an instance of it against
/// `manifest` with parameters `params` (`(id, value)`) for `config`, as loading a graph would (through the
/// disk cache of compiled modules, unless `FXGRAPH_CACHE_DIR` is set and empty), then drops it: for tools
/// and fuzzing.
///
/// # Errors
/// [`Error::Plugin`](crate::Error::Plugin) saying which step refused the module.
pub fn try_module(
    bytes: &[u8],
    manifest: &Manifest,
    params: &[(i32, f32)],
    config: &ProcessConfig,
) -> crate::Result<()> {
    let _ticking = Ticking::new();
    let module = host::compile_bytes(bytes, Path::new("module.wasm")).map_err(crate::Error::Plugin)?;
    let pre = prelink(&module).map_err(crate::Error::Plugin)?;
    instantiate(&pre, manifest, params, config).map(drop).map_err(crate::Error::Plugin)
}

/// The plugin's manifest and the module's check, for `fxgraph plugin` and tools.
///
/// # Errors
/// [`Error::Plugin`](crate::Error::Plugin) for a manifest that is missing or invalid, or a module that is
/// not WebAssembly or imports what the sandbox does not provide.
pub fn inspect(path: &Path) -> crate::Result<(Arc<Manifest>, wasmtime::Module)> {
    let manifest = Manifest::for_module(path).map_err(crate::Error::Plugin)?;
    let module = compile(path).map_err(crate::Error::Plugin)?;
    Ok((manifest, module))
}
