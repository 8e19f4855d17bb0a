//! [`Error`]: everything that can go wrong in fxgraph, one type for an application to handle.

use crate::graph::GraphError;
use std::fmt::Display;

/// What went wrong, with the message the `fxgraph` command prints. Each kind of problem is a variant an
/// application can match on: a graph file, a preset, a parameter, a node or plugin, audio input or output,
/// the sound device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A graph file or text that is not valid: where (file, line, column, node) and why.
    #[error("{0}")]
    Graph(#[from] GraphError),
    /// A preset that cannot be read, or that does not fit the running graph, located as a graph error is.
    #[error("{0}")]
    Preset(GraphError),
    /// No node of the running graph has this name.
    #[error("no node is named \"{0}\"")]
    NoSuchNode(String),
    /// The node has no parameter of this name.
    #[error("node \"{node}\" has no parameter `{param}` (it has: {known})")]
    NoSuchParam {
        /// The node's name.
        node: String,
        /// The parameter asked for.
        param: String,
        /// The node's parameters, comma-separated.
        known: String,
    },
    /// A value the parameter does not take (out of range, of the wrong type, not one of its choices).
    #[error("node \"{node}\": `{param}` {message}")]
    BadValue {
        /// The node's name.
        node: String,
        /// The parameter's name.
        param: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A node that cannot be built, initialized or started (a plugin that refuses its configuration, a
    /// library that cannot be loaded).
    #[error("node \"{node}\": {message}")]
    Node {
        /// The node's name.
        node: String,
        /// Why.
        message: String,
    },
    /// A plugin package or module that is refused: hostile or broken, or for another version of fxgraph.
    #[error("{0}")]
    Plugin(String),
    /// Audio that cannot be read: a file that is missing, damaged or in a format that cannot be converted,
    /// or a source that fails while it plays.
    #[error("{0}")]
    Input(String),
    /// Audio that cannot be written: the output file, a recording.
    #[error("{0}")]
    Output(String),
    /// No such sound device, or one that cannot play the graph's format.
    #[error("{0}")]
    NoDevice(String),
    /// The sound device failed or disappeared while it played.
    #[error("audio device: {0}")]
    Device(String),
    /// A graph edit that cannot be compiled (the running graph goes on).
    #[error("the graph cannot be compiled: {0}")]
    Compile(String),
    /// Options out of their ranges (a block size of 0, a position outside the source...).
    #[error("{0}")]
    Options(String),
    /// The parallel executor's worker threads cannot be started.
    #[error("cannot start the worker threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// A file or folder fxgraph keeps (a plugin folder, a preset) that cannot be read or written.
    #[error("{0}")]
    Io(String),
    /// A render stopped by its caller before its end.
    #[error("the render was interrupted")]
    Interrupted,
}

/// A result with fxgraph's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the problem is in what the user gave (a graph, a preset, a parameter, an audio file, a
    /// plugin, a device name, options) rather than in the machine: the command line exits with 2 for
    /// these, and with 1 for the rest.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Graph(_)
                | Error::Preset(_)
                | Error::NoSuchNode(_)
                | Error::NoSuchParam { .. }
                | Error::BadValue { .. }
                | Error::Node { .. }
                | Error::Plugin(_)
                | Error::Input(_)
                | Error::NoDevice(_)
                | Error::Options(_)
        )
    }
}

/// Turns another error into an [`Error`] of a given kind, its message prefixed with what was being done
/// (`cannot write out.wav: No space left on device`).
pub(crate) trait Explain<T> {
    /// An [`Error::Input`]: `what: the error`.
    fn input(self, what: impl FnOnce() -> String) -> Result<T>;
    /// An [`Error::Output`]: `what: the error`.
    fn output(self, what: impl FnOnce() -> String) -> Result<T>;
    /// An [`Error::Io`]: `what: the error`.
    fn io(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Display> Explain<T> for std::result::Result<T, E> {
    fn input(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Input(format!("{}: {e}", what())))
    }

    fn output(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Output(format!("{}: {e}", what())))
    }

    fn io(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io(format!("{}: {e}", what())))
    }
}
