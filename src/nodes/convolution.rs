//! `Convolver`: convolution with an impulse response read from an audio file (room and headphone
//! correction, cabinets, reverbs of measured spaces, crossfeed), by [`crate::dsp::convolver`].

use super::builtin::{Dsp, Node};
use super::spec_boilerplate;
use crate::dsp::convolver::{Convolver, Latency, Route};
use crate::dsp::simple::RampedGain;
use crate::dsp::smooth::ramp_frames;
use crate::io::decode::{Decoded, Resampled, check_input_rate};
use crate::io::stream::BlockSource;
use crate::node::{
    AudioOut, BuildContext, GraphFormat, Layout, NodeError, NodeKind, NodeSpec, ParamError, ParamInfo, ParamValue,
    Port, Ports, ProcessConfig, Processor, RAMP_MS, Registry, Smoothing, Width,
};
use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) fn register(registry: &mut Registry) {
    registry.register(NodeKind::new::<ConvolverParams>(
        "Convolver",
        "partitioned FFT convolution with an impulse response file; a channel matrix; no latency or a block's",
    ));
}

/// The longest impulse response, in seconds at the graph's rate.
pub const MAX_IR_SECONDS: usize = 10;
/// The most samples an impulse response may hold over all its channels (2^24: ten seconds of 32 channels at
/// 48 kHz, or of 4 at 384 kHz); with its spectra about half a gigabyte.
pub const MAX_IR_SAMPLES: usize = 1 << 24;

/// Which IR channel convolves which channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum IrChannels {
    /// A one-channel IR convolves every channel; an IR with as many channels as the input, each its own.
    #[default]
    Auto,
    /// IR channel `c` (from 0) convolves every channel.
    One(usize),
    /// One row per output, one column per input: the IR channel from that input into that output, or
    /// `None`. True stereo from a 4-channel IR: `Matrix([[Some(0), Some(1)], [Some(2), Some(3)]])`.
    Matrix(Vec<Vec<Option<usize>>>),
}

fn zero_latency() -> Latency {
    Latency::Zero
}

/// `Convolver(path, channels, gain_db, latency)`: convolves with the impulse response in `path` (any audio
/// file `render` reads, relative to the graph; resampled to the graph's rate with `rubato`; at most
/// [`MAX_IR_SECONDS`] long). `latency: Zero` (the default) adds no delay; `latency: Block` delays the
/// output by [`crate::dsp::convolver::BLOCK_LATENCY`] frames, which the engine compensates, for less work.
/// One parameter, `gain_db` (ramped). A different IR (another `path`, or the file changed when the graph
/// is applied again) rebuilds the node, cross-faded.
#[derive(Component, Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConvolverParams {
    /// The impulse response: an audio file, relative to the graph.
    pub path: String,
    /// Which IR channel convolves which channel.
    #[serde(default)]
    pub channels: IrChannels,
    /// A gain after the convolution, -48..=48 dB.
    #[serde(default)]
    pub gain_db: f64,
    /// `Zero` or `Block`.
    #[serde(default = "zero_latency")]
    pub latency: Latency,
    /// The IR as read when the graph was bound: from which file, at which rate.
    #[serde(skip)]
    loaded: Option<(PathBuf, u32, Result<Arc<Ir>, String>)>,
}

impl ConvolverParams {
    /// A convolver of the IR in `path`, its channels mapped automatically, with no gain and no latency.
    pub fn new(path: impl Into<String>) -> Self {
        Self { path: path.into(), channels: IrChannels::Auto, gain_db: 0.0, latency: Latency::Zero, loaded: None }
    }

    /// The IR's length in frames at the graph's rate, once read.
    pub fn ir_frames(&self) -> Option<usize> {
        match &self.loaded {
            Some((_, _, Ok(ir))) => ir.channels.first().map(|c| c.len()),
            _ => None,
        }
    }

    /// The IR for `ctx`: as read by [`NodeSpec::bind`], or read now if the description has changed since.
    fn ir(&self, ctx: &BuildContext<'_>) -> Result<Arc<Ir>, String> {
        let file = ctx.base_dir.join(&self.path);
        match &self.loaded {
            Some((f, rate, ir)) if *f == file && *rate == ctx.format.sample_rate => ir.clone(),
            _ => read_ir(&file, ctx.format.sample_rate).map(Arc::new),
        }
    }

