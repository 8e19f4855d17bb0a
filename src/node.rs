//! The node contract shared by built-in DSP and plugin nodes.
//!
//! A node kind has two halves, as in Firewheel and kira: a [`NodeSpec`] on the control side (the parsed,
//! validated parameters of one node in a graph file, stored as a component on the node's entity) and a
//! [`Processor`] on the audio side (the state that turns input blocks into output blocks).

use crate::buffer::{AudioIn, AudioOut};
use std::fmt;
use std::path::Path;

/// The format a processor is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels in every block the node sees (input and output alike).
    pub channels: usize,
    /// The largest `frames` any call to [`Processor::process`] will pass.
    pub max_block: usize,
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

/// What a node kind may use while building its processor.
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

/// What a message from a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MessageKind {
    /// A log line, with the plugin's level (0 error, 1 warn, 2 info, 3 debug, 4 trace).
    Log(i32),
    /// An event for the application, with the plugin's code.
    Event(i32),
    /// The node faulted and was bypassed.
    Fault,
    /// Messages the node could not keep (more than fit in a block): a count.
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
    pub text: String,
}

/// A processor that could not be built, initialized or started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

/// The control side of one node: parameters parsed from a graph file.
///
/// Implementations are plain data with `#[serde(deny_unknown_fields)]`; the [`crate::registry::Registry`]
/// parses them and the engine stores them on the node's entity.
pub trait NodeSpec: fmt::Debug + Send + Sync + 'static {
    /// The kind's name as written in graph files (`"Eq"`, `"Compressor"`...).
    fn kind(&self) -> &'static str;

    /// Checks every parameter against its documented range for the graph's format (and, for plugins,
    /// against files found from the graph's folder). Runs before any audio.
    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError>;

    /// Creates the audio-side processor. It is not yet initialized.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError>;
}

/// The audio side of one node.
///
/// # Lifecycle
/// The engine drives every processor through these steps, each from an ECS system, in this order:
///
/// 1. [`initialize`](Self::initialize) once, with the sample rate, channel count and largest block. All
///    allocation happens here. It may fail; the graph then does not start.
/// 2. [`start`](Self::start) before the first block: clear delay lines and filter state.
/// 3. [`process`](Self::process) once per block, on the audio path. It must not allocate, lock, do I/O or
///    run for a time that is not bounded by the block length. It must be deterministic: the same input gives
///    the same output bits, whatever the executor or thread.
/// 4. [`stop`](Self::stop) when processing ends. A stopped processor may be started again (step 2).
/// 5. [`cleanup`](Self::cleanup) once, before the processor is dropped, to release what `initialize` took.
pub trait Processor: Send {
    /// Prepares for `config`. Called once, before anything else.
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError>;

    /// Resets state before the first block after initialize or stop.
    fn start(&mut self) {}

    /// Processes one block. `input` and `output` have `config.channels` channels and the same number of
    /// frames, at most `config.max_block`.
    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>);

    /// Processing has ended.
    fn stop(&mut self) {}

    /// Releases resources; the processor is dropped next.
    fn cleanup(&mut self) {}

    /// Frames by which the output lags the input. Valid after `initialize`.
    fn latency_frames(&self) -> usize {
        0
    }

    /// Faults so far (plugins: traps, error returns, bad output, overruns); read on the control side.
    fn faults(&self) -> u64 {
        0
    }

    /// Memory the node holds outside the host's heap, and its cap, in bytes (a plugin's linear memory).
    fn memory(&self) -> Option<(usize, usize)> {
        None
    }

    /// Hands over the messages (log lines, events, faults) recorded since the last call (control side).
    fn drain_messages(&mut self, sink: &mut dyn FnMut(Message)) {
        let _ = sink;
    }

    /// Sets an automatable parameter by id, between blocks (control side).
    ///
    /// # Errors
    /// If the node has no such parameter, or the value is out of its range.
    fn set_param(&mut self, id: i32, value: f32) -> Result<(), String> {
        let _ = value;
        Err(format!("this node has no automatable parameter {id}"))
    }
}
