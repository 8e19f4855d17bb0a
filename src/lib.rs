#![doc = include_str!("../README.md")]

pub mod alloc;
pub mod audio;
pub mod clock;
pub mod control;
pub mod dsp;
pub mod graph;
pub mod io;
pub mod monitor;
pub mod node;
pub mod nodes;
#[cfg(feature = "wasm")]
pub mod packages;
pub mod play;
pub mod plot;
pub mod preset;
pub mod registry;

pub use audio::buffer;
pub use audio::{AudioProcessor, NodeId};
pub use buffer::{AudioIn, AudioOut};
pub use control::{Engine, EngineError, EngineEvent, EngineOptions, MetricsReader, Parallelism};
pub use graph::{Graph, GraphError, GraphErrorKind};
pub use io::{demo, render, wav};
pub use node::{GraphFormat, NodeSpec, ParamInfo, ParamValue, ProcessConfig, Processor};
#[cfg(feature = "wasm")]
pub use nodes::wasm;
pub use registry::Registry;
