//! A bank of biquad chains run side by side, four lanes to a 256-bit register: one chain per lane, each
//! with its own coefficients, all in `f64`. A crossover's bands are such a bank (band `k` of channel `c`
//! is lane `k * channels + c`, each band's whole path of filters as its chain), so one pass over a block
//! filters four of them at once where a cascade filters two.

use super::biquad::Coeffs;
use super::denormal::{FLUSH_PERIOD, flush_state};
use super::mac;
use crate::node::AudioOut;

/// The most stages run together in one pass over a block.
const MAX_GROUP: usize = 6;

/// Calls `f::<N>(args)` for `N = n` (`by_stages!(n, [f], args)`) (0 to [`MAX_GROUP`], more taken as [`MAX_GROUP`]): the kernels are
/// generic over the number of stages, so that their state stays in registers.
macro_rules! by_stages {
    ($n:expr, [$($f:tt)+], $($arg:expr),*) => {
        match $n {
            0 => $($f)+::<0>($($arg),*),
            1 => $($f)+::<1>($($arg),*),
            2 => $($f)+::<2>($($arg),*),
            3 => $($f)+::<3>($($arg),*),
            4 => $($f)+::<4>($($arg),*),
            5 => $($f)+::<5>($($arg),*),
            _ => $($f)+::<6>($($arg),*),
        }
    };
}

/// Four lanes' coefficients for one stage: `[b0, b1, b2, -a1, -a2]`, each per lane.
type Stage4 = [[f64; 4]; 5];
/// Four lanes' state for one stage: the two TDF-II registers, each per lane.
type State4 = [[f64; 4]; 2];

/// Biquad chains in lanes of four (see the module).
#[derive(Debug, Clone)]
pub struct LaneBank {
    lanes: usize,
    stages: usize,
    /// `coeffs[g * stages + s]`: stage `s` of lanes `4g..4g + 4`.
    coeffs: Vec<Stage4>,
    state: Vec<State4>,
    /// One group's frames while it is filtered.
    data: Vec<[f64; 4]>,
    frames: u64,
    fma: bool,
}

impl LaneBank {
    /// One chain per lane, applied in order (shorter chains are padded with the identity filter).
    pub fn new(chains: &[Vec<Coeffs>]) -> Self {
        let lanes = chains.len();
        let stages = chains.iter().map(Vec::len).max().unwrap_or(0);
        let groups = lanes.div_ceil(4);
        let mut coeffs = vec![[[0.0; 4]; 5]; groups * stages];
        for g in 0..groups {
            for s in 0..stages {
                for i in 0..4 {
                    let k = chains.get(4 * g + i).and_then(|c| c.get(s)).copied().unwrap_or(Coeffs::IDENTITY);
                    let at = &mut coeffs[g * stages + s];
                    at[0][i] = k.b0;
                    at[1][i] = k.b1;
                    at[2][i] = k.b2;
                    at[3][i] = -k.a1;
                    at[4][i] = -k.a2;
                }
            }
        }
        Self {
            lanes,
            stages,
            state: vec![[[0.0; 4]; 2]; coeffs.len()],
            coeffs,
            data: Vec::new(),
            frames: 0,
            fma: super::fma_kernels(),
        }
    }

    /// Runs the baseline kernels even where the CPU has FMA (for tests that compare both).
    #[doc(hidden)]
    pub fn plain_arithmetic(mut self) -> Self {
        self.fma = false;
        self
    }

    /// Allocates for blocks of up to `max_block` frames.
    pub fn prepare(&mut self, max_block: usize) {
        self.data = vec![[0.0; 4]; max_block];
    }

    /// Clears the filter state.
    pub fn reset(&mut self) {
        self.state.fill([[0.0; 4]; 2]);
        self.frames = 0;
    }

