//! The monitor: per-node timing, graph load, levels and memory.
//!
//! The audio side only records, into [shared storage](shared) allocated on the control side: a timing
//! histogram per node and per graph, and a meter on the output and on nodes the application asks for.
//! Recording allocates nothing and takes no lock, and any thread may read the records while audio runs
//! ([`crate::control::MetricsReader`]). The control side gathers: the `publish_metrics` system copies what
//! was recorded into [`NodeTiming`](crate::control::NodeTiming) and
//! [`NodeMeter`](crate::control::NodeMeter) components and the
//! [`GraphMetrics`](crate::control::GraphMetrics) resource, and [`crate::Engine::metrics`] turns them
//! into a [`MetricsReport`] (snapshot API, `tracing` events, JSON).

pub mod shared;

use crate::node::AudioIn;
use serde::Serialize;

/// Sub-buckets per octave of the timing histogram (8: each bucket spans 1/8 octave, about 9%).
const PER_OCTAVE: u32 = 8;
/// The histogram covers 2^4 ns (16 ns) to 2^34 ns (17 s).
const MIN_OCTAVE: u32 = 4;
const OCTAVES: u32 = 30;
pub(crate) const BUCKETS: usize = (OCTAVES * PER_OCTAVE) as usize + 2;

/// Durations of repeated work: count, mean, maximum and a log-scale histogram for quantiles. The unit is
/// the recorder's: the engine records [`crate::clock`] ticks and converts when it reports; the `_ns` names
/// say what the values usually are.
#[derive(Clone)]
pub struct Timing {
    pub(crate) calls: u64,
    pub(crate) sum_ns: u64,
    pub(crate) max_ns: u64,
    pub(crate) buckets: [u32; BUCKETS],
}

impl Default for Timing {
    fn default() -> Self {
        Self { calls: 0, sum_ns: 0, max_ns: 0, buckets: [0; BUCKETS] }
    }
}

impl std::fmt::Debug for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timing")
            .field("calls", &self.calls)
            .field("mean_ns", &self.mean_ns())
            .field("p99_ns", &self.quantile_ns(0.99))
            .field("max_ns", &self.max_ns)
            .finish()
    }
}

pub(crate) fn bucket_of(ns: u64) -> usize {
    if ns < 1 << MIN_OCTAVE {
        return 0;
    }
    let octave = 63 - ns.leading_zeros();
    if octave >= MIN_OCTAVE + OCTAVES {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (octave - 3)) & 7) as u32;
    1 + ((octave - MIN_OCTAVE) * PER_OCTAVE + sub) as usize
}

/// The middle of a bucket, in ns.
fn bucket_value(b: usize) -> u64 {
    if b == 0 {
        return 1 << (MIN_OCTAVE - 1);
    }
    if b == BUCKETS - 1 {
        return 1 << (MIN_OCTAVE + OCTAVES);
    }
    let k = (b - 1) as u32;
    let (octave, sub) = (MIN_OCTAVE + k / PER_OCTAVE, u64::from(k % PER_OCTAVE));
    let lo = (8 + sub) << (octave - 3);
    let hi = (9 + sub) << (octave - 3);
    (lo + hi) / 2
}

