//! The built-in node kinds: parameters as written in graph files, their ranges, and their processors.

use crate::buffer::{AudioIn, AudioOut};
use crate::dsp::biquad::{BandKind, BiquadCascade, Coeffs};
use crate::dsp::compressor::{Compressor, CompressorSettings};
use crate::dsp::limiter::{Limiter, LimiterSettings};
use crate::dsp::simple;
use crate::node::{BuildContext, GraphFormat, NodeError, NodeSpec, ParamError, ProcessConfig, Processor};
use crate::registry::{NodeKind, Registry, parse_ron};
use serde::Deserialize;

pub(crate) fn register(registry: &mut Registry) {
    let kinds = [
        NodeKind { name: "Eq", summary: "cascade of RBJ-cookbook biquad bands", parse: parse_ron::<EqSpec> },
        NodeKind {
            name: "Compressor",
            summary: "feed-forward stereo-linked compressor with soft knee",
            parse: parse_ron::<CompressorSpec>,
        },
        NodeKind { name: "Limiter", summary: "lookahead brickwall limiter", parse: parse_ron::<LimiterSpec> },
        NodeKind { name: "Gain", summary: "constant gain", parse: parse_ron::<GainSpec> },
        NodeKind { name: "StereoWidth", summary: "mid/side stereo width", parse: parse_ron::<StereoWidthSpec> },
        NodeKind { name: "BassBoost", summary: "low shelf preset", parse: parse_ron::<BassBoostSpec> },
        NodeKind { name: "TrebleBoost", summary: "high shelf preset", parse: parse_ron::<TrebleBoostSpec> },
    ];
    for kind in kinds {
        registry.register(kind);
    }
}

/// A stateful DSP block from [`crate::dsp`], seen through the node contract.
pub trait DspBlock: Send {
    /// Allocates state for the format.
    fn prepare(&mut self, config: &ProcessConfig);
    /// Clears state.
    fn reset(&mut self);
    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>);
    fn latency(&self) -> usize {
        0
    }
}

impl DspBlock for BiquadCascade {
    fn prepare(&mut self, config: &ProcessConfig) {
        BiquadCascade::prepare(self, config.channels);
    }
    fn reset(&mut self) {
        BiquadCascade::reset(self);
    }
    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        BiquadCascade::process(self, input, output);
    }
}

impl DspBlock for Compressor {
    fn prepare(&mut self, config: &ProcessConfig) {
        Compressor::prepare(self, config.max_block);
    }
    fn reset(&mut self) {
        Compressor::reset(self);
    }
    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        Compressor::process(self, input, output);
    }
}

impl DspBlock for Limiter {
    fn prepare(&mut self, config: &ProcessConfig) {
        Limiter::prepare(self, config.channels, config.max_block);
    }
    fn reset(&mut self) {
        Limiter::reset(self);
    }
    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        Limiter::process(self, input, output);
    }
    fn latency(&self) -> usize {
        Limiter::latency(self)
    }
}

/// The processor of `Eq`, `BassBoost`, `TrebleBoost`, `Compressor` and `Limiter`: prepares its block on
/// initialize, clears it on start.
pub struct Dsp<T>(pub T);

impl<T: DspBlock> Processor for Dsp<T> {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config);
        Ok(())
    }

    fn start(&mut self) {
        self.0.reset();
    }

    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        self.0.process(input, output);
    }

    fn latency_frames(&self) -> usize {
        self.0.latency()
    }
}

/// Checks `lo <= value <= hi` (and that `value` is finite).
fn in_range(path: &str, value: f64, lo: f64, hi: f64, unit: &str) -> Result<(), ParamError> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(ParamError::new(path, format!("must be between {lo} and {hi}{unit} (got {value})")))
    }
}

/// Checks `0 < freq < Nyquist`.
fn frequency(path: &str, freq_hz: f64, format: &GraphFormat) -> Result<(), ParamError> {
    let nyquist = format.nyquist_hz();
    if freq_hz.is_finite() && freq_hz > 0.0 && freq_hz < nyquist {
        Ok(())
    } else {
        Err(ParamError::new(
            path,
            format!(
                "must be above 0 Hz and below the Nyquist frequency, {nyquist} Hz at {} Hz (got {freq_hz})",
                format.sample_rate
            ),
        ))
    }
}

