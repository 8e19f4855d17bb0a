//! Native plugin nodes: shared libraries against fxgraph's own C ABI (`Native(path, config, preset)`,
//! `plugins/include/fxgraph_plugin.h`, the Rust SDK in `sdk/`), and LADSPA plugins
//! (`Ladspa(path, label, controls)`, see [`ladspa`]).
//!
//! Native code runs in the host's process unless the node says `isolation: Process` (see `isolate.rs`): a
//! native plugin that crashes (a segfault, an abort) takes the host down with it, which WebAssembly plugins
//! cannot do. What the host guards against in process: a library that is not a plugin or not this ABI is
//! refused before any of its code beyond the entry point runs; a panic in an SDK plugin is caught at the
//! boundary and faults the node; an error return or a failed health check faults it (bypass, replacement
//! with backoff, as for every plugin node: [`crate::nodes::plugin`]); NaN or infinity in its output is
//! replaced with silence and counted.
#![allow(unsafe_code)] // Calls into native code through the ABI's function pointers; see the SAFETY notes.

pub mod clap;
mod host;
pub(crate) mod isolate;
pub mod ladspa;
pub(crate) mod library;
pub mod lv2;
pub(crate) mod rtwatch;

pub use host::run_if_plugin_host;
pub use isolate::{check_host, host_program, set_host_program};

use super::plugin::{Counts, Fault, Instance, OnFault, PluginProcessor, replacement};
use super::spec_boilerplate;
use crate::clock::CpuMark;
use crate::node::AudioOut;
use crate::node::{
    BuildContext, NodeError, NodeSpec, ParamError, ParamInfo, ParamValue, PollContext, ProcessConfig, Processor,
    Smoothing,
};
use crate::node::{NodeKind, Registry};
use bevy_ecs::component::Component;
use fxgraph_plugin::abi;
pub(crate) use library::{NativeInfo, NativeLibrary, NativeParam, load};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn register(registry: &mut Registry) {
    registry.register(NodeKind::new::<NativeParams>("Native", "a native plugin (fxgraph's C ABI)"));
    registry.register(NodeKind::new::<ladspa::LadspaParams>("Ladspa", "a LADSPA plugin"));
    registry.register(NodeKind::new::<lv2::Lv2Params>("Lv2", "an LV2 plugin, by URI"));
    registry.register(NodeKind::new::<clap::ClapParams>("Clap", "a CLAP plugin"));
}

/// Where a native plugin's code runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Isolation {
    /// In the host's process: fastest; a crash in the plugin is a crash of the host.
    #[default]
    InProcess,
    /// In a child process, audio through shared memory: a crash or hang is a fault like any other.
    Process,
}

/// The time a native plugin may take per block before the watchdog counts it (it cannot be interrupted in
/// process; isolated, the deadline is enforced).
pub const NATIVE_BUDGET: Duration = Duration::from_millis(20);
/// How often status numbers are read, and the health checked, in blocks.
const STATUS_EVERY: u64 = 64;
const HEALTH_EVERY: u64 = 256;

/// An optional string written plainly (`preset: "warm"`, not RON's `Some("warm")`).
pub(crate) fn plain_some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// `Native(path, config, preset, on_fault, isolation)`.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NativeParams {
    /// The shared library, relative to the graph file.
    pub path: String,
    /// Parameter values by key; the rest take the preset's value, else their defaults.
    #[serde(default)]
    pub config: BTreeMap<String, ParamValue>,
    /// One of the plugin's presets, applied before `config`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "plain_some")]
    pub preset: Option<String>,
    /// What the node outputs while the plugin is bypassed.
    #[serde(default)]
    pub on_fault: OnFault,
    /// Where the plugin's code runs.
    #[serde(default)]
    pub isolation: Isolation,
    /// The file's SHA-256, pinned: a file that does not match is refused before any of its code runs.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::nodes::plugin::plain_pin")]
    pub sha256: Option<crate::nodes::plugin::Sha256Pin>,
    #[serde(skip)]
    bound: Option<Arc<NativeLibrary>>,
}

