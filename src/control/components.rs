//! The components and resources of the control side's `World`.

use crate::audio::{FromAudio, NodeId, ToAudio};
use crate::graph::Endpoint;
use crate::monitor::shared::{NodeStats, SharedMeter};
use crate::node::NodeKind;
use crate::node::{GraphFormat, Layout, NodeSpec, Processor};
use bevy_ecs::prelude::*;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Gives `Sync` to a `Send` value by allowing only exclusive access. `Mutex::get_mut` needs `&mut self`
/// and therefore takes no lock: the mutex is never locked, it only carries the `Sync` proof that
/// `std::sync::Exclusive` would give on stable Rust.
pub(crate) struct Exclusive<T>(Mutex<T>);

impl<T> Exclusive<T> {
    pub fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    pub fn get_mut(&mut self) -> &mut T {
        // Never locked, so never poisoned; recover the value regardless.
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Default> Default for Exclusive<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// The node's name in the graph.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct NodeName(pub String);

/// The node's position in the graph file (or the order it was added in); ties in processing order follow
/// it.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileOrder(pub usize);

/// One edge into a node: from an output port of `from` (a node, or the graph input's entity) into input
/// port `port` of the node holding it (for the graph output's entity, into output `port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wire {
    /// The node it leaves (or the graph input's entity).
    pub from: Entity,
    /// Which output port of `from` (for the graph input, which input).
    pub from_port: usize,
    /// Which input port it enters.
    pub port: usize,
}

impl Wire {
    /// A graph file's edge, its nodes being `entities` (by index) and the graph input `input`.
    pub(crate) fn of(link: &crate::graph::Link, input: Entity, entities: &[Entity]) -> Self {
        let from = match link.from {
            crate::graph::Source::Input => input,
            crate::graph::Source::Node(i) => entities[i],
        };
        Self { from, from_port: link.from_port, port: link.to_port }
    }
}

impl From<Entity> for Wire {
    /// An edge between the first ports.
    fn from(from: Entity) -> Self {
        Self { from, from_port: 0, port: 0 }
    }
}

/// The edges into this node's input ports (or the graph output's), in order; edges into one port are
/// summed in this order.
#[derive(Component, Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs(pub Vec<Wire>);

/// Marks the entity standing for the graph's input.
#[derive(Component, Debug)]
pub struct GraphInput;

/// Marks the entity standing for the graph's output.
#[derive(Component, Debug)]
pub struct GraphOutput;

/// How to reach a node's typed parameter component as a [`NodeSpec`]: its kind's entry in the registry.
#[derive(Component, Clone, Copy, Debug)]
pub(crate) struct SpecAccess(pub NodeKind);

/// The parameters the audio side has (or the processor held here was built with), to diff against.
#[derive(Component, Debug)]
pub(crate) struct Baseline {
    pub spec: Box<dyn NodeSpec>,
    pub values: Vec<f64>,
}

/// The node's processor while the control side holds it (built but not yet sent, or back after a stop or
/// after the node stopped reaching the output). While the processor runs it is on the audio side.
#[derive(Component, Default)]
pub(crate) struct ProcessorSlot(pub Exclusive<Option<Box<dyn Processor>>>);

/// Where a node is in its lifecycle.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Spawned; its processor is not built yet.
    Created,
    /// Its processor is built and initialized, and waits to be sent.
    Initialized,
    /// On the audio side.
    Running,
    /// Its processor is back from the audio side, stopped (after `Engine::stop`, or a graph edit).
    Stopped,
    /// Its processor was cleaned up and dropped.
    CleanedUp,
    /// Building or initializing failed, with the reason.
    Failed(String),
    /// Not connected to the output: not processed.
    Pruned,
}

/// The node's identity and records on the audio side, while its processor is there.
#[derive(Component, Clone)]
pub struct AudioNode {
    /// The node's identity on the audio side, stable while it keeps its processor.
    pub id: NodeId,
    /// What the audio side records about the node.
    pub stats: Arc<NodeStats>,
    /// Whether the processor wants [`crate::node::Processor::poll`] after each block.
    pub polls: bool,
    /// The port widths the processor was prepared for.
    pub layout: Layout,
}

/// The port widths of the processor held on the node (in its [`ProcessorSlot`], or on the audio side):
/// a compile that resolves others builds a new one.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreparedFor(pub Layout);

/// The node's description changed in a way its processor cannot take as parameter events (a band's kind,
/// a limiter's lookahead): the next compile builds a new processor and crossfades to it.
#[derive(Component, Debug)]
pub(crate) struct NeedsRebuild;

/// The node is taken out of the signal path (its inputs feed its outputs directly), crossfaded.
#[derive(Component, Debug)]
pub struct Bypassed;

/// The node's output is metered.
#[derive(Component, Clone)]
pub struct Metered(pub Arc<SharedMeter>);

/// Latency in frames: the node's own, and from the graph input to the node's output.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Frames by which the node's own output lags its input.
    pub own: usize,
    /// Frames from the graph's input to the node's output, compensation included.
    pub at_output: usize,
}

