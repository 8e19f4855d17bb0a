//! The node contract shared by built-in DSP and plugin nodes.
//!
//! A node kind has two halves, as in Firewheel and kira:
//!
//! - a [`NodeSpec`] on the control side: the node's parameters as a typed `bevy_ecs` component on the node's
//!   entity (`CompressorParams`, `EqParams`, `WasmParams`...), parsed from a graph file or edited by the
//!   application. It describes its automatable parameters ([`ParamInfo`]), validates them, and builds
//!   the processor;
//! - a [`Processor`] on the audio side: the state that turns blocks of audio into blocks of audio, in place.
//!   It never sees the `World`; parameter changes reach it as [`Processor::set_param`] calls between
//!   sub-blocks, and it smooths them itself.

use crate::buffer::AudioOut;
use std::any::Any;
use std::fmt;
use std::path::Path;

/// The format a processor is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels in every block the node sees.
    pub channels: usize,
    /// The largest `frames` any call to [`Processor::process`] will pass.
    pub max_block: usize,
    /// Whether blocks are due in real time (a device callback, `play`) rather than rendered offline
    /// (`render`, `bench`), where nothing is late. Plugin nodes charge a plugin for its own CPU time in
    /// either case; their time-budget watchdog runs only in real time.
    pub realtime: bool,
}

/// The graph-wide format a node's parameters are validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphFormat {
    pub sample_rate: u32,
    pub channels: usize,
}

impl GraphFormat {
    pub fn nyquist_hz(&self) -> f64 {
        f64::from(self.sample_rate) / 2.0
    }
}

/// What a node kind may use while validating parameters and building its processor.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub format: GraphFormat,
    /// The folder of the graph file, against which relative paths in parameters resolve.
    pub base_dir: &'a Path,
}

/// A parameter that fails validation. `path` names it as written in the file, e.g. `bands[1].freq_hz`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub path: String,
    pub message: String,
}

impl ParamError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.path, self.message)
    }
}

impl std::error::Error for ParamError {}

/// How the audio side takes a new value of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoothing {
    /// Ramped over [`RAMP_MS`]: gains sample by sample, filter settings by recomputing coefficients every
    /// [`RAMP_STEP`] frames.
    Ramp,
    /// Taken at once (time constants, enumerations): a jump in them does not click.
    Step,
    /// The node is rebuilt and crossfaded in (a limiter's lookahead changes its latency).
    Rebuild,
}

/// Parameter ramps last this long (see [`Smoothing::Ramp`]).
pub const RAMP_MS: f64 = 20.0;
/// Ramped filter coefficients are recomputed every this many frames.
pub const RAMP_STEP: usize = 32;

/// One automatable parameter of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// The parameter as written in the file: `threshold_db`, `bands[1].gain_db`, a plugin's manifest key.
    pub name: String,
    /// `dB`, `Hz`, `ms`... or empty.
    pub unit: String,
    /// Inclusive range (for enumerations: 0 to the last index).
    pub min: f64,
    pub max: f64,
    /// For enumerations: the values, in index order.
    pub choices: Option<Vec<String>>,
    pub smoothing: Smoothing,
}

impl ParamInfo {
    /// A numeric parameter.
    pub fn number(name: impl Into<String>, unit: &str, min: f64, max: f64, smoothing: Smoothing) -> Self {
        Self { name: name.into(), unit: unit.into(), min, max, choices: None, smoothing }
    }

    /// Turns a value as a user writes it into the number the audio side receives.
    ///
    /// # Errors
    /// A message for a value of the wrong type, out of range or not among the choices.
    pub fn resolve(&self, value: &ParamValue) -> Result<f64, String> {
        let unit = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        match (&self.choices, value) {
            (Some(choices), ParamValue::Text(t)) => choices
                .iter()
                .position(|c| c == t)
                .map(|i| i as f64)
                .ok_or_else(|| format!("must be one of {} (got \"{t}\")", choices.join(", "))),
            (Some(choices), ParamValue::Number(n)) => Err(format!("must be one of {} (got {n})", choices.join(", "))),
            (None, ParamValue::Text(t)) => Err(format!("must be a number (got \"{t}\")")),
            (None, ParamValue::Number(n)) => {
                if n.is_finite() && (self.min..=self.max).contains(n) {
                    Ok(*n)
                } else {
                    Err(format!("must be between {} and {}{unit} (got {n})", self.min, self.max))
                }
            }
        }
    }
}

/// A parameter value as an application or a script writes it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Number(f64),
    /// An enumeration's value, by name.
    Text(String),
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Number(v)
    }
}

impl From<f32> for ParamValue {
    fn from(v: f32) -> Self {
        ParamValue::Number(f64::from(v))
    }
}

impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::Number(f64::from(v))
    }
}

impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_string())
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Number(n) => write!(f, "{n}"),
            ParamValue::Text(t) => write!(f, "{t}"),
        }
    }
}

/// What a message from a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MessageKind {
    /// A log line, with the plugin's level (0 error, 1 warn, 2 info, 3 debug, 4 trace).
    Log(i32),
    /// An event for the application, with the plugin's code.
    Event(i32),
    /// The node faulted and was bypassed.
    Fault,
    /// Messages the node could not keep: a count.
    Dropped(u64),
}

/// A message from a node (a plugin's log line or event, or a fault), delivered on the control side.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// The node's name in the graph.
    pub node: String,
    /// The plugin's id, for plugins.
    pub source: String,
    pub kind: MessageKind,
    /// What the plugin said, as it said it (invalid UTF-8 replaced). Printing it shows it escaped.
    pub text: Untrusted,
}

/// Text from a plugin: kept unmodified, but displayed with every control character escaped (newlines
/// included, so a plugin cannot forge a line of the host's output) and cut to [`Untrusted::MAX_CHARS`].
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Untrusted(String);

impl Untrusted {
    /// Characters shown by [`Display`](fmt::Display) before the text is cut.
    pub const MAX_CHARS: usize = 240;

    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// From bytes, with invalid UTF-8 replaced.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The text as the plugin sent it. Do not print it to a terminal or a log as it is.
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// The text with control characters (C0, DEL, C1), and the Unicode bidirectional and line/paragraph
    /// separator characters, escaped as `\n`, `\r`, `\t` or `\u{..}`, and backslashes doubled.
    pub fn escaped(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for (i, c) in self.0.chars().enumerate() {
            if i == Self::MAX_CHARS {
                out.push_str("...");
                break;
            }
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    out.push_str(&format!("\\u{{{:x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        out
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escaped())
    }
}

impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.escaped())
    }
}

/// A processor that could not be built, initialized or started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

/// The control side of one node: its parameters, as a typed component on the node's entity.
///
/// Implementations are plain data (`#[serde(deny_unknown_fields)]` for files); the
/// [`crate::registry::Registry`] parses them and the engine inserts them on the node's entity, where the
/// application may edit them. Parameters are addressed by index, in the order [`params`](Self::params)
/// lists them.
pub trait NodeSpec: fmt::Debug + Send + Sync + 'static {
    /// The kind's name as written in graph files (`"Eq"`, `"Compressor"`...).
    fn kind(&self) -> &'static str;

    /// Resolves what depends on the graph's folder (a plugin's module and manifest). Called once after
    /// parsing, before [`validate`](Self::validate); the default does nothing.
    fn bind(&mut self, ctx: &BuildContext<'_>) {
        let _ = ctx;
    }

    /// Checks every parameter against its documented range for the graph's format (and, for plugins,
    /// against files found from the graph's folder). Runs before any audio, and after every edit.
    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError>;

    /// Creates the audio-side processor, not yet initialized, set to the current parameter values.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError>;

    /// The automatable parameters, with their ranges for `ctx`'s format. Control side.
    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo>;

    /// The value of parameter `index` as the processor receives it (enumerations: the index).
    fn param(&self, index: usize) -> f64;

    /// Sets parameter `index` in the description (not validated: call [`validate`](Self::validate)).
    fn set_param(&mut self, index: usize, value: f64);

    /// What a processor cannot take as parameter events: everything but the parameters (band kinds, a
    /// plugin's path). Two descriptions of one kind whose shapes and [`Smoothing::Rebuild`] parameters are
    /// equal can share a processor.
    fn shape(&self) -> String {
        String::new()
    }

    /// Who speaks in the node's messages: the kind, or a plugin's id.
    fn source(&self) -> String {
        self.kind().to_string()
    }

    /// Names of the status numbers the node's processor publishes (plugins that declare some).
    fn status_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// A copy, as a new box.
    fn clone_spec(&self) -> Box<dyn NodeSpec>;

    fn as_any(&self) -> &dyn Any;

    fn into_any(self: Box<Self>) -> Box<dyn Any>;

    /// A fresh instance for a processor that faulted and asked for one (see [`PollContext`]), built on
    /// the control side with the current parameters and handed to [`Processor::install`]. `None` for
    /// kinds that never ask.
    fn build_replacement(
        &self,
        ctx: &BuildContext<'_>,
        config: &ProcessConfig,
    ) -> Option<Result<Box<dyn Any + Send>, NodeError>> {
        let _ = (ctx, config);
        None
    }
}

impl Clone for Box<dyn NodeSpec> {
    fn clone(&self) -> Self {
        self.clone_spec()
    }
}

