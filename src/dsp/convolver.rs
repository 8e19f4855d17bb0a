//! Convolution with long impulse responses: non-uniformly partitioned FFT convolution in `f64`.
//!
//! # The scheme
//! An impulse response (IR) is cut into consecutive stretches, each convolved by the cheapest means that can
//! deliver its part of the output on time:
//!
//! - **a direct head** (`latency: Zero`): the first [`TICK`] taps, convolved sample by sample in the time
//!   domain, so the output has no delay;
//! - **levels of FFT partitions**: level `i` cuts its stretch into partitions of `n` taps (64, 512, 4096,
//!   then [`MAX_PARTITION`]: each level eight times the last, opened where the IR has two of its partitions
//!   left, else the level before takes the rest) and convolves them by uniformly partitioned overlap-save
//!   (a frequency-domain delay line of input spectra, multiplied by each partition's spectrum and summed).
//!   A level of partitions of `n` taps starts at tap `n` or later, so the output block it owes at frame
//!   `j·n` depends only on input before `j·n`: it is computed at that frame from complete blocks, and adds
//!   no delay.
//!
//! `latency: Block` delays the IR by [`BLOCK_LATENCY`] frames, which the engine compensates: no direct head
//! and no small levels, at a lower cost per frame.
//!
//! # Bounded work per block
//! A level's output block `j` is `IFFT(Σₖ Xⱼ₋₁₋ₖ·Hₖ)`: only the `k = 0` term needs the input block that has
//! just ended. The products of the older partitions (`k ≥ 1`) are summed during the block before, a slice
//! at every [`TICK`] frames; at a level's boundary only its FFTs and one partition's products remain.
//!
//! Levels of 16384 frames or more are **spread**: they start at tap `2n`, so their output block `j` is
//! `IFFT(Σₖ Xⱼ₋₂₋ₖ·Hₖ)` and can be computed whole during block `j - 1`: the forward FFT of one input per
//! tick, then the products, then the inverse FFT of one output per tick. No tick does more than one FFT of
//! such a level, so a 64-frame callback never carries a 65536-point FFT for each channel at once.
//!
//! # Same bits whatever the block size
//! All work is tied to positions in the stream (multiples of [`TICK`] frames), never to the calls that
//! deliver it, and every sum runs in a fixed order: the output does not depend on how the signal is cut
//! into blocks. Arithmetic is `f64` throughout (input, spectra, sums); only the output is rounded to `f32`.
//!
//! # Real time
//! Everything is allocated by [`Convolver::new`] (control side); [`Convolver::process`] allocates nothing.
//! Non-finite input samples are taken as 0, so one cannot poison the delay lines for the IR's length.

use crate::node::AudioOut;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Frames of the direct head, of the smallest partition, and between two slices of work.
pub const TICK: usize = 64;
/// Frames by which `latency: Block` delays the output (and the size of its first partition).
pub const BLOCK_LATENCY: usize = 1024;
/// The largest partition.
pub const MAX_PARTITION: usize = 32768;
/// Bins of the sums kept in cache while the partitions' products are added to them.
const CHUNK: usize = 256;
/// Levels of partitions this long or longer are spread (see the module documentation).
const SPREAD: usize = 16384;
/// Each level's partitions are this many times longer than the level before.
const GROWTH: usize = 8;

/// Where the convolver's output stands against its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Latency {
    /// No delay: the IR's first taps are convolved directly.
    Zero,
    /// A delay of [`BLOCK_LATENCY`] frames, reported and compensated, for less work per frame.
    Block,
}

/// One IR between an input channel and an output channel.
#[derive(Debug, Clone)]
pub struct Route {
    /// The output channel it adds to.
    pub output: usize,
    /// The input channel it reads.
    pub input: usize,
    /// The IR, as an index into the IRs given to [`Convolver::new`].
    pub ir: usize,
}

