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
use crate::node::{Layout, NodeKind, Port, Ports, Registry, Width};
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};

pub(crate) fn register(registry: &mut Registry) {
    let kinds = [
        NodeKind::new::<EqParams>("Eq", "cascade of RBJ-cookbook biquad bands"),
        NodeKind::new::<CompressorParams>(
            "Compressor",
            "feed-forward stereo-linked compressor with soft knee; optional sidechain input",
        ),
        NodeKind::new::<GateParams>("Gate", "noise gate with hold and range; optional sidechain input"),
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

/// How far up a parameter goes.
#[derive(Debug, Clone, Copy)]
enum Upper {
    /// To this value, inclusive.
    To(f64),
    /// To just below the Nyquist frequency of the graph's rate (and above the minimum, exclusive).
    BelowNyquist,
}

/// One numeric parameter of a kind with a fixed list of them, as [`fixed_params!`] declares it.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    unit: &'static str,
    min: f64,
    max: Upper,
    smoothing: Smoothing,
}

impl Field {
    fn info(&self, format: &GraphFormat) -> ParamInfo {
        let max = match self.max {
            Upper::To(max) => max,
            Upper::BelowNyquist => format.nyquist_hz(),
        };
        ParamInfo::number(self.name, self.unit, self.min, max, self.smoothing)
    }

    /// Checks a value against the field's range at the graph's format; the error names the field.
    fn check(&self, value: f64, format: &GraphFormat) -> Result<(), ParamError> {
        match self.max {
            Upper::To(_) => self.info(format).resolve(&ParamValue::Number(value)).map(drop),
            Upper::BelowNyquist => frequency(value, format).map_err(|m| ParamError::new(self.name, m)),
        }
    }
}

/// A parameter component whose parameters are a fixed list of numbers, declared once by
/// [`fixed_params!`]: the names, units, ranges and smoothing in one table, beside the fields. Everything
/// the node contract asks about them follows from it.
trait Fixed {
    const FIELDS: &'static [Field];
    fn value(&self, index: usize) -> Option<f64>;
    fn value_mut(&mut self, index: usize) -> Option<&mut f64>;

    /// Every field's value against its range.
    fn check_fields(&self, format: &GraphFormat) -> Result<(), ParamError> {
        for (i, field) in Self::FIELDS.iter().enumerate() {
            field.check(self.value(i).unwrap_or(f64::NAN), format)?;
        }
        Ok(())
    }

    /// The parameter of this name, by its index in the table.
    fn index_of(name: &str) -> Option<usize> {
        Self::FIELDS.iter().position(|f| f.name == name)
    }
}

/// Declares a parameter component with a fixed list of numeric parameters: the struct (each field
/// `pub f64`, with its doc and serde attributes) and, for each field, its unit, lowest value, [`Upper`]
/// bound and smoothing, in the order that gives the parameters their indices.
macro_rules! fixed_params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $unit:literal, $min:expr, $max:expr, $smoothing:ident;
            )*
            $(
                @setting $(#[$smeta:meta])* $setting:ident: $sty:ty;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: f64,)*
            $($(#[$smeta])* #[serde(default)] pub $setting: $sty,)*
        }

        impl Fixed for $name {
            const FIELDS: &'static [Field] = &[$(Field {
                name: stringify!($field),
                unit: $unit,
                min: $min,
                max: $max,
                smoothing: Smoothing::$smoothing,
            }),*];

            fn value(&self, index: usize) -> Option<f64> {
                [$(self.$field),*].get(index).copied()
            }

            fn value_mut(&mut self, index: usize) -> Option<&mut f64> {
                [$(&mut self.$field),*].into_iter().nth(index)
            }
        }
    };
}