impl NativeParams {
    /// A node for the plugin library at `path` (relative to the graph's folder), with `config`.
    pub fn new(path: impl Into<String>, config: BTreeMap<String, ParamValue>) -> Self {
        Self {
            path: path.into(),
            config,
            preset: None,
            on_fault: OnFault::Dry,
            isolation: Isolation::InProcess,
            sha256: None,
            bound: None,
        }
    }

    /// The library, loaded once its file matches the node's pin (if it has one). Errors name the field.
    fn library(&self, base_dir: &Path) -> Result<Arc<NativeLibrary>, ParamError> {
        if let Some(l) = &self.bound {
            return Ok(l.clone());
        }
        let path = base_dir.join(&self.path);
        crate::nodes::plugin::check_pin(self.sha256.as_ref(), &path).map_err(|e| ParamError::new("sha256", e))?;
        load(&path).map_err(|e| ParamError::new("path", e))
    }
}

/// Every parameter's `(id, value)`: defaults, then the preset's values, then `config`; all checked.
///
/// # Errors
/// A [`ParamError`] naming the config key or the preset.
pub fn resolve(
    info: &NativeInfo,
    config: &BTreeMap<String, ParamValue>,
    preset: Option<&str>,
) -> Result<Vec<(u32, f64)>, ParamError> {
    let mut values: Vec<(u32, f64)> = info.params.iter().map(|p| (p.id, p.default)).collect();
    if let Some(name) = preset {
        let (_, set) = info.presets.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let known: Vec<&str> = info.presets.iter().map(|(n, _)| n.as_str()).collect();
            ParamError::new(
                "preset",
                format!(
                    "{} has no preset \"{name}\" (it has: {})",
                    info.id,
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            )
        })?;
        for (id, v) in set {
            if let Some(slot) = values.iter_mut().find(|(i, _)| i == id) {
                slot.1 = *v;
            }
        }
    }
    for (key, value) in config {
        let Some(i) = info.params.iter().position(|p| &p.key == key) else {
            let known: Vec<&str> = info.params.iter().map(|p| p.key.as_str()).collect();
            return Err(ParamError::new(
                format!("config.{key}"),
                format!("is not a parameter of {} (it has: {})", info.id, known.join(", ")),
            ));
        };
        let v = param_info(&info.params[i])
            .resolve(value)
            .map_err(|e| ParamError::new(format!("config.{key}"), e.message))?;
        check_kind(&info.params[i], v).map_err(|m| ParamError::new(format!("config.{key}"), m))?;
        values[i].1 = v;
    }
    Ok(values)
}

fn check_kind(p: &NativeParam, v: f64) -> Result<(), String> {
    if p.flags & abi::PARAM_TOGGLE != 0 && v != 0.0 && v != 1.0 {
        return Err(format!("is a toggle: 0 or 1 (got {v})"));
    }
    if p.flags & abi::PARAM_INTEGER != 0 && v.fract() != 0.0 {
        return Err(format!("must be a whole number (got {v})"));
    }
    Ok(())
}

pub(crate) fn param_info(p: &NativeParam) -> ParamInfo {
    let smoothing = if p.stepped() { Smoothing::Step } else { Smoothing::Ramp };
    ParamInfo::number(p.key.clone(), &p.unit, p.min, p.max, smoothing)
}

