//! LV2 plugins: `Lv2(uri: "http://lsp-plug.in/plugins/lv2/compressor_stereo", controls: {"cr": 4.0})`.
//!
//! - Plugins are found by URI through lilv (opened at run time; Debian's `liblilv-0-0`), on `LV2_PATH` or
//!   the standard folders.
//! - Audio ports are the node's ports, grouped into buses by the plugin's port groups: the first input bus
//!   `in`, the first output bus `out`, a sidechain bus `sidechain`, others by their group's name. A plugin
//!   with one audio input and one output runs as one instance per channel of whatever feeds it.
//! - Control input ports are the node's parameters, named by symbol, with their ranges (scaled by the
//!   sample rate where the port says so), defaults, toggles, integers and enumerations (taken at once);
//!   the rest are smoothed like every plugin parameter. Control outputs are the node's status numbers (the
//!   first eight); the latency port is the node's latency, compensated.
//! - Host features given: `urid:map` and `unmap`, `options` (block lengths and sample rate) and
//!   `buf-size:boundedBlockLength`. A plugin that requires any other is refused when the graph is read,
//!   naming the feature. Event (atom) ports get an empty sequence in and room out; CV ports silence.
//! - `isolation: Process` runs the plugin in a child process, as for native plugins: the child finds it by
//!   URI through its own lilv.
//! - Not yet: the worker and state extensions, and presets of the plugin's own.
#![allow(unsafe_code)] // LV2 is a C ABI; see the SAFETY notes.

mod info;
mod instance;
mod lilv;
mod worker;

pub(crate) use info::{Lv2Info, PortKind};
pub(crate) use instance::Lv2Instance;

use super::{Isolation, Tiered};
use crate::node::{
    BuildContext, NodeError, NodeSpec, ParamError, ParamInfo, ParamValue, Port, Ports, ProcessConfig, Processor, Width,
};
use crate::nodes::plugin::{OnFault, PluginProcessor, replacement};
use crate::nodes::spec_boilerplate;
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// The plugin with `uri`, read once per process.
///
/// # Errors
/// A message when lilv is missing, no plugin has the URI, or the plugin requires a feature fxgraph does
/// not give.
pub fn find(uri: &str) -> Result<Arc<Lv2Info>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Lv2Info>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(i) = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uri) {
        return Ok(i.clone());
    }
    let w = lilv::world()?;
    let p = w.plugin(uri).ok_or_else(|| {
        format!(
            "no LV2 plugin has the URI {uri:?} (on LV2_PATH or the standard folders; `fxgraph plugin lv2` lists them)"
        )
    })?;
    let info = Arc::new(Lv2Info::read(&w, p));
    drop(w);
    if let Some(missing) = info.required_features.iter().find(|f| !instance::SUPPORTED.contains(&f.as_str())) {
        return Err(format!("{uri} requires the LV2 feature {missing}, which fxgraph does not provide"));
    }
    if let Some(p) = info.ports(PortKind::Other).find(|p| !p.optional) {
        return Err(format!("{uri}: port {} ({}) is of a kind fxgraph does not host", p.index, p.symbol));
    }
    if info.ports(PortKind::AudioOut).count() == 0 {
        return Err(format!("{uri} has no audio output"));
    }
    cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uri.to_string(), info.clone());
    Ok(info)
}

/// Loads the LV2 bundle in folder `bundle` (one not on `LV2_PATH`), so that its plugins and presets can be
/// found by URI in this process.
///
/// # Errors
/// A message when lilv is missing or the folder is not a bundle (no `manifest.ttl`).
pub fn load_bundle(bundle: &std::path::Path) -> Result<(), String> {
    if !bundle.join("manifest.ttl").is_file() {
        return Err(format!("{} is not an LV2 bundle (it has no manifest.ttl)", bundle.display()));
    }
    let mut path = bundle.as_os_str().as_encoded_bytes().to_vec();
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    let path = std::ffi::CString::new(path).map_err(|_| format!("{}: bad path", bundle.display()))?;
    let w = lilv::world()?;
    // SAFETY: lilv's file URI of a NUL-terminated path, loaded into the live world and freed.
    unsafe {
        let node = (w.f.lilv_new_file_uri)(w.world, std::ptr::null(), path.as_ptr());
        if node.is_null() {
            return Err(format!("{}: lilv cannot make a URI of it", bundle.display()));
        }
        (w.f.lilv_world_load_bundle)(w.world, node);
        (w.f.lilv_node_free)(node);
    }
    Ok(())
}

