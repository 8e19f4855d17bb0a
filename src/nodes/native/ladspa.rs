//! LADSPA plugins: `Ladspa(path: "amp.so", label: "amp_mono", controls: {"Gain": 6.0})`.
//!
//! - `path` is a file, relative to the graph, or a bare file name found on `LADSPA_PATH` (by default
//!   `/usr/lib/ladspa:/usr/local/lib/ladspa`); `label` picks the plugin in the library.
//! - Control input ports are the node's parameters. In `controls` a port is named as the plugin names it
//!   ("Gain (dB)") or by its key, the name in lower case with every run of other characters turned into
//!   one `_` ("gain_db"); the key is what `set NODE.PARAM` and presets use. Port hints are applied: bounds
//!   (scaled by the sample rate where the hint says so), the default, integer and toggled values; a value
//!   outside them is an error naming the port. Control changes are smoothed like every plugin parameter.
//! - Audio: a plugin with one audio input and one output runs as one instance per graph channel; one with
//!   as many inputs and outputs as the graph has channels runs as one instance; anything else is refused.
//! - Control output ports are read after each block and shown as the node's status numbers (the first
//!   eight); one named "latency" is the node's latency.
//! - A plugin that does not declare itself hard-real-time capable is reported when loaded.
#![allow(unsafe_code)] // LADSPA is a C ABI; see the SAFETY notes.

use super::library::{Loaded, NativeParam, load_once};
use super::{Isolation, Tiered, sanitize};
use crate::clock::CpuMark;
use crate::node::AudioOut;
use crate::node::{
    BuildContext, MessageKind, NodeError, NodeSpec, ParamError, ParamInfo, ParamValue, PollContext, ProcessConfig,
    Processor, Smoothing,
};
use crate::nodes::plugin::{Counts, Fault, Instance, OnFault, PluginProcessor, replacement, text};
use crate::nodes::spec_boilerplate;
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_ulong, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub const PROPERTY_REALTIME: c_int = 0x1;
pub const PROPERTY_INPLACE_BROKEN: c_int = 0x2;
pub const PROPERTY_HARD_RT_CAPABLE: c_int = 0x4;
pub const PORT_INPUT: c_int = 0x1;
pub const PORT_OUTPUT: c_int = 0x2;
pub const PORT_CONTROL: c_int = 0x4;
pub const PORT_AUDIO: c_int = 0x8;
pub const HINT_BOUNDED_BELOW: c_int = 0x1;
pub const HINT_BOUNDED_ABOVE: c_int = 0x2;
pub const HINT_TOGGLED: c_int = 0x4;
pub const HINT_SAMPLE_RATE: c_int = 0x8;
pub const HINT_LOGARITHMIC: c_int = 0x10;
pub const HINT_INTEGER: c_int = 0x20;
pub const HINT_DEFAULT_MASK: c_int = 0x3C0;

/// `LADSPA_PortRangeHint`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RangeHint {
    pub hint: c_int,
    pub lower: f32,
    pub upper: f32,
}

/// `LADSPA_Descriptor`.
#[repr(C)]
pub struct Descriptor {
    pub unique_id: c_ulong,
    pub label: *const c_char,
    pub properties: c_int,
    pub name: *const c_char,
    pub maker: *const c_char,
    pub copyright: *const c_char,
    pub port_count: c_ulong,
    pub port_descriptors: *const c_int,
    pub port_names: *const *const c_char,
    pub port_range_hints: *const RangeHint,
    pub implementation_data: *mut c_void,
    pub instantiate: Option<unsafe extern "C" fn(*const Descriptor, c_ulong) -> *mut c_void>,
    pub connect_port: Option<unsafe extern "C" fn(*mut c_void, c_ulong, *mut f32)>,
    pub activate: Option<unsafe extern "C" fn(*mut c_void)>,
    pub run: Option<unsafe extern "C" fn(*mut c_void, c_ulong)>,
    pub run_adding: Option<unsafe extern "C" fn(*mut c_void, c_ulong)>,
    pub set_run_adding_gain: Option<unsafe extern "C" fn(*mut c_void, f32)>,
    pub deactivate: Option<unsafe extern "C" fn(*mut c_void)>,
    pub cleanup: Option<unsafe extern "C" fn(*mut c_void)>,
}