impl NodeSpec for NativeParams {
    fn kind(&self) -> &'static str {
        "Native"
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        // Through `library`, which checks the pin before anything is loaded.
        self.bound = None;
        self.bound = self.library(ctx.base_dir).ok();
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let lib = self.library(ctx.base_dir)?;
        resolve(&lib.info, &self.config, self.preset.as_deref())?;
        if self.isolation == Isolation::Process {
            isolate::check_host().map_err(|e| ParamError::new("isolation", e.to_string()))?;
        }
        Ok(())
    }

    fn ports(&self, _format: &crate::node::GraphFormat) -> crate::node::Ports {
        let Some(lib) = self.bound.as_ref().filter(|l| !l.info.outputs.is_empty()) else {
            return crate::node::Ports::effect();
        };
        bus_ports(&lib.info)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let lib = self.library(ctx.base_dir).map_err(|e| NodeError(e.message))?;
        let params = resolve(&lib.info, &self.config, self.preset.as_deref()).map_err(|e| NodeError(e.to_string()))?;
        Ok(Box::new(processor(lib, params, self.on_fault, self.isolation)))
    }

    fn native_code(&self, base_dir: &Path) -> Option<std::path::PathBuf> {
        Some(base_dir.join(&self.path))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        match self.library(ctx.base_dir) {
            Ok(l) => l.info.params.iter().map(param_info).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn param(&self, index: usize) -> f64 {
        let Some(lib) = &self.bound else { return 0.0 };
        resolve(&lib.info, &self.config, self.preset.as_deref())
            .ok()
            .and_then(|v| v.get(index).map(|x| x.1))
            .unwrap_or(0.0)
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let Some(lib) = &self.bound else { return };
        if let Some(p) = lib.info.params.get(index) {
            self.config.insert(p.key.clone(), ParamValue::Number(value));
        }
    }

    fn shape(&self) -> String {
        format!("{} {:?} {:?}", self.path, self.on_fault, self.isolation)
    }

    fn source(&self) -> String {
        self.bound.as_ref().map_or_else(|| self.path.clone(), |l| format!("{}@{}", l.info.id, l.info.version))
    }

    fn status_names(&self) -> Vec<String> {
        self.bound.as_ref().map(|l| l.info.status_names.clone()).unwrap_or_default()
    }

    fn build_replacement(
        &self,
        ctx: &BuildContext<'_>,
        config: &ProcessConfig,
    ) -> Option<Result<Box<dyn std::any::Any + Send>, NodeError>> {
        replacement(
            || self.source(),
            || {
                let lib = self.library(ctx.base_dir).map_err(|e| e.message)?;
                let params = resolve(&lib.info, &self.config, self.preset.as_deref()).map_err(|e| e.to_string())?;
                NativeLive::new(&lib, self.isolation, config, &params)
            },
        )
    }

    spec_boilerplate!();
}

/// The audio side of a `Native` node.
pub type NativeProcessor = PluginProcessor<NativeLive>;

fn processor(
    lib: Arc<NativeLibrary>,
    params: Vec<(u32, f64)>,
    on_fault: OnFault,
    isolation: Isolation,
) -> NativeProcessor {
    let keys = lib.info.params.iter().map(|p| p.key.clone()).collect();
    let numeric = lib.info.params.iter().map(|p| !p.stepped()).collect();
    let name: Arc<str> = lib.info.id.as_str().into();
    let make =
        Box::new(move |config: &ProcessConfig, params: &[(u32, f64)]| NativeLive::new(&lib, isolation, config, params));
    PluginProcessor::new(name, keys, params, numeric, on_fault, NATIVE_BUDGET, make)
}

/// A plugin instance in this process (`I`) or in a child process: what both native node kinds run.
pub enum Tiered<I> {
    /// In this process.
    InProcess(I),
    /// In a child process.
    Isolated(isolate::Isolated),
}

/// A native instance, in this process or in a child.
pub type NativeLive = Tiered<NativeInstance>;

impl NativeLive {
    fn new(
        lib: &Arc<NativeLibrary>,
        isolation: Isolation,
        config: &ProcessConfig,
        params: &[(u32, f64)],
    ) -> Result<Self, String> {
        Ok(match isolation {
            Isolation::InProcess => Tiered::InProcess(NativeInstance::new(lib.clone(), config, params)?),
            Isolation::Process => Tiered::Isolated(isolate::Isolated::spawn(
                isolate::Target::Native(lib.path.clone()),
                config,
                params,
                lib.info.status_names.len(),
            )?),
        })
    }
}

impl<I: Instance> Tiered<I> {
    fn inner(&mut self) -> &mut dyn Instance {
        match self {
            Tiered::InProcess(i) => i,
            Tiered::Isolated(i) => i,
        }
    }
}

impl<I: Instance> Instance for Tiered<I> {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        self.inner().set_param(id, value)
    }
    fn process(&mut self, audio: &mut AudioOut<'_>, mark: &CpuMark) -> Result<(), Fault> {
        self.inner().process(audio, mark)
    }
    fn own_time_ns(&mut self, mark: &CpuMark) -> u64 {
        self.inner().own_time_ns(mark)
    }
    fn take_counts(&mut self) -> Counts {
        self.inner().take_counts()
    }
    fn start(&mut self) -> Result<(), Fault> {
        self.inner().start()
    }
    fn stop(&mut self) -> Result<(), Fault> {
        self.inner().stop()
    }
    fn cleanup(&mut self) {
        self.inner().cleanup();
    }
    fn drain(&mut self, ctx: &mut dyn PollContext) {
        self.inner().drain(ctx);
    }
    fn check(&mut self) -> Result<(), Fault> {
        self.inner().check()
    }
    fn latency(&self) -> usize {
        match self {
            Tiered::InProcess(i) => i.latency(),
            Tiered::Isolated(i) => i.latency(),
        }
    }
}

