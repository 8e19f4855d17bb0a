//! Second-order IIR filters from Robert Bristow-Johnson's Audio EQ Cookbook, in transposed direct form II,
//! with `f64` coefficients and state (as sox, ffmpeg and FunDSP compute them).

use super::denormal::{FLUSH_PERIOD, flush_state};
use super::mac;
use super::smooth::{Ramp, ramp_frames};
use crate::node::AudioOut;
use crate::node::RAMP_MS;

/// While a ramp moves, filter coefficients are recomputed every this many frames. With 32 (the plugins'
/// parameter step, [`crate::node::RAMP_STEP`]) a low-pass swept towards Nyquist left transients: 0.009 on a
/// 0.5 sine for 8 to 20 kHz in 20 ms, seen as clicks; with 8 there are none. Only ramps pay for it.
pub const COEFF_STEP: usize = 8;
use serde::{Deserialize, Serialize};

/// The cookbook's filter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
    /// Feed-forward coefficient of `x[n]`.
    pub b0: f64,
    /// Feed-forward coefficient of `x[n-1]`.
    pub b1: f64,
    /// Feed-forward coefficient of `x[n-2]`.
    pub b2: f64,
    /// Feedback coefficient of `y[n-1]` (`a0` normalized to 1).
    pub a1: f64,
    /// Feedback coefficient of `y[n-2]`.
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

    /// One TDF-II step in `f64`: returns y and updates the two state registers.
    ///
    /// The first state register is updated as `(b1·x + s2) - a1·y`, so the feedback path (y, then a1·y,
    /// then the subtraction) is the only part of the recursion that waits on y.
    #[inline(always)]
    pub fn tick(&self, x: f64, s: &mut [f64; 2]) -> f64 {
        let y = self.b0 * x + s[0];
        s[0] = (self.b1 * x + s[1]) - self.a1 * y;
        s[1] = self.b2 * x - self.a2 * y;
        y
    }

    /// [`tick`](Self::tick) on two channels at once, written lane by lane so the compiler keeps both in one
    /// `f64x2` register. `s` is `[s1, s2]`, each `[left, right]`. Without `FMA` it is the same operations
    /// as `tick`, the same bits; with `FMA` (see [`mac`]) each multiply and the add that follows it are
    /// one fused step, and the recursion waits on two of them a frame instead of an add, a multiply and a
    /// subtraction.
    #[inline(always)]
    pub fn tick2<const FMA: bool>(&self, x: [f64; 2], s: &mut [[f64; 2]; 2]) -> [f64; 2] {
        let (na1, na2) = (-self.a1, -self.a2);
        let y = [mac::<FMA>(self.b0, x[0], s[0][0]), mac::<FMA>(self.b0, x[1], s[0][1])];
        s[0] = [
            mac::<FMA>(na1, y[0], mac::<FMA>(self.b1, x[0], s[1][0])),
            mac::<FMA>(na1, y[1], mac::<FMA>(self.b1, x[1], s[1][1])),
        ];
        s[1] = [mac::<FMA>(na2, y[0], self.b2 * x[0]), mac::<FMA>(na2, y[1], self.b2 * x[1])];
        y
    }

    /// The identity filter.
    pub const IDENTITY: Coeffs = Coeffs { b0: 1.0, b1: 0.0, b2: 0.0, a1: 0.0, a2: 0.0 };
}

/// One band's settings: what [`Coeffs::cookbook`] takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandSettings {
    /// The filter's shape.
    pub kind: BandKind,
    /// Center, corner or shelf midpoint frequency (Hz).
    pub freq_hz: f64,
    /// Gain of peak and shelf bands (dB); ignored by the other kinds.
    pub gain_db: f64,
    /// Quality factor (for shelves, the cookbook's Q form of the slope).
    pub q: f64,
}

impl BandSettings {
    /// The cookbook's coefficients for this band at `sample_rate`, in `f64`.
    pub fn coeffs(&self, sample_rate: f64) -> Coeffs {
        Coeffs::cookbook(self.kind, self.freq_hz, self.gain_db, self.q, sample_rate)
    }
}

/// A band's smoothed settings: frequency and Q ramp in the log domain, gain in dB.
#[derive(Debug, Clone, Copy)]
struct BandRamps {
    log2_freq: Ramp,
    gain_db: Ramp,
    ln_q: Ramp,
}

impl BandRamps {
    fn new(b: &BandSettings) -> Self {
        Self { log2_freq: Ramp::new(b.freq_hz.log2()), gain_db: Ramp::new(b.gain_db), ln_q: Ramp::new(b.q.ln()) }
    }

