//! A log-scale histogram of durations: per node and per block.

/// Sub-buckets per octave of the timing histogram (8: each bucket spans 1/8 octave, about 9%).
const PER_OCTAVE: u32 = 8;
/// The histogram covers 2^4 ns (16 ns) to 2^34 ns (17 s).
const MIN_OCTAVE: u32 = 4;
const OCTAVES: u32 = 30;
pub(crate) const BUCKETS: usize = (OCTAVES * PER_OCTAVE) as usize + 2;

/// Durations of repeated work: count, mean, maximum and a log-scale histogram for quantiles. The unit is
/// the recorder's: the engine records `clock` ticks and converts when it reports; the `_ns` names
/// say what the values usually are.
#[derive(Clone)]
pub struct Timing {
    pub(crate) calls: u64,
    pub(crate) sum_ns: u64,
    pub(crate) max_ns: u64,
    pub(crate) buckets: [u32; BUCKETS],
}

impl Default for Timing {
    fn default() -> Self {
        Self { calls: 0, sum_ns: 0, max_ns: 0, buckets: [0; BUCKETS] }
    }
}

impl std::fmt::Debug for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timing")
            .field("calls", &self.calls)
            .field("mean_ns", &self.mean_ns())
            .field("p99_ns", &self.quantile_ns(0.99))
            .field("max_ns", &self.max_ns)
            .finish()
    }
}

pub(crate) fn bucket_of(ns: u64) -> usize {
    if ns < 1 << MIN_OCTAVE {
        return 0;
    }
    let octave = 63 - ns.leading_zeros();
    if octave >= MIN_OCTAVE + OCTAVES {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (octave - 3)) & 7) as u32;
    1 + ((octave - MIN_OCTAVE) * PER_OCTAVE + sub) as usize
}

/// The middle of a bucket, in ns.
fn bucket_value(b: usize) -> u64 {
    if b == 0 {
        return 1 << (MIN_OCTAVE - 1);
    }
    if b == BUCKETS - 1 {
        return 1 << (MIN_OCTAVE + OCTAVES);
    }
    let k = (b - 1) as u32;
    let (octave, sub) = (MIN_OCTAVE + k / PER_OCTAVE, u64::from(k % PER_OCTAVE));
    let lo = (8 + sub) << (octave - 3);
    let hi = (9 + sub) << (octave - 3);
    (lo + hi) / 2
}

impl Timing {
    /// Records one duration. Constant time, no allocation.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.calls += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
        let b = &mut self.buckets[bucket_of(ns)];
        *b = b.saturating_add(1);
    }

    /// Durations recorded.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Their sum.
    pub fn total_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The longest.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// Their mean (0 with none).
    pub fn mean_ns(&self) -> f64 {
        if self.calls == 0 { 0.0 } else { self.sum_ns as f64 / self.calls as f64 }
    }

    /// The `q` quantile (0..=1), to within the histogram's 1/8-octave resolution (about ±5%), and never above
    /// the maximum seen.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.calls == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.calls as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &count) in self.buckets.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return bucket_value(b).min(self.max_ns);
            }
        }
        self.max_ns
    }
}