/// Timing of a node's processing, as last gathered by the monitor.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeTiming {
    /// Calls it processed: blocks, and parts of blocks where a parameter event was due.
    pub calls: u64,
    /// Mean processing time per block (ns).
    pub mean_ns: f64,
    /// Median processing time per block (ns).
    pub p50_ns: u64,
    /// 99th percentile of the processing time per block (ns).
    pub p99_ns: u64,
    /// Longest processing time of a block (ns).
    pub max_ns: u64,
    /// Faults the node's processor reported (plugins).
    pub faults: u64,
    /// A plugin's linear memory and its cap, in bytes.
    pub memory: Option<(usize, usize)>,
}

/// Levels at a node's output, as last gathered (only on metered nodes).
#[derive(Component, Clone)]
pub struct NodeMeter(pub crate::monitor::Meter);

/// Graph-wide figures, as last gathered by the monitor.
#[derive(Resource, Clone, Default)]
pub struct GraphMetrics {
    /// Blocks processed.
    pub blocks: u64,
    /// Frames processed.
    pub frames: u64,
    /// Frames processed while the monitor was on.
    pub timed_frames: u64,
    /// Time spent processing them (ns).
    pub busy_ns: u64,
    /// Blocks that took longer than their real-time duration.
    pub blocks_over_budget: u64,
    /// Processing time per block.
    pub block_timing: crate::monitor::Timing,
    /// Levels at the graph's output.
    pub output: crate::monitor::Meter,
    /// Non-finite input samples replaced with silence.
    pub nonfinite_input: u64,
}

/// Engine-wide settings.
#[derive(Resource, Debug, Clone)]
pub(crate) struct EngineConfig {
    pub format: GraphFormat,
    /// The application chose the rate ([`super::EngineOptions::sample_rate`]): graphs applied later are
    /// prepared at it whatever their files say.
    pub rate_chosen: bool,
    /// The graph's inputs and outputs.
    pub inputs: Vec<Endpoint>,
    pub outputs: Vec<Endpoint>,
    pub max_block: usize,
    /// Blocks each run of the audio side may hold (see [`super::EngineOptions::batch`]).
    pub batch: usize,
    pub threads: usize,
    pub monitor: bool,
    /// Whether meters measure loudness.
    pub loudness: crate::LoudnessMetering,
    /// Whether blocks are due in real time (see [`super::EngineOptions::realtime`]).
    pub realtime: bool,
    pub base_dir: PathBuf,
    /// The file the graph came from (for errors and reloads).
    pub file: String,
    /// Length of the crossfade to a new plan, in frames.
    pub crossfade_frames: usize,
}

/// The compiled processing order, for display and tools.
#[derive(Resource, Debug, Clone, Default)]
pub struct Plan {
    /// Node entities in execution order.
    pub order: Vec<Entity>,
    /// Their names.
    pub names: Vec<String>,
    /// Levels of branches, as indices into `order`. Branches of a level may run concurrently.
    pub levels: Vec<Vec<Vec<usize>>>,
    /// Frames from graph input to graph output.
    pub latency: usize,
    /// Nodes that feed nothing that reaches the output; they are not run.
    pub pruned: Vec<String>,
    /// Compensating delays on edges: (from, to, frames).
    pub compensations: Vec<(String, String, usize)>,
}

/// The queues to and from the audio side, and what waits to be sent.
#[derive(Resource)]
pub(crate) struct Link {
    pub tx: Exclusive<rtrb::Producer<ToAudio>>,
    pub rx: Exclusive<rtrb::Consumer<FromAudio>>,
    pub outgoing: Exclusive<VecDeque<ToAudio>>,
}

impl Link {
    /// Queues a message for the audio side, behind anything still waiting.
    pub fn send(&mut self, msg: ToAudio) {
        self.outgoing.get_mut().push_back(msg);
        self.flush();
    }

    /// Sends what fits into the queue.
    pub fn flush(&mut self) {
        let Link { tx, outgoing, .. } = self;
        let (tx, outgoing) = (tx.get_mut(), outgoing.get_mut());
        while let Some(msg) = outgoing.pop_front() {
            if let Err(rtrb::PushError::Full(msg)) = tx.push(msg) {
                outgoing.push_front(msg);
                break;
            }
        }
    }
}

/// The control side's view of the audio side.
#[derive(Resource, Default)]
pub(crate) struct AudioState {
    /// The plan the audio side runs (or will once it takes the last one sent).
    pub running: Option<super::compile::PlanDesc>,
    /// A transition was sent and its crossfade has not been reported over.
    pub in_flight: bool,
    /// The topology (or a node's shape) changed since the last compile.
    pub dirty: bool,
    /// A stop was sent and not yet acknowledged; the plan is off the audio side.
    pub stopping: bool,
    pub stopped: bool,
    /// Ids in use on the audio side, and ids free for reuse.
    pub next_id: NodeId,
    pub free_ids: Vec<NodeId>,
}

impl AudioState {
    pub fn allocate_id(&mut self) -> NodeId {
        self.free_ids.pop().unwrap_or_else(|| {
            self.next_id += 1;
            self.next_id - 1
        })
    }
}

/// Problems found on the control side after start (a component edited to an invalid value, a graph edit
/// that does not compile, a broken file reload): kept for [`crate::Engine::take_errors`] and sent to
/// subscribers.
#[derive(Resource, Default)]
pub(crate) struct Inbox {
    pub messages: Vec<crate::node::Message>,
    pub events: Vec<super::EngineEvent>,
}
