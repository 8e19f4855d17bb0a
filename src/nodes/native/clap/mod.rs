//! CLAP plugins: `Clap(path: "gain.clap", id: "org.example.gain", params: {"gain_db": -6.0})`.
//!
//! - `path` is the bundle (a shared library), relative to the graph; `id` picks the plugin in it.
//! - Audio ports are the node's ports: the main input `in`, the main output `out`, an input whose name
//!   says "side" `sidechain` (unfed, it hears silence), any other by its name as a key.
//! - Parameters (the params extension) are the node's, by name as a key, with their ranges and defaults;
//!   stepped and enumerated ones are taken at once, the rest smoothed like every plugin parameter. Changes
//!   reach the plugin as parameter events at the frame they apply from. Read-only parameters are the
//!   node's status numbers (the first eight), read from the values the plugin sends back.
//! - Latency (the latency extension) is the node's latency, compensated.
//! - The host gives thread-check, thread-pool (the plugin's tasks run one after another on the audio
//!   thread that asked), log, params, latency and state. `activate` and `deactivate` run on the control
//!   side, `start_processing`, `process`, `reset` and `stop_processing` on the audio side.
//! - `isolation: Process` runs the plugin in a child process, as for native plugins.
//! - Not yet: the state extension's saving into presets, the plugin's own presets, note and MIDI ports.
#![allow(unsafe_code)] // CLAP is a C ABI; see the SAFETY notes.

mod host;
mod instance;
mod library;

pub(crate) use instance::{ClapInstance, Live};
pub(crate) use library::{ClapInfo, load};

use super::{Isolation, Tiered};
use crate::node::{
    BuildContext, NodeError, NodeSpec, ParamError, ParamInfo, ParamValue, Port, Ports, ProcessConfig, Processor, Width,
};
use crate::nodes::plugin::{OnFault, PluginProcessor, replacement};
use crate::nodes::spec_boilerplate;
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Plugin `id` of the bundle at `path`, read once per process.
///
/// # Errors
/// A message if the bundle cannot be loaded or has no such plugin.
pub(crate) fn find(path: &Path, id: &str) -> Result<Arc<ClapInfo>, String> {
    type Cache = Mutex<HashMap<(PathBuf, String), Arc<ClapInfo>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (path.to_path_buf(), id.to_string());
    if let Some(i) = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
        return Ok(i.clone());
    }
    let info = Arc::new(ClapInfo::read(load(path)?, id)?);
    cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, info.clone());
    Ok(info)
}

/// `Clap(path, id, params, on_fault, isolation, sha256)`.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClapParams {
    /// The bundle, relative to the graph file.
    pub path: String,
    /// The plugin in the bundle.
    pub id: String,
    /// Parameter values by key; the rest take their defaults.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// What the node outputs while the plugin is bypassed.
    #[serde(default)]
    pub on_fault: OnFault,
    /// Where the plugin's code runs.
    #[serde(default)]
    pub isolation: Isolation,
    /// The file's SHA-256, pinned: a file that does not match is refused before any of its code runs.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::nodes::plugin::plain_pin")]
    pub sha256: Option<crate::nodes::plugin::Sha256Pin>,
    /// The plugin's own state (its state extension's bytes, hexadecimal), restored when it is made, before
    /// `params`; a preset saved from a playing graph carries it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "super::plain_some")]
    pub state: Option<String>,
    #[serde(skip)]
    bound: Option<Arc<ClapInfo>>,
    /// The instance that plays (shared by the node's copies of its description and its processors).
    #[serde(skip)]
    live: Arc<Live>,
}

impl ClapParams {
    /// A node for plugin `id` of the bundle at `path`, with `params`.
    pub fn new(path: impl Into<String>, id: impl Into<String>, params: BTreeMap<String, ParamValue>) -> Self {
        Self {
            path: path.into(),
            id: id.into(),
            params,
            on_fault: OnFault::Dry,
            isolation: Isolation::InProcess,
            sha256: None,
            state: None,
            bound: None,
            live: Arc::default(),
        }
    }