type DescriptorFn = unsafe extern "C" fn(c_ulong) -> *const Descriptor;

/// What a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    AudioIn,
    AudioOut,
    ControlIn,
    ControlOut,
}

/// One port, with its hints.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub index: usize,
    pub kind: PortKind,
    pub name: String,
    /// Lower case, runs of other characters as one `_`: what `set` and presets use.
    pub key: String,
    pub hint: c_int,
    pub lower: f32,
    pub upper: f32,
}

impl Port {
    /// The range at `sample_rate` (bounds scaled where the hint says so; unbounded sides at ±1e9).
    pub fn range(&self, sample_rate: u32) -> (f64, f64) {
        let scale = if self.hint & HINT_SAMPLE_RATE != 0 { f64::from(sample_rate) } else { 1.0 };
        let lo = if self.hint & HINT_BOUNDED_BELOW != 0 { f64::from(self.lower) * scale } else { -1e9 };
        let hi = if self.hint & HINT_BOUNDED_ABOVE != 0 { f64::from(self.upper) * scale } else { 1e9 };
        if self.hint & HINT_TOGGLED != 0 { (0.0, 1.0) } else { (lo, hi.max(lo)) }
    }

    /// The default the hints give (LADSPA's rules), else the lower bound, else 0.
    pub fn default(&self, sample_rate: u32) -> f64 {
        let (lo, hi) = self.range(sample_rate);
        let log = self.hint & HINT_LOGARITHMIC != 0 && lo > 0.0 && hi > 0.0;
        let mix = |a: f64| if log { (lo.ln() * (1.0 - a) + hi.ln() * a).exp() } else { lo * (1.0 - a) + hi * a };
        let v = match self.hint & HINT_DEFAULT_MASK {
            0x40 => lo,
            0x80 => mix(0.25),
            0xC0 => mix(0.5),
            0x100 => mix(0.75),
            0x140 => hi,
            0x200 => 0.0,
            0x240 => 1.0,
            0x280 => 100.0,
            0x2C0 => 440.0,
            _ if self.hint & HINT_BOUNDED_BELOW != 0 => lo,
            _ => 0.0f64.clamp(lo, hi),
        };
        if self.hint & HINT_INTEGER != 0 { v.round() } else { v }
    }

    fn stepped(&self) -> bool {
        self.hint & (HINT_TOGGLED | HINT_INTEGER) != 0
    }
}

/// A port name as a parameter key.
pub fn key_of(name: &str) -> String {
    let mut key = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.ends_with('_') && !key.is_empty() {
            key.push('_');
        }
    }
    key.trim_end_matches('_').to_string()
}

/// One plugin of a library, copied out of its descriptor.
#[derive(Debug, Clone)]
pub struct LadspaInfo {
    pub index: usize,
    pub unique_id: u64,
    pub label: String,
    pub name: String,
    pub maker: String,
    pub properties: c_int,
    pub ports: Vec<Port>,
}

impl LadspaInfo {
    pub fn ports(&self, kind: PortKind) -> impl Iterator<Item = &Port> {
        self.ports.iter().filter(move |p| p.kind == kind)
    }

    pub fn hard_rt(&self) -> bool {
        self.properties & PROPERTY_HARD_RT_CAPABLE != 0
    }

    /// The node's parameters (control inputs) as [`NativeParam`]s at `sample_rate`.
    pub fn params(&self, sample_rate: u32) -> Vec<NativeParam> {
        self.ports(PortKind::ControlIn)
            .map(|p| {
                let (min, max) = p.range(sample_rate);
                let flags = if p.hint & HINT_TOGGLED != 0 {
                    fxgraph_plugin::abi::PARAM_TOGGLE
                } else if p.hint & HINT_INTEGER != 0 {
                    fxgraph_plugin::abi::PARAM_INTEGER
                } else {
                    0
                };
                NativeParam {
                    id: p.index as u32,
                    flags,
                    key: p.key.clone(),
                    name: p.name.clone(),
                    unit: String::new(),
                    min,
                    max,
                    default: p.default(sample_rate).clamp(min, max),
                }
            })
            .collect()
    }

