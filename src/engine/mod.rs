//! The ECS core. Every node of a graph is an entity; its parameters ([`NodeParams`]), its processor
//! ([`ProcessorSlot`]), its edges ([`Inputs`]), its [`Lifecycle`] state and its [`Latency`] are components.
//! The graph's `input` and `output` are entities too ([`GraphInput`], [`GraphOutput`]).
//!
//! Systems in one schedule per lifecycle step drive the processors:
//!
//! | schedule | system | does |
//! |---|---|---|
//! | [`Initialize`] | `initialize_processors` | builds each processor from its parameters, initializes it for the format |
//! | [`Compile`] | `compile_plan` | prunes dead nodes, orders the rest in levels and branches, lines up latencies → [`Plan`] |
//! | [`Start`] | `start_processors` | starts the processors and moves them into the audio-side [`Runtime`] resource |
//! | [`Process`] | `process_block` | runs one block through the runtime's executor |
//! | [`Stop`] | `stop_processors` | stops the processors and moves them back onto their entities |
//! | [`Cleanup`] | `cleanup_processors` | cleans up and drops them |

pub mod runtime;

use crate::buffer::{AudioIn, AudioOut};
use crate::graph::{Graph, Source};
use crate::node::{BuildContext, GraphFormat, NodeSpec, ProcessConfig, Processor};
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use runtime::{Exclusive, Executor, Runtime, RuntimeLayout, Src};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The node's name in the graph file.
#[derive(Component, Debug, Clone)]
pub struct NodeName(pub String);

/// The node's position in the graph file; ties in processing order follow it.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileOrder(pub usize);

/// The node's parsed parameters: the control side.
#[derive(Component, Debug)]
pub struct NodeParams(pub Box<dyn NodeSpec>);

/// Entities whose outputs are summed into this node's (or the graph output's) input, in edge order.
#[derive(Component, Debug, Clone, Default)]
pub struct Inputs(pub Vec<Entity>);

/// Marks the entity standing for the graph's input.
#[derive(Component, Debug)]
pub struct GraphInput;

/// Marks the entity standing for the graph's output.
#[derive(Component, Debug)]
pub struct GraphOutput;

/// The node's processor while it is not running. While running it lives in the [`Runtime`] and the slot
/// is empty.
#[derive(Component)]
pub struct ProcessorSlot(Exclusive<Option<Box<dyn Processor>>>);

/// Where a node is in its lifecycle.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Created,
    Initialized,
    Running,
    Stopped,
    CleanedUp,
    /// Building or initializing failed, with the reason.
    Failed(String),
    /// Not connected to the output: never started.
    Pruned,
}

/// Latency in frames: the node's own, and from the graph input to the node's output.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub own: usize,
    pub at_output: usize,
}

/// Timing of a node's processing, as last gathered by the monitor.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeTiming {
    pub calls: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Faults the node's processor reported (plugins).
    pub faults: u64,
    /// A plugin's linear memory and its cap, in bytes.
    pub memory: Option<(usize, usize)>,
}

/// Levels at a node's output, as last gathered (only on nodes passed to [`Engine::meter_node`]).
#[derive(Component, Clone)]
pub struct NodeMeter(pub crate::monitor::Meter);

/// Graph-wide figures, as last gathered by the monitor.
#[derive(Resource, Clone, Default)]
pub struct GraphMetrics {
    pub blocks: u64,
    pub frames: u64,
    pub busy_ns: u64,
    pub blocks_over_budget: u64,
    pub block_timing: crate::monitor::Timing,
    pub output: crate::monitor::Meter,
    pub nonfinite_input: u64,
}

/// Engine-wide settings.
#[derive(Resource, Debug, Clone)]
pub struct EngineConfig {
    pub format: GraphFormat,
    pub max_block: usize,
    pub threads: usize,
    pub parallelism: Parallelism,
    pub monitor: bool,
    pub base_dir: PathBuf,
}

/// Errors raised by lifecycle systems, read by [`Engine`] after each step.
#[derive(Resource, Debug, Default)]
pub struct LifecycleErrors(pub Vec<(String, String)>);

/// The compiled processing order.
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
    /// Compensating delays inserted on edges: (from, to, frames).
    pub compensations: Vec<(String, String, usize)>,
    layout_inputs: Vec<Vec<(Src, usize)>>,
    layout_output: Vec<(Src, usize)>,
}

