//! The routing kinds, the parts users wire graphs with: [`MixerParams`] (a matrix of gains),
//! [`ChannelsParams`] (pick and reorder channels), [`MidSideParams`] (L/R to M/S and back),
//! [`CrossoverParams`] (Linkwitz-Riley bands, one output port each) and [`DelayParams`].
//!
//! Each declares its ports ([`NodeSpec::ports`]); its processor finds its inputs in the block's first
//! channels and leaves its outputs there, port after port (see [`crate::node::port`]).

use super::builtin::{Dsp, Node, frequency};
use super::spec_boilerplate;
use crate::dsp::biquad::{BandKind, Coeffs};
use crate::dsp::lanes::LaneBank;
use crate::dsp::smooth::{Ramp, ramp_frames, ramp_gains};
use crate::node::{
    AudioOut, BuildContext, GraphFormat, Layout, MAX_CHANNELS, NodeError, NodeKind, NodeSpec, ParamError, ParamInfo,
    Port, Ports, ProcessConfig, Processor, RAMP_MS, Registry, Smoothing, Width,
};
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};

pub(crate) fn register(registry: &mut Registry) {
    let kinds = [
        NodeKind::new::<MixerParams>("Mixer", "matrix of gains: N input channels to M output channels"),
        NodeKind::new::<ChannelsParams>("Channels", "picks and reorders channels"),
        NodeKind::new::<MidSideParams>("MidSide", "left/right to mid/side and back"),
        NodeKind::new::<CrossoverParams>("Crossover", "Linkwitz-Riley 4th-order bands that sum flat"),
        NodeKind::new::<DelayParams>("Delay", "delay line, up to 2000 ms, cross-faded when it changes"),
    ];
    for kind in kinds {
        registry.register(kind);
    }
}

/// The [`NodeSpec`] methods of a kind without automatable parameters (its settings are its shape).
macro_rules! no_params {
    () => {
        fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
            Vec::new()
        }

        fn param(&self, _index: usize) -> f64 {
            0.0
        }

        fn set_param(&mut self, _index: usize, _value: f64) {}
    };
}

/// The largest magnitude of a mixer gain (linear): +24 dB.
const MAX_MIX_GAIN: f64 = 16.0;

/// `Mixer(gains: [[...], ...])`: an N-in, M-out matrix of linear gains, rows as outputs and columns as
/// inputs: output channel `r` is the sum over `c` of `gains[r][c]` times input channel `c`. One input
/// port `in` of N channels and one output `out` of M; or, with `inputs: [n0, n1, ...]` (summing to N),
/// input ports `in0`, `in1`... of those widths, whose channels are the columns in order (two mono
/// signals into one stereo pair: `inputs: [1, 1]`). Every gain (-16..=16) is automatable as
/// `gains[r][c]` (index `r * N + c`) and ramped.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MixerParams {
    /// One row per output channel, one column per input channel.
    pub gains: Vec<Vec<f64>>,
    /// The widths of separate input ports `in0`, `in1`..., if not one port `in` of every column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<usize>,
}

impl MixerParams {
    fn columns(&self) -> usize {
        self.gains.first().map_or(0, Vec::len)
    }
}

