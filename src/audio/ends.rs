//! The two ends of a block: the call's input copied into the plan, and the plan's output copied into the
//! call's. The plan calls them a range of frames at a time, possibly from a worker thread (see
//! [`plan::Ends`]).
#![allow(unsafe_code)] // The plan hands over parts of its buffers by pointer; see the SAFETY notes.

use super::{RawAudio, plan};
use std::sync::atomic::{AtomicU64, Ordering};

/// A block's input and output as the plan's [ends](plan::Ends): the call's buffers, from the block's offset
/// `at` in the call. Both hold the call's frames; they are the same buffer when the call is in place (the
/// plan then takes a run's input before it hands over any of its output).
pub(super) struct CallEnds {
    pub input: RawAudio,
    pub output: RawAudio,
    pub at: usize,
    /// The plan's input channels and output channels.
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: usize,
    /// Non-finite input samples replaced.
    pub nonfinite: AtomicU64,
}

// SAFETY: the input is only read; the output is reached only in `output`, which the plan calls one call at a
// time (the trait's contract), each call's writes visible to the next.
unsafe impl Sync for CallEnds {}

impl plan::Ends for CallEnds {
    unsafe fn input(&self, dst: *mut f32, at: usize, n: usize) {
        // SAFETY: those frames of `dst` are this call's (the trait's contract).
        let bad = unsafe { write_input(dst, self.stride, self.in_channels, self.input, self.at + at, n) };
        if bad > 0 {
            self.nonfinite.fetch_add(bad, Ordering::Relaxed);
        }
    }

    unsafe fn output(&self, src: *const f32, at: usize, n: usize) {
        // SAFETY: those frames of `src` are final (the trait's contract), and one call at a time writes the
        // call's output, which holds the call's frames.
        unsafe { read_output(src, self.stride, self.out_channels, self.output, self.at + at, n) };
    }
}

/// Copies `n` frames of the call's input at `at` to `dst` (planar, `stride` apart), replacing NaN and
/// infinity with 0. Returns how many were replaced.
///
/// # Safety
/// `n` samples from `dst + c * stride` for each of the `channels` are valid for writes, and nothing else
/// accesses them meanwhile.
unsafe fn write_input(dst: *mut f32, stride: usize, channels: usize, input: RawAudio, at: usize, n: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if crate::dsp::fma_kernels() {
        // SAFETY: `fma_kernels()` found AVX2 on this CPU; the rest is this function's contract.
        return unsafe { write_input_avx2(dst, stride, channels, input, at, n) };
    }
    // SAFETY: this function's contract.
    unsafe { write_input_with(dst, stride, channels, input, at, n) }
}

/// [`write_input`] compiled for AVX2: the planar copy-and-check runs 8 samples a step instead of 4
/// (in a profile of `chain.ron` at block 512 driven one block per call: 2.3% of the samples with
/// baseline SSE2, 1.6% with AVX2).
///
/// # Safety
/// As [`write_input`], on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn write_input_avx2(dst: *mut f32, stride: usize, channels: usize, input: RawAudio, at: usize, n: usize) -> u64 {
    // SAFETY: the contract.
    unsafe { write_input_with(dst, stride, channels, input, at, n) }
}

/// [`write_input`]'s body, inlined into each version.
///
/// # Safety
/// As [`write_input`].
#[inline(always)]
unsafe fn write_input_with(dst: *mut f32, stride: usize, channels: usize, input: RawAudio, at: usize, n: usize) -> u64 {
    // Non-finite samples become 0.0 and are counted. Local counts keep the loops free of stores to memory
    // and of calls, so they vectorize.
    #[inline(always)]
    fn clean(d: &mut [f32], s: impl Iterator<Item = f32>) -> u64 {
        let mut bad = 0u32;
        for (d, s) in d.iter_mut().zip(s) {
            let finite = s.is_finite();
            bad += u32::from(!finite);
            *d = if finite { s } else { 0.0 };
        }
        u64::from(bad)
    }
    let mut nonfinite = 0u64;
    for c in 0..channels {
        // SAFETY: by the contract.
        let d = unsafe { std::slice::from_raw_parts_mut(dst.add(c * stride), n) };
        if c >= input.channels() {
            d.fill(0.0);
            continue;
        }
        nonfinite += match input {
            RawAudio::Strided { .. } | RawAudio::Planes { .. } => {
                // SAFETY: the input holds frames `at..at + n` of its channels (the contract), read only.
                clean(d, unsafe { std::slice::from_raw_parts(plane_start(input, c).add(at), n) }.iter().copied())
            }
            RawAudio::Interleaved { ptr, channels: ch } => {
                // SAFETY: as above.
                let frames = unsafe { std::slice::from_raw_parts(ptr.add(at * ch), n * ch) };
                clean(d, frames.iter().skip(c).step_by(ch).copied())
            }
            RawAudio::InterleavedF64 { ptr, channels: ch } => {
                // SAFETY: as above.
                let frames = unsafe { std::slice::from_raw_parts(ptr.add(at * ch), n * ch) };
                clean(d, frames.iter().skip(c).step_by(ch).map(|&s| s as f32))
            }
        };
    }
    nonfinite
}

