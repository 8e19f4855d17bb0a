//! The built-in node kinds: their parameter components (as written in graph files and edited live), their
//! ranges, and their processors. Every numeric parameter is automatable; see each kind's [`ParamInfo`]s
//! for how a change is smoothed.

use super::spec_boilerplate;
use crate::dsp::biquad::{BandKind, BandSettings, BiquadCascade};
use crate::dsp::compressor::{Compressor, CompressorParam, CompressorSettings};
use crate::dsp::limiter::{Limiter, LimiterSettings};
use crate::dsp::simple::RampedGain;
use crate::dsp::smooth::ramp_frames;
use crate::node::AudioOut;
use crate::node::{
    BuildContext, GraphFormat, NodeError, NodeSpec, ParamError, ParamInfo, ParamValue, ProcessConfig, Processor,
    RAMP_MS, Smoothing,
};
use crate::node::{NodeKind, Registry};
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};

pub(crate) fn register(registry: &mut Registry) {
    let kinds = [
        NodeKind::new::<EqParams>("Eq", "cascade of RBJ-cookbook biquad bands"),
        NodeKind::new::<CompressorParams>("Compressor", "feed-forward stereo-linked compressor with soft knee"),
        NodeKind::new::<LimiterParams>("Limiter", "lookahead brickwall limiter"),
        NodeKind::new::<GainParams>("Gain", "gain"),
        NodeKind::new::<StereoWidthParams>("StereoWidth", "mid/side stereo width"),
        NodeKind::new::<BassBoostParams>("BassBoost", "low shelf preset"),
        NodeKind::new::<TrebleBoostParams>("TrebleBoost", "high shelf preset"),
    ];
    for kind in kinds {
        registry.register(kind);
    }
}

/// A numeric parameter of a kind with a fixed list of them.
struct Field {
    name: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
    smoothing: Smoothing,
}

const fn field(name: &'static str, unit: &'static str, min: f64, max: f64, smoothing: Smoothing) -> Field {
    Field { name, unit, min, max, smoothing }
}

fn infos(fields: &[Field]) -> Vec<ParamInfo> {
    fields.iter().map(|f| ParamInfo::number(f.name, f.unit, f.min, f.max, f.smoothing)).collect()
}

/// Checks each value against its field's range.
fn check(fields: &[Field], values: &[f64]) -> Result<(), ParamError> {
    for (f, v) in fields.iter().zip(values) {
        ParamInfo::number(f.name, f.unit, f.min, f.max, f.smoothing)
            .resolve(&ParamValue::Number(*v))
            .map_err(|m| ParamError::new(f.name, m))?;
    }
    Ok(())
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

fn frequency_info(name: String, format: &GraphFormat) -> ParamInfo {
    ParamInfo::number(name, "Hz", 0.0, format.nyquist_hz(), Smoothing::Ramp)
}

/// One band of an [`EqParams`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BandParams {
    pub kind: BandKind,
    /// Center, corner or shelf midpoint frequency; 0 < freq_hz < sample_rate / 2.
    pub freq_hz: f64,
    /// Gain of peak and shelf bands, -48..=48 dB; ignored by the other kinds. Defaults to 0.
    #[serde(default)]
    pub gain_db: f64,
    /// Quality factor, 0 < q <= 100 (for shelves, the cookbook's Q form of the slope).
    pub q: f64,
}

impl BandParams {
    pub fn settings(&self) -> BandSettings {
        BandSettings { kind: self.kind, freq_hz: self.freq_hz, gain_db: self.gain_db, q: self.q }
    }

    fn validate(&self, prefix: &str, format: &GraphFormat) -> Result<(), ParamError> {
        frequency(&format!("{prefix}freq_hz"), self.freq_hz, format)?;
        ParamInfo::number("gain_db", "dB", -48.0, 48.0, Smoothing::Ramp)
            .resolve(&ParamValue::Number(self.gain_db))
            .map_err(|m| ParamError::new(format!("{prefix}gain_db"), m))?;
        if !(self.q.is_finite() && self.q > 0.0 && self.q <= 100.0) {
            return Err(ParamError::new(
                format!("{prefix}q"),
                format!("must be above 0 and at most 100 (got {})", self.q),
            ));
        }
        Ok(())
    }
}

