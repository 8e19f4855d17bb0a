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

pub mod buffer;
pub mod kind;
pub mod message;
pub mod param;
pub mod port;

pub use buffer::{AudioIn, AudioOut};
pub use kind::{NodeKind, ParseFn, Registry, SpecComponent, parse_ron};
pub use message::{MESSAGE_BYTES, Message, MessageKind, PluginHealth, PollContext, STATUS_VALUES, Untrusted};
pub use param::{ParamError, ParamInfo, ParamValue, RAMP_MS, RAMP_STEP, Smoothing};
pub use port::{Layout, MAX_CHANNELS, MAX_PORTS, Port, Ports, Width};

use std::any::Any;
use std::fmt;
use std::path::Path;

/// The format a processor is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels in every block the node sees: room for its inputs and for its outputs
    /// ([`Layout::block_channels`]); for an effect, its width.
    pub channels: usize,
    /// The largest `frames` any call to [`Processor::process`] will pass.
    pub max_block: usize,
    /// Whether blocks are due in real time (a device callback, `play`) rather than rendered offline
    /// (`render`, `bench`), where nothing is late. Plugin nodes charge a plugin for its own CPU time in
    /// either case; their time-budget watchdog runs only in real time.
    pub realtime: bool,
    /// The width of each of the node's ports, and so where each lies in the block (see [`port`]).
    pub layout: Layout,
}

impl ProcessConfig {
    /// An effect's format (one input and one output of `channels`), offline.
    pub fn effect(sample_rate: u32, channels: usize, max_block: usize) -> Self {
        Self { sample_rate, channels, max_block, realtime: false, layout: Layout::effect(channels) }
    }
}

/// The graph-wide format a node's parameters are validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: usize,
}

impl GraphFormat {
    /// Half the sample rate: the highest frequency the graph carries.
    pub fn nyquist_hz(&self) -> f64 {
        f64::from(self.sample_rate) / 2.0
    }
}

/// What a node kind may use while validating parameters and building its processor.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The graph's format, against which parameters are validated.
    pub format: GraphFormat,
    /// The folder of the graph file, against which relative paths in parameters resolve.
    pub base_dir: &'a Path,
}

/// A processor that could not be built, initialized or started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

/// The control side of one node: its parameters, as a typed component on the node's entity.
///
/// Implementations are plain data (`#[serde(deny_unknown_fields)]` for files); the
/// [`crate::node::Registry`] parses them and the engine inserts them on the node's entity, where the
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

    /// The plugin's own state as the running plugin holds it (beyond its parameters), hex-encoded, for a
    /// preset: `None` for kinds without one. Control side; the plugin saves it while it plays.
    fn save_state(&self) -> Option<Result<String, String>> {
        None
    }

    /// Sets the state (hex, as [`save_state`](Self::save_state) gives it) that the node's plugin restores
    /// when it is made; a changed state makes a new processor. The default refuses: the kind has none.
    ///
    /// # Errors
    /// A message saying why the state cannot be taken.
    fn set_state(&mut self, state: &str) -> Result<(), String> {
        let _ = state;
        Err(format!("{} nodes have no plugin state", self.kind()))
    }

    /// The file of native code the node loads (a plugin library), found from the graph's folder: `check`
    /// warns when others can write it. `None` for kinds that load none.
    fn native_code(&self, _base_dir: &std::path::Path) -> Option<std::path::PathBuf> {
        None
    }

    /// The files the node reads from the graph's folder (an impulse response, an imported EQ profile):
    /// [`Engine::watch`](crate::Engine::watch) follows them with the graph file. The default reads none.
    fn files(&self, base_dir: &Path) -> Vec<std::path::PathBuf> {
        let _ = base_dir;
        Vec::new()
    }

    /// The node's audio ports for a graph of `format` (see [`port`]). The default is one input `in` and
    /// one output `out` of the graph's width: an effect.
    fn ports(&self, format: &GraphFormat) -> Ports {
        let _ = format;
        Ports::effect()
    }

    /// Checks the parameters against the port widths the graph resolved (a channel index past an
    /// input's last channel); the default accepts any.
    fn check_layout(&self, layout: &Layout) -> Result<(), ParamError> {
        let _ = layout;
        Ok(())
    }

    /// A copy, as a new box.
    fn clone_spec(&self) -> Box<dyn NodeSpec>;

    /// The description as `Any`, to reach its concrete type.
    fn as_any(&self) -> &dyn Any;

    /// The boxed description as `Any`, to take its concrete type.
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
    /// It has `config.channels` channels and at most `config.max_block` frames. A node with several ports
    /// finds its inputs in the block's channels in port order on entry and leaves its outputs there in port
    /// order ([`Layout::input_at`], [`Layout::output_at`]).
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
