//! `AnalyzeAudio` for files and streams: loudness (BS.1770-4 / EBU R128), peaks, RMS, crest factor,
//! dynamic range and a long-term third-octave spectrum, measured in one streaming pass.
//!
//! ```no_run
//! let (analysis, meter) = fxgraph::analyze::analyze_file("song.flac".as_ref())?;
//! println!("{:?} LUFS, {:?} dBTP", analysis.loudness.integrated_lufs, analysis.loudness.true_peak_dbtp);
//! let album = fxgraph::analyze::Album::of([&meter]);
//! # Ok::<(), fxgraph::Error>(())
//! ```

use crate::dsp::loudness::{LoudnessMeter, LoudnessReading};
use crate::error::{Error, Result};
use crate::io::stream::BlockSource;
use crate::monitor::meter::third_octave_bands;
use crate::monitor::{Band, Meter};
use crate::node::{AudioIn, AudioOut};
use serde::Serialize;
use std::path::Path;

/// FFT size of the long-term spectrum, and its hop (half a window).
const SPECTRUM_WINDOW: usize = 8192;
const SPECTRUM_HOP: usize = SPECTRUM_WINDOW / 2;

/// What [`analyze`] measured of one signal.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Sample rate as measured (a file's own).
    pub sample_rate: u32,
    /// Channels as measured (a file's own).
    pub channels: usize,
    /// Length, seconds.
    pub seconds: f64,
    /// Integrated loudness, loudness range, true peak, sample peak, the latest and the largest momentary
    /// and short-term loudness.
    #[serde(flatten)]
    pub loudness: LoudnessReading,
    /// RMS over all channels and the whole signal, dBFS.
    pub rms_dbfs: f64,
    /// Sample peak over RMS, dB.
    pub crest_factor_db: f64,
    /// The spread of 100 ms RMS levels: the 95th minus the 10th percentile, among blocks above -70 dBFS.
    pub dynamic_range_db: f64,
    /// Samples whose magnitude exceeded full scale.
    pub clipped_samples: u64,
    /// Average third-octave band levels over the whole signal (mono mix, Hann windows of 8192 samples
    /// overlapping by half), dB relative to a full-scale sine.
    pub spectrum: Vec<Band>,
}

/// Album figures over several signals: integrated loudness of all their gating blocks pooled (as
/// ReplayGain 2.0's album gain takes it), and the largest peaks.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Album {
    /// Integrated loudness of every gating block of every signal, LUFS.
    pub integrated_lufs: Option<f64>,
    /// The largest true peak, dBTP.
    pub true_peak_dbtp: Option<f64>,
    /// The largest sample peak, dBFS.
    pub sample_peak_dbfs: Option<f64>,
}

impl Album {
    /// The album of these signals' meters.
    pub fn of<'a>(meters: impl IntoIterator<Item = &'a LoudnessMeter> + Clone) -> Self {
        let max = |f: fn(&LoudnessReading) -> Option<f64>| {
            meters
                .clone()
                .into_iter()
                .filter_map(|m| f(&m.reading()))
                .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
        };
        Self {
            integrated_lufs: LoudnessMeter::integrated_of_all(meters.clone()),
            true_peak_dbtp: max(|r| r.true_peak_dbtp),
            sample_peak_dbfs: max(|r| r.sample_peak_dbfs),
        }
    }
}

/// The long-term spectrum: Hann-windowed FFTs of the mono mix, their bins' powers averaged.
struct SpectrumAverage {
    fft: std::sync::Arc<dyn realfft::RealToComplex<f64>>,
    window: Vec<f64>,
    /// The latest mono samples, `filled` of them.
    pending: Vec<f64>,
    filled: usize,
    input: Vec<f64>,
    bins: Vec<realfft::num_complex::Complex<f64>>,
    power: Vec<f64>,
    windows: u64,
}

impl SpectrumAverage {
    fn new() -> Self {
        let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(SPECTRUM_WINDOW);
        let window = (0..SPECTRUM_WINDOW)
            .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / SPECTRUM_WINDOW as f64).cos())
            .collect();
        Self {
            input: fft.make_input_vec(),
            bins: fft.make_output_vec(),
            power: vec![0.0; SPECTRUM_WINDOW / 2 + 1],
            fft,
            window,
            pending: vec![0.0; SPECTRUM_WINDOW],
            filled: 0,
            windows: 0,
        }
    }

    fn feed(&mut self, block: &AudioIn<'_>) {
        let scale = 1.0 / block.channels() as f64;
        for i in 0..block.frames() {
            let v: f64 = (0..block.channels()).map(|c| f64::from(block.channel(c)[i])).sum::<f64>() * scale;
            self.pending[self.filled] = if v.is_finite() { v } else { 0.0 };
            self.filled += 1;
            if self.filled == SPECTRUM_WINDOW {
                for ((x, &s), &w) in self.input.iter_mut().zip(&self.pending).zip(&self.window) {
                    *x = s * w;
                }
                if self.fft.process(&mut self.input, &mut self.bins).is_ok() {
                    for (p, b) in self.power.iter_mut().zip(&self.bins) {
                        *p += b.norm_sqr();
                    }
                    self.windows += 1;
                }
                self.pending.copy_within(SPECTRUM_HOP.., 0);
                self.filled = SPECTRUM_WINDOW - SPECTRUM_HOP;
            }
        }
    }

    fn bands(&self, sample_rate: u32) -> Vec<Band> {
        if self.windows == 0 {
            return Vec::new();
        }
        let mean: Vec<f64> = self.power.iter().map(|p| p / self.windows as f64).collect();
        third_octave_bands(&mean, SPECTRUM_WINDOW, sample_rate)
    }
}