impl Timing {
    /// Records one duration. Constant time, no allocation.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.calls += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
        let b = &mut self.buckets[bucket_of(ns)];
        *b = b.saturating_add(1);
    }

    pub fn calls(&self) -> u64 {
        self.calls
    }

    pub fn total_ns(&self) -> u64 {
        self.sum_ns
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    pub fn mean_ns(&self) -> f64 {
        if self.calls == 0 { 0.0 } else { self.sum_ns as f64 / self.calls as f64 }
    }

    /// The `q` quantile (0..=1), to within the histogram's 1/8-octave resolution (about ±5%), and never above
    /// the maximum seen.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.calls == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.calls as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &count) in self.buckets.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return bucket_value(b).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

/// Lower edge of the block-RMS histogram, in dBFS; bins are 0.5 dB wide up to 0 dBFS and beyond.
const RMS_FLOOR_DB: f32 = -120.0;
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
fn block_levels_plain(block: &AudioIn<'_>) -> BlockLevels {
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
        // A full-scale sine gives |X| = N/4 under a Hann window: normalize so it reads 0 dBFS.
        let norm = 4.0 / SPECTRUM_SIZE as f64;
        let bin_hz = f64::from(sample_rate) / SPECTRUM_SIZE as f64;
        let nyquist = f64::from(sample_rate) / 2.0;
        let mut bands = Vec::new();
        let mut k = -17i32; // 1000 Hz * 2^(-17/3) = 19.7 Hz
        loop {
            let center = 1000.0 * 2f64.powf(f64::from(k) / 3.0);
            let (lo, hi) = (center * 2f64.powf(-1.0 / 6.0), center * 2f64.powf(1.0 / 6.0));
            if hi > nyquist || center > 20500.0 {
                break;
            }
            let (a, b) = ((lo / bin_hz).ceil() as usize, ((hi / bin_hz).floor() as usize).min(bins.len() - 1));
            // Band power: the sum of its bins' powers (or the nearest bin where the band is narrower).
            let power: f64 = if a <= b {
                bins[a..=b].iter().map(|c| f64::from(c.norm_sqr())).sum()
            } else {
                f64::from(bins[((center / bin_hz).round() as usize).min(bins.len() - 1)].norm_sqr())
            };
            let db = 10.0 * (power * norm * norm / 1.5).max(1e-30).log10();
            bands.push(Band { center_hz: center, level_db: db.max(-200.0) });
            k += 1;
        }
        bands
    }
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
    pub samples: u64,
    /// Third-octave band levels of the latest 4096 frames (mono mix, Hann window). Empty until that many
    /// frames have been kept: the audio side keeps them only while someone asks (see
    /// [`crate::MetricsReader::report`] and [`crate::MetricsReader::keep_spectrum`]).
    pub spectrum: Vec<Band>,
}

/// One spectrum band.
#[derive(Debug, Clone, Serialize)]
pub struct Band {
    pub center_hz: f64,
    /// Band level, dB relative to a full-scale sine.
    pub level_db: f64,
}

/// Timing of one node, in a report.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub kind: String,
    pub calls: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Faults the node reported (plugins: traps, error returns, bad output, overruns).
    pub faults: u64,
    /// When the first faults happened: seconds from the start of the node's processing (at most 16).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fault_times_s: Vec<f64>,
    /// Blocks whose output was, wholly or in part, the node's bypass instead of the plugin's, and the frames
    /// that were.
    pub bypassed_blocks: u64,
    pub bypassed_frames: u64,
    /// Non-finite output samples of a plugin replaced with silence.
    pub replaced_samples: u64,
    /// Plugin calls that passed their deadline in wall time while the plugin had not used it (its thread
    /// was preempted): late blocks, not faults.
    pub preempted_calls: u64,
    /// A plugin's linear memory now, and its cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_cap_bytes: Option<usize>,
    /// Mean processing time over the mean block's real-time duration.
    pub budget_share: f64,
    /// Frames of latency the node adds.
    pub latency_frames: usize,
    /// Levels at the node's output, if it is metered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<Levels>,
    /// A plugin's named status numbers (native plugins that declare some).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<(String, f64)>,
}

/// Memory, where the platform and the application make it available.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    /// Resident set size of the process now (Linux).
    pub rss_bytes: Option<u64>,
    /// Peak resident set size of the process (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Heap bytes allocated since the engine was created, if the application installed
    /// [`crate::alloc::CountingAllocator`].
    pub heap_allocated_since_start_bytes: Option<u64>,
    /// Heap bytes live now, with the same condition.
    pub heap_live_bytes: Option<u64>,
}

impl MemoryReport {
    /// Reads the process's memory now. `baseline` is the counting allocator's total at engine start.
    pub fn now(baseline: Option<u64>) -> Self {
        let (rss, peak) = proc_status();
        let counted = crate::alloc::CountingAllocator::stats();
        Self {
            rss_bytes: rss,
            peak_rss_bytes: peak,
            heap_allocated_since_start_bytes: counted.zip(baseline).map(|(s, b)| s.allocated_total.saturating_sub(b)),
            heap_live_bytes: counted.map(|s| s.live),
        }
    }
}

