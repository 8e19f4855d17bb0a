#![doc = include_str!("../README.md")]

pub mod alloc;
pub mod audio;
mod clock;
pub mod control;
pub mod dsp;
pub mod graph;
pub mod io;
pub mod monitor;
pub mod node;
pub mod nodes;
pub mod play;

pub use audio::{AudioProcessor, NodeId};
pub use control::render;
pub use control::{Engine, EngineError, EngineEvent, EngineOptions, MetricsReader, Parallelism};
pub use graph::{Graph, GraphError, GraphErrorKind, preset};
pub use io::{demo, wav};
pub use node::{AudioIn, AudioOut, GraphFormat, NodeSpec, ParamInfo, ParamValue, ProcessConfig, Processor, Registry};
#[cfg(feature = "wasm")]
pub use nodes::wasm;