    /// How the graph's channels map: `Ok(true)` one mono instance per channel, `Ok(false)` one instance.
    pub fn per_channel(&self, channels: usize) -> Result<bool, String> {
        let (i, o) = (self.ports(PortKind::AudioIn).count(), self.ports(PortKind::AudioOut).count());
        if i == 1 && o == 1 {
            Ok(channels > 1)
        } else if i == channels && o == channels {
            Ok(false)
        } else {
            Err(format!(
                "{} has {i} audio input(s) and {o} output(s); fxgraph runs plugins with 1 in and 1 out (one per \
                 channel) or as many ins and outs as the graph's {channels} channels",
                self.label
            ))
        }
    }
}

/// A loaded LADSPA library. Kept loaded for the life of the process.
pub struct LadspaLibrary {
    pub path: PathBuf,
    pub plugins: Vec<LadspaInfo>,
    descriptors: Vec<usize>,
    _library: libloading::Library,
}

impl std::fmt::Debug for LadspaLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LadspaLibrary").field("path", &self.path).field("plugins", &self.plugins.len()).finish()
    }
}

// SAFETY: the descriptors are immutable data of a library that stays loaded.
unsafe impl Send for LadspaLibrary {}
// SAFETY: as above.
unsafe impl Sync for LadspaLibrary {}

impl LadspaLibrary {
    fn descriptor(&self, index: usize) -> *const Descriptor {
        self.descriptors[index] as *const Descriptor
    }

    /// The plugin with `label`.
    ///
    /// # Errors
    /// A message listing the labels the library has.
    pub fn find(&self, label: &str) -> Result<&LadspaInfo, String> {
        self.plugins.iter().find(|p| p.label == label).ok_or_else(|| {
            let labels: Vec<&str> = self.plugins.iter().map(|p| p.label.as_str()).collect();
            format!("{} has no plugin labelled \"{label}\" (it has: {})", self.path.display(), labels.join(", "))
        })
    }
}

/// Where a bare file name is looked for: `LADSPA_PATH`, by default `/usr/lib/ladspa:/usr/local/lib/ladspa`.
pub fn search(name: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let p = Path::new(name);
    if p.components().count() > 1 || p.is_absolute() {
        return Ok(base_dir.join(p));
    }
    let dirs = std::env::var("LADSPA_PATH").unwrap_or_else(|_| "/usr/lib/ladspa:/usr/local/lib/ladspa".into());
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let local = base_dir.join(name);
    if local.is_file() {
        return Ok(local);
    }
    Err(format!("no LADSPA library {name:?} in {dirs} (LADSPA_PATH) or beside the graph"))
}

/// Loads a LADSPA library (once per process) and reads every plugin's descriptor.
///
/// # Errors
/// A message naming the file: not a library, no `ladspa_descriptor`, a malformed descriptor.
pub fn load(path: &Path) -> Result<Arc<LadspaLibrary>, String> {
    static LOADED: Loaded<LadspaLibrary> = OnceLock::new();
    load_once(&LOADED, path, open)
}

/// # Safety
/// `p` is null or a NUL-terminated string that lives as long as the library.
unsafe fn string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

