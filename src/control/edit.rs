//! Editing the running graph: whole graphs ([`Engine::apply`], [`Engine::load`], [`Engine::watch`]), a
//! node's bypass, and the transport (reset, stop, start).

use super::*;
use crate::error::{Error, Result};
use crate::graph::Graph;
use std::path::Path;

impl Engine {
    /// Edits the running graph to match `graph`, by node name: nodes whose description is unchanged keep
    /// their processor and state, parameter-only changes become smoothed events, and anything structural
    /// is compiled into a new plan that the audio side cross-fades to (at the next
    /// [`update`](Self::update)).
    ///
    /// # Errors
    /// [`Error::Options`] if the sample rate, channel count, inputs or outputs differ from the running
    /// graph's (a file without `sample_rate` takes the running graph's rate, as does any file when the engine was
    /// started at a rate of the application's choosing), [`Error::Graph`] if a parameter is
    /// out of range at that rate.
    pub fn apply(&mut self, graph: Graph) -> Result<()> {
        let (format, inputs, outputs, chosen) = {
            let c = self.config();
            (c.format, c.inputs.clone(), c.outputs.clone(), c.rate_chosen)
        };
        // A file without a rate runs at the running graph's, as does any when the application chose it.
        let graph = if graph.rate_given && !chosen { graph } else { graph.at_rate(format.sample_rate)? };
        if graph.format != format {
            return Err(Error::Options(format!(
                "{} is {} Hz, {} channels; the running graph is {} Hz, {} channels",
                graph.file, graph.format.sample_rate, graph.format.channels, format.sample_rate, format.channels
            )));
        }
        if graph.inputs != inputs || graph.outputs != outputs {
            let show = |e: &[crate::graph::Endpoint]| {
                e.iter().map(|e| format!("{} ({} ch)", e.name, e.channels)).collect::<Vec<_>>().join(", ")
            };
            return Err(Error::Options(format!(
                "{} has inputs {} and outputs {}; the running graph has inputs {} and outputs {}",
                graph.file,
                show(&graph.inputs),
                show(&graph.outputs),
                show(&inputs),
                show(&outputs)
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
                    let kind = *self.registry.get(node.spec.kind()).ok_or_else(|| Error::Node {
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
        let resolve = |l: &crate::graph::Link| Wire::of(l, input, &entities);
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
    pub(super) fn despawn_node(&mut self, e: Entity) {
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
    /// The graph's [`GraphError`](crate::GraphError) (file, line, column, node), or as [`apply`](Self::apply).
    pub fn apply_str(&mut self, text: &str, file: &str, base_dir: &Path) -> Result<()> {
        let graph = Graph::parse_with(text, file, base_dir, &self.registry)?;
        self.apply(graph)
    }

    /// Loads a graph file and [`apply`](Self::apply)s it.
    ///
    /// # Errors
    /// As [`apply_str`](Self::apply_str).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let graph = Graph::load_with(path, &self.registry)?;
        self.apply(graph)
    }

    pub(super) fn reload(&mut self, path: &Path) {
        match self.load(path) {
            Ok(()) => {
                let file = path.display().to_string();
                systems::event(&mut self.world, EngineEvent::GraphReloaded(file));
            }
            Err(Error::Graph(e)) => systems::event(&mut self.world, EngineEvent::GraphError(e)),
            Err(e) => systems::event(&mut self.world, EngineEvent::CompileFailed(e.to_string())),
        }
    }

    /// Follows edits to a graph file and to the files its nodes read (a `Convolver`'s impulse response, an
    /// `Eq`'s imported profile): each time one changes on disk, the next [`update`](Self::update) reloads
    /// and applies the graph (a node whose file changed is rebuilt and cross-faded in). A broken edit is
    /// reported ([`EngineEvent::GraphError`], with file, line and column) and the last good graph keeps
    /// playing.
    ///
    /// # Errors
    /// If the file's folder cannot be read.
    pub fn watch(&mut self, path: &Path) -> Result<()> {
        let mut w =
            watch::Watcher::new(path).map_err(|e| Error::Options(format!("cannot watch {}: {e}", path.display())))?;
        w.follow(self.node_files());
        self.watcher = Some(w);
        Ok(())
    }

    /// The files the running graph's nodes read.
    pub(super) fn node_files(&mut self) -> Vec<std::path::PathBuf> {
        let base = self.config().base_dir.clone();
        let mut q = self.world.query_filtered::<Entity, With<SpecAccess>>();
        let nodes: Vec<Entity> = q.iter(&self.world).collect();
        nodes.iter().filter_map(|&e| self.spec(e)).flat_map(|s| s.files(&base)).collect()
    }

    /// Adds or removes a node from the signal path (what feeds its first input then feeds what read its
    /// first output; its other outputs fall silent), crossfaded. A bypassed node's processor is set aside
    /// and its state cleared when it comes back.
    ///
    /// # Errors
    /// [`Error::NoSuchNode`]; [`Error::Options`] for a node whose first input and first output differ in
    /// width (a mixer folding 6 channels to 2).
    pub fn bypass(&mut self, node: &str, on: bool) -> Result<()> {
        let e = self.node(node).ok_or_else(|| Error::NoSuchNode(node.into()))?;
        // Bypassed, a node's first input feeds whatever read its first output: only where they are as wide.
        if on
            && let Some(PreparedFor(layout)) = self.world.get::<PreparedFor>(e)
            && layout.input(0) != layout.output(0)
        {
            return Err(Error::Options(format!(
                "node \"{node}\" cannot be bypassed: its first input has {} channels and its first output {}",
                layout.input(0),
                layout.output(0)
            )));
        }
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
}
