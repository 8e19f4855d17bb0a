//! Second-order IIR filters from Robert Bristow-Johnson's Audio EQ Cookbook, in transposed direct form II.

use super::denormal::flush;
use crate::buffer::{AudioIn, AudioOut};
use serde::Deserialize;

/// The cookbook's filter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BandKind {
    /// Bell: `gain_db` at `freq_hz`, bandwidth set by `q`.
    Peak,
    /// Low shelf: `gain_db` below `freq_hz` (half of it at `freq_hz`); `q` sets the slope.
    LowShelf,
    /// High shelf: `gain_db` above `freq_hz` (half of it at `freq_hz`); `q` sets the slope.
    HighShelf,
    /// 12 dB/octave low-pass; `q` is the resonance (0.707 is Butterworth).
    LowPass,
    /// 12 dB/octave high-pass; `q` is the resonance.
    HighPass,
    /// Band-pass with 0 dB peak gain at `freq_hz`.
    BandPass,
    /// Notch: zero gain at `freq_hz`.
    Notch,
    /// All-pass: unit gain, phase turns through 360 degrees around `freq_hz`.
    AllPass,
}

impl BandKind {
    /// Whether `gain_db` affects this kind.
    pub fn uses_gain(self) -> bool {
        matches!(self, BandKind::Peak | BandKind::LowShelf | BandKind::HighShelf)
    }
}

/// Normalized biquad coefficients (a0 = 1): `y = b0 x + b1 x[-1] + b2 x[-2] - a1 y[-1] - a2 y[-2]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coeffs {
    pub b0: f64,
    pub b1: f64,
    pub b2: f64,
    pub a1: f64,
    pub a2: f64,
}

impl Coeffs {
    /// The cookbook formulas, computed in `f64`.
    pub fn cookbook(kind: BandKind, freq_hz: f64, gain_db: f64, q: f64, sample_rate: f64) -> Self {
        let a = 10f64.powf(gain_db / 40.0);
        let w0 = std::f64::consts::TAU * freq_hz / sample_rate;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * q);
        let sqa2 = 2.0 * a.sqrt() * alpha;
        let (b0, b1, b2, a0, a1, a2) = match kind {
            BandKind::LowPass => {
                let k = 1.0 - cos;
                (k / 2.0, k, k / 2.0, 1.0 + alpha, -2.0 * cos, 1.0 - alpha)
            }
            BandKind::HighPass => {
                let k = 1.0 + cos;
                (k / 2.0, -k, k / 2.0, 1.0 + alpha, -2.0 * cos, 1.0 - alpha)
            }
            BandKind::BandPass => (alpha, 0.0, -alpha, 1.0 + alpha, -2.0 * cos, 1.0 - alpha),
            BandKind::Notch => (1.0, -2.0 * cos, 1.0, 1.0 + alpha, -2.0 * cos, 1.0 - alpha),
            BandKind::AllPass => (1.0 - alpha, -2.0 * cos, 1.0 + alpha, 1.0 + alpha, -2.0 * cos, 1.0 - alpha),
            BandKind::Peak => {
                (1.0 + alpha * a, -2.0 * cos, 1.0 - alpha * a, 1.0 + alpha / a, -2.0 * cos, 1.0 - alpha / a)
            }
            BandKind::LowShelf => (
                a * ((a + 1.0) - (a - 1.0) * cos + sqa2),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cos),
                a * ((a + 1.0) - (a - 1.0) * cos - sqa2),
                (a + 1.0) + (a - 1.0) * cos + sqa2,
                -2.0 * ((a - 1.0) + (a + 1.0) * cos),
                (a + 1.0) + (a - 1.0) * cos - sqa2,
            ),
            BandKind::HighShelf => (
                a * ((a + 1.0) + (a - 1.0) * cos + sqa2),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cos),
                a * ((a + 1.0) + (a - 1.0) * cos - sqa2),
                (a + 1.0) - (a - 1.0) * cos + sqa2,
                2.0 * ((a - 1.0) - (a + 1.0) * cos),
                (a + 1.0) - (a - 1.0) * cos - sqa2,
            ),
        };
        Self { b0: b0 / a0, b1: b1 / a0, b2: b2 / a0, a1: a1 / a0, a2: a2 / a0 }
    }

    /// |H(e^{jw})| at `freq_hz`.
    pub fn magnitude(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        let w = std::f64::consts::TAU * freq_hz / sample_rate;
        let (s1, c1) = w.sin_cos();
        let (s2, c2) = (2.0 * w).sin_cos();
        let num_re = self.b0 + self.b1 * c1 + self.b2 * c2;
        let num_im = -(self.b1 * s1 + self.b2 * s2);
        let den_re = 1.0 + self.a1 * c1 + self.a2 * c2;
        let den_im = -(self.a1 * s1 + self.a2 * s2);
        (num_re.hypot(num_im)) / (den_re.hypot(den_im))
    }

    pub fn to_f32(self) -> Coeffs32 {
        Coeffs32 { b0: self.b0 as f32, b1: self.b1 as f32, b2: self.b2 as f32, a1: self.a1 as f32, a2: self.a2 as f32 }
    }
}