/// `Eq(bands: [...])`: 1 to 64 bands applied in order to every channel. Parameters
/// `bands[i].freq_hz`, `bands[i].gain_db`, `bands[i].q` (index `3i`, `3i + 1`, `3i + 2`), all ramped;
/// a band's kind is its shape (changing it rebuilds the node).
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EqParams {
    pub bands: Vec<BandParams>,
}

impl NodeSpec for EqParams {
    fn kind(&self) -> &'static str {
        "Eq"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        if self.bands.is_empty() || self.bands.len() > 64 {
            return Err(ParamError::new("bands", format!("must hold 1 to 64 bands (got {})", self.bands.len())));
        }
        for (i, band) in self.bands.iter().enumerate() {
            band.validate(&format!("bands[{i}]."), &ctx.format)?;
        }
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let bands = self.bands.iter().map(BandParams::settings).collect();
        Ok(Box::new(EqProcessor { cascade: BiquadCascade::new(bands, ctx.format.sample_rate), shelf: false }))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        for i in 0..self.bands.len() {
            out.push(frequency_info(format!("bands[{i}].freq_hz"), &ctx.format));
            out.push(ParamInfo::number(format!("bands[{i}].gain_db"), "dB", -48.0, 48.0, Smoothing::Ramp));
            out.push(ParamInfo::number(format!("bands[{i}].q"), "", 0.0, 100.0, Smoothing::Ramp));
        }
        out
    }

    fn param(&self, index: usize) -> f64 {
        self.bands.get(index / 3).map_or(0.0, |b| [b.freq_hz, b.gain_db, b.q][index % 3])
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if let Some(b) = self.bands.get_mut(index / 3) {
            *[&mut b.freq_hz, &mut b.gain_db, &mut b.q][index % 3] = value;
        }
    }

    fn shape(&self) -> String {
        self.bands.iter().map(|b| format!("{:?}", b.kind)).collect::<Vec<_>>().join(",")
    }

    spec_boilerplate!();
}

/// The processor of `Eq`, `BassBoost` and `TrebleBoost`.
pub struct EqProcessor {
    cascade: BiquadCascade,
    /// A one-band shelf preset: parameter 0 is the gain, 1 the frequency.
    shelf: bool,
}

impl Processor for EqProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.cascade.prepare(config.channels, config.max_block);
        Ok(())
    }

    fn start(&mut self) {
        self.cascade.reset();
    }

    fn reset(&mut self) {
        self.cascade.reset();
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.cascade.process(audio);
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let (band, which) = match (self.shelf, index) {
            (true, 0) => (0, 1),
            (true, _) => (0, 0),
            (false, i) => (i / 3, i % 3),
        };
        self.cascade.set(band, which, value);
    }
}

const COMPRESSOR: [Field; 6] = [
    field("threshold_db", "dB", -96.0, 0.0, Smoothing::Ramp),
    field("ratio", "", 1.0, 100.0, Smoothing::Ramp),
    field("attack_ms", "ms", 0.0, 1000.0, Smoothing::Step),
    field("release_ms", "ms", 0.0, 5000.0, Smoothing::Step),
    field("knee_db", "dB", 0.0, 48.0, Smoothing::Ramp),
    field("makeup_db", "dB", -24.0, 48.0, Smoothing::Ramp),
];

/// `Compressor(...)`: feed-forward, stereo-linked (one gain for all channels, from the loudest one).
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressorParams {
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

impl CompressorParams {
    fn values(&self) -> [f64; 6] {
        [self.threshold_db, self.ratio, self.attack_ms, self.release_ms, self.knee_db, self.makeup_db]
    }

    pub fn settings(&self) -> CompressorSettings {
        CompressorSettings {
            threshold_db: self.threshold_db as f32,
            ratio: self.ratio as f32,
            attack_ms: self.attack_ms as f32,
            release_ms: self.release_ms as f32,
            knee_db: self.knee_db as f32,
            makeup_db: self.makeup_db as f32,
        }
    }
}

impl NodeSpec for CompressorParams {
    fn kind(&self) -> &'static str {
        "Compressor"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        check(&COMPRESSOR, &self.values())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(CompressorProcessor(Compressor::new(&self.settings(), ctx.format.sample_rate))))
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        infos(&COMPRESSOR)
    }

    fn param(&self, index: usize) -> f64 {
        self.values().get(index).copied().unwrap_or(0.0)
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let fields = [
            &mut self.threshold_db,
            &mut self.ratio,
            &mut self.attack_ms,
            &mut self.release_ms,
            &mut self.knee_db,
            &mut self.makeup_db,
        ];
        if let Some(f) = fields.into_iter().nth(index) {
            *f = value;
        }
    }

    spec_boilerplate!();
}

