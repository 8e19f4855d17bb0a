//! The control side: a `bevy_ecs` `World` that is the live model of the graph, and [`Engine`], the handle
//! applications (and `render`, `bench`, `play`) use.
//!
//! Every node is an entity with its name, its typed parameter component (`CompressorParams`, `EqParams`,
//! `WasmParams`...), its [`Inputs`] (edges), and what the engine keeps on it: [`Lifecycle`], [`Latency`],
//! [`NodeTiming`], the [`AudioNode`] identity while its processor runs. Applications edit the graph by
//! mutating those components, or through [`Engine::set`], [`Engine::apply`] and friends; systems (see
//! [`systems`]) turn the edits into work for the audio side, which never sees the `World`:
//!
//! - a changed parameter becomes a parameter event, which the audio side smooths (see
//!   [`crate::node::Smoothing`]);
//! - a changed topology (edges, nodes added or removed, a node whose shape changed, a bypass) is compiled
//!   into a new plan off the audio thread and sent to the audio side, which **cross-fades** to it.
//!
//! # Graph edits keep state
//! Nodes are matched by name. A node whose description did not change keeps its processor and all its
//! state (a limiter's envelope and delay line, a plugin instance). The switch is a crossfade of
//! [`EngineOptions::crossfade_ms`] (20 ms by default) on the edges, not on whole graphs: during it the audio
//! side runs one transitional plan holding the old and the new nodes, in which each edge whose destination
//! is in both graphs (a kept node, or the output) and that exists in only one of them fades out (old) or in
//! (new) with equal-power gains, `cos` and `sin` of `π/2 · t/T`; every other edge stays at full level. The
//! nodes that leave keep running until their fade ends, then go back to the control side to be dropped.
//! Edits that reorder two kept nodes against each other cannot be cross-faded that way and are refused
//! (remove and re-add one of the nodes instead).

pub mod compile;
pub mod components;
pub mod render;
pub mod systems;
mod watch;

pub use components::*;
pub use systems::{ControlSet, ControlUpdate, Monitor};

use crate::audio::workers::Workers;
use crate::audio::{AudioProcessor, AudioSetup, FromAudio, ToAudio};
use crate::graph::{Graph, GraphError, Source};
use crate::monitor::shared::{GraphStats, MeterWriter, NodeStats, SharedMeter};
use crate::monitor::{MemoryReport, MetricsReport, NodeReport};
use crate::node::Registry;
use crate::node::{BuildContext, GraphFormat, Message, NodeSpec, ParamInfo, ParamValue};
use bevy_ecs::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};
use systems::{Kinds, ReaderNodes, Stats};

/// Options for [`Engine::new`].
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// The largest block the audio side processes at once (longer calls are cut into blocks of this size).
    pub max_block: usize,
    /// 1 runs the single-threaded reference executor; more runs branches in parallel on this many threads
    /// (the thread that drives the audio side, and `threads - 1` workers).
    pub threads: usize,
    /// How the parallel executor picks between running a level's branches concurrently or one after
    /// another. Either way the output is the same.
    pub parallelism: Parallelism,
    /// Record per-node and per-block timing and the output's levels (see [`Engine::metrics`]).
    pub monitor: bool,
    /// Length of the crossfade when the graph's structure changes while it plays.
    pub crossfade_ms: f64,
    /// For offline rendering: how many blocks a run of the audio side may hold. Each level of the graph
    /// then hands its branches to the worker threads once per run instead of once per block, which
    /// amortizes the hand-off; every node still gets blocks of at most `max_block` frames and the output
    /// bits are the same. It delays nothing but costs latency where something waits on each block: keep 1
    /// (the default) for real-time use.
    pub batch: usize,
    /// Whether the audio side runs in real time (a device callback; the default) or offline (rendering a
    /// file, where nothing is late). Either way a plugin's deadline counts only the CPU time it used itself,
    /// so a thread that the machine preempted never faults a plugin, and the output does not depend on how
    /// busy the machine is. In real time a plugin over its time budget for several blocks in a row is also
    /// bypassed (the watchdog); offline a slow plugin only makes the render slower.
    pub realtime: bool,
}

/// See [`EngineOptions::parallelism`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// Measure both ways on the first blocks (and now and then later) and use the faster.
    #[default]
    Adaptive,
    /// Always run branches concurrently (for tests and benchmarks).
    Always,
}

/// How long the workers of a batched (offline) engine spin for the next job before they park.
const OFFLINE_SPIN: std::time::Duration = std::time::Duration::from_millis(5);

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_block: 512,
            threads: 1,
            parallelism: Parallelism::Adaptive,
            monitor: true,
            crossfade_ms: 20.0,
            batch: 1,
            realtime: true,
        }
    }
}

/// A graph that failed to start, or an edit that was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("node \"{node}\": {message}")]
    Node { node: String, message: String },
    #[error("no node is named \"{0}\"")]
    NoSuchNode(String),
    #[error("node \"{node}\" has no parameter `{param}` (it has: {known})")]
    NoSuchParam { node: String, param: String, known: String },
    #[error("node \"{node}\": `{param}` {message}")]
    BadValue { node: String, param: String, message: String },
    #[error("{0}")]
    Graph(#[from] GraphError),
    #[error("the graph cannot be compiled: {0}")]
    Compile(String),
    #[error("invalid engine options: {0}")]
    Options(String),
    #[error("cannot start the worker threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

/// Something the application may want to know, delivered to [`Engine::subscribe`]rs and by
/// [`Engine::events`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A node's message (a plugin's log line or event, a fault).
    Message(Message),
    /// A component edited to an invalid value; the edit was undone.
    EditRefused(String),
    /// A graph edit that could not be compiled; the running graph goes on.
    CompileFailed(String),
    /// A watched graph file was reloaded.
    GraphReloaded(String),
    /// A watched graph file has an error; the last good graph goes on.
    GraphError(GraphError),
}

