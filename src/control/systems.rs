//! The control side's systems, run in this order by [`crate::Engine::update`] (one schedule, chained sets,
//! as bevy_seedling orders acquire → connect → queue → flush):
//!
//! | set | systems | does |
//! |---|---|---|
//! | [`ControlSet::Receive`] | `receive` | takes what the audio side sent: retired plans and instances (stopped, cleaned up and dropped here), node messages, requests for replacement instances (built here), acknowledgements |
//! | [`ControlSet::Attach`] | `attach_access`, `adopt` | gives entities spawned with a parameter component their engine components and a [`Baseline`] |
//! | [`ControlSet::Diff`] | `diff_params`, `detect_topology` | turns changed parameter components into parameter events (or a rebuild), and notices edited edges, removed nodes and bypasses |
//! | [`ControlSet::Compile`] | `compile` | builds and initializes new processors, compiles the changed topology into a plan, starts the processors and sends the plan to cross-fade to |
//! | [`ControlSet::Flush`] | `flush` | pushes queued messages into the audio side's queue |
//!
//! The `Monitor` schedule's `publish_metrics` copies the monitor's records into [`NodeTiming`] and
//! [`NodeMeter`] components and the [`GraphMetrics`] resource.

use super::EngineEvent;
use super::compile::{self, NodeRuntime, PlanDesc, SrcRef, SteadyNode, Wiring};
use super::components::*;
use crate::audio::plan::Plan as AudioPlan;
use crate::audio::{FromAudio, NodeId, ToAudio};
use crate::graph::{self, Source};
use crate::monitor::shared::{GraphStats, NodeStats};
use crate::node::Registry;
use crate::node::{BuildContext, Layout, Message, NodeSpec, ProcessConfig, Processor, Smoothing};
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The control side's update schedule.
#[derive(ScheduleLabel, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlUpdate;

/// Gathers what the audio side recorded into components and resources.
#[derive(ScheduleLabel, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Monitor;

/// The ordered steps of [`ControlUpdate`].
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlSet {
    /// Takes what the audio side sent.
    Receive,
    /// Gives new node entities what the engine keeps on every node.
    Attach,
    /// Turns edited components into parameter events, and notices topology changes.
    Diff,
    /// Builds processors and compiles a changed topology into a plan.
    Compile,
    /// Sends what is queued for the audio side.
    Flush,
}

/// The node kinds the engine knows, for systems that need a kind's glue.
#[derive(Resource, Clone)]
pub(crate) struct Kinds(pub Registry);

/// The graph's shared monitor records.
#[derive(Resource, Clone)]
pub(crate) struct Stats(pub Arc<GraphStats>);

/// The node list the [`super::MetricsReader`] reports on.
#[derive(Resource, Clone)]
pub(crate) struct ReaderNodes(pub Arc<std::sync::Mutex<Vec<super::ReaderNode>>>);

/// Builds the update schedule. The systems reach each kind's parameter component through the kind's
/// [`NodeKind`](crate::node::NodeKind), so the schedule is the same for every registry.
pub(crate) fn update_schedule() -> Schedule {
    let mut s = Schedule::new(ControlUpdate);
    s.configure_sets(
        (ControlSet::Receive, ControlSet::Attach, ControlSet::Diff, ControlSet::Compile, ControlSet::Flush).chain(),
    );
    s.add_systems(receive.in_set(ControlSet::Receive));
    s.add_systems((attach_access, adopt).chain().in_set(ControlSet::Attach));
    s.add_systems((diff_params, detect_topology).chain().in_set(ControlSet::Diff));
    s.add_systems(compile_system.in_set(ControlSet::Compile));
    s.add_systems(flush.in_set(ControlSet::Flush));
    s
}

/// The build context of the engine's format.
fn ctx(config: &EngineConfig) -> BuildContext<'_> {
    BuildContext { format: config.format, base_dir: &config.base_dir }
}

fn process_config(config: &EngineConfig, layout: Layout) -> ProcessConfig {
    ProcessConfig {
        sample_rate: config.format.sample_rate,
        channels: layout.block_channels(),
        max_block: config.max_block,
        realtime: config.realtime,
        layout,
    }
}

/// The entity whose processor has audio-side id `id`.
fn entity_of(world: &mut World, id: NodeId) -> Option<Entity> {
    let mut q = world.query::<(Entity, &AudioNode)>();
    q.iter(world).find(|(_, a)| a.id == id).map(|(e, _)| e)
}

fn spec_of(world: &World, e: Entity) -> Option<&dyn NodeSpec> {
    let access = world.get::<SpecAccess>(e)?;
    (access.0.get)(world, e)
}

fn name_of(world: &World, e: Entity) -> String {
    world.get::<NodeName>(e).map_or_else(String::new, |n| n.0.clone())
}