    /// The state's bytes, if one is given.
    fn state_bytes(&self) -> Result<Option<Vec<u8>>, ParamError> {
        self.state
            .as_deref()
            .map(|s| crate::sha256::unhex(s).ok_or_else(|| ParamError::new("state", "is not hexadecimal")))
            .transpose()
    }

    fn info(&self, base_dir: &Path) -> Result<Arc<ClapInfo>, ParamError> {
        if let Some(i) = &self.bound {
            return Ok(i.clone());
        }
        let path = base_dir.join(&self.path);
        crate::nodes::plugin::check_pin(self.sha256.as_ref(), &path).map_err(|e| ParamError::new("sha256", e))?;
        find(&path, &self.id).map_err(|e| {
            let field = if e.contains("has no CLAP plugin") { "id" } else { "path" };
            ParamError::new(field, e)
        })
    }
}

/// Every settable parameter's `(CLAP id, value)`: the defaults, then `params` (by key or name).
///
/// # Errors
/// A [`ParamError`] naming the parameter.
pub(crate) fn resolve(info: &ClapInfo, params: &BTreeMap<String, ParamValue>) -> Result<Vec<(u32, f64)>, ParamError> {
    let list = info.native_params();
    let found = super::resolve_controls(
        &info.id,
        &list,
        params,
        |name| info.settable().position(|p| p.key == name || p.name == name),
        || info.settable().map(|p| p.key.as_str()).collect::<Vec<_>>().join(", "),
    );
    found.map_err(|mut e| {
        e.path = e.path.replacen("controls.", "params.", 1);
        e
    })
}

impl NodeSpec for ClapParams {
    fn kind(&self) -> &'static str {
        "Clap"
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        self.bound = None;
        self.bound = self.info(ctx.base_dir).ok();
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let info = self.info(ctx.base_dir)?;
        resolve(&info, &self.params)?;
        if self.state_bytes()?.is_some() && !info.extensions.iter().any(|e| e == "clap.state") {
            return Err(ParamError::new("state", format!("{} has no state extension to restore it", info.id)));
        }
        if self.isolation == Isolation::Process {
            super::isolate::check_host().map_err(|e| ParamError::new("isolation", e.to_string()))?;
        }
        Ok(())
    }

    fn native_code(&self, base_dir: &Path) -> Option<PathBuf> {
        Some(base_dir.join(&self.path))
    }

    fn ports(&self, _format: &crate::node::GraphFormat) -> Ports {
        let Some(info) = &self.bound else { return Ports::effect() };
        let port = |p: &library::AudioPort| Port::new(p.name.clone(), Width::Fixed(p.channels));
        Ports { inputs: info.inputs.iter().map(port).collect(), outputs: info.outputs.iter().map(port).collect() }
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let info = self.info(ctx.base_dir).map_err(|e| NodeError(e.to_string()))?;
        let params = resolve(&info, &self.params).map_err(|e| NodeError(e.to_string()))?;
        let keys = info.settable().map(|p| p.key.clone()).collect();
        let numeric = info.native_params().iter().map(|p| !p.stepped()).collect();
        let name: Arc<str> = info.id.as_str().into();
        let isolation = self.isolation;
        let state = self.state_bytes().map_err(|e| NodeError(e.to_string()))?;
        let live = self.live.clone();
        let make = Box::new(move |config: &ProcessConfig, params: &[(u32, f64)]| {
            ClapLive::new(&info, isolation, config, params, state.as_deref(), &live)
        });
        Ok(Box::new(PluginProcessor::new(name, keys, params, numeric, self.on_fault, super::NATIVE_BUDGET, make)))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        let Ok(info) = self.info(ctx.base_dir) else { return Vec::new() };
        info.native_params().iter().map(super::param_info).collect()
    }

    fn param(&self, index: usize) -> f64 {
        let Some(info) = &self.bound else { return 0.0 };
        let Some(p) = info.settable().nth(index) else { return 0.0 };
        match self.params.get(&p.key).or_else(|| self.params.get(&p.name)) {
            Some(ParamValue::Number(v)) => *v,
            _ => p.default,
        }
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let Some(info) = &self.bound else { return };
        let Some(p) = info.settable().nth(index) else { return };
        let (name, key) = (p.name.clone(), p.key.clone());
        self.params.remove(&name);
        self.params.insert(key, ParamValue::Number(value));
    }

    fn shape(&self) -> String {
        format!("{} {} {:?} {:?} {:?}", self.path, self.id, self.on_fault, self.isolation, self.state)
    }

    fn save_state(&self) -> Option<Result<String, String>> {
        let info = self.bound.as_ref()?;
        info.extensions.iter().any(|e| e == "clap.state").then(|| self.live.save().map(|b| crate::sha256::hex(&b)))
    }

    fn set_state(&mut self, state: &str) -> Result<(), String> {
        if crate::sha256::unhex(state).is_none() {
            return Err("the state is not hexadecimal".into());
        }
        self.state = Some(state.to_string());
        Ok(())
    }

    fn source(&self) -> String {
        match &self.bound {
            Some(info) => format!("{}@{} ({})", info.id, info.version, info.library.path.display()),
            None => format!("{} ({})", self.id, self.path),
        }
    }

    fn status_names(&self) -> Vec<String> {
        let Some(info) = &self.bound else { return Vec::new() };
        info.readouts().map(|p| p.key.clone()).collect()
    }

    fn build_replacement(
        &self,
        ctx: &BuildContext<'_>,
        config: &ProcessConfig,
    ) -> Option<Result<Box<dyn std::any::Any + Send>, NodeError>> {
        replacement(
            || self.source(),
            || {
                let info = self.info(ctx.base_dir).map_err(|e| e.to_string())?;
                let params = resolve(&info, &self.params).map_err(|e| e.to_string())?;
                let state = self.state_bytes().map_err(|e| e.to_string())?;
                ClapLive::new(&info, self.isolation, config, &params, state.as_deref(), &self.live)
            },
        )
    }

    spec_boilerplate!();
}

