//! What goes wrong and what happens: [`EngineError`] for calls that fail, [`EngineEvent`] for what the
//! application may want to know while the graph runs.

use crate::graph::GraphError;
use crate::node::Message;

/// Something the application may want to know, delivered to [`Engine::subscribe`](super::Engine::subscribe)rs and by
/// [`Engine::events`](super::Engine::events).
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

/// A callback for engine events, see [`Engine::subscribe`](super::Engine::subscribe).
pub type Subscriber = Box<dyn FnMut(&EngineEvent) + Send>;