/// A level of uniform partitions: the IR's taps `n·(1 + k)`, `k < partitions`, in blocks of `n`.
struct Level {
    n: usize,
    fwd: Arc<dyn RealToComplex<f64>>,
    inv: Arc<dyn ComplexToReal<f64>>,
    scratch: Vec<Complex<f64>>,
    time: Vec<f64>,
    spec: Vec<Complex<f64>>,
    /// Per input: `slots` spectra (split into real and imaginary parts), a ring; `newest` is the last written.
    fdl: Vec<Split<f64>>,
    slots: usize,
    newest: usize,
    /// Per IR: its partitions' spectra, scaled by `1 / 2n` (the inverse FFT's gain), and how many.
    filters: Vec<Split<f32>>,
    counts: Vec<usize>,
    /// Per output: the spectrum being summed for the next block, and the current block's samples.
    acc: Vec<Split<f64>>,
    out: Vec<Vec<f64>>,
    /// Spread: the level starts at tap `2n` and its output block is computed during the block before,
    /// FFTs included, into `next`; otherwise only the older partitions' products are.
    spread: bool,
    next: Vec<Vec<f64>>,
    /// The products summed during a block, in order: (input, IR, output, partition ≥ 1), and how far the
    /// sum is (in bins, over all of them).
    jobs: Vec<Job>,
    done: usize,
}

/// One product of an input's past spectrum and a partition's, summed into an output.
#[derive(Clone, Copy)]
struct Job {
    input: usize,
    ir: usize,
    output: usize,
    partition: usize,
}

/// Spectra with real and imaginary parts apart, which the products run over four lanes at a time. The
/// sums are `f64`; the spectra they multiply are stored as `f32` (see [`Convolver::new`]).
#[derive(Clone)]
struct Split<T> {
    re: Vec<T>,
    im: Vec<T>,
}

impl<T: Copy + Default> Split<T> {
    fn zeros(len: usize) -> Self {
        Self { re: vec![T::default(); len], im: vec![T::default(); len] }
    }

    fn clear(&mut self) {
        self.re.fill(T::default());
        self.im.fill(T::default());
    }
}

/// A prepared convolution of `inputs` channels into `outputs` channels along a set of [`Route`]s.
pub struct Convolver {
    outputs: usize,
    routes: Vec<Route>,
    fma: bool,
    latency: usize,
    /// Direct head: per IR, its first `head` taps.
    heads: Vec<Vec<f64>>,
    head: usize,
    tick: usize,
    /// Frames taken so far.
    pos: u64,
    /// Per input: the last `ring.len()` samples (a power of two).
    rings: Vec<Vec<f64>>,
    levels: Vec<Level>,
    /// Scratch: an input window for the direct head, and one output's sum.
    window: Vec<f64>,
    mix: Vec<f64>,
}

impl std::fmt::Debug for Convolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Convolver")
            .field("routes", &self.routes)
            .field("latency", &self.latency)
            .field("partitions", &self.levels.iter().map(|l| (l.n, l.slots)).collect::<Vec<_>>())
            .finish()
    }
}