/// The [`NodeSpec`] methods that a [`Fixed`] component's table answers: `params`, `param`, `set_param`,
/// and the boilerplate.
macro_rules! fixed_spec {
    () => {
        fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
            Self::FIELDS.iter().map(|f| f.info(&ctx.format)).collect()
        }

        fn param(&self, index: usize) -> f64 {
            self.value(index).unwrap_or(0.0)
        }

        fn set_param(&mut self, index: usize, value: f64) {
            if let Some(v) = self.value_mut(index) {
                *v = value;
            }
        }

        spec_boilerplate!();
    };
}

/// Checks `0 < freq < Nyquist`.
pub(super) fn frequency(freq_hz: f64, format: &GraphFormat) -> Result<(), String> {
    let nyquist = format.nyquist_hz();
    if freq_hz.is_finite() && freq_hz > 0.0 && freq_hz < nyquist {
        Ok(())
    } else {
        Err(format!(
            "must be above 0 Hz and below the Nyquist frequency, {nyquist} Hz at {} Hz (got {freq_hz})",
            format.sample_rate
        ))
    }
}

/// The DSP behind a built-in node, as [`Node`] drives it: the processor lifecycle without the
/// boilerplate every built-in kind would repeat.
pub(super) trait Dsp: Send + 'static {
    /// Allocates for `config` (control side).
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError>;
    /// Clears all state (at start, and for a seek).
    fn clear(&mut self);
    fn run(&mut self, audio: &mut AudioOut<'_>);
    /// Takes parameter `index`'s new value.
    fn set(&mut self, index: usize, value: f64);
    fn latency(&self) -> usize {
        0
    }
}

/// A built-in node's processor: its [`Dsp`] behind the [`Processor`] contract.
pub(super) struct Node<D>(pub(super) D);

impl<D: Dsp> Processor for Node<D> {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config)
    }

    fn start(&mut self) {
        self.0.clear();
    }

    fn reset(&mut self) {
        self.0.clear();
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.0.run(audio);
    }

    fn set_param(&mut self, index: usize, value: f64) {
        self.0.set(index, value);
    }

    fn latency_frames(&self) -> usize {
        self.0.latency()
    }
}

/// One band of an [`EqParams`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BandParams {
    /// The band's shape.
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
    /// The band in the DSP's terms.
    pub fn settings(&self) -> BandSettings {
        BandSettings { kind: self.kind, freq_hz: self.freq_hz, gain_db: self.gain_db, q: self.q }
    }

    fn validate(&self, prefix: &str, format: &GraphFormat) -> Result<(), ParamError> {
        frequency(self.freq_hz, format).map_err(|m| ParamError::new(format!("{prefix}freq_hz"), m))?;
        ParamInfo::number("gain_db", "dB", -48.0, 48.0, Smoothing::Ramp)
            .resolve(&ParamValue::Number(self.gain_db))
            .map_err(|e| ParamError::new(format!("{prefix}gain_db"), e.message))?;
        if !(self.q.is_finite() && self.q > 0.0 && self.q <= 100.0) {
            return Err(ParamError::new(
                format!("{prefix}q"),
                format!("must be above 0 and at most 100 (got {})", self.q),
            ));
        }
        Ok(())
    }
}

/// `Eq(bands: [...], gain_db)`, or `Eq(import: "ParametricEQ.txt")`: 1 to 64 bands applied in order to
/// every channel, after a gain. Parameters `bands[i].freq_hz`, `bands[i].gain_db`, `bands[i].q` (index
/// `3i`, `3i + 1`, `3i + 2`) and `gain_db` (index `3n`), all ramped; a band's kind is its shape (changing
/// it rebuilds the node). `import` reads an EqualizerAPO / AutoEq parametric EQ file (relative to the
/// graph; see [`crate::graph::eqapo`]): its filters become the bands and its preamp is added to `gain_db`.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EqParams {
    /// The bands, applied in order (given by the file when `import` is).
    #[serde(default)]
    pub bands: Vec<BandParams>,
    /// A gain before the bands, -48..=48 dB.
    #[serde(default)]
    pub gain_db: f64,
    /// A parametric EQ file whose filters become the bands (written out as the bands it gave).
    #[serde(default, skip_serializing, deserialize_with = "crate::nodes::native::plain_some")]
    pub import: Option<String>,
    /// The import's outcome once bound: `Some(Ok)` read, `Some(Err)` why not.
    #[serde(skip)]
    imported: Option<Result<(), String>>,
}