/// Every control input's `(id, value)` of a plugin with `params` (control inputs, in port order): the
/// defaults, then `controls`, each found by `find` (its index in `params`), checked against its range and
/// kind. `known` lists the controls for the error when a name is not one.
///
/// # Errors
/// A [`ParamError`] naming the control.
pub(crate) fn resolve_controls(
    plugin: &str,
    params: &[NativeParam],
    controls: &BTreeMap<String, ParamValue>,
    find: impl Fn(&str) -> Option<usize>,
    known: impl Fn() -> String,
) -> Result<Vec<(u32, f64)>, ParamError> {
    let mut values: Vec<(u32, f64)> = params.iter().map(|p| (p.id, p.default)).collect();
    for (name, value) in controls {
        let at = |m: String| ParamError::new(format!("controls.{name}"), m);
        let i = find(name).ok_or_else(|| at(format!("is not a control input of {plugin} (it has: {})", known())))?;
        let p = &params[i];
        let v = param_info(p).resolve(value).map_err(|e| at(e.message))?;
        check_kind(p, v).map_err(at)?;
        values[i].1 = v;
    }
    Ok(values)
}

/// Sets control port `port` to `value` in every instance's control values (a LADSPA or LV2 node runs one
/// instance per channel, each with its own).
pub(crate) fn set_control(instances: &mut [Box<[f32]>], port: u32, value: f64) {
    for c in instances {
        if let Some(v) = c.get_mut(port as usize) {
            *v = value as f32;
        }
    }
}

/// Copies a block's first channels into planar buffers of `stride` frames a channel (a plugin's connected
/// input ports).
pub(crate) fn copy_in(audio: &AudioOut<'_>, buf: &mut [f32], stride: usize, channels: usize) {
    let n = audio.frames();
    for c in 0..channels.min(audio.channels()) {
        buf[c * stride..c * stride + n].copy_from_slice(audio.channel(c));
    }
}

/// Copies planar buffers of `stride` frames a channel (a plugin's connected output ports) into a block's
/// first channels, non-finite samples replaced with silence; returns how many were.
pub(crate) fn copy_out(audio: &mut AudioOut<'_>, buf: &[f32], stride: usize, channels: usize) -> u64 {
    let n = audio.frames();
    let mut replaced = 0;
    for c in 0..channels.min(audio.channels()) {
        let out = audio.channel_mut(c);
        out.copy_from_slice(&buf[c * stride..c * stride + n]);
        replaced += sanitize(out);
    }
    replaced
}