    fn all(&mut self) -> [&mut Ramp; 3] {
        [&mut self.log2_freq, &mut self.gain_db, &mut self.ln_q]
    }
}

/// A cascade of biquads applied to every channel, in place, in `f64` (coefficients and state).
///
/// Channels are processed in pairs with all bands inside one per-frame loop, so the independent recursions
/// of both channels and every band overlap in the CPU's pipeline instead of each waiting on its own
/// feedback; each pair is one SSE2 `f64x2` register.
///
/// Settings changes are smoothed: frequency (log), gain (dB) and Q (log) ramp linearly over the ramp
/// length, and the coefficients are recomputed from the ramped values every [`COEFF_STEP`] frames of the
/// ramp; when the ramp ends they are exactly the cookbook's for the target.
#[derive(Debug, Clone)]
pub struct BiquadCascade {
    sample_rate: f64,
    bands: Vec<BandSettings>,
    ramps: Vec<BandRamps>,
    coeffs: Vec<Coeffs>,
    /// State of channel pairs (0, 1), (2, 3)...: `pairs[pair * bands + band]`.
    pairs: Vec<[[f64; 2]; 2]>,
    /// State of the last channel when the count is odd (lane 0; lane 1 stays silent).
    odd: Vec<[[f64; 2]; 2]>,
    channels: usize,
    /// The block being filtered, as `f64` frames.
    scratch: Vec<[f64; 2]>,
    ramp_len: u32,
    /// Frames into the current ramp (coefficients are recomputed when it is a multiple of COEFF_STEP).
    ramp_pos: usize,
    ramping: bool,
    /// Frames since the last reset.
    frames: u64,
    /// Whether to run the AVX2 + FMA kernels ([`super::fma_kernels`]).
    fma: bool,
}

impl BiquadCascade {
    /// A cascade of `bands`, applied in order, at `sample_rate` (buffers come with [`prepare`](Self::prepare)).
    pub fn new(bands: Vec<BandSettings>, sample_rate: u32) -> Self {
        let sr = f64::from(sample_rate);
        Self {
            sample_rate: sr,
            coeffs: bands.iter().map(|b| b.coeffs(sr)).collect(),
            ramps: bands.iter().map(BandRamps::new).collect(),
            bands,
            pairs: Vec::new(),
            odd: Vec::new(),
            channels: 0,
            scratch: Vec::new(),
            ramp_len: ramp_frames(RAMP_MS, sample_rate),
            ramp_pos: 0,
            ramping: false,
            frames: 0,
            fma: super::fma_kernels(),
        }
    }

    /// Runs the baseline kernels (a multiply and an add where the FMA kernels fuse them) even where the CPU
    /// has FMA: for tests that compare both.
    #[doc(hidden)]
    pub fn plain_arithmetic(mut self) -> Self {
        self.fma = false;
        self
    }

    /// The current coefficients, band by band.
    pub fn coeffs(&self) -> &[Coeffs] {
        &self.coeffs
    }

    /// Allocates state for `channels` and blocks of up to `max_block` frames.
    pub fn prepare(&mut self, channels: usize, max_block: usize) {
        self.channels = channels;
        self.pairs = vec![[[0.0; 2]; 2]; channels / 2 * self.coeffs.len()];
        self.odd = vec![[[0.0; 2]; 2]; channels % 2 * self.coeffs.len()];
        self.scratch = vec![[0.0; 2]; max_block];
    }

    /// Clears the filter state; settings ramps jump to their targets.
    pub fn reset(&mut self) {
        self.pairs.fill([[0.0; 2]; 2]);
        self.odd.fill([[0.0; 2]; 2]);
        self.frames = 0;
        if self.ramping {
            for r in &mut self.ramps {
                for ramp in r.all() {
                    let t = ramp.target();
                    ramp.jump(t);
                }
            }
            self.finish_ramp();
        }
    }

    /// Sets band `band`'s frequency (`which` 0), gain (1) or Q (2), ramped.
    pub fn set(&mut self, band: usize, which: usize, value: f64) {
        if band >= self.bands.len() {
            return;
        }
        let target = match which {
            0 => value.log2(),
            1 => value,
            _ => value.ln(),
        };
        match which {
            0 => self.bands[band].freq_hz = value,
            1 => self.bands[band].gain_db = value,
            _ => self.bands[band].q = value,
        }
        // Every ramp restarts from where it is, so the whole cascade moves on one clock.
        let len = self.ramp_len;
        for (i, rs) in self.ramps.iter_mut().enumerate() {
            for (k, ramp) in rs.all().into_iter().enumerate() {
                if i == band && k == which {
                    ramp.set(target, len);
                } else {
                    ramp.restart(len);
                }
            }
        }
        self.ramp_pos = 0;
        self.ramping = true;
    }