/// Single-precision coefficients used on the audio path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coeffs32 {
    pub b0: f32,
    pub b1: f32,
    pub b2: f32,
    pub a1: f32,
    pub a2: f32,
}

impl Coeffs32 {
    /// One TDF-II step: returns y and updates the two state registers.
    #[inline(always)]
    pub fn tick(&self, x: f32, s: &mut [f32; 2]) -> f32 {
        let y = self.b0 * x + s[0];
        s[0] = self.b1 * x - self.a1 * y + s[1];
        s[1] = self.b2 * x - self.a2 * y;
        y
    }

    /// [`tick`](Self::tick) on two channels at once, written lane by lane so the compiler can keep both in
    /// one vector register. `s` is `[s1, s2]`, each `[left, right]`. Same operations, same bits.
    #[inline(always)]
    pub fn tick2(&self, x: [f32; 2], s: &mut [[f32; 2]; 2]) -> [f32; 2] {
        let y = [self.b0 * x[0] + s[0][0], self.b0 * x[1] + s[0][1]];
        s[0] = [self.b1 * x[0] - self.a1 * y[0] + s[1][0], self.b1 * x[1] - self.a1 * y[1] + s[1][1]];
        s[1] = [self.b2 * x[0] - self.a2 * y[0], self.b2 * x[1] - self.a2 * y[1]];
        y
    }
}

/// A cascade of biquads applied to every channel.
///
/// Channels are processed in pairs with all bands inside one per-frame loop, so the independent recursions
/// of both channels and every band overlap in the CPU's pipeline instead of each waiting on its own
/// feedback.
#[derive(Debug, Clone)]
pub struct BiquadCascade {
    coeffs: Vec<Coeffs32>,
    /// State of channel pairs (0, 1), (2, 3)...: `pairs[pair * bands + band]`.
    pairs: Vec<[[f32; 2]; 2]>,
    /// State of the last channel when the count is odd.
    odd: Vec<[f32; 2]>,
    channels: usize,
}

impl BiquadCascade {
    pub fn new(coeffs: Vec<Coeffs32>) -> Self {
        Self { coeffs, pairs: Vec::new(), odd: Vec::new(), channels: 0 }
    }

    /// Allocates state for `channels`.
    pub fn prepare(&mut self, channels: usize) {
        self.channels = channels;
        self.pairs = vec![[[0.0; 2]; 2]; channels / 2 * self.coeffs.len()];
        self.odd = vec![[0.0; 2]; channels % 2 * self.coeffs.len()];
    }

    pub fn reset(&mut self) {
        self.pairs.fill([[0.0; 2]; 2]);
        self.odd.fill([0.0; 2]);
    }

    pub fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        let bands = self.coeffs.len();
        for (pair, state) in self.pairs.chunks_exact_mut(bands.max(1)).enumerate() {
            let c = 2 * pair;
            let (xl, xr) = (input.channel(c), input.channel(c + 1));
            let (yl, yr) = output.pair_mut(c, c + 1);
            for i in 0..xl.len() {
                let mut v = [xl[i], xr[i]];
                for (k, s) in self.coeffs.iter().zip(state.iter_mut()) {
                    v = k.tick2(v, s);
                }
                yl[i] = v[0];
                yr[i] = v[1];
            }
        }
        if self.channels % 2 == 1 {
            let c = self.channels - 1;
            let x = input.channel(c);
            let y = output.channel_mut(c);
            for (xi, yi) in x.iter().zip(y.iter_mut()) {
                let mut v = *xi;
                for (k, st) in self.coeffs.iter().zip(self.odd.iter_mut()) {
                    v = k.tick(v, st);
                }
                *yi = v;
            }
        }
        for s in self.pairs.iter_mut().flatten().flatten().chain(self.odd.iter_mut().flatten()) {
            *s = flush(*s);
        }
    }
}