/// A LADSPA or LV2 plugin's control outputs as the node shows them: the first
/// [`STATUS_VALUES`](crate::node::STATUS_VALUES) as its status numbers, and one as its latency.
pub(crate) struct ControlOutputs {
    ports: Vec<usize>,
    latency: Option<usize>,
    status: Vec<f64>,
}

impl ControlOutputs {
    /// The control output ports (by index, in order) and the latency port, if any.
    pub(crate) fn new(ports: impl Iterator<Item = usize>, latency: Option<usize>) -> Self {
        let ports: Vec<usize> = ports.take(crate::node::STATUS_VALUES).collect();
        Self { status: vec![0.0; ports.len()], ports, latency }
    }

    pub(crate) fn has_latency(&self) -> bool {
        self.latency.is_some()
    }

    /// Hands the outputs' current `values` (by port index) to the control side as status numbers.
    pub(crate) fn publish(&mut self, values: &[f32], ctx: &mut dyn crate::node::PollContext) {
        if !self.ports.is_empty() {
            for (v, &p) in self.status.iter_mut().zip(&self.ports) {
                *v = f64::from(values[p]);
            }
            ctx.status_values(&self.status);
        }
    }

    /// The latency the latency port holds in `values` (by port index), in frames.
    pub(crate) fn latency(&self, values: &[f32]) -> usize {
        self.latency.map_or(0, |p| values[p].max(0.0) as usize)
    }
}

/// Replaces NaN and infinity with 0 in place; returns how many.
pub(crate) fn sanitize(x: &mut [f32]) -> u64 {
    // A read-only count the compiler vectorizes; the repair pass runs only when it finds something.
    if x.iter().fold(0u32, |n, v| n + u32::from(!v.is_finite())) == 0 {
        return 0;
    }
    let mut bad = 0u64;
    for v in x {
        if !v.is_finite() {
            *v = 0.0;
            bad += 1;
        }
    }
    bad
}

/// The ports of a plugin that declares audio buses.
fn bus_ports(info: &library::NativeInfo) -> crate::node::Ports {
    use crate::node::{Port, Width};
    let port = |b: &library::NativeBus| Port::new(b.name.clone(), Width::of_bus(b.channels, b.optional));
    crate::node::Ports {
        inputs: info.inputs.iter().map(port).collect(),
        outputs: info.outputs.iter().map(port).collect(),
    }
}

/// A native plugin instance in this process.
pub struct NativeInstance {
    lib: Arc<NativeLibrary>,
    ptr: *mut c_void,
    channels: usize,
    max_block: usize,
    /// The block's input, kept so a failed call leaves the dry input in place.
    scratch: Vec<f32>,
    status: Vec<f64>,
    blocks: u64,
    /// Non-finite output samples replaced since the last [`Instance::take_counts`].
    replaced: u64,
    latency: usize,
    /// For a plugin that declares buses: its inputs' and outputs' channels, its output buffer and the
    /// pointer tables `process` gets (set once).
    buses: Option<BusIo>,
}

/// The buffers of a plugin with buses: it reads the block's first `inputs` channels (copied to the
/// instance's scratch) and writes `outputs` channels here, copied to the block after the call.
struct BusIo {
    inputs: usize,
    outputs: usize,
    out: Vec<f32>,
    in_ptrs: Vec<*const f32>,
    out_ptrs: Vec<*mut f32>,
}

// SAFETY: the instance pointer is only used by one thread at a time (the engine moves the processor
// between threads, never shares it), which is what the ABI asks for.
unsafe impl Send for NativeInstance {}

