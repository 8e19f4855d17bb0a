//! Lookahead brickwall limiter.
//!
//! For each frame the gain that would put the loudest channel exactly at the ceiling is
//! `g_req = min(1, ceiling / peak)`. With a lookahead of `D` frames and a window of `W = D + 1`:
//!
//! 1. `h[t]` is the minimum of `g_req` over the last `W` frames (van Herk / Gil-Werman: a running minimum
//!    within the current chunk of `W` frames and suffix minima of the previous chunk, so two `min`s a frame,
//!    branch-free, plus O(W) once every W frames);
//! 2. `r[t] = min(h[t], (1 - a)·h[t] + a·r[t-1])` falls at once and recovers with the release time;
//! 3. `g[t]` is the mean of `r` over the last `W` frames, and multiplies the input delayed by `D` frames.
//!
//! Every `r[t-j]` (0 <= j < W) is at most `g_req[t-D]`, because each of their minimum windows contains
//! frame `t-D`; so their mean is too, and `|x[t-D]| · g[t] <= ceiling`. The gain therefore ramps down
//! smoothly over the lookahead and the ceiling holds on every sample. A final clamp to ±ceiling absorbs the
//! last bit of rounding (it changes a sample by at most a few ulps, and only at the ceiling). The latency is
//! `D` frames. Non-finite input is treated as silence, so the output is always finite.
//!
//! The ceiling can move while the limiter runs: it ramps sample by sample, each frame's required gain uses
//! the ceiling of the moment it enters the lookahead, and the ceiling travels with the frame through the
//! delay line, so each output sample holds the ceiling that was in force when it entered. The release time
//! takes effect at once.
//!
//! Keyed by a sidechain ([`Limiter::route`]), the peaks come from the key's channels and the gain applies to
//! the main ones: the key is what the ceiling holds for (its samples times the gain stay under it); the
//! main signal is not clamped.
//!
//! Holding true peaks ([`LimiterSettings::true_peak`]), a frame's peak is the larger of its samples and
//! the points a 4× interpolator (the loudness meter's, [`super::loudness::TruePeak`]) finds between it and
//! its neighbours, on every channel; the signal is delayed by the interpolator's 8 frames to line up with
//! them, so the latency is the lookahead plus 8 frames. The gain then holds each frame and the points
//! around it under the ceiling, which is what a true-peak meter reads of the output wherever the gain moves
//! slowly over the interpolator's span (a few dozen frames); `tests/engine` checks the output with an
//! independent meter.

use super::loudness::{Interpolator, METER_BETA, METER_TAPS};
use super::smooth::{Ramp, ramp_frames};
use super::{fmin, macf};

use crate::node::AudioOut;
use crate::node::RAMP_MS;

/// A limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterSettings {
    /// Largest output magnitude, dBFS.
    pub ceiling_db: f32,
    /// Lookahead, and so latency, ms.
    pub lookahead_ms: f32,
    /// Time constant of the gain recovering, ms.
    pub release_ms: f32,
    /// Hold the ceiling for the peaks between samples too, as a 4× oversampled true-peak meter reads them
    /// (adds [`TRUE_PEAK_DELAY`] frames of latency).
    pub true_peak: bool,
}

/// A true-peak limiter's interpolator: the loudness meter's, so that the meter (and `fxgraph analyze`)
/// reads the output at or under the ceiling.
type Detector = Interpolator<METER_TAPS>;
const INTERPOLATOR_HISTORY: usize = Detector::HISTORY;
/// How far under the ceiling a true-peak limiter holds its interpolator's points: other 4× meters'
/// filters read a limited signal's points up to about 0.2 dB higher where it has content near the Nyquist
/// frequency (libebur128's, on limited white noise), 0.05 dB on music.
pub const TRUE_PEAK_MARGIN_DB: f64 = 0.2;
/// [`TRUE_PEAK_MARGIN_DB`] as a factor on the peaks: 10^(0.2 / 20).
const MARGIN: f32 = 1.023_293;

/// Frames of room after the lookahead's history in the delay line (at least a block): the history moves
/// back to the front once per this many frames, not after every block.
const LINE_ROOM: usize = 1024;

/// The latency a true-peak limiter adds to its lookahead: its interpolator's delay.
pub const TRUE_PEAK_DELAY: usize = Detector::DELAY;

