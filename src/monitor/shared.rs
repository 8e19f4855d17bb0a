//! What the audio side records, in storage any thread can read while audio runs.
//!
//! Each record has one writer at a time (the thread that runs the node, or the thread that drives the
//! graph), so updates are relaxed loads and stores of atomics, which on x86-64 are plain moves: no lock, no
//! read-modify-write, no allocation. Readers take a [snapshot](SharedTiming::snapshot) whenever they like;
//! a snapshot taken during a block may mix two blocks' figures, never tear a value.

use super::{BUCKETS, Meter, RMS_BINS, SPECTRUM_SIZE, Timing, bucket_of, rms_bin};
use crate::dsp::loudness::{LoudnessMeter, LoudnessReading};
use crate::node::AudioIn;
use crate::node::PluginHealth;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, fence};

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

    /// Records `count` durations that took `ticks` together, each counted at their mean: the blocks of one
    /// run of the audio side, timed as a whole. Writer only.
    #[inline]
    pub fn record_many(&self, ticks: u64, count: u64) {
        let count = count.max(1);
        let each = ticks / count;
        bump(&self.calls, count);
        bump(&self.sum, ticks);
        if each > self.max.load(Relaxed) {
            self.max.store(each, Relaxed);
        }
        let b = &self.buckets[bucket_of(each)];
        b.store(b.load(Relaxed).saturating_add(count.min(u64::from(u32::MAX)) as u32), Relaxed);
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
    bypassed_blocks: AtomicU64,
    bypassed_frames: AtomicU64,
    replaced_samples: AtomicU64,
    preempted_calls: AtomicU64,
    /// The frames of the first [`FAULT_TIMES`] faults, and how many are recorded.
    fault_frames: [AtomicU64; FAULT_TIMES],
    fault_frames_len: AtomicU64,
    /// Linear memory and its cap in bytes, `u64::MAX` when the node has none.
    memory: AtomicU64,
    memory_cap: AtomicU64,
    /// A plugin's named status numbers (`f64` bits), as many as it declares (at most [`STATUS_VALUES`]).
    status: [AtomicU64; STATUS_VALUES],
}

/// Status numbers kept per node.
pub const STATUS_VALUES: usize = 8;
/// Faults per node whose times are kept (the first ones).
pub const FAULT_TIMES: usize = 16;

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

    /// Publishes a plugin node's health (from [`crate::node::PollContext::status`]).
    pub fn set_status(&self, health: &PluginHealth) {
        self.faults.store(health.faults, Relaxed);
        self.bypassed_blocks.store(health.bypassed_blocks, Relaxed);
        self.bypassed_frames.store(health.bypassed_frames, Relaxed);
        self.replaced_samples.store(health.replaced_samples, Relaxed);
        self.preempted_calls.store(health.preempted_calls, Relaxed);
        match health.memory {
            Some((used, cap)) => {
                self.memory.store(used as u64, Relaxed);
                self.memory_cap.store(cap as u64, Relaxed);
            }
            None => self.memory.store(u64::MAX, Relaxed),
        }
    }

    /// Records a fault's frame, while fewer than [`FAULT_TIMES`] are (one writer: the audio side).
    pub fn record_fault(&self, frame: u64) {
        let n = self.fault_frames_len.load(Relaxed) as usize;
        if n < FAULT_TIMES {
            self.fault_frames[n].store(frame, Relaxed);
            self.fault_frames_len.store(n as u64 + 1, Release);
        }
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Relaxed)
    }

    /// The node's health as last published (without its memory: see [`memory`](Self::memory)).
    pub fn health(&self) -> PluginHealth {
        PluginHealth {
            faults: self.faults.load(Relaxed),
            bypassed_blocks: self.bypassed_blocks.load(Relaxed),
            bypassed_frames: self.bypassed_frames.load(Relaxed),
            replaced_samples: self.replaced_samples.load(Relaxed),
            preempted_calls: self.preempted_calls.load(Relaxed),
            memory: None,
        }
    }

    /// The frames of the first faults (at most [`FAULT_TIMES`]).
    pub fn fault_frames(&self) -> Vec<u64> {
        let n = (self.fault_frames_len.load(Acquire) as usize).min(FAULT_TIMES);
        self.fault_frames[..n].iter().map(|f| f.load(Relaxed)).collect()
    }

    pub fn memory(&self) -> Option<(usize, usize)> {
        let used = self.memory.load(Relaxed);
        (used != u64::MAX).then(|| (used as usize, self.memory_cap.load(Relaxed) as usize))
    }
}