impl std::fmt::Display for EngineEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineEvent::Message(m) => write!(f, "node \"{}\" ({}): {:?}: {}", m.node, m.source, m.kind, m.text),
            EngineEvent::EditRefused(t) => write!(f, "edit refused: {t}"),
            EngineEvent::CompileFailed(t) => write!(f, "graph edit not applied: {t}"),
            EngineEvent::GraphReloaded(file) => write!(f, "reloaded {file}"),
            EngineEvent::GraphError(e) => write!(f, "error: {e} (the last good graph keeps playing)"),
        }
    }
}

/// A callback for engine events, see [`Engine::subscribe`].
pub type Subscriber = Box<dyn FnMut(&EngineEvent) + Send>;

/// One node as a [`MetricsReader`] reports it.
#[derive(Clone)]
pub(crate) struct ReaderNode {
    pub name: String,
    pub kind: String,
    pub stats: Arc<NodeStats>,
    pub meter: Option<Arc<SharedMeter>>,
    pub latency: usize,
    /// Names of the node's status numbers.
    pub status_names: Vec<String>,
}

/// Reads the monitor's records from any thread while audio runs, without touching the engine or the
/// audio side. Cheap to clone.
#[derive(Clone)]
pub struct MetricsReader {
    stats: Arc<GraphStats>,
    nodes: Arc<Mutex<Vec<ReaderNode>>>,
    config: EngineConfig,
    heap_baseline: Option<u64>,
}

/// How long after a report the meters keep samples for the next one's spectra.
const SPECTRUM_WATCH_SECONDS: u64 = 10;

impl MetricsReader {
    /// Everything the monitor knows now.
    ///
    /// Spectra ([`crate::monitor::Levels::spectrum`]) need the latest 4096 frames, which the audio side
    /// keeps only while someone looks, in buffers of its own. Each report asks it to keep them for the next
    /// 10 seconds of audio and to publish its latest window after its next block (once it holds 4096
    /// frames): a reader that polls has spectra from its second report on, each of the 4096 frames up to
    /// the block after the report before. One that wants them in a single report at the end calls
    /// [`keep_spectrum`](Self::keep_spectrum) first, and the thread that drove the audio side
    /// [`AudioProcessor::publish_spectra`](crate::AudioProcessor::publish_spectra) after its last block
    /// ([`crate::control::render::render`] does).
    pub fn report(&self) -> MetricsReport {
        self.stats.watch_spectrum(SPECTRUM_WATCH_SECONDS * u64::from(self.config.format.sample_rate));
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let report = build_report(&nodes, &self.stats, &self.config, self.heap_baseline);
        self.stats.ask_spectrum();
        report
    }

    /// Frames the audio side has processed.
    pub fn frames(&self) -> u64 {
        self.stats.frames()
    }

    /// Has the meters keep the latest samples for spectra from now on, whether or not anyone reports (an
    /// offline render that reports once at its end). Costs the audio side a mono mix of each metered
    /// block into a buffer of its own.
    pub fn keep_spectrum(&self) {
        self.stats.watch_spectrum(u64::MAX);
    }
}

fn build_report(
    nodes: &[ReaderNode],
    g: &GraphStats,
    config: &EngineConfig,
    heap_baseline: Option<u64>,
) -> MetricsReport {
    let ns = crate::clock::ns_per_tick();
    let to_ns = |ticks: u64| (ticks as f64 * ns) as u64;
    let sr = config.format.sample_rate;
    let block_timing = g.block_timing.snapshot();
    let blocks = block_timing.calls();
    let timed = g.timed_frames();
    let block_ns = if blocks == 0 { 0.0 } else { timed as f64 / blocks as f64 * 1e9 / f64::from(sr) };
    let nodes: Vec<NodeReport> = nodes
        .iter()
        .map(|n| {
            let t = n.stats.timing.snapshot();
            let mean_ns = t.mean_ns() * ns;
            let memory = n.stats.memory();
            let health = n.stats.health();
            NodeReport {
                name: n.name.clone(),
                kind: n.kind.clone(),
                calls: t.calls(),
                mean_ns,
                p50_ns: to_ns(t.quantile_ns(0.5)),
                p99_ns: to_ns(t.quantile_ns(0.99)),
                max_ns: to_ns(t.max_ns()),
                faults: health.faults,
                fault_times_s: n.stats.fault_frames().iter().map(|&f| f as f64 / f64::from(sr)).collect(),
                bypassed_blocks: health.bypassed_blocks,
                bypassed_frames: health.bypassed_frames,
                replaced_samples: health.replaced_samples,
                preempted_calls: health.preempted_calls,
                memory_bytes: memory.map(|m| m.0),
                memory_cap_bytes: memory.map(|m| m.1),
                budget_share: if block_ns > 0.0 { mean_ns / block_ns } else { 0.0 },
                latency_frames: n.latency,
                levels: n.meter.as_ref().map(|m| m.snapshot().levels(sr)),
                status: n.status_names.iter().cloned().zip(n.stats.status_values(n.status_names.len())).collect(),
            }
        })
        .collect();
    let audio_ns = timed as f64 * 1e9 / f64::from(sr);
    let busy_ns = block_timing.total_ns() as f64 * ns;
    MetricsReport {
        executor: if config.threads > 1 { "parallel" } else { "serial" },
        threads: config.threads,
        sample_rate: sr,
        channels: config.format.channels,
        blocks,
        frames: g.frames(),
        dsp_load: if audio_ns > 0.0 { busy_ns / audio_ns } else { 0.0 },
        blocks_over_budget: g.blocks_over_budget(),
        block_mean_ns: block_timing.mean_ns() * ns,
        block_p99_ns: to_ns(block_timing.quantile_ns(0.99)),
        block_max_ns: to_ns(block_timing.max_ns()),
        nodes,
        output: g.output.snapshot().levels(sr),
        memory: MemoryReport::now(heap_baseline),
        nonfinite_input_samples: g.nonfinite_input(),
        dropped_messages: g.dropped_messages(),
    }
}

