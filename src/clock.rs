//! A cheap clock for the monitor's per-node timing.
//!
//! On x86-64 it reads the time-stamp counter (`rdtsc`, about 25 ns in the CI VM against about 53 ns for
//! `Instant::now`, which is a system call there), calibrated once per process against `Instant`. Modern
//! x86-64 CPUs have an invariant TSC (constant rate, synchronized across cores), which is what Linux's `tsc`
//! clocksource also relies on. Elsewhere it counts nanoseconds from `Instant`.
#![allow(unsafe_code)] // `_rdtsc` is an unsafe intrinsic; see the SAFETY note.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The current tick count.
#[inline]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64 and only reads the counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        epoch().elapsed().as_nanos() as u64
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds per tick, measured once (over 2 ms) the first time it is asked for.
pub fn ns_per_tick() -> f64 {
    static NS_PER_TICK: OnceLock<f64> = OnceLock::new();
    *NS_PER_TICK.get_or_init(|| {
        if cfg!(not(target_arch = "x86_64")) {
            return 1.0;
        }
        let (t0, c0) = (Instant::now(), now());
        while t0.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let (ns, ticks) = (t0.elapsed().as_nanos() as f64, now().wrapping_sub(c0) as f64);
        if ticks > 0.0 { ns / ticks } else { 1.0 }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_advance_at_the_calibrated_rate() {
        let per_tick = super::ns_per_tick();
        let (t0, c0) = (std::time::Instant::now(), super::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let measured = super::now().wrapping_sub(c0) as f64 * per_tick;
        let real = t0.elapsed().as_nanos() as f64;
        assert!((measured - real).abs() / real < 0.02, "clock says {measured} ns, Instant {real} ns");
    }
}