    fn finish_ramp(&mut self) {
        self.ramping = false;
        let sr = self.sample_rate;
        for (c, b) in self.coeffs.iter_mut().zip(&self.bands) {
            *c = b.coeffs(sr);
        }
    }

    /// Coefficients from the ramps' current values.
    fn ramped_coeffs(&mut self) {
        let sr = self.sample_rate;
        for ((c, b), r) in self.coeffs.iter_mut().zip(&self.bands).zip(&self.ramps) {
            *c = Coeffs::cookbook(b.kind, r.log2_freq.value().exp2(), r.gain_db.value(), r.ln_q.value().exp(), sr);
        }
    }

    /// Runs every band over `audio`, in place.
    pub fn process(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let mut at = 0;
        while at < n {
            // Cut at coefficient steps of a ramp and at state-flush points.
            let to_flush = (FLUSH_PERIOD - self.frames % FLUSH_PERIOD) as usize;
            let mut chunk = (n - at).min(to_flush);
            if self.ramping {
                if self.ramp_pos < self.ramp_len as usize {
                    if self.ramp_pos.is_multiple_of(COEFF_STEP) {
                        self.ramped_coeffs();
                    }
                    chunk = chunk.min(COEFF_STEP - self.ramp_pos % COEFF_STEP);
                } else {
                    self.finish_ramp();
                }
            }
            self.run(&mut audio.slice_mut(at, chunk));
            if self.ramping {
                for r in &mut self.ramps {
                    for ramp in r.all() {
                        ramp.advance(chunk);
                    }
                }
                self.ramp_pos += chunk;
            }
            self.frames += chunk as u64;
            at += chunk;
            if self.frames.is_multiple_of(FLUSH_PERIOD) {
                self.flush_state(1e-30);
            }
        }
        // NaN or infinity from the input never outlives the block it came in.
        self.flush_state(0.0);
    }

    /// Clears state below `tiny` in magnitude (0: only non-finite state).
    fn flush_state(&mut self, tiny: f64) {
        flush_state(self.pairs.iter_mut().chain(self.odd.iter_mut()).flatten().flatten(), tiny);
    }