/// A true-peak limiter's detector: each channel's input through the 4× interpolator of the loudness
/// meter, and the input delayed to line up with the points it finds.
#[derive(Clone)]
struct TruePeakDetector {
    interpolator: Detector,
    /// Per channel, the latest `INTERPOLATOR_HISTORY` samples followed by room for one block.
    scratch: Vec<f32>,
    /// Each frame's largest interpolated magnitude (the points after it).
    points: Vec<f32>,
    /// That of the frame before the block.
    last_points: f32,
}

impl std::fmt::Debug for TruePeakDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TruePeakDetector").finish_non_exhaustive()
    }
}

/// A lookahead brickwall limiter: no output sample exceeds the ceiling (see the module documentation).
#[derive(Debug, Clone)]
pub struct Limiter {
    ceiling: f32,
    ceiling_ramp: Ramp,
    ramp_len: u32,
    sample_rate: u32,
    lookahead: usize,
    release: f32,
    channels: usize,
    /// Per channel, a line of `delay_len` frames: from `line_start`, `lookahead` frames of history, then
    /// room for at least one block. A block is written after the history and read from its start; the
    /// history moves back to the front only when the room is used up (every few blocks at small ones,
    /// instead of after every block).
    delay: Vec<f32>,
    delay_len: usize,
    line_start: usize,
    /// The ceiling each frame in `delay` entered with (same layout as one channel).
    ceilings: Vec<f32>,
    /// Whether `ceilings` holds anything but `ceiling` (a ramp is moving or has not left the line yet).
    ceiling_moved: usize,
    /// The current chunk's required gains, the running minimum since it began, and where we are in it.
    chunk: Vec<f32>,
    chunk_min: f32,
    chunk_pos: usize,
    /// `suffix[k]` = minimum of the previous chunk from `k` on; `suffix[W]` = 1 (no constraint).
    suffix: Vec<f32>,
    /// The last `W` released gains and their sum.
    hist: Vec<f32>,
    hist_pos: usize,
    hist_sum: f64,
    inv_window: f64,
    released: f32,
    gains: Vec<f32>,
    /// Whether to run the AVX2 + FMA kernels ([`super::fma_kernels`]).
    fma: bool,
    /// The detector's channels in the block (`start`, `len`) when a sidechain keys it.
    key: Option<(usize, usize)>,
    /// The true-peak detector, when the limiter holds true peaks.
    true_peak: Option<TruePeakDetector>,
}

impl Limiter {
    /// A limiter with settings `s` at `sample_rate` (buffers come with [`prepare`](Self::prepare)).
    pub fn new(s: &LimiterSettings, sample_rate: u32) -> Self {
        let lookahead = (f64::from(s.lookahead_ms) * 1e-3 * f64::from(sample_rate)).round() as usize;
        let ceiling = super::db_to_gain(f64::from(s.ceiling_db));
        Self {
            ceiling: ceiling as f32,
            ceiling_ramp: Ramp::new(ceiling),
            ramp_len: ramp_frames(RAMP_MS, sample_rate),
            sample_rate,
            ceilings: Vec::new(),
            ceiling_moved: 0,
            lookahead,
            release: super::one_pole_coeff(f64::from(s.release_ms), sample_rate),
            channels: 0,
            delay: Vec::new(),
            delay_len: 0,
            line_start: 0,
            chunk: Vec::new(),
            chunk_min: 1.0,
            chunk_pos: 0,
            suffix: Vec::new(),
            hist: Vec::new(),
            hist_pos: 0,
            hist_sum: 0.0,
            inv_window: 1.0 / (lookahead + 1) as f64,
            released: 1.0,
            gains: Vec::new(),
            fma: super::fma_kernels(),
            key: None,
            true_peak: s.true_peak.then(|| TruePeakDetector {
                interpolator: Interpolator::new(METER_BETA),
                scratch: Vec::new(),
                points: Vec::new(),
                last_points: 0.0,
            }),
        }
    }

    /// Detects the peaks on channels `key` of the block (a sidechain) instead of on the limited ones, the
    /// block's first `channels` (as [`prepare`](Self::prepare) gave them); the output is then not clamped.
    pub fn route(&mut self, key: std::ops::Range<usize>) {
        self.key = Some((key.start, key.len()));
    }

    /// Runs the baseline kernels (a multiply and an add where the FMA kernels fuse them) even where the CPU
    /// has FMA: for tests that compare both.
    #[doc(hidden)]
    pub fn plain_arithmetic(mut self) -> Self {
        self.fma = false;
        self
    }

