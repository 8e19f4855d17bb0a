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

/// Defines `fn $name(&mut self, args)`, which runs `$with::<true>` compiled for AVX2 + FMA where the
/// processor's `fma` field is set and `$with::<false>` otherwise, and `fn $fma`, that compiled entry. The
/// processors set `fma` from [`fma_kernels`] when they are built.
macro_rules! fma_dispatch {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) via $fma:ident => $with:ident) => {
        $(#[$attr])*
        $vis fn $name(&mut self, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if self.fma {
                #[allow(unsafe_code)]
                // SAFETY: `fma` is set only where `fma_kernels()` found AVX2 and FMA on this CPU.
                unsafe {
                    self.$fma($($arg),*)
                };
                return;
            }
            self.$with::<false>($($arg),*);
        }

        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $fma(&mut self, $($arg: $ty),*) {
            self.$with::<true>($($arg),*);
        }
    };
}

pub mod biquad;
pub mod compressor;
pub mod convolver;
pub mod denormal;
pub mod fastmath;
pub mod lanes;
pub mod limiter;
pub mod loudness;
pub mod simple;
pub mod smooth;

/// Whether the DSP kernels run their AVX2 + FMA versions: on x86-64 CPUs with both features, unless the
/// environment variable `FXGRAPH_KERNELS` is `baseline` (read once, at the first processor built).
///
/// Every processor decides once, when it is built, so its output does not change while it runs; the
/// multi-threaded and single-threaded executors run the same kernels, so they stay bit-identical. The two
/// versions differ only in rounding: a fused multiply-add rounds once where a multiply and an add round
/// twice, so both are within a few ulps of exact `f64` arithmetic, but their bits differ. `baseline` gives
/// the same bits on every x86-64 machine.
pub fn fma_kernels() -> bool {
    static FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FMA.get_or_init(|| {
        let baseline = std::env::var_os("FXGRAPH_KERNELS").is_some_and(|v| v == "baseline");
        !baseline && cpu_has_fma()
    })
}

fn cpu_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a·b + c`: one fused multiply-add (rounded once) when `FMA`, otherwise a multiply and an add. Call the
/// `FMA` form only from code compiled with the `fma` target feature, where it is one instruction (elsewhere
/// it is a library call).
#[inline(always)]
pub fn mac<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// [`mac`] in `f32`.
#[inline(always)]
pub fn macf<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

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

#[cfg(test)]
mod tests {
    use super::biquad::{BandKind, BandSettings, BiquadCascade};
    use super::compressor::{Compressor, CompressorSettings};
    use super::limiter::{Limiter, LimiterSettings};
    use crate::io::demo::DemoSignal;
    use crate::node::AudioOut;

    const FRAMES: usize = 48000 * 2;

    /// Two seconds of the demo signal (music-like), planar stereo, 12 dB hotter so that the compressor and
    /// the limiter work.
    fn music() -> Vec<f32> {
        let mut data = vec![0.0f32; 2 * FRAMES];
        let mut demo = DemoSignal::new(48000, 2, FRAMES as f64 / 48000.0);
        demo.fill(&mut AudioOut::new(&mut data, FRAMES, 2, FRAMES));
        data.iter_mut().for_each(|x| *x *= 4.0);
        data
    }

    /// Runs `process` over `data` in blocks of 480 frames.
    fn blocks(data: &mut [f32], mut process: impl FnMut(&mut AudioOut<'_>)) {
        let mut out = AudioOut::new(data, FRAMES, 2, FRAMES);
        for at in (0..FRAMES).step_by(480) {
            process(&mut out.slice_mut(at, 480.min(FRAMES - at)));
        }
    }

    /// Largest difference between the two kernel sets' outputs, relative to the signal's peak.
    fn worst(a: &[f32], b: &[f32]) -> f64 {
        let peak = a.iter().fold(0f32, |p, x| p.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |d, (x, y)| d.max((x - y).abs()));
        f64::from(diff) / f64::from(peak)
    }

    #[test]
    fn the_fma_and_baseline_kernels_differ_only_by_rounding() {
        if !super::fma_kernels() {
            eprintln!("this CPU (or FXGRAPH_KERNELS) runs the baseline kernels only: nothing to compare");
            return;
        }
        let input = music();
        let bands: Vec<BandSettings> = [(40.0, 6.0, 2.0), (100.0, 3.0, 1.0), (1000.0, -2.0, 1.0), (10000.0, 2.0, 0.7)]
            .into_iter()
            .map(|(freq_hz, gain_db, q)| BandSettings { kind: BandKind::Peak, freq_hz, gain_db, q })
            .chain([BandSettings { kind: BandKind::LowPass, freq_hz: 12000.0, gain_db: 0.0, q: 0.707 }])
            .collect();
        let comp = CompressorSettings {
            threshold_db: -18.0,
            ratio: 4.0,
            attack_ms: 10.0,
            release_ms: 100.0,
            knee_db: 6.0,
            makeup_db: 3.0,
        };
        let lim = LimiterSettings { ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0, true_peak: false };
        let mut outputs = Vec::new();
        for plain in [false, true] {
            let mut eq = BiquadCascade::new(bands.clone(), 48000);
            let mut c = Compressor::new(&comp, 48000);
            let mut l = Limiter::new(&lim, 48000);
            if plain {
                (eq, c, l) = (eq.plain_arithmetic(), c.plain_arithmetic(), l.plain_arithmetic());
            }
            eq.prepare(2, 480);
            c.prepare(480);
            l.prepare(2, 480);
            let mut stages = vec![input.clone(), input.clone(), input.clone()];
            blocks(&mut stages[0], |a| eq.process(a));
            blocks(&mut stages[1], |a| c.process(a));
            blocks(&mut stages[2], |a| l.process(a));
            outputs.push(stages);
        }
        // The f64 filters differ in the last bits of f64 (relative to the signal, some 1e-16 of its peak,
        // amplified by the 40 Hz recursion), so each f32 sample they round to differs by one f32 step of
        // its own size at most, plus that.
        let eq = worst(&outputs[1][0], &outputs[0][0]);
        let peak = input.iter().fold(0f32, |p, x| p.max(x.abs()));
        for (a, b) in outputs[1][0].iter().zip(&outputs[0][0]) {
            let bound = a.abs().max(b.abs()) * f32::EPSILON + peak * 1e-12;
            assert!((a - b).abs() <= bound, "biquads: {a} against {b}");
        }
        // The f32 envelopes: one rounding a frame, which a one-pole smoother can accumulate over its time
        // constant: at most 2400 frames (50 ms) x 2^-24 = 1.4e-4 of the limiter's gain, and 4800 frames
        // (100 ms) x 2^-24 of the compressor's gain reduction in dB (some 10 dB here: 3e-3 dB, 3.4e-4 of
        // its gain).
        let c = worst(&outputs[1][1], &outputs[0][1]);
        assert!(c < 3.4e-4, "compressor: {c:e}");
        let l = worst(&outputs[1][2], &outputs[0][2]);
        assert!(l < 1.4e-4, "limiter: {l:e}");
        // They are different kernels: a fused multiply-add is not a multiply and an add.
        assert_ne!(outputs[0], outputs[1]);
        // And the ceiling holds for both.
        let ceiling = super::db_to_gain(-1.0) as f32;
        for out in &outputs {
            assert!(out[2].iter().all(|x| x.abs() <= ceiling));
        }
        eprintln!("largest differences relative to peak: biquads {eq:e}, compressor {c:e}, limiter {l:e}");
    }
}
