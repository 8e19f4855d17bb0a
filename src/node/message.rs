//! What nodes hand to the control side: messages (a plugin's log lines and events, faults) as untrusted
//! text, and a plugin node's health, through the [`PollContext`] the engine passes after each block.

use std::any::Any;
use std::fmt;

/// Bytes kept of one node message.
pub const MESSAGE_BYTES: usize = 240;
/// Status numbers a node may publish ([`PollContext::status_values`]).
pub const STATUS_VALUES: usize = 8;

/// What a message from a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MessageKind {
    /// A log line, with the plugin's level (0 error, 1 warn, 2 info, 3 debug, 4 trace).
    Log(i32),
    /// An event for the application, with the plugin's code.
    Event(i32),
    /// The node faulted and was bypassed.
    Fault,
    /// Messages the node could not keep: a count.
    Dropped(u64),
}

/// A message from a node (a plugin's log line or event, or a fault), delivered on the control side.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// The node's name in the graph.
    pub node: String,
    /// The plugin's id, for plugins.
    pub source: String,
    /// What the message is.
    pub kind: MessageKind,
    /// What the plugin said, as it said it (invalid UTF-8 replaced). Printing it shows it escaped.
    pub text: Untrusted,
}

/// Text from a plugin: kept unmodified, but displayed with every control character escaped (newlines
/// included, so a plugin cannot forge a line of the host's output) and cut to [`Untrusted::MAX_CHARS`].
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Untrusted(String);

impl Untrusted {
    /// Characters shown by [`Display`](fmt::Display) before the text is cut.
    pub const MAX_CHARS: usize = 240;

    /// Keeps `text` as it is.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// From bytes, with invalid UTF-8 replaced.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The text as the plugin sent it. Do not print it to a terminal or a log as it is.
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// The text with control characters (C0, DEL, C1), and the Unicode bidirectional and line/paragraph
    /// separator characters, escaped as `\n`, `\r`, `\t` or `\u{..}`, and backslashes doubled.
    pub fn escaped(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for (i, c) in self.0.chars().enumerate() {
            if i == Self::MAX_CHARS {
                out.push_str("...");
                break;
            }
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    out.push_str(&format!("\\u{{{:x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        out
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escaped())
    }
}

impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.escaped())
    }
}

/// A plugin node's health, as it publishes it after each block ([`PollContext::status`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginHealth {
    /// Faults so far (each bypassed the plugin and had it re-created).
    pub faults: u64,
    /// Blocks (`process` calls) whose output was, wholly or in part, the node's bypass (its dry input or
    /// silence) instead of the plugin's.
    pub bypassed_blocks: u64,
    /// Frames of output that were the bypass.
    pub bypassed_frames: u64,
    /// Non-finite output samples replaced with silence.
    pub replaced_samples: u64,
    /// Calls that passed their deadline in wall time while the plugin had not used it (the thread was
    /// preempted): late, which in real time is an underrun, but not the plugin's fault.
    pub preempted_calls: u64,
    /// Memory in use and its cap, in bytes, where the backend knows.
    pub memory: Option<(usize, usize)>,
}

/// What a processor may hand to the control side from the audio thread, without allocating or waiting.
/// The engine passes one to [`Processor::poll`](super::Processor::poll) after each block, on the thread that drives the graph.
pub trait PollContext {
    /// Queues a message (copied into a preallocated slot; truncated to
    /// [`MESSAGE_BYTES`]; dropped and counted when the queue is full).
    fn message(&mut self, kind: MessageKind, text: &[u8]);
    /// Hands over an object to be dropped on the control side (a plugin instance that faulted).
    fn retire(&mut self, garbage: Box<dyn Any + Send>);
    /// Asks the control side for a fresh instance ([`NodeSpec::build_replacement`](super::NodeSpec::build_replacement)). False if the request
    /// could not be queued (ask again at the next poll).
    fn request_replacement(&mut self) -> bool;
    /// Publishes a plugin node's health: its faults and what they cost, and its memory.
    fn status(&mut self, health: &PluginHealth);
    /// Records a fault at `frame` (counted from the start of the node's processing).
    fn fault_at(&mut self, frame: u64) {
        let _ = frame;
    }
    /// Publishes a plugin's named status numbers (names from [`NodeSpec::status_names`](super::NodeSpec::status_names)).
    fn status_values(&mut self, values: &[f64]) {
        let _ = values;
    }
    /// A parameter's value that the plugin itself set (parameter `index` of the node, in
    /// [`NodeSpec::params`](super::NodeSpec::params) order): the control side takes it as the parameter's
    /// value, without sending it back.
    fn param_from_plugin(&mut self, index: usize, value: f64) {
        let _ = (index, value);
    }
}
