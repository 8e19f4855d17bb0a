#![doc = include_str!("../README.md")]

pub mod alloc;
pub mod buffer;
pub mod builtin;
pub mod clock;
pub mod demo;
pub mod dsp;
pub mod engine;
pub mod graph;
pub mod monitor;
pub mod node;
pub mod registry;
pub mod render;
#[cfg(feature = "wasm")]
pub mod wasm;
pub mod wav;

pub use buffer::{AudioIn, AudioOut};
pub use engine::{Engine, EngineError, EngineOptions};
pub use graph::{Graph, GraphError, GraphErrorKind};
pub use node::{GraphFormat, NodeSpec, ProcessConfig, Processor};
pub use registry::Registry;
