//! Proves the per-block path allocates nothing: a counting global allocator watches at least 1000 blocks
//! of a graph holding every built-in node kind, with both executors.
//!
//! Allocations are counted on the threads that do the engine's work: the thread calling it and, with the
//! parallel executor, every worker of its pool. (Other threads of the process, such as the test harness or
//! the workers of other engines starting up, are not part of the audio path.)

use fxgraph::engine::Parallelism;
use fxgraph::{AudioIn, AudioOut, Engine, EngineOptions, Graph, Registry};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the threads whose allocations count. Const-initialized without a destructor, so reading it
    /// from the allocator never allocates.
    static AUDIO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed) && AUDIO_THREAD.with(|t| t.get())
}

// SAFETY: defers every operation to the system allocator; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Every built-in kind, every band kind and a WebAssembly plugin, in two parallel branches that meet again (so summing and
/// latency compensation run too).
const EVERY_KIND: &str = r#"(
    sample_rate: 48000,
    channels: 2,
    nodes: {
        "eq": Eq(bands: [
            (kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0),
            (kind: LowShelf, freq_hz: 100.0, gain_db: 2.0, q: 0.7),
            (kind: HighShelf, freq_hz: 9000.0, gain_db: -2.0, q: 0.7),
            (kind: LowPass, freq_hz: 18000.0, q: 0.7),
            (kind: HighPass, freq_hz: 20.0, q: 0.7),
            (kind: BandPass, freq_hz: 500.0, q: 0.3),
            (kind: Notch, freq_hz: 60.0, q: 5.0),
            (kind: AllPass, freq_hz: 2000.0, q: 0.7),
        ]),
        "comp": Compressor(threshold_db: -20.0, ratio: 4.0, attack_ms: 5.0, release_ms: 50.0, knee_db: 6.0, makeup_db: 3.0),
        "bass": BassBoost(gain_db: 4.0),
        "treble": TrebleBoost(gain_db: 2.0),
        "width": StereoWidth(width: 1.5),
        "gain": Gain(gain_db: 6.0),
        "early": Limiter(ceiling_db: -3.0, lookahead_ms: 2.0, release_ms: 20.0),
        "limiter": Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0),
        "filter": Wasm(path: "plugins/wasm/biquad_filter.wasm", config: {"cutoff_hz": 15000.0}),
    },
    edges: [
        ("input", "eq"), ("eq", "comp"), ("comp", "early"), ("early", "filter"), ("filter", "limiter"),
        ("input", "bass"), ("bass", "treble"), ("treble", "width"), ("width", "gain"), ("gain", "limiter"),
        ("limiter", "output"),
    ],
)"#;

fn blocks(engine: &mut Engine, count: usize, block: usize) -> u64 {
    let channels = 2;
    let mut input = vec![0.0f32; channels * block];
    let mut output = vec![0.0f32; channels * block];
    let mut phase = 0.0f32;
    AUDIO_THREAD.with(|t| t.set(true));
    if let Some(pool) = engine.thread_pool() {
        pool.broadcast(|_| AUDIO_THREAD.with(|t| t.set(true)));
    }
    engine.run(|engine| {
        COUNTING.store(true, Ordering::SeqCst);
        for b in 0..count {
            for i in 0..block {
                phase += 0.031;
                let x = phase.sin() * if b % 50 < 25 { 1.5 } else { 0.05 };
                input[i] = x;
                input[block + i] = -x;
            }
            // Vary the block length too, up to the maximum.
            let frames = block - (b % 3);
            engine.process(
                &AudioIn::new(&input, block, channels, frames),
                &mut AudioOut::new(&mut output, block, channels, frames),
            );
        }
        COUNTING.store(false, Ordering::SeqCst);
    });
    AUDIO_THREAD.with(|t| t.set(false));
    if let Some(pool) = engine.thread_pool() {
        pool.broadcast(|_| AUDIO_THREAD.with(|t| t.set(false)));
    }
    assert!(output.iter().all(|x| x.is_finite()));
    assert!(output.iter().any(|&x| x != 0.0), "the graph produced only silence");
    ALLOCATIONS.swap(0, Ordering::SeqCst)
}

#[test]
fn per_block_processing_allocates_nothing() {
    // The counter works: an allocation inside the window, on a counted thread, is seen.
    AUDIO_THREAD.with(|t| t.set(true));
    COUNTING.store(true, Ordering::SeqCst);
    let probe = std::hint::black_box(vec![1u8; 64]);
    COUNTING.store(false, Ordering::SeqCst);
    AUDIO_THREAD.with(|t| t.set(false));
    drop(probe);
    assert_eq!(ALLOCATIONS.swap(0, Ordering::SeqCst), 1);

    let cases = [(1, Parallelism::Adaptive), (2, Parallelism::Always), (2, Parallelism::Adaptive)];
    let mut engines = Vec::new();
    for (threads, parallelism) in cases {
        for block in [64, 512] {
            let graph = Graph::parse(
                EVERY_KIND,
                "every_kind.ron",
                env!("CARGO_MANIFEST_DIR").as_ref(),
                &Registry::with_builtins(),
            )
            .expect("valid graph");
            let options = EngineOptions { max_block: block, threads, parallelism, monitor: true };
            let mut engine = Engine::new(graph, options).expect("engine starts");
            // The monitor is on, and one node is metered too.
            engine.meter_node("comp").expect("metered");
            engines.push((engine, options));
        }
    }
    for (engine, options) in &mut engines {
        let allocations = blocks(engine, 1200, options.max_block);
        assert_eq!(allocations, 0, "{allocations} allocations in 1200 blocks with {options:?}");
        let report = engine.metrics();
        assert!(report.nodes.iter().all(|n| n.calls == 1200), "the monitor recorded every block");
        assert!(report.nodes.iter().any(|n| n.levels.is_some()));
    }
}