/// VmRSS and VmHWM from /proc/self/status, in bytes.
fn proc_status() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return (None, None) };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).map(|kb| kb * 1024))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Everything the monitor knows, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// `serial` or `parallel`.
    pub executor: &'static str,
    pub threads: usize,
    pub sample_rate: u32,
    pub channels: usize,
    pub blocks: u64,
    pub frames: u64,
    /// Processing time over the real-time duration of the audio processed.
    pub dsp_load: f64,
    /// Blocks whose processing took longer than their duration (the offline equivalent of an xrun).
    pub blocks_over_budget: u64,
    pub block_mean_ns: f64,
    pub block_p99_ns: u64,
    pub block_max_ns: u64,
    /// Nodes in processing order.
    pub nodes: Vec<NodeReport>,
    /// Levels at the graph's output.
    pub output: Levels,
    pub memory: MemoryReport,
    /// Non-finite input samples replaced by silence.
    pub nonfinite_input_samples: u64,
    /// Node messages lost because the queue to the control side was full.
    pub dropped_messages: u64,
}

impl NodeReport {
    /// Whether a fault changed the node's output: it faulted, was bypassed, or had samples replaced.
    pub fn faulted(&self) -> bool {
        self.faults > 0 || self.bypassed_frames > 0 || self.replaced_samples > 0
    }
}