impl EqParams {
    /// An `Eq` of these bands, with no gain.
    pub fn with_bands(bands: Vec<BandParams>) -> Self {
        Self { bands, gain_db: 0.0, import: None, imported: None }
    }
}

impl From<&crate::graph::eqapo::Band> for BandParams {
    fn from(b: &crate::graph::eqapo::Band) -> Self {
        BandParams { kind: b.kind, freq_hz: b.freq_hz, gain_db: b.gain_db, q: b.q }
    }
}

impl NodeSpec for EqParams {
    fn kind(&self) -> &'static str {
        "Eq"
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        let Some(file) = self.import.clone() else { return };
        if self.imported.is_some() {
            return;
        }
        if !self.bands.is_empty() {
            self.imported = Some(Err("give `bands` or `import`, not both".into()));
            return;
        }
        let path = ctx.base_dir.join(&file);
        let read = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        self.imported = Some(read.and_then(|text| {
            let eq = crate::graph::eqapo::parse(&text, &path.display().to_string(), f64::from(ctx.format.sample_rate))
                .map_err(|e| e.to_string())?;
            self.bands = eq.bands.iter().map(BandParams::from).collect();
            self.gain_db += eq.preamp_db;
            Ok(())
        }));
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        match &self.imported {
            Some(Err(why)) => return Err(ParamError::new("import", why.clone())),
            None if self.import.is_some() => return Err(ParamError::new("import", "the file was not read")),
            _ => {}
        }
        if self.bands.is_empty() || self.bands.len() > 64 {
            return Err(ParamError::new("bands", format!("must hold 1 to 64 bands (got {})", self.bands.len())));
        }
        ParamInfo::number("gain_db", "dB", -48.0, 48.0, Smoothing::Ramp)
            .resolve(&ParamValue::Number(self.gain_db))
            .map_err(|e| ParamError::new("gain_db", e.message))?;
        for (i, band) in self.bands.iter().enumerate() {
            band.validate(&format!("bands[{i}]."), &ctx.format)?;
        }
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let bands = self.bands.iter().map(BandParams::settings).collect();
        let gain = RampedGain::new(crate::dsp::db_to_gain(self.gain_db), ramp_frames(RAMP_MS, ctx.format.sample_rate));
        Ok(Box::new(Node(Cascade {
            cascade: BiquadCascade::new(bands, ctx.format.sample_rate),
            shelf: false,
            gain: Some(gain),
        })))
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        for i in 0..self.bands.len() {
            out.push(ParamInfo::number(
                format!("bands[{i}].freq_hz"),
                "Hz",
                0.0,
                ctx.format.nyquist_hz(),
                Smoothing::Ramp,
            ));
            out.push(ParamInfo::number(format!("bands[{i}].gain_db"), "dB", -48.0, 48.0, Smoothing::Ramp));
            out.push(ParamInfo::number(format!("bands[{i}].q"), "", 0.0, 100.0, Smoothing::Ramp));
        }
        out.push(ParamInfo::number("gain_db", "dB", -48.0, 48.0, Smoothing::Ramp));
        out
    }

    fn param(&self, index: usize) -> f64 {
        if index == 3 * self.bands.len() {
            return self.gain_db;
        }
        self.bands.get(index / 3).map_or(0.0, |b| [b.freq_hz, b.gain_db, b.q][index % 3])
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if index == 3 * self.bands.len() {
            self.gain_db = value;
        } else if let Some(b) = self.bands.get_mut(index / 3) {
            *[&mut b.freq_hz, &mut b.gain_db, &mut b.q][index % 3] = value;
        }
    }

    fn shape(&self) -> String {
        self.bands.iter().map(|b| format!("{:?}", b.kind)).collect::<Vec<_>>().join(",")
    }

    fn files(&self, base_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        self.import.iter().map(|f| base_dir.join(f)).collect()
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports::follow()
    }

    spec_boilerplate!();
}

