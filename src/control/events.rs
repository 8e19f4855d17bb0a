//! What goes wrong and what happens: [`EngineError`] for calls that fail, [`EngineEvent`] for what the
//! application may want to know while the graph runs.

use crate::graph::GraphError;
use crate::node::Message;

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
