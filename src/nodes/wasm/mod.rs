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
//! for [`WATCHDOG_BLOCKS`] blocks in a row is faulted: that block's output is its dry input (or silence), the
//! fault is counted and reported, the instance is handed to the control side to be dropped and is never
//! re-entered, and the control side builds a fresh instance from the compiled module, which takes over
//! after a backoff of 2, 4, 8, 16 blocks; after [`MAX_FAULTS`] faults in a row (none
//! [`FORGIVE_SECONDS`] of clean audio apart) the node stays bypassed. Other nodes and the host are not
//! affected. Nothing is instantiated on the audio side.
//!
//! Log lines and events the plugin sends through its imports are copied (bounds-checked, truncated to
//! [`MESSAGE_BYTES`]) into [`MESSAGE_SLOTS`] preallocated slots, and handed to the control side after each
//! block through the engine's queue, where they are delivered as untrusted text.
//!
//! Numeric parameters are smoothed: a change ramps over [`RAMP_MS`](crate::node::RAMP_MS), sent to the
//! plugin every [`RAMP_STEP`](crate::node::RAMP_STEP) frames (the block is cut there).

pub mod host;
pub mod manifest;

pub use host::{cache_dir, compile, deadline_ticks};
pub use manifest::{ABI_VERSION, ConfigValue, HOST_MEMORY_CAP, Manifest, ParamDecl};

use super::spec_boilerplate;
use crate::buffer::AudioOut;
use crate::dsp::smooth::{Ramp, ramp_frames};
use crate::node::{
    BuildContext, MessageKind, NodeError, NodeSpec, ParamError, ParamInfo, PollContext, ProcessConfig, Processor,
    RAMP_MS, RAMP_STEP,
};
use crate::registry::{NodeKind, Registry};
use bevy_ecs::component::Component;
use host::{HostState, Live, Ticking, instantiate, prelink};
pub use host::{MESSAGE_BYTES, MESSAGE_SLOTS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::InstancePre;

/// Faults in a row after which a node stays bypassed. Faults are in a row unless a replacement instance
/// runs for [`FORGIVE_SECONDS`] of audio without one in between.
pub const MAX_FAULTS: u32 = 5;
/// Audio a replacement must process without a fault for the faults before to be forgiven.
pub const FORGIVE_SECONDS: f64 = 10.0;
/// Consecutive over-budget blocks after which the watchdog bypasses a plugin.
pub const WATCHDOG_BLOCKS: u32 = 8;
/// Output magnitudes above this are absurd (about +60 dBFS).
const ABSURD: f32 = 1000.0;

pub(crate) fn register(registry: &mut Registry) {
    registry.register(NodeKind::new::<WasmParams>("Wasm", "a WebAssembly plugin, sandboxed"));
}

/// What a faulted plugin outputs for the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum OnFault {
    /// Its input, unprocessed.
    #[default]
    Dry,
    Silence,
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
    /// An installed plugin by id (see [`crate::packages`]), instead of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "plain_some")]
    pub id: Option<String>,
    /// With `id`: the versions accepted (semver requirement, e.g. `^1.0`) [default: any].
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "plain_some")]
    pub version: Option<String>,
    /// Values for the plugin's parameters by key; the rest take their defaults.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    #[serde(default)]
    pub on_fault: OnFault,
    #[serde(skip)]
    bound: Option<Bound>,
}

/// An optional string written plainly (`id: "x"`, not RON's `Some("x")`).
fn plain_some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

impl WasmParams {
    /// A plugin node for the module at `path` (relative to the graph's folder), with `config`.
    pub fn new(path: impl Into<String>, config: BTreeMap<String, ConfigValue>) -> Self {
        Self { path: path.into(), id: None, version: None, config, on_fault: OnFault::Dry, bound: None }
    }