    fma_dispatch! {
        fn run(audio: &mut AudioOut<'_>) via run_fma => run_with
    }

    #[inline(always)]
    fn run_with<const FMA: bool>(&mut self, audio: &mut AudioOut<'_>) {
        let bands = self.coeffs.len();
        let n = audio.frames();
        if bands == 0 || n == 0 {
            return;
        }
        let data = &mut self.scratch[..n];
        for (pair, state) in self.pairs.chunks_exact_mut(bands).enumerate() {
            let (l, r) = audio.pair_mut(2 * pair, 2 * pair + 1);
            for ((v, l), r) in data.iter_mut().zip(l.iter()).zip(r.iter()) {
                *v = [f64::from(*l), f64::from(*r)];
            }
            cascade::<FMA>(&self.coeffs, state, data);
            for ((v, l), r) in data.iter().zip(l.iter_mut()).zip(r.iter_mut()) {
                *l = v[0] as f32;
                *r = v[1] as f32;
            }
        }
        if self.channels % 2 == 1 {
            // The last channel alone, in lane 0 (lane 1 carries silence through the same filters).
            let y = audio.channel_mut(self.channels - 1);
            for (v, y) in data.iter_mut().zip(y.iter()) {
                *v = [f64::from(*y), 0.0];
            }
            cascade::<FMA>(&self.coeffs, &mut self.odd, data);
            for (v, y) in data.iter().zip(y.iter_mut()) {
                *y = v[0] as f32;
            }
        }
    }
}

/// The most bands applied together in one pass over a block. Their state stays in registers (five bands:
/// ten of the sixteen), and the recursions of the bands overlap in the pipeline; each band's recursion
/// alone would leave the CPU waiting most of the time.
pub const MAX_GROUP: usize = 5;

/// Runs the whole cascade over `data` (stereo frames as `f64x2`) in as few groups as [`MAX_GROUP`] allows,
/// of sizes as equal as possible (seven bands: four and three), so no group is left alone with its own
/// recursion's latency.
#[inline(always)]
fn cascade<const FMA: bool>(k: &[Coeffs], s: &mut [[[f64; 2]; 2]], data: &mut [[f64; 2]]) {
    let groups = k.len().div_ceil(MAX_GROUP);
    let mut at = 0;
    for g in 0..groups {
        // The first `k.len() % groups` groups take one band more.
        let size = k.len() / groups + usize::from(g < k.len() % groups);
        let (k, s) = (&k[at..at + size], &mut s[at..at + size]);
        #[cfg(target_arch = "x86_64")]
        if FMA {
            #[allow(unsafe_code)]
            // SAFETY: this module instantiates `cascade::<true>` only in `run_fma`, which runs only where
            // `fma_kernels()` found AVX2 and FMA.
            unsafe {
                match size {
                    1 => fma::group::<1>(k, s, data),
                    2 => fma::group::<2>(k, s, data),
                    3 => fma::group::<3>(k, s, data),
                    4 => fma::group::<4>(k, s, data),
                    _ => fma::group::<5>(k, s, data),
                }
            }
            at += size;
            continue;
        }
        match size {
            1 => group::<1>(k, s, data),
            2 => group::<2>(k, s, data),
            3 => group::<3>(k, s, data),
            4 => group::<4>(k, s, data),
            _ => group::<5>(k, s, data),
        }
        at += size;
    }
}

/// Runs `N` bands over `data` (stereo frames as `f64x2`), each frame through every band in order, with the
/// baseline kernels ([`fma::group`] is the FMA one).
#[inline(always)]
fn group<const N: usize>(k: &[Coeffs], s: &mut [[[f64; 2]; 2]], data: &mut [[f64; 2]]) {
    let k: [Coeffs; N] = std::array::from_fn(|i| k[i]);
    let mut st: [[[f64; 2]; 2]; N] = std::array::from_fn(|i| s[i]);
    for v in data.iter_mut() {
        let mut x = *v;
        for b in 0..N {
            x = k[b].tick2::<false>(x, &mut st[b]);
        }
        *v = x;
    }
    s[..N].copy_from_slice(&st);
}

/// The FMA group in explicit `f64x2` registers. Written with plain arithmetic, the compiler packs the two
/// state updates of a band into one 256-bit operation, which puts a lane shuffle into the recursion and
/// makes it slower than the baseline; the arithmetic is [`Coeffs::tick2`]'s with `FMA`, the same bits.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fma {
    use super::Coeffs;
    use std::arch::x86_64::{__m128d, _mm_fmadd_pd, _mm_loadu_pd, _mm_mul_pd, _mm_set1_pd, _mm_storeu_pd};

    #[inline(always)]
    fn load(v: &[f64; 2]) -> __m128d {
        // SAFETY: `v` is two readable `f64`s; the load has no alignment requirement.
        unsafe { _mm_loadu_pd(v.as_ptr()) }
    }

    #[inline(always)]
    fn store(v: &mut [f64; 2], x: __m128d) {
        // SAFETY: `v` is two writable `f64`s; the store has no alignment requirement.
        unsafe { _mm_storeu_pd(v.as_mut_ptr(), x) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn group<const N: usize>(k: &[Coeffs], s: &mut [[[f64; 2]; 2]], data: &mut [[f64; 2]]) {
        let b0: [__m128d; N] = std::array::from_fn(|i| _mm_set1_pd(k[i].b0));
        let b1: [__m128d; N] = std::array::from_fn(|i| _mm_set1_pd(k[i].b1));
        let b2: [__m128d; N] = std::array::from_fn(|i| _mm_set1_pd(k[i].b2));
        let na1: [__m128d; N] = std::array::from_fn(|i| _mm_set1_pd(-k[i].a1));
        let na2: [__m128d; N] = std::array::from_fn(|i| _mm_set1_pd(-k[i].a2));
        let mut s0: [__m128d; N] = std::array::from_fn(|i| load(&s[i][0]));
        let mut s1: [__m128d; N] = std::array::from_fn(|i| load(&s[i][1]));
        for v in data.iter_mut() {
            let mut x = load(v);
            for b in 0..N {
                let y = _mm_fmadd_pd(b0[b], x, s0[b]);
                s0[b] = _mm_fmadd_pd(na1[b], y, _mm_fmadd_pd(b1[b], x, s1[b]));
                s1[b] = _mm_fmadd_pd(na2[b], y, _mm_mul_pd(b2[b], x));
                x = y;
            }
            store(v, x);
        }
        for i in 0..N {
            store(&mut s[i][0], s0[i]);
            store(&mut s[i][1], s1[i]);
        }
    }
}