    /// Filters a block: lane `l` reads channel `l % channels` of `input` (planar, `input.len() /
    /// channels` frames a channel) and writes channel `l` of `output`, every frame of it.
    ///
    /// # Panics
    /// If `output` has fewer channels than the bank has lanes, or `input` fewer frames than `output`.
    pub fn process(&mut self, input: &[f32], channels: usize, output: &mut AudioOut<'_>) {
        let n = output.frames();
        let stride = input.len() / channels.max(1);
        assert!(output.channels() >= self.lanes && stride >= n, "a bank of {} lanes", self.lanes);
        let lane_in = |l: usize, at: usize, len: usize| {
            let c = l % channels;
            &input[c * stride + at..c * stride + at + len]
        };
        let mut at = 0;
        while at < n {
            let to_flush = (FLUSH_PERIOD - self.frames % FLUSH_PERIOD) as usize;
            let chunk = (n - at).min(to_flush);
            for g in 0..self.lanes.div_ceil(4) {
                if self.stages <= MAX_GROUP && 4 * g + 4 <= self.lanes {
                    // Four whole lanes, every stage in one pass: straight from the input to the output.
                    let ins: [&[f32]; 4] = std::array::from_fn(|i| lane_in(4 * g + i, at, chunk));
                    let mut outs = output.channel_array_mut::<4>(4 * g);
                    let outs: [&mut [f32]; 4] = outs.each_mut().map(|o| &mut o[at..at + chunk]);
                    self.run_io(g, ins, outs);
                    continue;
                }
                let data = &mut self.data[..chunk];
                for i in 0..4 {
                    let l = 4 * g + i;
                    if l < self.lanes {
                        for (v, x) in data.iter_mut().zip(lane_in(l, at, chunk)) {
                            v[i] = f64::from(*x);
                        }
                    } else {
                        data.iter_mut().for_each(|v| v[i] = 0.0);
                    }
                }
                self.run(g, chunk);
                let data = &self.data[..chunk];
                for i in 0..4 {
                    let l = 4 * g + i;
                    if l < self.lanes {
                        for (v, y) in data.iter().zip(&mut output.channel_mut(l)[at..at + chunk]) {
                            *y = v[i] as f32;
                        }
                    }
                }
            }
            self.frames += chunk as u64;
            at += chunk;
            if self.frames.is_multiple_of(FLUSH_PERIOD) {
                self.flush(1e-30);
            }
        }
        // NaN or infinity from the input never outlives the block it came in.
        self.flush(0.0);
    }

    /// Runs every stage (at most [`MAX_GROUP`]) of group `g` from `ins` to `outs`, frame by frame.
    fn run_io(&mut self, g: usize, ins: [&[f32]; 4], outs: [&mut [f32]; 4]) {
        let stages = self.stages;
        let k = &self.coeffs[g * stages..(g + 1) * stages];
        let st = &mut self.state[g * stages..(g + 1) * stages];
        #[cfg(target_arch = "x86_64")]
        if self.fma {
            // SAFETY: `fma` is set only where `fma_kernels()` found AVX2 and FMA on this CPU.
            #[allow(unsafe_code)]
            unsafe {
                by_stages!(stages, [fma::group_io], k, st, ins, outs)
            };
            return;
        }
        by_stages!(stages, [group_io], k, st, ins, outs)
    }

    /// Clears state below `tiny` in magnitude (0: only non-finite state).
    fn flush(&mut self, tiny: f64) {
        flush_state(self.state.iter_mut().flatten().flatten(), tiny);
    }

    /// Runs every stage of group `g` over the first `n` frames of `data`, a few stages a pass.
    fn run(&mut self, g: usize, n: usize) {
        let stages = self.stages;
        let mut s = 0;
        while s < stages {
            let size = (stages - s).min(MAX_GROUP);
            let k = &self.coeffs[g * stages + s..g * stages + s + size];
            let st = &mut self.state[g * stages + s..g * stages + s + size];
            let data = &mut self.data[..n];
            #[cfg(target_arch = "x86_64")]
            if self.fma {
                // SAFETY: `fma` is set only where `fma_kernels()` found AVX2 and FMA on this CPU.
                #[allow(unsafe_code)]
                unsafe {
                    by_stages!(size, [fma::group], k, st, data)
                };
                s += size;
                continue;
            }
            by_stages!(size, [group], k, st, data);
            s += size;
        }
    }
}