    /// An installed plugin by id, with a version requirement.
    pub fn by_id(id: impl Into<String>, version: Option<String>, config: BTreeMap<String, ConfigValue>) -> Self {
        Self { path: String::new(), id: Some(id.into()), version, config, on_fault: OnFault::Dry, bound: None }
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
            (Some(id), true) => crate::packages::resolve(id, self.version.as_deref().unwrap_or("*"))
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
        let module = compile(&path).map_err(|e| ParamError::new(field, e))?;
        host::check_declared(&module, &manifest, &path).map_err(|e| ParamError::new(field, e))?;
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let path = self.module_path(ctx.base_dir).map_err(NodeError)?;
        let manifest = Manifest::for_module(&path).map_err(NodeError)?;
        let params = manifest.resolve(&self.config, ctx.format.sample_rate).map_err(|e| NodeError(e.to_string()))?;
        let module = compile(&path).map_err(NodeError)?;
        host::check_declared(&module, &manifest, &path).map_err(NodeError)?;
        let pre = prelink(&module).map_err(NodeError)?;
        Ok(Box::new(WasmProcessor::new(pre, manifest, params, self.on_fault)))
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
        let built = (|| {
            let path = self.module_path(ctx.base_dir)?;
            let manifest = Manifest::for_module(&path)?;
            let params = manifest.resolve(&self.config, config.sample_rate).map_err(|e| e.to_string())?;
            let pre = prelink(&compile(&path)?)?;
            let live = instantiate(&pre, &manifest, &params, config)?;
            Ok(Box::new(live) as Box<dyn std::any::Any + Send>)
        })();
        Some(built.map_err(|e: String| NodeError(format!("{}: {e}", self.source()))))
    }

    spec_boilerplate!();
}

/// Why a plugin was faulted. Holds no heap data, so faulting allocates nothing (but a trap's own error
/// object is created by wasmtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A trap (`None`: an error that is not a trap code).
    Trap(Option<wasmtime::Trap>),
    ErrorReturn(i32),
    BadOutput,
    OverBudget,
    MemoryGrew,
}

impl Fault {
    fn from_error(e: &wasmtime::Error) -> Self {
        Fault::Trap(e.downcast_ref::<wasmtime::Trap>().copied())
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Trap(Some(t)) => write!(f, "Trap: {t}"),
            Fault::Trap(None) => write!(f, "Trap"),
            Fault::ErrorReturn(code) => write!(f, "ErrorReturn: fxg_process returned {code}"),
            Fault::BadOutput => write!(f, "BadOutput: non-finite or absurd samples"),
            Fault::OverBudget => write!(f, "OverBudget: {WATCHDOG_BLOCKS} blocks in a row over the budget"),
            Fault::MemoryGrew => write!(f, "MemoryGrew: memory changed during a block"),
        }
    }
}

/// The audio side of a `Wasm` node.
pub struct WasmProcessor {
    pre: InstancePre<HostState>,
    manifest: Arc<Manifest>,
    /// Each parameter's id and current target value, in manifest order.
    params: Vec<(i32, f32)>,
    numeric: Vec<bool>,
    ramps: Vec<Ramp>,
    /// Parameters whose ramp is moving.
    moving: Vec<bool>,
    ramp_len: u32,
    ramp_pos: usize,
    ramping: bool,
    on_fault: OnFault,
    config: Option<ProcessConfig>,
    live: Option<Box<Live>>,
    /// A faulted instance, handed to the control side at the next poll.
    dead: Option<Box<Live>>,
    /// A replacement waiting for its backoff to end.
    spare: Option<Box<Live>>,
    /// Faults in all, and in a row.
    faults: u32,
    in_a_row: u32,
    /// Frames processed cleanly since the last fault, and how many forgive it.
    clean_frames: u64,
    forgive_frames: u64,
    fault: Option<Fault>,
    wants_replacement: bool,
    requested: bool,
    /// A parameter change the plugin refused: (index, value, code).
    refused: Option<(usize, f32, i32)>,
    needs_start: bool,
    block: u64,
    retry_at: u64,
    slow_blocks: u32,
    budget: Duration,
    deadline_ticks: u64,
    _ticking: Ticking,
}

