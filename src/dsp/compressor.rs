//! Feed-forward, stereo-linked compressor with a soft knee (Giannoulis, Massberg & Reiss, "Digital Dynamic
//! Range Compressor Design", JAES 2012: log-domain gain computer, smooth decoupled peak detector on the gain
//! reduction).

use super::denormal::flush;
use super::fastmath;
use super::smooth::{Ramp, ramp_frames};
use super::{fmax, fmin, macf};
use crate::node::AudioOut;
use crate::node::{RAMP_MS, RAMP_STEP};

/// Compressor settings in user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressorSettings {
    /// Level where compression starts (center of the knee), dBFS.
    pub threshold_db: f32,
    /// Input dB over threshold per output dB.
    pub ratio: f32,
    /// Time constant of the gain reduction rising, ms.
    pub attack_ms: f32,
    /// Time constant of the gain reduction falling, ms.
    pub release_ms: f32,
    /// Width of the soft knee, dB (0 is a hard knee).
    pub knee_db: f32,
    /// Gain after compression, dB.
    pub makeup_db: f32,
}

/// The static curve's gain reduction in dB (>= 0) for an input level `level_db`.
///
/// Below the knee the reduction is 0; above it, `(level - threshold) * (1 - 1/ratio)`; inside the knee
/// (`|level - threshold| < knee/2`) a quadratic joins the two with matching slopes.
#[inline(always)]
pub fn gain_reduction_db(level_db: f32, threshold_db: f32, slope: f32, half_knee_db: f32, inv_2knee: f32) -> f32 {
    let over = level_db - threshold_db;
    // Below the knee k is 0, so the quadratic gives 0; with no knee inv_2knee is 0 and only the line is left.
    let k = (over + half_knee_db).max(0.0);
    let knee = slope * k * k * inv_2knee;
    let line = slope * over;
    if over >= half_knee_db { line } else { knee }
}

/// What [`Compressor::set`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressorParam {
    /// `threshold_db`, ramped.
    ThresholdDb,
    /// `ratio`, ramped.
    Ratio,
    /// `attack_ms`, taken at once.
    AttackMs,
    /// `release_ms`, taken at once.
    ReleaseMs,
    /// `knee_db`, ramped.
    KneeDb,
    /// `makeup_db`, ramped.
    MakeupDb,
}

impl CompressorParam {
    /// The parameter a node kind names so (`threshold_db`, `ratio`, `attack_ms`, `release_ms`, `knee_db`,
    /// `makeup_db`).
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "threshold_db" => Self::ThresholdDb,
            "ratio" => Self::Ratio,
            "attack_ms" => Self::AttackMs,
            "release_ms" => Self::ReleaseMs,
            "knee_db" => Self::KneeDb,
            "makeup_db" => Self::MakeupDb,
            _ => return None,
        })
    }
}

/// Audio-side compressor state.
///
/// Threshold, ratio and knee ramp over the ramp length in steps of [`RAMP_STEP`] frames (they move the
/// gain computer's target, which the attack/release envelope smooths again); the makeup gain ramps sample
/// by sample. Attack and release times take effect at once.
#[derive(Debug, Clone)]
pub struct Compressor {
    sample_rate: u32,
    threshold_db: Ramp,
    /// `1 - 1/ratio`, ramped.
    slope: Ramp,
    knee_db: Ramp,
    makeup_db: Ramp,
    /// The gain computer's settings for the current step.
    current: Curve,
    attack: f32,
    release: f32,
    /// Smoothed gain reduction in dB.
    env_db: f32,
    gains: Vec<f32>,
    ramp_len: u32,
    ramp_pos: usize,
    /// Whether to run the AVX2 + FMA kernels ([`super::fma_kernels`]).
    fma: bool,
    /// Channels the gain applies to and the detector's channels (`start`, `len`), when they are not all
    /// of the block's (a sidechain; see [`route`](Self::route)).
    routed: Option<(usize, usize, usize)>,
}

/// The static curve's settings, as the per-frame code uses them.
#[derive(Debug, Clone, Copy)]
struct Curve {
    threshold_db: f32,
    slope: f32,
    half_knee_db: f32,
    inv_2knee: f32,
}

