//! ReplayGain for a player: the gain a file should play at, from its ReplayGain 2.0 or R128 tags, or
//! measured (BS.1770-4, ReplayGain 2.0's -18 LUFS reference) where it has none, with a preamp and
//! clipping prevention; and [`Gained`], a source that applies it in front of any graph.
//!
//! ```no_run
//! use fxgraph::replaygain::{Gained, ReplayGain, ReplayGainMode};
//! let rg = ReplayGain { mode: ReplayGainMode::Album, preamp_db: 2.0, ..ReplayGain::default() };
//! let applied = rg.decide("song.flac".as_ref())?.expect("on");
//! let format = fxgraph::GraphFormat { sample_rate: 48000, channels: 2 };
//! let file = fxgraph::io::decode::AudioFile::open("song.flac".as_ref(), format)?;
//! let source = Gained::new(file, applied.gain_db);
//! # Ok::<(), fxgraph::Error>(())
//! ```

use crate::error::Result;
use crate::io::decode::Decoded;
use crate::io::stream::BlockSource;
use crate::node::AudioOut;
use serde::Serialize;
use std::path::Path;

/// ReplayGain 2.0's reference loudness: a gain tag is the gain that brings the track to it.
pub const REFERENCE_LUFS: f64 = -18.0;

/// Which gain to play at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplayGainMode {
    /// None: the file as it is.
    #[default]
    Off,
    /// Each track at the reference loudness.
    Track,
    /// The album's gain (the tracks keep their loudness relative to each other); the track's where a
    /// file has no album tags.
    Album,
}

/// How a player applies ReplayGain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayGainOptions {
    /// Track, album or off.
    pub mode: ReplayGainMode,
    /// Added to every gain, dB.
    pub preamp_db: f64,
    /// The gain of a file that has no tags and cannot be measured (a silent one), dB.
    pub fallback_db: f64,
    /// Measure a file without tags before it plays (one pass over it; off: the fallback gain).
    pub measure: bool,
    /// Lower the gain where the peak (tagged, or the measured true peak) would go over full scale.
    pub prevent_clipping: bool,
}

/// The same as [`ReplayGainOptions`]: the name a player's configuration reads best with.
pub type ReplayGain = ReplayGainOptions;

impl Default for ReplayGainOptions {
    fn default() -> Self {
        Self { mode: ReplayGainMode::Track, preamp_db: 0.0, fallback_db: 0.0, measure: true, prevent_clipping: true }
    }
}

/// The gain chosen for a file, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AppliedGain {
    /// The gain, preamp and clipping prevention included, dB.
    pub gain_db: f64,
    /// Where it came from: `track tags`, `album tags`, `measured` or `fallback`.
    pub source: &'static str,
    /// The peak it was checked against (linear), if one was known.
    pub peak: Option<f64>,
    /// Whether clipping prevention lowered it.
    pub limited: bool,
}

impl ReplayGainOptions {
    /// The gain `path` should play at; `None` when the mode is off.
    ///
    /// # Errors
    /// [`crate::Error::Input`] for a file that cannot be read.
    pub fn decide(&self, path: &Path) -> Result<Option<AppliedGain>> {
        if self.mode == ReplayGainMode::Off {
            return Ok(None);
        }
        let tags = Decoded::open(path)?.gain_tags();
        let album = (self.mode == ReplayGainMode::Album).then_some(tags.album_gain_db).flatten();
        let (gain, peak, source) = match (album, tags.track_gain_db) {
            (Some(g), _) => (Some(g), tags.album_peak.or(tags.track_peak), "album tags"),
            (None, Some(g)) => (Some(g), tags.track_peak, "track tags"),
            (None, None) if self.measure => {
                let (analysis, _) = crate::analyze::analyze_file(path)?;
                let peak = analysis.loudness.true_peak_dbtp.map(|db| 10f64.powf(db / 20.0));
                (analysis.loudness.integrated_lufs.map(|l| REFERENCE_LUFS - l), peak, "measured")
            }
            (None, None) => (None, None, "fallback"),
        };
        let (gain, source) = match gain {
            Some(g) => (g, source),
            None => (self.fallback_db, "fallback"),
        };
        Ok(Some(self.apply(gain, peak, source)))
    }

    /// The preamp and clipping prevention on a gain from tags or a measurement.
    pub fn apply(&self, gain_db: f64, peak: Option<f64>, source: &'static str) -> AppliedGain {
        let wanted = gain_db + self.preamp_db;
        let ceiling = peak.filter(|p| *p > 0.0 && self.prevent_clipping).map(|p| -20.0 * p.log10());
        match ceiling {
            Some(c) if wanted > c => AppliedGain { gain_db: c, source, peak, limited: true },
            _ => AppliedGain { gain_db: wanted, source, peak, limited: false },
        }
    }
}

/// A source with a constant gain: ReplayGain in front of a graph.
pub struct Gained<S> {
    inner: S,
    gain: f32,
}

impl<S> Gained<S> {
    /// `inner` at `gain_db`.
    pub fn new(inner: S, gain_db: f64) -> Self {
        Self { inner, gain: 10f64.powf(gain_db / 20.0) as f32 }
    }
}

impl<S: BlockSource> BlockSource for Gained<S> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let n = self.inner.read(out)?;
        for c in 0..out.channels() {
            for v in &mut out.channel_mut(c)[..n] {
                *v *= self.gain;
            }
        }
        Ok(n)
    }

    fn frames(&self) -> Option<u64> {
        self.inner.frames()
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        self.inner.seek(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preamp_adds_and_clipping_prevention_caps_at_the_peak() {
        let rg = ReplayGain { preamp_db: 3.0, ..ReplayGain::default() };
        // -6 dB + 3 dB with a peak at 0.5 (-6.02 dBFS): -3 dB keeps it under full scale.
        assert_eq!(
            rg.apply(-6.0, Some(0.5), "track tags"),
            AppliedGain { gain_db: -3.0, source: "track tags", peak: Some(0.5), limited: false }
        );
        // +8 dB + 3 dB would put that peak at +4.98 dBFS: capped at +6.02 dB.
        let capped = rg.apply(8.0, Some(0.5), "track tags");
        assert!(capped.limited && (capped.gain_db - 6.0206).abs() < 1e-3, "{capped:?}");
        // Without prevention, or without a peak, the gain stands.
        assert_eq!(ReplayGain { prevent_clipping: false, ..rg }.apply(8.0, Some(0.5), "t").gain_db, 11.0);
        assert_eq!(rg.apply(8.0, None, "t").gain_db, 11.0);
    }

    #[test]
    fn a_gained_source_scales_every_sample() {
        let mut src = Gained::new(crate::io::stream::MemorySource::new(vec![vec![0.5; 10], vec![-0.25; 10]]), -6.0206);
        let mut buf = vec![0f32; 20];
        let n = src.read(&mut AudioOut::new(&mut buf, 10, 2, 10)).expect("read");
        assert_eq!(n, 10);
        assert!(
            buf[..10].iter().all(|v| (v - 0.25).abs() < 1e-5) && buf[10..].iter().all(|v| (v + 0.125).abs() < 1e-5)
        );
    }
}