fn open(path: &Path) -> Result<LadspaLibrary, String> {
    // SAFETY: loading runs the library's initializers: the trust a native plugin asks for.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load the library: {e}"))?;
    // SAFETY: the symbol's type is LADSPA's.
    let entry: DescriptorFn = unsafe {
        *library
            .get::<DescriptorFn>(b"ladspa_descriptor")
            .map_err(|_| "exports no `ladspa_descriptor`: not a LADSPA library".to_string())?
    };
    let mut plugins = Vec::new();
    let mut descriptors = Vec::new();
    for index in 0..4096 {
        // SAFETY: LADSPA's entry point: a descriptor or null past the last.
        let d = unsafe { entry(index as c_ulong) };
        if d.is_null() {
            break;
        }
        // SAFETY: a LADSPA descriptor, valid while the library is loaded.
        let desc = unsafe { &*d };
        // SAFETY (the reads below): arrays of `port_count` entries, strings of the library.
        let info = unsafe {
            let label = string(desc.label);
            if desc.instantiate.is_none() || desc.connect_port.is_none() || desc.run.is_none() || desc.cleanup.is_none()
            {
                return Err(format!("plugin {index} (\"{label}\") has a null required function"));
            }
            let count = desc.port_count as usize;
            if count > 4096 || (count > 0 && (desc.port_descriptors.is_null() || desc.port_range_hints.is_null())) {
                return Err(format!("plugin \"{label}\" has malformed ports"));
            }
            let mut ports = Vec::with_capacity(count);
            for i in 0..count {
                let pd = *desc.port_descriptors.add(i);
                let kind = match (pd & PORT_AUDIO != 0, pd & PORT_INPUT != 0, pd & PORT_OUTPUT != 0) {
                    (true, true, false) => PortKind::AudioIn,
                    (true, false, true) => PortKind::AudioOut,
                    (false, true, false) if pd & PORT_CONTROL != 0 => PortKind::ControlIn,
                    (false, false, true) if pd & PORT_CONTROL != 0 => PortKind::ControlOut,
                    _ => return Err(format!("plugin \"{label}\": port {i} has an invalid descriptor {pd:#x}")),
                };
                let name =
                    if desc.port_names.is_null() { format!("port {i}") } else { string(*desc.port_names.add(i)) };
                let h = *desc.port_range_hints.add(i);
                let mut key = key_of(&name);
                if key.is_empty() {
                    key = format!("port{i}");
                }
                ports.push(Port { index: i, kind, key, name, hint: h.hint, lower: h.lower, upper: h.upper });
            }
            LadspaInfo {
                index,
                unique_id: desc.unique_id as u64,
                label,
                name: string(desc.name),
                maker: string(desc.maker),
                properties: desc.properties,
                ports,
            }
        };
        plugins.push(info);
        descriptors.push(d as usize);
    }
    if plugins.is_empty() {
        return Err("`ladspa_descriptor(0)` returned no plugin".into());
    }
    Ok(LadspaLibrary { path: path.to_path_buf(), plugins, descriptors, _library: library })
}

/// `Ladspa(path, label, controls, on_fault, isolation)`.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LadspaParams {
    pub path: String,
    pub label: String,
    #[serde(default)]
    pub controls: BTreeMap<String, ParamValue>,
    #[serde(default)]
    pub on_fault: OnFault,
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(skip)]
    bound: Option<(Arc<LadspaLibrary>, usize)>,
}

impl LadspaParams {
    pub fn new(path: impl Into<String>, label: impl Into<String>, controls: BTreeMap<String, ParamValue>) -> Self {
        Self {
            path: path.into(),
            label: label.into(),
            controls,
            on_fault: OnFault::Dry,
            isolation: Isolation::InProcess,
            bound: None,
        }
    }

    fn plugin(&self, base_dir: &Path) -> Result<(Arc<LadspaLibrary>, usize), ParamError> {
        if let Some(b) = &self.bound {
            return Ok(b.clone());
        }
        let path = search(&self.path, base_dir).map_err(|e| ParamError::new("path", e))?;
        let lib = load(&path).map_err(|e| ParamError::new("path", e))?;
        let index = lib.find(&self.label).map_err(|e| ParamError::new("label", e))?.index;
        Ok((lib, index))
    }
}

/// Every control input's `(port index, value)`: hint defaults, then `controls` (by port name or key).
///
/// # Errors
/// A [`ParamError`] naming the control.
pub fn resolve(
    info: &LadspaInfo,
    controls: &BTreeMap<String, ParamValue>,
    sample_rate: u32,
) -> Result<Vec<(u32, f64)>, ParamError> {
    let params = info.params(sample_rate);
    let mut values: Vec<(u32, f64)> = params.iter().map(|p| (p.id, p.default)).collect();
    for (name, value) in controls {
        let Some(i) = info.ports(PortKind::ControlIn).position(|p| p.name == *name || p.key == *name) else {
            let known: Vec<String> =
                info.ports(PortKind::ControlIn).map(|p| format!("\"{}\" ({})", p.name, p.key)).collect();
            return Err(ParamError::new(
                format!("controls.{name}"),
                format!("is not a control input of {} (it has: {})", info.label, known.join(", ")),
            ));
        };
        let p = &params[i];
        let v = super::param_info(p).resolve(value).map_err(|m| ParamError::new(format!("controls.{name}"), m))?;
        super::check_kind(p, v).map_err(|m| ParamError::new(format!("controls.{name}"), m))?;
        values[i].1 = v;
    }
    Ok(values)
}