/// A [`Meter`] that one thread feeds and any thread reads.
///
/// The levels are atomics the writer updates each block. The samples for a spectrum are different: the
/// writer keeps them in its own [`MeterTail`], in plain memory, and copies the latest
/// [`SPECTRUM_SIZE`] into the meter's ring only when a reader has asked (see [`Spectrum::request`]), so
/// keeping them costs a mono mix into the tail, not an atomic store per two samples.
pub struct SharedMeter {
    peak: AtomicU32,
    sum_sq: AtomicU64,
    samples: AtomicU64,
    clipped: AtomicU64,
    block_rms: [AtomicU32; RMS_BINS],
    /// The latest mono samples as last published, oldest first, two per word (sample `2k` in the low half,
    /// `2k + 1` in the high one).
    ring: Box<[AtomicU64]>,
    /// How many samples of `ring` hold a published window: 0 or [`SPECTRUM_SIZE`].
    ring_filled: AtomicU64,
    /// Odd while the writer publishes into `ring`, bumped twice per publication (a sequence lock over
    /// atomics: a reader that sees it change, or odd, retries).
    ring_seq: AtomicU64,
    /// Whether the level pass runs in 256-bit registers (decided here, on the control side).
    wide: bool,
    /// The loudness its writer's meter last published, if it has one.
    loudness: SharedLoudness,
}

/// What the writer of a meter does with the samples for a spectrum this block (one per block, the same
/// for every meter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spectrum {
    /// Keep the block's mono mix in the tail; without, the tail is dropped (its samples are no longer the
    /// latest) and so is the published window.
    pub keep: bool,
    /// The readers' latest request number: a writer whose tail is full and that has not published for it
    /// yet does so after this block.
    pub request: u64,
}

/// The part of a meter only its writer touches: its own copy of the latest mono samples, written a block
/// at a time without atomics, and its loudness meter if it has one. Allocated on the control side, with
/// its meter.
pub struct MeterTail {
    /// The loudness meter, and the sub-blocks it had measured when it last published.
    loudness: Option<Box<LoudnessMeter>>,
    loudness_published: u64,
    /// The sum of the channels (scaled to their mean when published).
    samples: Box<[f32]>,
    /// How many channels were summed (1 before any block).
    channels: usize,
    /// Where the next sample goes.
    pos: usize,
    /// How many of `samples` are the latest ones (at most [`SPECTRUM_SIZE`]).
    filled: usize,
    /// The request this tail was last published for.
    served: u64,
}

impl Default for MeterTail {
    fn default() -> Self {
        Self::new()
    }
}

impl MeterTail {
    /// Allocates the tail (control side).
    pub fn new() -> Self {
        Self::with_loudness(None)
    }

    /// Allocates the tail, with a loudness meter (control side).
    pub fn with_loudness(loudness: Option<LoudnessMeter>) -> Self {
        Self {
            loudness: loudness.map(Box::new),
            loudness_published: 0,
            samples: vec![0.0; SPECTRUM_SIZE].into_boxed_slice(),
            channels: 1,
            pos: 0,
            filled: 0,
            served: 0,
        }
    }