impl Curve {
    fn new(threshold_db: f64, slope: f64, knee_db: f64) -> Self {
        let knee = knee_db.max(0.0) as f32;
        Self {
            threshold_db: threshold_db as f32,
            slope: slope as f32,
            half_knee_db: knee / 2.0,
            inv_2knee: if knee > 0.0 { 1.0 / (2.0 * knee) } else { 0.0 },
        }
    }
}

impl Compressor {
    /// A compressor with settings `s` at `sample_rate` (buffers come with [`prepare`](Self::prepare)).
    pub fn new(s: &CompressorSettings, sample_rate: u32) -> Self {
        let slope = 1.0 - 1.0 / f64::from(s.ratio);
        Self {
            sample_rate,
            threshold_db: Ramp::new(f64::from(s.threshold_db)),
            slope: Ramp::new(slope),
            knee_db: Ramp::new(f64::from(s.knee_db)),
            makeup_db: Ramp::new(f64::from(s.makeup_db)),
            current: Curve::new(f64::from(s.threshold_db), slope, f64::from(s.knee_db)),
            attack: super::one_pole_coeff(f64::from(s.attack_ms), sample_rate),
            release: super::one_pole_coeff(f64::from(s.release_ms), sample_rate),
            env_db: 0.0,
            gains: Vec::new(),
            ramp_len: ramp_frames(RAMP_MS, sample_rate),
            ramp_pos: 0,
            fma: super::fma_kernels(),
            routed: None,
        }
    }

    /// Applies the gain to the block's first `main` channels only, and detects the level on channels
    /// `key` (a sidechain) instead of on every channel.
    pub fn route(&mut self, main: usize, key: std::ops::Range<usize>) {
        self.routed = Some((main, key.start, key.len()));
    }

    /// Runs the baseline kernels (a multiply and an add where the FMA kernels fuse them) even where the CPU
    /// has FMA: for tests that compare both.
    #[doc(hidden)]
    pub fn plain_arithmetic(mut self) -> Self {
        self.fma = false;
        self
    }

    /// Allocates for blocks of up to `max_block` frames (control side).
    pub fn prepare(&mut self, max_block: usize) {
        self.gains = vec![0.0; max_block];
    }

    /// Clears the envelope and lands every ramp on its target.
    pub fn reset(&mut self) {
        self.env_db = 0.0;
        for r in [&mut self.threshold_db, &mut self.slope, &mut self.knee_db, &mut self.makeup_db] {
            let t = r.target();
            r.jump(t);
        }
        self.current = Curve::new(self.threshold_db.value(), self.slope.value(), self.knee_db.value());
    }

    /// Takes a new setting (ramped or at once, as the type's documentation says).
    pub fn set(&mut self, param: CompressorParam, value: f64) {
        let len = self.ramp_len;
        match param {
            CompressorParam::AttackMs => self.attack = super::one_pole_coeff(value, self.sample_rate),
            CompressorParam::ReleaseMs => self.release = super::one_pole_coeff(value, self.sample_rate),
            CompressorParam::MakeupDb => self.makeup_db.set(value, len),
            p => {
                // The curve's ramps move on one clock.
                let (t, s, k) = (self.threshold_db.target(), self.slope.target(), self.knee_db.target());
                let (t, s, k) = match p {
                    CompressorParam::ThresholdDb => (value, s, k),
                    CompressorParam::Ratio => (t, 1.0 - 1.0 / value, k),
                    _ => (t, s, value),
                };
                self.threshold_db.set(t, len);
                self.slope.set(s, len);
                self.knee_db.set(k, len);
                self.ramp_pos = 0;
            }
        }
    }

    /// The current smoothed gain reduction, in dB.
    pub fn gain_reduction(&self) -> f32 {
        self.env_db
    }

    /// Gain reduction the static curve asks for at a frame's peak magnitude.
    #[inline(always)]
    fn target_db(c: &Curve, peak: f32) -> f32 {
        // NaN becomes the floor and infinity the ceiling, so neither reaches the state (`clamp` would pass
        // NaN through).
        #[allow(clippy::manual_clamp)]
        let level = peak.max(1e-10).min(1e10);
        gain_reduction_db(fastmath::gain_to_db(level), c.threshold_db, c.slope, c.half_knee_db, c.inv_2knee)
    }