macro_rules! labels {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(ScheduleLabel, Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name;
    )*};
}

labels!(
    /// Gathers what the audio side recorded into components and resources.
    Monitor,
    /// Builds and initializes processors.
    Initialize,
    /// Computes the [`Plan`].
    Compile,
    /// Starts processors and creates the [`Runtime`].
    Start,
    /// Processes one block.
    Process,
    /// Stops processors.
    Stop,
    /// Cleans up and drops processors.
    Cleanup
);

fn initialize_processors(
    config: Res<EngineConfig>,
    mut errors: ResMut<LifecycleErrors>,
    mut nodes: Query<(&NodeName, &NodeParams, &mut ProcessorSlot, &mut Lifecycle, &mut Latency)>,
) {
    let ctx = BuildContext { format: config.format, base_dir: &config.base_dir };
    let process = ProcessConfig {
        sample_rate: config.format.sample_rate,
        channels: config.format.channels,
        max_block: config.max_block,
    };
    for (name, params, mut slot, mut state, mut latency) in &mut nodes {
        if *state != Lifecycle::Created {
            continue;
        }
        let built = params.0.build(&ctx).and_then(|mut p| p.initialize(&process).map(|()| p));
        match built {
            Ok(p) => {
                latency.own = p.latency_frames();
                *slot.0.get_mut() = Some(p);
                *state = Lifecycle::Initialized;
            }
            Err(e) => {
                errors.0.push((name.0.clone(), e.0.clone()));
                *state = Lifecycle::Failed(e.0);
            }
        }
    }
}

/// The graph's `input` and `output` entities, and which is which.
type Endpoints<'w, 's> = Query<'w, 's, (Entity, Has<GraphInput>), Or<(With<GraphInput>, With<GraphOutput>)>>;