/// Records an event for the application.
pub(crate) fn event(world: &mut World, event: EngineEvent) {
    match &event {
        EngineEvent::EditRefused(text) | EngineEvent::CompileFailed(text) => {
            tracing::warn!(target: "fxgraph::control", "{text}")
        }
        EngineEvent::GraphError(e) => tracing::warn!(target: "fxgraph::control", "{e}"),
        EngineEvent::GraphReloaded(file) => tracing::info!(target: "fxgraph::control", "reloaded {file}"),
        EngineEvent::Message(_) => {}
    }
    world.resource_mut::<Inbox>().events.push(event);
}

fn receive(world: &mut World) {
    let msgs: Vec<FromAudio> = {
        let mut link = world.resource_mut::<Link>();
        let rx = link.rx.get_mut();
        std::iter::from_fn(|| rx.pop().ok()).collect()
    };
    for msg in msgs {
        match msg {
            FromAudio::Retired(obj) => retired(world, obj),
            FromAudio::RetiredMeter(meter) => drop(meter),
            FromAudio::Message(raw) => {
                let text = crate::node::Untrusted::from_bytes(&raw.bytes[..raw.len]);
                let (node, source) = match entity_of(world, raw.node) {
                    Some(e) => (name_of(world, e), spec_of(world, e).map_or_else(String::new, |s| s.source())),
                    None => (String::new(), String::new()),
                };
                let m = Message { node, source, kind: raw.kind, text };
                log_message(&m);
                world.resource_mut::<Inbox>().messages.push(m.clone());
                event(world, EngineEvent::Message(m));
            }
            FromAudio::NeedReplacement(id) => replace(world, id),
            FromAudio::PluginParam(id, index, value) => plugin_param(world, id, index, value),
            FromAudio::TransitionDone => world.resource_mut::<AudioState>().in_flight = false,
            FromAudio::Stopped => {
                let mut state = world.resource_mut::<AudioState>();
                state.stopping = false;
                state.stopped = true;
                state.in_flight = false;
                state.running = None;
            }
        }
    }
}

/// Reports a node message through `tracing` (target `fxgraph::plugin`), its text already escaped.
fn log_message(m: &Message) {
    use crate::node::MessageKind;
    match m.kind {
        MessageKind::Log(0) | MessageKind::Fault => {
            tracing::warn!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, "[plugin] {}", m.text)
        }
        MessageKind::Log(level) if level <= 2 => {
            tracing::info!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, "[plugin] {}", m.text)
        }
        MessageKind::Event(code) => {
            tracing::info!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, code, "[plugin event] {}", m.text)
        }
        _ => tracing::debug!(target: "fxgraph::plugin", plugin = %m.source, node = %m.node, "[plugin] {}", m.text),
    }
}

/// An object back from the audio side: a plan's processors go back to their entities (if the node still
/// exists with that processor) or are stopped, cleaned up and dropped; anything else is dropped.
fn retired(world: &mut World, obj: Box<dyn std::any::Any + Send>) {
    let Ok(mut plan) = obj.downcast::<AudioPlan>() else {
        return;
    };
    let mut plans = vec![];
    if let Some(next) = plan.next.take() {
        plans.push(next);
    }
    plans.push(plan);
    for plan in plans {
        for slot in plan.slots {
            let Some(mut p) = slot.processor else { continue };
            p.stop();
            let owner = entity_of(world, slot.id);
            world.resource_mut::<AudioState>().free_ids.push(slot.id);
            match owner {
                Some(e) => {
                    let pruned = world.get::<Lifecycle>(e) == Some(&Lifecycle::Pruned);
                    let mut entity = world.entity_mut(e);
                    entity.remove::<AudioNode>();
                    if let Some(mut held) = entity.get_mut::<ProcessorSlot>() {
                        *held.0.get_mut() = Some(p);
                    }
                    if !pruned {
                        entity.insert(Lifecycle::Stopped);
                    }
                }
                None => {
                    p.cleanup();
                    drop(p);
                }
            }
        }
    }
}

/// A plugin set parameter `index` itself: the description and its baseline take the value, so that the
/// diff finds nothing to send back.
fn plugin_param(world: &mut World, id: NodeId, index: usize, value: f64) {
    let Some(e) = entity_of(world, id) else { return };
    let Some(mut spec) = spec_of(world, e).map(NodeSpec::clone_spec) else { return };
    spec.set_param(index, value);
    let now = spec.param(index);
    if let Some(mut baseline) = world.get_mut::<Baseline>(e)
        && let Some(v) = baseline.values.get_mut(index)
    {
        *v = now;
    }
    if let Some(kind) = world.get::<SpecAccess>(e).map(|a| a.0) {
        (kind.set)(world, e, spec);
    }
}