impl NodeSpec for MixerParams {
    fn kind(&self) -> &'static str {
        "Mixer"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let rows = self.gains.len();
        if !(1..=MAX_CHANNELS).contains(&rows) {
            return Err(ParamError::new("gains", format!("must hold 1 to {MAX_CHANNELS} rows (got {rows})")));
        }
        let cols = self.columns();
        for (r, row) in self.gains.iter().enumerate() {
            if row.len() != cols || !(1..=MAX_CHANNELS).contains(&row.len()) {
                return Err(ParamError::new(
                    format!("gains[{r}]"),
                    format!(
                        "every row must hold the same number of gains, 1 to {MAX_CHANNELS} (row 0 has {cols}, this one {})",
                        row.len()
                    ),
                ));
            }
            for (c, g) in row.iter().enumerate() {
                if !(g.is_finite() && g.abs() <= MAX_MIX_GAIN) {
                    return Err(ParamError::new(
                        format!("gains[{r}][{c}]"),
                        format!("must be a linear gain from -{MAX_MIX_GAIN} to {MAX_MIX_GAIN} (got {g})"),
                    ));
                }
            }
        }
        if !self.inputs.is_empty() {
            let sum: usize = self.inputs.iter().sum();
            if self.inputs.len() > crate::node::MAX_PORTS || self.inputs.contains(&0) || sum != cols {
                return Err(ParamError::new(
                    "inputs",
                    format!(
                        "must list 1 to {} port widths, each at least 1, adding up to the {cols} columns of `gains` (they add up to {sum})",
                        crate::node::MAX_PORTS
                    ),
                ));
            }
        }
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let gains = self.gains.iter().flatten().map(|&g| Ramp::new(g)).collect();
        let dsp = MixerDsp {
            rows: self.gains.len(),
            cols: self.columns(),
            gains,
            ramp_len: ramp_frames(RAMP_MS, ctx.format.sample_rate),
            inputs: Vec::new(),
            ramp: Vec::new(),
        };
        Ok(Box::new(Node(dsp)))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        let inputs = if self.inputs.is_empty() {
            vec![Port::new("in", Width::Fixed(self.columns()))]
        } else {
            self.inputs.iter().enumerate().map(|(i, &w)| Port::new(format!("in{i}"), Width::Fixed(w))).collect()
        };
        Ports { inputs, outputs: vec![Port::new("out", Width::Fixed(self.gains.len()))] }
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        for (r, row) in self.gains.iter().enumerate() {
            for c in 0..row.len() {
                out.push(ParamInfo::number(
                    format!("gains[{r}][{c}]"),
                    "",
                    -MAX_MIX_GAIN,
                    MAX_MIX_GAIN,
                    Smoothing::Ramp,
                ));
            }
        }
        out
    }

    fn param(&self, index: usize) -> f64 {
        let cols = self.columns().max(1);
        self.gains.get(index / cols).and_then(|row| row.get(index % cols)).copied().unwrap_or(0.0)
    }

    fn set_param(&mut self, index: usize, value: f64) {
        let cols = self.columns().max(1);
        if let Some(g) = self.gains.get_mut(index / cols).and_then(|row| row.get_mut(index % cols)) {
            *g = value;
        }
    }

    fn shape(&self) -> String {
        format!("{}x{} {:?}", self.gains.len(), self.columns(), self.inputs)
    }

    spec_boilerplate!();
}

/// A mixer's matrix, each gain ramped.
struct MixerDsp {
    rows: usize,
    cols: usize,
    /// `gains[r * cols + c]`.
    gains: Vec<Ramp>,
    ramp_len: u32,
    /// The inputs, copied out of the block before the outputs overwrite it.
    inputs: Vec<f32>,
    /// One gain's ramp over a block.
    ramp: Vec<f32>,
}

impl Dsp for MixerDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.inputs = vec![0.0; self.cols * config.max_block];
        self.ramp = vec![0.0; config.max_block];
        Ok(())
    }

    fn clear(&mut self) {
        for g in &mut self.gains {
            let t = g.target();
            g.jump(t);
        }
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        for c in 0..self.cols {
            self.inputs[c * n..(c + 1) * n].copy_from_slice(audio.channel(c));
        }
        for r in 0..self.rows {
            let y = audio.channel_mut(r);
            y.fill(0.0);
            for c in 0..self.cols {
                let x = &self.inputs[c * n..(c + 1) * n];
                match ramp_gains(&mut self.gains[r * self.cols + c], &mut self.ramp[..n]) {
                    Err(0.0) => {}
                    Err(g) => {
                        for (y, x) in y.iter_mut().zip(x) {
                            *y += g * x;
                        }
                    }
                    Ok(()) => {
                        for ((y, x), g) in y.iter_mut().zip(x).zip(&self.ramp[..n]) {
                            *y += g * x;
                        }
                    }
                }
            }
        }
    }

    fn set(&mut self, index: usize, value: f64) {
        if let Some(g) = self.gains.get_mut(index) {
            g.set(value, self.ramp_len);
        }
    }
}

/// `Channels(select: [...])`: picks and reorders channels; output channel `i` is input channel
/// `select[i]` (a channel may be picked more than once). The input port `in` takes whatever feeds it; the
/// output `out` has `select.len()` channels.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsParams {
    /// Input channel of each output channel, from 0.
    pub select: Vec<usize>,
}