/// One stage's TDF-II step on four lanes: [`Coeffs::tick`]'s arithmetic, lane by lane.
#[inline(always)]
fn step(k: &Stage4, s: &mut State4, x: [f64; 4]) -> [f64; 4] {
    let [b0, b1, b2, na1, na2] = k;
    let [s0, s1] = s;
    std::array::from_fn(|i| {
        let y = mac::<false>(b0[i], x[i], s0[i]);
        s0[i] = mac::<false>(na1[i], y, mac::<false>(b1[i], x[i], s1[i]));
        s1[i] = mac::<false>(na2[i], y, b2[i] * x[i]);
        y
    })
}

/// `N` stages from `ins` to `outs`, each frame through every stage in order: [`group`]'s arithmetic.
#[inline(always)]
fn group_io<const N: usize>(k: &[Stage4], s: &mut [State4], ins: [&[f32]; 4], outs: [&mut [f32]; 4]) {
    let k: [Stage4; N] = std::array::from_fn(|i| k[i]);
    let mut st: [State4; N] = std::array::from_fn(|i| s[i]);
    let [o0, o1, o2, o3] = outs;
    for (n, (((y0, y1), y2), y3)) in o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3.iter_mut()).enumerate()
    {
        let mut x: [f64; 4] = std::array::from_fn(|i| f64::from(ins[i][n]));
        for b in 0..N {
            x = step(&k[b], &mut st[b], x);
        }
        (*y0, *y1, *y2, *y3) = (x[0] as f32, x[1] as f32, x[2] as f32, x[3] as f32);
    }
    s[..N].copy_from_slice(&st);
}

/// `N` stages over `data`, each frame through every stage in order: [`Coeffs::tick`]'s arithmetic, lane by
/// lane.
#[inline(always)]
fn group<const N: usize>(k: &[Stage4], s: &mut [State4], data: &mut [[f64; 4]]) {
    let k: [Stage4; N] = std::array::from_fn(|i| k[i]);
    let mut st: [State4; N] = std::array::from_fn(|i| s[i]);
    for v in data.iter_mut() {
        let mut x = *v;
        for b in 0..N {
            x = step(&k[b], &mut st[b], x);
        }
        *v = x;
    }
    s[..N].copy_from_slice(&st);
}

