//! LADSPA plugins: `Ladspa(path: "amp.so", label: "amp_mono", controls: {"Gain": 6.0})`.
//!
//! - `path` is a file, relative to the graph, or a bare file name found on `LADSPA_PATH` (by default
//!   `/usr/lib/ladspa:/usr/local/lib/ladspa`); `label` picks the plugin in the library.
//! - Control input ports are the node's parameters. In `controls` a port is named as the plugin names it
//!   ("Gain (dB)") or by its key, the name in lower case with every run of other characters turned into
//!   one `_` ("gain_db"); the key is what `set NODE.PARAM` and presets use. Port hints are applied: bounds
//!   (scaled by the sample rate where the hint says so), the default, integer and toggled values; a value
//!   outside them is an error naming the port. Control changes are smoothed like every plugin parameter.
//! - Audio: a plugin with one audio input and one output runs as one instance per channel of whatever
//!   feeds it. Any other runs as one instance whose audio ports, grouped into buses by name ("Input L" and
//!   "Input R" are one stereo bus), are the node's ports: the first input bus `in`, the first output bus
//!   `out`, a sidechain bus `sidechain` (LSP's sidechain compressor), any other by its name as a key.
//! - Control output ports are read after each block and shown as the node's status numbers (the first
//!   eight); one named "latency" is the node's latency.
//! - A plugin that does not declare itself hard-real-time capable is reported when loaded.
#![allow(unsafe_code)] // LADSPA is a C ABI; see the SAFETY notes.

mod abi;
mod instance;
mod library;

pub(crate) use abi::*;
pub(crate) use instance::LadspaInstance;
pub(crate) use library::{LadspaInfo, LadspaLibrary, PortKind, bus_base, key_of, load, search, unique_name};

use super::{Isolation, Tiered};
use crate::node::{
    BuildContext, NodeError, NodeSpec, ParamError, ParamInfo, ParamValue, Port, Ports, ProcessConfig, Processor,
    Smoothing, Width,
};
use crate::nodes::plugin::{OnFault, PluginProcessor, replacement};
use crate::nodes::spec_boilerplate;
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// `Ladspa(path, label, controls, on_fault, isolation)`.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LadspaParams {
    /// The library: a file relative to the graph, or a bare file name found on `LADSPA_PATH`.
    pub path: String,
    /// The plugin in the library, by its label.
    pub label: String,
    /// Values of control input ports, by port name or key; the rest take their defaults.
    #[serde(default)]
    pub controls: BTreeMap<String, ParamValue>,
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
    bound: Option<(Arc<LadspaLibrary>, usize)>,
}

impl LadspaParams {
    /// A node for plugin `label` of library `path`, with `controls`.
    pub fn new(path: impl Into<String>, label: impl Into<String>, controls: BTreeMap<String, ParamValue>) -> Self {
        Self {
            path: path.into(),
            label: label.into(),
            controls,
            on_fault: OnFault::Dry,
            isolation: Isolation::InProcess,
            sha256: None,
            bound: None,
        }
    }

    fn plugin(&self, base_dir: &Path) -> Result<(Arc<LadspaLibrary>, usize), ParamError> {
        if let Some(b) = &self.bound {
            return Ok(b.clone());
        }
        let path = search(&self.path, base_dir).map_err(|e| ParamError::new("path", e))?;
        crate::nodes::plugin::check_pin(self.sha256.as_ref(), &path).map_err(|e| ParamError::new("sha256", e))?;
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
    super::resolve_controls(
        &info.label,
        &params,
        controls,
        |name| info.ports(PortKind::ControlIn).position(|p| p.name == *name || p.key == *name),
        || {
            info.ports(PortKind::ControlIn)
                .map(|p| format!("\"{}\" ({})", p.name, p.key))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
}

impl NodeSpec for LadspaParams {
    fn kind(&self) -> &'static str {
        "Ladspa"
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        self.bound = None;
        self.bound = self.plugin(ctx.base_dir).ok();
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let (lib, index) = self.plugin(ctx.base_dir)?;
        let info = &lib.plugins[index];
        if info.buses().1.is_empty() {
            return Err(ParamError::new("label", format!("{} has no audio output", info.label)));
        }
        resolve(info, &self.controls, ctx.format.sample_rate)?;
        if self.isolation == Isolation::Process {
            super::isolate::check_host().map_err(|e| ParamError::new("isolation", e.to_string()))?;
        }
        Ok(())
    }

    fn native_code(&self, base_dir: &Path) -> Option<std::path::PathBuf> {
        search(&self.path, base_dir).ok()
    }

    fn ports(&self, _format: &crate::node::GraphFormat) -> Ports {
        match &self.bound {
            Some((lib, i)) if !lib.plugins[*i].mono() => {
                let (ins, outs) = lib.plugins[*i].buses();
                let port = |b: &library::Bus| Port::new(b.name.clone(), Width::Fixed(b.ports.len()));
                Ports { inputs: ins.iter().map(port).collect(), outputs: outs.iter().map(port).collect() }
            }
            _ => Ports::follow(),
        }
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

/// What `fxgraph plugin` prints about a LADSPA library: each plugin with its ports.
pub(crate) fn describe(path: &Path) -> Result<String, String> {
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
