//! Presets on a running graph: applied whole or not at all ([`Engine::apply_preset`]), and the running
//! values as a preset ([`Engine::snapshot`]).

use super::*;
use crate::error::{Error, Result};
use crate::node::{BuildContext, NodeSpec};
use std::path::Path;

impl Engine {
    /// Applies preset `name` as one smoothed change: `presets/NAME.ron` beside the running graph's file, or,
    /// for a name with a `/` or ending in `.ron`, the preset file at that path. Returns how many values it
    /// set. See [`apply_preset_values`](Self::apply_preset_values).
    ///
    /// # Errors
    /// [`Error::Options`] for a name that is not a plain file name, [`Error::Preset`] for a preset that is
    /// missing (naming the presets there are), cannot be read, or does not fit the graph, located at the
    /// offending key; nothing changes then.
    pub fn apply_preset(&mut self, name: &str) -> Result<usize> {
        use crate::graph::preset::{Preset, preset_error};
        let path = if name.contains('/') || name.ends_with(".ron") {
            std::path::PathBuf::from(name)
        } else {
            let graph = Path::new(&self.config().file).to_path_buf();
            let path = Preset::path_for(&graph, name)?;
            if !path.exists() {
                let known = Preset::list(&graph);
                let message = format!(
                    "no preset \"{name}\" beside {} (looked for {}; presets there: {})",
                    graph.display(),
                    path.display(),
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                );
                return Err(Error::Preset(preset_error(&path.display().to_string(), None, None, message)));
            }
            path
        };
        let preset = Preset::load(&path).map_err(Error::Preset)?;
        self.apply_preset_values(&preset)
    }

    /// Applies a preset as one smoothed change: every value is checked first (node, parameter, range, and
    /// the node's own consistency rules), and only if all pass are they set together, so they reach the
    /// audio side in the same block.
    ///
    /// # Errors
    /// [`Error::Preset`], located at the offending key; nothing changes then.
    pub fn apply_preset_values(&mut self, preset: &crate::graph::preset::Preset) -> Result<usize> {
        let err = |position, node: Option<&str>, message: String| {
            Error::Preset(crate::graph::preset::preset_error(&preset.file, position, node, message))
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
            let v = info
                .resolve(&entry.value)
                .map_err(|e| err(entry.position, Some(node), format!("`{param}` {}", e.message)))?;
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
        for state in &preset.states {
            let e = self.node(&state.node).ok_or_else(|| {
                err(
                    state.position,
                    None,
                    format!(
                        "the state of \"{}\": no node of the running graph has that name (its nodes: {})",
                        state.node.escape_debug(),
                        self.node_names().join(", ")
                    ),
                )
            })?;
            let slot = match edits.iter().position(|(x, ..)| *x == e) {
                Some(i) => i,
                None => {
                    let spec = self.spec(e).ok_or_else(|| err(state.position, Some(&state.node), "is gone".into()))?;
                    edits.push((e, state.node.clone(), spec.clone_spec(), state.position));
                    edits.len() - 1
                }
            };
            edits[slot].2.set_state(&state.data).map_err(|m| err(state.position, Some(&state.node), m))?;
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
    ///
    /// # Errors
    /// [`Error::Preset`] when a plugin that keeps state of its own cannot save it.
    pub fn snapshot(&mut self) -> Result<crate::graph::preset::Preset> {
        let mut entries = Vec::new();
        let mut states = Vec::new();
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
        for node in self.node_names() {
            let Some(saved) = self.node(&node).and_then(|e| self.spec(e)).and_then(|s| s.save_state()) else {
                continue;
            };
            let data = saved.map_err(|m| {
                Error::Preset(crate::graph::preset::preset_error(
                    &self.config().file,
                    None,
                    Some(&node),
                    format!("its plugin's state cannot be saved: {m}"),
                ))
            })?;
            states.push(crate::graph::preset::PresetState { node, data, position: None });
        }
        let file = self.config().file.clone();
        let graph = Path::new(&file).file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(crate::graph::preset::Preset { file: String::new(), graph, graph_position: None, entries, states })
    }
}

/// An engine error's message without its leading `node "NAME": ` (the preset error names the node).
fn strip_node(message: &str) -> String {
    match message.strip_prefix("node \"").and_then(|m| m.split_once("\" ")) {
        Some((_, rest)) => rest.to_owned(),
        None => message.to_owned(),
    }
}