impl Convolver {
    /// A convolver of `inputs` channels into `outputs` along `routes`, with these IRs (taps at the graph's
    /// rate). Allocates and plans every FFT: control side.
    ///
    /// # Panics
    /// If a route names a channel or IR that is not there.
    pub fn new(inputs: usize, outputs: usize, irs: &[Arc<Vec<f64>>], routes: Vec<Route>, latency: Latency) -> Self {
        for r in &routes {
            assert!(r.input < inputs && r.output < outputs && r.ir < irs.len(), "route {r:?} out of range");
        }
        // Block latency: the IR delayed, no direct head, partitions from BLOCK_LATENCY.
        let (delay, head, tick) = match latency {
            Latency::Zero => (0, TICK, TICK),
            Latency::Block => (BLOCK_LATENCY, 0, BLOCK_LATENCY),
        };
        let taps = |ir: &[f64], at: usize| -> f64 {
            if at < delay { 0.0 } else { ir.get(at - delay).copied().unwrap_or(0.0) }
        };
        let longest = irs.iter().map(|ir| ir.len() + delay).max().unwrap_or(0);
        let heads = irs.iter().map(|ir| (0..head).map(|k| taps(ir, k)).collect()).collect();
        let mut planner = RealFftPlanner::<f64>::new();
        let mut levels = Vec::new();
        let mut start = tick;
        let mut n = tick;
        // Long partitions are spread where a block has a tick for each FFT and one for the products.
        let spreads = |n: usize| n >= SPREAD && n / tick > inputs + outputs;
        while start < longest {
            // The next level's partitions, and where it starts: at its own length, or twice that if spread.
            let next_n = (n * GROWTH).min(MAX_PARTITION);
            let next = match n {
                n if n >= MAX_PARTITION => usize::MAX,
                _ if spreads(next_n) => 2 * next_n,
                _ => next_n,
            };
            // A level of longer partitions pays two FFTs a block: it is opened only for two partitions or
            // more, or this level takes the rest.
            let next = if longest.saturating_sub(next) < 2 * next_n { usize::MAX } else { next };
            let spread = spreads(n);
            let end = longest.min(next.max(start));
            let slots = (end - start).div_ceil(n);
            let fwd = planner.plan_fft_forward(2 * n);
            let inv = planner.plan_fft_inverse(2 * n);
            let scratch = vec![Complex::default(); fwd.get_scratch_len().max(inv.get_scratch_len())];
            let mut time = vec![0.0; 2 * n];
            let mut spec = vec![Complex::default(); n + 1];
            let mut scratch_plan = scratch.clone();
            let scale = 1.0 / (2 * n) as f64;
            let mut filters = Vec::new();
            let mut counts = Vec::new();
            for ir in irs {
                let len = (ir.len() + delay).saturating_sub(start).min(slots * n);
                let count = len.div_ceil(n);
                let mut f = Split::zeros(count * (n + 1));
                for k in 0..count {
                    time.fill(0.0);
                    for (m, t) in time[..n].iter_mut().enumerate() {
                        *t = taps(ir, start + k * n + m) * scale;
                    }
                    fwd.process_with_scratch(&mut time, &mut spec, &mut scratch_plan).expect("planned lengths");
                    for (b, c) in spec.iter().enumerate() {
                        f.re[k * (n + 1) + b] = c.re as f32;
                        f.im[k * (n + 1) + b] = c.im as f32;
                    }
                }
                filters.push(f);
                counts.push(count);
            }
            let mut jobs = Vec::new();
            for o in 0..outputs {
                for r in routes.iter().filter(|r| r.output == o) {
                    // Spread, a level sums every partition's products during the block before.
                    jobs.extend((usize::from(!spread)..counts[r.ir]).map(|partition| Job {
                        input: r.input,
                        ir: r.ir,
                        output: o,
                        partition,
                    }));
                }
            }
            levels.push(Level {
                n,
                fwd,
                inv,
                scratch,
                time,
                spec,
                fdl: vec![Split::zeros(slots * (n + 1)); inputs],
                slots,
                newest: 0,
                filters,
                counts,
                acc: vec![Split::zeros(n + 1); outputs],
                out: vec![vec![0.0; n]; outputs],
                spread,
                next: vec![vec![0.0; n]; if spread { outputs } else { 0 }],
                jobs,
                done: 0,
            });
            start = end;
            n = (n * GROWTH).min(MAX_PARTITION);
        }
        // A level reads the two blocks before its boundary; spread, it reads them during the block after.
        let widest = levels.iter().map(|l| if l.spread { 4 * l.n } else { 2 * l.n }).max().unwrap_or(0).max(2 * tick);
        Self {
            outputs,
            routes,
            fma: super::fma_kernels(),
            latency: delay,
            heads,
            head,
            tick,
            pos: 0,
            rings: vec![vec![0.0; widest.next_power_of_two()]; inputs],
            levels,
            window: vec![0.0; head + tick],
            mix: vec![0.0; tick],
        }
    }

    /// Frames by which the output lags the input.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// The partition sizes and counts of each level, for reports.
    pub fn partitions(&self) -> Vec<(usize, usize)> {
        self.levels.iter().map(|l| (l.n, l.slots)).collect()
    }

    /// Clears every delay line and sum, as for a seek.
    pub fn reset(&mut self) {
        self.pos = 0;
        for r in &mut self.rings {
            r.fill(0.0);
        }
        for l in &mut self.levels {
            l.fdl.iter_mut().for_each(Split::clear);
            l.acc.iter_mut().for_each(Split::clear);
            l.out.iter_mut().chain(&mut l.next).for_each(|o| o.fill(0.0));
            l.done = 0;
            l.newest = 0;
        }
    }

    /// Convolves one block in place: channel `c` holds input `c` on entry (for each input) and output `c` on
    /// return (for each output). The block has at least as many channels as inputs and as outputs.
    pub fn process(&mut self, audio: &mut AudioOut<'_>) {
        let frames = audio.frames();
        let mut at = 0;
        while at < frames {
            let phase = (self.pos % self.tick as u64) as usize;
            if phase == 0 {
                self.tick_work();
            }
            let len = (self.tick - phase).min(frames - at);
            self.segment(audio, at, len);
            at += len;
            self.pos += len as u64;
        }
    }