/// Capacity of each queue between the two sides.
const QUEUE: usize = 4096;

/// Passes `fill` through every slot of a new queue once. Its memory is allocated but not yet touched:
/// otherwise each page would be faulted in when a message first reaches it, a page fault on the audio
/// thread each time and the process's resident memory creeping up over the first thousands of messages
/// (over a megabyte for the queue from the audio side).
fn prefault<T>(tx: &mut rtrb::Producer<T>, rx: &mut rtrb::Consumer<T>, fill: impl Fn() -> T) {
    while tx.push(fill()).is_ok() {}
    while rx.pop().is_ok() {}
}
/// Events kept for [`Engine::events`] and messages for [`Engine::messages`] when nobody takes them: the
/// most recent, so that an application that never asks for one of the two holds a bounded history (a few
/// hundred kilobytes), not one that grows with every fault.
const KEEP: usize = 1024;

/// The control side of a running graph: an ECS world holding the nodes, and the systems that drive the
/// audio side. Not needed on the audio thread; see [`AudioProcessor`].
pub struct Engine {
    world: World,
    registry: Registry,
    subscribers: Vec<Subscriber>,
    delivered: usize,
    heap_baseline: Option<u64>,
    stats: Arc<GraphStats>,
    watcher: Option<watch::Watcher>,
}

impl Engine {
    /// Spawns the graph's nodes, builds, initializes and starts their processors, and returns the control
    /// side and the audio side. Move the [`AudioProcessor`] to the thread that drives audio.
    ///
    /// # Errors
    /// [`EngineError::Node`] if a node fails to build or initialize, [`EngineError::Options`] for a zero
    /// block size or thread count, [`EngineError::ThreadPool`] if worker threads cannot be started.
    pub fn new(graph: Graph, options: EngineOptions) -> Result<(Engine, AudioProcessor), EngineError> {
        if options.max_block == 0 || options.threads == 0 || options.batch == 0 {
            return Err(EngineError::Options("block size, batch and thread count must be at least 1".into()));
        }
        if options.max_block.saturating_mul(options.batch) > 1 << 20 {
            return Err(EngineError::Options("a block times its batch may hold at most 1048576 frames".into()));
        }
        if !(options.crossfade_ms.is_finite() && (0.0..=1000.0).contains(&options.crossfade_ms)) {
            return Err(EngineError::Options("the crossfade must be 0 to 1000 ms".into()));
        }
        let heap_baseline = crate::alloc::CountingAllocator::stats().map(|s| s.allocated_total);
        let registry = graph.registry.clone();
        let format = graph.format;
        let (mut to_audio, mut from_control) = rtrb::RingBuffer::new(QUEUE);
        let (mut to_control, mut from_audio) = rtrb::RingBuffer::new(QUEUE);
        prefault(&mut to_audio, &mut from_control, || ToAudio::Reset);
        prefault(&mut to_control, &mut from_audio, || FromAudio::TransitionDone);
        // Offline (batched) runs spend longer than a callback between parallel jobs: serial levels, probes,
        // file reads and writes. Their workers spin through that rather than park and wake late.
        let spin = if options.batch > 1 { OFFLINE_SPIN } else { crate::audio::workers::SPIN };
        let workers = if options.threads > 1 { Some(Workers::with_spin(options.threads - 1, spin)?) } else { None };
        let stats = Arc::new(GraphStats::new());
        let audio = AudioProcessor::new(AudioSetup {
            from_control,
            to_control,
            channels: format.channels,
            max_block: options.max_block,
            batch: options.batch,
            sample_rate: format.sample_rate,
            workers,
            always_parallel: options.parallelism == Parallelism::Always,
            stats: stats.clone(),
            monitor: options.monitor,
        });
        let mut world = World::new();
        let config = EngineConfig {
            format,
            max_block: options.max_block,
            batch: options.batch,
            threads: options.threads,
            monitor: options.monitor,
            realtime: options.realtime,
            base_dir: graph.base_dir.clone(),
            file: graph.file.clone(),
            crossfade_frames: (options.crossfade_ms * 1e-3 * f64::from(format.sample_rate)).round() as usize,
        };
        world.insert_resource(config);
        world.insert_resource(Link {
            tx: Exclusive::new(to_audio),
            rx: Exclusive::new(from_audio),
            outgoing: Exclusive::default(),
        });
        world.init_resource::<AudioState>();
        world.init_resource::<Inbox>();
        world.init_resource::<Plan>();
        world.init_resource::<GraphMetrics>();
        world.init_resource::<systems::PollingNodes>();
        world.insert_resource(Kinds(registry.clone()));
        world.insert_resource(Stats(stats.clone()));
        world.insert_resource(ReaderNodes(Arc::new(Mutex::new(Vec::new()))));
        world.spawn((GraphInput, NodeName("input".into())));
        world.spawn((GraphOutput, NodeName("output".into()), Inputs::default()));
        world.add_schedule(systems::update_schedule());
        let mut monitor = Schedule::new(Monitor);
        monitor.add_systems(systems::publish_metrics);
        world.add_schedule(monitor);

        let mut engine =
            Engine { world, registry, subscribers: Vec::new(), delivered: 0, heap_baseline, stats, watcher: None };
        engine.spawn_graph(graph)?;
        engine.world.run_schedule(ControlUpdate);
        // A node that cannot be built is an error at start.
        let failure = engine.world.resource_mut::<Inbox>().events.iter().find_map(|e| match e {
            EngineEvent::CompileFailed(text) | EngineEvent::EditRefused(text) => Some(text.clone()),
            _ => None,
        });
        if let Some(text) = failure {
            let (node, message) = match text.strip_prefix("node \"").and_then(|t| t.split_once("\": ")) {
                Some((node, message)) => (node.to_string(), message.to_string()),
                None => (String::new(), text),
            };
            return Err(EngineError::Node { node, message });
        }
        Ok((engine, audio))
    }