/// A plugin node's health, as it publishes it after each block ([`PollContext::status`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginHealth {
    /// Faults so far (each bypassed the plugin and had it re-created).
    pub faults: u64,
    /// Blocks (`process` calls) whose output was, wholly or in part, the node's bypass (its dry input or
    /// silence) instead of the plugin's.
    pub bypassed_blocks: u64,
    /// Frames of output that were the bypass.
    pub bypassed_frames: u64,
    /// Non-finite output samples replaced with silence.
    pub replaced_samples: u64,
    /// Calls that passed their deadline in wall time while the plugin had not used it (the thread was
    /// preempted): late, which in real time is an underrun, but not the plugin's fault.
    pub preempted_calls: u64,
    /// Memory in use and its cap, in bytes, where the backend knows.
    pub memory: Option<(usize, usize)>,
}

/// What a processor may hand to the control side from the audio thread, without allocating or waiting.
/// The engine passes one to [`Processor::poll`] after each block, on the thread that drives the graph.
pub trait PollContext {
    /// Queues a message (copied into a preallocated slot; truncated to
    /// [`MESSAGE_BYTES`](crate::audio::MESSAGE_BYTES); dropped and counted when the queue is full).
    fn message(&mut self, kind: MessageKind, text: &[u8]);
    /// Hands over an object to be dropped on the control side (a plugin instance that faulted).
    fn retire(&mut self, garbage: Box<dyn Any + Send>);
    /// Asks the control side for a fresh instance ([`NodeSpec::build_replacement`]). False if the request
    /// could not be queued (ask again at the next poll).
    fn request_replacement(&mut self) -> bool;
    /// Publishes a plugin node's health: its faults and what they cost, and its memory.
    fn status(&mut self, health: &PluginHealth);
    /// Records a fault at `frame` (counted from the start of the node's processing).
    fn fault_at(&mut self, frame: u64) {
        let _ = frame;
    }
    /// Publishes a plugin's named status numbers (names from [`NodeSpec::status_names`]).
    fn status_values(&mut self, values: &[f64]) {
        let _ = values;
    }
}

/// The audio side of one node.
///
/// # Lifecycle
/// The engine drives every processor through these steps, each from an ECS system or the audio side:
///
/// 1. [`initialize`](Self::initialize) once, on the control side, with the sample rate, channel count and
///    largest block. All allocation happens here. It may fail (with a message the host shows); the node
///    then does not start.
/// 2. [`start`](Self::start) on the control side, before the processor is handed to the audio side: clear
///    delay lines and filter state.
/// 3. On the audio side, any number of times and in any order: [`process`](Self::process) once per
///    (sub-)block, [`set_param`](Self::set_param) between sub-blocks, [`reset`](Self::reset) for a seek,
///    [`poll`](Self::poll) after a block, [`install`](Self::install) when a replacement arrives. None of
///    these may allocate, free, lock, do I/O or run for a time not bounded by the block length.
///    `process` must be deterministic: the same input and parameter events give the same output bits,
///    whatever the executor, thread or block size.
/// 4. [`stop`](Self::stop) on the control side, after the processor has come back from the audio side.
///    A stopped processor may be started again (step 2).
/// 5. [`cleanup`](Self::cleanup) once, before the processor is dropped (on the control side).
pub trait Processor: Send {
    /// Prepares for `config`. Called once, before anything else.
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError>;

    /// Resets state before the first block after initialize or stop.
    fn start(&mut self) {}

    /// Processes one block in place: `audio` holds the node's input on entry and its output on return.
    /// It has `config.channels` channels and at most `config.max_block` frames.
    fn process(&mut self, audio: &mut AudioOut<'_>);

    /// Takes a new value for parameter `index` (in [`NodeSpec::params`] order, already validated),
    /// smoothing it as its [`Smoothing`] says. Audio side.
    fn set_param(&mut self, index: usize, value: f64) {
        let _ = (index, value);
    }

    /// Clears all state (delay lines, envelopes, filter memories) without allocating, as for a seek.
    fn reset(&mut self) {}

    /// Processing has ended (control side).
    fn stop(&mut self) {}

    /// Releases resources; the processor is dropped next (control side).
    fn cleanup(&mut self) {}

    /// Frames by which the output lags the input. Valid after `initialize`.
    fn latency_frames(&self) -> usize {
        0
    }

    /// Whether [`poll`](Self::poll) should be called after every block (plugins).
    fn polls(&self) -> bool {
        false
    }

    /// Hands messages, retired objects and status to the control side. Audio side, after a block.
    fn poll(&mut self, ctx: &mut dyn PollContext) {
        let _ = ctx;
    }

    /// Takes a replacement built by [`NodeSpec::build_replacement`]; gives it back if it does not fit
    /// (to be dropped on the control side). Audio side.
    fn install(&mut self, replacement: Box<dyn Any + Send>) -> Result<(), Box<dyn Any + Send>> {
        Err(replacement)
    }
}