/// Measures a source of `channels` channels at `sample_rate` to its end, streaming (its memory stays flat
/// whatever the length). Returns the figures and the loudness meter (for [`Album::of`]).
///
/// # Errors
/// The source's own, for a source that fails part-way (a damaged file).
pub fn analyze(source: &mut dyn BlockSource, sample_rate: u32, channels: usize) -> Result<(Analysis, LoudnessMeter)> {
    if channels == 0 {
        return Err(Error::Input("no channels to analyze".into()));
    }
    // Blocks of 100 ms: the dynamic range is the spread of their levels.
    let block = (sample_rate as usize).div_ceil(10).max(1);
    let mut buf = vec![0f32; channels * block];
    let mut loudness = LoudnessMeter::new(sample_rate, channels, true);
    let mut levels = Meter::new();
    let mut spectrum = SpectrumAverage::new();
    let mut frames = 0u64;
    let _flush = crate::dsp::denormal::FlushDenormals::new();
    loop {
        let n = source.read(&mut AudioOut::new(&mut buf, block, channels, block))?;
        if n == 0 {
            break;
        }
        let part = AudioIn::new(&buf, block, channels, block).slice(0, n);
        loudness.feed(&part);
        levels.feed(&buf, block, channels, n);
        spectrum.feed(&part);
        frames += n as u64;
    }
    let l = levels.levels(sample_rate);
    let analysis = Analysis {
        sample_rate,
        channels,
        seconds: frames as f64 / f64::from(sample_rate),
        loudness: loudness.reading(),
        rms_dbfs: l.rms_dbfs,
        crest_factor_db: l.crest_factor_db,
        dynamic_range_db: l.dynamic_range_db,
        clipped_samples: l.clipped_samples,
        spectrum: spectrum.bands(sample_rate),
    };
    Ok((analysis, loudness))
}

/// [`analyze`] of an audio file (any format `render` reads), at its own rate and channels.
///
/// # Errors
/// [`Error::Input`] naming the file, for a file that cannot be read or decoded.
pub fn analyze_file(path: &Path) -> Result<(Analysis, LoudnessMeter)> {
    let mut decoded = crate::io::decode::Decoded::open(path)?;
    let (rate, channels) = (decoded.sample_rate(), decoded.channels());
    if rate == 0 || channels == 0 || channels > crate::node::MAX_CHANNELS {
        return Err(Error::Input(format!(
            "{}: {channels} channels at {rate} Hz is not audio to analyze",
            path.display()
        )));
    }
    analyze(&mut decoded, rate, channels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::stream::MemorySource;

    #[test]
    fn a_sine_analyzes_to_its_analytic_figures() {
        // 10 s of a 1 kHz sine at -20 dBFS in both channels: -20 LUFS (stereo sine), its peak and true peak
        // -20 dB, RMS -23.01 dBFS, crest factor 3.01 dB, no dynamics, and its third-octave band at -20 dB.
        let rate = 48_000;
        let a = 0.1f64;
        let x: Vec<f32> = (0..10 * rate)
            .map(|n| (a * (std::f64::consts::TAU * 1000.0 * f64::from(n) / f64::from(rate)).sin()) as f32)
            .collect();
        let (r, _) = analyze(&mut MemorySource::new(vec![x.clone(), x]), rate, 2).expect("analyzed");
        let near =
            |got: f64, want: f64, tol: f64, what: &str| assert!((got - want).abs() <= tol, "{what}: {got} vs {want}");
        near(r.seconds, 10.0, 1e-9, "length");
        near(r.loudness.integrated_lufs.expect("integrated"), -20.0, 0.05, "integrated");
        near(r.loudness.sample_peak_dbfs.expect("peak"), -20.0, 0.01, "sample peak");
        near(r.loudness.true_peak_dbtp.expect("true peak"), -20.0, 0.05, "true peak");
        near(r.rms_dbfs, -23.0103, 0.01, "rms");
        near(r.crest_factor_db, 3.0103, 0.02, "crest");
        near(r.dynamic_range_db, 0.0, 0.6, "dynamic range");
        near(r.loudness.loudness_range_lu.expect("range"), 0.0, 0.05, "loudness range");
        let band = |hz: f64| {
            r.spectrum
                .iter()
                .min_by(|a, b| (a.center_hz - hz).abs().total_cmp(&(b.center_hz - hz).abs()))
                .map(|b| b.level_db)
        };
        near(band(1000.0).expect("1 kHz"), -20.0, 0.5, "1 kHz band");
        assert!(band(125.0).expect("125 Hz") < -80.0);
    }
}