    /// The linear ceiling.
    pub fn ceiling(&self) -> f32 {
        self.ceiling
    }

    /// Frames by which the output lags the input: the lookahead (and the true-peak detector's delay).
    pub fn latency(&self) -> usize {
        self.lookahead + if self.true_peak.is_some() { TRUE_PEAK_DELAY } else { 0 }
    }

    /// Whether it holds true peaks.
    pub fn holds_true_peaks(&self) -> bool {
        self.true_peak.is_some()
    }

    fn window(&self) -> usize {
        self.lookahead + 1
    }

    /// Allocates the delay line and buffers for `channels` channels and blocks of up to `max_block` frames.
    pub fn prepare(&mut self, channels: usize, max_block: usize) {
        self.channels = channels;
        let w = self.window();
        self.delay_len = self.lookahead + max_block.max(LINE_ROOM);
        self.delay = vec![0.0; channels * self.delay_len];
        self.ceilings = vec![self.ceiling; self.delay_len];
        self.chunk = vec![1.0; w];
        self.suffix = vec![1.0; w + 1];
        self.hist = vec![1.0; w];
        self.gains = vec![0.0; max_block];
        if let Some(tp) = &mut self.true_peak {
            tp.scratch = vec![0.0; channels * (INTERPOLATOR_HISTORY + max_block)];
            tp.points = vec![0.0; max_block];
        }
        self.reset();
    }

    /// Moves the ceiling to `ceiling_db`, ramped.
    pub fn set_ceiling_db(&mut self, ceiling_db: f64) {
        self.ceiling_ramp.set(super::db_to_gain(ceiling_db), self.ramp_len);
    }

    /// Sets the release time, at once.
    pub fn set_release_ms(&mut self, release_ms: f64) {
        self.release = super::one_pole_coeff(release_ms, self.sample_rate);
    }

    /// Clears the delay line and the gain state.
    pub fn reset(&mut self) {
        let target = self.ceiling_ramp.target();
        self.ceiling_ramp.jump(target);
        self.ceiling = target as f32;
        self.ceilings.fill(self.ceiling);
        self.ceiling_moved = 0;
        self.delay.fill(0.0);
        self.line_start = 0;
        self.chunk.fill(1.0);
        self.chunk_min = 1.0;
        self.chunk_pos = 0;
        self.suffix.fill(1.0);
        self.hist.fill(1.0);
        self.hist_pos = 0;
        self.hist_sum = self.window() as f64;
        self.released = 1.0;
        if let Some(tp) = &mut self.true_peak {
            tp.scratch.fill(0.0);
            tp.last_points = 0.0;
        }
    }

    /// The gain each frame requires: 1 up to the ceiling, `ceiling / peak` above it.
    #[inline(always)]
    pub fn required_gain(&self, peak: f32) -> f32 {
        if peak > self.ceiling { self.ceiling / peak } else { 1.0 }
    }

    fma_dispatch! {
        /// Turns each frame's required gain (from [`required_gain`](Self::required_gain)) into the gain to
        /// apply, in place; frames go through in order, and each gain applies to the frame `latency()` frames
        /// back. The chunk position and the history position are the same counter modulo the window, so the
        /// work goes in segments up to the window's end: no branch per frame.
        pub fn required_to_gains(g: &mut [f32]) via required_to_gains_fma => required_to_gains_with
    }

