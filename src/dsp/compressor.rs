//! Feed-forward, stereo-linked compressor with a soft knee (Giannoulis, Massberg & Reiss, "Digital Dynamic
//! Range Compressor Design", JAES 2012: log-domain gain computer, smooth decoupled peak detector on the gain
//! reduction).

use super::denormal::flush;
use super::fastmath;
use crate::buffer::{AudioIn, AudioOut};

/// Compressor settings in user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressorSettings {
    pub threshold_db: f32,
    pub ratio: f32,
    pub attack_ms: f32,
    pub release_ms: f32,
    pub knee_db: f32,
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

/// Audio-side compressor state.
#[derive(Debug, Clone)]
pub struct Compressor {
    threshold_db: f32,
    /// `1 - 1/ratio`.
    slope: f32,
    half_knee_db: f32,
    inv_2knee: f32,
    makeup_db: f32,
    attack: f32,
    release: f32,
    /// Smoothed gain reduction in dB.
    env_db: f32,
    gains: Vec<f32>,
}

impl Compressor {
    pub fn new(s: &CompressorSettings, sample_rate: u32) -> Self {
        let knee = s.knee_db.max(0.0);
        Self {
            threshold_db: s.threshold_db,
            slope: 1.0 - 1.0 / s.ratio,
            half_knee_db: knee / 2.0,
            inv_2knee: if knee > 0.0 { 1.0 / (2.0 * knee) } else { 0.0 },
            makeup_db: s.makeup_db,
            attack: super::one_pole_coeff(f64::from(s.attack_ms), sample_rate),
            release: super::one_pole_coeff(f64::from(s.release_ms), sample_rate),
            env_db: 0.0,
            gains: Vec::new(),
        }
    }

    pub fn prepare(&mut self, max_block: usize) {
        self.gains = vec![0.0; max_block];
    }

    pub fn reset(&mut self) {
        self.env_db = 0.0;
    }

    /// The current smoothed gain reduction, in dB.
    pub fn gain_reduction(&self) -> f32 {
        self.env_db
    }

    /// Gain reduction the static curve asks for at a frame's peak magnitude.
    #[inline(always)]
    fn target_db(&self, peak: f32) -> f32 {
        // NaN becomes the floor and infinity the ceiling, so neither reaches the state (`clamp` would pass
        // NaN through).
        #[allow(clippy::manual_clamp)]
        let level = peak.max(1e-10).min(1e10);
        gain_reduction_db(fastmath::gain_to_db(level), self.threshold_db, self.slope, self.half_knee_db, self.inv_2knee)
    }

    /// One envelope step towards `target` (attack when rising, release when falling).
    #[inline(always)]
    fn smooth(&self, env: f32, target: f32) -> f32 {
        let coeff = if target > env { self.attack } else { self.release };
        target + coeff * (env - target)
    }

    /// One detector step: from the frame's peak magnitude to the linear gain to apply. Equivalent to
    /// [`process`](Self::process) one frame at a time (same operations, same bits).
    #[inline(always)]
    pub fn gain_for_peak(&mut self, peak: f32) -> f32 {
        self.env_db = self.smooth(self.env_db, self.target_db(peak));
        fastmath::db_to_gain(self.makeup_db - self.env_db)
    }

    /// Turns each frame's peak magnitude into the gain to apply, in place: the level and gain computer,
    /// the envelope, and the gain, each as its own pass.
    pub fn peaks_to_gains(&mut self, g: &mut [f32]) {
        for v in g.iter_mut() {
            *v = self.target_db(*v);
        }
        let mut env = self.env_db;
        for v in g.iter_mut() {
            env = self.smooth(env, *v);
            *v = env;
        }
        self.env_db = flush(env);
        let makeup = self.makeup_db;
        for v in g.iter_mut() {
            *v = fastmath::db_to_gain(makeup - *v);
        }
    }

    /// Processes a block in passes, so that everything but the envelope recursion vectorizes: peak
    /// detection, the level and gain computer, the envelope, the gain, and applying it.
    pub fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        let n = input.frames();
        let mut gains = std::mem::take(&mut self.gains);
        let g = &mut gains[..n];
        g.fill(0.0);
        for c in 0..input.channels() {
            for (p, x) in g.iter_mut().zip(input.channel(c)) {
                *p = super::max_abs(*p, *x);
            }
        }
        self.peaks_to_gains(g);
        for c in 0..input.channels() {
            for ((y, x), g) in output.channel_mut(c).iter_mut().zip(input.channel(c)).zip(g.iter()) {
                *y = x * g;
            }
        }
        self.gains = gains;
    }
}