/// Builds a fresh instance for the node with id `id` and sends it.
fn replace(world: &mut World, id: NodeId) {
    let Some(e) = entity_of(world, id) else { return };
    let config = world.resource::<EngineConfig>().clone();
    let layout = world.get::<PreparedFor>(e).map_or(Layout::effect(config.format.channels), |p| p.0);
    let built = spec_of(world, e).and_then(|s| s.build_replacement(&ctx(&config), &process_config(&config, layout)));
    match built {
        Some(Ok(object)) => world.resource_mut::<Link>().send(ToAudio::Replacement { node: id, object }),
        Some(Err(err)) => {
            let m = Message {
                node: name_of(world, e),
                source: spec_of(world, e).map_or_else(String::new, |s| s.source()),
                kind: crate::node::MessageKind::Fault,
                text: crate::node::Untrusted::new(format!(
                    "could not build a replacement instance: {err}; the node stays bypassed"
                )),
            };
            log_message(&m);
            world.resource_mut::<Inbox>().messages.push(m.clone());
            event(world, EngineEvent::Message(m));
        }
        None => {}
    }
}

/// Gives an entity spawned with a kind's parameter component the glue to reach it as a [`NodeSpec`].
fn attach_access(world: &mut World) {
    let kinds: Vec<crate::node::NodeKind> = world.resource::<Kinds>().0.kinds().copied().collect();
    for kind in kinds {
        for e in (kind.holders)(world) {
            if world.get::<SpecAccess>(e).is_none()
                && let Some(spec) = (kind.get)(world, e)
                && spec.kind() == kind.name
            {
                world.entity_mut(e).insert(SpecAccess(kind));
            }
        }
    }
}

/// Gives new node entities (a name and a parameter component) what the engine keeps on every node.
fn adopt(world: &mut World) {
    let mut q = world.query_filtered::<Entity, (With<NodeName>, With<SpecAccess>, Without<Lifecycle>)>();
    let new: Vec<Entity> = q.iter(world).collect();
    if new.is_empty() {
        return;
    }
    let mut orders = world.query::<&FileOrder>();
    let mut next_order = orders.iter(world).map(|o| o.0 + 1).max().unwrap_or(0);
    let config = world.resource::<EngineConfig>().clone();
    for e in new {
        let Some(spec) = spec_of(world, e).map(|s| s.clone_spec()) else { continue };
        let values = param_values(spec.as_ref(), &config);
        let state = match spec.validate(&ctx(&config)) {
            Ok(()) => Lifecycle::Created,
            Err(err) => {
                let text = format!("node \"{}\": {}: {err}", name_of(world, e), spec.kind());
                event(world, EngineEvent::EditRefused(text.clone()));
                Lifecycle::Failed(text)
            }
        };
        let mut entity = world.entity_mut(e);
        entity.insert((Baseline { spec, values }, state, Latency::default(), NodeTiming::default()));
        if !entity.contains::<ProcessorSlot>() {
            entity.insert(ProcessorSlot::default());
        }
        if !entity.contains::<Inputs>() {
            entity.insert(Inputs::default());
        }
        if !entity.contains::<FileOrder>() {
            entity.insert(FileOrder(next_order));
            next_order += 1;
        }
    }
    world.resource_mut::<AudioState>().dirty = true;
}

/// Every parameter's value, by index.
pub(crate) fn param_values(spec: &dyn NodeSpec, config: &EngineConfig) -> Vec<f64> {
    (0..spec.params(&ctx(config)).len()).map(|i| spec.param(i)).collect()
}

/// Whether two descriptions can share a processor: same kind, shape, parameter list, and the same values
/// of every parameter that needs a rebuild.
pub(crate) fn same_shape(a: &dyn NodeSpec, b: &dyn NodeSpec, config: &EngineConfig) -> bool {
    if a.kind() != b.kind() || a.shape() != b.shape() {
        return false;
    }
    let (pa, pb) = (a.params(&ctx(config)), b.params(&ctx(config)));
    if pa.len() != pb.len() || pa.iter().zip(&pb).any(|(x, y)| x.name != y.name) {
        return false;
    }
    pa.iter().enumerate().all(|(i, p)| p.smoothing != Smoothing::Rebuild || a.param(i) == b.param(i))
}

/// What a changed parameter component means.
enum Diff {
    /// The baseline's values and shape: nothing to do (the edit was sent when it was made).
    Same,
    Invalid(String),
    Rebuild,
    Events(Vec<(usize, f64)>),
}