    #[inline(always)]
    fn required_to_gains_with<const FMA: bool>(&mut self, g: &mut [f32]) {
        let w = self.window();
        let (release, inv) = (self.release, self.inv_window);
        // `h + a·(r - h)` as `h·(1 - a) + a·r`: the loop-carried chain is then one multiply, one add and one
        // min (12 cycles where the difference form took 16), the frame rate's limit on this loop; with FMA,
        // one fused multiply-add and one min (8 cycles).
        let keep = 1.0 - release;
        let mut rest = g;
        while !rest.is_empty() {
            let k0 = self.chunk_pos;
            let m = (w - k0).min(rest.len());
            let (seg, tail) = rest.split_at_mut(m);
            let (mut cmin, mut rel, mut sum) = (self.chunk_min, self.released, self.hist_sum);
            let chunk = &mut self.chunk[k0..k0 + m];
            let suffix = &self.suffix[k0 + 1..k0 + 1 + m];
            let hist = &mut self.hist[k0..k0 + m];
            for (((v, c), s), h) in seg.iter_mut().zip(chunk).zip(suffix).zip(hist) {
                let required = *v;
                *c = required;
                cmin = fmin(cmin, required);
                let held = fmin(*s, cmin);
                let released = fmin(held, macf::<FMA>(release, rel, held * keep));
                rel = released;
                sum += f64::from(released) - f64::from(*h);
                *h = released;
                *v = (sum * inv) as f32;
            }
            self.released = rel;
            self.chunk_pos += m;
            if self.chunk_pos == w {
                // The chunk is complete: its suffix minima serve the next W frames.
                let mut mn = 1.0f32;
                for j in (0..w).rev() {
                    mn = fmin(mn, self.chunk[j]);
                    self.suffix[j] = mn;
                }
                self.chunk_pos = 0;
                self.chunk_min = 1.0;
                // Re-add exactly once per window so rounding in the running sum cannot build up; the
                // window's last gain uses the exact sum.
                self.hist_sum = sum_f64(&self.hist);
                if let Some(last) = seg.last_mut() {
                    *last = (self.hist_sum * inv) as f32;
                }
            } else {
                self.chunk_min = cmin;
                self.hist_sum = sum;
            }
            self.hist_pos = self.chunk_pos;
            rest = tail;
        }
    }

    fma_dispatch! {
        /// Limits `audio` in place: each frame comes out `latency()` frames later, under the ceiling.
        pub fn process(audio: &mut AudioOut<'_>) via process_fma => process_with
    }

    #[inline(always)]
    fn process_with<const FMA: bool>(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let d = self.lookahead;
        if self.line_start + d + n > self.delay_len {
            let (from, len) = (self.line_start, self.delay_len);
            for c in 0..self.channels {
                self.delay[c * len..(c + 1) * len].copy_within(from..from + d, 0);
            }
            self.ceilings.copy_within(from..from + d, 0);
            self.line_start = 0;
        }
        let s = self.line_start;
        self.line_start += n;
        let mut gains = std::mem::take(&mut self.gains);
        let g = &mut gains[..n];
        // Copy the input behind the history, as silence where it is not finite, and find each frame's peak.
        g.fill(0.0);
        if let Some(tp) = &mut self.true_peak {
            // Through the interpolator: the line takes the input delayed by its delay, and each frame's
            // peak is the larger of its sample and the points on either side of it.
            let (h, span) = (INTERPOLATOR_HISTORY, INTERPOLATOR_HISTORY + tp.points.len());
            let points = &mut tp.points[..n];
            points.fill(0.0);
            for c in 0..self.channels {
                let buf = &mut tp.scratch[c * span..c * span + h + n];
                for (b, &x) in buf[h..].iter_mut().zip(audio.channel(c)) {
                    *b = if x.is_finite() { x } else { 0.0 };
                }
                tp.interpolator.frame_peaks(buf, points);
                let line = &mut self.delay[c * self.delay_len..(c + 1) * self.delay_len];
                for ((slot, &x), p) in
                    line[s + d..s + d + n].iter_mut().zip(&buf[h - TRUE_PEAK_DELAY..]).zip(g.iter_mut())
                {
                    *slot = x;
                    *p = super::max_abs(*p, x);
                }
                buf.copy_within(n..n + h, 0);
            }
            let mut before = tp.last_points;
            for (p, &after) in g.iter_mut().zip(points.iter()) {
                *p = super::fmax(*p, super::fmax(before, after)) * MARGIN;
                before = after;
            }
            tp.last_points = before;
        }
        for c in (0..self.channels).filter(|_| self.true_peak.is_none()) {
            let line = &mut self.delay[c * self.delay_len..(c + 1) * self.delay_len];
            for ((slot, &x), p) in line[s + d..s + d + n].iter_mut().zip(audio.channel(c)).zip(g.iter_mut()) {
                let x = if x.is_finite() { x } else { 0.0 };
                *slot = x;
                *p = super::max_abs(*p, x);
            }
        }
        // The ceiling holds for the key when one is connected; the limited channels then take its gain
        // as it is (`f32::MAX` clamps nothing).
        let bound = if let Some((start, len)) = self.key {
            g.fill(0.0);
            for c in start..start + len {
                for (p, &x) in g.iter_mut().zip(audio.channel(c)) {
                    *p = super::max_abs(*p, if x.is_finite() { x } else { 0.0 });
                }
            }
            f32::MAX
        } else {
            1.0
        };
        if self.ceiling_ramp.active() || self.ceiling_moved > 0 {
            // The ceiling moves: each frame gets its own, which travels with it through the line. Frames that
            // entered while it rested (their entries were not written) entered with the resting ceiling.
            if self.ceiling_moved == 0 {
                self.ceilings.fill(self.ceiling);
            }
            let ceilings = &mut self.ceilings[s + d..s + d + n];
            for (i, (v, c)) in g.iter_mut().zip(ceilings.iter_mut()).enumerate() {
                let ceiling = self.ceiling_ramp.value_after(i as u32 + 1) as f32;
                *c = ceiling;
                *v = if *v > ceiling { ceiling / *v } else { 1.0 };
            }
            self.ceiling_ramp.advance(n);
            self.ceiling = self.ceiling_ramp.value() as f32;
            // Frames entered with a ceiling other than the resting one leave the line after `d + n` more.
            self.ceiling_moved = if self.ceiling_ramp.active() { d + n } else { self.ceiling_moved.saturating_sub(n) };
            self.required_to_gains_with::<FMA>(g);
            for c in 0..self.channels {
                let line = &mut self.delay[c * self.delay_len..(c + 1) * self.delay_len];
                let y = audio.channel_mut(c);
                let ceilings = &self.ceilings[s..s + n];
                for (((y, &x), &g), &ceiling) in y.iter_mut().zip(&line[s..s + n]).zip(g.iter()).zip(ceilings) {
                    let ceiling = ceiling * bound;
                    *y = (x * g).clamp(-ceiling, ceiling);
                }
            }
            self.gains = gains;
            return;
        }
        for v in g.iter_mut() {
            *v = self.required_gain(*v);
        }
        self.required_to_gains_with::<FMA>(g);
        let ceiling = self.ceiling * bound;
        for c in 0..self.channels {
            let line = &mut self.delay[c * self.delay_len..(c + 1) * self.delay_len];
            for ((y, &x), &g) in audio.channel_mut(c).iter_mut().zip(&line[s..s + n]).zip(g.iter()) {
                *y = (x * g).clamp(-ceiling, ceiling);
            }
        }
        self.gains = gains;
    }
}

/// The sum of `x` in `f64`, in eight running sums (which vectorize) added at the end, where one running
/// sum would wait on each addition in turn.
#[inline(always)]
fn sum_f64(x: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f64::from(v);
        }
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::{Limiter, LimiterSettings};
    use crate::node::AudioOut;