/// Every installed plugin: (URI, name).
///
/// # Errors
/// A message when lilv is missing.
pub fn list() -> Result<Vec<(String, String)>, String> {
    let w = lilv::world()?;
    let mut out: Vec<(String, String)> = w
        .plugins()
        .into_iter()
        .map(|p| {
            // SAFETY: plugins of the live world; the name node is the caller's to free.
            unsafe {
                (
                    w.string((w.f.lilv_plugin_get_uri)(p)),
                    w.take_string((w.f.lilv_plugin_get_name)(p)).unwrap_or_default(),
                )
            }
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `Lv2(uri, controls, preset, on_fault, isolation)`.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lv2Params {
    /// The plugin's URI.
    pub uri: String,
    /// Values of control input ports, by symbol; the rest take their defaults.
    #[serde(default)]
    pub controls: BTreeMap<String, ParamValue>,
    /// One of the plugin's own presets, by label, applied before `controls`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "super::plain_some")]
    pub preset: Option<String>,
    /// What the node outputs while the plugin is bypassed.
    #[serde(default)]
    pub on_fault: OnFault,
    /// Where the plugin's code runs.
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(skip)]
    bound: Option<Arc<Lv2Info>>,
}

impl Lv2Params {
    /// A node for the plugin `uri`, with `controls`.
    pub fn new(uri: impl Into<String>, controls: BTreeMap<String, ParamValue>) -> Self {
        Self {
            uri: uri.into(),
            controls,
            preset: None,
            on_fault: OnFault::Dry,
            isolation: Isolation::InProcess,
            bound: None,
        }
    }

    fn info(&self) -> Result<Arc<Lv2Info>, ParamError> {
        match &self.bound {
            Some(i) => Ok(i.clone()),
            None => find(&self.uri).map_err(|e| ParamError::new("uri", e)),
        }
    }
}

/// Every control input's `(port index, value)`: the defaults, then the values of `preset` (one of the
/// plugin's own, by label or URI), then `controls` (by symbol).
///
/// # Errors
/// A [`ParamError`] naming the control or the preset.
pub fn resolve(
    info: &Lv2Info,
    controls: &BTreeMap<String, ParamValue>,
    preset: Option<&str>,
    sample_rate: u32,
) -> Result<Vec<(u32, f64)>, ParamError> {
    let params = info.params(sample_rate);
    let mut given = BTreeMap::new();
    if let Some(name) = preset {
        let p = info.preset(name).ok_or_else(|| {
            let known: Vec<String> = info.presets.iter().map(|p| format!("\"{}\"", p.label)).collect();
            ParamError::new(
                "preset",
                format!(
                    "{} has no preset {name:?} (it has: {})",
                    info.uri,
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            )
        })?;
        if p.properties > 0 && !info.state {
            return Err(ParamError::new(
                "preset",
                format!(
                    "{name:?} holds {} value(s) of plugin state beyond its controls, and the plugin has no state interface to restore them",
                    p.properties
                ),
            ));
        }
        for (symbol, v) in &p.values {
            // A preset's values are the plugin's own: kept within the ports' ranges rather than refused.
            if let Some(q) = params.iter().find(|q| q.key == *symbol) {
                given.insert(symbol.clone(), ParamValue::Number(v.clamp(q.min, q.max)));
            }
        }
    }
    given.extend(controls.iter().map(|(k, v)| (k.clone(), v.clone())));
    super::resolve_controls(
        &info.uri,
        &params,
        &given,
        |name| params.iter().position(|p| p.key == name),
        || params.iter().map(|p| p.key.as_str()).collect::<Vec<_>>().join(", "),
    )
}

impl NodeSpec for Lv2Params {
    fn kind(&self) -> &'static str {
        "Lv2"
    }

    fn bind(&mut self, _ctx: &BuildContext<'_>) {
        self.bound = None;
        self.bound = find(&self.uri).ok();
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let info = self.info()?;
        resolve(&info, &self.controls, self.preset.as_deref(), ctx.format.sample_rate)?;
        if self.isolation == Isolation::Process {
            super::isolate::check_host().map_err(|e| ParamError::new("isolation", e.to_string()))?;
        }
        Ok(())
    }

    fn ports(&self, _format: &crate::node::GraphFormat) -> Ports {
        match &self.bound {
            Some(info) if !info.mono() => {
                let (ins, outs) = info.buses();
                let port = |b: &info::Bus| Port::new(b.name.clone(), Width::Fixed(b.ports.len()));
                Ports { inputs: ins.iter().map(port).collect(), outputs: outs.iter().map(port).collect() }
            }
            _ => Ports::follow(),
        }
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let info = self.info().map_err(|e| NodeError(e.to_string()))?;
        let params = resolve(&info, &self.controls, self.preset.as_deref(), ctx.format.sample_rate)
            .map_err(|e| NodeError(e.to_string()))?;
        let keys = info.ports(PortKind::ControlIn).map(|p| p.symbol.clone()).collect();
        let numeric = info.ports(PortKind::ControlIn).map(|p| !p.stepped()).collect();
        let name: Arc<str> = info.name.as_str().into();
        let (isolation, preset) = (self.isolation, self.preset.clone());
        let make = Box::new(move |config: &ProcessConfig, params: &[(u32, f64)]| {
            Lv2Live::new(&info, isolation, preset.as_deref(), config, params)
        });
        Ok(Box::new(PluginProcessor::new(name, keys, params, numeric, self.on_fault, super::NATIVE_BUDGET, make)))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        let Ok(info) = self.info() else { return Vec::new() };
        // Toggles, integers and enumerations carry flags that make them stepped.
        info.params(ctx.format.sample_rate).iter().map(super::param_info).collect()
    }

    fn param(&self, index: usize) -> f64 {
        let Some(info) = &self.bound else { return 0.0 };
        let Some(port) = info.ports(PortKind::ControlIn).nth(index) else { return 0.0 };
        let (lo, hi) = port.range(48000);
        match self.controls.get(&port.symbol) {
            Some(ParamValue::Number(v)) => *v,
            // A choice by name: what resolving the controls makes of it.
            Some(ParamValue::Text(_)) => resolve(info, &self.controls, self.preset.as_deref(), 48000)
                .ok()
                .and_then(|v| v.get(index).map(|x| x.1))
                .unwrap_or_else(|| port.default_at(48000)),
            // The preset's value (kept within the range, as `resolve` keeps it), else the default.
            None => self
                .preset
                .as_deref()
                .and_then(|name| info.preset(name))
                .and_then(|p| p.values.iter().find(|(s, _)| *s == port.symbol))
                .map_or_else(|| port.default_at(48000), |(_, v)| v.clamp(lo, hi)),
        }
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let Some(info) = &self.bound else { return };
        let Some(port) = info.ports(PortKind::ControlIn).nth(index) else { return };
        self.controls.insert(port.symbol.clone(), ParamValue::Number(value));
    }

    fn shape(&self) -> String {
        format!("{} {:?} {:?} {:?}", self.uri, self.preset, self.on_fault, self.isolation)
    }

    fn source(&self) -> String {
        match &self.bound {
            Some(info) => format!("{} ({})", info.name, info.uri),
            None => self.uri.clone(),
        }
    }

    fn status_names(&self) -> Vec<String> {
        let Some(info) = &self.bound else { return Vec::new() };
        info.ports(PortKind::ControlOut).take(crate::node::STATUS_VALUES).map(|p| p.symbol.clone()).collect()
    }

    fn build_replacement(
        &self,
        ctx: &BuildContext<'_>,
        config: &ProcessConfig,
    ) -> Option<Result<Box<dyn std::any::Any + Send>, NodeError>> {
        let _ = ctx;
        replacement(
            || self.source(),
            || {
                let info = self.info().map_err(|e| e.to_string())?;
                let params = resolve(&info, &self.controls, self.preset.as_deref(), config.sample_rate)
                    .map_err(|e| e.to_string())?;
                Lv2Live::new(&info, self.isolation, self.preset.as_deref(), config, &params)
            },
        )
    }

    spec_boilerplate!();
}

/// An LV2 instance set (one per channel, or one), in this process or isolated.
pub(crate) type Lv2Live = Tiered<Lv2Instance>;

impl Lv2Live {
    fn new(
        info: &Arc<Lv2Info>,
        isolation: Isolation,
        preset: Option<&str>,
        config: &ProcessConfig,
        params: &[(u32, f64)],
    ) -> Result<Self, String> {
        Ok(match isolation {
            Isolation::InProcess => Tiered::InProcess(Lv2Instance::new(info.clone(), config, params, preset)?),
            Isolation::Process => Tiered::Isolated(super::isolate::Isolated::spawn(
                super::isolate::Target::Lv2(info.uri.clone(), preset.unwrap_or_default().to_string()),
                config,
                params,
                info.ports(PortKind::ControlOut).count().min(crate::node::STATUS_VALUES),
            )?),
        })
    }
}

/// What `fxgraph plugin lv2 URI` prints: the plugin, its features, buses and ports.
///
/// # Errors
/// As [`find`].
pub fn describe(uri: &str) -> Result<String, String> {
    let info = find(uri)?;
    let mut s = format!("{} ({})\n", info.name, info.uri);
    if !info.required_features.is_empty() {
        s.push_str(&format!("requires: {}\n", info.required_features.join(", ")));
    }
    if let Some(p) = info.latency_port {
        s.push_str(&format!("latency: reported by port {p} ({})\n", info.ports[p].symbol));
    }
    if !info.presets.is_empty() {
        let list: Vec<String> = info.presets.iter().map(|p| format!("\"{}\"", p.label)).collect();
        s.push_str(&format!("presets: {}\n", list.join(", ")));
    }
    if info.mono() {
        s.push_str("audio: one input and one output: one instance per channel of what feeds the node\n");
    } else {
        let (ins, outs) = info.buses();
        let list = |b: &[info::Bus]| {
            b.iter().map(|b| format!("{} ({} ch)", b.name, b.ports.len())).collect::<Vec<_>>().join(", ")
        };
        s.push_str(&format!("inputs: {}\noutputs: {}\n", list(&ins), list(&outs)));
    }
    for port in &info.ports {
        let kind = match port.kind {
            PortKind::AudioIn => "audio in",
            PortKind::AudioOut => "audio out",
            PortKind::ControlIn => "control in",
            PortKind::ControlOut => "control out",
            PortKind::AtomIn => "events in",
            PortKind::AtomOut => "events out",
            PortKind::CvIn => "cv in",
            PortKind::CvOut => "cv out",
            PortKind::Other => "other",
        };
        let mut hints = String::new();
        if port.kind == PortKind::ControlIn {
            let (lo, hi) = port.range(48000);
            hints = format!(" {} to {}, default {}", lo as f32, hi as f32, port.default_at(48000) as f32);
            for (on, what) in [
                (port.sample_rate, " (bounds x sample rate; at 48 kHz)"),
                (port.logarithmic, ", logarithmic"),
                (port.integer, ", integer"),
                (port.toggled, ", toggle"),
            ] {
                if on {
                    hints.push_str(what);
                }
            }
            if !port.scale_points.is_empty() {
                let points: Vec<String> = port.scale_points.iter().map(|(v, l)| format!("{v} = {l}")).collect();
                hints.push_str(&format!(": {}", points.join(", ")));
            }
        }
        s.push_str(&format!("  {:>3}  {kind:<11} {} \"{}\"{hints}\n", port.index, port.symbol, port.name));
    }
    Ok(s)
}