    /// The routes for an input `inputs` wide, and the output's width.
    fn routes(&self, ir_channels: usize, inputs: usize) -> Result<(Vec<Route>, usize), ParamError> {
        let err = |m: String| ParamError::new("channels", m);
        let each =
            |ir: &dyn Fn(usize) -> usize| (0..inputs).map(|c| Route { output: c, input: c, ir: ir(c) }).collect();
        match &self.channels {
            IrChannels::Auto if ir_channels == 1 => Ok((each(&|_| 0), inputs)),
            IrChannels::Auto if ir_channels == inputs => Ok((each(&|c| c), inputs)),
            IrChannels::Auto => Err(err(format!(
                "the IR has {ir_channels} channels and the input {inputs}: choose with `One(channel)` or a `Matrix`"
            ))),
            IrChannels::One(c) if *c < ir_channels => Ok((each(&|_| *c), inputs)),
            IrChannels::One(c) => Err(err(format!("`One({c})`: the IR has {ir_channels} channel(s), from 0"))),
            IrChannels::Matrix(rows) => {
                let cols = rows.first().map_or(0, Vec::len);
                if rows.is_empty()
                    || cols == 0
                    || rows.len() > crate::node::MAX_CHANNELS
                    || cols > crate::node::MAX_CHANNELS
                {
                    return Err(err(format!(
                        "a matrix has 1 to {} rows (outputs) of 1 to {0} columns (inputs)",
                        crate::node::MAX_CHANNELS
                    )));
                }
                let mut routes = Vec::new();
                for (o, row) in rows.iter().enumerate() {
                    if row.len() != cols {
                        return Err(err(format!("row {o} has {} columns, row 0 has {cols}", row.len())));
                    }
                    for (i, ir) in row.iter().enumerate() {
                        match ir {
                            Some(c) if *c >= ir_channels => {
                                return Err(err(format!(
                                    "row {o}, column {i}: IR channel {c}, but the IR has {ir_channels} (from 0)"
                                )));
                            }
                            Some(c) => routes.push(Route { output: o, input: i, ir: *c }),
                            None => {}
                        }
                    }
                }
                Ok((routes, rows.len()))
            }
        }
    }
}

/// An impulse response at the graph's rate.
#[derive(Debug)]
pub struct Ir {
    /// The taps of each channel.
    pub channels: Vec<Arc<Vec<f64>>>,
    /// What tells one IR from another: a hash of every tap.
    pub digest: u64,
}

/// Reads the impulse response in `path` at `rate`: decoded as `render` decodes inputs, resampled with
/// `rubato` if its rate differs, and then scaled by the ratio of the rates, so that its gain at each
/// frequency is kept (an IR's taps sum to its DC gain: at twice the rate there are twice as many).
///
/// # Errors
/// A message for a file that cannot be read or decoded, holds no audio, has a non-finite sample, is longer
/// than [`MAX_IR_SECONDS`] at `rate`, or holds more than [`MAX_IR_SAMPLES`] over its channels.
pub fn read_ir(path: &Path, rate: u32) -> Result<Ir, String> {
    let decoded = Decoded::open(path).map_err(|e| e.to_string())?;
    let (from, channels) = (decoded.sample_rate(), decoded.channels());
    check_input_rate(path, from).map_err(|e| e.to_string())?;
    let mut source: Box<dyn BlockSource> = if from == rate {
        Box::new(decoded)
    } else {
        Box::new(Resampled::new(decoded, channels, from, rate).map_err(|e| e.to_string())?)
    };
    let max = MAX_IR_SECONDS * rate as usize;
    const CHUNK: usize = 4096;
    let mut buf = vec![0.0f32; CHUNK * channels];
    let mut taps: Vec<Vec<f64>> = vec![Vec::new(); channels];
    loop {
        let n = source.read(&mut AudioOut::new(&mut buf, CHUNK, channels, CHUNK)).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        for (c, t) in taps.iter_mut().enumerate() {
            for &x in &buf[c * CHUNK..c * CHUNK + n] {
                if !x.is_finite() {
                    return Err(format!(
                        "{}: channel {c} has a non-finite sample ({x}) at frame {}",
                        path.display(),
                        t.len()
                    ));
                }
                t.push(f64::from(x));
            }
        }
        if taps[0].len() * channels > MAX_IR_SAMPLES {
            return Err(format!(
                "{}: the impulse response holds more than {MAX_IR_SAMPLES} samples over its {channels} channels at {rate} Hz",
                path.display()
            ));
        }
        if taps[0].len() > max {
            return Err(format!(
                "{}: the impulse response is longer than {MAX_IR_SECONDS} s at {rate} Hz (the most is {max} frames)",
                path.display()
            ));
        }
    }
    if taps.first().is_none_or(Vec::is_empty) {
        return Err(format!("{}: the impulse response holds no audio", path.display()));
    }
    if from != rate {
        let scale = f64::from(from) / f64::from(rate);
        taps.iter_mut().flatten().for_each(|t| *t *= scale);
    }
    let mut hash = std::hash::DefaultHasher::new();
    for t in &taps {
        std::hash::Hash::hash(&t.len(), &mut hash);
        t.iter().for_each(|x| std::hash::Hash::hash(&x.to_bits(), &mut hash));
    }
    let digest = std::hash::Hasher::finish(&hash);
    Ok(Ir { channels: taps.into_iter().map(Arc::new).collect(), digest })
}