/// The DSP of `Eq`, `BassBoost` and `TrebleBoost`: a biquad cascade, and for `Eq` a gain before it.
struct Cascade {
    cascade: BiquadCascade,
    /// A one-band shelf preset: parameter 0 is the gain, 1 the frequency.
    shelf: bool,
    /// `Eq`'s gain (its last parameter); skipped while it is 1.
    gain: Option<RampedGain>,
}

impl Dsp for Cascade {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.cascade.prepare(config.channels, config.max_block);
        if let Some(gain) = &mut self.gain {
            gain.prepare(config.max_block);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.cascade.reset();
        if let Some(gain) = &mut self.gain {
            gain.settle();
        }
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        if let Some(gain) = self.gain.as_mut().filter(|g| !g.is_unity()) {
            gain.process(audio);
        }
        self.cascade.process(audio);
    }

    fn set(&mut self, index: usize, value: f64) {
        if let Some(gain) = self.gain.as_mut().filter(|_| index == 3 * self.cascade.coeffs().len()) {
            gain.set(crate::dsp::db_to_gain(value));
            return;
        }
        let (band, which) = match (self.shelf, index) {
            (true, 0) => (0, 1),
            (true, _) => (0, 0),
            (false, i) => (i / 3, i % 3),
        };
        self.cascade.set(band, which, value);
    }
}

/// The ports of a node whose detector may read a sidechain: `in` of any width and `out` as wide, and an
/// optional `sidechain` of any width. When it is connected the detector reads it instead of `in`.
fn keyed_ports() -> Ports {
    Ports {
        inputs: vec![Port::new("in", Width::Any), Port::new("sidechain", Width::Optional)],
        outputs: vec![Port::new("out", Width::Input(0))],
    }
}

/// The channels a keyed node applies its gain to, and those its detector reads, in its block.
fn keyed_channels(layout: &Layout) -> (usize, std::ops::Range<usize>) {
    let main = layout.input(0);
    match layout.input(1) {
        0 => (main, 0..main),
        key => (main, main..main + key),
    }
}

fixed_params! {
    /// `Compressor(...)`: feed-forward, stereo-linked (one gain for all channels, from the loudest one).
    /// Its detector reads the `sidechain` input port instead of `in` when that is connected (ducking, a
    /// de-esser keyed by a band).
    pub struct CompressorParams {
        /// Level where compression starts (center of the knee), -96..=0 dBFS.
        threshold_db: "dB", -96.0, Upper::To(0.0), Ramp;
        /// Input dB over threshold per output dB, 1..=100.
        ratio: "", 1.0, Upper::To(100.0), Ramp;
        /// Time constant of the gain reduction rising, 0..=1000 ms.
        attack_ms: "ms", 0.0, Upper::To(1000.0), Step;
        /// Time constant of the gain reduction falling, 0..=5000 ms.
        release_ms: "ms", 0.0, Upper::To(5000.0), Step;
        /// Width of the soft knee, 0..=48 dB (0 is a hard knee).
        knee_db: "dB", 0.0, Upper::To(48.0), Ramp;
        /// Gain after compression, -24..=48 dB.
        makeup_db: "dB", -24.0, Upper::To(48.0), Ramp;
    }
}

impl CompressorParams {
    /// The compressor's settings, in the DSP's terms.
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

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        self.check_fields(&ctx.format)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let params = Self::FIELDS.iter().map(|f| CompressorParam::named(f.name)).collect();
        Ok(Box::new(Node(CompressorDsp(Compressor::new(&self.settings(), ctx.format.sample_rate), params))))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        keyed_ports()
    }

    fixed_spec!();
}

/// A compressor, and the DSP's name for each parameter index.
struct CompressorDsp(Compressor, Vec<Option<CompressorParam>>);

