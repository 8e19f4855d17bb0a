//! Levels: peak, RMS, clipped samples, the distribution of block levels and a spectrum, measured by a
//! [`Meter`], with the level pass in 256-bit registers where the CPU has them.

use crate::dsp::loudness::LoudnessReading;
use crate::node::AudioIn;
use serde::Serialize;

/// Lower edge of the block-RMS histogram, in dBFS; bins are 0.5 dB wide up to 0 dBFS and beyond.
pub(super) const RMS_FLOOR_DB: f32 = -120.0;
pub(crate) const RMS_BINS: usize = 2 * 140 + 1;
/// Samples kept for the spectrum (mono mix of the channels).
pub const SPECTRUM_SIZE: usize = 4096;

/// Level measurement of a signal: peak, RMS, clipped samples, the distribution of block levels, and the
/// latest [`SPECTRUM_SIZE`] samples for a spectrum.
#[derive(Clone)]
pub struct Meter {
    pub(crate) peak: f32,
    pub(crate) sum_sq: f64,
    pub(crate) samples: u64,
    pub(crate) clipped: u64,
    pub(crate) block_rms: Vec<u32>,
    pub(crate) ring: Vec<f32>,
    pub(crate) ring_pos: usize,
    pub(crate) ring_filled: usize,
    /// Whether the level pass runs in 256-bit registers (decided here, on the control side).
    wide: bool,
    /// Loudness, where the meter measures it (see [`crate::EngineOptions::loudness`]).
    pub(crate) loudness: Option<LoudnessReading>,
}

/// What both meters measure of one block.
pub(crate) struct BlockLevels {
    pub peak: f32,
    pub sum_sq: f64,
    /// Samples whose magnitude exceeds 1.0.
    pub clipped: u64,
}

/// A planar block's peak magnitude, sum of squares and clipped samples. `wide`: the meter's choice, made
/// when it was built, of the 256-bit version (see [`crate::dsp::fma_kernels`]). The two versions give the
/// same peak and clipped count; their sums of squares round differently (the 256-bit one fuses each
/// multiply-add), both well within what a level in dB can show.
pub(crate) fn block_levels(block: &AudioIn<'_>, wide: bool) -> BlockLevels {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is set only where `fma_kernels()` found AVX2 and FMA on this CPU.
        #[allow(unsafe_code)]
        return unsafe { block_levels_avx2(block) };
    }
    block_levels_plain(block)
}

/// Lanes of the plain level pass: `GROUPS` groups of `WIDTH`. Sample `i` of a channel goes to lane
/// `i % 32` (the remainder of a channel after its last full 32 to lanes 0, 1, ...).
const WIDTH: usize = 8;
const GROUPS: usize = 4;
type Lanes = [[f32; WIDTH]; GROUPS];