impl NodeSpec for ChannelsParams {
    fn kind(&self) -> &'static str {
        "Channels"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        if !(1..=MAX_CHANNELS).contains(&self.select.len()) {
            return Err(ParamError::new(
                "select",
                format!("must pick 1 to {MAX_CHANNELS} channels (got {})", self.select.len()),
            ));
        }
        if let Some(i) = self.select.iter().position(|&c| c >= MAX_CHANNELS) {
            return Err(ParamError::new(
                format!("select[{i}]"),
                format!("must be a channel from 0 to {} (got {})", MAX_CHANNELS - 1, self.select[i]),
            ));
        }
        Ok(())
    }

    fn check_layout(&self, layout: &Layout) -> Result<(), ParamError> {
        let width = layout.input(0);
        match self.select.iter().position(|&c| c >= width) {
            Some(i) => Err(ParamError::new(
                format!("select[{i}]"),
                format!(
                    "picks channel {} of an input with {width} channels (0 to {})",
                    self.select[i],
                    width.max(1) - 1
                ),
            )),
            None => Ok(()),
        }
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(Node(ChannelsDsp { select: self.select.clone(), width: 0, inputs: Vec::new() })))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports {
            inputs: vec![Port::new("in", Width::Any)],
            outputs: vec![Port::new("out", Width::Fixed(self.select.len()))],
        }
    }

    no_params!();

    fn shape(&self) -> String {
        format!("{:?}", self.select)
    }

    spec_boilerplate!();
}

struct ChannelsDsp {
    select: Vec<usize>,
    /// Channels of the input.
    width: usize,
    inputs: Vec<f32>,
}

impl Dsp for ChannelsDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.width = config.layout.input(0);
        if let Some(&c) = self.select.iter().find(|&&c| c >= self.width) {
            return Err(NodeError(format!("Channels picks channel {c} of an input with {}", self.width)));
        }
        self.inputs = vec![0.0; self.width * config.max_block];
        Ok(())
    }

    fn clear(&mut self) {}

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        for c in 0..self.width {
            self.inputs[c * n..(c + 1) * n].copy_from_slice(audio.channel(c));
        }
        for (out, &c) in self.select.iter().enumerate() {
            audio.channel_mut(out).copy_from_slice(&self.inputs[c * n..(c + 1) * n]);
        }
    }

    fn set(&mut self, _index: usize, _value: f64) {}
}

/// Which way a [`MidSideParams`] node converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum MidSideMode {
    /// Left/right in, mid/side out: `M = (L + R) / 2`, `S = (L - R) / 2`.
    Encode,
    /// Mid/side in, left/right out: `L = M + S`, `R = M - S`.
    Decode,
}

/// `MidSide(mode: Encode | Decode)`: a 2-channel input `in` and output `out`. Encode then Decode gives
/// the input back within one `f32` step (the arithmetic is in `f64`, rounded once each way).
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MidSideParams {
    /// Encode or decode.
    pub mode: MidSideMode,
}

impl NodeSpec for MidSideParams {
    fn kind(&self) -> &'static str {
        "MidSide"
    }

    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        Ok(())
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(Node(MidSideDsp(self.mode))))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports { inputs: vec![Port::new("in", Width::Fixed(2))], outputs: vec![Port::new("out", Width::Fixed(2))] }
    }

    no_params!();

    fn shape(&self) -> String {
        format!("{:?}", self.mode)
    }

    spec_boilerplate!();
}

struct MidSideDsp(MidSideMode);

impl Dsp for MidSideDsp {
    fn prepare(&mut self, _config: &ProcessConfig) -> Result<(), NodeError> {
        Ok(())
    }

    fn clear(&mut self) {}

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let (a, b) = audio.pair_mut(0, 1);
        let scale = match self.0 {
            MidSideMode::Encode => 0.5,
            MidSideMode::Decode => 1.0,
        };
        for (a, b) in a.iter_mut().zip(b.iter_mut()) {
            let (x, y) = (f64::from(*a), f64::from(*b));
            *a = (scale * (x + y)) as f32;
            *b = (scale * (x - y)) as f32;
        }
    }

    fn set(&mut self, _index: usize, _value: f64) {}
}

/// The most crossover frequencies (so at most eight bands).
pub const MAX_CROSSOVER_FREQS: usize = 7;

/// `Crossover(freqs_hz: [...])`: splits its input into `freqs_hz.len() + 1` bands, output ports `band0`
/// (lowest) to `bandN`, each as wide as the input, with Linkwitz-Riley 4th-order slopes (two Butterworth
/// biquads, computed in `f64`) at each frequency.
///
/// The split is a tree: the bands `lo..=hi` are split at the middle frequency `freqs_hz[m]`
/// (`m = (lo + hi) / 2`) into a low-pass side (bands `lo..=m`) and a high-pass side (bands `m + 1..=hi`),
/// and each side passes through a second-order all-pass (Q 0.7071) at every frequency where only the
/// other side is split further. A low-pass and a high-pass LR4 at one frequency sum to that all-pass, so
/// the bands sum to a chain of all-passes: a flat magnitude. Band `k`'s magnitude is the product of the
/// LR4 low- or high-pass of every split on its path. Changing a frequency rebuilds the node (cross-faded).
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrossoverParams {
    /// The split frequencies, rising, each below Nyquist.
    pub freqs_hz: Vec<f64>,
}

