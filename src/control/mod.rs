//! The control side: a `bevy_ecs` `World` that is the live model of the graph, and [`Engine`], the handle
//! applications (and `render`, `bench`, `play`) use.
//!
//! Every node is an entity with its name, its typed parameter component (`CompressorParams`, `EqParams`,
//! `WasmParams`...), its [`Inputs`] (edges), and what the engine keeps on it: [`Lifecycle`], [`Latency`],
//! [`NodeTiming`], the [`AudioNode`] identity while its processor runs. Applications edit the graph by
//! mutating those components, or through [`Engine::set`], [`Engine::apply`] and friends; systems (see
//! `systems.rs`) turn the edits into work for the audio side, which never sees the `World`:
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

pub(crate) mod compile;
pub mod components;
mod edit;
mod events;
mod metrics;
mod options;
mod params;
mod presets;
pub mod render;
pub(crate) mod systems;
mod watch;

pub use components::*;
pub use events::{EngineEvent, Subscriber};
pub use metrics::MetricsReader;
pub(crate) use metrics::ReaderNode;
pub use options::{EngineOptions, LoudnessMetering, Parallelism};
pub use systems::{ControlSet, ControlUpdate, Monitor};

use crate::audio::workers::Workers;
use crate::audio::{AudioProcessor, AudioSetup, FromAudio, ToAudio};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::monitor::shared::GraphStats;
use crate::node::Registry;
use crate::node::{GraphFormat, Message, NodeSpec};
use bevy_ecs::prelude::*;
use std::sync::{Arc, Mutex};
use systems::{Kinds, ReaderNodes, Stats};

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
    /// [`Error::Node`] if a node fails to build or initialize, [`Error::Options`] for a zero
    /// block size or thread count, [`Error::ThreadPool`] if worker threads cannot be started.
    pub fn new(graph: Graph, options: EngineOptions) -> Result<(Engine, AudioProcessor)> {
        if options.max_block == 0 || options.threads == 0 || options.batch == 0 {
            return Err(Error::Options(
                "invalid engine options: block size, batch and thread count must be at least 1".into(),
            ));
        }
        if options.max_block.saturating_mul(options.batch) > 1 << 20 {
            return Err(Error::Options(
                "invalid engine options: a block times its batch may hold at most 1048576 frames".into(),
            ));
        }
        if !(options.crossfade_ms.is_finite() && (0.0..=1000.0).contains(&options.crossfade_ms)) {
            return Err(Error::Options("invalid engine options: the crossfade must be 0 to 1000 ms".into()));
        }
        let graph = match options.sample_rate {
            Some(rate) => graph.at_rate(rate)?,
            None => graph,
        };
        let heap_baseline = crate::alloc::CountingAllocator::stats().map(|s| s.allocated_total);
        let registry = graph.registry.clone();
        let format = graph.format;
        let (mut to_audio, mut from_control) = rtrb::RingBuffer::new(QUEUE);
        let (mut to_control, mut from_audio) = rtrb::RingBuffer::new(QUEUE);
        prefault(&mut to_audio, &mut from_control, || ToAudio::Reset);
        prefault(&mut to_control, &mut from_audio, || FromAudio::TransitionDone);
        // Offline (batched) runs spend longer than a callback between parallel jobs: serial levels, probes,
        // file reads and writes. Their workers spin through that rather than park and wake late.
        let spin = if options.batch > 1 { options::OFFLINE_SPIN } else { crate::audio::workers::SPIN };
        let workers = if options.threads > 1 { Some(Workers::with_spin(options.threads - 1, spin)?) } else { None };
        let stats = Arc::new(GraphStats::new());
        let audio = AudioProcessor::new(AudioSetup {
            from_control,
            to_control,
            in_channels: graph.endpoints().input_channels(),
            out_channels: graph.endpoints().output_channels(),
            max_block: options.max_block,
            batch: options.batch,
            sample_rate: format.sample_rate,
            workers,
            always_parallel: options.parallelism == Parallelism::Always,
            stats: stats.clone(),
            monitor: options.monitor,
            loudness: options.loudness,
        });
        let mut world = World::new();
        let config = EngineConfig {
            format,
            rate_chosen: options.sample_rate.is_some(),
            inputs: graph.inputs.clone(),
            outputs: graph.outputs.clone(),
            max_block: options.max_block,
            batch: options.batch,
            threads: options.threads,
            monitor: options.monitor,
            loudness: options.loudness,
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
        world.init_resource::<systems::SentNodes>();
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
            return Err(Error::Node { node, message });
        }
        Ok((engine, audio))
    }

    /// Spawns a validated graph's nodes and edges into an empty world.
    fn spawn_graph(&mut self, graph: Graph) -> Result<()> {
        let input = self.endpoint::<GraphInput>();
        let mut entities = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let e = self.world.spawn((NodeName(node.name.clone()), FileOrder(i))).id();
            entities.push(e);
        }
        let resolve = |l: &crate::graph::Link| Wire::of(l, input, &entities);
        let mut inputs = Vec::new();
        for node in &graph.nodes {
            inputs.push(Inputs(node.inputs.iter().map(resolve).collect()));
        }
        let output: Vec<Wire> = graph.output.iter().map(resolve).collect();
        for ((node, e), inputs) in graph.nodes.into_iter().zip(&entities).zip(inputs) {
            let kind = *self.registry.get(node.spec.kind()).ok_or_else(|| Error::Node {
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
            let files = self.node_files();
            if let Some(w) = &mut self.watcher {
                w.follow(files);
            }
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

    /// The node names, in file order.
    pub fn node_names(&mut self) -> Vec<String> {
        let mut q = self.world.query_filtered::<(&NodeName, Option<&FileOrder>), With<SpecAccess>>();
        let mut names: Vec<(usize, String)> =
            q.iter(&self.world).map(|(n, o)| (o.map_or(usize::MAX, |o| o.0), n.0.clone())).collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    /// The graph's sample rate and channel count.
    pub fn format(&self) -> GraphFormat {
        self.config().format
    }

    /// The largest block nodes are called with.
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

    /// The world: the live model of the graph (see the module documentation).
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