    /// Takes `len` frames from `at` into the rings and writes their outputs over them.
    fn segment(&mut self, audio: &mut AudioOut<'_>, at: usize, len: usize) {
        let pos = self.pos as usize;
        for (c, ring) in self.rings.iter_mut().enumerate() {
            // A segment never wraps: it lies within one tick, and the ring holds a whole number of them.
            let start = pos & (ring.len() - 1);
            for (r, &x) in ring[start..start + len].iter_mut().zip(&audio.channel(c)[at..at + len]) {
                *r = if x.is_finite() { f64::from(x) } else { 0.0 };
            }
        }
        for o in 0..self.outputs {
            let mix = &mut self.mix[..len];
            mix.fill(0.0);
            for r in self.routes.iter().filter(|r| r.output == o) {
                if self.head == 0 {
                    break;
                }
                // The head's window: `head - 1` frames of history, then this segment.
                let ring = &self.rings[r.input];
                let window = &mut self.window[..self.head - 1 + len];
                copy_from_ring(ring, pos.wrapping_sub(self.head - 1), window);
                direct(self.fma, &self.heads[r.ir], window, mix);
            }
            for l in &self.levels {
                let from = pos % l.n;
                for (m, y) in mix.iter_mut().zip(&l.out[o][from..from + len]) {
                    *m += y;
                }
            }
            let ch = &mut audio.channel_mut(o)[at..at + len];
            for (y, m) in ch.iter_mut().zip(mix.iter()) {
                *y = *m as f32;
            }
        }
    }

    /// The work due at a tick: each level at its boundary computes its next output block, then sums its
    /// share of the products for the block after.
    fn tick_work(&mut self) {
        let pos = self.pos as usize;
        for l in &mut self.levels {
            let ticks = l.n / self.tick;
            let t = (pos / self.tick) % ticks;
            let bins = l.n + 1;
            if l.spread {
                l.spread_tick(self.fma, &self.rings, pos, t, ticks);
                continue;
            }
            if t == 0 && pos > 0 {
                // The block that ended: its spectrum into each input's delay line.
                l.newest = (l.newest + 1) % l.slots;
                for (i, ring) in self.rings.iter().enumerate() {
                    l.forward(ring, pos, i);
                }
                // The older partitions' products were summed during the block; partition 0's now.
                for r in &self.routes {
                    if l.counts[r.ir] > 0 {
                        let job = Job { input: r.input, ir: r.ir, output: r.output, partition: 0 };
                        l.product(self.fma, job, 0, bins, 0);
                    }
                }
                for o in 0..l.acc.len() {
                    l.inverse(o, false);
                }
                l.done = 0;
            }
            // This tick's share of the next block's older products.
            let target = l.units() * (t + 1) / ticks;
            l.sum_jobs(self.fma, target);
        }
    }
}

impl Level {
    /// A spread level's work at tick `t` of its block: at the boundary, the block computed during the last
    /// one becomes the output; then the forward FFT of input `t` (one per tick), the products, and last the
    /// inverse FFT of each output (one per tick), so that no tick does more than one FFT of the level.
    fn spread_tick(&mut self, fma: bool, rings: &[Vec<f64>], pos: usize, t: usize, ticks: usize) {
        let (inputs, outputs) = (self.fdl.len(), self.acc.len());
        if t == 0 {
            std::mem::swap(&mut self.out, &mut self.next);
            self.newest = (self.newest + 1) % self.slots;
            self.done = 0;
        }
        if t < inputs {
            // The two blocks that ended at this block's start.
            self.forward(&rings[t], pos - t * (self.n / ticks), t);
        }
        let products = ticks - inputs - outputs;
        if t >= inputs && t < inputs + products {
            self.sum_jobs(fma, self.units() * (t - inputs + 1) / products);
        }
        if t >= inputs + products {
            self.inverse(t - inputs - products, true);
        }
    }

    /// The spectrum of the two blocks of `ring` that end at stream position `end`, into input `input`'s
    /// newest slot of the delay line.
    fn forward(&mut self, ring: &[f64], end: usize, input: usize) {
        copy_from_ring(ring, end.wrapping_sub(2 * self.n), &mut self.time);
        self.fwd.process_with_scratch(&mut self.time, &mut self.spec, &mut self.scratch).expect("planned lengths");
        let (fdl, slot) = (&mut self.fdl[input], self.newest * (self.n + 1));
        for (b, c) in self.spec.iter().enumerate() {
            fdl.re[slot + b] = c.re;
            fdl.im[slot + b] = c.im;
        }
    }