/// One band of an [`EqSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandSpec {
    pub kind: BandKind,
    /// Center, corner or shelf midpoint frequency; 0 < freq_hz < sample_rate / 2.
    pub freq_hz: f64,
    /// Gain of peak and shelf bands, -48..=48 dB; ignored by the other kinds. Defaults to 0.
    #[serde(default)]
    pub gain_db: f64,
    /// Quality factor, 0 < q <= 100 (for shelves, the cookbook's Q form of the slope).
    pub q: f64,
}

impl BandSpec {
    pub fn coeffs(&self, sample_rate: u32) -> Coeffs {
        Coeffs::cookbook(self.kind, self.freq_hz, self.gain_db, self.q, f64::from(sample_rate))
    }

    fn validate(&self, prefix: &str, format: &GraphFormat) -> Result<(), ParamError> {
        frequency(&format!("{prefix}freq_hz"), self.freq_hz, format)?;
        in_range(&format!("{prefix}gain_db"), self.gain_db, -48.0, 48.0, " dB")?;
        if !(self.q.is_finite() && self.q > 0.0 && self.q <= 100.0) {
            return Err(ParamError::new(
                format!("{prefix}q"),
                format!("must be above 0 and at most 100 (got {})", self.q),
            ));
        }
        Ok(())
    }
}

/// `Eq(bands: [...])`: 1 to 64 bands applied in order to every channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EqSpec {
    pub bands: Vec<BandSpec>,
}

impl NodeSpec for EqSpec {
    fn kind(&self) -> &'static str {
        "Eq"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let format = &ctx.format;
        if self.bands.is_empty() || self.bands.len() > 64 {
            return Err(ParamError::new("bands", format!("must hold 1 to 64 bands (got {})", self.bands.len())));
        }
        for (i, band) in self.bands.iter().enumerate() {
            band.validate(&format!("bands[{i}]."), format)?;
        }
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let coeffs = self.bands.iter().map(|b| b.coeffs(ctx.format.sample_rate).to_f32()).collect();
        Ok(Box::new(Dsp(BiquadCascade::new(coeffs))))
    }
}

/// `Compressor(...)`: feed-forward, stereo-linked (one gain for all channels, from the loudest one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressorSpec {
    /// Level where compression starts (center of the knee), -96..=0 dBFS.
    pub threshold_db: f64,
    /// Input dB over threshold per output dB, 1..=100.
    pub ratio: f64,
    /// Time constant of the gain reduction rising, 0..=1000 ms.
    pub attack_ms: f64,
    /// Time constant of the gain reduction falling, 0..=5000 ms.
    pub release_ms: f64,
    /// Width of the soft knee, 0..=48 dB (0 is a hard knee).
    pub knee_db: f64,
    /// Gain after compression, -24..=48 dB.
    pub makeup_db: f64,
}

impl NodeSpec for CompressorSpec {
    fn kind(&self) -> &'static str {
        "Compressor"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        in_range("threshold_db", self.threshold_db, -96.0, 0.0, " dB")?;
        in_range("ratio", self.ratio, 1.0, 100.0, "")?;
        in_range("attack_ms", self.attack_ms, 0.0, 1000.0, " ms")?;
        in_range("release_ms", self.release_ms, 0.0, 5000.0, " ms")?;
        in_range("knee_db", self.knee_db, 0.0, 48.0, " dB")?;
        in_range("makeup_db", self.makeup_db, -24.0, 48.0, " dB")
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let settings = CompressorSettings {
            threshold_db: self.threshold_db as f32,
            ratio: self.ratio as f32,
            attack_ms: self.attack_ms as f32,
            release_ms: self.release_ms as f32,
            knee_db: self.knee_db as f32,
            makeup_db: self.makeup_db as f32,
        };
        Ok(Box::new(Dsp(Compressor::new(&settings, ctx.format.sample_rate))))
    }
}

/// `Limiter(...)`: lookahead brickwall; no output sample exceeds the ceiling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterSpec {
    /// Largest output magnitude, -60..=0 dBFS.
    pub ceiling_db: f64,
    /// Lookahead, and so latency, 0..=50 ms.
    pub lookahead_ms: f64,
    /// Time constant of the gain recovering, 0..=5000 ms.
    pub release_ms: f64,
}