impl NodeSpec for CrossoverParams {
    fn kind(&self) -> &'static str {
        "Crossover"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        if !(1..=MAX_CROSSOVER_FREQS).contains(&self.freqs_hz.len()) {
            return Err(ParamError::new(
                "freqs_hz",
                format!("must hold 1 to {MAX_CROSSOVER_FREQS} frequencies (got {})", self.freqs_hz.len()),
            ));
        }
        for (i, &f) in self.freqs_hz.iter().enumerate() {
            frequency(f, &ctx.format).map_err(|m| ParamError::new(format!("freqs_hz[{i}]"), m))?;
            if i > 0 && f <= self.freqs_hz[i - 1] {
                return Err(ParamError::new(
                    format!("freqs_hz[{i}]"),
                    format!("must be above the frequency before it, {} Hz (got {f})", self.freqs_hz[i - 1]),
                ));
            }
        }
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(Node(CrossoverDsp::new(&self.freqs_hz, ctx.format.sample_rate))))
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports {
            inputs: vec![Port::new("in", Width::Any)],
            outputs: (0..=self.freqs_hz.len()).map(|k| Port::new(format!("band{k}"), Width::Input(0))).collect(),
        }
    }

    fn params(&self, ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        (0..self.freqs_hz.len())
            .map(|i| {
                ParamInfo::number(format!("freqs_hz[{i}]"), "Hz", 0.0, ctx.format.nyquist_hz(), Smoothing::Rebuild)
            })
            .collect()
    }

    fn param(&self, index: usize) -> f64 {
        self.freqs_hz.get(index).copied().unwrap_or(0.0)
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if let Some(f) = self.freqs_hz.get_mut(index) {
            *f = value;
        }
    }

    fn shape(&self) -> String {
        self.freqs_hz.len().to_string()
    }

    spec_boilerplate!();
}

/// A crossover: every band's whole path of filters from the input (the tree's splits on its way, with
/// their all-passes) as one chain, all bands of all channels in one [`LaneBank`].
struct CrossoverDsp {
    /// Each band's chain.
    chains: Vec<Vec<Coeffs>>,
    channels: usize,
    bank: LaneBank,
    /// The input, copied out of the block before the bands overwrite it.
    input: Vec<f32>,
}

impl CrossoverDsp {
    fn new(freqs: &[f64], sample_rate: u32) -> Self {
        let chains = (0..=freqs.len()).map(|k| Self::path(freqs, k, f64::from(sample_rate))).collect();
        Self { chains, channels: 0, bank: LaneBank::new(&[]), input: Vec::new() }
    }

    /// Band `k`'s filters: at each split of the bands `lo..=hi` on its way, at `freqs[m]` with
    /// `m = (lo + hi) / 2`, the LR4 low-pass and the all-passes of the high side's splits (band `k <= m`),
    /// or the LR4 high-pass and the all-passes of the low side's splits.
    fn path(freqs: &[f64], k: usize, sr: f64) -> Vec<Coeffs> {
        let q = std::f64::consts::FRAC_1_SQRT_2;
        let (mut lo, mut hi, mut chain) = (0, freqs.len(), Vec::new());
        while lo < hi {
            let m = (lo + hi) / 2;
            let (pass, others) = if k <= m { (BandKind::LowPass, m + 1..hi) } else { (BandKind::HighPass, lo..m) };
            chain.push(Coeffs::cookbook(pass, freqs[m], 0.0, q, sr));
            chain.push(Coeffs::cookbook(pass, freqs[m], 0.0, q, sr));
            chain.extend(freqs[others].iter().map(|&f| Coeffs::cookbook(BandKind::AllPass, f, 0.0, q, sr)));
            if k <= m {
                hi = m;
            } else {
                lo = m + 1;
            }
        }
        chain
    }
}

impl Dsp for CrossoverDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.channels = config.layout.input(0);
        let lanes: Vec<Vec<Coeffs>> =
            self.chains.iter().flat_map(|chain| std::iter::repeat_n(chain.clone(), self.channels)).collect();
        self.bank = LaneBank::new(&lanes);
        self.bank.prepare(config.max_block);
        self.input = vec![0.0; self.channels * config.max_block];
        Ok(())
    }

    fn clear(&mut self) {
        self.bank.reset();
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let (n, ch) = (audio.frames(), self.channels);
        for c in 0..ch {
            self.input[c * n..(c + 1) * n].copy_from_slice(audio.channel(c));
        }
        self.bank.process(&self.input[..ch * n], ch, audio);
    }

    fn set(&mut self, _index: usize, _value: f64) {}
}

