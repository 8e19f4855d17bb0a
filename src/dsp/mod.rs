//! Built-in DSP: RBJ-cookbook biquads, a feed-forward compressor, a lookahead limiter, gain and stereo width.
//!
//! Every processor here works sample by sample with state carried across blocks, so its output does not
//! depend on how the signal is cut into blocks.
//!
//! # Non-finite input
//! NaN or infinity in a node's input never poisons its state for longer than the block it arrives in:
//! detectors clamp their level before taking logarithms, and every recursive state is checked at the end of
//! each block and cleared if it is not finite. The graph's input is sanitized too (non-finite samples become
//! 0.0) and the limiter treats non-finite input as silence, so its output is always finite.

pub mod biquad;
pub mod compressor;
pub mod denormal;
pub mod fastmath;
pub mod limiter;
pub mod simple;
pub mod smooth;

/// `max(acc, |x|)` as a compare-and-select, which compiles to one `maxps` on baseline x86-64 where
/// `f32::max` (NaN-aware) takes several instructions. With `acc` never NaN the result is the same as
/// `acc.max(x.abs())`: a NaN `x` is ignored either way.
#[inline(always)]
pub fn max_abs(acc: f32, x: f32) -> f32 {
    let a = x.abs();
    if a > acc { a } else { acc }
}

/// The smaller of two values as one compare-and-select (`minss`), for values that are never NaN (gains
/// from finite levels), where `f32::min`'s NaN handling costs several instructions a frame.
#[inline(always)]
pub(crate) fn fmin(a: f32, b: f32) -> f32 {
    if b < a { b } else { a }
}

/// The larger of two values as one compare-and-select (`maxss`), with [`fmin`]'s condition: never NaN.
#[inline(always)]
pub(crate) fn fmax(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// Converts decibels to a linear amplitude factor.
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// Converts a linear amplitude factor to decibels.
pub fn gain_to_db(gain: f64) -> f64 {
    20.0 * gain.log10()
}

/// The one-pole smoothing coefficient for time constant `ms` (time to reach 1 - 1/e of a step).
/// Zero time gives 0: the smoother follows its input at once.
pub fn one_pole_coeff(ms: f64, sample_rate: u32) -> f32 {
    if ms <= 0.0 { 0.0 } else { (-1.0 / (ms * 1e-3 * f64::from(sample_rate))).exp() as f32 }
}