fn diff(spec: &dyn NodeSpec, baseline: &Baseline, config: &EngineConfig) -> Diff {
    let shaped = same_shape(spec, baseline.spec.as_ref(), config);
    let values = param_values(spec, config);
    if shaped && values == baseline.values {
        return Diff::Same;
    }
    if let Err(err) = spec.validate(&ctx(config)) {
        return Diff::Invalid(format!("{}: {err}", spec.kind()));
    }
    if !shaped {
        return Diff::Rebuild;
    }
    Diff::Events(
        values.iter().enumerate().filter(|(i, v)| baseline.values.get(*i) != Some(*v)).map(|(i, v)| (i, *v)).collect(),
    )
}

/// Turns changed parameter components into parameter events for the audio side (or into a rebuild). An
/// invalid edit is refused: the component goes back to the last good value and the application is told.
/// A component whose values are the baseline's (an edit already sent, by [`crate::Engine::set`]) costs a
/// comparison and nothing else.
fn diff_params(world: &mut World) {
    let config = world.resource::<EngineConfig>().clone();
    let kinds: Vec<crate::node::NodeKind> = world.resource::<Kinds>().0.kinds().copied().collect();
    for kind in kinds {
        for e in (kind.changed)(world) {
            let Some(access) = world.get::<SpecAccess>(e) else { continue };
            if access.0.name != kind.name {
                continue;
            }
            let (Some(spec), Some(baseline)) = ((kind.get)(world, e), world.get::<Baseline>(e)) else { continue };
            let outcome = diff(spec, baseline, &config);
            let spec = spec.clone_spec();
            let name = name_of(world, e);
            match outcome {
                Diff::Same => {}
                Diff::Invalid(text) => {
                    let text = format!("node \"{name}\": {text}; the edit is undone");
                    tracing::warn!(target: "fxgraph::control", "{text}");
                    world.resource_mut::<Inbox>().events.push(EngineEvent::EditRefused(text));
                    let old = world.get::<Baseline>(e).map(|b| b.spec.clone_spec());
                    if let Some(old) = old {
                        (kind.set)(world, e, old);
                    }
                }
                Diff::Rebuild => {
                    let values = param_values(spec.as_ref(), &config);
                    let mut entity = world.entity_mut(e);
                    // Held processors were built for the old shape: drop them.
                    if let Some(mut held) = entity.get_mut::<ProcessorSlot>()
                        && let Some(mut p) = held.0.get_mut().take()
                    {
                        p.cleanup();
                    }
                    if entity.contains::<AudioNode>() {
                        entity.insert(NeedsRebuild);
                    }
                    if let Some(mut baseline) = entity.get_mut::<Baseline>() {
                        baseline.spec = spec;
                        baseline.values = values;
                    }
                    world.resource_mut::<AudioState>().dirty = true;
                }
                Diff::Events(events) => {
                    let audio = world.get::<AudioNode>(e).map(|a| a.id);
                    for &(index, value) in &events {
                        send_param(world, e, audio, index, value, None);
                    }
                    if let Some(mut baseline) = world.get_mut::<Baseline>(e) {
                        for (index, value) in events {
                            if let Some(v) = baseline.values.get_mut(index) {
                                *v = value;
                            }
                        }
                        baseline.spec = spec;
                    }
                }
            }
        }
    }
}

/// Sends a parameter's new value to the node's processor: through the queue to the audio side (at frame
/// `at` of its clock, or at once), or straight to the processor while the control side holds it.
pub(crate) fn send_param(
    world: &mut World,
    e: Entity,
    audio: Option<NodeId>,
    index: usize,
    value: f64,
    at: Option<u64>,
) {
    match audio {
        Some(id) => world.resource_mut::<Link>().send(ToAudio::Param { node: id, index: index as u32, value, at }),
        None => {
            if let Some(mut held) = world.get_mut::<ProcessorSlot>(e)
                && let Some(p) = held.0.get_mut()
            {
                p.set_param(index, value);
            }
        }
    }
}

/// Notices edits of the topology: edges, removed nodes, bypasses, rebuilds.
#[allow(clippy::type_complexity)]
fn detect_topology(
    mut state: ResMut<AudioState>,
    edges: Query<(), Changed<Inputs>>,
    bypassed: Query<(), Added<Bypassed>>,
    rebuild: Query<(), Added<NeedsRebuild>>,
    mut removed: RemovedComponents<NodeName>,
    mut unbypassed: RemovedComponents<Bypassed>,
) {
    let removed_any = removed.read().count() > 0;
    let unbypassed_any = unbypassed.read().count() > 0;
    if !edges.is_empty() || !bypassed.is_empty() || !rebuild.is_empty() || removed_any || unbypassed_any {
        state.dirty = true;
    }
}

fn flush(mut link: ResMut<Link>) {
    link.flush();
}

