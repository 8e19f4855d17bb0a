//! What the audio side records, in storage any thread can read while audio runs.
//!
//! Each record has one writer at a time (the thread that runs the node, or the thread that drives the
//! graph), so updates are relaxed loads and stores of atomics, which on x86-64 are plain moves: no lock, no
//! read-modify-write, no allocation. Readers take a [snapshot](SharedTiming::snapshot) whenever they like;
//! a snapshot taken during a block may mix two blocks' figures, never tear a value.

use super::{BUCKETS, Meter, RMS_BINS, SPECTRUM_SIZE, Timing, bucket_of, rms_bin};
use crate::buffer::AudioIn;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Adds `v` to a counter that only this thread writes.
#[inline(always)]
fn bump(a: &AtomicU64, v: u64) {
    a.store(a.load(Relaxed).wrapping_add(v), Relaxed);
}

/// A [`Timing`] histogram that one thread records into and any thread reads.
pub struct SharedTiming {
    calls: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
    buckets: [AtomicU32; BUCKETS],
}

impl Default for SharedTiming {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl SharedTiming {
    /// Records one duration (in clock ticks). Writer only.
    #[inline]
    pub fn record(&self, ticks: u64) {
        bump(&self.calls, 1);
        bump(&self.sum, ticks);
        if ticks > self.max.load(Relaxed) {
            self.max.store(ticks, Relaxed);
        }
        let b = &self.buckets[bucket_of(ticks)];
        b.store(b.load(Relaxed).saturating_add(1), Relaxed);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    /// A copy, for reports.
    pub fn snapshot(&self) -> Timing {
        let mut t = Timing {
            calls: self.calls.load(Relaxed),
            sum_ns: self.sum.load(Relaxed),
            max_ns: self.max.load(Relaxed),
            ..Timing::default()
        };
        for (dst, src) in t.buckets.iter_mut().zip(&self.buckets) {
            *dst = src.load(Relaxed);
        }
        t
    }
}

/// What the audio side records about one node.
#[derive(Default)]
pub struct NodeStats {
    pub timing: SharedTiming,
    faults: AtomicU64,
    /// Linear memory and its cap in bytes, `u64::MAX` when the node has none.
    memory: AtomicU64,
    memory_cap: AtomicU64,
    /// A plugin's named status numbers (`f64` bits), as many as it declares (at most [`STATUS_VALUES`]).
    status: [AtomicU64; STATUS_VALUES],
}

/// Status numbers kept per node.
pub const STATUS_VALUES: usize = 8;

impl NodeStats {
    pub fn new() -> Self {
        let s = Self::default();
        s.memory.store(u64::MAX, Relaxed);
        s
    }

    /// Publishes a plugin's status numbers (from [`crate::node::PollContext::status_values`]).
    pub fn set_status_values(&self, values: &[f64]) {
        for (slot, v) in self.status.iter().zip(values) {
            slot.store(v.to_bits(), Relaxed);
        }
    }

    /// The first `n` status numbers.
    pub fn status_values(&self, n: usize) -> Vec<f64> {
        self.status.iter().take(n).map(|v| f64::from_bits(v.load(Relaxed))).collect()
    }

    /// Publishes the node's status (from [`crate::node::PollContext::status`]).
    pub fn set_status(&self, faults: u64, memory: Option<(usize, usize)>) {
        self.faults.store(faults, Relaxed);
        match memory {
            Some((used, cap)) => {
                self.memory.store(used as u64, Relaxed);
                self.memory_cap.store(cap as u64, Relaxed);
            }
            None => self.memory.store(u64::MAX, Relaxed),
        }
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Relaxed)
    }

    pub fn memory(&self) -> Option<(usize, usize)> {
        let used = self.memory.load(Relaxed);
        (used != u64::MAX).then(|| (used as usize, self.memory_cap.load(Relaxed) as usize))
    }
}

/// A [`Meter`] that one thread feeds and any thread reads.
pub struct SharedMeter {
    peak: AtomicU32,
    sum_sq: AtomicU64,
    samples: AtomicU64,
    clipped: AtomicU64,
    block_rms: [AtomicU32; RMS_BINS],
    /// The latest mono samples, two per word (frame `2k` in the low half, `2k + 1` in the high one).
    ring: Box<[AtomicU64]>,
    ring_pos: AtomicU64,
    ring_filled: AtomicU64,
    /// Whether the level pass runs in 256-bit registers (decided here, on the control side).
    wide: bool,
}

impl Default for SharedMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedMeter {
    /// Allocates the meter (control side).
    pub fn new() -> Self {
        super::rms_edges();
        Self {
            peak: AtomicU32::new(0),
            sum_sq: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            clipped: AtomicU64::new(0),
            block_rms: std::array::from_fn(|_| AtomicU32::new(0)),
            ring: (0..SPECTRUM_SIZE / 2).map(|_| AtomicU64::new(0)).collect(),
            ring_pos: AtomicU64::new(0),
            ring_filled: AtomicU64::new(0),
            wide: crate::dsp::fma_kernels(),
        }
    }