/// [`block_levels`] with 256-bit registers, written with intrinsics: 64 samples per step, into eight
/// sums of squares (a fused multiply-add each) and four maxima, so that neither the adds' nor the
/// maxima's latency bounds the loop, and the lanes reduced as trees. Two channels of 512 in about 48 ns,
/// of 64 in 12, where the plain version's lanes in these registers took 73 and 27 (CI VM).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
fn block_levels_avx2(block: &AudioIn<'_>) -> BlockLevels {
    use std::arch::x86_64::{
        __m256, _mm_add_pd, _mm_add_sd, _mm_cvtsd_f64, _mm_cvtss_f32, _mm_max_ps, _mm_max_ss, _mm_movehl_ps,
        _mm_shuffle_ps, _mm_unpackhi_pd, _mm256_add_pd, _mm256_add_ps, _mm256_and_ps, _mm256_castpd256_pd128,
        _mm256_castps256_ps128, _mm256_castsi256_ps, _mm256_cvtps_pd, _mm256_extractf128_pd, _mm256_extractf128_ps,
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_max_ps, _mm256_set1_epi32, _mm256_setzero_ps,
    };
    const SUMS: usize = 8;
    const MAXIMA: usize = 4;
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let mut p: [__m256; MAXIMA] = [_mm256_setzero_ps(); MAXIMA];
    let mut q: [__m256; SUMS] = [_mm256_setzero_ps(); SUMS];
    let (mut peak, mut sum_sq) = (0f32, 0f64);
    for c in 0..block.channels() {
        let x = block.channel(c);
        let mut steps = x.chunks_exact(WIDTH * SUMS);
        for xs in &mut steps {
            for k in 0..SUMS {
                // SAFETY: 8 f32 inside `xs`, which is 64 long.
                let v = unsafe { _mm256_loadu_ps(xs.as_ptr().add(k * WIDTH)) };
                // max(|v|, p): |v| where it is greater, else p (a NaN sample is ignored), as `max_abs`.
                p[k % MAXIMA] = _mm256_max_ps(_mm256_and_ps(v, magnitude), p[k % MAXIMA]);
                q[k] = _mm256_fmadd_ps(v, v, q[k]);
            }
        }
        let mut rest = steps.remainder().chunks_exact(WIDTH);
        for (k, xs) in (&mut rest).enumerate() {
            // SAFETY: 8 f32 inside `xs`.
            let v = unsafe { _mm256_loadu_ps(xs.as_ptr()) };
            p[k % MAXIMA] = _mm256_max_ps(_mm256_and_ps(v, magnitude), p[k % MAXIMA]);
            q[k] = _mm256_fmadd_ps(v, v, q[k]);
        }
        for &v in rest.remainder() {
            peak = crate::dsp::max_abs(peak, v);
            sum_sq += f64::from(v) * f64::from(v);
        }
    }
    // The reductions as trees in registers (a sum of sixteen lanes in order would be a chain of sixteen
    // dependent adds, longer than a short block's whole loop). The lanes hold magnitudes, never NaN.
    let m = _mm256_max_ps(_mm256_max_ps(p[0], p[1]), _mm256_max_ps(p[2], p[3]));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let lanes_peak = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
    if lanes_peak > peak {
        peak = lanes_peak;
    }
    let wide = |a: usize| {
        let v = _mm256_add_ps(q[a], q[a + 1]);
        _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)))
    };
    let s = _mm256_add_pd(_mm256_add_pd(wide(0), wide(2)), _mm256_add_pd(wide(4), wide(6)));
    let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
    sum_sq += _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    BlockLevels { peak, sum_sq, clipped: clipped(block, peak) }
}

/// [`block_levels`] in plain code. Each channel goes through in two passes of sixteen lanes (four
/// groups of four, which baseline x86-64 keeps in eight registers).
pub(super) fn block_levels_plain(block: &AudioIn<'_>) -> BlockLevels {
    const HALF: usize = WIDTH * GROUPS / 2;
    let (mut peak, mut sq) = ([[0f32; WIDTH]; GROUPS], [[0f32; WIDTH]; GROUPS]);
    for c in 0..block.channels() {
        let x = block.channel(c);
        for half in 0..2 {
            // Lane `HALF * half + 4 * g + j` of the 32 is (g, j) here.
            let (mut p, mut q) = ([[0f32; 4]; 4], [[0f32; 4]; 4]);
            for g in 0..4 {
                for j in 0..4 {
                    let lane = HALF * half + 4 * g + j;
                    (p[g][j], q[g][j]) = (peak[lane / WIDTH][lane % WIDTH], sq[lane / WIDTH][lane % WIDTH]);
                }
            }
            for xs in x.chunks_exact(WIDTH * GROUPS) {
                for (g, group) in xs[HALF * half..HALF * (half + 1)].chunks_exact(4).enumerate() {
                    for (j, &v) in group.iter().enumerate() {
                        p[g][j] = crate::dsp::max_abs(p[g][j], v);
                        q[g][j] += v * v;
                    }
                }
            }
            for g in 0..4 {
                for j in 0..4 {
                    let lane = HALF * half + 4 * g + j;
                    (peak[lane / WIDTH][lane % WIDTH], sq[lane / WIDTH][lane % WIDTH]) = (p[g][j], q[g][j]);
                }
            }
        }
        remainder(&mut peak, &mut sq, x.chunks_exact(WIDTH * GROUPS).remainder());
    }
    finish(&peak, &sq, block)
}