impl NodeSpec for LadspaParams {
    fn kind(&self) -> &'static str {
        "Ladspa"
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        self.bound = self.plugin(ctx.base_dir).ok();
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let (lib, index) = self.plugin(ctx.base_dir)?;
        let info = &lib.plugins[index];
        info.per_channel(ctx.format.channels).map_err(|e| ParamError::new("label", e))?;
        resolve(info, &self.controls, ctx.format.sample_rate)?;
        if self.isolation == Isolation::Process {
            super::isolate::check_host().map_err(|e| ParamError::new("isolation", e))?;
        }
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let (lib, index) = self.plugin(ctx.base_dir).map_err(|e| NodeError(e.to_string()))?;
        let info = lib.plugins[index].clone();
        let params = resolve(&info, &self.controls, ctx.format.sample_rate).map_err(|e| NodeError(e.to_string()))?;
        if !info.hard_rt() {
            tracing::warn!(
                plugin = %info.label,
                "LADSPA plugin \"{}\" ({}) does not declare itself hard-real-time capable",
                info.label,
                lib.path.display()
            );
        }
        let keys = info.ports(PortKind::ControlIn).map(|p| p.key.clone()).collect();
        let numeric = info.ports(PortKind::ControlIn).map(|p| !p.stepped()).collect();
        let isolation = self.isolation;
        let make = Box::new(move |config: &ProcessConfig, params: &[(u32, f64)]| {
            LadspaLive::new(&lib, index, isolation, config, params)
        });
        let name: std::sync::Arc<str> = info.label.as_str().into();
        Ok(Box::new(PluginProcessor::new(name, keys, params, numeric, self.on_fault, super::NATIVE_BUDGET, make)))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        let Ok((lib, index)) = self.plugin(ctx.base_dir) else { return Vec::new() };
        let info = &lib.plugins[index];
        info.params(ctx.format.sample_rate)
            .iter()
            .zip(info.ports(PortKind::ControlIn))
            .map(|(p, port)| {
                let mut i = super::param_info(p);
                if port.stepped() {
                    i.smoothing = Smoothing::Step;
                }
                i
            })
            .collect()
    }

    fn param(&self, index: usize) -> f64 {
        let Some((lib, i)) = &self.bound else { return 0.0 };
        // The rate only scales sample-rate-relative bounds, which `controls` values are checked against;
        // the stored value is what was given.
        let info = &lib.plugins[*i];
        let Some(port) = info.ports(PortKind::ControlIn).nth(index) else { return 0.0 };
        match self.controls.get(&port.name).or_else(|| self.controls.get(&port.key)) {
            Some(ParamValue::Number(v)) => *v,
            _ => port.default(48000),
        }
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let Some((lib, i)) = &self.bound else { return };
        let Some(port) = lib.plugins[*i].ports(PortKind::ControlIn).nth(index) else { return };
        let (name, key) = (port.name.clone(), port.key.clone());
        self.controls.remove(&name);
        self.controls.insert(key, ParamValue::Number(value));
    }

    fn shape(&self) -> String {
        format!("{} {} {:?} {:?}", self.path, self.label, self.on_fault, self.isolation)
    }

    fn source(&self) -> String {
        match &self.bound {
            Some((lib, i)) => format!("{} ({})", lib.plugins[*i].label, lib.path.display()),
            None => format!("{} ({})", self.label, self.path),
        }
    }

    fn status_names(&self) -> Vec<String> {
        let Some((lib, i)) = &self.bound else { return Vec::new() };
        lib.plugins[*i].ports(PortKind::ControlOut).take(crate::node::STATUS_VALUES).map(|p| p.key.clone()).collect()
    }

    fn build_replacement(
        &self,
        ctx: &BuildContext<'_>,
        config: &ProcessConfig,
    ) -> Option<Result<Box<dyn std::any::Any + Send>, NodeError>> {
        replacement(
            || self.source(),
            || {
                let (lib, index) = self.plugin(ctx.base_dir).map_err(|e| e.to_string())?;
                let params =
                    resolve(&lib.plugins[index], &self.controls, config.sample_rate).map_err(|e| e.to_string())?;
                LadspaLive::new(&lib, index, self.isolation, config, &params)
            },
        )
    }

    spec_boilerplate!();
}

