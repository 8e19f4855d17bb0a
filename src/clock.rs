//! A cheap clock for the monitor's per-node timing, and the thread's CPU clock for plugin deadlines.
//!
//! On x86-64 it reads the time-stamp counter (`rdtsc`, about 25 ns in the CI VM against about 53 ns for
//! `Instant::now`, which is a system call there), calibrated once per process against `Instant`. Modern
//! x86-64 CPUs have an invariant TSC (constant rate, synchronized across cores), which is what Linux's `tsc`
//! clocksource also relies on. Elsewhere it counts nanoseconds from `Instant`.
#![allow(unsafe_code)] // `_rdtsc` is an unsafe intrinsic, `clock_gettime` a system call; see the SAFETY notes.

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

/// CPU time the calling thread has used, in nanoseconds: a system call (about 0.5 µs in the CI VM, where
/// the vDSO does not serve thread clocks), so the audio side reads it through [`CpuMark`].
pub fn thread_cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime only writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
    }
    #[cfg(not(unix))]
    {
        // No thread clock: wall time stands in (a preempted thread is then charged as before).
        (now() as f64 * ns_per_tick()) as u64
    }
}

thread_local! {
    /// This thread's latest CPU-time reading (ns) and the tick count ([`now`]) when it was taken (0: none
    /// yet). Const-initialized without a destructor: reading it never allocates.
    static CPU_SAMPLE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// The start of a call whose own CPU time may be asked for afterwards, so that a thread the scheduler
/// preempted is not mistaken for a plugin that overran: a late block is the machine's doing, time spent
/// computing is the plugin's.
///
/// Reading a thread's CPU clock is a system call, too slow for every block. A mark instead reuses the
/// thread's latest reading when it is younger than a bound (`max_age`): the thread cannot have used more CPU
/// time since that reading than the wall time that has passed, so the CPU time at the start of the call is
/// known within that age. [`used_at_least`](Self::used_at_least) subtracts the whole age (a lower bound on
/// the call's own time), [`used_at_most`](Self::used_at_most) none of it (an upper bound).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMark {
    /// Ticks ([`now`]) at the start of the call.
    pub start: u64,
    /// The thread's CPU time at the reading the mark is based on (ns).
    cpu_ns: u64,
    /// Wall time from that reading to the start (ns): at most the CPU time used in between.
    age_ns: u64,
}

impl CpuMark {
    /// Marks the start of a call on this thread. Reads the thread's CPU clock only when `exact` is set or
    /// the latest reading is older than `max_age` ticks.
    #[inline]
    pub fn start(max_age: u64, exact: bool) -> Self {
        let start = now();
        let (cpu_ns, at) = CPU_SAMPLE.get();
        let age = start.wrapping_sub(at);
        if !exact && at != 0 && age <= max_age {
            return Self { start, cpu_ns, age_ns: (age as f64 * ns_per_tick()) as u64 };
        }
        let cpu_ns = thread_cpu_ns();
        let start = now();
        CPU_SAMPLE.set((cpu_ns, start));
        Self { start, cpu_ns, age_ns: 0 }
    }

    /// Reads the thread's CPU clock (keeping the reading for later marks).
    fn cpu_now(&self) -> u64 {
        let cpu = thread_cpu_ns();
        CPU_SAMPLE.set((cpu, now()));
        cpu
    }

    /// CPU time this thread has used since the mark, at least (ns). On the thread that made the mark.
    pub fn used_at_least(&self) -> u64 {
        self.cpu_now().saturating_sub(self.cpu_ns.saturating_add(self.age_ns))
    }

    /// CPU time this thread has used since the mark, at most (ns). On the thread that made the mark.
    pub fn used_at_most(&self) -> u64 {
        self.cpu_now().saturating_sub(self.cpu_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::{CpuMark, ns_per_tick, thread_cpu_ns};

    #[test]
    fn a_mark_charges_the_thread_s_work_and_not_its_sleep() {
        let ms = |ns: u64| ns as f64 / 1e6;
        let age = (1e6 / ns_per_tick()) as u64; // 1 ms
        // Asleep for 30 ms: hardly any CPU time, whether the mark read the clock or reused a reading.
        for exact in [true, false] {
            let mark = CpuMark::start(age, exact);
            std::thread::sleep(std::time::Duration::from_millis(30));
            assert!(mark.used_at_most() < 3_000_000, "exact {exact}: {} ms while asleep", ms(mark.used_at_most()));
        }
        // 20 ms of CPU time (however long that takes on a busy machine): all of it is charged, within the
        // age of the reading the mark is based on.
        for exact in [true, false] {
            let mark = CpuMark::start(age, exact);
            let until = thread_cpu_ns() + 20_000_000;
            while thread_cpu_ns() < until {
                std::hint::spin_loop();
            }
            let (least, most) = (mark.used_at_least(), mark.used_at_most());
            assert!((20_000_000..25_000_000).contains(&most), "exact {exact}: at most {} ms", ms(most));
            assert!(least + 1_100_000 >= most && least <= most, "exact {exact}: at least {} ms", ms(least));
        }
    }

    #[test]
    fn ticks_advance_at_the_calibrated_rate() {
        let per_tick = ns_per_tick();
        let (t0, c0) = (std::time::Instant::now(), super::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let measured = super::now().wrapping_sub(c0) as f64 * per_tick;
        let real = t0.elapsed().as_nanos() as f64;
        assert!((measured - real).abs() / real < 0.02, "clock says {measured} ns, Instant {real} ns");
    }
}