impl MetricsReport {
    /// The nodes whose output a fault changed (see [`NodeReport::faulted`]).
    pub fn faulted_nodes(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(|n| n.faulted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_quantiles_are_within_the_bucket_resolution() {
        let mut t = Timing::default();
        for ns in 1..=10_000u64 {
            t.record(ns * 100);
        }
        assert_eq!(t.calls(), 10_000);
        assert_eq!(t.max_ns(), 1_000_000);
        assert!((t.mean_ns() - 500_050.0).abs() < 1e-6);
        for q in [0.5, 0.9, 0.99] {
            let exact = q * 1_000_000.0;
            let got = t.quantile_ns(q) as f64;
            assert!((got - exact).abs() / exact < 0.07, "q{q}: {got} vs {exact}");
        }
    }

    #[test]
    fn meter_measures_a_sine_analytically() {
        // A full-scale 1 kHz sine at 48 kHz: peak 0 dBFS, RMS -3.01 dBFS, crest 3.01 dB, nothing clipped,
        // and its third-octave band near 0 dB while distant bands are far below.
        let sr = 48000;
        let mut m = Meter::new();
        let x: Vec<f32> =
            (0..48000).map(|n| (std::f64::consts::TAU * 1000.0 * n as f64 / 48000.0).sin() as f32).collect();
        for block in x.chunks(512) {
            m.feed(block, block.len(), 1, block.len());
        }
        let l = m.levels(sr);
        assert!(l.peak_dbfs.abs() < 0.01, "{}", l.peak_dbfs);
        assert!((l.rms_dbfs + 3.0103).abs() < 0.01, "{}", l.rms_dbfs);
        assert!((l.crest_factor_db - 3.0103).abs() < 0.02);
        assert_eq!(l.clipped_samples, 0);
        assert!(l.dynamic_range_db.abs() < 0.6, "a steady sine has no dynamics: {}", l.dynamic_range_db);
        let band = |hz: f64| {
            l.spectrum
                .iter()
                .min_by(|a, b| (a.center_hz - hz).abs().total_cmp(&(b.center_hz - hz).abs()))
                .map(|b| b.level_db)
        };
        let at_1k = band(1000.0).expect("1 kHz band");
        assert!(at_1k.abs() < 0.5, "1 kHz band at {at_1k} dB");
        assert!(band(100.0).expect("100 Hz band") < -60.0);
        assert!(band(10000.0).expect("10 kHz band") < -60.0);
    }

    #[test]
    fn rms_bins_are_the_nearest_half_db() {
        // Levels from -130 to +15 dBFS in steps that never land on an edge, and the clamped ends.
        for step in 0..=2900 {
            let db = -130.0 + f64::from(step) * 0.05 + 0.013;
            let n = 1024;
            let sum_sq = 10f64.powf(db / 10.0) * n as f64;
            let want = ((db - f64::from(RMS_FLOOR_DB)) * 2.0).round().clamp(0.0, (RMS_BINS - 1) as f64) as usize;
            assert_eq!(rms_bin(sum_sq, n), want, "{db} dBFS");
        }
        assert_eq!(rms_bin(0.0, 64), 0);
        assert_eq!(rms_bin(f64::NAN, 64), 0);
        assert_eq!(rms_bin(f64::INFINITY, 64), RMS_BINS - 1);
        assert_eq!(rms_bin(-1.0, 1), 0);
        assert_eq!(rms_bin(f64::MIN_POSITIVE / 4.0, 1), 0);
        assert_eq!(rms_bin(f64::MAX, 1), RMS_BINS - 1);
    }

    #[test]
    fn rms_bins_agree_with_a_scan_of_the_edges_on_and_beside_every_edge() {
        let edges = rms_edges();
        // The last bin whose edge is at most the mean square, found by looking at every edge.
        let scan = |x: f64| edges.iter().rposition(|&e| e <= x).unwrap_or(0);
        let mut checked = 0;
        for &edge in &edges[1..] {
            let (below, above) = (f64::from_bits(edge.to_bits() - 1), f64::from_bits(edge.to_bits() + 1));
            for x in [below, edge, above, edge * 1.0001, edge * 1.02, edge * 1.05] {
                assert_eq!(rms_bin(x, 1), scan(x), "mean square {x:e}");
                checked += 1;
            }
        }
        // And across the mantissa's range at many exponents (where the guess is furthest off).
        for e in -45..8 {
            for k in 0..64 {
                let x = (1.0 + f64::from(k) / 64.0) * 2f64.powi(e);
                assert_eq!(rms_bin(x, 1), scan(x), "mean square {x:e}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6 * (RMS_BINS - 1) + 53 * 64);
    }

    #[test]
    fn block_levels_match_a_plain_double_precision_loop() {
        // Blocks peaking at 0.9 (none clipped) and at 1.2 (some clipped).
        let mut clipping_blocks = 0;
        for (channels, frames, amplitude) in
            [(1, 1, 0.9), (1, 15, 1.2), (2, 512, 0.9), (3, 37, 1.2), (2, 4099, 1.2), (1, 127, 0.9), (2, 71, 1.2)]
        {
            let stride = frames + 3;
            let data: Vec<f32> =
                (0..channels * stride).map(|i| (((i * 7919) % 2001) as f32 / 1000.0 - 1.0) * amplitude).collect();
            let BlockLevels { peak, sum_sq: sq, clipped } =
                block_levels(&AudioIn::new(&data, stride, channels, frames), crate::dsp::fma_kernels());
            // Both versions give the same peak and count, and sums of squares that differ in rounding only.
            let plain = block_levels_plain(&AudioIn::new(&data, stride, channels, frames));
            assert_eq!((peak.to_bits(), clipped), (plain.peak.to_bits(), plain.clipped));
            assert!((sq - plain.sum_sq).abs() <= 1e-6 * sq, "{sq} vs {}", plain.sum_sq);
            let samples = || (0..channels).flat_map(|c| &data[c * stride..c * stride + frames]);
            let want_peak = samples().fold(0.0f32, |p, v| p.max(v.abs()));
            let want_sq: f64 = samples().map(|&v| f64::from(v) * f64::from(v)).sum();
            let want_clipped = samples().filter(|v| v.abs() > 1.0).count() as u64;
            assert_eq!(peak, want_peak, "{channels} channels, {frames} frames");
            assert!((sq - want_sq).abs() <= 1e-5 * want_sq, "{channels} channels, {frames} frames: {sq} vs {want_sq}");
            assert_eq!(clipped, want_clipped, "{channels} channels, {frames} frames");
            clipping_blocks += usize::from(clipped > 0);
        }
        assert_eq!(clipping_blocks, 4);
    }

    #[test]
    fn the_shared_meter_records_what_the_plain_meter_does() {
        // Blocks of awkward sizes (odd ones shift the ring's position to odd samples; 5000 frames overfill it),
        // one to three channels and ten, planes with a gap between them, and some clipped samples.
        for channels in [1, 2, 3, 10] {
            let (plain, shared) = (&mut Meter::new(), shared::SharedMeter::new());
            let mut tail = shared::SpectrumTail::new();
            let mut t = 0usize;
            for (request, frames) in [1, 3, 37, 512, 255, 5000, 2, 4097, 64, 4095, 1].into_iter().enumerate() {
                let stride = frames + 5;
                let data: Vec<f32> = (0..channels * stride)
                    .map(|_| {
                        t += 1;
                        ((t * 48271) % 3001) as f32 / 1400.0 - 1.07
                    })
                    .collect();
                plain.feed(&data, stride, channels, frames);
                // Every block comes with a new request: the meter publishes once its tail is full.
                let spectrum = shared::Spectrum { keep: true, request: request as u64 + 1 };
                shared.feed(&AudioIn::new(&data, stride, channels, frames), &mut tail, spectrum);
                let got = shared.snapshot();
                assert_eq!(got.peak, plain.peak);
                assert_eq!(got.sum_sq, plain.sum_sq);
                assert_eq!((got.samples, got.clipped), (plain.samples, plain.clipped));
                assert_eq!(got.block_rms, plain.block_rms);
                assert_eq!(got.ring_filled, if plain.ring_filled == SPECTRUM_SIZE { SPECTRUM_SIZE } else { 0 });
                if got.ring_filled > 0 {
                    // The published window, oldest first, is the plain meter's ring read from its position.
                    let want = plain.ring[plain.ring_pos..].iter().chain(&plain.ring[..plain.ring_pos]);
                    assert_eq!(got.ring_pos, 0);
                    assert!(got.ring.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "{channels} channels");
                }
            }
            assert!(plain.clipped > 0);
        }
    }

    #[test]
    fn a_meter_publishes_its_latest_window_once_per_request_and_drops_it_when_unwatched() {
        let (meter, mut tail) = (shared::SharedMeter::new(), shared::SpectrumTail::new());
        let mut t = 0u32;
        let mut block = || -> Vec<f32> {
            (0..2 * 512)
                .map(|_| {
                    t += 1;
                    t as f32
                })
                .collect()
        };
        // Samples count up, so each window differs from the one before; `fed` is the mono mix of the
        // blocks fed so far, worked out here.
        let feed = |tail: &mut shared::SpectrumTail, data: &[f32], keep: bool, request: u64| {
            meter.feed(&AudioIn::new(data, 512, 2, 512), tail, shared::Spectrum { keep, request })
        };
        let window = || meter.snapshot().ring;
        let mut fed = Vec::new();
        // Kept but nobody asked: nothing is published, even once the tail is full.
        for _ in 0..9 {
            let b = block();
            fed.extend((0..512).map(|i| (b[i] + b[512 + i]) * 0.5));
            feed(&mut tail, &b, true, 0);
        }
        assert_eq!(meter.snapshot().ring_filled, 0);
        // Asked (request 1): published after the next block, the latest 4096 mono samples in order.
        let b = block();
        fed.extend((0..512).map(|i| (b[i] + b[512 + i]) * 0.5));
        feed(&mut tail, &b, true, 1);
        assert_eq!(meter.snapshot().ring_filled, SPECTRUM_SIZE);
        assert_eq!(window(), fed[fed.len() - SPECTRUM_SIZE..]);
        // The same request again: the window stays as published.
        let published = window();
        feed(&mut tail, &block(), true, 1);
        assert_eq!(window(), published);
        // An offline caller publishes at the end whatever the requests.
        meter.publish(&tail);
        assert_ne!(window(), published);
        // No longer watched: the tail and the published window are dropped, and a new request after
        // watching again waits for a whole window.
        feed(&mut tail, &block(), false, 1);
        assert_eq!(meter.snapshot().ring_filled, 0);
        feed(&mut tail, &block(), true, 2);
        assert_eq!(meter.snapshot().ring_filled, 0);
        meter.publish(&tail);
        assert_eq!(meter.snapshot().ring_filled, 0);
    }

    #[test]
    fn meter_counts_clipping_and_dynamics() {
        let mut m = Meter::new();
        let loud = vec![1.5f32; 512];
        let quiet = vec![0.01f32; 512];
        for i in 0..100 {
            let b = if i % 2 == 0 { &loud } else { &quiet };
            m.feed(b, 512, 1, 512);
        }
        let l = m.levels(48000);
        assert_eq!(l.clipped_samples, 50 * 512);
        // Blocks at +3.5 dBFS and -40 dBFS: 43.5 dB apart.
        assert!((l.dynamic_range_db - 43.5).abs() < 0.6, "{}", l.dynamic_range_db);
    }
}