/// A LADSPA instance set (one per channel, or one), in this process or isolated.
pub type LadspaLive = Tiered<LadspaInstance>;

impl LadspaLive {
    fn new(
        lib: &Arc<LadspaLibrary>,
        index: usize,
        isolation: Isolation,
        config: &ProcessConfig,
        params: &[(u32, f64)],
    ) -> Result<Self, String> {
        Ok(match isolation {
            Isolation::InProcess => Tiered::InProcess(LadspaInstance::new(lib.clone(), index, config, params)?),
            Isolation::Process => {
                let info = &lib.plugins[index];
                Tiered::Isolated(super::isolate::Isolated::spawn(
                    super::isolate::Target::Ladspa(lib.path.clone(), info.label.clone()),
                    config,
                    params,
                    info.ports(PortKind::ControlOut).count().min(crate::node::STATUS_VALUES),
                )?)
            }
        })
    }
}

/// LADSPA instances in this process: one per channel (mono plugins) or one.
pub struct LadspaInstance {
    lib: Arc<LadspaLibrary>,
    descriptor: *const Descriptor,
    handles: Vec<*mut c_void>,
    max_block: usize,
    /// Planar input and output buffers the ports are connected to.
    input: Vec<f32>,
    output: Vec<f32>,
    /// Control input values (one set per handle, at stable addresses), by port index.
    controls: Vec<Box<[f32]>>,
    /// Control outputs of the first handle (and dummies for the others), by port index.
    control_out: Vec<Box<[f32]>>,
    out_ports: Vec<usize>,
    latency_port: Option<usize>,
    status: Vec<f64>,
    /// Non-finite output samples replaced since the last [`Instance::take_counts`].
    replaced: u64,
    warned: bool,
    hard_rt: bool,
    active: bool,
}

// SAFETY: the handles are only used by one thread at a time, as LADSPA requires.
unsafe impl Send for LadspaInstance {}

impl LadspaInstance {
    /// Instantiates, connects and activates (control side).
    ///
    /// # Errors
    /// A message if the plugin cannot run with the graph's channels or `instantiate` fails.
    pub fn new(
        lib: Arc<LadspaLibrary>,
        index: usize,
        config: &ProcessConfig,
        params: &[(u32, f64)],
    ) -> Result<Self, String> {
        let info = lib.plugins[index].clone();
        let per_channel = info.per_channel(config.channels)?;
        let (count, per_handle) = if per_channel { (config.channels, 1) } else { (1, config.channels) };
        let descriptor = lib.descriptor(index);
        // SAFETY: a descriptor of the loaded library; its functions checked non-null at load.
        let d = unsafe { &*descriptor };
        let ports = info.ports.len();
        let mut inst = Self {
            lib: lib.clone(),
            descriptor,
            handles: Vec::new(),
            max_block: config.max_block,
            input: vec![0.0; config.channels * config.max_block],
            output: vec![0.0; config.channels * config.max_block],
            controls: (0..count).map(|_| vec![0.0f32; ports].into_boxed_slice()).collect(),
            control_out: (0..count).map(|_| vec![0.0f32; ports].into_boxed_slice()).collect(),
            out_ports: info.ports(PortKind::ControlOut).map(|p| p.index).take(crate::node::STATUS_VALUES).collect(),
            latency_port: info.ports(PortKind::ControlOut).find(|p| p.key == "latency").map(|p| p.index),
            status: Vec::new(),
            replaced: 0,
            warned: false,
            hard_rt: info.hard_rt(),
            active: false,
        };
        inst.status = vec![0.0; inst.out_ports.len()];
        for &(port, value) in params {
            for c in &mut inst.controls {
                c[port as usize] = value as f32;
            }
        }
        for h in 0..count {
            // SAFETY: instantiate per LADSPA; null is a failure.
            let handle =
                unsafe { (d.instantiate.expect("checked at load"))(descriptor, c_ulong::from(config.sample_rate)) };
            if handle.is_null() {
                return Err(format!("{}: instantiate returned null at {} Hz", info.label, config.sample_rate));
            }
            inst.handles.push(handle);
            let (mut a_in, mut a_out) = (0usize, 0usize);
            for p in &info.ports {
                let at: *mut f32 = match p.kind {
                    PortKind::AudioIn => {
                        let c = h * per_handle + a_in;
                        a_in += 1;
                        inst.input[c * config.max_block..].as_mut_ptr()
                    }
                    PortKind::AudioOut => {
                        let c = h * per_handle + a_out;
                        a_out += 1;
                        inst.output[c * config.max_block..].as_mut_ptr()
                    }
                    PortKind::ControlIn => &mut inst.controls[h][p.index],
                    PortKind::ControlOut => &mut inst.control_out[h][p.index],
                };
                // SAFETY: the buffers live (and do not move: boxed and never resized) as long as the handle.
                unsafe { (d.connect_port.expect("checked at load"))(handle, p.index as c_ulong, at) };
            }
        }
        inst.activate();
        if inst.latency_port.is_some() {
            // Plugins set their latency port when they run: one block of silence tells it, then the state
            // is cleared again.
            let run = d.run.expect("checked at load");
            for &h in &inst.handles {
                // SAFETY: LADSPA's run on connected buffers (zeroed), at most max_block frames.
                unsafe { run(h, config.max_block as c_ulong) };
            }
            inst.deactivate();
            inst.activate();
        }
        Ok(inst)
    }