/// Copies `n` frames of the graph's output (planar, `stride` apart, from `src`) into the call's output at
/// `at`.
///
/// # Safety
/// `n` samples from `src + c * stride` for each of the `channels` are valid and not written meanwhile; the
/// output holds frames `at..at + n`, and nothing else accesses them meanwhile.
unsafe fn read_output(src: *const f32, stride: usize, channels: usize, output: RawAudio, at: usize, n: usize) {
    // SAFETY: by the contract.
    let src_plane = |c: usize| unsafe { std::slice::from_raw_parts(src.add(c * stride), n) };
    // SAFETY: the output holds frames `at..at + n` of its channels (the contract).
    let dst_plane = |c: usize| unsafe { std::slice::from_raw_parts_mut(plane_start(output, c).add(at), n) };
    match output {
        RawAudio::Strided { channels: dst_ch, .. } | RawAudio::Planes { channels: dst_ch, .. } => {
            for c in 0..dst_ch {
                if c < channels {
                    dst_plane(c).copy_from_slice(src_plane(c));
                } else {
                    dst_plane(c).fill(0.0);
                }
            }
        }
        RawAudio::Interleaved { ptr, channels: dst_ch } => {
            // SAFETY: the output holds frames `at..at + n` (the contract).
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.add(at * dst_ch), n * dst_ch) };
            interleave(dst, dst_ch, channels, src_plane, |v| v);
        }
        RawAudio::InterleavedF64 { ptr, channels: dst_ch } => {
            // SAFETY: as above.
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.add(at * dst_ch), n * dst_ch) };
            interleave(dst, dst_ch, channels, src_plane, f64::from);
        }
    }
}

/// Interleaves the planes `plane(c)` of `channels` channels into `dst` (`dst_ch` samples a frame),
/// silencing the channels the graph lacks.
#[inline(always)]
fn interleave<'p, T: Copy + Default>(
    dst: &mut [T],
    dst_ch: usize,
    channels: usize,
    plane: impl Fn(usize) -> &'p [f32],
    convert: impl Fn(f32) -> T,
) {
    if dst_ch == 2 && channels == 2 {
        let (l, r) = (plane(0), plane(1));
        for ((f, &l), &r) in dst.chunks_exact_mut(2).zip(l).zip(r) {
            f[0] = convert(l);
            f[1] = convert(r);
        }
    } else {
        for c in 0..dst_ch {
            let column = dst.iter_mut().skip(c).step_by(dst_ch);
            if c < channels {
                column.zip(plane(c)).for_each(|(d, &s)| *d = convert(s));
            } else {
                column.for_each(|d| *d = T::default());
            }
        }
    }
}

/// Silences frames `at..at + n` of the call's output.
///
/// # Safety
/// The output holds those frames, and nothing else accesses them meanwhile.
pub(super) unsafe fn write_silence(output: RawAudio, at: usize, n: usize) {
    match output {
        RawAudio::Strided { channels, .. } | RawAudio::Planes { channels, .. } => {
            for c in 0..channels {
                // SAFETY: the output holds those frames (the contract).
                unsafe { std::slice::from_raw_parts_mut(plane_start(output, c).add(at), n) }.fill(0.0);
            }
        }
        RawAudio::Interleaved { ptr, channels } => {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts_mut(ptr.add(at * channels), n * channels) }.fill(0.0);
        }
        RawAudio::InterleavedF64 { ptr, channels } => {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts_mut(ptr.add(at * channels), n * channels) }.fill(0.0);
        }
    }
}

/// Whether `a` and `b` share samples (in place), judged by their channels' first samples: the same
/// pointer for interleaved buffers, any channel's start in common for planar ones (a caller's buffers either
/// are the same or do not overlap, `process_raw`'s contract).
///
/// # Safety
/// For [`RawAudio::Planes`], the array holds its channels' pointers.
pub(super) unsafe fn shares(a: RawAudio, b: RawAudio) -> bool {
    let starts = |r: RawAudio, c: usize| -> *const u8 {
        match r {
            // SAFETY: `c` is one of its channels, and a `Planes` array holds its pointers (the contract).
            RawAudio::Strided { .. } | RawAudio::Planes { .. } => unsafe { plane_start(r, c) }.cast_const().cast(),
            RawAudio::Interleaved { ptr, .. } => ptr.cast_const().cast(),
            RawAudio::InterleavedF64 { ptr, .. } => ptr.cast_const().cast(),
        }
    };
    (0..a.channels()).any(|i| (0..b.channels()).any(|j| starts(a, i) == starts(b, j)))
}

/// The first sample of channel `c` of a planar buffer.
///
/// # Safety
/// `buffer` is planar, `c` one of its channels, and for [`RawAudio::Planes`] the array holds its pointers.
unsafe fn plane_start(buffer: RawAudio, c: usize) -> *mut f32 {
    match buffer {
        RawAudio::Strided { ptr, stride, .. } => ptr.wrapping_add(c * stride),
        // SAFETY: channel `c`'s pointer is the array's `c`th (the contract).
        RawAudio::Planes { planes, .. } => unsafe { *planes.add(c) },
        RawAudio::Interleaved { .. } | RawAudio::InterleavedF64 { .. } => unreachable!("a planar buffer"),
    }
}