/// The longest delay, in milliseconds.
pub const MAX_DELAY_MS: f64 = 2000.0;

/// `Delay(delay_ms)`: delays every channel by 0..=2000 ms (rounded to whole frames). Automatable: a change
/// cross-fades from the old delay to the new over 20 ms (a further change waits for it to end), so the
/// signal never jumps. The delay is the effect, not latency: it is not compensated on other paths.
#[derive(Component, Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DelayParams {
    /// The delay, 0..=2000 ms.
    pub delay_ms: f64,
}

/// Length of a delay change's crossfade.
const DELAY_FADE_MS: f64 = 20.0;

impl NodeSpec for DelayParams {
    fn kind(&self) -> &'static str {
        "Delay"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        self.params(ctx)[0].resolve(&crate::node::ParamValue::Number(self.delay_ms)).map(drop)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let sr = ctx.format.sample_rate;
        let frames = |ms: f64| (ms * 1e-3 * f64::from(sr)).round() as usize;
        Ok(Box::new(Node(DelayDsp {
            sample_rate: sr,
            channels: 0,
            lines: Vec::new(),
            len: frames(MAX_DELAY_MS) + 1,
            write: 0,
            delay: frames(self.delay_ms),
            next: None,
            pending: None,
            fade_len: frames(DELAY_FADE_MS).max(1),
        })))
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        vec![ParamInfo::number("delay_ms", "ms", 0.0, MAX_DELAY_MS, Smoothing::Step)]
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        Ports::follow()
    }

    fn param(&self, _index: usize) -> f64 {
        self.delay_ms
    }

    fn set_param(&mut self, _index: usize, value: f64) {
        self.delay_ms = value;
    }

    spec_boilerplate!();
}

/// A delay line per channel, and a crossfade from one delay to the next.
struct DelayDsp {
    sample_rate: u32,
    channels: usize,
    /// `len` frames of each channel, back to back.
    lines: Vec<f32>,
    len: usize,
    /// Where the next frame is written.
    write: usize,
    /// The delay in frames.
    delay: usize,
    /// A crossfade in progress: to this delay, frames done.
    next: Option<(usize, usize)>,
    /// A change that waits for the crossfade to end.
    pending: Option<usize>,
    fade_len: usize,
}

impl Dsp for DelayDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.channels = config.layout.input(0);
        self.lines = vec![0.0; self.channels * self.len];
        Ok(())
    }

    fn clear(&mut self) {
        self.lines.fill(0.0);
        self.write = 0;
        if let Some((to, _)) = self.next.take() {
            self.delay = to;
        }
        if let Some(to) = self.pending.take() {
            self.delay = to;
        }
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let len = self.len;
        let mut at = 0;
        while at < n {
            if self.next.is_none()
                && let Some(to) = self.pending.take()
                && to != self.delay
            {
                self.next = Some((to, 0));
            }
            // A stretch with one delay, or with the crossfade's two.
            let chunk = match self.next {
                Some((_, done)) => (n - at).min(self.fade_len - done),
                None => n - at,
            };
            for c in 0..self.channels {
                let line = &mut self.lines[c * len..(c + 1) * len];
                let y = &mut audio.channel_mut(c)[at..at + chunk];
                let mut w = self.write;
                match self.next {
                    None => {
                        for y in y.iter_mut() {
                            line[w] = *y;
                            *y = line[(w + len - self.delay) % len];
                            w = if w + 1 == len { 0 } else { w + 1 };
                        }
                    }
                    Some((to, done)) => {
                        for (i, y) in y.iter_mut().enumerate() {
                            line[w] = *y;
                            let t = (done + i + 1) as f32 / self.fade_len as f32;
                            let old = line[(w + len - self.delay) % len];
                            let new = line[(w + len - to) % len];
                            *y = old + t * (new - old);
                            w = if w + 1 == len { 0 } else { w + 1 };
                        }
                    }
                }
            }
            self.write = (self.write + chunk) % len;
            if let Some((to, done)) = self.next {
                self.next = if done + chunk >= self.fade_len {
                    self.delay = to;
                    None
                } else {
                    Some((to, done + chunk))
                };
            }
            at += chunk;
        }
    }

    fn set(&mut self, _index: usize, value: f64) {
        let frames = (value.clamp(0.0, MAX_DELAY_MS) * 1e-3 * f64::from(self.sample_rate)).round() as usize;
        self.pending = Some(frames.min(self.len - 1));
    }
}