    /// Measures one planar block, and with `spectrum` keeps its mono mix for a spectrum; without, the
    /// samples kept so far are dropped (they are no longer the latest). Writer only; no allocation.
    pub fn feed(&self, block: &AudioIn<'_>, spectrum: bool) {
        let (channels, frames) = (block.channels(), block.frames());
        if frames == 0 || channels == 0 {
            return;
        }
        let levels = super::block_levels(block, self.wide);
        let n = (channels * frames) as u64;
        if levels.peak > f32::from_bits(self.peak.load(Relaxed)) {
            self.peak.store(levels.peak.to_bits(), Relaxed);
        }
        self.sum_sq.store((f64::from_bits(self.sum_sq.load(Relaxed)) + levels.sum_sq).to_bits(), Relaxed);
        bump(&self.samples, n);
        if levels.clipped > 0 {
            bump(&self.clipped, levels.clipped);
        }
        let bin = &self.block_rms[rms_bin(levels.sum_sq, n)];
        bin.store(bin.load(Relaxed).saturating_add(1), Relaxed);

        if !spectrum {
            if self.ring_filled.load(Relaxed) != 0 {
                self.ring_filled.store(0, Relaxed);
            }
            return;
        }
        // The mono mix of the block's last SPECTRUM_SIZE frames into the ring. Each layout mixes a run of
        // frames in one loop the compiler vectorizes.
        let scale = 1.0 / channels as f32;
        let plane = |c: usize| block.channel(c);
        match channels {
            1 => self.keep_latest(frames, |dst, at| dst.copy_from_slice(&plane(0)[at..at + dst.len()])),
            2 => {
                let (l, r) = (plane(0), plane(1));
                self.keep_latest(frames, |dst, at| {
                    for ((d, a), b) in dst.iter_mut().zip(&l[at..]).zip(&r[at..]) {
                        *d = (a + b) * scale;
                    }
                });
            }
            _ => self.keep_latest(frames, |dst, at| {
                dst.copy_from_slice(&plane(0)[at..at + dst.len()]);
                for c in 1..channels {
                    for (d, x) in dst.iter_mut().zip(&plane(c)[at..]) {
                        *d += x;
                    }
                }
                for d in dst.iter_mut() {
                    *d *= scale;
                }
            }),
        }
        let filled = (self.ring_filled.load(Relaxed) + frames as u64).min(SPECTRUM_SIZE as u64);
        self.ring_filled.store(filled, Relaxed);
    }

    /// Writes the last [`SPECTRUM_SIZE`] of `frames` mono samples into the ring: `mono(dst, at)` fills `dst`
    /// with the samples of frames `at..at + dst.len()`. Runs of frames go through a buffer on the stack, and
    /// from there into the ring two samples a store.
    #[inline(always)]
    fn keep_latest(&self, frames: usize, mono: impl Fn(&mut [f32], usize)) {
        let put_half = |pos: usize, v: f32| {
            let word = &self.ring[pos / 2];
            let old = word.load(Relaxed);
            let new = if pos.is_multiple_of(2) {
                (old & !0xFFFF_FFFF) | u64::from(v.to_bits())
            } else {
                (old & 0xFFFF_FFFF) | (u64::from(v.to_bits()) << 32)
            };
            word.store(new, Relaxed);
        };
        let mut run = [0f32; 256];
        let mut pos = self.ring_pos.load(Relaxed) as usize;
        let mut at = frames.saturating_sub(SPECTRUM_SIZE);
        while at < frames {
            let len = (frames - at).min(SPECTRUM_SIZE - pos).min(run.len());
            mono(&mut run[..len], at);
            let (mut p, mut values) = (pos, &run[..len]);
            if p % 2 == 1 {
                put_half(p, values[0]);
                (p, values) = (p + 1, &values[1..]);
            }
            let pairs = values.chunks_exact(2);
            if let [last] = pairs.remainder() {
                put_half(p + values.len() - 1, *last);
            }
            for (w, v) in self.ring[p / 2..].iter().zip(pairs) {
                w.store(u64::from(v[0].to_bits()) | (u64::from(v[1].to_bits()) << 32), Relaxed);
            }
            pos = (pos + len) % SPECTRUM_SIZE;
            at += len;
        }
        self.ring_pos.store(pos as u64, Relaxed);
    }