/// The FMA kernel in explicit `f64x4` registers: the same operations as [`group`], each multiply and the
/// add after it fused.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fma {
    use super::{Stage4, State4};
    use std::arch::x86_64::{
        __m256d, _mm_set_ps, _mm_storeu_ps, _mm256_cvtpd_ps, _mm256_cvtps_pd, _mm256_fmadd_pd, _mm256_loadu_pd,
        _mm256_mul_pd, _mm256_storeu_pd,
    };

    #[inline(always)]
    fn load(v: &[f64; 4]) -> __m256d {
        // SAFETY: `v` is four readable `f64`s; the load has no alignment requirement.
        unsafe { _mm256_loadu_pd(v.as_ptr()) }
    }

    #[inline(always)]
    fn store(v: &mut [f64; 4], x: __m256d) {
        // SAFETY: `v` is four writable `f64`s; the store has no alignment requirement.
        unsafe { _mm256_storeu_pd(v.as_mut_ptr(), x) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn group<const N: usize>(k: &[Stage4], s: &mut [State4], data: &mut [[f64; 4]]) {
        let c: [[__m256d; 5]; N] = std::array::from_fn(|i| std::array::from_fn(|j| load(&k[i][j])));
        let mut s0: [__m256d; N] = std::array::from_fn(|i| load(&s[i][0]));
        let mut s1: [__m256d; N] = std::array::from_fn(|i| load(&s[i][1]));
        for v in data.iter_mut() {
            let mut x = load(v);
            for b in 0..N {
                let [b0, b1, b2, na1, na2] = c[b];
                let y = _mm256_fmadd_pd(b0, x, s0[b]);
                s0[b] = _mm256_fmadd_pd(na1, y, _mm256_fmadd_pd(b1, x, s1[b]));
                s1[b] = _mm256_fmadd_pd(na2, y, _mm256_mul_pd(b2, x));
                x = y;
            }
            store(v, x);
        }
        for i in 0..N {
            store(&mut s[i][0], s0[i]);
            store(&mut s[i][1], s1[i]);
        }
    }

    /// [`group`] from four `f32` inputs to four `f32` outputs, converting in registers.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn group_io<const N: usize>(k: &[Stage4], s: &mut [State4], ins: [&[f32]; 4], outs: [&mut [f32]; 4]) {
        let c: [[__m256d; 5]; N] = std::array::from_fn(|i| std::array::from_fn(|j| load(&k[i][j])));
        let mut s0: [__m256d; N] = std::array::from_fn(|i| load(&s[i][0]));
        let mut s1: [__m256d; N] = std::array::from_fn(|i| load(&s[i][1]));
        let [o0, o1, o2, o3] = outs;
        let mut y4 = [0.0f32; 4];
        for (n, (((y0, y1), y2), y3)) in
            o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3.iter_mut()).enumerate()
        {
            let mut x = _mm256_cvtps_pd(_mm_set_ps(ins[3][n], ins[2][n], ins[1][n], ins[0][n]));
            for b in 0..N {
                let [b0, b1, b2, na1, na2] = c[b];
                let y = _mm256_fmadd_pd(b0, x, s0[b]);
                s0[b] = _mm256_fmadd_pd(na1, y, _mm256_fmadd_pd(b1, x, s1[b]));
                s1[b] = _mm256_fmadd_pd(na2, y, _mm256_mul_pd(b2, x));
                x = y;
            }
            // SAFETY: `y4` is four writable `f32`s; the store has no alignment requirement.
            unsafe { _mm_storeu_ps(y4.as_mut_ptr(), _mm256_cvtpd_ps(x)) };
            (*y0, *y1, *y2, *y3) = (y4[0], y4[1], y4[2], y4[3]);
        }
        for i in 0..N {
            store(&mut s[i][0], s0[i]);
            store(&mut s[i][1], s1[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::biquad::BandKind;

    #[test]
    fn each_lane_is_its_own_chain_whatever_the_kernel_and_block() {
        let sr = 48000.0;
        // Six lanes over two input channels (lane l reads channel l % 2): chains of 1 to 7 stages (every
        // group through the buffer), and of 1 to 4 (the first group straight through, the second, of two
        // lanes, through the buffer).
        for longest in [7, 4] {
            let chains: Vec<Vec<Coeffs>> = (0..6)
                .map(|l| {
                    (0..1 + (l + 1) % longest)
                        .map(|s| Coeffs::cookbook(BandKind::Peak, 150.0 * (l + s + 1) as f64, 3.0, 1.0, sr))
                        .collect()
                })
                .collect();
            let len = 1000;
            let x: Vec<f32> = (0..2 * len).map(|n| ((n * 7) % 17) as f32 / 17.0 - 0.5).collect();
            for bank in [LaneBank::new(&chains), LaneBank::new(&chains).plain_arithmetic()] {
                let mut bank = bank;
                bank.prepare(256);
                let mut y = vec![0.0f32; 6 * len];
                {
                    let mut out = AudioOut::new(&mut y, len, 6, len);
                    let mut at = 0;
                    for block in [256, 100, 256, 256, 132] {
                        // Each block's input, planar: two channels of `block` frames.
                        let input: Vec<f32> =
                            (0..2).flat_map(|c| x[c * len + at..c * len + at + block].to_vec()).collect();
                        bank.process(&input, 2, &mut out.slice_mut(at, block));
                        at += block;
                    }
                }
                for (l, chain) in chains.iter().enumerate() {
                    let mut state = vec![[0.0f64; 2]; chain.len()];
                    for n in 0..len {
                        let mut v = f64::from(x[(l % 2) * len + n]);
                        for (k, s) in chain.iter().zip(&mut state) {
                            v = k.tick(v, s);
                        }
                        let got = f64::from(y[l * len + n]);
                        assert!((got - v).abs() < 1e-6, "lane {l}, frame {n}: {got} against {v}");
                    }
                }
            }
        }
    }
}