fn compile_plan(
    mut commands: Commands,
    endpoints: Endpoints,
    output: Query<&Inputs, With<GraphOutput>>,
    mut nodes: Query<(Entity, &NodeName, &Inputs, &mut Latency, &mut Lifecycle), With<NodeParams>>,
    order: Query<&FileOrder>,
) {
    let input_entity = endpoints.iter().find(|(_, is_in)| *is_in).map(|(e, _)| e);
    let Ok(output_inputs) = output.single() else {
        return;
    };
    // Node entities in spawn (file) order.
    let mut all: Vec<Entity> = nodes.iter().map(|(e, ..)| e).collect();
    all.sort_by_key(|&e| order.get(e).copied().ok());
    let file_pos: HashMap<Entity, usize> = all.iter().enumerate().map(|(i, e)| (*e, i)).collect();
    let edges: HashMap<Entity, Vec<Entity>> = nodes.iter().map(|(e, _, i, ..)| (e, i.0.clone())).collect();
    let inputs_of = |e: Entity| -> Vec<Entity> { edges.get(&e).cloned().unwrap_or_default() };

    // Keep what reaches the output.
    let mut live: HashMap<Entity, bool> = HashMap::new();
    let mut stack: Vec<Entity> = output_inputs.0.clone();
    while let Some(e) = stack.pop() {
        if Some(e) == input_entity || live.insert(e, true).is_some() {
            continue;
        }
        stack.extend(inputs_of(e));
    }
    let mut plan = Plan::default();
    for &e in &all {
        if !live.contains_key(&e)
            && let Ok((_, name, _, _, mut state)) = nodes.get_mut(e)
        {
            plan.pruned.push(name.0.clone());
            if *state == Lifecycle::Initialized {
                *state = Lifecycle::Pruned;
            }
        }
    }
    let live_nodes: Vec<Entity> = all.iter().copied().filter(|e| live.contains_key(e)).collect();

    // Successor counts (the output counts as a successor).
    let mut successors: HashMap<Entity, usize> = HashMap::new();
    for &e in &live_nodes {
        for s in inputs_of(e) {
            *successors.entry(s).or_default() += 1;
        }
    }
    for &s in &output_inputs.0 {
        *successors.entry(s).or_default() += 1;
    }
    // A node continues its predecessor's branch if it is that node's only successor and has no other input.
    let continues = |e: Entity| -> Option<Entity> {
        match inputs_of(e).as_slice() {
            [p] if Some(*p) != input_entity && successors.get(p) == Some(&1) => Some(*p),
            _ => None,
        }
    };
    let mut next_in_branch: HashMap<Entity, Entity> = HashMap::new();
    for &e in &live_nodes {
        if let Some(p) = continues(e) {
            next_in_branch.insert(p, e);
        }
    }
    let heads: Vec<Entity> = live_nodes.iter().copied().filter(|&e| continues(e).is_none()).collect();
    let mut branch_of: HashMap<Entity, usize> = HashMap::new();
    let mut branches: Vec<Vec<Entity>> = Vec::new();
    for &h in &heads {
        let mut chain = vec![h];
        while let Some(&n) = next_in_branch.get(chain.last().unwrap_or(&h)) {
            chain.push(n);
        }
        for &n in &chain {
            branch_of.insert(n, branches.len());
        }
        branches.push(chain);
    }
    // Level of a branch: one more than the deepest branch feeding its head. Branches form a DAG.
    let mut level: Vec<Option<usize>> = vec![None; branches.len()];
    fn level_of(
        b: usize,
        branches: &[Vec<Entity>],
        branch_of: &HashMap<Entity, usize>,
        inputs_of: &dyn Fn(Entity) -> Vec<Entity>,
        level: &mut Vec<Option<usize>>,
    ) -> usize {
        if let Some(l) = level[b] {
            return l;
        }
        let mut l = 0;
        for p in inputs_of(branches[b][0]) {
            if let Some(&pb) = branch_of.get(&p) {
                l = l.max(level_of(pb, branches, branch_of, inputs_of, level) + 1);
            }
        }
        level[b] = Some(l);
        l
    }
    for b in 0..branches.len() {
        level_of(b, &branches, &branch_of, &inputs_of, &mut level);
    }
    let depth = level.iter().flatten().max().map_or(0, |l| l + 1);
    let mut exec_index: HashMap<Entity, usize> = HashMap::new();
    for l in 0..depth {
        let mut in_level: Vec<usize> = (0..branches.len()).filter(|&b| level[b] == Some(l)).collect();
        in_level.sort_by_key(|&b| file_pos[&branches[b][0]]);
        let mut groups = Vec::new();
        for b in in_level {
            let mut group = Vec::new();
            for &e in &branches[b] {
                exec_index.insert(e, plan.order.len());
                group.push(plan.order.len());
                plan.order.push(e);
            }
            groups.push(group);
        }
        plan.levels.push(groups);
    }

    // Latency: each node's input is as late as its latest source; earlier sources get a delay.
    let src_of = |e: Entity| {
        if Some(e) == input_entity { Src::Input } else { Src::Node(exec_index[&e]) }
    };
    let mut at_output: Vec<usize> = vec![0; plan.order.len()];
    let mut names: Vec<String> = Vec::new();
    for (i, &e) in plan.order.iter().enumerate() {
        let Ok((_, name, inputs, latency, _)) = nodes.get(e) else {
            continue;
        };
        names.push(name.0.clone());
        let lats: Vec<usize> =
            inputs.0.iter().map(|s| if Some(*s) == input_entity { 0 } else { at_output[exec_index[s]] }).collect();
        let arrival = lats.iter().copied().max().unwrap_or(0);
        at_output[i] = arrival + latency.own;
        plan.layout_inputs.push(inputs.0.iter().zip(&lats).map(|(s, l)| (src_of(*s), arrival - l)).collect());
    }
    let lat = |s: &Entity| {
        if Some(*s) == input_entity { 0 } else { at_output[exec_index[s]] }
    };
    plan.latency = output_inputs.0.iter().map(lat).max().unwrap_or(0);
    plan.layout_output = output_inputs.0.iter().map(|s| (src_of(*s), plan.latency - lat(s))).collect();
    let name_of = |s: Src| match s {
        Src::Input => "input".to_string(),
        Src::Node(g) => names[g].clone(),
    };
    for (i, ins) in plan.layout_inputs.iter().enumerate() {
        for &(s, d) in ins.iter().filter(|(_, d)| *d > 0) {
            plan.compensations.push((name_of(s), names[i].clone(), d));
        }
    }
    for &(s, d) in plan.layout_output.iter().filter(|(_, d)| *d > 0) {
        plan.compensations.push((name_of(s), "output".into(), d));
    }
    for (i, &e) in plan.order.iter().enumerate() {
        if let Ok((.., mut latency, _)) = nodes.get_mut(e) {
            latency.at_output = at_output[i];
        }
    }
    plan.names = names;
    commands.insert_resource(plan);
}