impl Dsp for CompressorDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config.max_block);
        if config.layout.input(1) > 0 {
            let (main, key) = keyed_channels(&config.layout);
            self.0.route(main, key);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.0.reset();
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process(audio);
    }

    fn set(&mut self, index: usize, value: f64) {
        if let Some(Some(param)) = self.1.get(index) {
            self.0.set(*param, value);
        }
    }
}

fixed_params! {
    /// `Limiter(...)`: lookahead brickwall; no output sample exceeds the ceiling. With its `sidechain`
    /// input port connected, the gain is the one that keeps the key under the ceiling, applied to `in`
    /// (which is then not clamped).
    pub struct LimiterParams {
        /// Largest output magnitude, -60..=0 dBFS.
        ceiling_db: "dB", -60.0, Upper::To(0.0), Ramp;
        /// Lookahead, and so latency, 0..=50 ms.
        lookahead_ms: "ms", 0.0, Upper::To(50.0), Rebuild;
        /// Time constant of the gain recovering, 0..=5000 ms.
        release_ms: "ms", 0.0, Upper::To(5000.0), Step;
        @setting
        /// Hold the ceiling for true peaks (4× oversampled, as a true-peak meter reads them), at 8 frames
        /// more latency. Not with a sidechain.
        true_peak: bool;
    }
}

impl NodeSpec for LimiterParams {
    fn kind(&self) -> &'static str {
        "Limiter"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        self.check_fields(&ctx.format)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let settings = LimiterSettings {
            ceiling_db: self.ceiling_db as f32,
            lookahead_ms: self.lookahead_ms as f32,
            release_ms: self.release_ms as f32,
            true_peak: self.true_peak,
        };
        let dsp = LimiterDsp {
            limiter: Limiter::new(&settings, ctx.format.sample_rate),
            ceiling: Self::index_of("ceiling_db"),
            release: Self::index_of("release_ms"),
        };
        Ok(Box::new(Node(dsp)))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        keyed_ports()
    }

    fixed_spec!();
}

/// A limiter, and the indices of the parameters it takes while it runs (its lookahead is rebuilt, never
/// set).
struct LimiterDsp {
    limiter: Limiter,
    ceiling: Option<usize>,
    release: Option<usize>,
}

impl Dsp for LimiterDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        let (main, key) = keyed_channels(&config.layout);
        self.limiter.prepare(main, config.max_block);
        if config.layout.input(1) > 0 {
            if self.limiter.holds_true_peaks() {
                return Err(NodeError("a true-peak limiter (`true_peak: true`) takes no sidechain".into()));
            }
            self.limiter.route(key);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.limiter.reset();
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        self.limiter.process(audio);
    }

    fn set(&mut self, index: usize, value: f64) {
        if Some(index) == self.ceiling {
            self.limiter.set_ceiling_db(value);
        } else if Some(index) == self.release {
            self.limiter.set_release_ms(value);
        }
    }

    fn latency(&self) -> usize {
        self.limiter.latency()
    }
}

fixed_params! {
    /// `Gain(gain_db)`: -96..=48 dB, ramped.
    pub struct GainParams {
        /// The gain, -96..=48 dB.
        gain_db: "dB", -96.0, Upper::To(48.0), Ramp;
    }
}

impl NodeSpec for GainParams {
    fn kind(&self) -> &'static str {
        "Gain"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        self.check_fields(&ctx.format)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let len = ramp_frames(RAMP_MS, ctx.format.sample_rate);
        Ok(Box::new(Node(GainDsp(RampedGain::new(crate::dsp::db_to_gain(self.gain_db), len)))))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports::follow()
    }

    fixed_spec!();
}

/// A ramped gain, set in dB.
struct GainDsp(RampedGain);

impl Dsp for GainDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.0.prepare(config.max_block);
        Ok(())
    }

    fn clear(&mut self) {
        self.0.settle();
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process(audio);
    }

    fn set(&mut self, _index: usize, value: f64) {
        self.0.set(crate::dsp::db_to_gain(value));
    }
}