/// A channel's last samples (fewer than 32) into lanes 0, 1, ...
#[inline(always)]
fn remainder(peak: &mut Lanes, sq: &mut Lanes, rest: &[f32]) {
    for (j, &v) in rest.iter().enumerate() {
        let (k, j) = (j / WIDTH, j % WIDTH);
        peak[k][j] = crate::dsp::max_abs(peak[k][j], v);
        sq[k][j] += v * v;
    }
}

/// The plain version's lanes reduced in a fixed order, and the clipped samples counted: first the four
/// groups lane by lane, then the eight lanes as a tree.
#[inline(always)]
fn finish(peak: &Lanes, sq: &Lanes, block: &AudioIn<'_>) -> BlockLevels {
    // The lanes hold magnitudes, never NaN: a compare-and-select is their maximum, in any order.
    let mut p = peak[0];
    let mut q = sq[0].map(f64::from);
    for k in 1..GROUPS {
        for j in 0..WIDTH {
            p[j] = crate::dsp::max_abs(p[j], peak[k][j]);
            q[j] += f64::from(sq[k][j]);
        }
    }
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let peak = max(max(max(p[0], p[4]), max(p[1], p[5])), max(max(p[2], p[6]), max(p[3], p[7])));
    let sum_sq = ((q[0] + q[4]) + (q[1] + q[5])) + ((q[2] + q[6]) + (q[3] + q[7]));
    BlockLevels { peak, sum_sq, clipped: clipped(block, peak) }
}

/// The samples over full scale; only a block that peaks over it can hold any, so only then are they
/// counted.
#[inline(always)]
fn clipped(block: &AudioIn<'_>, peak: f32) -> u64 {
    if peak > 1.0 {
        (0..block.channels()).map(|c| block.channel(c).iter().filter(|v| v.abs() > 1.0).count() as u64).sum()
    } else {
        0
    }
}

/// The block-RMS histogram bin of a block with sum of squares `sum_sq` over `n` samples: its RMS in dBFS,
/// rounded to the nearest half dB, counted from [`RMS_FLOOR_DB`], clamped to the bins. That is the last
/// bin whose lower edge is at most the mean square. A guess from the mean square's exponent and mantissa
/// (a logarithm low by at most 0.52 bins) names that bin or the one before, and one comparison with the
/// next edge decides: a few nanoseconds, where a search of the edges took about 20 (nine dependent loads)
/// and a `log10` and a rounding about three times as long as that.
pub(crate) fn rms_bin(sum_sq: f64, n: u64) -> usize {
    let mean_sq = sum_sq / n as f64;
    let edges = rms_edges();
    // Below bin 1's edge, silence and NaN too: bin 0.
    if mean_sq.is_nan() || mean_sq < edges[1] {
        return 0;
    }
    // The bin is floor(20 log10(mean_sq) + 0.5 - 2 RMS_FLOOR_DB) = floor(20 log10(2) log2(mean_sq) + ...).
    // With mean_sq = m 2^e (1 <= m < 2), log2(mean_sq) = e + log2(m), and m - 1 is below log2(m) by at most
    // 0.0861: the guess is at most 0.52 bins low, and 0.01 lower still for rounding, so it is the bin or
    // the one before.
    let bits = mean_sq.to_bits();
    let e = ((bits >> 52) & 0x7ff) as f64 - 1023.0;
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let guess = 20.0 * std::f64::consts::LOG10_2 * (e + (m - 1.0)) + 0.5 - 2.0 * f64::from(RMS_FLOOR_DB) - 0.01;
    let guess = (guess.floor().max(0.0) as usize).min(RMS_BINS - 2);
    guess + usize::from(edges[guess + 1] <= mean_sq)
}