    /// Output `output`'s summed spectrum back to samples (overlap-save: the second half), into its current
    /// block (`out`) or, for a spread level, its next (`next`); the sum is cleared for the next block.
    fn inverse(&mut self, output: usize, next: bool) {
        let acc = &mut self.acc[output];
        for (c, (re, im)) in self.spec.iter_mut().zip(acc.re.iter().zip(&acc.im)) {
            *c = Complex::new(*re, *im);
        }
        // A real signal's spectrum: DC and Nyquist bins are real (they are, but for rounding).
        self.spec[0].im = 0.0;
        self.spec[self.n].im = 0.0;
        self.inv.process_with_scratch(&mut self.spec, &mut self.time, &mut self.scratch).expect("planned lengths");
        let block = if next { &mut self.next[output] } else { &mut self.out[output] };
        block.copy_from_slice(&self.time[self.n..]);
        acc.clear();
    }

    /// Adds `job`'s product over bins `from..to` to its output's sum: partition `k` times the spectrum `k`
    /// blocks before the newest, or `k - lag` blocks.
    fn product(&mut self, fma: bool, job: Job, from: usize, to: usize, lag: usize) {
        let bins = self.n + 1;
        let Job { input, ir, output, partition } = job;
        let slot = (self.newest + self.slots + lag - partition) % self.slots * bins;
        let (x, h, acc) = (&self.fdl[input], &self.filters[ir], &mut self.acc[output]);
        let at = partition * bins;
        cmac(
            fma,
            &mut acc.re[from..to],
            &mut acc.im[from..to],
            &x.re[slot + from..slot + to],
            &x.im[slot + from..slot + to],
            &h.re[at + from..at + to],
            &h.im[at + from..at + to],
        );
    }

    /// Sums the products of older partitions up to unit `target`. A unit is one job over one chunk of
    /// [`CHUNK`] bins, taken chunk by chunk (every job of a chunk, then the next chunk), so a chunk of the
    /// sums stays in cache while the partitions stream past it; each bin still sums its jobs in order.
    fn sum_jobs(&mut self, fma: bool, target: usize) {
        let bins = self.n + 1;
        while self.done < target {
            let (chunk, job) = (self.done / self.jobs.len(), self.done % self.jobs.len());
            let (from, to) = (chunk * CHUNK, bins.min(chunk * CHUNK + CHUNK));
            // A level that is not spread sums during a block the products for the block after the next, whose
            // newest spectrum is one block later.
            self.product(fma, self.jobs[job], from, to, usize::from(!self.spread));
            self.done += 1;
        }
    }

    /// Units of work summed during each block: every job over every chunk.
    fn units(&self) -> usize {
        (self.n + 1).div_ceil(CHUNK) * self.jobs.len()
    }
}

/// Copies `out.len()` samples of `ring` (a power of two long) from stream position `from` (taken modulo its
/// length) into `out`, in at most two runs.
fn copy_from_ring(ring: &[f64], from: usize, out: &mut [f64]) {
    let start = from & (ring.len() - 1);
    let first = out.len().min(ring.len() - start);
    out[..first].copy_from_slice(&ring[start..start + first]);
    let rest = out.len() - first;
    out[first..].copy_from_slice(&ring[..rest]);
}

/// `acc += x·h` over complex bins given as separate real and imaginary parts.
fn cmac(fma: bool, acc_re: &mut [f64], acc_im: &mut [f64], xr: &[f64], xi: &[f64], hr: &[f32], hi: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        #[allow(unsafe_code)]
        // SAFETY: `fma` comes from `fma_kernels()`, which found AVX2 and FMA on this CPU.
        unsafe {
            cmac_fma(acc_re, acc_im, xr, xi, hr, hi)
        };
        return;
    }
    let _ = fma;
    cmac_with::<false>(acc_re, acc_im, xr, xi, hr, hi);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn cmac_fma(acc_re: &mut [f64], acc_im: &mut [f64], xr: &[f64], xi: &[f64], hr: &[f32], hi: &[f32]) {
    cmac_with::<true>(acc_re, acc_im, xr, xi, hr, hi);
}

