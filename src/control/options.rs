//! What an engine is started with: [`EngineOptions`].

/// Options for [`Engine::new`](super::Engine::new).
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// The largest block the audio side processes at once (longer calls are cut into blocks of this size).
    pub max_block: usize,
    /// 1 runs the single-threaded reference executor; more runs branches in parallel on this many threads
    /// (the thread that drives the audio side, and `threads - 1` workers).
    pub threads: usize,
    /// How the parallel executor picks between running a level's branches concurrently or one after
    /// another. Either way the output is the same.
    pub parallelism: Parallelism,
    /// Record per-node and per-block timing and the output's levels (see [`Engine::metrics`](super::Engine::metrics)).
    pub monitor: bool,
    /// Length of the crossfade when the graph's structure changes while it plays.
    pub crossfade_ms: f64,
    /// For offline rendering: how many blocks a run of the audio side may hold. Each level of the graph
    /// then hands its branches to the worker threads once per run instead of once per block, which
    /// amortizes the hand-off; every node still gets blocks of at most `max_block` frames and the output
    /// bits are the same. It delays nothing but costs latency where something waits on each block: keep 1
    /// (the default) for real-time use.
    pub batch: usize,
    /// Whether the audio side runs in real time (a device callback; the default) or offline (rendering a
    /// file, where nothing is late). Either way a plugin's deadline counts only the CPU time it used itself,
    /// so a thread that the machine preempted never faults a plugin, and the output does not depend on how
    /// busy the machine is. In real time a plugin over its time budget for several blocks in a row is also
    /// bypassed (the watchdog); offline a slow plugin only makes the render slower.
    pub realtime: bool,
    /// The rate to prepare the graph at, in place of its file's `sample_rate` (or of the 48 kHz a file
    /// without one is validated at): a device's rate. Parameters whose range depends on the rate are
    /// checked again at it ([`Graph::at_rate`](crate::Graph::at_rate)).
    pub sample_rate: Option<u32>,
    /// Whether the output's meter and metered nodes' meters measure loudness (BS.1770-4 / EBU R128) as
    /// well as levels: their readings then appear in [`Levels`](crate::monitor::Levels) (momentary,
    /// short-term and integrated loudness, loudness range, true peak). Off by default: it costs the audio
    /// side a K-weighting filter per channel, and true peak a 4× interpolator (see `BENCHMARKS.md`).
    pub loudness: LoudnessMetering,
}

/// See [`EngineOptions::loudness`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoudnessMetering {
    /// Levels only.
    #[default]
    Off,
    /// Momentary, short-term and integrated loudness and loudness range.
    Loudness,
    /// All of that and true peak (4× oversampled).
    WithTruePeak,
}

impl LoudnessMetering {
    /// A loudness meter for `channels` at `rate` Hz, if loudness is measured (control side: allocates).
    pub fn meter(self, rate: u32, channels: usize) -> Option<crate::dsp::loudness::LoudnessMeter> {
        (self != Self::Off && channels > 0)
            .then(|| crate::dsp::loudness::LoudnessMeter::new(rate, channels, self == Self::WithTruePeak))
    }
}

/// See [`EngineOptions::parallelism`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// Measure both ways on the first blocks (and now and then later) and use the faster.
    #[default]
    Adaptive,
    /// Always run branches concurrently (for tests and benchmarks).
    Always,
}

/// How long the workers of a batched (offline) engine spin for the next job before they park.
pub(super) const OFFLINE_SPIN: std::time::Duration = std::time::Duration::from_millis(5);

impl EngineOptions {
    /// Options for offline work (rendering a file, a benchmark, an array): blocks of `max_block` frames on
    /// `threads` threads, batched for the workers ([`offline_batch`](Self::offline_batch)), nothing due in
    /// real time; the rest the defaults.
    pub fn offline(max_block: usize, threads: usize) -> Self {
        Self { max_block, threads, batch: Self::offline_batch(max_block, threads), realtime: false, ..Self::default() }
    }

    /// The [`batch`](Self::batch) for offline work at `max_block` frames per block on `threads` threads: runs
    /// of 16384 frames with several threads, since each run ends with the last chunks of the branches after
    /// the others' (the output mix, a limiter), which leave a thread idle, and longer runs pay that less often
    /// (3% to 9% faster than 4096 with two threads on `parallel.ron`, BENCHMARKS.md); on one thread, 4096,
    /// whose buffers stay in cache between a branch and the next (16384 was 2% slower there).
    pub fn offline_batch(max_block: usize, threads: usize) -> usize {
        let run = if threads > 1 { 16384 } else { 4096 };
        (run / max_block.max(1)).max(1)
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_block: 512,
            threads: 1,
            parallelism: Parallelism::Adaptive,
            monitor: true,
            crossfade_ms: 20.0,
            batch: 1,
            realtime: true,
            sample_rate: None,
            loudness: LoudnessMetering::Off,
        }
    }
}