impl WasmProcessor {
    fn new(pre: InstancePre<HostState>, manifest: Arc<Manifest>, params: Vec<(i32, f32)>, on_fault: OnFault) -> Self {
        let numeric = manifest.parameters.iter().map(|p| p.choices.is_none()).collect();
        let ramps = params.iter().map(|&(_, v)| Ramp::new(f64::from(v))).collect();
        Self {
            moving: vec![false; params.len()],
            budget: Duration::from_micros(manifest.block_budget_us.max(1)),
            pre,
            manifest,
            params,
            numeric,
            ramps,
            ramp_len: 1,
            ramp_pos: 0,
            ramping: false,
            on_fault,
            config: None,
            live: None,
            dead: None,
            spare: None,
            faults: 0,
            in_a_row: 0,
            clean_frames: 0,
            forgive_frames: u64::MAX,
            fault: None,
            wants_replacement: false,
            requested: false,
            refused: None,
            needs_start: false,
            block: 0,
            retry_at: 0,
            slow_blocks: 0,
            deadline_ticks: host::MIN_DEADLINE_TICKS,
            _ticking: Ticking::new(),
        }
    }

    /// Faults the instance: counted, reported at the next poll, handed back, replaced after a backoff.
    fn fault(&mut self, fault: Fault) {
        self.faults = self.faults.saturating_add(1);
        self.in_a_row += 1;
        self.clean_frames = 0;
        self.fault = Some(fault);
        if let Some(live) = self.live.take() {
            // Only one is kept; an older dead instance (two faults between polls) is dropped with it.
            self.dead = Some(live);
        }
        self.slow_blocks = 0;
        self.retry_at = self.block + (1u64 << self.in_a_row.min(16));
        self.wants_replacement = self.in_a_row < MAX_FAULTS;
        self.requested = false;
    }

    /// Calls `fxg_set_param` in real time (no memory growth); a trap faults the instance.
    fn send_param(&mut self, index: usize, value: f32) {
        let Some(live) = &mut self.live else { return };
        let id = self.params[index].0;
        live.store.data_mut().in_block = true;
        live.store.set_epoch_deadline(self.deadline_ticks);
        let result = live.set_param.call(&mut live.store, (id, value));
        live.store.data_mut().in_block = false;
        match result {
            Ok(0) => {}
            Ok(code) => self.refused = Some((index, value, code)),
            Err(e) => self.fault(Fault::from_error(&e)),
        }
    }

    /// Runs one chunk through the instance, or bypasses it.
    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let Some(config) = self.config else { return };
        let Some(live) = &mut self.live else {
            bypass(self.on_fault, audio);
            return;
        };
        let n = audio.frames();
        let plane = 4 * config.max_block;
        {
            let mem = live.memory.data_mut(&mut live.store);
            for c in 0..audio.channels() {
                let at = live.input + c * plane;
                for (dst, s) in mem[at..at + 4 * n].chunks_exact_mut(4).zip(audio.channel(c)) {
                    dst.copy_from_slice(&s.to_le_bytes());
                }
            }
        }
        live.store.data_mut().in_block = true;
        live.store.set_epoch_deadline(self.deadline_ticks);
        let started = Instant::now();
        let result = live.process.call(&mut live.store, n as i32);
        let elapsed = started.elapsed();
        live.store.data_mut().in_block = false;
        let fault = match result {
            Err(e) => Some(Fault::from_error(&e)),
            Ok(0) if live.memory.data_size(&live.store) != live.memory_size => Some(Fault::MemoryGrew),
            Ok(0) => {
                let mem = live.memory.data(&live.store);
                let sample = |c: usize, i: usize| {
                    let at = live.output + c * plane + 4 * i;
                    f32::from_le_bytes([mem[at], mem[at + 1], mem[at + 2], mem[at + 3]])
                };
                // Checked before anything is written: the block holds the dry input until then.
                let bad = (0..audio.channels())
                    .any(|c| (0..n).any(|i| !sample(c, i).is_finite() || sample(c, i).abs() > ABSURD));
                if !bad {
                    for c in 0..audio.channels() {
                        for (i, y) in audio.channel_mut(c).iter_mut().enumerate() {
                            *y = sample(c, i);
                        }
                    }
                }
                bad.then_some(Fault::BadOutput)
            }
            Ok(code) => Some(Fault::ErrorReturn(code)),
        };
        self.slow_blocks = if elapsed > self.budget { self.slow_blocks + 1 } else { 0 };
        let fault = fault.or((self.slow_blocks >= WATCHDOG_BLOCKS).then_some(Fault::OverBudget));
        if let Some(fault) = fault {
            self.fault(fault);
            bypass(self.on_fault, audio);
        }
    }
}