    /// Spawns a validated graph's nodes and edges into an empty world.
    fn spawn_graph(&mut self, graph: Graph) -> Result<(), EngineError> {
        let input = self.endpoint::<GraphInput>();
        let mut entities = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let e = self.world.spawn((NodeName(node.name.clone()), FileOrder(i))).id();
            entities.push(e);
        }
        let resolve = |s: &Source| match s {
            Source::Input => input,
            Source::Node(i) => entities[*i],
        };
        let mut inputs = Vec::new();
        for node in &graph.nodes {
            inputs.push(Inputs(node.inputs.iter().map(resolve).collect()));
        }
        let output: Vec<Entity> = graph.output.iter().map(resolve).collect();
        for ((node, e), inputs) in graph.nodes.into_iter().zip(&entities).zip(inputs) {
            let kind = *self.registry.get(node.spec.kind()).ok_or_else(|| EngineError::Node {
                node: node.name.clone(),
                message: format!("kind `{}` is not registered", node.spec.kind()),
            })?;
            let mut entity = self.world.entity_mut(*e);
            (kind.insert)(node.spec, &mut entity);
            entity.insert((SpecAccess(kind), inputs));
        }
        let out = self.endpoint::<GraphOutput>();
        self.world.entity_mut(out).insert(Inputs(output));
        Ok(())
    }

    fn endpoint<T: Component>(&mut self) -> Entity {
        let mut q = self.world.query_filtered::<Entity, With<T>>();
        q.iter(&self.world).next().expect("the engine spawns its endpoints")
    }

    /// Runs the control systems once: takes what the audio side sent (messages, retired objects, requests
    /// for replacement instances), turns edited components into parameter events, compiles a changed
    /// topology and sends it, and calls the subscribers with new events. Call it regularly (every UI
    /// frame, or every few blocks when rendering); nothing reaches the audio side without it.
    pub fn update(&mut self) {
        if let Some(change) = self.watcher.as_mut().and_then(|w| w.changes()) {
            self.reload(&change);
        }
        self.world.run_schedule(ControlUpdate);
        let events = std::mem::take(&mut self.world.resource_mut::<Inbox>().events);
        let new = &events[self.delivered.min(events.len())..];
        for ev in new {
            for f in &mut self.subscribers {
                f(ev);
            }
        }
        let mut events = events;
        if events.len() > KEEP {
            events.drain(..events.len() - KEEP);
        }
        self.delivered = events.len();
        let mut inbox = self.world.resource_mut::<Inbox>();
        inbox.events = events;
        if inbox.messages.len() > KEEP {
            let extra = inbox.messages.len() - KEEP;
            inbox.messages.drain(..extra);
        }
    }

    /// Calls `f` with every engine event from now on (node messages, refused edits, reloads), during
    /// [`update`](Self::update).
    pub fn subscribe(&mut self, f: impl FnMut(&EngineEvent) + Send + 'static) {
        self.subscribers.push(Box::new(f));
    }

    /// Updates, then hands over the node messages (plugin log lines and events, faults) received since
    /// the last call. Each was also reported as a `tracing` event (target `fxgraph::plugin`).
    pub fn messages(&mut self) -> Vec<Message> {
        self.update();
        std::mem::take(&mut self.world.resource_mut::<Inbox>().messages)
    }

    /// Hands over the engine events since the last call.
    pub fn events(&mut self) -> Vec<EngineEvent> {
        self.delivered = 0;
        std::mem::take(&mut self.world.resource_mut::<Inbox>().events)
    }

    /// The entity of the node called `name`.
    pub fn node(&mut self, name: &str) -> Option<Entity> {
        let mut q = self.world.query_filtered::<(Entity, &NodeName), With<SpecAccess>>();
        q.iter(&self.world).find(|(_, n)| n.0 == name).map(|(e, _)| e)
    }

    /// A node's parameters, as a [`NodeSpec`].
    pub fn spec(&self, e: Entity) -> Option<&dyn NodeSpec> {
        let access = self.world.get::<SpecAccess>(e)?;
        (access.0.get)(&self.world, e)
    }

    fn config(&self) -> &EngineConfig {
        self.world.resource::<EngineConfig>()
    }

    /// The automatable parameters of node `name`, in index order.
    ///
    /// # Errors
    /// [`EngineError::NoSuchNode`].
    pub fn params(&mut self, name: &str) -> Result<Vec<ParamInfo>, EngineError> {
        let e = self.node(name).ok_or_else(|| EngineError::NoSuchNode(name.into()))?;
        let config = self.config().clone();
        let spec = self.spec(e).ok_or_else(|| EngineError::NoSuchNode(name.into()))?;
        Ok(spec.params(&BuildContext { format: config.format, base_dir: &config.base_dir }))
    }

    /// The current value of a parameter.
    ///
    /// # Errors
    /// [`EngineError::NoSuchNode`] or [`EngineError::NoSuchParam`].
    pub fn get(&mut self, node: &str, param: &str) -> Result<ParamValue, EngineError> {
        let (e, index, info) = self.find_param(node, param)?;
        let value = self.spec(e).map_or(0.0, |s| s.param(index));
        Ok(match &info.choices {
            Some(c) => ParamValue::Text(c.get(value as usize).cloned().unwrap_or_default()),
            None => ParamValue::Number(value),
        })
    }

    fn find_param(&mut self, node: &str, param: &str) -> Result<(Entity, usize, ParamInfo), EngineError> {
        let params = self.params(node)?;
        let e = self.node(node).ok_or_else(|| EngineError::NoSuchNode(node.into()))?;
        match params.iter().position(|p| p.name == param) {
            Some(i) => Ok((e, i, params[i].clone())),
            None => Err(EngineError::NoSuchParam {
                node: node.into(),
                param: param.into(),
                known: params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Checks a new value and returns the edited description, and whether the change rebuilds the node.
    #[allow(clippy::type_complexity)]
    fn edited(
        &mut self,
        node: &str,
        param: &str,
        value: ParamValue,
    ) -> Result<(Entity, usize, f64, Box<dyn NodeSpec>, bool), EngineError> {
        let (e, index, info) = self.find_param(node, param)?;
        let bad = |message: String| EngineError::BadValue { node: node.into(), param: param.into(), message };
        let v = info.resolve(&value).map_err(bad)?;
        let config = self.config().clone();
        let mut spec = self.spec(e).ok_or_else(|| EngineError::NoSuchNode(node.into()))?.clone_spec();
        spec.set_param(index, v);
        spec.validate(&BuildContext { format: config.format, base_dir: &config.base_dir })
            .map_err(|err| bad(err.message))?;
        Ok((e, index, v, spec, info.smoothing == crate::node::Smoothing::Rebuild))
    }

    /// Sets a parameter by name (`"threshold_db"`, `"bands[1].gain_db"`, a plugin's manifest key) on the
    /// node's component, and sends it to the audio side at once (smoothed as the parameter's
    /// [`Smoothing`](crate::node::Smoothing) says). A parameter whose change rebuilds the node (a limiter's
    /// lookahead) is rebuilt and cross-faded at the next [`update`](Self::update).
    ///
    /// # Errors
    /// [`EngineError::NoSuchNode`], [`EngineError::NoSuchParam`], or [`EngineError::BadValue`] for a value
    /// of the wrong type or out of range; nothing changes then.
    pub fn set(&mut self, node: &str, param: &str, value: impl Into<ParamValue>) -> Result<(), EngineError> {
        self.set_value(node, param, value.into(), None)
    }

    /// Sets a parameter to take effect at frame `frame` of the audio side's clock
    /// ([`AudioProcessor::frame`], also [`MetricsReader::frames`]), sample-accurately; at once if that frame
    /// has passed. Sent immediately, without waiting for [`update`](Self::update).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn set_at(
        &mut self,
        node: &str,
        param: &str,
        value: impl Into<ParamValue>,
        frame: u64,
    ) -> Result<(), EngineError> {
        self.set_value(node, param, value.into(), Some(frame))
    }

    /// The one path of a parameter change by name: found (its index), checked once, written to the node's
    /// component and its baseline (so the diff system has nothing left to do), and sent by index.
    fn set_value(&mut self, node: &str, param: &str, value: ParamValue, at: Option<u64>) -> Result<(), EngineError> {
        let (e, index, v, spec, rebuilds) = self.edited(node, param, value)?;
        let kind = self.world.get::<SpecAccess>(e).map(|a| a.0);
        if !rebuilds && let Some(mut b) = self.world.get_mut::<Baseline>(e) {
            if let Some(slot) = b.values.get_mut(index) {
                *slot = v;
            }
            b.spec = spec.clone_spec();
        }
        if let Some(kind) = kind {
            (kind.set)(&mut self.world, e, spec);
        }
        if !rebuilds {
            let audio = self.world.get::<AudioNode>(e).map(|a| a.id);
            systems::send_param(&mut self.world, e, audio, index, v, at);
        }
        Ok(())
    }

    /// The node names, in file order.
    pub fn node_names(&mut self) -> Vec<String> {
        let mut q = self.world.query_filtered::<(&NodeName, Option<&FileOrder>), With<SpecAccess>>();
        let mut names: Vec<(usize, String)> =
            q.iter(&self.world).map(|(n, o)| (o.map_or(usize::MAX, |o| o.0), n.0.clone())).collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    /// Splits `node.param` at the node whose name is the longest prefix followed by `.` (node names may
    /// hold dots).
    ///
    /// # Errors
    /// [`EngineError::NoSuchNode`] if no node's name is such a prefix.
    pub fn split_key<'k>(&mut self, key: &'k str) -> Result<(&'k str, &'k str), EngineError> {
        let names = self.node_names();
        names
            .iter()
            .filter(|n| key.len() > n.len() + 1 && key.starts_with(n.as_str()) && key.as_bytes()[n.len()] == b'.')
            .max_by_key(|n| n.len())
            .map(|n| (&key[..n.len()], &key[n.len() + 1..]))
            .ok_or_else(|| EngineError::NoSuchNode(key.split('.').next().unwrap_or(key).to_owned()))
    }

    /// Applies a preset as one smoothed change: every value is checked first (node, parameter, range, and
    /// the node's own consistency rules), and only if all pass are they set together, so they reach the
    /// audio side in the same block.
    ///
    /// # Errors
    /// A [`PresetError`](crate::graph::preset::PresetError) located at the offending key; nothing changes then.
    pub fn apply_preset(
        &mut self,
        preset: &crate::graph::preset::Preset,
    ) -> Result<usize, crate::graph::preset::PresetError> {
        use crate::graph::preset::PresetError;
        let err = |position, node: Option<&str>, message: String| PresetError {
            file: preset.file.clone(),
            position,
            node: node.map(str::to_owned),
            message,
        };
        let running = self.config().file.clone();
        if let Some(g) = &preset.graph {
            let name = Path::new(&running).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if *g != name {
                return Err(err(
                    preset.graph_position,
                    None,
                    format!("this preset is for {g}; the running graph is {running}"),
                ));
            }
        }
        let config = self.config().clone();
        let cx = BuildContext { format: config.format, base_dir: &config.base_dir };
        // Per node, in first-mention order: the edited description, and where its first value is.
        type Edit = (Entity, String, Box<dyn NodeSpec>, Option<(usize, usize)>);
        let mut edits: Vec<Edit> = Vec::new();
        for entry in &preset.entries {
            let (node, param) = self.split_key(&entry.key).map_err(|_| {
                err(
                    entry.position,
                    None,
                    format!(
                        "\"{}\" names no node of the running graph (its nodes: {})",
                        entry.key.escape_debug(),
                        self.node_names().join(", ")
                    ),
                )
            })?;
            let (e, index, info) = self
                .find_param(node, param)
                .map_err(|x| err(entry.position, Some(node), strip_node(&x.to_string())))?;
            let v =
                info.resolve(&entry.value).map_err(|m| err(entry.position, Some(node), format!("`{param}` {m}")))?;
            let slot = match edits.iter().position(|(x, ..)| *x == e) {
                Some(i) => i,
                None => {
                    let spec = self.spec(e).ok_or_else(|| err(entry.position, Some(node), "is gone".into()))?;
                    edits.push((e, node.to_owned(), spec.clone_spec(), entry.position));
                    edits.len() - 1
                }
            };
            edits[slot].2.set_param(index, v);
        }
        for (_, node, spec, position) in &edits {
            spec.validate(&cx).map_err(|x| err(*position, Some(node), x.message))?;
        }
        let n = preset.entries.len();
        for (e, _, spec, _) in edits {
            if let Some(kind) = self.world.get::<SpecAccess>(e).map(|a| a.0) {
                (kind.set)(&mut self.world, e, spec);
            }
        }
        Ok(n)
    }

    /// Every automatable parameter's current value, as a preset for the running graph (in file order).
    pub fn snapshot(&mut self) -> crate::graph::preset::Preset {
        let mut entries = Vec::new();
        for node in self.node_names() {
            for p in self.params(&node).unwrap_or_default() {
                if let Ok(value) = self.get(&node, &p.name) {
                    entries.push(crate::graph::preset::PresetEntry {
                        key: format!("{node}.{}", p.name),
                        value,
                        position: None,
                    });
                }
            }
        }
        let file = self.config().file.clone();
        let graph = Path::new(&file).file_name().map(|n| n.to_string_lossy().into_owned());
        crate::graph::preset::Preset { file: String::new(), graph, graph_position: None, entries }
    }

    /// Edits the running graph to match `graph`, by node name: nodes whose description is unchanged keep
    /// their processor and state, parameter-only changes become smoothed events, and anything structural
    /// is compiled into a new plan that the audio side cross-fades to (at the next
    /// [`update`](Self::update)).
    ///
    /// # Errors
    /// [`EngineError::Options`] if the sample rate or channel count differs from the running graph's.
    pub fn apply(&mut self, graph: Graph) -> Result<(), EngineError> {
        let format = self.config().format;
        if graph.format != format {
            return Err(EngineError::Options(format!(
                "{} is {} Hz, {} channels; the running graph is {} Hz, {} channels",
                graph.file, graph.format.sample_rate, graph.format.channels, format.sample_rate, format.channels
            )));
        }
        let input = self.endpoint::<GraphInput>();
        let mut q = self.world.query_filtered::<(Entity, &NodeName), With<SpecAccess>>();
        let existing: Vec<(Entity, String)> = q.iter(&self.world).map(|(e, n)| (e, n.0.clone())).collect();
        let mut entities = Vec::new();
        let mut kept = std::collections::HashSet::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let found = existing.iter().find(|(_, n)| *n == node.name).map(|(e, _)| *e);
            let same_kind = found.and_then(|e| self.spec(e)).is_some_and(|s| s.kind() == node.spec.kind());
            let e = match found {
                Some(e) if same_kind => {
                    kept.insert(e);
                    // Parameters (or shape) only: the diff system decides between events and a rebuild.
                    if let Some(kind) = self.world.get::<SpecAccess>(e).map(|a| a.0) {
                        (kind.set)(&mut self.world, e, node.spec.clone_spec());
                    }
                    if self.world.get::<FileOrder>(e) != Some(&FileOrder(i)) {
                        self.world.entity_mut(e).insert(FileOrder(i));
                    }
                    e
                }
                _ => {
                    if let Some(e) = found {
                        self.world.despawn(e);
                    }
                    let kind = *self.registry.get(node.spec.kind()).ok_or_else(|| EngineError::Node {
                        node: node.name.clone(),
                        message: format!("kind `{}` is not registered", node.spec.kind()),
                    })?;
                    let e = self.world.spawn((NodeName(node.name.clone()), FileOrder(i))).id();
                    let mut entity = self.world.entity_mut(e);
                    (kind.insert)(node.spec.clone_spec(), &mut entity);
                    entity.insert(SpecAccess(kind));
                    kept.insert(e);
                    e
                }
            };
            entities.push(e);
        }
        for (e, _) in existing {
            if !kept.contains(&e) {
                self.despawn_node(e);
            }
        }
        let resolve = |s: &Source| match s {
            Source::Input => input,
            Source::Node(i) => entities[*i],
        };
        for (node, &e) in graph.nodes.iter().zip(&entities) {
            let inputs = Inputs(node.inputs.iter().map(resolve).collect());
            if self.world.get::<Inputs>(e) != Some(&inputs) {
                self.world.entity_mut(e).insert(inputs);
            }
        }
        let out = self.endpoint::<GraphOutput>();
        let output = Inputs(graph.output.iter().map(resolve).collect());
        if self.world.get::<Inputs>(out) != Some(&output) {
            self.world.entity_mut(out).insert(output);
        }
        let mut config = self.world.resource_mut::<EngineConfig>();
        config.base_dir = graph.base_dir.clone();
        config.file = graph.file.clone();
        Ok(())
    }

    /// Removes a node entity; its processor (on the control side) is cleaned up.
    fn despawn_node(&mut self, e: Entity) {
        if let Some(mut slot) = self.world.get_mut::<ProcessorSlot>(e)
            && let Some(mut p) = slot.0.get_mut().take()
        {
            p.stop();
            p.cleanup();
        }
        self.world.despawn(e);
    }

    /// Parses graph text and [`apply`](Self::apply)s it.
    ///
    /// # Errors
    /// The graph's [`GraphError`] (file, line, column, node), or as [`apply`](Self::apply).
    pub fn apply_str(&mut self, text: &str, file: &str, base_dir: &Path) -> Result<(), EngineError> {
        let graph = Graph::parse_with(text, file, base_dir, &self.registry)?;
        self.apply(graph)
    }

    /// Loads a graph file and [`apply`](Self::apply)s it.
    ///
    /// # Errors
    /// As [`apply_str`](Self::apply_str).
    pub fn load(&mut self, path: &Path) -> Result<(), EngineError> {
        let graph = Graph::load_with(path, &self.registry)?;
        self.apply(graph)
    }

    fn reload(&mut self, path: &Path) {
        match self.load(path) {
            Ok(()) => {
                let file = path.display().to_string();
                systems::event(&mut self.world, EngineEvent::GraphReloaded(file));
            }
            Err(EngineError::Graph(e)) => systems::event(&mut self.world, EngineEvent::GraphError(e)),
            Err(e) => systems::event(&mut self.world, EngineEvent::CompileFailed(e.to_string())),
        }
    }

    /// Follows edits to a graph file: each time it changes on disk, the next [`update`](Self::update)
    /// reloads and applies it. A broken edit is reported ([`EngineEvent::GraphError`], with file, line and
    /// column) and the last good graph keeps playing.
    ///
    /// # Errors
    /// If the file's folder cannot be watched.
    pub fn watch(&mut self, path: &Path) -> Result<(), EngineError> {
        let w = watch::Watcher::new(path)
            .map_err(|e| EngineError::Options(format!("cannot watch {}: {e}", path.display())))?;
        self.watcher = Some(w);
        Ok(())
    }

    /// Adds or removes a node from the signal path (its inputs then feed its consumers directly),
    /// crossfaded. A bypassed node's processor is set aside and its state cleared when it comes back.
    ///
    /// # Errors
    /// [`EngineError::NoSuchNode`].
    pub fn bypass(&mut self, node: &str, on: bool) -> Result<(), EngineError> {
        let e = self.node(node).ok_or_else(|| EngineError::NoSuchNode(node.into()))?;
        let mut entity = self.world.entity_mut(e);
        if on {
            if !entity.contains::<Bypassed>() {
                entity.insert(Bypassed);
            }
        } else {
            entity.remove::<Bypassed>();
        }
        Ok(())
    }

    /// Clears all node state on the audio side (as for a seek), at its next block.
    pub fn reset(&mut self) {
        self.world.resource_mut::<Link>().send(ToAudio::Reset);
    }

    /// Turns the monitor on or off at the audio side's next block (it starts as
    /// [`EngineOptions::monitor`] says): per-node and per-block timing, and the levels of the output and of
    /// metered nodes. While it is off the audio side reads no clock and measures nothing, and the records
    /// keep what they had: timing figures and the DSP load cover the blocks processed with it on.
    pub fn set_monitor(&mut self, on: bool) {
        // Calibrated here, once per process, on the control side.
        let ticks_per_frame =
            if on { 1e9 / f64::from(self.format().sample_rate) / crate::clock::ns_per_tick() } else { 0.0 };
        self.world.resource_mut::<EngineConfig>().monitor = on;
        self.world.resource_mut::<Link>().send(ToAudio::Monitor { on, ticks_per_frame });
    }

    /// Stops processing: the audio side plays silence and hands the processors back, which are stopped and
    /// kept for [`start`](Self::start). Idempotent.
    pub fn stop(&mut self) {
        let mut state = self.world.resource_mut::<AudioState>();
        if state.stopped || state.stopping {
            return;
        }
        state.stopping = true;
        self.world.resource_mut::<Link>().send(ToAudio::Stop);
    }

    /// Starts processing again after [`stop`](Self::stop) (the processors start with cleared state), at the
    /// next [`update`](Self::update) after the audio side has handed them back. Idempotent.
    pub fn start(&mut self) {
        let mut state = self.world.resource_mut::<AudioState>();
        if state.stopped {
            state.stopped = false;
            state.dirty = true;
        }
    }

    /// Whether the engine is stopped (the audio side plays silence).
    pub fn is_stopped(&self) -> bool {
        let state = self.world.resource::<AudioState>();
        state.stopped || state.stopping
    }

    /// Whether a crossfade to a new plan is in progress (or a plan has been sent and not yet taken).
    pub fn is_transitioning(&self) -> bool {
        let state = self.world.resource::<AudioState>();
        state.in_flight || state.dirty
    }

    pub fn format(&self) -> GraphFormat {
        self.config().format
    }

    pub fn max_block(&self) -> usize {
        self.config().max_block
    }

    /// The compiled processing order, branch groups and latency.
    pub fn plan(&self) -> &Plan {
        self.world.resource::<Plan>()
    }

    /// Frames by which the output lags the input.
    pub fn latency_frames(&self) -> usize {
        self.plan().latency
    }

    /// Non-finite input samples that were replaced by silence.
    pub fn nonfinite_input(&self) -> u64 {
        self.stats.nonfinite_input()
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world, to edit the graph through its components (see the module documentation).
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The registry the engine's graph was parsed with.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Measures the levels at a node's output from now on (the meter is allocated here).
    ///
    /// # Errors
    /// [`EngineError::NoSuchNode`].
    pub fn meter_node(&mut self, name: &str) -> Result<(), EngineError> {
        let e = self.node(name).ok_or_else(|| EngineError::NoSuchNode(name.into()))?;
        let meter = Arc::new(SharedMeter::new());
        self.world.entity_mut(e).insert(Metered(meter.clone()));
        if let Some(id) = self.world.get::<AudioNode>(e).map(|a| a.id) {
            self.world.resource_mut::<Link>().send(ToAudio::Meter { node: id, meter: Some(MeterWriter::new(meter)) });
        }
        systems::refresh_reader(&mut self.world);
        Ok(())
    }

    /// A reader of the monitor's records for any thread.
    pub fn metrics_reader(&self) -> MetricsReader {
        MetricsReader {
            stats: self.stats.clone(),
            nodes: self.world.resource::<ReaderNodes>().0.clone(),
            config: self.config().clone(),
            heap_baseline: self.heap_baseline,
        }
    }

    /// Gathers what the monitor recorded (running the [`Monitor`] schedule, which fills the
    /// [`NodeTiming`] and [`NodeMeter`] components and the [`GraphMetrics`] resource), reports it as
    /// `tracing` events (target `fxgraph::monitor`) and returns it. Control side: allocates.
    pub fn metrics(&mut self) -> MetricsReport {
        let span = tracing::info_span!(target: "fxgraph::monitor", "metrics");
        let _entered = span.enter();
        self.update();
        self.world.run_schedule(Monitor);
        let report = self.metrics_reader().report();
        for n in &report.nodes {
            tracing::info!(
                target: "fxgraph::monitor",
                node = %n.name, kind = %n.kind, calls = n.calls, mean_ns = n.mean_ns, p99_ns = n.p99_ns,
                max_ns = n.max_ns, budget_share = n.budget_share, "node timing"
            );
        }
        tracing::info!(
            target: "fxgraph::monitor",
            blocks = report.blocks, dsp_load = report.dsp_load, over_budget = report.blocks_over_budget,
            peak_dbfs = report.output.peak_dbfs, rms_dbfs = report.output.rms_dbfs,
            clipped = report.output.clipped_samples, rss_bytes = report.memory.rss_bytes,
            "graph metrics"
        );
        report
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Processors held here are cleaned up; those still on the audio side go with it.
        let mut q = self.world.query::<&mut ProcessorSlot>();
        for mut slot in q.iter_mut(&mut self.world) {
            if let Some(mut p) = slot.0.get_mut().take() {
                p.cleanup();
            }
        }
    }
}

/// An engine error's message without its leading `node "NAME": ` (the preset error names the node).
fn strip_node(message: &str) -> String {
    match message.strip_prefix("node \"").and_then(|m| m.split_once("\" ")) {
        Some((_, rest)) => rest.to_owned(),
        None => message.to_owned(),
    }
}