impl NodeSpec for ConvolverParams {
    fn kind(&self) -> &'static str {
        "Convolver"
    }

    fn bind(&mut self, ctx: &BuildContext<'_>) {
        let file = ctx.base_dir.join(&self.path);
        let ir = read_ir(&file, ctx.format.sample_rate).map(Arc::new);
        self.loaded = Some((file, ctx.format.sample_rate, ir));
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let ir = self.ir(ctx).map_err(|e| ParamError::new("path", e))?;
        ParamInfo::number("gain_db", "dB", -48.0, 48.0, Smoothing::Ramp).resolve(&ParamValue::Number(self.gain_db))?;
        // The matrix and the IR channel are checked here; `Auto` against the input in `check_layout`.
        match &self.channels {
            IrChannels::Auto => Ok(()),
            IrChannels::One(_) => self.routes(ir.channels.len(), 1).map(drop),
            IrChannels::Matrix(rows) => self.routes(ir.channels.len(), rows.first().map_or(0, Vec::len)).map(drop),
        }
    }

    fn check_layout(&self, layout: &Layout) -> Result<(), ParamError> {
        let channels = match &self.loaded {
            Some((_, _, Ok(ir))) => ir.channels.len(),
            _ => return Ok(()),
        };
        self.routes(channels, layout.input(0)).map(drop)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let ir = self.ir(ctx).map_err(NodeError)?;
        let gain = RampedGain::new(crate::dsp::db_to_gain(self.gain_db), ramp_frames(RAMP_MS, ctx.format.sample_rate));
        let spec = self.clone();
        Ok(Box::new(Node(ConvolverDsp { spec, ir, convolver: None, gain, outputs: 0 })))
    }

    fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
        vec![ParamInfo::number("gain_db", "dB", -48.0, 48.0, Smoothing::Ramp)]
    }

    fn param(&self, index: usize) -> f64 {
        if index == 0 { self.gain_db } else { 0.0 }
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if index == 0 {
            self.gain_db = value;
        }
    }

    /// The IR's file, mapping and latency, and a digest of its taps: a new IR is a new processor.
    fn shape(&self) -> String {
        let digest = match &self.loaded {
            Some((_, _, Ok(ir))) => ir.digest,
            _ => 0,
        };
        format!("{}|{:?}|{:?}|{digest:016x}", self.path, self.channels, self.latency)
    }

    fn files(&self, base_dir: &Path) -> Vec<PathBuf> {
        vec![base_dir.join(&self.path)]
    }

    fn ports(&self, _format: &GraphFormat) -> Ports {
        match &self.channels {
            IrChannels::Matrix(rows) => Ports {
                inputs: vec![Port::new("in", Width::Fixed(rows.first().map_or(0, Vec::len)))],
                outputs: vec![Port::new("out", Width::Fixed(rows.len()))],
            },
            _ => Ports::follow(),
        }
    }

    spec_boilerplate!();
}

/// A convolver, prepared for the input's width when the node is initialized, and its gain.
struct ConvolverDsp {
    spec: ConvolverParams,
    ir: Arc<Ir>,
    convolver: Option<Convolver>,
    gain: RampedGain,
    outputs: usize,
}

impl Dsp for ConvolverDsp {
    fn prepare(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        let inputs = config.layout.input(0);
        let (routes, outputs) =
            self.spec.routes(self.ir.channels.len(), inputs).map_err(|e| NodeError(e.to_string()))?;
        self.convolver = Some(Convolver::new(inputs, outputs, &self.ir.channels, routes, self.spec.latency));
        self.outputs = outputs;
        self.gain.prepare(config.max_block);
        Ok(())
    }

    fn clear(&mut self) {
        if let Some(c) = &mut self.convolver {
            c.reset();
        }
        self.gain.settle();
    }

    fn run(&mut self, audio: &mut AudioOut<'_>) {
        if let Some(c) = &mut self.convolver {
            c.process(audio);
        }
        if !self.gain.is_unity() {
            self.gain.process(&mut audio.channels_mut(0..self.outputs));
        }
    }

    fn set(&mut self, _index: usize, value: f64) {
        self.gain.set(crate::dsp::db_to_gain(value));
    }

    fn latency(&self) -> usize {
        self.convolver.as_ref().map_or(0, Convolver::latency)
    }
}