#[inline(always)]
fn cmac_with<const FMA: bool>(acc_re: &mut [f64], acc_im: &mut [f64], xr: &[f64], xi: &[f64], hr: &[f32], hi: &[f32]) {
    use super::mac;
    let n = acc_re.len();
    let (acc_im, xr, xi, hr, hi) = (&mut acc_im[..n], &xr[..n], &xi[..n], &hr[..n], &hi[..n]);
    for b in 0..n {
        let (xr, xi, hr, hi) = (xr[b], xi[b], f64::from(hr[b]), f64::from(hi[b]));
        acc_re[b] = mac::<FMA>(xr, hr, mac::<FMA>(-xi, hi, acc_re[b]));
        acc_im[b] = mac::<FMA>(xr, hi, mac::<FMA>(xi, hr, acc_im[b]));
    }
}

/// The direct head: `mix[t] += Σₖ head[k]·window[head.len() - 1 + t - k]`, summed in order of `k`.
fn direct(fma: bool, head: &[f64], window: &[f64], mix: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        #[allow(unsafe_code)]
        // SAFETY: `fma` comes from `fma_kernels()`, which found AVX2 and FMA on this CPU.
        unsafe {
            direct_fma(head, window, mix)
        };
        return;
    }
    let _ = fma;
    direct_with::<false>(head, window, mix);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn direct_fma(head: &[f64], window: &[f64], mix: &mut [f64]) {
    direct_with::<true>(head, window, mix);
}