pub struct CompressorProcessor(Compressor);

impl Processor for CompressorProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config.max_block);
        Ok(())
    }

    fn start(&mut self) {
        self.0.reset();
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process(audio);
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let param = match index {
            0 => CompressorParam::ThresholdDb,
            1 => CompressorParam::Ratio,
            2 => CompressorParam::AttackMs,
            3 => CompressorParam::ReleaseMs,
            4 => CompressorParam::KneeDb,
            _ => CompressorParam::MakeupDb,
        };
        self.0.set(param, value);
    }
}

const LIMITER: [Field; 3] = [
    field("ceiling_db", "dB", -60.0, 0.0, Smoothing::Ramp),
    field("lookahead_ms", "ms", 0.0, 50.0, Smoothing::Rebuild),
    field("release_ms", "ms", 0.0, 5000.0, Smoothing::Step),
];

/// `Limiter(...)`: lookahead brickwall; no output sample exceeds the ceiling.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterParams {
    /// Largest output magnitude, -60..=0 dBFS.
    pub ceiling_db: f64,
    /// Lookahead, and so latency, 0..=50 ms.
    pub lookahead_ms: f64,
    /// Time constant of the gain recovering, 0..=5000 ms.
    pub release_ms: f64,
}

impl NodeSpec for LimiterParams {
    fn kind(&self) -> &'static str {
        "Limiter"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        check(&LIMITER, &[self.ceiling_db, self.lookahead_ms, self.release_ms])
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let settings = LimiterSettings {
            ceiling_db: self.ceiling_db as f32,
            lookahead_ms: self.lookahead_ms as f32,
            release_ms: self.release_ms as f32,
        };
        Ok(Box::new(LimiterProcessor(Limiter::new(&settings, ctx.format.sample_rate))))
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        infos(&LIMITER)
    }

    fn param(&self, index: usize) -> f64 {
        [self.ceiling_db, self.lookahead_ms, self.release_ms].get(index).copied().unwrap_or(0.0)
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if let Some(f) = [&mut self.ceiling_db, &mut self.lookahead_ms, &mut self.release_ms].into_iter().nth(index) {
            *f = value;
        }
    }

    spec_boilerplate!();
}

pub struct LimiterProcessor(Limiter);

impl Processor for LimiterProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config.channels, config.max_block);
        Ok(())
    }

    fn start(&mut self) {
        self.0.reset();
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process(audio);
    }

    fn latency_frames(&self) -> usize {
        self.0.latency()
    }

    fn set_param(&mut self, index: usize, value: f64) {
        match index {
            0 => self.0.set_ceiling_db(value),
            2 => self.0.set_release_ms(value),
            // The lookahead is rebuilt, never set.
            _ => {}
        }
    }
}

const GAIN: [Field; 1] = [field("gain_db", "dB", -96.0, 48.0, Smoothing::Ramp)];

/// `Gain(gain_db)`: -96..=48 dB, ramped.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GainParams {
    pub gain_db: f64,
}

impl NodeSpec for GainParams {
    fn kind(&self) -> &'static str {
        "Gain"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        check(&GAIN, &[self.gain_db])
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let len = ramp_frames(RAMP_MS, ctx.format.sample_rate);
        Ok(Box::new(GainProcessor(RampedGain::new(crate::dsp::db_to_gain(self.gain_db), len))))
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        infos(&GAIN)
    }

    fn param(&self, _index: usize) -> f64 {
        self.gain_db
    }

    fn set_param(&mut self, _index: usize, value: f64) {
        self.gain_db = value;
    }

    spec_boilerplate!();
}

pub struct GainProcessor(RampedGain);

impl Processor for GainProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config.max_block);
        Ok(())
    }

    fn start(&mut self) {
        self.0.settle();
    }

    fn reset(&mut self) {
        self.0.settle();
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process(audio);
    }

    fn set_param(&mut self, _index: usize, value: f64) {
        self.0.set(crate::dsp::db_to_gain(value));
    }
}

const WIDTH: [Field; 1] = [field("width", "", 0.0, 4.0, Smoothing::Ramp)];