/// The rayon pool for the parallel executor (absent with one thread).
#[derive(Resource, Clone)]
pub struct Pool(pub Arc<rayon::ThreadPool>);

fn start_processors(
    mut commands: Commands,
    config: Res<EngineConfig>,
    plan: Res<Plan>,
    pool: Option<Res<Pool>>,
    mut nodes: Query<(&mut ProcessorSlot, &mut Lifecycle)>,
) {
    let mut processors = Vec::with_capacity(plan.order.len());
    for &e in &plan.order {
        let Ok((mut slot, mut state)) = nodes.get_mut(e) else {
            return;
        };
        let Some(mut p) = slot.0.get_mut().take() else {
            return;
        };
        p.start();
        processors.push(p);
        *state = Lifecycle::Running;
    }
    let layout = RuntimeLayout {
        inputs: plan.layout_inputs.clone(),
        output: plan.layout_output.clone(),
        levels: plan.levels.iter().map(|l| l.iter().map(|b| (b[0], b[b.len() - 1] + 1)).collect()).collect(),
    };
    let executor = match pool {
        Some(pool) => Executor::Parallel(pool.0.clone(), config.parallelism == Parallelism::Always),
        None => Executor::Serial,
    };
    commands.insert_resource(Runtime::new(
        processors,
        layout,
        config.format.channels,
        config.max_block,
        config.format.sample_rate,
        executor,
        config.monitor,
    ));
}

/// Copies the audio side's records into [`NodeTiming`] and [`NodeMeter`] components and the
/// [`GraphMetrics`] resource.
fn publish_metrics(
    mut commands: Commands,
    runtime: Option<ResMut<Runtime>>,
    plan: Res<Plan>,
    mut timings: Query<&mut NodeTiming>,
) {
    let Some(mut rt) = runtime else { return };
    let status: Vec<(u64, Option<(usize, usize)>)> = rt
        .nodes
        .iter_mut()
        .map(|n| {
            let p = n.processor.get_mut();
            (p.faults(), p.memory())
        })
        .collect();
    // The audio side records clock ticks; reports are in nanoseconds.
    let ns = crate::clock::ns_per_tick();
    let to_ns = |ticks: u64| (ticks as f64 * ns) as u64;
    for ((node, &e), &(faults, memory)) in rt.nodes.iter().zip(&plan.order).zip(&status) {
        if let Ok(mut t) = timings.get_mut(e) {
            *t = NodeTiming {
                calls: node.timing.calls(),
                mean_ns: node.timing.mean_ns() * ns,
                p50_ns: to_ns(node.timing.quantile_ns(0.5)),
                p99_ns: to_ns(node.timing.quantile_ns(0.99)),
                max_ns: to_ns(node.timing.max_ns()),
                faults,
                memory,
            };
        }
        if let Some(meter) = &node.meter {
            commands.entity(e).insert(NodeMeter((**meter).clone()));
        }
    }
    commands.insert_resource(GraphMetrics {
        blocks: rt.block_timing.calls(),
        frames: rt.frames_processed,
        busy_ns: to_ns(rt.block_timing.total_ns()),
        blocks_over_budget: rt.blocks_over_budget,
        block_timing: rt.block_timing.clone(),
        output: rt.output_meter.clone(),
        nonfinite_input: rt.nonfinite_input(),
    });
}

fn process_block(mut runtime: ResMut<Runtime>) {
    runtime.process();
}

fn stop_processors(
    mut commands: Commands,
    plan: Res<Plan>,
    runtime: Option<ResMut<Runtime>>,
    mut nodes: Query<(&mut ProcessorSlot, &mut Lifecycle)>,
) {
    let Some(mut runtime) = runtime else { return };
    let rt = std::mem::replace(
        &mut *runtime,
        Runtime::new(Vec::new(), RuntimeLayout::default(), 1, 1, 48000, Executor::Serial, false),
    );
    for (&e, mut p) in plan.order.iter().zip(rt.into_processors()) {
        p.stop();
        if let Ok((mut slot, mut state)) = nodes.get_mut(e) {
            *slot.0.get_mut() = Some(p);
            *state = Lifecycle::Stopped;
        }
    }
    commands.remove_resource::<Runtime>();
}