/// The mean square at which each block-RMS bin starts: bin `b` holds RMS from `RMS_FLOOR_DB + (b - 0.5) / 2`
/// dBFS. Computed once; meters ask for it when they are built, so the audio side never computes it.
pub(crate) fn rms_edges() -> &'static [f64; RMS_BINS] {
    static EDGES: std::sync::OnceLock<[f64; RMS_BINS]> = std::sync::OnceLock::new();
    EDGES.get_or_init(|| {
        std::array::from_fn(|b| {
            if b == 0 { 0.0 } else { 10f64.powf((f64::from(RMS_FLOOR_DB) + (b as f64 - 0.5) / 2.0) / 10.0) }
        })
    })
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    /// Allocates the meter's storage (control side).
    pub fn new() -> Self {
        rms_edges();
        Self {
            peak: 0.0,
            sum_sq: 0.0,
            samples: 0,
            clipped: 0,
            block_rms: vec![0; RMS_BINS],
            ring: vec![0.0; SPECTRUM_SIZE],
            ring_pos: 0,
            ring_filled: 0,
            wide: crate::dsp::fma_kernels(),
            loudness: None,
        }
    }

    /// Measures one planar block: `channels` planes `stride` apart, `frames` long. No allocation.
    pub fn feed(&mut self, data: &[f32], stride: usize, channels: usize, frames: usize) {
        if frames == 0 || channels == 0 {
            return;
        }
        let block = block_levels(&AudioIn::new(data, stride, channels, frames), self.wide);
        let n = (channels * frames) as u64;
        self.peak = self.peak.max(block.peak);
        self.sum_sq += block.sum_sq;
        self.samples += n;
        self.clipped += block.clipped;
        let bin = rms_bin(block.sum_sq, n);
        self.block_rms[bin] = self.block_rms[bin].saturating_add(1);
        let skip = frames.saturating_sub(SPECTRUM_SIZE);
        let scale = 1.0 / channels as f32;
        for i in skip..frames {
            let mut v = data[i];
            for c in 1..channels {
                v += data[c * stride + i];
            }
            self.ring[self.ring_pos] = v * scale;
            self.ring_pos = (self.ring_pos + 1) % SPECTRUM_SIZE;
        }
        self.ring_filled = (self.ring_filled + frames).min(SPECTRUM_SIZE);
    }

    /// A summary of what was measured (control side: allocates, computes the FFT).
    pub fn levels(&self, sample_rate: u32) -> Levels {
        let db = |x: f64| if x > 0.0 { 20.0 * x.log10() } else { f64::NEG_INFINITY };
        let rms = if self.samples == 0 { 0.0 } else { (self.sum_sq / self.samples as f64).sqrt() };
        let peak_db = db(f64::from(self.peak));
        let rms_db = db(rms);
        // Dynamic range: the spread between loud (95th percentile) and quiet (10th percentile) block levels,
        // among blocks above -70 dBFS (silence says nothing about a signal's dynamics).
        let audible_from = ((-70.0 - RMS_FLOOR_DB) * 2.0) as usize;
        let audible: u64 = self.block_rms[audible_from..].iter().map(|&c| u64::from(c)).sum();
        let percentile = |q: f64| {
            let rank = ((q * audible as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, &c) in self.block_rms.iter().enumerate().skip(audible_from) {
                seen += u64::from(c);
                if seen >= rank {
                    return f64::from(RMS_FLOOR_DB) + i as f64 / 2.0;
                }
            }
            0.0
        };
        let dynamic_range_db = if audible > 0 { percentile(0.95) - percentile(0.10) } else { 0.0 };
        Levels {
            peak_dbfs: finite_or_floor(peak_db),
            rms_dbfs: finite_or_floor(rms_db),
            crest_factor_db: if rms > 0.0 { peak_db - rms_db } else { 0.0 },
            dynamic_range_db,
            clipped_samples: self.clipped,
            samples: self.samples,
            spectrum: self.spectrum(sample_rate),
            loudness: self.loudness,
        }
    }

    /// Magnitude spectrum of the latest samples (Hann window), in third-octave bands.
    fn spectrum(&self, sample_rate: u32) -> Vec<Band> {
        if self.ring_filled < SPECTRUM_SIZE {
            return Vec::new();
        }
        let mut planner = realfft::RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(SPECTRUM_SIZE);
        let mut input = fft.make_input_vec();
        for (i, v) in input.iter_mut().enumerate() {
            let w = 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / SPECTRUM_SIZE as f32).cos();
            *v = self.ring[(self.ring_pos + i) % SPECTRUM_SIZE] * w;
        }
        let mut bins = fft.make_output_vec();
        if fft.process(&mut input, &mut bins).is_err() {
            return Vec::new();
        }
        let power: Vec<f64> = bins.iter().map(|c| f64::from(c.norm_sqr())).collect();
        third_octave_bands(&power, SPECTRUM_SIZE, sample_rate)
    }
}