impl NativeInstance {
    /// Creates and initializes an instance (control side).
    ///
    /// # Errors
    /// A message if `create` returns null or `initialize` refuses the configuration.
    pub fn new(lib: Arc<NativeLibrary>, config: &ProcessConfig, params: &[(u32, f64)]) -> Result<Self, String> {
        let f = lib.fns;
        // SAFETY: the ABI's functions, checked non-null at load, called as the header says.
        let ptr = unsafe { (f.create)() };
        if ptr.is_null() {
            return Err("create returned no instance".into());
        }
        let ids: Vec<u32> = params.iter().map(|p| p.0).collect();
        let values: Vec<f64> = params.iter().map(|p| p.1).collect();
        let has_buses = !lib.info.outputs.is_empty();
        let (ins, outs): (Vec<u32>, Vec<u32>) = if has_buses {
            let w = |v: Vec<usize>| v.into_iter().map(|w| w as u32).collect();
            (w(config.layout.inputs()), w(config.layout.outputs()))
        } else {
            (vec![config.channels as u32], vec![config.channels as u32])
        };
        let c = abi::Config {
            struct_size: std::mem::size_of::<abi::Config>() as u32,
            sample_rate: config.sample_rate,
            channels: config.channels as u32,
            max_block: config.max_block as u32,
            param_count: params.len() as u32,
            param_ids: ids.as_ptr(),
            param_values: values.as_ptr(),
            input_count: ins.len() as u32,
            input_channels: ins.as_ptr(),
            output_count: outs.len() as u32,
            output_channels: outs.as_ptr(),
        };
        let buses = has_buses.then(|| {
            let (inputs, outputs) = (config.layout.input_channels(), config.layout.output_channels());
            BusIo {
                inputs,
                outputs,
                out: vec![0.0; outputs * config.max_block],
                in_ptrs: vec![std::ptr::null(); inputs],
                out_ptrs: vec![std::ptr::null_mut(); outputs],
            }
        });
        let mut inst = Self {
            status: vec![0.0; lib.info.status_names.len()],
            lib,
            ptr,
            channels: config.channels,
            max_block: config.max_block,
            scratch: vec![0.0; config.channels.max(config.layout.input_channels()) * config.max_block],
            blocks: 0,
            replaced: 0,
            latency: 0,
            buses,
        };
        // SAFETY: as above; `c` and the arrays it points to outlive the call.
        let code = unsafe { (f.initialize)(ptr, &c) };
        if code != 0 {
            return Err(format!(
                "initialize refused {} Hz, {} channels, {} frames (error {code})",
                config.sample_rate, config.channels, config.max_block
            ));
        }
        // SAFETY: as above.
        let code = unsafe { (f.start)(ptr) };
        if code != 0 {
            return Err(format!("start failed (error {code})"));
        }
        // SAFETY: as above.
        inst.latency = unsafe { (f.latency)(ptr) } as usize;
        Ok(inst)
    }
}

fn code_to(code: i32) -> Result<(), Fault> {
    match code {
        0 => Ok(()),
        fxgraph_plugin::ERR_PANIC => Err(Fault::Panicked),
        c => Err(Fault::ErrorReturn(c)),
    }
}