    fma_dispatch! {
        /// Turns each frame's peak magnitude into the gain to apply, in place: the level and gain computer,
        /// the envelope, and the gain (with the makeup ramp, if it moves), each as its own pass.
        pub fn peaks_to_gains(g: &mut [f32]) via peaks_to_gains_fma => peaks_to_gains_with
    }

    #[inline(always)]
    fn peaks_to_gains_with<const FMA: bool>(&mut self, g: &mut [f32]) {
        let curve = self.current;
        for v in g.iter_mut() {
            *v = Self::target_db(&curve, *v);
        }
        // The envelope: each step moves towards the target `t` with the attack coefficient when rising and
        // the release one when falling, `t + c·(env - t)`. With `d = env - t`, the attack applies where
        // `d < 0`, and there the smaller coefficient gives the larger `c·d`; the release applies where
        // `d >= 0`, and there the larger one does. So when attack <= release (the usual case) the step is
        // the larger of both candidates, otherwise the smaller: the same choice, without a comparison and a
        // coefficient lookup in the recursion. Written as `t·(1 - c) + c·env`, with `t·(1 - c)` off the
        // chain, the loop-carried chain is one multiply, one add and one max (12 cycles of latency where
        // the compare, flag, indexed load, multiply and add took 17), the frame rate's limit on this loop;
        // with FMA, one fused multiply-add and one max (8 cycles).
        let (ca, cr) = (self.attack, self.release);
        let (ka, kr) = (1.0 - ca, 1.0 - cr);
        let mut env = self.env_db;
        if ca <= cr {
            for v in g.iter_mut() {
                env = fmax(macf::<FMA>(ca, env, *v * ka), macf::<FMA>(cr, env, *v * kr));
                *v = env;
            }
        } else {
            for v in g.iter_mut() {
                env = fmin(macf::<FMA>(ca, env, *v * ka), macf::<FMA>(cr, env, *v * kr));
                *v = env;
            }
        }
        self.env_db = flush(env);
        if self.makeup_db.active() {
            for (i, v) in g.iter_mut().enumerate() {
                let makeup = self.makeup_db.value_after(i as u32 + 1) as f32;
                *v = fastmath::db_to_gain(makeup - *v);
            }
            self.makeup_db.advance(g.len());
        } else {
            let makeup = self.makeup_db.value() as f32;
            for v in g.iter_mut() {
                *v = fastmath::db_to_gain(makeup - *v);
            }
        }
    }

    /// Processes a block in place, in passes, so that everything but the envelope recursion vectorizes:
    /// peak detection, the level and gain computer, the envelope, the gain, and applying it.
    pub fn process(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let mut at = 0;
        while at < n {
            let mut chunk = n - at;
            if self.threshold_db.active() {
                if self.ramp_pos.is_multiple_of(RAMP_STEP) {
                    self.current = Curve::new(self.threshold_db.value(), self.slope.value(), self.knee_db.value());
                }
                chunk = chunk.min(RAMP_STEP - self.ramp_pos % RAMP_STEP);
            } else if self.ramp_pos > 0 {
                self.current = Curve::new(self.threshold_db.value(), self.slope.value(), self.knee_db.value());
                self.ramp_pos = 0;
            }
            self.run(&mut audio.slice_mut(at, chunk));
            if self.threshold_db.active() || self.ramp_pos > 0 {
                for r in [&mut self.threshold_db, &mut self.slope, &mut self.knee_db] {
                    r.advance(chunk);
                }
                self.ramp_pos += chunk;
            }
            at += chunk;
        }
    }

    fma_dispatch! {
        fn run(audio: &mut AudioOut<'_>) via run_fma => run_with
    }

    #[inline(always)]
    fn run_with<const FMA: bool>(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let mut gains = std::mem::take(&mut self.gains);
        let g = &mut gains[..n];
        g.fill(0.0);
        let (main, key) = match self.routed {
            Some((main, start, len)) => (main, start..start + len),
            None => (audio.channels(), 0..audio.channels()),
        };
        for c in key {
            for (p, x) in g.iter_mut().zip(audio.channel(c)) {
                *p = super::max_abs(*p, *x);
            }
        }
        self.peaks_to_gains_with::<FMA>(g);
        for c in 0..main {
            for (y, g) in audio.channel_mut(c).iter_mut().zip(g.iter()) {
                *y *= g;
            }
        }
        self.gains = gains;
    }
}