/// One node as the compiler sees it.
struct Candidate {
    entity: Entity,
    name: String,
    order: usize,
    inputs: Vec<Wire>,
}

fn compile_system(world: &mut World) {
    let state = world.resource::<AudioState>();
    if !state.dirty || state.in_flight || state.stopped || state.stopping {
        return;
    }
    if let Err(text) = compile(world) {
        event(world, EngineEvent::CompileFailed(text));
    }
    world.resource_mut::<AudioState>().dirty = false;
}

/// Compiles the World's graph and sends the audio side a plan to cross-fade to.
///
/// # Errors
/// A message if a node cannot be built or the graph has a cycle; nothing is sent then and the running
/// plan goes on.
pub(crate) fn compile(world: &mut World) -> Result<(), String> {
    let config = world.resource::<EngineConfig>().clone();
    let input = world.query_filtered::<Entity, With<GraphInput>>().iter(world).next();
    let output: Vec<Wire> = world
        .query_filtered::<&Inputs, With<GraphOutput>>()
        .iter(world)
        .next()
        .map(|i| i.0.clone())
        .unwrap_or_default();
    let mut q = world.query_filtered::<(Entity, &NodeName, &FileOrder, &Inputs, &Lifecycle), With<SpecAccess>>();
    let mut all: Vec<(Candidate, bool)> = q
        .iter(world)
        .map(|(e, n, o, i, l)| {
            (
                Candidate { entity: e, name: n.0.clone(), order: o.0, inputs: i.0.clone() },
                matches!(l, Lifecycle::Failed(_)),
            )
        })
        .collect();
    all.sort_by_key(|(c, _)| c.order);
    let bypassed: HashSet<Entity> = world.query_filtered::<Entity, With<Bypassed>>().iter(world).collect();
    let failed: HashSet<Entity> = all.iter().filter(|(_, f)| *f).map(|(c, _)| c.entity).collect();
    let nodes: HashMap<Entity, Candidate> = all.into_iter().map(|(c, _)| (c.entity, c)).collect();

    // Edges with each bypassed node replaced by what feeds its first input (for reads of its first
    // output; its other outputs fall silent).
    fn expand(
        w: Wire,
        nodes: &HashMap<Entity, Candidate>,
        bypassed: &HashSet<Entity>,
        out: &mut Vec<Wire>,
        depth: usize,
    ) {
        if depth > nodes.len() + 1 {
            return;
        }
        if bypassed.contains(&w.from)
            && let Some(c) = nodes.get(&w.from)
        {
            if w.from_port == 0 {
                for s in c.inputs.iter().filter(|s| s.port == 0) {
                    expand(Wire { port: w.port, ..*s }, nodes, bypassed, out, depth + 1);
                }
            }
        } else {
            out.push(w);
        }
    }
    let sources = |inputs: &[Wire]| -> Vec<Wire> {
        let mut out = Vec::new();
        for &s in inputs {
            expand(s, &nodes, &bypassed, &mut out, 0);
        }
        out
    };
    // Live nodes: those that reach the output, each with its edges (bypasses expanded).
    let mut live: HashMap<Entity, Vec<Wire>> = HashMap::new();
    let out_wires = sources(&output);
    let mut stack: Vec<Entity> = out_wires.iter().map(|w| w.from).collect();
    while let Some(e) = stack.pop() {
        if Some(e) == input || !nodes.contains_key(&e) || live.contains_key(&e) {
            continue;
        }
        let wires = sources(&nodes[&e].inputs);
        stack.extend(wires.iter().map(|w| w.from));
        live.insert(e, wires);
    }
    if let Some(&bad) = live.keys().find(|e| failed.contains(e)) {
        return Err(format!("node \"{}\" is not valid and cannot be processed", nodes[&bad].name));
    }
    let mut order: Vec<Entity> = live.keys().copied().collect();
    order.sort_by_key(|e| nodes[e].order);

    // Port widths, resolved from the live edges.
    let at: HashMap<Entity, usize> = order.iter().enumerate().map(|(i, &e)| (e, i)).collect();
    let link = |w: &Wire| -> Option<graph::Link> {
        let from = if Some(w.from) == input { Source::Input } else { Source::Node(*at.get(&w.from)?) };
        Some(graph::Link { from, from_port: w.from_port, to_port: w.port })
    };
    let mut ports = Vec::with_capacity(order.len());
    let mut links: Vec<Vec<graph::Link>> = Vec::with_capacity(order.len());
    for &e in &order {
        ports.push(spec_of(world, e).ok_or("a node has no parameters")?.ports(&config.format));
        links.push(live[&e].iter().filter_map(link).collect());
    }
    let out_links: Vec<graph::Link> = out_wires.iter().filter_map(link).collect();
    let ends = graph::endpoint_layout(&config.inputs, &config.outputs);
    let (input_widths, output_widths) = (ends.inputs(), ends.outputs());
    let wiring: Vec<(&crate::node::Ports, &[graph::Link])> =
        ports.iter().zip(&links).map(|(p, l)| (p, l.as_slice())).collect();
    let layouts = graph::resolve_widths(config.format.channels, &input_widths, &wiring, &output_widths, &out_links)
        .map_err(|m| {
            let into =
                m.node.map_or("the graph's output".to_string(), |n| format!("node \"{}\"", nodes[&order[n]].name));
            format!(
                "an edge into {into} joins {} channels to a port of {}: an edge joins ports of equal width, or a \
                 1-channel port to any; put a `Mixer` or `Channels` node between them",
                m.from, m.to
            )
        })?;
    for (&e, layout) in order.iter().zip(&layouts) {
        let spec = spec_of(world, e).ok_or("a node has no parameters")?;
        spec.check_layout(layout).map_err(|err| format!("node \"{}\": {}: {err}", nodes[&e].name, spec.kind()))?;
    }

    // Processors: kept, held, or built now (a processor prepared for other port widths is not kept).
    let mut fresh: HashMap<NodeId, Box<dyn Processor>> = HashMap::new();
    let mut ids: HashMap<Entity, NodeId> = HashMap::new();
    let mut new_nodes: Vec<(Entity, NodeId, Arc<NodeStats>, bool, Layout)> = Vec::new();
    let mut latency: HashMap<Entity, usize> = HashMap::new();
    for (&e, &layout) in order.iter().zip(&layouts) {
        let prepared = world.get::<PreparedFor>(e).is_some_and(|p| p.0 == layout);
        let kept = world
            .get::<AudioNode>(e)
            .filter(|a| world.get::<NeedsRebuild>(e).is_none() && a.layout == layout)
            .map(|a| a.id);
        if let Some(id) = kept {
            ids.insert(e, id);
            latency.insert(e, world.get::<Latency>(e).map_or(0, |l| l.own));
            continue;
        }
        let held = world.get_mut::<ProcessorSlot>(e).and_then(|mut s| s.0.get_mut().take());
        let held = match held {
            Some(p) if prepared => Some(p),
            Some(mut p) => {
                p.cleanup();
                None
            }
            None => None,
        };
        let p = match held {
            Some(p) => p,
            None => {
                let spec = spec_of(world, e).ok_or("a node has no parameters")?;
                let pc = process_config(&config, layout);
                let built = spec.build(&ctx(&config)).and_then(|mut p| p.initialize(&pc).map(|()| p));
                match built {
                    Ok(p) => {
                        world.entity_mut(e).insert((Lifecycle::Initialized, PreparedFor(layout)));
                        p
                    }
                    Err(err) => {
                        world.entity_mut(e).insert(Lifecycle::Failed(err.0.clone()));
                        // Put back what was taken so far.
                        restore(world, &mut fresh, &new_nodes);
                        return Err(format!("node \"{}\": {err}", nodes[&e].name));
                    }
                }
            }
        };
        latency.insert(e, p.latency_frames());
        let polls = p.polls();
        let id = world.resource_mut::<AudioState>().allocate_id();
        ids.insert(e, id);
        fresh.insert(id, p);
        new_nodes.push((e, id, Arc::new(NodeStats::new()), polls, layout));
    }
    let src = |e: Entity| if Some(e) == input { Some(SrcRef::Input) } else { ids.get(&e).map(|&id| SrcRef::Node(id)) };
    // Where each port lies: a graph input among the inputs' channels, a node's output in its block.
    let source_at = |w: &Wire| -> (usize, usize) {
        if Some(w.from) == input {
            (ends.input_at(w.from_port).start, ends.input(w.from_port))
        } else {
            let l = at.get(&w.from).map_or(Layout::effect(0), |&i| layouts[i]);
            (l.output_at(w.from_port).start, l.output(w.from_port))
        }
    };
    let wire = |w: &Wire, to_ch: usize, width: usize| -> Option<(SrcRef, Wiring)> {
        let (from_ch, src_width) = source_at(w);
        let mono = src_width == 1 && width > 1;
        Some((src(w.from)?, Wiring { from_ch, to_ch, width, mono }))
    };
    let steady_nodes: Vec<SteadyNode> = order
        .iter()
        .zip(&layouts)
        .map(|(&e, layout)| SteadyNode {
            id: ids[&e],
            key: nodes[&e].order,
            inputs: live[&e]
                .iter()
                .filter_map(|w| wire(w, layout.input_at(w.port).start, layout.input(w.port)))
                .collect(),
            latency: latency[&e],
            in_width: layout.input_channels(),
        })
        .collect();
    let out_sources: Vec<(SrcRef, Wiring)> =
        out_wires.iter().filter_map(|w| wire(w, ends.output_at(w.port).start, ends.output(w.port))).collect();
    let (in_channels, out_channels) = (ends.input_channels(), ends.output_channels());
    let desc = match compile::steady(&steady_nodes, &out_sources, in_channels) {
        Ok(d) => d,
        Err(cycle) => {
            let by_id: HashMap<NodeId, &str> = ids.iter().map(|(e, id)| (*id, nodes[e].name.as_str())).collect();
            let names: Vec<&str> = cycle.0.iter().filter_map(|id| by_id.get(id).copied()).collect();
            restore(world, &mut fresh, &new_nodes);
            return Err(format!("the edges form a cycle: {} -> {}", names.join(" -> "), names.first().unwrap_or(&"?")));
        }
    };
    let running = world.resource::<AudioState>().running.clone();
    if running.as_ref() == Some(&desc) && fresh.is_empty() {
        return Ok(());
    }

    // Start the new processors and record them.
    for p in fresh.values_mut() {
        p.start();
    }
    for (e, id, stats, polls, layout) in &new_nodes {
        let mut entity = world.entity_mut(*e);
        entity.insert((
            AudioNode { id: *id, stats: stats.clone(), polls: *polls, layout: *layout },
            Lifecycle::Running,
            PreparedFor(*layout),
        ));
        entity.remove::<NeedsRebuild>();
    }
    let mut runtime: HashMap<NodeId, NodeRuntime> = HashMap::new();
    let mut q = world.query::<(&AudioNode, Option<&Metered>)>();
    for (a, m) in q.iter(world) {
        runtime.insert(
            a.id,
            NodeRuntime { stats: a.stats.clone(), meter: m.map(|m| m.0.clone()), polls: a.polls, layout: a.layout },
        );
    }
    // Retiring nodes (on the audio side, no longer on an entity's AudioNode) keep polling until they go.
    if let Some(old) = &running {
        let sent = world.resource::<SentNodes>().0.clone();
        for id in &old.nodes {
            let (polls, layout) = sent.get(id).copied().unwrap_or((false, Layout::effect(0)));
            runtime.entry(*id).or_insert_with(|| NodeRuntime {
                stats: Arc::new(NodeStats::new()),
                meter: None,
                polls,
                layout,
            });
        }
    }
    let shape = compile::Shape {
        in_channels,
        out_channels,
        max_block: config.max_block,
        stride: config.max_block * config.batch,
        sample_rate: config.format.sample_rate,
        loudness: config.loudness,
    };
    let plan = match &running {
        Some(old) => {
            let union = compile::union(old, &desc).map_err(|_| {
                "this edit reorders nodes that keep their state against each other; remove and re-add one of them"
                    .to_string()
            });
            let union = match union {
                Ok(u) => u,
                Err(text) => {
                    restore(world, &mut fresh, &new_nodes);
                    return Err(text);
                }
            };
            let mut plan =
                compile::build(&union, Some(old), &mut fresh, &runtime, shape, Some(config.crossfade_frames));
            let next = compile::build(&desc, Some(&union), &mut HashMap::new(), &runtime, shape, None);
            plan.next = Some(Box::new(next));
            plan
        }
        None => compile::build(&desc, None, &mut fresh, &runtime, shape, None),
    };
    {
        let sent: HashMap<NodeId, (bool, Layout)> = runtime.iter().map(|(id, r)| (*id, (r.polls, r.layout))).collect();
        world.resource_mut::<SentNodes>().0 = sent;
    }
    world.resource_mut::<Link>().send(ToAudio::Transition(Box::new(plan)));
    {
        let mut state = world.resource_mut::<AudioState>();
        state.in_flight = true;
        state.running = Some(desc.clone());
    }

    // What the World shows: latencies, lifecycle of pruned nodes, the plan for display, the reader's list.
    let by_id: HashMap<NodeId, Entity> = ids.iter().map(|(e, id)| (*id, *e)).collect();
    for (pos, id) in desc.nodes.iter().enumerate() {
        if let Some(mut l) = world.get_mut::<Latency>(by_id[id]) {
            l.at_output = desc.at_output[pos];
            l.own = latency[&by_id[id]];
        }
    }
    let mut pruned = Vec::new();
    for (e, c) in &nodes {
        if !live.contains_key(e) && !bypassed.contains(e) && !failed.contains(e) {
            pruned.push((c.order, c.name.clone()));
            world.entity_mut(*e).insert(Lifecycle::Pruned);
        }
    }
    pruned.sort();
    let display = display_plan(&desc, &by_id, &nodes, pruned.into_iter().map(|(_, n)| n).collect());
    world.insert_resource(display);
    refresh_reader(world);
    Ok(())
}