/// Third-octave band levels (from 20 Hz up to 20 kHz or the Nyquist frequency) from the power of an FFT's
/// bins (`|X|^2`, `size / 2 + 1` of them) under a Hann window of `size` samples, in dB relative to a
/// full-scale sine.
pub(crate) fn third_octave_bands(power: &[f64], size: usize, sample_rate: u32) -> Vec<Band> {
    // A full-scale sine gives |X| = N/4 under a Hann window: normalize so it reads 0 dBFS.
    let norm = 4.0 / size as f64;
    let bin_hz = f64::from(sample_rate) / size as f64;
    let nyquist = f64::from(sample_rate) / 2.0;
    let mut bands = Vec::new();
    let mut k = -17i32; // 1000 Hz * 2^(-17/3) = 19.7 Hz
    loop {
        let center = 1000.0 * 2f64.powf(f64::from(k) / 3.0);
        let (lo, hi) = (center * 2f64.powf(-1.0 / 6.0), center * 2f64.powf(1.0 / 6.0));
        if hi > nyquist || center > 20500.0 {
            break;
        }
        let (a, b) = ((lo / bin_hz).ceil() as usize, ((hi / bin_hz).floor() as usize).min(power.len() - 1));
        // Band power: the sum of its bins' powers (or the nearest bin where the band is narrower).
        let p: f64 = if a <= b {
            power[a..=b].iter().sum()
        } else {
            power[((center / bin_hz).round() as usize).min(power.len() - 1)]
        };
        let db = 10.0 * (p * norm * norm / 1.5).max(1e-30).log10();
        bands.push(Band { center_hz: center, level_db: db.max(-200.0) });
        k += 1;
    }
    bands
}

fn finite_or_floor(db: f64) -> f64 {
    if db.is_finite() { db } else { -200.0 }
}

/// Levels of a metered signal.
#[derive(Debug, Clone, Serialize)]
pub struct Levels {
    /// Largest sample magnitude, dBFS (-200 for silence).
    pub peak_dbfs: f64,
    /// RMS over everything measured, dBFS.
    pub rms_dbfs: f64,
    /// Peak over RMS, dB.
    pub crest_factor_db: f64,
    /// Loud (95th percentile) minus quiet (10th percentile) block RMS, among blocks above -70 dBFS.
    pub dynamic_range_db: f64,
    /// Samples whose magnitude exceeded 1.0 (0 dBFS).
    pub clipped_samples: u64,
    /// Samples measured.
    pub samples: u64,
    /// Third-octave band levels of the latest 4096 frames (mono mix, Hann window). Empty until that many
    /// frames have been kept: the audio side keeps them only while someone asks (see
    /// [`crate::MetricsReader::report`] and [`crate::MetricsReader::keep_spectrum`]).
    pub spectrum: Vec<Band>,
    /// Loudness (BS.1770-4 / EBU R128), where the meter measures it (see [`crate::EngineOptions::loudness`]):
    /// `momentary_lufs`, `short_term_lufs`, `integrated_lufs`, `loudness_range_lu`, `true_peak_dbtp`, ...
    #[serde(flatten)]
    pub loudness: Option<LoudnessReading>,
}

/// One spectrum band.
#[derive(Debug, Clone, Serialize)]
pub struct Band {
    /// The band's center frequency.
    pub center_hz: f64,
    /// Band level, dB relative to a full-scale sine.
    pub level_db: f64,
}