fixed_params! {
    /// `StereoWidth(width)`: mid/side width, 0..=4 (0 = mono, 1 = unchanged), ramped. Its ports are stereo.
    pub struct StereoWidthParams {
        /// The side's gain against the mid's, 0..=4.
        width: "", 0.0, Upper::To(4.0), Ramp;
    }
}

impl NodeSpec for StereoWidthParams {
    fn kind(&self) -> &'static str {
        "StereoWidth"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        self.check_fields(&ctx.format)
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports { inputs: vec![Port::new("in", Width::Fixed(2))], outputs: vec![Port::new("out", Width::Fixed(2))] }
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let len = ramp_frames(RAMP_MS, ctx.format.sample_rate);
        Ok(Box::new(Node(WidthDsp(RampedGain::new(self.width, len)))))
    }

    fixed_spec!();
}

/// A ramped mid/side width.
struct WidthDsp(RampedGain);

impl Dsp for WidthDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        if config.channels != 2 {
            return Err(NodeError(format!("StereoWidth needs 2 channels, not {}", config.channels)));
        }
        self.0.prepare(config.max_block);
        Ok(())
    }

    fn clear(&mut self) {
        self.0.settle();
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        self.0.process_width(audio);
    }

    fn set(&mut self, _index: usize, value: f64) {
        self.0.set(value);
    }
}

fn default_bass_hz() -> f64 {
    100.0
}

fn default_treble_hz() -> f64 {
    8000.0
}

fixed_params! {
    /// `BassBoost(gain_db, freq_hz)`: a Butterworth-slope (Q 0.707) low shelf, -24..=24 dB, at `freq_hz`
    /// (default 100 Hz). The bass stage of the original enhancer chain. Both parameters ramp.
    pub struct BassBoostParams {
        /// The shelf's gain, -24..=24 dB.
        gain_db: "dB", -24.0, Upper::To(24.0), Ramp;
        /// The shelf's midpoint, below Nyquist.
        #[serde(default = "default_bass_hz")]
        freq_hz: "Hz", 0.0, Upper::BelowNyquist, Ramp;
    }
}

fixed_params! {
    /// `TrebleBoost(gain_db, freq_hz)`: a Q 0.707 high shelf, -24..=24 dB, at `freq_hz` (default 8000 Hz).
    pub struct TrebleBoostParams {
        /// The shelf's gain, -24..=24 dB.
        gain_db: "dB", -24.0, Upper::To(24.0), Ramp;
        /// The shelf's midpoint, below Nyquist.
        #[serde(default = "default_treble_hz")]
        freq_hz: "Hz", 0.0, Upper::BelowNyquist, Ramp;
    }
}

macro_rules! shelf_kind {
    ($ty:ty, $name:literal, $band:expr) => {
        impl NodeSpec for $ty {
            fn kind(&self) -> &'static str {
                $name
            }

            fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
                self.check_fields(&ctx.format)
            }

            fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
                let band = BandSettings {
                    kind: $band,
                    freq_hz: self.freq_hz,
                    gain_db: self.gain_db,
                    q: std::f64::consts::FRAC_1_SQRT_2,
                };
                let cascade = BiquadCascade::new(vec![band], ctx.format.sample_rate);
                Ok(Box::new(Node(Cascade { cascade, shelf: true, gain: None })))
            }

            fn ports(&self, _format: &GraphFormat) -> Ports {
                Ports::follow()
            }

            fixed_spec!();
        }
    };
}

shelf_kind!(BassBoostParams, "BassBoost", BandKind::LowShelf);
shelf_kind!(TrebleBoostParams, "TrebleBoost", BandKind::HighShelf);