impl NodeSpec for LimiterSpec {
    fn kind(&self) -> &'static str {
        "Limiter"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        in_range("ceiling_db", self.ceiling_db, -60.0, 0.0, " dB")?;
        in_range("lookahead_ms", self.lookahead_ms, 0.0, 50.0, " ms")?;
        in_range("release_ms", self.release_ms, 0.0, 5000.0, " ms")
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let settings = LimiterSettings {
            ceiling_db: self.ceiling_db as f32,
            lookahead_ms: self.lookahead_ms as f32,
            release_ms: self.release_ms as f32,
        };
        Ok(Box::new(Dsp(Limiter::new(&settings, ctx.format.sample_rate))))
    }
}

/// `Gain(gain_db)`: -96..=48 dB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GainSpec {
    pub gain_db: f64,
}

impl NodeSpec for GainSpec {
    fn kind(&self) -> &'static str {
        "Gain"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        in_range("gain_db", self.gain_db, -96.0, 48.0, " dB")
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(GainProcessor(crate::dsp::db_to_gain(self.gain_db) as f32)))
    }
}

pub struct GainProcessor(f32);

impl Processor for GainProcessor {
    fn initialize(&mut self, _config: &ProcessConfig) -> Result<(), NodeError> {
        Ok(())
    }

    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        simple::apply_gain(self.0, input, output);
    }
}

/// `StereoWidth(width)`: mid/side width, 0..=4 (0 = mono, 1 = unchanged). Needs a stereo graph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StereoWidthSpec {
    pub width: f64,
}

impl NodeSpec for StereoWidthSpec {
    fn kind(&self) -> &'static str {
        "StereoWidth"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let format = &ctx.format;
        if format.channels != 2 {
            return Err(ParamError::new(
                "width",
                format!("needs a stereo graph (this graph has {} channels)", format.channels),
            ));
        }
        in_range("width", self.width, 0.0, 4.0, "")
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(WidthProcessor(self.width as f32)))
    }
}

pub struct WidthProcessor(f32);

impl Processor for WidthProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        if config.channels == 2 {
            Ok(())
        } else {
            Err(NodeError(format!("StereoWidth needs 2 channels, not {}", config.channels)))
        }
    }

    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        simple::apply_width(self.0, input, output);
    }
}

fn default_bass_hz() -> f64 {
    100.0
}

fn default_treble_hz() -> f64 {
    8000.0
}

/// `BassBoost(gain_db, freq_hz)`: a Butterworth-slope (Q 0.707) low shelf, -24..=24 dB, at `freq_hz`
/// (default 100 Hz). The bass stage of the original enhancer chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BassBoostSpec {
    pub gain_db: f64,
    #[serde(default = "default_bass_hz")]
    pub freq_hz: f64,
}

/// `TrebleBoost(gain_db, freq_hz)`: a Q 0.707 high shelf, -24..=24 dB, at `freq_hz` (default 8000 Hz).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrebleBoostSpec {
    pub gain_db: f64,
    #[serde(default = "default_treble_hz")]
    pub freq_hz: f64,
}

fn shelf_preset(kind: BandKind, gain_db: f64, freq_hz: f64, format: &GraphFormat) -> Result<EqSpec, ParamError> {
    in_range("gain_db", gain_db, -24.0, 24.0, " dB")?;
    frequency("freq_hz", freq_hz, format)?;
    Ok(EqSpec { bands: vec![BandSpec { kind, freq_hz, gain_db, q: std::f64::consts::FRAC_1_SQRT_2 }] })
}

impl NodeSpec for BassBoostSpec {
    fn kind(&self) -> &'static str {
        "BassBoost"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let format = &ctx.format;
        shelf_preset(BandKind::LowShelf, self.gain_db, self.freq_hz, format).map(drop)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let eq = shelf_preset(BandKind::LowShelf, self.gain_db, self.freq_hz, &ctx.format)
            .map_err(|e| NodeError(e.to_string()))?;
        eq.build(ctx)
    }
}

impl NodeSpec for TrebleBoostSpec {
    fn kind(&self) -> &'static str {
        "TrebleBoost"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let format = &ctx.format;
        shelf_preset(BandKind::HighShelf, self.gain_db, self.freq_hz, format).map(drop)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let eq = shelf_preset(BandKind::HighShelf, self.gain_db, self.freq_hz, &ctx.format)
            .map_err(|e| NodeError(e.to_string()))?;
        eq.build(ctx)
    }
}