    fn d(&self) -> &Descriptor {
        // SAFETY: a descriptor of a library that stays loaded.
        unsafe { &*self.descriptor }
    }

    fn activate(&mut self) {
        if let Some(f) = self.d().activate {
            for &h in &self.handles {
                // SAFETY: LADSPA's activate on a live handle.
                unsafe { f(h) };
            }
        }
        self.active = true;
    }

    fn deactivate(&mut self) {
        if self.active
            && let Some(f) = self.d().deactivate
        {
            for &h in &self.handles {
                // SAFETY: LADSPA's deactivate on an active handle.
                unsafe { f(h) };
            }
        }
        self.active = false;
    }
}

impl Instance for LadspaInstance {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        for c in &mut self.controls {
            if let Some(v) = c.get_mut(id as usize) {
                *v = value as f32;
            }
        }
        Ok(0)
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, _mark: &CpuMark) -> Result<(), Fault> {
        let n = audio.frames();
        let run = self.d().run.expect("checked at load");
        for c in 0..audio.channels() {
            self.input[c * self.max_block..c * self.max_block + n].copy_from_slice(audio.channel(c));
        }
        for &h in &self.handles {
            // SAFETY: LADSPA's run with `n` (at most max_block) frames on connected buffers.
            unsafe { run(h, n as c_ulong) };
        }
        for c in 0..audio.channels() {
            let out = audio.channel_mut(c);
            out.copy_from_slice(&self.output[c * self.max_block..c * self.max_block + n]);
            self.replaced += sanitize(out);
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), Fault> {
        // LADSPA clears state by deactivating and activating again.
        self.deactivate();
        self.activate();
        Ok(())
    }

    fn stop(&mut self) -> Result<(), Fault> {
        Ok(())
    }

    fn cleanup(&mut self) {}

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        if !self.warned {
            self.warned = true;
            if !self.hard_rt {
                let mut buf = [0u8; crate::nodes::plugin::MESSAGE_BYTES];
                let msg =
                    text(&mut buf, format_args!("this LADSPA plugin does not declare itself hard-real-time capable"));
                ctx.message(MessageKind::Log(2), msg);
            }
        }
        if !self.out_ports.is_empty() {
            for (v, &p) in self.status.iter_mut().zip(&self.out_ports) {
                *v = f64::from(self.control_out[0][p]);
            }
            ctx.status_values(&self.status);
        }
    }

    fn latency(&self) -> usize {
        self.latency_port.map_or(0, |p| self.control_out[0][p].max(0.0) as usize)
    }

    fn take_counts(&mut self) -> Counts {
        Counts { replaced_samples: std::mem::take(&mut self.replaced), ..Counts::default() }
    }
}