/// What was recorded of each node's processor when it was sent: whether it polls, and its port widths
/// (a node retiring from the audio side keeps both until it goes).
#[derive(Resource, Default)]
pub(crate) struct SentNodes(pub HashMap<NodeId, (bool, Layout)>);

/// Puts processors taken for a compile that failed back on their entities.
fn restore(
    world: &mut World,
    fresh: &mut HashMap<NodeId, Box<dyn Processor>>,
    new_nodes: &[(Entity, NodeId, Arc<NodeStats>, bool, Layout)],
) {
    for (e, id, ..) in new_nodes {
        if let Some(p) = fresh.remove(id)
            && let Some(mut slot) = world.get_mut::<ProcessorSlot>(*e)
        {
            *slot.0.get_mut() = Some(p);
        }
        world.resource_mut::<AudioState>().free_ids.push(*id);
    }
}

fn display_plan(
    desc: &PlanDesc,
    by_id: &HashMap<NodeId, Entity>,
    nodes: &HashMap<Entity, Candidate>,
    pruned: Vec<String>,
) -> Plan {
    let order: Vec<Entity> = desc.nodes.iter().map(|id| by_id[id]).collect();
    let names: Vec<String> = order.iter().map(|e| nodes[e].name.clone()).collect();
    let levels = desc
        .levels
        .iter()
        .map(|l| desc.branches[l.clone()].iter().map(|b| b.nodes.clone().collect()).collect())
        .collect();
    let name_of_src = |s: SrcRef| match s {
        SrcRef::Input => "input".to_string(),
        SrcRef::Node(id) => nodes[&by_id[&id]].name.clone(),
    };
    let mut compensations = Vec::new();
    for b in &desc.branches {
        for e in b.inputs.iter().filter(|e| e.delay > 0) {
            compensations.push((name_of_src(e.from), names[b.nodes.start].clone(), e.delay));
        }
    }
    for e in desc.output.iter().filter(|e| e.delay > 0) {
        compensations.push((name_of_src(e.from), "output".to_string(), e.delay));
    }
    Plan { order, names, levels, latency: desc.latency, pruned, compensations }
}