/// A CLAP instance, in this process or isolated.
pub(crate) type ClapLive = Tiered<ClapInstance>;

impl ClapLive {
    fn new(
        info: &Arc<ClapInfo>,
        isolation: Isolation,
        config: &ProcessConfig,
        params: &[(u32, f64)],
        state: Option<&[u8]>,
        live: &Arc<Live>,
    ) -> Result<Self, String> {
        Ok(match isolation {
            Isolation::InProcess => {
                Tiered::InProcess(ClapInstance::new(info.clone(), config, params, state, Some(live.clone()))?)
            }
            Isolation::Process => Tiered::Isolated(super::isolate::Isolated::spawn(
                super::isolate::Target::Clap(
                    info.library.path.clone(),
                    info.id.clone(),
                    state.map(crate::sha256::hex).unwrap_or_default(),
                ),
                config,
                params,
                info.readouts().count(),
            )?),
        })
    }
}

/// What `fxgraph plugin clap PATH` prints: each plugin of the bundle with its ports and parameters.
///
/// # Errors
/// A message if the bundle cannot be loaded or a plugin read.
pub fn describe(path: &Path) -> Result<String, String> {
    let lib = load(path)?;
    let mut s = format!("{}: CLAP bundle, {} plugin(s)\n", path.display(), lib.plugins.len());
    for (id, _) in &lib.plugins {
        let info = find(path, id)?;
        s.push_str(&format!("\n{} ({id}) {} by {}\n", info.name, info.version, info.vendor));
        s.push_str(&format!("extensions: {}\n", info.extensions.join(", ")));
        let list = |ports: &[library::AudioPort]| {
            ports
                .iter()
                .map(|p| {
                    format!("{} ({} ch, \"{}\"{})", p.name, p.channels, p.label, if p.main { ", main" } else { "" })
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        s.push_str(&format!("inputs: {}\noutputs: {}\n", list(&info.inputs), list(&info.outputs)));
        for p in &info.params {
            let kind = if p.readonly() { "readout" } else { "param" };
            s.push_str(&format!(
                "  {:>4}  {kind:<7} {} \"{}\" {} to {}, default {}\n",
                p.id, p.key, p.name, p.min, p.max, p.default
            ));
        }
    }
    Ok(s)
}
