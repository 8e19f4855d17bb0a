//! What a player or a tool that embeds fxgraph needs, in one import: `use fxgraph::prelude::*;`.
//!
//! - the two halves of a running graph: [`Engine`] (control side) and [`AudioProcessor`] (audio side),
//!   started from a [`Graph`] with [`EngineOptions`];
//! - audio in and out: [`AudioFile`] (any format, converted to the graph's), [`WavSink`], the
//!   [`BlockSource`] and [`BlockSink`] traits their methods come from, and planar [`AudioIn`] and
//!   [`AudioOut`] views;
//! - offline processing with the latency handled: [`OfflineRenderer`];
//! - real-time playback: [`Player`], [`PlayerOptions`], [`DeviceChoice`];
//! - parameter values ([`ParamValue`]), the monitor's [`MetricsReport`], and [`Error`] with its
//!   [`Result`].

pub use crate::AudioProcessor;
pub use crate::control::render::OfflineRenderer;
pub use crate::control::{Engine, EngineOptions};
pub use crate::error::{Error, Result};
pub use crate::graph::Graph;
pub use crate::io::decode::AudioFile;
pub use crate::io::stream::{BlockSink, BlockSource};
pub use crate::io::wav::{WavFormat, WavSink};
pub use crate::monitor::MetricsReport;
pub use crate::node::{AudioIn, AudioOut, ParamValue};
pub use crate::play::{DeviceChoice, Player, PlayerOptions};
