//! Fast, accurate-enough `log2` and `exp2` for per-sample gain computation.
//!
//! Both are branch-free, deterministic (pure float arithmetic, no table) and accurate to better than
//! 2e-6 in log2 units (1e-5 dB) and 1e-6 relative respectively over the range the dynamics processors use.

/// `log2(x)` for `x` a positive, normal, finite `f32`. Callers clamp into range first.
#[inline(always)]
pub fn log2(x: f32) -> f32 {
    let bits = x.to_bits();
    // Split x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
    let off = bits.wrapping_sub(0x3f35_04f3); // bits of sqrt(1/2)
    let e = (off as i32) >> 23;
    let m = f32::from_bits(bits.wrapping_sub((e as u32) << 23));
    // log2(m) = 2/ln2 * atanh(s), s = (m-1)/(m+1), |s| < 0.1716.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0))));
    e as f32 + series * std::f32::consts::LOG2_E * 2.0
}

/// `2^x`, for `x` clamped to [-126, 126].
#[inline(always)]
pub fn exp2(x: f32) -> f32 {
    let x = x.clamp(-126.0, 126.0);
    // Round to nearest by adding and removing 1.5 * 2^23 (exact for |x| < 2^22): baseline x86-64 has no
    // rounding instruction, and `f32::round` would be a library call per sample.
    let i = (x + 12_582_912.0) - 12_582_912.0;
    let f = x - i; // [-0.5, 0.5]
    let t = f * std::f32::consts::LN_2;
    // e^t, Taylor to degree 6: truncation error below 1.3e-7 for |t| <= 0.347.
    let p = 1.0 + t * (1.0 + t * (0.5 + t * (1.0 / 6.0 + t * (1.0 / 24.0 + t * (1.0 / 120.0 + t * (1.0 / 720.0))))));
    let scale = f32::from_bits((((i as i32) + 127) as u32) << 23);
    p * scale
}

/// 20·log10(x) via [`log2`].
#[inline(always)]
pub fn gain_to_db(x: f32) -> f32 {
    log2(x) * DB_PER_LOG2
}

/// 10^(db/20) via [`exp2`].
#[inline(always)]
pub fn db_to_gain(db: f32) -> f32 {
    exp2(db * (1.0 / DB_PER_LOG2))
}

/// 20·log10(2): decibels per doubling.
pub const DB_PER_LOG2: f32 = 6.020_6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_matches_std_across_the_range() {
        let mut x = 1e-12f32;
        while x < 1e12 {
            let err = (log2(x) as f64 - (x as f64).log2()).abs();
            assert!(err < 2e-6, "log2({x}) off by {err}");
            x *= 1.013;
        }
    }

    #[test]
    fn exp2_matches_std_across_the_range() {
        let mut x = -60.0f32;
        while x < 60.0 {
            let want = (x as f64).exp2();
            let rel = ((exp2(x) as f64 - want) / want).abs();
            assert!(rel < 1e-6, "exp2({x}) off by {rel}");
            x += 0.0137;
        }
    }
}