#[inline(always)]
fn direct_with<const FMA: bool>(head: &[f64], window: &[f64], mix: &mut [f64]) {
    let last = head.len() - 1;
    let len = mix.len();
    for (k, &c) in head.iter().enumerate() {
        let x = &window[last - k..last - k + len];
        for (m, &x) in mix.iter_mut().zip(x) {
            *m = super::mac::<FMA>(c, x, *m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible signal in -1..1 (a linear congruential generator).
    fn noise(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    /// A decaying noise IR, as a room's is.
    fn room(len: usize, seed: u64) -> Arc<Vec<f64>> {
        let decay = (1e-3f64).ln() / len as f64;
        Arc::new(noise(len, seed).iter().enumerate().map(|(i, x)| x * (decay * i as f64).exp()).collect())
    }

    /// Output `t` of the direct convolution of `x` with `h`, in `f64`.
    fn reference(x: &[f64], h: &[f64], t: usize) -> f64 {
        (0..h.len().min(t + 1)).map(|k| h[k] * x[t - k]).sum()
    }

    /// Runs a mono convolver over `x` in blocks of the given sizes (cycled).
    fn run(c: &mut Convolver, x: &[f64], blocks: &[usize]) -> Vec<f32> {
        let mut y: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut at = 0;
        for &b in blocks.iter().cycle() {
            if at == y.len() {
                break;
            }
            let n = b.min(y.len() - at);
            c.process(&mut AudioOut::new(&mut y[at..at + n], n, 1, n));
            at += n;
        }
        y
    }

    /// The largest error at `positions` against the direct convolution, in dB of the reference's peak.
    fn error_db(x: &[f64], h: &[f64], y: &[f32], delay: usize, positions: impl Iterator<Item = usize>) -> f64 {
        let (mut err, mut peak) = (0.0f64, 0.0f64);
        for t in positions {
            let r = if t >= delay { reference(x, h, t - delay) } else { 0.0 };
            err = err.max((f64::from(y[t]) - r).abs());
            peak = peak.max(r.abs());
        }
        20.0 * (err / peak).log10()
    }

    fn mono(ir: &Arc<Vec<f64>>, latency: Latency) -> Convolver {
        Convolver::new(1, 1, std::slice::from_ref(ir), vec![Route { output: 0, input: 0, ir: 0 }], latency)
    }

    #[test]
    fn matches_direct_convolution_for_short_and_medium_irs_at_any_block_size() {
        // The input's values are f32 (as the graph's are), so the reference sees what the convolver sees.
        let x: Vec<f64> = noise(80_000, 1).iter().map(|&v| f64::from(v as f32)).collect();
        for (taps, latency) in [
            (1, Latency::Zero),
            (63, Latency::Zero),
            (64, Latency::Zero),
            (65, Latency::Zero),
            (700, Latency::Zero),
            (5000, Latency::Zero),
            (40_000, Latency::Zero),
            (1, Latency::Block),
            (5000, Latency::Block),
            (40_000, Latency::Block),
        ] {
            let h = room(taps, taps as u64);
            let whole = run(&mut mono(&h, latency), &x, &[x.len()]);
            let delay = mono(&h, latency).latency();
            let db = error_db(&x, &h, &whole, delay, 0..x.len());
            assert!(db < -130.0, "{taps} taps, {latency:?}: {db:.1} dB");
            for blocks in [&[1][..], &[7, 64, 300, 1], &[4096], &[63, 65]] {
                let cut = run(&mut mono(&h, latency), &x, blocks);
                assert!(cut == whole, "{taps} taps, {latency:?}: blocks {blocks:?} changed the bits");
            }
        }
    }

    #[test]
    fn matches_direct_convolution_for_an_ir_of_half_a_million_taps() {
        let taps = 500_000;
        let x: Vec<f64> = noise(taps + 70_000, 2).iter().map(|&v| f64::from(v as f32)).collect();
        let h = room(taps, 3);
        for latency in [Latency::Zero, Latency::Block] {
            let mut c = mono(&h, latency);
            // The last level is spread: its FFTs too run a tick at a time.
            assert!(c.levels.last().is_some_and(|l| l.n == MAX_PARTITION && l.spread), "{c:?}");
            let y = run(&mut c, &x, &[512, 64, 1000]);
            // Every partition's part of the output, at positions spread over the whole stream.
            let positions = (0..x.len()).step_by(997).chain(x.len() - 64..x.len());
            let db = error_db(&x, &h, &y, c.latency(), positions);
            assert!(db < -130.0, "{latency:?}: {db:.1} dB");
        }
    }

    #[test]
    fn a_dirac_passes_exactly_or_is_delayed_exactly_by_the_latency() {
        let x: Vec<f64> = noise(20_000, 4).iter().map(|&v| f64::from(v as f32)).collect();
        let dirac = Arc::new(vec![1.0]);
        let zero = run(&mut mono(&dirac, Latency::Zero), &x, &[100]);
        assert!(zero.iter().zip(&x).all(|(y, x)| f64::from(*y) == *x));
        // A long IR that is a Dirac with a tail of zeros: its FFT partitions add nothing but rounding.
        let mut long = vec![0.0; 50_000];
        long[0] = 1.0;
        let delayed = run(&mut mono(&Arc::new(long), Latency::Block), &x, &[100]);
        let d = BLOCK_LATENCY;
        assert!(delayed[..d].iter().all(|&y| y == 0.0));
        let worst = delayed[d..].iter().zip(&x).map(|(y, x)| (f64::from(*y) - x).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-7, "{worst}");
        let exact = run(&mut mono(&dirac, Latency::Block), &x, &[100]);
        assert!(exact[d..].iter().zip(&x).all(|(y, x)| f64::from(*y) == *x));
    }

    #[test]
    fn a_matrix_routes_each_input_through_its_own_ir() {
        // True stereo: out0 = in0*h0 + in1*h1, out1 = in0*h2 + in1*h3.
        let irs: Vec<_> = (0..4).map(|i| room(3000 + 500 * i, 10 + i as u64)).collect();
        let routes = vec![
            Route { output: 0, input: 0, ir: 0 },
            Route { output: 0, input: 1, ir: 1 },
            Route { output: 1, input: 0, ir: 2 },
            Route { output: 1, input: 1, ir: 3 },
        ];
        let mut c = Convolver::new(2, 2, &irs, routes, Latency::Zero);
        let xs: Vec<Vec<f64>> =
            (0..2).map(|s| noise(9000, 20 + s).iter().map(|&v| f64::from(v as f32)).collect()).collect();
        // Both channels in one buffer, 9000 frames apart.
        let mut planar: Vec<f32> = xs.iter().flatten().map(|&v| v as f32).collect();
        for at in (0..9000).step_by(333) {
            let n = 333.min(9000 - at);
            c.process(&mut AudioOut::new(&mut planar[at..], 9000, 2, n));
        }
        let ys: Vec<&[f32]> = planar.chunks(9000).collect();
        for (o, pair) in [(0, [0, 1]), (1, [2, 3])] {
            let (mut err, mut peak) = (0.0f64, 0.0f64);
            for (t, &y) in ys[o].iter().enumerate() {
                let r = reference(&xs[0], &irs[pair[0]], t) + reference(&xs[1], &irs[pair[1]], t);
                err = err.max((f64::from(y) - r).abs());
                peak = peak.max(r.abs());
            }
            let db = 20.0 * (err / peak).log10();
            assert!(db < -130.0, "output {o}: {db:.1} dB");
        }
    }
}