fn cleanup_processors(mut nodes: Query<(&mut ProcessorSlot, &mut Lifecycle)>) {
    for (mut slot, mut state) in &mut nodes {
        if let Some(mut p) = slot.0.get_mut().take() {
            p.cleanup();
            *state = Lifecycle::CleanedUp;
        }
    }
}

/// Options for [`Engine::new`].
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// The largest block [`Engine::process`] accepts.
    pub max_block: usize,
    /// 1 runs the single-threaded reference executor; more runs branches in parallel on a rayon pool of
    /// this many threads.
    pub threads: usize,
    /// How the parallel executor picks between running a level's branches concurrently or one after
    /// another. Either way the output is the same.
    pub parallelism: Parallelism,
    /// Record per-node and per-block timing and the output's levels (see [`Engine::metrics`]). Costs two
    /// clock reads per node per block and one pass over the output.
    pub monitor: bool,
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

impl Default for EngineOptions {
    fn default() -> Self {
        Self { max_block: 512, threads: 1, parallelism: Parallelism::Adaptive, monitor: true }
    }
}

/// A graph that failed to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("node \"{node}\": {message}")]
    Node { node: String, message: String },
    #[error("invalid engine options: {0}")]
    Options(String),
    #[error("cannot start the thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

/// A running graph: an ECS world holding the nodes, and the schedules that drive them.
/// A callback for node messages, see [`Engine::subscribe`].
pub type Subscriber = Box<dyn FnMut(&crate::node::Message) + Send>;

pub struct Engine {
    world: World,
    running: bool,
    subscribers: Vec<Subscriber>,
    /// The counting allocator's total when the engine was created, if it is installed.
    heap_baseline: Option<u64>,
}