impl Instance for NativeInstance {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        // SAFETY: the ABI's function, called as the header says.
        match unsafe { (self.lib.fns.set_param)(self.ptr, id, value) } {
            fxgraph_plugin::ERR_PANIC => Err(Fault::Panicked),
            code => Ok(code),
        }
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, _mark: &CpuMark) -> Result<(), Fault> {
        if let Some(io) = &mut self.buses {
            let (n, mb) = (audio.frames(), self.max_block);
            let ins = io.inputs.min(audio.channels());
            for c in 0..ins {
                let keep = &mut self.scratch[c * mb..c * mb + n];
                keep.copy_from_slice(audio.channel(c));
                io.in_ptrs[c] = keep.as_ptr();
            }
            for (c, p) in io.out_ptrs.iter_mut().enumerate() {
                *p = io.out[c * mb..].as_mut_ptr();
            }
            // SAFETY: `ins` input buffers (the scratch) and `outputs` output buffers (our own, distinct) of
            // `n` (at most max_block) frames, as the ABI says for a plugin with buses.
            let code = unsafe {
                (self.lib.fns.process)(self.ptr, io.in_ptrs.as_ptr(), io.out_ptrs.as_ptr(), ins as u32, n as u32)
            };
            // On a fault the block still holds the input: the caller bypasses from there.
            code_to(code)?;
            for c in 0..io.outputs.min(audio.channels()) {
                let y = audio.channel_mut(c);
                y.copy_from_slice(&io.out[c * mb..c * mb + n]);
                self.replaced += sanitize(y);
            }
            return Ok(());
        }
        let (n, ch) = (audio.frames(), self.channels.min(audio.channels()));
        let mut inputs = [std::ptr::null::<f32>(); fxgraph_plugin::MAX_CHANNELS];
        let mut outputs = [std::ptr::null_mut::<f32>(); fxgraph_plugin::MAX_CHANNELS];
        for c in 0..ch {
            let keep = &mut self.scratch[c * self.max_block..c * self.max_block + n];
            keep.copy_from_slice(audio.channel(c));
            outputs[c] = audio.channel_mut(c).as_mut_ptr();
            // The dry copy is kept for a fault either way; a plugin that processes in place works on the
            // node's buffer directly, any other reads the copy.
            inputs[c] = if self.lib.info.in_place { outputs[c].cast_const() } else { keep.as_ptr() };
        }
        // SAFETY: `ch` input and output buffers of `n` (at most max_block) frames, the same buffers only for
        // a plugin that declares it processes in place, as the ABI says.
        let code = unsafe { (self.lib.fns.process)(self.ptr, inputs.as_ptr(), outputs.as_ptr(), ch as u32, n as u32) };
        if let Err(f) = code_to(code) {
            for c in 0..ch {
                audio.channel_mut(c).copy_from_slice(&self.scratch[c * self.max_block..c * self.max_block + n]);
            }
            return Err(f);
        }
        for c in 0..ch {
            self.replaced += sanitize(audio.channel_mut(c));
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), Fault> {
        // SAFETY: the ABI's function.
        code_to(unsafe { (self.lib.fns.reset)(self.ptr) })
    }

    fn stop(&mut self) -> Result<(), Fault> {
        // SAFETY: the ABI's function.
        code_to(unsafe { (self.lib.fns.stop)(self.ptr) })
    }

    fn cleanup(&mut self) {}

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        self.blocks += 1;
        if !self.status.is_empty() && self.blocks % STATUS_EVERY == 1 {
            // SAFETY: the ABI's function, with room for the declared count.
            let code = unsafe { (self.lib.fns.status)(self.ptr, self.status.as_mut_ptr(), self.status.len() as u32) };
            if code == 0 {
                ctx.status_values(&self.status);
            }
        }
    }

    fn take_counts(&mut self) -> Counts {
        Counts { replaced_samples: std::mem::take(&mut self.replaced), ..Counts::default() }
    }

    fn check(&mut self) -> Result<(), Fault> {
        if !self.blocks.is_multiple_of(HEALTH_EVERY) {
            return Ok(());
        }
        // SAFETY: the ABI's function.
        match unsafe { (self.lib.fns.health_check)(self.ptr) } {
            0 => Ok(()),
            fxgraph_plugin::ERR_PANIC => Err(Fault::Panicked),
            c => Err(Fault::Unhealthy(c)),
        }
    }

    fn latency(&self) -> usize {
        self.latency
    }
}

impl Drop for NativeInstance {
    fn drop(&mut self) {
        // SAFETY: the pointer `create` returned, destroyed once; the library stays loaded.
        unsafe { (self.lib.fns.destroy)(self.ptr) };
    }
}