fixed_params! {
    /// `Gate(threshold_db, attack_ms, hold_ms, release_ms, range_db)`: a noise gate. It opens while the
    /// detector's peak (over every channel it reads) is at or above the threshold, stays open for the hold
    /// time after it falls below, then closes to `range_db`; the gain moves towards its target with the
    /// attack time constant when opening and the release one when closing. The detector reads the
    /// `sidechain` input port instead of `in` when that is connected.
    pub struct GateParams {
        /// Level that opens the gate, -96..=0 dBFS.
        threshold_db: "dB", -96.0, Upper::To(0.0), Step;
        /// Time constant of opening, 0..=1000 ms.
        attack_ms: "ms", 0.0, Upper::To(1000.0), Step;
        /// How long the gate stays open after the level falls below the threshold, 0..=5000 ms.
        hold_ms: "ms", 0.0, Upper::To(5000.0), Step;
        /// Time constant of closing, 0..=5000 ms.
        release_ms: "ms", 0.0, Upper::To(5000.0), Step;
        /// Gain when closed, -96..=0 dB.
        range_db: "dB", -96.0, Upper::To(0.0), Step;
    }
}

impl NodeSpec for GateParams {
    fn kind(&self) -> &'static str {
        "Gate"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        self.check_fields(&ctx.format)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let mut dsp = GateDsp {
            sample_rate: ctx.format.sample_rate,
            threshold: 0.0,
            attack: 0.0,
            release: 0.0,
            hold: 0,
            floor: 0.0,
            gain: 1.0,
            held: 0,
            main: 0,
            key: 0..0,
            gains: Vec::new(),
        };
        for (i, f) in Self::FIELDS.iter().enumerate() {
            dsp.set(i, self.value(i).unwrap_or(f.min));
        }
        dsp.gain = dsp.floor;
        Ok(Box::new(Node(dsp)))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        keyed_ports()
    }

    fixed_spec!();
}

/// A gate's state and settings (levels and gains linear, times as one-pole coefficients and frames).
struct GateDsp {
    sample_rate: u32,
    threshold: f32,
    attack: f32,
    release: f32,
    hold: u64,
    floor: f32,
    /// The gain now, and frames left of the hold.
    gain: f32,
    held: u64,
    main: usize,
    key: std::ops::Range<usize>,
    gains: Vec<f32>,
}

impl Dsp for GateDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        (self.main, self.key) = keyed_channels(&config.layout);
        self.gains = vec![0.0; config.max_block];
        Ok(())
    }

    fn clear(&mut self) {
        self.gain = self.floor;
        self.held = 0;
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let g = &mut self.gains[..n];
        g.fill(0.0);
        for c in self.key.clone() {
            for (p, x) in g.iter_mut().zip(audio.channel(c)) {
                *p = crate::dsp::max_abs(*p, *x);
            }
        }
        let (mut gain, mut held) = (self.gain, self.held);
        for v in g.iter_mut() {
            if *v >= self.threshold {
                held = self.hold + 1;
            }
            held = held.saturating_sub(1);
            let open = *v >= self.threshold || held > 0;
            let (target, coeff) = if open { (1.0, self.attack) } else { (self.floor, self.release) };
            gain = target + coeff * (gain - target);
            *v = gain;
        }
        (self.gain, self.held) = (crate::dsp::denormal::flush(gain), held);
        for c in 0..self.main {
            for (y, g) in audio.channel_mut(c).iter_mut().zip(g.iter()) {
                *y *= g;
            }
        }
    }

    fn set(&mut self, index: usize, value: f64) {
        let sr = self.sample_rate;
        match GateParams::FIELDS.get(index).map(|f| f.name) {
            Some("threshold_db") => self.threshold = crate::dsp::db_to_gain(value) as f32,
            Some("attack_ms") => self.attack = crate::dsp::one_pole_coeff(value, sr),
            Some("hold_ms") => self.hold = (value * 1e-3 * f64::from(sr)).round() as u64,
            Some("release_ms") => self.release = crate::dsp::one_pole_coeff(value, sr),
            Some("range_db") => self.floor = crate::dsp::db_to_gain(value) as f32,
            _ => {}
        }
    }
}
