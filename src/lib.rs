#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod alloc;
pub mod analyze;
mod audio;
mod clock;
pub mod control;
pub mod dsp;
mod error;
pub mod graph;
pub mod io;
pub mod monitor;
pub mod node;
pub mod nodes;
pub mod play;
pub mod prelude;
pub mod replaygain;
mod sha256;
pub mod trust;

pub use audio::{AudioProcessor, NodeId, RawAudio};
pub use control::render::{OfflineRenderer, RenderStats};
pub use control::{Engine, EngineEvent, EngineOptions, LoudnessMetering, MetricsReader, Parallelism};
pub use error::{Error, Result};
pub use graph::{Graph, GraphError, GraphErrorKind};
pub use node::{AudioIn, AudioOut, GraphFormat, ParamInfo, ParamValue, ProcessConfig};
