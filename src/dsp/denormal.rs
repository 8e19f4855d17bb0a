//! Flush-to-zero while processing, so decaying filter tails never fall into slow subnormal arithmetic.
//!
//! On x86-64 the guard sets the MXCSR flush-to-zero and denormals-are-zero bits for the current thread and
//! restores the previous value on drop (as nih-plug does around `process`). Every executor thread takes the
//! guard, so all threads compute with the same rules and the executors stay bit-identical. Elsewhere the
//! guard does nothing and the processors' own end-of-block state flushing (see [`flush`]) keeps state out
//! of the subnormal range.
#![allow(unsafe_code)] // MXCSR access needs inline assembly; see the SAFETY notes.

/// Sets FTZ/DAZ on creation and restores the previous floating-point mode on drop.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    previous: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushDenormals {
    /// Sets flush-to-zero and denormals-are-zero until the guard is dropped (x86-64; elsewhere nothing).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let previous = read_mxcsr();
            write_mxcsr(previous | FTZ_DAZ);
            Self { previous }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self {}
        }
    }
}

/// A thread's floating-point mode (MXCSR on x86-64), read with [`FloatMode::current`] on one thread and
/// applied with [`FloatMode::enter`] on another: work handed from a thread outside the audio side to a
/// worker then computes as it would have where it came from.
#[derive(Debug, Clone, Copy)]
pub struct FloatMode {
    #[cfg(target_arch = "x86_64")]
    mxcsr: u32,
}

impl FloatMode {
    /// The calling thread's mode.
    pub fn current() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self { mxcsr: read_mxcsr() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self {}
        }
    }

    /// Sets this mode on the calling thread until the guard is dropped (restoring the mode it had).
    pub fn enter(self) -> FlushDenormals {
        #[cfg(target_arch = "x86_64")]
        {
            let previous = read_mxcsr();
            write_mxcsr(self.mxcsr);
            FlushDenormals { previous }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FlushDenormals {}
        }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.previous);
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit MXCSR register into the local we point it at; SSE is part of the
    // x86-64 baseline.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
    }
    value
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(value: u32) {
    // SAFETY: ldmxcsr loads a value read from MXCSR (of this thread or another), possibly with only the FTZ
    // and DAZ mode bits changed; both are valid modes and affect only this thread's rounding of tiny values.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, readonly, preserves_flags));
    }
}

/// Returns 0 for values too small to matter (below 1e-25, about -500 dB) and for non-finite values, so
/// recursive state can neither linger in subnormal range nor stay NaN.
#[inline]
pub fn flush(x: f32) -> f32 {
    if x.abs() >= 1e-25 && x.is_finite() { x } else { 0.0 }
}

/// Frames between flushes of recursive filter state ([`flush_state`] with a tiny bound): counted from the
/// filter's start, so where state reaches zero does not depend on block boundaries.
pub const FLUSH_PERIOD: u64 = 4096;

/// Clears recursive filter state below `tiny` in magnitude, and any that is not finite (`tiny` 0: only
/// that), so it neither lingers in the subnormal range nor stays NaN.
pub fn flush_state<'a>(state: impl IntoIterator<Item = &'a mut f64>, tiny: f64) {
    for s in state {
        if !(s.abs() >= tiny && s.is_finite()) && *s != 0.0 {
            *s = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_clears_tiny_and_non_finite_values() {
        assert_eq!(flush(1e-30), 0.0);
        assert_eq!(flush(f32::NAN), 0.0);
        assert_eq!(flush(f32::INFINITY), 0.0);
        assert_eq!(flush(0.5), 0.5);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn guard_flushes_subnormal_results_and_restores_mode() {
        let before = read_mxcsr();
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        {
            let _guard = FlushDenormals::new();
            assert_eq!(std::hint::black_box(tiny * 0.5), 0.0);
        }
        assert_eq!(read_mxcsr(), before);
        assert!(std::hint::black_box(tiny * 0.5) > 0.0);
    }
}
