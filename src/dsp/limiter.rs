//! Lookahead brickwall limiter.
//!
//! For each frame the gain that would put the loudest channel exactly at the ceiling is
//! `g_req = min(1, ceiling / peak)`. With a lookahead of `D` frames and a window of `W = D + 1`:
//!
//! 1. `h[t]` is the minimum of `g_req` over the last `W` frames (a sliding-minimum deque, O(1) amortized);
//! 2. `r[t] = min(h[t], h[t] + a·(r[t-1] - h[t]))` falls at once and recovers with the release time;
//! 3. `g[t]` is the mean of `r` over the last `W` frames, and multiplies the input delayed by `D` frames.
//!
//! Every `r[t-j]` (0 <= j < W) is at most `g_req[t-D]`, because each of their minimum windows contains
//! frame `t-D`; so their mean is too, and `|x[t-D]| · g[t] <= ceiling`. The gain therefore ramps down
//! smoothly over the lookahead and the ceiling holds on every sample. A final clamp to ±ceiling absorbs the
//! last bit of rounding (it changes a sample by at most a few ulps, and only at the ceiling). The latency is
//! `D` frames. Non-finite input is treated as silence, so the output is always finite.

use crate::buffer::{AudioIn, AudioOut};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterSettings {
    pub ceiling_db: f32,
    pub lookahead_ms: f32,
    pub release_ms: f32,
}

#[derive(Debug, Clone)]
pub struct Limiter {
    ceiling: f32,
    lookahead: usize,
    release: f32,
    channels: usize,
    /// `channels` delay lines of `lookahead` frames each.
    delay: Vec<f32>,
    delay_pos: usize,
    /// Sliding-minimum deque: a ring of (frame index, value) with capacity `W`.
    min_val: Vec<f32>,
    min_idx: Vec<u64>,
    min_head: usize,
    min_len: usize,
    /// The last `W` released gains and their sum.
    hist: Vec<f32>,
    hist_pos: usize,
    hist_sum: f64,
    released: f32,
    frame: u64,
    gains: Vec<f32>,
}

impl Limiter {
    pub fn new(s: &LimiterSettings, sample_rate: u32) -> Self {
        let lookahead = (f64::from(s.lookahead_ms) * 1e-3 * f64::from(sample_rate)).round() as usize;
        Self {
            ceiling: super::db_to_gain(f64::from(s.ceiling_db)) as f32,
            lookahead,
            release: super::one_pole_coeff(f64::from(s.release_ms), sample_rate),
            channels: 0,
            delay: Vec::new(),
            delay_pos: 0,
            min_val: Vec::new(),
            min_idx: Vec::new(),
            min_head: 0,
            min_len: 0,
            hist: Vec::new(),
            hist_pos: 0,
            hist_sum: 0.0,
            released: 1.0,
            frame: 0,
            gains: Vec::new(),
        }
    }

    /// The linear ceiling.
    pub fn ceiling(&self) -> f32 {
        self.ceiling
    }

    pub fn latency(&self) -> usize {
        self.lookahead
    }

    fn window(&self) -> usize {
        self.lookahead + 1
    }

    pub fn prepare(&mut self, channels: usize, max_block: usize) {
        self.channels = channels;
        let w = self.window();
        self.delay = vec![0.0; channels * self.lookahead];
        self.min_val = vec![0.0; w];
        self.min_idx = vec![0; w];
        self.hist = vec![1.0; w];
        self.gains = vec![0.0; max_block];
        self.reset();
    }

    pub fn reset(&mut self) {
        self.delay.fill(0.0);
        self.delay_pos = 0;
        self.min_head = 0;
        self.min_len = 0;
        self.hist.fill(1.0);
        self.hist_pos = 0;
        self.hist_sum = self.window() as f64;
        self.released = 1.0;
        self.frame = 0;
    }

    /// One gain step for a frame whose loudest channel has magnitude `peak` (finite, >= 0).
    #[inline(always)]
    fn gain_step(&mut self, peak: f32) -> f32 {
        let w = self.window();
        let required = if peak > self.ceiling { self.ceiling / peak } else { 1.0 };
        let t = self.frame;
        self.frame += 1;
        // Drop entries that left the window, then keep the deque increasing from front to back.
        while self.min_len > 0 && self.min_idx[self.min_head] + w as u64 <= t {
            self.min_head = if self.min_head + 1 == w { 0 } else { self.min_head + 1 };
            self.min_len -= 1;
        }
        while self.min_len > 0 {
            let back = wrap(self.min_head + self.min_len - 1, w);
            if self.min_val[back] >= required {
                self.min_len -= 1;
            } else {
                break;
            }
        }
        let slot = wrap(self.min_head + self.min_len, w);
        self.min_val[slot] = required;
        self.min_idx[slot] = t;
        self.min_len += 1;
        let held = self.min_val[self.min_head];

        let released = held.min(held + self.release * (self.released - held));
        self.released = released;

        self.hist_sum += f64::from(released) - f64::from(self.hist[self.hist_pos]);
        self.hist[self.hist_pos] = released;
        self.hist_pos += 1;
        if self.hist_pos == w {
            // Re-add exactly once per window so rounding in the running sum cannot build up.
            self.hist_pos = 0;
            self.hist_sum = self.hist.iter().map(|&g| f64::from(g)).sum();
        }
        (self.hist_sum / w as f64) as f32
    }

    pub fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        let n = input.frames();
        let mut gains = std::mem::take(&mut self.gains);
        {
            let peaks = &mut gains[..n];
            peaks.fill(0.0);
            for c in 0..self.channels {
                for (p, x) in peaks.iter_mut().zip(input.channel(c)) {
                    // `max` ignores NaN; infinity is caught below.
                    *p = p.max(x.abs());
                }
            }
            for p in peaks.iter_mut() {
                let peak = if p.is_finite() { *p } else { 0.0 };
                *p = self.gain_step(peak);
            }
        }
        let ceiling = self.ceiling;
        let d = self.lookahead;
        for c in 0..self.channels {
            let x = input.channel(c);
            let y = output.channel_mut(c);
            let g = &gains[..n];
            if d == 0 {
                for i in 0..n {
                    let xi = if x[i].is_finite() { x[i] } else { 0.0 };
                    y[i] = (xi * g[i]).clamp(-ceiling, ceiling);
                }
            } else {
                let line = &mut self.delay[c * d..(c + 1) * d];
                let mut pos = self.delay_pos;
                for i in 0..n {
                    let xi = if x[i].is_finite() { x[i] } else { 0.0 };
                    let delayed = line[pos];
                    line[pos] = xi;
                    pos = if pos + 1 == d { 0 } else { pos + 1 };
                    y[i] = (delayed * g[i]).clamp(-ceiling, ceiling);
                }
            }
        }
        if d > 0 {
            self.delay_pos = (self.delay_pos + n) % d;
        }
        self.gains = gains;
    }
}

#[inline(always)]
fn wrap(i: usize, w: usize) -> usize {
    if i >= w { i - w } else { i }
}