impl Engine {
    /// Spawns the graph's nodes, then builds, initializes and starts their processors.
    ///
    /// # Errors
    /// [`EngineError::Node`] if a node fails to build or initialize, [`EngineError::Options`] for a zero
    /// block size or thread count, [`EngineError::ThreadPool`] if threads cannot be started.
    pub fn new(graph: Graph, options: EngineOptions) -> Result<Self, EngineError> {
        if options.max_block == 0 || options.threads == 0 {
            return Err(EngineError::Options("block size and thread count must be at least 1".into()));
        }
        let heap_baseline = crate::alloc::CountingAllocator::stats().map(|s| s.allocated_total);
        let mut world = World::new();
        world.insert_resource(EngineConfig {
            format: graph.format,
            max_block: options.max_block,
            threads: options.threads,
            parallelism: options.parallelism,
            monitor: options.monitor,
            base_dir: graph.base_dir.clone(),
        });
        world.init_resource::<LifecycleErrors>();
        if options.threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(options.threads)
                .thread_name(|i| format!("fxgraph-{i}"))
                .build()?;
            world.insert_resource(Pool(Arc::new(pool)));
        }
        let input = world.spawn((GraphInput, NodeName("input".into()))).id();
        let entities: Vec<Entity> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| world.spawn((NodeName(n.name.clone()), FileOrder(i))).id())
            .collect();
        let resolve = |s: &Source| match s {
            Source::Input => input,
            Source::Node(i) => entities[*i],
        };
        for (node, &e) in graph.nodes.into_iter().zip(&entities) {
            let inputs = Inputs(node.inputs.iter().map(resolve).collect());
            world.entity_mut(e).insert((
                NodeParams(node.spec),
                inputs,
                ProcessorSlot(Exclusive::new(None)),
                Lifecycle::Created,
                Latency::default(),
                NodeTiming::default(),
            ));
        }
        world.spawn((GraphOutput, NodeName("output".into()), Inputs(graph.output.iter().map(resolve).collect())));

        let mut add = |label: &dyn Fn() -> Schedule| world.add_schedule(label());
        add(&|| schedule(Initialize, initialize_processors));
        add(&|| schedule(Compile, compile_plan));
        add(&|| schedule(Start, start_processors));
        add(&|| schedule(Process, process_block));
        add(&|| schedule(Stop, stop_processors));
        add(&|| schedule(Cleanup, cleanup_processors));
        add(&|| schedule(Monitor, publish_metrics));

        let mut engine = Self { world, running: false, subscribers: Vec::new(), heap_baseline };
        engine.world.run_schedule(Initialize);
        engine.check_errors()?;
        engine.world.run_schedule(Compile);
        engine.world.run_schedule(Start);
        // Build the process schedule's executor now, so the first block allocates nothing either.
        engine
            .world
            .schedule_scope(Process, |world, schedule| schedule.initialize(world))
            .map_err(|e| EngineError::Options(format!("{e:?}")))?;
        engine.running = true;
        Ok(engine)
    }

    fn check_errors(&mut self) -> Result<(), EngineError> {
        let first = self.world.resource_mut::<LifecycleErrors>().0.drain(..).next();
        if let Some((node, message)) = first {
            self.world.run_schedule(Cleanup);
            return Err(EngineError::Node { node, message });
        }
        Ok(())
    }

    /// Processes one block: `input` and `output` have the graph's channel count and the same number of
    /// frames, at most `max_block`. Allocates nothing, takes no lock and does no I/O (with the parallel
    /// executor, call it from inside [`Engine::run`] for that to hold).
    ///
    /// # Panics
    /// If the engine was stopped, or the blocks do not match the graph's format.
    pub fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        assert!(self.running, "the engine is stopped");
        self.world.resource_mut::<Runtime>().write_input(input);
        self.world.run_schedule(Process);
        self.world.resource::<Runtime>().read_output(output);
    }

    /// Runs `f` on the engine's worker pool (or directly with the serial executor), so the parallel
    /// executor's per-block work needs no hand-over between threads.
    pub fn run<R: Send>(&mut self, f: impl FnOnce(&mut Engine) -> R + Send) -> R {
        match self.world.get_resource::<Pool>().cloned() {
            Some(pool) => pool.0.install(|| f(self)),
            None => f(self),
        }
    }

    /// The parallel executor's worker pool (none with one thread), e.g. to set up its threads.
    pub fn thread_pool(&self) -> Option<&rayon::ThreadPool> {
        self.world.get_resource::<Pool>().map(|p| &*p.0)
    }

    pub fn format(&self) -> GraphFormat {
        self.world.resource::<EngineConfig>().format
    }

    pub fn max_block(&self) -> usize {
        self.world.resource::<EngineConfig>().max_block
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
        self.world.get_resource::<Runtime>().map_or(0, Runtime::nonfinite_input)
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// Measures the levels at a node's output from now on (control side; allocates the meter).
    ///
    /// # Errors
    /// [`EngineError::Options`] if no running node has that name.
    pub fn meter_node(&mut self, name: &str) -> Result<(), EngineError> {
        let index = self.plan().names.iter().position(|n| n == name);
        let mut runtime = self.world.resource_mut::<Runtime>();
        match index.and_then(|i| runtime.nodes.get_mut(i)) {
            Some(node) => {
                node.meter = Some(Box::new(crate::monitor::Meter::new()));
                Ok(())
            }
            None => Err(EngineError::Options(format!("no running node is named \"{name}\""))),
        }
    }

    /// Sets a node's automatable parameter between blocks (control side), e.g. a plugin's `cutoff_hz` by
    /// its id in the plugin's manifest.
    ///
    /// # Errors
    /// [`EngineError::Node`] if no running node has that name or the node refuses the value.
    pub fn set_param(&mut self, node: &str, id: i32, value: f32) -> Result<(), EngineError> {
        let index = self.plan().names.iter().position(|n| n == node);
        let mut runtime = self.world.resource_mut::<Runtime>();
        let err = |message: String| EngineError::Node { node: node.to_string(), message };
        let rt_node =
            index.and_then(|i| runtime.nodes.get_mut(i)).ok_or_else(|| err("no running node has this name".into()))?;
        rt_node.processor.get_mut().set_param(id, value).map_err(err)
    }

    /// Calls `f` with every node message from now on (plugin log lines and events, faults), whenever
    /// messages are collected: by [`Engine::messages`], which [`crate::render::render`] calls every 64
    /// blocks and at the end. Control side.
    pub fn subscribe(&mut self, f: impl FnMut(&crate::node::Message) + Send + 'static) {
        self.subscribers.push(Box::new(f));
    }

    /// Hands over the messages nodes recorded since the last call (plugin log lines and events, faults),
    /// passes each to the subscribers, and reports each as a `tracing` event (target `fxgraph::plugin`, with
    /// the plugin's id and the node). Control side: call it between blocks.
    pub fn messages(&mut self) -> Vec<crate::node::Message> {
        use crate::node::MessageKind;
        let names = self.plan().names.clone();
        let mut runtime = self.world.resource_mut::<Runtime>();
        let mut out = Vec::new();
        for (node, name) in runtime.nodes.iter_mut().zip(&names) {
            node.processor.get_mut().drain_messages(&mut |mut m| {
                m.node = name.clone();
                match m.kind {
                    MessageKind::Log(0) | MessageKind::Fault => {
                        tracing::warn!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, "{}", m.text)
                    }
                    MessageKind::Log(level) if level <= 2 => {
                        tracing::info!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, "{}", m.text)
                    }
                    MessageKind::Event(code) => {
                        tracing::info!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, code, "event: {}", m.text)
                    }
                    _ => tracing::debug!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, "{}", m.text),
                }
                out.push(m);
            });
        }
        for m in &out {
            for f in &mut self.subscribers {
                f(m);
            }
        }
        out
    }

    /// Gathers what the monitor recorded (running the [`Monitor`] schedule), reports it as `tracing`
    /// events (target `fxgraph::monitor`) and returns it. Control side: allocates.
    pub fn metrics(&mut self) -> crate::monitor::MetricsReport {
        use crate::monitor::{MemoryReport, MetricsReport, NodeReport};
        let span = tracing::info_span!(target: "fxgraph::monitor", "metrics");
        let _entered = span.enter();
        self.world.run_schedule(Monitor);
        let world = &self.world;
        let config = world.resource::<EngineConfig>();
        let plan = world.resource::<Plan>();
        let graph = world.get_resource::<GraphMetrics>().cloned().unwrap_or_default();
        let sample_rate = config.format.sample_rate;
        let block_ns = if graph.blocks == 0 {
            0.0
        } else {
            graph.frames as f64 / graph.blocks as f64 * 1e9 / f64::from(sample_rate)
        };
        let nodes: Vec<NodeReport> = plan
            .order
            .iter()
            .zip(&plan.names)
            .map(|(&e, name)| {
                let t = world.get::<NodeTiming>(e).copied().unwrap_or_default();
                NodeReport {
                    name: name.clone(),
                    kind: world.get::<NodeParams>(e).map_or("?", |p| p.0.kind()).to_string(),
                    calls: t.calls,
                    mean_ns: t.mean_ns,
                    p50_ns: t.p50_ns,
                    p99_ns: t.p99_ns,
                    max_ns: t.max_ns,
                    faults: t.faults,
                    memory_bytes: t.memory.map(|m| m.0),
                    memory_cap_bytes: t.memory.map(|m| m.1),
                    budget_share: if block_ns > 0.0 { t.mean_ns / block_ns } else { 0.0 },
                    latency_frames: world.get::<Latency>(e).map_or(0, |l| l.own),
                    levels: world.get::<NodeMeter>(e).map(|m| m.0.levels(sample_rate)),
                }
            })
            .collect();
        let audio_ns = graph.frames as f64 * 1e9 / f64::from(sample_rate);
        let report = MetricsReport {
            executor: if config.threads > 1 { "parallel" } else { "serial" },
            threads: config.threads,
            sample_rate,
            channels: config.format.channels,
            blocks: graph.blocks,
            frames: graph.frames,
            dsp_load: if audio_ns > 0.0 { graph.busy_ns as f64 / audio_ns } else { 0.0 },
            blocks_over_budget: graph.blocks_over_budget,
            block_mean_ns: graph.block_timing.mean_ns() * crate::clock::ns_per_tick(),
            block_p99_ns: (graph.block_timing.quantile_ns(0.99) as f64 * crate::clock::ns_per_tick()) as u64,
            block_max_ns: (graph.block_timing.max_ns() as f64 * crate::clock::ns_per_tick()) as u64,
            nodes,
            output: graph.output.levels(sample_rate),
            memory: MemoryReport::now(self.heap_baseline),
            nonfinite_input_samples: graph.nonfinite_input,
        };
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

    /// Stops processing and cleans up every processor. Also done on drop.
    pub fn stop(&mut self) {
        if self.running {
            self.world.run_schedule(Stop);
            self.world.run_schedule(Cleanup);
            self.running = false;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn schedule<M>(
    label: impl ScheduleLabel,
    system: impl IntoScheduleConfigs<bevy_ecs::system::ScheduleSystem, M>,
) -> Schedule {
    let mut s = Schedule::new(label);
    s.add_systems(system);
    s
}