/// What `fxgraph plugin` prints about a native library.
fn describe_native(path: &Path) -> Result<String, String> {
    let lib = load(path)?;
    let i = &lib.info;
    let mut s = format!(
        "{}: {} {} ({}) by {}\nnative plugin ABI {}.{} (host implements {}.{}){}\nparameters:\n",
        path.display(),
        i.name,
        i.version,
        i.id,
        i.vendor,
        abi::ABI_MAJOR,
        i.abi_minor,
        abi::ABI_MAJOR,
        abi::ABI_MINOR,
        if i.in_place { ", processes in place" } else { "" }
    );
    if !i.outputs.is_empty() {
        let bus = |b: &library::NativeBus| {
            let width = if b.optional {
                "optional".to_string()
            } else if b.channels == 0 {
                "graph's channels".to_string()
            } else {
                format!("{} ch", b.channels)
            };
            format!("{} ({width})", b.name)
        };
        s.push_str(&format!(
            "audio buses: in {}; out {}\n",
            if i.inputs.is_empty() {
                "none".to_string()
            } else {
                i.inputs.iter().map(bus).collect::<Vec<_>>().join(", ")
            },
            i.outputs.iter().map(bus).collect::<Vec<_>>().join(", ")
        ));
    }
    for p in &i.params {
        let kind = if p.flags & abi::PARAM_TOGGLE != 0 {
            " toggle"
        } else if p.flags & abi::PARAM_INTEGER != 0 {
            " integer"
        } else {
            ""
        };
        s.push_str(&format!(
            "  {:>2}  {:<16} {:<24} {} to {}{}{kind}, default {}\n",
            p.id,
            p.key,
            p.name,
            p.min,
            p.max,
            if p.unit.is_empty() { String::new() } else { format!(" {}", p.unit) },
            p.default
        ));
    }
    let names: Vec<&str> = i.presets.iter().map(|(n, _)| n.as_str()).collect();
    s.push_str(&format!("presets: {}\n", if names.is_empty() { "none".into() } else { names.join(", ") }));
    s.push_str(&format!(
        "status: {}\n",
        if i.status_names.is_empty() { "none".into() } else { i.status_names.join(", ") }
    ));
    // Set an instance up with the defaults, as a graph would: a stereo graph, optional inputs unconnected.
    let mut config = ProcessConfig::effect(48000, 2, 512);
    if !i.outputs.is_empty() {
        config.layout = bus_ports(i).unconnected(2);
        config.channels = config.layout.block_channels();
    }
    let params = resolve(i, &BTreeMap::new(), None).map_err(|e| e.to_string())?;
    drop(NativeInstance::new(lib.clone(), &config, &params)?);
    s.push_str("setup: ok (initialized at 48000 Hz, 2 channels, 512 frames)\n");
    Ok(s)
}

/// What a shared library declares, as `fxgraph plugin` prints it: a native plugin's descriptor (id,
/// version, ABI version, parameters, presets, status names; an instance is set up with its defaults), or a
/// LADSPA library's plugins and ports. A bare file name that does not exist here is looked up on
/// `LADSPA_PATH`, as in graphs.
///
/// # Errors
/// [`Error::Plugin`](crate::Error::Plugin) for a library that is neither kind, or that its kind refuses (naming why).
pub fn describe(path: &Path) -> crate::Result<String> {
    use crate::Error;
    let found;
    let path = if path.exists() {
        path
    } else {
        found = ladspa::search(&path.to_string_lossy(), Path::new(".")).map_err(Error::Plugin)?;
        found.as_path()
    };
    match load(path) {
        Ok(_) => describe_native(path).map_err(Error::Plugin),
        Err(native_err) => match ladspa::describe(path) {
            Ok(text) => Ok(text),
            Err(ladspa_err) if native_err.contains("exports no") && ladspa_err.contains("exports no") => {
                Err(Error::Plugin(format!(
                    "{}: neither an fxgraph native plugin nor a LADSPA library (it exports neither \
                     `fxgraph_plugin_v1` nor `ladspa_descriptor`)",
                    path.display()
                )))
            }
            Err(_) => Err(Error::Plugin(native_err)),
        },
    }
}
