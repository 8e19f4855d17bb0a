//! The adaptive choice between running branches one after another or concurrently.

/// Choice between running branches serially or in parallel (a level's, or a dataflow run's), by measured
/// time. The choice affects speed only: both ways give the same bits.
///
/// Every `period` runs it makes [`Self::PROBES`] runs alternating serial and parallel
/// (alternating, so the worker threads are awake for the parallel probes as they would be in use), then
/// keeps the way whose best recent time is clearly lower. The fastest of a few runs is a steady measure on
/// a noisy machine; re-probing follows changes in load.
///
/// Where one thread keeps winning outright (the parallel runs no faster at all), the period doubles at
/// each probe that confirms it, up to [`Self::MAX_BACKOFF`] times the first: there the parallel probes are
/// the slow runs (each wakes the workers, which can take longer than a short block's work), and staying
/// serial a while longer risks nothing. A close call, and a parallel choice, are re-checked at the first
/// period, so that a change in the load on the workers' cores is noticed soon.
pub(super) struct Adaptive {
    base: u64,
    period: u64,
    /// Runs since this period's probes began.
    phase: u64,
    serial_ns: [f64; 4],
    parallel_ns: [f64; 4],
    serial_runs: usize,
    parallel_runs: usize,
    decided: bool,
    parallel: bool,
}

impl Adaptive {
    pub(super) const PROBES: u64 = 8;
    pub(super) const MAX_BACKOFF: u64 = 16;

    /// A choice that probes every `period` runs (more rarely while one thread keeps winning).
    pub(super) fn every(period: u64) -> Self {
        let period = period.max(Self::PROBES + 1);
        Self {
            base: period,
            period,
            phase: 0,
            serial_ns: [0.0; 4],
            parallel_ns: [0.0; 4],
            serial_runs: 0,
            parallel_runs: 0,
            decided: false,
            parallel: false,
        }
    }

    /// Whether to run this block's level in parallel, and whether to time it.
    pub(super) fn choose(&mut self) -> (bool, bool) {
        let phase = self.phase;
        self.phase = if phase + 1 >= self.period { 0 } else { phase + 1 };
        if phase < Self::PROBES {
            return (phase % 2 == 1, true);
        }
        if phase == Self::PROBES {
            let best = |v: &[f64; 4]| v.iter().copied().fold(f64::INFINITY, f64::min);
            // Parallel only when clearly (20%) faster: a close call is not worth waking a second core for.
            let (serial_ns, parallel_ns) = (best(&self.serial_ns), best(&self.parallel_ns));
            let parallel = parallel_ns < 0.8 * serial_ns;
            // Backing off only where parallel lost outright: a close call is probed at the first period.
            let confirmed = self.decided && !self.parallel && parallel_ns >= serial_ns;
            self.period = if confirmed { (self.period * 2).min(self.base * Self::MAX_BACKOFF) } else { self.base };
            (self.parallel, self.decided) = (parallel, true);
        }
        (self.parallel, false)
    }

    pub(super) fn record(&mut self, parallel: bool, ns: f64) {
        let (times, runs) = if parallel {
            (&mut self.parallel_ns, &mut self.parallel_runs)
        } else {
            (&mut self.serial_ns, &mut self.serial_runs)
        };
        times[*runs % times.len()] = ns;
        *runs += 1;
    }
}