    /// A copy, for reports.
    pub fn snapshot(&self) -> Meter {
        let mut m = Meter::new();
        m.peak = f32::from_bits(self.peak.load(Relaxed));
        m.sum_sq = f64::from_bits(self.sum_sq.load(Relaxed));
        m.samples = self.samples.load(Relaxed);
        m.clipped = self.clipped.load(Relaxed);
        for (dst, src) in m.block_rms.iter_mut().zip(&self.block_rms) {
            *dst = src.load(Relaxed);
        }
        for (dst, src) in m.ring.chunks_exact_mut(2).zip(self.ring.iter()) {
            let w = src.load(Relaxed);
            dst[0] = f32::from_bits(w as u32);
            dst[1] = f32::from_bits((w >> 32) as u32);
        }
        m.ring_pos = self.ring_pos.load(Relaxed) as usize;
        m.ring_filled = self.ring_filled.load(Relaxed) as usize;
        m
    }
}

/// What the audio side records about the whole graph.
#[derive(Default)]
pub struct GraphStats {
    /// Processing time of each block (ticks).
    pub block_timing: SharedTiming,
    blocks_over_budget: AtomicU64,
    /// Frames processed since the audio side was created: the audio side's clock.
    frames: AtomicU64,
    /// Frames whose processing was timed (the monitor's share of `frames`).
    timed_frames: AtomicU64,
    nonfinite_input: AtomicU64,
    /// Messages dropped because the queue to the control side was full.
    dropped_messages: AtomicU64,
    /// Parameter events applied later than the frame they asked for (the pending list was full).
    late_events: AtomicU64,
    /// The frame until which meters keep the samples for a spectrum (see [`Self::watch_spectrum`]).
    spectrum_until: AtomicU64,
    pub output: SharedMeter,
}

impl GraphStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the meters to keep the latest samples for a spectrum for the next `frames` frames (from any
    /// thread; a longer request already made stands). Keeping them costs the audio side a mono mix and a
    /// store per two samples, so they are kept only while someone asks.
    pub fn watch_spectrum(&self, frames: u64) {
        let until = self.frames().saturating_add(frames);
        self.spectrum_until.fetch_max(until, Relaxed);
    }

    /// Whether the meters keep samples for a spectrum now (audio side, once per block).
    pub(crate) fn spectrum_wanted(&self) -> bool {
        self.frames() < self.spectrum_until.load(Relaxed)
    }

    pub(crate) fn add_frames(&self, n: u64) {
        bump(&self.frames, n);
    }

    pub(crate) fn add_timed(&self, frames: u64, ticks: u64, over_budget: bool) {
        self.block_timing.record(ticks);
        bump(&self.timed_frames, frames);
        if over_budget {
            bump(&self.blocks_over_budget, 1);
        }
    }

    pub(crate) fn add_nonfinite(&self, n: u64) {
        if n > 0 {
            bump(&self.nonfinite_input, n);
        }
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        bump(&self.dropped_messages, n);
    }

    pub(crate) fn add_late(&self) {
        bump(&self.late_events, 1);
    }

    /// Frames processed so far (the audio side's position).
    pub fn frames(&self) -> u64 {
        self.frames.load(Relaxed)
    }

    pub fn timed_frames(&self) -> u64 {
        self.timed_frames.load(Relaxed)
    }

    pub fn blocks_over_budget(&self) -> u64 {
        self.blocks_over_budget.load(Relaxed)
    }

    pub fn nonfinite_input(&self) -> u64 {
        self.nonfinite_input.load(Relaxed)
    }

    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages.load(Relaxed)
    }

    pub fn late_events(&self) -> u64 {
        self.late_events.load(Relaxed)
    }
}