    /// Appends the sum of the channels of the block's last [`SPECTRUM_SIZE`] frames, with 256-bit
    /// registers where `wide`.
    fn push(&mut self, block: &AudioIn<'_>, wide: bool) {
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` is set only where `fma_kernels()` found AVX2 on this CPU.
            #[allow(unsafe_code)]
            return unsafe { self.push_avx2(block) };
        }
        let _ = wide;
        self.push_plain(block);
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    fn push_avx2(&mut self, block: &AudioIn<'_>) {
        self.push_plain(block);
    }

    /// Each layout sums a run of frames in one loop the compiler vectorizes.
    #[inline(always)]
    fn push_plain(&mut self, block: &AudioIn<'_>) {
        let (channels, frames) = (block.channels(), block.frames());
        if channels != self.channels {
            // Samples summed over another number of channels would be scaled wrongly.
            (self.channels, self.filled) = (channels, 0);
        }
        let mut at = frames.saturating_sub(SPECTRUM_SIZE);
        while at < frames {
            let len = (frames - at).min(SPECTRUM_SIZE - self.pos);
            let dst = &mut self.samples[self.pos..self.pos + len];
            let plane = |c: usize| &block.channel(c)[at..at + len];
            match channels {
                1 => dst.copy_from_slice(plane(0)),
                2 => {
                    for ((d, a), b) in dst.iter_mut().zip(plane(0)).zip(plane(1)) {
                        *d = a + b;
                    }
                }
                _ => {
                    dst.copy_from_slice(plane(0));
                    for c in 1..channels {
                        for (d, x) in dst.iter_mut().zip(plane(c)) {
                            *d += x;
                        }
                    }
                }
            }
            self.pos = (self.pos + len) % SPECTRUM_SIZE;
            at += len;
        }
        self.filled = (self.filled + frames).min(SPECTRUM_SIZE);
    }

    /// Whether it holds a whole window.
    pub fn full(&self) -> bool {
        self.filled == SPECTRUM_SIZE
    }
}

/// The audio side's end of a node's meter: the shared record and the tail only the writer touches.
pub struct MeterWriter {
    pub meter: Arc<SharedMeter>,
    pub tail: MeterTail,
}

impl MeterWriter {
    /// Allocates the tail, with a loudness meter if one is given (control side).
    pub fn new(meter: Arc<SharedMeter>, loudness: Option<LoudnessMeter>) -> Self {
        Self { meter, tail: MeterTail::with_loudness(loudness) }
    }
}

/// A [`LoudnessReading`] that one thread publishes (every 100 ms of audio) and any thread reads: each
/// value's `f64` bits, NaN for none.
pub struct SharedLoudness {
    values: [AtomicU64; 8],
    published: AtomicU64,
}

impl Default for SharedLoudness {
    fn default() -> Self {
        Self { values: std::array::from_fn(|_| AtomicU64::new(f64::NAN.to_bits())), published: AtomicU64::new(0) }
    }
}

impl SharedLoudness {
    fn fields(r: &LoudnessReading) -> [Option<f64>; 8] {
        [
            r.momentary_lufs,
            r.short_term_lufs,
            r.integrated_lufs,
            r.loudness_range_lu,
            r.true_peak_dbtp,
            r.sample_peak_dbfs,
            r.momentary_max_lufs,
            r.short_term_max_lufs,
        ]
    }

    /// Writer only: eight stores.
    pub fn publish(&self, r: &LoudnessReading) {
        for (slot, v) in self.values.iter().zip(Self::fields(r)) {
            slot.store(v.unwrap_or(f64::NAN).to_bits(), Relaxed);
        }
        self.published.store(1, Release);
    }

    /// The latest reading, if any was published.
    pub fn snapshot(&self) -> Option<LoudnessReading> {
        if self.published.load(Acquire) == 0 {
            return None;
        }
        let v: [Option<f64>; 8] = std::array::from_fn(|i| {
            let x = f64::from_bits(self.values[i].load(Relaxed));
            (!x.is_nan()).then_some(x)
        });
        Some(LoudnessReading {
            momentary_lufs: v[0],
            short_term_lufs: v[1],
            integrated_lufs: v[2],
            loudness_range_lu: v[3],
            true_peak_dbtp: v[4],
            sample_peak_dbfs: v[5],
            momentary_max_lufs: v[6],
            short_term_max_lufs: v[7],
        })
    }
}

impl Default for SharedMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedMeter {
    /// Allocates the meter (control side).
    pub fn new() -> Self {
        super::meter::rms_edges();
        Self {
            peak: AtomicU32::new(0),
            sum_sq: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            clipped: AtomicU64::new(0),
            block_rms: std::array::from_fn(|_| AtomicU32::new(0)),
            ring: (0..SPECTRUM_SIZE / 2).map(|_| AtomicU64::new(0)).collect(),
            ring_filled: AtomicU64::new(0),
            ring_seq: AtomicU64::new(0),
            wide: crate::dsp::fma_kernels(),
            loudness: SharedLoudness::default(),
        }
    }

    /// Measures one planar block, and does with its samples what `spectrum` says, in `tail` (this meter's
    /// own). Writer only; no allocation.
    pub fn feed(&self, block: &AudioIn<'_>, tail: &mut MeterTail, spectrum: Spectrum) {
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
        if let Some(loudness) = &mut tail.loudness {
            // The level pass found the block's peak: the loudness meter takes it rather than look again.
            if loudness.channels() == channels {
                loudness.feed_with_peak(block, levels.peak);
            } else {
                loudness.feed(block);
            }
            // Every 100 ms of audio: the gates are a few hundred additions.
            if loudness.sub_blocks() != tail.loudness_published {
                tail.loudness_published = loudness.sub_blocks();
                self.loudness.publish(&loudness.reading());
            }
        }

        if !spectrum.keep {
            if tail.filled != 0 {
                tail.filled = 0;
                self.ring_filled.store(0, Relaxed);
            }
            return;
        }
        tail.push(block, self.wide);
        if tail.full() && tail.served != spectrum.request {
            tail.served = spectrum.request;
            self.publish(tail);
        }
    }

    /// Copies the tail's window into the ring for readers, oldest sample first, if the tail is full.
    /// Writer only: 2048 stores, no allocation.
    pub fn publish(&self, tail: &MeterTail) {
        if let Some(loudness) = &tail.loudness {
            self.loudness.publish(&loudness.reading());
        }
        if !tail.full() {
            return;
        }
        let seq = self.ring_seq.load(Relaxed);
        self.ring_seq.store(seq + 1, Relaxed);
        fence(Release);
        let scale = 1.0 / tail.channels as f32;
        let sample = |i: usize| u64::from((tail.samples[(tail.pos + i) % SPECTRUM_SIZE] * scale).to_bits());
        for (k, word) in self.ring.iter().enumerate() {
            word.store(sample(2 * k) | (sample(2 * k + 1) << 32), Relaxed);
        }
        self.ring_filled.store(SPECTRUM_SIZE as u64, Relaxed);
        self.ring_seq.store(seq + 2, Release);
    }

    /// A copy, for reports. Its samples for a spectrum are the last published window, or none if the
    /// writer was publishing a new one at every try.
    pub fn snapshot(&self) -> Meter {
        let mut m = Meter::new();
        m.peak = f32::from_bits(self.peak.load(Relaxed));
        m.sum_sq = f64::from_bits(self.sum_sq.load(Relaxed));
        m.samples = self.samples.load(Relaxed);
        m.clipped = self.clipped.load(Relaxed);
        for (dst, src) in m.block_rms.iter_mut().zip(&self.block_rms) {
            *dst = src.load(Relaxed);
        }
        for _ in 0..4 {
            let seq = self.ring_seq.load(Acquire);
            if seq % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let filled = self.ring_filled.load(Relaxed) as usize;
            for (dst, src) in m.ring.chunks_exact_mut(2).zip(self.ring.iter()) {
                let w = src.load(Relaxed);
                dst[0] = f32::from_bits(w as u32);
                dst[1] = f32::from_bits((w >> 32) as u32);
            }
            fence(Acquire);
            if self.ring_seq.load(Relaxed) == seq {
                m.ring_filled = filled;
                break;
            }
        }
        m.ring_pos = 0;
        m.loudness = self.loudness.snapshot();
        m
    }
}

/// What the audio side records about the whole graph.
#[derive(Default)]
pub struct GraphStats {
    /// Processing time of each block (ticks): a block is what nodes are called with (at most `max_block`
    /// frames); the blocks of a run of several are each counted at the run's mean.
    pub block_timing: SharedTiming,
    blocks_over_budget: AtomicU64,
    /// Processing time of each run of the audio side (ticks): a device callback, or an offline hand-off of
    /// several blocks.
    pub run_timing: SharedTiming,
    runs_over_budget: AtomicU64,
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
    /// Readers' requests for spectra, counted (see [`Self::ask_spectrum`]).
    spectrum_request: AtomicU64,
    pub output: SharedMeter,
}

impl GraphStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the meters to keep the latest samples for a spectrum for the next `frames` frames (from any
    /// thread; a longer request already made stands). Keeping them costs the audio side a mono mix into a
    /// buffer of its own, so they are kept only while someone asks.
    pub fn watch_spectrum(&self, frames: u64) {
        let until = self.frames().saturating_add(frames);
        self.spectrum_until.fetch_max(until, Relaxed);
    }

    /// Asks each meter that keeps samples to publish its latest window for readers, after the first block
    /// at which it holds a whole one (from any thread).
    pub fn ask_spectrum(&self) {
        self.spectrum_request.fetch_add(1, Relaxed);
    }

    /// What the meters do with samples for a spectrum this block (audio side, once per block).
    pub(crate) fn spectrum(&self) -> Spectrum {
        let keep = self.frames() < self.spectrum_until.load(Relaxed);
        Spectrum { keep, request: if keep { self.spectrum_request.load(Relaxed) } else { 0 } }
    }

    pub(crate) fn add_frames(&self, n: u64) {
        bump(&self.frames, n);
    }

    /// One timed run of `frames` frames in `blocks` blocks that took `ticks`, and whether that was longer
    /// than the frames last in real time.
    pub(crate) fn add_timed(&self, frames: u64, blocks: u64, ticks: u64, over_budget: bool) {
        self.block_timing.record_many(ticks, blocks);
        self.run_timing.record(ticks);
        bump(&self.timed_frames, frames);
        if over_budget {
            bump(&self.blocks_over_budget, blocks);
            bump(&self.runs_over_budget, 1);
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

    pub fn runs_over_budget(&self) -> u64 {
        self.runs_over_budget.load(Relaxed)
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