impl Drop for LadspaInstance {
    fn drop(&mut self) {
        self.deactivate();
        if let Some(cleanup) = self.d().cleanup {
            for &h in &self.handles {
                // SAFETY: each handle cleaned up once; the library stays loaded.
                unsafe { cleanup(h) };
            }
        }
        let _ = &self.lib;
    }
}

/// What `fxgraph plugin` prints about a LADSPA library: each plugin with its ports.
pub fn describe(path: &Path) -> Result<String, String> {
    let lib = load(path)?;
    let mut s = format!("{}: LADSPA library, {} plugin(s)\n", path.display(), lib.plugins.len());
    for p in &lib.plugins {
        s.push_str(&format!(
            "\n{} (label \"{}\", id {}) by {}{}\n",
            p.name,
            p.label,
            p.unique_id,
            p.maker,
            if p.hard_rt() { "" } else { "; not hard-real-time capable" }
        ));
        for port in &p.ports {
            let kind = match port.kind {
                PortKind::AudioIn => "audio in",
                PortKind::AudioOut => "audio out",
                PortKind::ControlIn => "control in",
                PortKind::ControlOut => "control out",
            };
            let hints = if port.kind == PortKind::ControlIn {
                let (lo, hi) = port.range(48000);
                // LADSPA's hints are `f32`: shown as the shortest `f32` that reads back the same.
                let f = |v: f64| v as f32;
                let mut h = format!(" {} to {}, default {}", f(lo), f(hi), f(port.default(48000)));
                if port.hint & HINT_SAMPLE_RATE != 0 {
                    h.push_str(" (bounds x sample rate; at 48 kHz)");
                }
                if port.hint & HINT_LOGARITHMIC != 0 {
                    h.push_str(", logarithmic");
                }
                if port.hint & HINT_INTEGER != 0 {
                    h.push_str(", integer");
                }
                if port.hint & HINT_TOGGLED != 0 {
                    h.push_str(", toggle");
                }
                h
            } else {
                String::new()
            };
            s.push_str(&format!("  {:>2}  {kind:<11} \"{}\" ({}){hints}\n", port.index, port.name, port.key));
        }
    }
    Ok(s)
}

/// Whether a file is a LADSPA library (exports `ladspa_descriptor`).
pub fn is_ladspa(path: &Path) -> bool {
    load(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_become_keys() {
        assert_eq!(key_of("Gain (dB)"), "gain_db");
        assert_eq!(key_of("Cutoff frequency (Hz)"), "cutoff_frequency_hz");
        assert_eq!(key_of("  Amps  "), "amps");
        assert_eq!(key_of("Attack (ms)"), "attack_ms");
    }

    #[test]
    fn defaults_follow_the_ladspa_rules() {
        let port = |hint: c_int, lower: f32, upper: f32| Port {
            index: 0,
            kind: PortKind::ControlIn,
            name: "x".into(),
            key: "x".into(),
            hint,
            lower,
            upper,
        };
        let bounded = HINT_BOUNDED_BELOW | HINT_BOUNDED_ABOVE;
        assert_eq!(port(bounded | 0x40, 1.0, 9.0).default(48000), 1.0);
        assert_eq!(port(bounded | 0xC0, 1.0, 9.0).default(48000), 5.0);
        assert_eq!(port(bounded | 0x80, 1.0, 9.0).default(48000), 3.0);
        assert!((port(bounded | HINT_LOGARITHMIC | 0xC0, 1.0, 100.0).default(48000) - 10.0).abs() < 1e-9);
        assert_eq!(port(bounded | HINT_SAMPLE_RATE | 0x140, 0.0, 0.5).default(44100), 22050.0);
        assert_eq!(port(bounded | HINT_INTEGER | 0xC0, 0.0, 3.0).default(48000), 2.0);
        assert_eq!(port(0x2C0, 0.0, 0.0).default(48000), 440.0);
        assert_eq!(port(HINT_TOGGLED | 0x240, 0.0, 0.0).range(48000), (0.0, 1.0));
    }
}