    /// Runs `x` (planar stereo) through a limiter in blocks of `block` frames (cut where the ceiling moves),
    /// moving the ceiling at every multiple of `period` frames.
    fn limited(x: &[f32], block: usize, period: usize, true_peak: bool) -> Vec<f32> {
        let settings = LimiterSettings { ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0, true_peak };
        let mut lim = Limiter::new(&settings, 48000);
        lim.prepare(2, 512);
        let frames = x.len() / 2;
        let mut planar = x.to_vec();
        let ceilings = [-6.0, -0.5, -3.0, -1.0];
        let mut at = 0;
        while at < frames {
            if at % period == 0 && at > 0 {
                lim.set_ceiling_db(ceilings[(at / period) % ceilings.len()]);
            }
            let n = block.min(frames - at).min(period - at % period);
            lim.process(&mut AudioOut::new(&mut planar[at..], frames, 2, n));
            at += n;
        }
        planar
    }

    #[test]
    fn the_output_does_not_depend_on_the_block_size_while_the_ceiling_moves_and_rests() {
        // Loud input; the ceiling ramps (20 ms) and then rests for longer than the delay line's room, so
        // that the line's history moves to its front at different blocks for different block sizes.
        let frames = 48000 * 2;
        let x: Vec<f32> =
            (0..2 * frames).map(|i| 1.5 * ((i % frames) as f32 * 0.013 + (i / frames) as f32).sin()).collect();
        for true_peak in [false, true] {
            let want = limited(&x, 512, 12800, true_peak);
            for block in [1, 64, 300] {
                let got = limited(&x, block, 12800, true_peak);
                let first = want.iter().zip(&got).position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(first, None, "block {block}, true peak {true_peak}: differs from block 512");
            }
        }
    }

    #[test]
    fn the_margin_factor_is_the_margin() {
        let db = 20.0 * f64::from(super::MARGIN).log10();
        assert!((db - super::TRUE_PEAK_MARGIN_DB).abs() < 1e-5, "{db}");
    }
}
