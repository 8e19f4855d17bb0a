//! The two ends of a block: the call's input copied into the plan, and the plan's output copied into the
//! call's. The plan calls them a range of frames at a time, possibly from a worker thread (see
//! [`plan::Ends`]).
#![allow(unsafe_code)] // The plan hands over parts of its buffers by pointer; see the SAFETY notes.

use super::{Input, Output, plan};
use std::sync::atomic::{AtomicU64, Ordering};

/// A block's input and output as the plan's [ends](plan::Ends): the call's buffers, from the block's offset
/// `at` in the call.
pub(super) struct CallEnds<'i, 'o, 'a, 'b> {
    pub input: Input<'i>,
    pub output: std::cell::UnsafeCell<&'o mut Output<'a, 'b>>,
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
unsafe impl Sync for CallEnds<'_, '_, '_, '_> {}

impl plan::Ends for CallEnds<'_, '_, '_, '_> {
    unsafe fn input(&self, dst: *mut f32, at: usize, n: usize) {
        // SAFETY: those frames of `dst` are this call's (the trait's contract).
        let bad = unsafe { write_input(dst, self.stride, self.in_channels, self.input, self.at + at, n) };
        if bad > 0 {
            self.nonfinite.fetch_add(bad, Ordering::Relaxed);
        }
    }

    unsafe fn output(&self, src: *const f32, at: usize, n: usize) {
        // SAFETY: one call at a time (the trait's contract), so this is the only use of the output.
        let output = unsafe { &mut **self.output.get() };
        // SAFETY: those frames of `src` are final (the trait's contract).
        unsafe { read_output(src, self.stride, self.out_channels, output, self.at + at, n) };
    }
}

/// Copies `n` frames of the call's input at `at` to `dst` (planar, `stride` apart), replacing NaN and
/// infinity with 0. Returns how many were replaced.
///
/// # Safety
/// `n` samples from `dst + c * stride` for each of the `channels` are valid for writes, and nothing else
/// accesses them meanwhile.
unsafe fn write_input(dst: *mut f32, stride: usize, channels: usize, input: Input<'_>, at: usize, n: usize) -> u64 {
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
unsafe fn write_input_avx2(
    dst: *mut f32,
    stride: usize,
    channels: usize,
    input: Input<'_>,
    at: usize,
    n: usize,
) -> u64 {
    // SAFETY: the contract.
    unsafe { write_input_with(dst, stride, channels, input, at, n) }
}

/// [`write_input`]'s body, inlined into each version.
///
/// # Safety
/// As [`write_input`].
#[inline(always)]
unsafe fn write_input_with(
    dst: *mut f32,
    stride: usize,
    channels: usize,
    input: Input<'_>,
    at: usize,
    n: usize,
) -> u64 {
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
        match input {
            Input::Planar(src) if c < src.channels() => {
                nonfinite += clean(d, src.channel(c)[at..at + n].iter().copied())
            }
            Input::Interleaved(src, src_ch) if c < src_ch => {
                nonfinite += clean(d, src[at * src_ch..(at + n) * src_ch].iter().skip(c).step_by(src_ch).copied());
            }
            _ => d.fill(0.0),
        }
    }
    nonfinite
}

/// Copies `n` frames of the graph's output (planar, `stride` apart, from `src`) into the call's output at
/// `at`.
///
/// # Safety
/// `n` samples from `src + c * stride` for each of the `channels` are valid and not written meanwhile.
unsafe fn read_output(
    src: *const f32,
    stride: usize,
    channels: usize,
    output: &mut Output<'_, '_>,
    at: usize,
    n: usize,
) {
    // SAFETY: by the contract.
    let plane = |c: usize| unsafe { std::slice::from_raw_parts(src.add(c * stride), n) };
    match output {
        Output::Planar(dst) => {
            for c in 0..dst.channels() {
                let d = &mut dst.channel_mut(c)[at..at + n];
                if c < channels {
                    d.copy_from_slice(plane(c));
                } else {
                    d.fill(0.0);
                }
            }
        }
        Output::Interleaved(dst, dst_ch) => {
            let dst_ch = *dst_ch;
            if dst_ch == 2 && channels == 2 {
                let (l, r) = (plane(0), plane(1));
                for ((f, &l), &r) in dst[at * 2..(at + n) * 2].chunks_exact_mut(2).zip(l).zip(r) {
                    f[0] = l;
                    f[1] = r;
                }
            } else {
                for (i, f) in dst[at * dst_ch..(at + n) * dst_ch].chunks_exact_mut(dst_ch).enumerate() {
                    for (c, v) in f.iter_mut().enumerate() {
                        // SAFETY: frame `i < n` of channel `c`, inside the contract's samples.
                        *v = if c < channels { unsafe { *src.add(c * stride + i) } } else { 0.0 };
                    }
                }
            }
        }
    }
}