/// `StereoWidth(width)`: mid/side width, 0..=4 (0 = mono, 1 = unchanged), ramped. Needs a stereo graph.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StereoWidthParams {
    pub width: f64,
}

impl NodeSpec for StereoWidthParams {
    fn kind(&self) -> &'static str {
        "StereoWidth"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        if ctx.format.channels != 2 {
            return Err(ParamError::new(
                "width",
                format!("needs a stereo graph (this graph has {} channels)", ctx.format.channels),
            ));
        }
        check(&WIDTH, &[self.width])
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let len = ramp_frames(RAMP_MS, ctx.format.sample_rate);
        Ok(Box::new(WidthProcessor(RampedGain::new(self.width, len))))
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        infos(&WIDTH)
    }

    fn param(&self, _index: usize) -> f64 {
        self.width
    }

    fn set_param(&mut self, _index: usize, value: f64) {
        self.width = value;
    }

    spec_boilerplate!();
}

pub struct WidthProcessor(RampedGain);

impl Processor for WidthProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        if config.channels != 2 {
            return Err(NodeError(format!("StereoWidth needs 2 channels, not {}", config.channels)));
        }
        self.0.prepare(config.max_block);
        Ok(())
    }

    fn start(&mut self) {
        self.0.settle();
    }

    fn reset(&mut self) {
        self.0.settle();
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process_width(audio);
    }

    fn set_param(&mut self, _index: usize, value: f64) {
        self.0.set(value);
    }
}

fn default_bass_hz() -> f64 {
    100.0
}

fn default_treble_hz() -> f64 {
    8000.0
}

/// `BassBoost(gain_db, freq_hz)`: a Butterworth-slope (Q 0.707) low shelf, -24..=24 dB, at `freq_hz`
/// (default 100 Hz). The bass stage of the original enhancer chain. Both parameters ramp.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BassBoostParams {
    pub gain_db: f64,
    #[serde(default = "default_bass_hz")]
    pub freq_hz: f64,
}

/// `TrebleBoost(gain_db, freq_hz)`: a Q 0.707 high shelf, -24..=24 dB, at `freq_hz` (default 8000 Hz).
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrebleBoostParams {
    pub gain_db: f64,
    #[serde(default = "default_treble_hz")]
    pub freq_hz: f64,
}

fn shelf_validate(gain_db: f64, freq_hz: f64, format: &GraphFormat) -> Result<(), ParamError> {
    ParamInfo::number("gain_db", "dB", -24.0, 24.0, Smoothing::Ramp)
        .resolve(&ParamValue::Number(gain_db))
        .map_err(|m| ParamError::new("gain_db", m))?;
    frequency("freq_hz", freq_hz, format)
}

fn shelf_params(format: &GraphFormat) -> Vec<ParamInfo> {
    vec![ParamInfo::number("gain_db", "dB", -24.0, 24.0, Smoothing::Ramp), frequency_info("freq_hz".into(), format)]
}

fn shelf_build(kind: BandKind, gain_db: f64, freq_hz: f64, sample_rate: u32) -> Box<dyn Processor> {
    let band = BandSettings { kind, freq_hz, gain_db, q: std::f64::consts::FRAC_1_SQRT_2 };
    Box::new(EqProcessor { cascade: BiquadCascade::new(vec![band], sample_rate), shelf: true })
}

macro_rules! shelf_kind {
    ($ty:ty, $name:literal, $band:expr) => {
        impl NodeSpec for $ty {
            fn kind(&self) -> &'static str {
                $name
            }

            fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
                shelf_validate(self.gain_db, self.freq_hz, &ctx.format)
            }

            fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
                Ok(shelf_build($band, self.gain_db, self.freq_hz, ctx.format.sample_rate))
            }

            fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
                shelf_params(&ctx.format)
            }

            fn param(&self, index: usize) -> f64 {
                if index == 0 { self.gain_db } else { self.freq_hz }
            }

            fn set_param(&mut self, index: usize, value: f64) {
                if index == 0 {
                    self.gain_db = value;
                } else {
                    self.freq_hz = value;
                }
            }

            spec_boilerplate!();
        }
    };
}

shelf_kind!(BassBoostParams, "BassBoost", BandKind::LowShelf);
shelf_kind!(TrebleBoostParams, "TrebleBoost", BandKind::HighShelf);