/// Updates the node list that [`super::MetricsReader`]s report on.
pub(crate) fn refresh_reader(world: &mut World) {
    let plan = world.resource::<Plan>().clone();
    let mut list = Vec::new();
    for (&e, name) in plan.order.iter().zip(&plan.names) {
        let Some(audio) = world.get::<AudioNode>(e) else { continue };
        list.push(super::ReaderNode {
            name: name.clone(),
            kind: spec_of(world, e).map_or("?", |s| s.kind()).to_string(),
            stats: audio.stats.clone(),
            meter: world.get::<Metered>(e).map(|m| m.0.clone()),
            latency: world.get::<Latency>(e).map_or(0, |l| l.own),
            status_names: spec_of(world, e).map(|s| s.status_names()).unwrap_or_default(),
        });
    }
    let reader = world.resource::<ReaderNodes>().0.clone();
    *reader.lock().unwrap_or_else(|e| e.into_inner()) = list;
}

/// Copies the monitor's records into [`NodeTiming`] and [`NodeMeter`] components and the [`GraphMetrics`]
/// resource.
pub(crate) fn publish_metrics(
    mut commands: Commands,
    stats: Res<Stats>,
    mut nodes: Query<(Entity, &AudioNode, &mut NodeTiming, Option<&Metered>)>,
) {
    let ns = crate::clock::ns_per_tick();
    let to_ns = |ticks: u64| (ticks as f64 * ns) as u64;
    for (e, audio, mut timing, metered) in &mut nodes {
        let t = audio.stats.timing.snapshot();
        *timing = NodeTiming {
            calls: t.calls(),
            mean_ns: t.mean_ns() * ns,
            p50_ns: to_ns(t.quantile_ns(0.5)),
            p99_ns: to_ns(t.quantile_ns(0.99)),
            max_ns: to_ns(t.max_ns()),
            faults: audio.stats.faults(),
            memory: audio.stats.memory(),
        };
        if let Some(m) = metered {
            commands.entity(e).insert(NodeMeter(m.0.snapshot()));
        }
    }
    let g = &stats.0;
    let block_timing = g.block_timing.snapshot();
    commands.insert_resource(GraphMetrics {
        blocks: block_timing.calls(),
        frames: g.frames(),
        timed_frames: g.timed_frames(),
        busy_ns: to_ns(block_timing.total_ns()),
        blocks_over_budget: g.blocks_over_budget(),
        block_timing,
        output: g.output.snapshot(),
        nonfinite_input: g.nonfinite_input(),
    });
}