/// Writes formatted text into a fixed buffer (no allocation), cutting what does not fit.
fn text<'a>(buf: &'a mut [u8; MESSAGE_BYTES], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let len = cursor.position() as usize;
    &buf[..len]
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

impl Processor for WasmProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        let live = instantiate(&self.pre, &self.manifest, &self.params, config)
            .map_err(|e| NodeError(format!("{}: {e}", self.manifest.id)))?;
        self.live = Some(Box::new(live));
        self.deadline_ticks = deadline_ticks(self.manifest.block_budget_us, config);
        self.ramp_len = ramp_frames(RAMP_MS, config.sample_rate);
        self.forgive_frames = (FORGIVE_SECONDS * f64::from(config.sample_rate)) as u64;
        self.config = Some(*config);
        Ok(())
    }

    fn start(&mut self) {
        if self.needs_start {
            self.needs_start = false;
            if let Some(live) = &mut self.live {
                live.store.set_epoch_deadline(host::SETUP_DEADLINE_TICKS);
                if live.start.call(&mut live.store, ()).is_err() {
                    self.live = None;
                }
            }
        }
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.block += 1;
        if self.live.is_none() && self.block >= self.retry_at && self.in_a_row < MAX_FAULTS {
            self.live = self.spare.take();
        }
        let n = audio.frames();
        let mut at = 0;
        while at < n {
            let mut chunk = n - at;
            if self.ramping {
                // Cut at every step of the ramp; send the moving parameters their ramped values there, and
                // their exact targets when the ramp ends.
                if self.ramp_pos.is_multiple_of(RAMP_STEP) || self.ramp_pos >= self.ramp_len as usize {
                    let done = self.ramp_pos >= self.ramp_len as usize;
                    for i in 0..self.ramps.len() {
                        if self.moving[i] {
                            let v = if done { self.params[i].1 } else { self.ramps[i].value() as f32 };
                            self.send_param(i, v);
                        }
                    }
                    if done {
                        self.moving.fill(false);
                        self.ramping = false;
                    }
                }
                if self.ramping {
                    chunk = chunk.min(RAMP_STEP - self.ramp_pos % RAMP_STEP);
                }
            }
            self.run(&mut audio.slice_mut(at, chunk));
            if self.live.is_some() && self.in_a_row > 0 {
                self.clean_frames += chunk as u64;
                if self.clean_frames >= self.forgive_frames {
                    self.in_a_row = 0;
                }
            }
            if self.ramping {
                for r in &mut self.ramps {
                    r.advance(chunk);
                }
                self.ramp_pos += chunk;
            }
            at += chunk;
        }
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if index >= self.params.len() {
            return;
        }
        self.params[index].1 = value as f32;
        if self.numeric[index] {
            let len = self.ramp_len;
            for (i, r) in self.ramps.iter_mut().enumerate() {
                if i == index {
                    r.set(value, len);
                } else {
                    r.restart(len);
                }
            }
            self.moving[index] = true;
            self.ramp_pos = 0;
            self.ramping = true;
        } else {
            self.ramps[index].jump(value);
            self.send_param(index, value as f32);
        }
    }

    fn reset(&mut self) {
        for (r, &(_, v)) in self.ramps.iter_mut().zip(&self.params) {
            r.jump(f64::from(v));
        }
        if self.ramping {
            self.ramping = false;
            for i in 0..self.params.len() {
                if self.moving[i] {
                    self.send_param(i, self.params[i].1);
                }
            }
            self.moving.fill(false);
        }
        if let Some(live) = &mut self.live {
            live.store.data_mut().in_block = true;
            live.store.set_epoch_deadline(self.deadline_ticks);
            let result = live.start.call(&mut live.store, ());
            live.store.data_mut().in_block = false;
            if let Err(e) = result {
                self.fault(Fault::from_error(&e));
            }
        }
    }

    fn polls(&self) -> bool {
        true
    }

    fn poll(&mut self, ctx: &mut dyn PollContext) {
        let mut buf = [0u8; MESSAGE_BYTES];
        if let Some(mut dead) = self.dead.take() {
            // What the plugin said before it faulted goes out with the fault.
            drain_slots(&mut dead, ctx);
            ctx.retire(dead);
        }
        if let Some(fault) = self.fault.take() {
            let permanent = if self.in_a_row >= MAX_FAULTS { "; bypassed for good" } else { "" };
            let msg = text(
                &mut buf,
                format_args!("fault {} ({} of {MAX_FAULTS} in a row): {fault}{permanent}", self.faults, self.in_a_row),
            );
            ctx.message(MessageKind::Fault, msg);
        }
        if let Some((index, value, code)) = self.refused.take() {
            let key = self.manifest.parameters.get(index).map_or("?", |p| p.key.as_str());
            let msg = text(&mut buf, format_args!("the plugin refused {key} = {value} (error {code})"));
            ctx.message(MessageKind::Log(1), msg);
        }
        if let Some(live) = &mut self.live {
            drain_slots(live, ctx);
        }
        if self.wants_replacement && !self.requested {
            self.requested = ctx.request_replacement();
        }
        let memory = self.live.as_ref().map(|l| (l.memory.data_size(&l.store), self.manifest.memory_cap()));
        ctx.status(u64::from(self.faults), memory);
    }

    fn install(&mut self, replacement: Box<dyn std::any::Any + Send>) -> Result<(), Box<dyn std::any::Any + Send>> {
        let live = replacement.downcast::<Live>()?;
        if self.in_a_row >= MAX_FAULTS || self.spare.is_some() {
            return Err(live);
        }
        self.wants_replacement = false;
        self.spare = Some(live);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(live) = &mut self.live {
            live.store.set_epoch_deadline(host::SETUP_DEADLINE_TICKS);
            if live.stop.call(&mut live.store, ()).is_err() {
                self.live = None;
            }
        }
        self.needs_start = true;
    }

    fn cleanup(&mut self) {
        if let Some(mut live) = self.live.take() {
            live.store.set_epoch_deadline(host::SETUP_DEADLINE_TICKS);
            let _ = live.cleanup.call(&mut live.store, ());
        }
    }
}

fn bypass(on_fault: OnFault, audio: &mut AudioOut<'_>) {
    match on_fault {
        // In place, the block already holds the dry input.
        OnFault::Dry => {}
        OnFault::Silence => audio.fill_zero(),
    }
}

/// The plugin's manifest and the module's check, for `fxgraph plugin` and tools.
///
/// # Errors
/// As [`Manifest::for_module`] and [`compile`].
pub fn inspect(path: &Path) -> Result<(Arc<Manifest>, wasmtime::Module), String> {
    let manifest = Manifest::for_module(path)?;
    let module = compile(path)?;
    Ok((manifest, module))
}
