//! The live engine: a device-like thread drives the audio side at real-time pace while the control side
//! edits everything, with allocations and frees counted on the audio side; smoothing without clicks; graph
//! edits that keep state; sample-accurate events; reset; file watching.

mod common;

use fxgraph::control::AudioNode;
use fxgraph::node::{AudioIn, AudioOut};
use fxgraph::{AudioProcessor, Engine, EngineEvent, EngineOptions, Graph, Parallelism};
use std::alloc::{GlobalAlloc, Layout, System};
use std::f64::consts::TAU;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts allocations, reallocations and frees made while a thread does the audio side's work.
struct Counting;

/// Counting is armed for the whole process, so the tests of this file run one at a time (each holds
/// [`serial`]): no test's audio work can be counted in another's window, or disarm it early.
static ARMED: AtomicBool = AtomicBool::new(false);
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This file's tests, one at a time (a test that failed does not stop the others).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
static AUDIO_ALLOCS: AtomicU64 = AtomicU64::new(0);
static AUDIO_FREES: AtomicU64 = AtomicU64::new(0);
static FIRST_SIZE: AtomicU64 = AtomicU64::new(0);

fn counted(size: usize) -> bool {
    let hit = ARMED.load(Ordering::Relaxed) && fxgraph::alloc::in_audio_context();
    if hit {
        let _ = FIRST_SIZE.compare_exchange(0, size as u64, Ordering::Relaxed, Ordering::Relaxed);
    }
    hit
}

// SAFETY: defers every operation to the system allocator; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted(layout.size()) {
            AUDIO_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted(layout.size()) {
            AUDIO_FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted(new_size) {
            AUDIO_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SR: f64 = 48000.0;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A pass-through plugin that returns an error from one block after its `trip` parameter crosses 0.5
/// upwards while it runs (never from the values it is set up with), so it faults once, without a trap.
const TRIPWIRE: &str = r#"(module
  (memory (export "memory") 2)
  (global $armed (mut i32) (i32.const 0))
  (global $ready (mut i32) (i32.const 0))
  (global $last (mut f32) (f32.const 0))
  (data (i32.const 16) "\00\04\00\00\00\20\00\00")
  (func (export "fxg_abi_version") (result i32) (i32.const 1))
  (func (export "fxg_set_param") (param i32 f32) (result i32)
    (if (i32.and (global.get $ready)
          (i32.and (f32.le (global.get $last) (f32.const 0.5)) (f32.gt (local.get 1) (f32.const 0.5))))
      (then (global.set $armed (i32.const 1))))
    (global.set $last (local.get 1))
    (i32.const 0))
  (func (export "fxg_initialize") (param i32 i32 i32) (result i32) (global.set $ready (i32.const 1)) (i32.const 0))
  (func (export "fxg_buffers") (result i32) (i32.const 16))
  (func (export "fxg_start"))
  (func (export "fxg_process") (param $n i32) (result i32)
    (memory.copy (i32.const 8192) (i32.const 1024) (i32.const 4096))
    (if (global.get $armed) (then (global.set $armed (i32.const 0)) (return (i32.const 7))))
    (i32.const 0))
  (func (export "fxg_stop"))
  (func (export "fxg_cleanup")))"#;

const TRIPWIRE_MANIFEST: &str = r#"{"id": "test.tripwire", "name": "Tripwire", "version": "1.0.0", "abi_version": 1,
  "memory_limit_bytes": 1048576, "block_budget_us": 2000,
  "parameters": [{"id": 0, "key": "trip", "name": "Trip", "min": 0.0, "max": 1.0, "default": 0.0}]}"#;

/// Writes the tripwire plugin and a copy of the shipped biquad plugin into `dir`.
fn plugins(dir: &Path) {
    std::fs::write(dir.join("tripwire.wasm"), wat::parse_str(TRIPWIRE).expect("valid module")).expect("write");
    std::fs::write(dir.join("tripwire.json"), TRIPWIRE_MANIFEST).expect("write");
    for ext in ["wasm", "json"] {
        std::fs::copy(repo().join(format!("plugins/wasm/biquad_filter.{ext}")), dir.join(format!("biquad.{ext}")))
            .expect("copy the shipped plugin");
    }
}

/// Every built-in kind and both plugins, in two branches that meet at the limiter.
const G1: &str = r#"(
    sample_rate: 48000,
    channels: 2,
    nodes: {
        "eq": Eq(bands: [
            (kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0),
            (kind: LowShelf, freq_hz: 100.0, gain_db: 2.0, q: 0.7),
            (kind: HighShelf, freq_hz: 9000.0, gain_db: -2.0, q: 0.7),
            (kind: LowPass, freq_hz: 18000.0, q: 0.7),
            (kind: HighPass, freq_hz: 20.0, q: 0.7),
        ]),
        "comp": Compressor(threshold_db: -20.0, ratio: 4.0, attack_ms: 10.0, release_ms: 50.0, knee_db: 6.0, makeup_db: 3.0),
        "early": Limiter(ceiling_db: -3.0, lookahead_ms: 2.0, release_ms: 20.0),
        "filter": Wasm(path: "biquad.wasm", config: {"cutoff_hz": 15000.0}),
        "trip": Wasm(path: "tripwire.wasm"),
        "bass": BassBoost(gain_db: 4.0),
        "treble": TrebleBoost(gain_db: 2.0),
        "width": StereoWidth(width: 1.5),
        "gain": Gain(gain_db: -6.0),
        "limiter": Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0),
    },
    edges: [
        ("input", "eq"), ("eq", "comp"), ("comp", "early"), ("early", "filter"), ("filter", "trip"), ("trip", "limiter"),
        ("input", "bass"), ("bass", "treble"), ("treble", "width"), ("width", "gain"), ("gain", "limiter"),
        ("limiter", "output"),
    ],
)"#;

/// G1 without the bass boost, with a gain inserted after the compressor and different settings.
fn g2() -> String {
    G1.replace(r#""bass": BassBoost(gain_db: 4.0),"#, r#""g2": Gain(gain_db: -2.0),"#)
        .replace(r#"("input", "bass"), ("bass", "treble")"#, r#"("input", "treble")"#)
        .replace(r#"("comp", "early")"#, r#"("comp", "g2"), ("g2", "early")"#)
}

/// G1 with other parameters and a third branch straight from the input.
fn g3() -> String {
    G1.replace("ratio: 4.0", "ratio: 2.0")
        .replace(
            "(kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0)",
            "(kind: Peak, freq_hz: 700.0, gain_db: -3.0, q: 2.0)",
        )
        .replace(r#""limiter": Limiter"#, r#""dry": Gain(gain_db: -20.0), "limiter": Limiter"#)
        .replace(r#"("limiter", "output")"#, r#"("input", "dry"), ("dry", "limiter"), ("limiter", "output")"#)
}

/// A graph with ports that keeps G1's `comp` and `gain`: a crossover's bands, a compressor keyed by one of
/// them, a mid/side encoder, a delay, and a mixer joining three stereo inputs.
const G_PORTS: &str = r#"(sample_rate: 48000, channels: 2,
    nodes: {
        "xo": Crossover(freqs_hz: [300.0, 3000.0]),
        "comp": Compressor(threshold_db: -20.0, ratio: 3.0, attack_ms: 5.0, release_ms: 50.0, knee_db: 6.0, makeup_db: 0.0),
        "key": Channels(select: [0]),
        "ms": MidSide(mode: Encode),
        "dly": Delay(delay_ms: 2.0),
        "join": Mixer(inputs: [2, 2, 2], gains: [[1.0, 0.0, 0.5, 0.5, 1.0, 0.0], [0.0, 1.0, 0.5, -0.5, 0.0, 1.0]]),
        "gain": Gain(gain_db: -6.0),
    },
    edges: [
        ("input", "xo"), ("xo.band0", "comp"), ("xo.band2", "key"), ("key", "comp.sidechain"),
        ("comp", "join.in0"), ("xo.band1", "ms"), ("ms", "join.in1"), ("xo.band2", "dly"), ("dly", "join.in2"),
        ("join", "gain"), ("gain", "output"),
    ],
)"#;

/// The automatable parameters the control thread moves, with ranges.
/// (The ranges keep the dynamics gentle, so the output stays close to a sine whose natural slope is far
/// below the click bound; the edits are what is tested, not the distortion of a fast compressor.)
const PARAMS: &[(&str, &str, f64, f64)] = &[
    ("eq", "bands[0].gain_db", -12.0, 12.0),
    ("eq", "bands[0].freq_hz", 300.0, 3000.0),
    ("eq", "bands[1].q", 0.5, 2.0),
    ("eq", "bands[3].freq_hz", 8000.0, 20000.0),
    ("comp", "threshold_db", -24.0, 0.0),
    ("comp", "ratio", 1.0, 4.0),
    ("comp", "attack_ms", 10.0, 50.0),
    ("comp", "release_ms", 50.0, 300.0),
    ("comp", "knee_db", 0.0, 12.0),
    ("comp", "makeup_db", -6.0, 6.0),
    ("early", "ceiling_db", -12.0, -1.0),
    ("early", "release_ms", 20.0, 100.0),
    ("bass", "gain_db", -6.0, 6.0),
    ("bass", "freq_hz", 60.0, 200.0),
    ("treble", "gain_db", -6.0, 6.0),
    ("treble", "freq_hz", 4000.0, 12000.0),
    ("width", "width", 0.0, 2.0),
    ("gain", "gain_db", -12.0, 0.0),
    ("limiter", "ceiling_db", -6.0, -0.5),
    ("limiter", "release_ms", 10.0, 200.0),
    ("filter", "cutoff_hz", 8000.0, 18000.0),
    ("filter", "resonance", 0.5, 1.0),
];

/// The input: a 100 Hz sine at -6 dBFS, right channel in antiphase at half level.
fn input_sample(n: u64, c: usize) -> f32 {
    let s = 0.5 * (TAU * 100.0 * n as f64 / SR).sin();
    (if c == 0 { s } else { -0.5 * s }) as f32
}

/// The largest sample-to-sample step of interleaved stereo `x`, and where.
fn largest_step(x: &[f32]) -> (f32, usize) {
    let mut worst = (0.0f32, 0);
    for c in 0..2 {
        for i in 1..x.len() / 2 {
            let d = (x[2 * i + c] - x[2 * (i - 1) + c]).abs();
            if d > worst.0 {
                worst = (d, i);
            }
        }
    }
    worst
}

#[test]
fn a_device_thread_plays_at_real_time_pace_while_everything_is_edited_and_nothing_allocates_on_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    plugins(dir.path());
    let graph = Graph::parse(G1, "g1.ron", dir.path()).expect("valid");
    let loudness = fxgraph::LoudnessMetering::WithTruePeak;
    let options =
        EngineOptions { max_block: 512, threads: 2, parallelism: Parallelism::Always, loudness, ..Default::default() };
    let (mut engine, audio) = Engine::new(graph, options).expect("starts");
    let reader = engine.metrics_reader();
    let file = dir.path().join("watched.ron");
    std::fs::write(&file, G1).expect("write");
    engine.watch(&file).expect("watch");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = events.clone();
    engine.subscribe(move |e: &EngineEvent| log.lock().expect("lock").push(e.to_string()));

    let seconds = 6.0;
    let total = (seconds * SR) as u64;
    let running = std::sync::Arc::new(AtomicBool::new(true));
    let base = (AUDIO_ALLOCS.load(Ordering::SeqCst), AUDIO_FREES.load(Ordering::SeqCst));
    FIRST_SIZE.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    // The device: calls of 128 frames mostly (2.67 ms apart), and of 1, 37 and 4096 frames.
    let device = std::thread::spawn({
        let running = running.clone();
        move || {
            let mut audio: AudioProcessor = audio;
            let sizes = [128usize, 128, 1, 128, 37, 128, 128, 4096, 128, 37, 1, 128];
            let mut out = Vec::with_capacity(2 * total as usize);
            let (mut x, mut y) = (vec![0.0f32; 2 * 4096], vec![0.0f32; 2 * 4096]);
            let start = Instant::now();
            let (mut done, mut k) = (0u64, 0usize);
            while done < total {
                let n = (sizes[k % sizes.len()] as u64).min(total - done) as usize;
                k += 1;
                for i in 0..n {
                    x[2 * i] = input_sample(done + i as u64, 0);
                    x[2 * i + 1] = input_sample(done + i as u64, 1);
                }
                audio.process_interleaved(&x[..2 * n], &mut y[..2 * n], 2);
                out.extend_from_slice(&y[..2 * n]);
                done += n as u64;
                let due = start + Duration::from_secs_f64(done as f64 / SR);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            running.store(false, Ordering::SeqCst);
            out
        }
    });
    // Another thread reads the metrics while audio runs.
    let watcher = std::thread::spawn({
        let running = running.clone();
        move || {
            let mut reads = 0;
            let mut last_frames = 0;
            while running.load(Ordering::SeqCst) {
                let r = reader.report();
                assert!(r.frames >= last_frames);
                last_frames = r.frames;
                reads += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (reads, last_frames)
        }
    });

    // The control thread.
    let texts = [G1.to_string(), g2(), g3()];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut sets, mut swaps, mut reloads, mut tripped, mut reports) = (0, 0, 0, false, 0);
    let started = Instant::now();
    while running.load(Ordering::SeqCst) {
        let t = started.elapsed().as_secs_f64();
        for _ in 0..2 {
            let (node, param, lo, hi) = PARAMS[(next() * PARAMS.len() as f64) as usize % PARAMS.len()];
            if engine.set(node, param, lo + (hi - lo) * next()).is_ok() {
                sets += 1;
            }
        }
        if swaps < 20 && t > 0.3 + 0.2 * swaps as f64 {
            let text = &texts[(swaps + 1) % 3];
            engine.apply_str(text, "swap.ron", dir.path()).expect("valid graph");
            swaps += 1;
        }
        if reloads == 0 && t > 4.6 {
            // A broken edit, then a good one.
            std::fs::write(&file, G1.replace("ratio: 4.0,", "ratio: 4.0 knee_db")).expect("write");
            reloads += 1;
        }
        if reloads == 1 && t > 5.0 {
            let edited = G1.replace(
                "(kind: HighShelf, freq_hz: 9000.0, gain_db: -2.0",
                "(kind: HighShelf, freq_hz: 9000.0, gain_db: -4.0",
            );
            std::fs::write(&file, edited).expect("write");
            reloads += 1;
        }
        if !tripped && t > 5.3 {
            engine.set("trip", "trip", 1.0).expect("trip");
            tripped = true;
        }
        if ((t * 10.0) as u64).is_multiple_of(10) && reports < 6 {
            let r = engine.metrics();
            assert!(!r.nodes.is_empty());
            reports += 1;
        }
        engine.update();
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = device.join().expect("the device thread");
    ARMED.store(false, Ordering::SeqCst);
    let (reads, frames_seen) = watcher.join().expect("the metrics thread");
    for _ in 0..10 {
        engine.update();
    }

    let (allocs, frees) = (AUDIO_ALLOCS.load(Ordering::SeqCst) - base.0, AUDIO_FREES.load(Ordering::SeqCst) - base.1);
    assert_eq!(
        (allocs, frees),
        (0, 0),
        "allocations and frees on the audio side (first of {} bytes)",
        FIRST_SIZE.load(Ordering::SeqCst)
    );
    assert!(sets >= 1000, "{sets} parameter changes");
    assert_eq!(swaps, 20);
    assert!(reads > 100 && frames_seen > 0, "metrics read {reads} times from another thread");
    let events = events.lock().expect("lock").clone();
    assert!(
        events.iter().any(|e| e.starts_with("error: ") && e.contains("watched.ron:12:60: node \"comp\"")),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.starts_with("reloaded")), "{events:?}");
    let report = engine.metrics();
    let trip = report.nodes.iter().find(|n| n.name == "trip").expect("trip node");
    assert_eq!(trip.faults, 1, "the plugin faulted once and was replaced");
    assert!(events.iter().any(|e| e.contains("Fault: fault 1 (1 of 5 in a row): ErrorReturn")), "{events:?}");
    let shelf = engine.get("eq", "bands[2].gain_db").expect("known");
    assert_eq!(shelf, fxgraph::ParamValue::Number(-4.0), "the good reload took");

    // Continuity. A click (a hard cut between graphs or settings, a glitch) is a step far beyond the steps
    // around it: tenths of full scale (0.51 measured with the crossfade turned off). This 100 Hz sine moves a
    // few hundredths a sample at most and its steps change gradually, also under the heaviest settings the
    // control thread reaches (a 10 ms limiter release on a sum three times over the ceiling). An absolute bound
    // of 0.03 on the step was once exceeded by 0.039: a low-pass swept towards Nyquist with its coefficients
    // recomputed every 32 frames (now 8; `filter_sweeps_leave_no_transient_even_towards_nyquist`).
    let (click, at) = common::largest_click(&out, 2);
    let (step, step_at) = largest_step(&out);
    eprintln!("largest step {step} at frame {step_at}; largest click {click} at frame {at}");
    assert!(out.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    // Measured with every setting moving at random: at most 0.009 (a step twice as large as the steps around
    // it, where heavy gain changes meet); a click is tens of times that.
    assert!(click < 0.02, "a click of {click} at frame {at} ({:.3} s)", at as f64 / SR);
    assert!(step < 0.1, "a step of {step} at frame {step_at} ({:.3} s)", step_at as f64 / SR);
    // The detector sees clicks: the same output with a 20 ms gap of silence, and with one sample off by 0.1.
    let loud = (0..out.len() / 2).find(|&i| out[2 * i].abs() > 0.2).expect("signal");
    let mut gap = out.clone();
    gap[2 * loud..2 * (loud + 960)].fill(0.0);
    assert!(common::largest_click(&gap, 2).0 > 0.1, "{}", common::largest_click(&gap, 2).0);
    let mut spike = out.clone();
    spike[2 * (loud + 5000)] += 0.1;
    assert!(common::largest_click(&spike, 2).0 > 0.02, "{}", common::largest_click(&spike, 2).0);
    assert_eq!(out.len() as u64, 2 * total);
}

#[test]
fn a_structural_edit_adds_no_step_beyond_the_signal_s_own() {
    let _serial = serial();
    // Deterministic (one thread, fixed blocks): each swap between the three graphs cross-fades without
    // adding a sample step larger than the signal's own steps before the edit (plus the crossfade's
    // (pi/2)/960 * 2 = 0.003 at full scale). Regression: delay lines of edges that fade out once started
    // from silence, a step of 0.04.
    let dir = tempfile::tempdir().expect("tempdir");
    plugins(dir.path());
    // 3 is a graph with ports: a crossover's bands, a keyed compressor, a mid/side encoder and a mixer, and
    // a latency other than the rest's (0 against 336 frames: the crossfade waits for a new path's lookahead
    // to fill). Without its delay node: a fresh delay line gives silence, then its signal, whatever fades.
    let ports = G_PORTS.replace(r#"("xo.band2", "dly"), ("dly", "join.in2")"#, r#"("xo.band2", "join.in2")"#);
    assert_ne!(ports, G_PORTS);
    let texts = [G1.to_string(), g2(), g3(), ports];
    for (a, b) in [(2, 0), (0, 1), (1, 2), (0, 2), (2, 1), (1, 0), (0, 3), (3, 1), (2, 3), (3, 0)] {
        let graph = Graph::parse(&texts[a], "a.ron", dir.path()).expect("valid");
        let options = EngineOptions { max_block: 128, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(graph, options).expect("starts");
        let mut out = Vec::new();
        let (mut x, mut y) = (vec![0.0f32; 256], vec![0.0f32; 256]);
        for block in 0..400u64 {
            if block == 200 {
                engine.apply_str(&texts[b], "b.ron", dir.path()).expect("valid");
                engine.update();
                assert!(engine.is_transitioning());
            }
            for i in 0..128 {
                x[2 * i] = input_sample(block * 128 + i as u64, 0);
                x[2 * i + 1] = input_sample(block * 128 + i as u64, 1);
            }
            audio.process_interleaved(&x, &mut y, 2);
            engine.update();
            out.extend_from_slice(&y);
        }
        assert!(!engine.is_transitioning(), "the crossfade has ended");
        // Before the edit, after the start-up transient (the first 4 blocks).
        let before = largest_step(&out[2 * 512..2 * 200 * 128]).0;
        let (after, at) = largest_step(&out[2 * 200 * 128..]);
        // The graph edited to may have larger steps of its own (a louder signal): once settled, after the
        // crossfade and any wait for its lookahead.
        let settled = largest_step(&out[2 * (200 * 128 + 4096)..]).0;
        let own = before.max(settled);
        assert!(
            after <= own + 0.003,
            "graph {a} -> {b}: a step of {after} at frame {} after the edit, at most {own} in either graph",
            200 * 128 + at
        );
    }
}

/// Amplitude of the `freq` component of `y` (a whole number of cycles long), by correlation.
fn amplitude(y: &[f32], freq: f64) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (n, &v) in y.iter().enumerate() {
        let w = TAU * freq * n as f64 / SR;
        s += f64::from(v) * w.sin();
        c += f64::from(v) * w.cos();
    }
    2.0 * s.hypot(c) / y.len() as f64
}

/// |H| of an RBJ peaking filter at `f`, written out from the cookbook.
fn peak_gain(f0: f64, gain_db: f64, q: f64, f: f64) -> f64 {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = TAU * f0 / SR;
    let alpha = w0.sin() / (2.0 * q);
    let (b, d) =
        ([1.0 + alpha * a, -2.0 * w0.cos(), 1.0 - alpha * a], [1.0 + alpha / a, -2.0 * w0.cos(), 1.0 - alpha / a]);
    let w = TAU * f / SR;
    let h =
        |k: [f64; 3]| (k[0] + k[1] * w.cos() + k[2] * (2.0 * w).cos()).hypot(k[1] * w.sin() + k[2] * (2.0 * w).sin());
    h(b) / h(d)
}

/// Runs `frames` of a mono 100 Hz sine (amplitude `amp`) through the audio side in calls of `call` frames.
fn play_sine(audio: &mut AudioProcessor, amp: f64, frames: usize, call: usize) -> Vec<f32> {
    let x: Vec<f32> = (0..frames).map(|n| (amp * (TAU * 100.0 * n as f64 / SR).sin()) as f32).collect();
    let mut y = vec![0.0f32; frames];
    let mut at = 0;
    while at < frames {
        let n = call.min(frames - at);
        audio.process(&AudioIn::new(&x[at..at + n], n, 1, n), &mut AudioOut::new(&mut y[at..at + n], n, 1, n));
        at += n;
    }
    y
}

#[test]
fn parameter_jumps_are_smoothed_sample_accurately_and_settle_on_the_analytic_response() {
    let _serial = serial();
    let text = r#"(sample_rate: 48000, channels: 1,
        nodes: {
            "g": Gain(gain_db: 0.0),
            "eq": Eq(bands: [(kind: Peak, freq_hz: 100.0, gain_db: 0.0, q: 1.0)]),
            "comp": Compressor(threshold_db: 0.0, ratio: 4.0, attack_ms: 10.0, release_ms: 100.0, knee_db: 0.0, makeup_db: 0.0),
        },
        edges: [("input", "g"), ("g", "eq"), ("eq", "comp"), ("comp", "output")])"#;
    let stage = 24000usize;
    let mut outputs = Vec::new();
    for call in [37, 512, 4096] {
        let graph = Graph::parse(text, "smooth.ron", ".".as_ref()).expect("valid");
        let (mut engine, mut audio) =
            Engine::new(graph, EngineOptions { max_block: 512, ..Default::default() }).expect("starts");
        // Large jumps, each at an exact frame.
        engine.set_at("g", "gain_db", 12.0, stage as u64).expect("set");
        engine.set_at("eq", "bands[0].gain_db", 6.0, 2 * stage as u64).expect("set");
        engine.set_at("eq", "bands[0].freq_hz", 400.0, 3 * stage as u64).expect("set");
        engine.set_at("comp", "threshold_db", -30.0, 4 * stage as u64).expect("set");
        outputs.push(play_sine(&mut audio, 0.1, 5 * stage, call));
    }
    assert!(
        outputs.iter().all(|o| o.iter().map(|v| v.to_bits()).eq(outputs[0].iter().map(|v| v.to_bits()))),
        "events apply at their frame whatever the callback size: same bits"
    );
    let y = &outputs[0];
    // Settled (the last 12000 frames of each stage: 60 cycles), the response is the analytic one.
    let settled = |k: usize| amplitude(&y[k * stage + 12000..(k + 1) * stage], 100.0);
    let db = |x: f64| 20.0 * x.log10();
    let g12 = 10f64.powf(12.0 / 20.0);
    let want = [0.1, 0.1 * g12, 0.1 * g12 * 2.0, 0.1 * g12 * peak_gain(400.0, 6.0, 1.0, 100.0)];
    for (k, w) in want.iter().enumerate() {
        assert!((db(settled(k)) - db(*w)).abs() < 0.05, "stage {k}: {} dB, analytic {} dB", db(settled(k)), db(*w));
    }
    // The compressor, against an independent f64 model of the documented design (peak detector, hard-knee
    // static curve in dB, one-pole attack and release on the gain reduction) fed the settled input.
    let model = {
        let (t, r, attack, release) = (-30.0, 4.0, (-1.0 / (0.010 * SR)).exp(), (-1.0 / (0.100 * SR)).exp());
        let mut env = 0.0f64;
        let out: Vec<f32> = (0..stage)
            .map(|n| {
                let x = want[3] * (TAU * 100.0 * n as f64 / SR).sin();
                let over = 20.0 * x.abs().max(1e-10).log10() - t;
                let target = if over > 0.0 { over * (1.0 - 1.0 / r) } else { 0.0 };
                env = target + if target > env { attack } else { release } * (env - target);
                (x * 10f64.powf(-env / 20.0)) as f32
            })
            .collect();
        amplitude(&out[12000..], 100.0)
    };
    assert!((db(settled(4)) - db(model)).abs() < 0.1, "compressed to {} dB, model {} dB", db(settled(4)), db(model));
    // No clicks: a 100 Hz sine of amplitude at most 0.8 moves at most 2*pi*100/48000 * 0.8 = 0.0105 per
    // sample; jumps unsmoothed would step by 0.3 (the gain) or 0.4 (the EQ).
    let natural = TAU * 100.0 / SR * 0.8;
    let worst = y.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
    assert!(f64::from(worst) < 1.5 * natural, "a step of {worst} (the signal's own at most {natural})");
    // (The same jump of the gain unsmoothed, a quarter period into stage B where the sine peaks.)
    let mut jumped = y.clone();
    for v in &mut jumped[stage + 120..2 * stage] {
        *v *= 1.5;
    }
    assert!(jumped.windows(2).any(|w| f64::from((w[1] - w[0]).abs()) > 1.5 * natural), "the check sees a jump");
}

#[test]
fn a_graph_edit_keeps_unchanged_nodes_and_their_state() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    plugins(dir.path());
    let a = r#"(sample_rate: 48000, channels: 2,
        nodes: {
            "g": Gain(gain_db: 12.0),
            "filter": Wasm(path: "biquad.wasm", config: {"cutoff_hz": 5000.0}),
            "lim": Limiter(ceiling_db: -6.0, lookahead_ms: 5.0, release_ms: 2000.0),
        },
        edges: [("input", "g"), ("g", "filter"), ("filter", "lim"), ("lim", "output")])"#;
    // A parameter change on "g" and a new branch into the limiter: "filter" and "lim" must keep their
    // processors (the plugin instance, the limiter's delay line and its 2 s release).
    let b = a
        .replace("gain_db: 12.0", "gain_db: 11.0")
        .replace(r#""lim": Limiter"#, r#""side": Gain(gain_db: -30.0), "lim": Limiter"#)
        .replace(r#"("lim", "output")"#, r#"("input", "side"), ("side", "lim"), ("lim", "output")"#);
    let graph = Graph::parse(a, "a.ron", dir.path()).expect("valid");
    let (mut engine, mut audio) =
        Engine::new(graph, EngineOptions { max_block: 256, ..Default::default() }).expect("starts");
    let ids = |e: &mut Engine| -> Vec<Option<u32>> {
        ["g", "filter", "lim", "side"]
            .iter()
            .map(|n| e.node(n).and_then(|ent| e.world().get::<AudioNode>(ent)).map(|a| a.id))
            .collect()
    };
    let mut out = Vec::new();
    let x: Vec<f32> = (0..512).map(|n| input_sample(n as u64 / 2, n % 2)).collect();
    let mut y = vec![0.0f32; 512];
    let mut frame = 0u64;
    let mut run = |audio: &mut AudioProcessor, engine: &mut Engine, blocks: usize, out: &mut Vec<f32>| {
        for _ in 0..blocks {
            let x: Vec<f32> = (0..512).map(|n| input_sample(frame + n as u64 / 2, n % 2)).collect();
            audio.process_interleaved(&x, &mut y, 2);
            engine.update();
            out.extend_from_slice(&y);
            frame += 256;
        }
    };
    let _ = x;
    run(&mut audio, &mut engine, 200, &mut out);
    let before = ids(&mut engine);
    engine.apply_str(&b, "b.ron", dir.path()).expect("valid");
    engine.update();
    run(&mut audio, &mut engine, 200, &mut out);
    let after = ids(&mut engine);
    assert_eq!(after[..3], before[..3], "g, filter and lim keep their processors");
    assert!(before[3].is_none() && after[3].is_some(), "side is new");
    // The limiter kept its gain reduction: a fresh one would start at unity gain and overshoot its ceiling
    // for nothing but also restart its delay line: a 5 ms hole. Neither: the output never drops out and the
    // peak stays at the ceiling.
    let ceiling = 10f32.powf(-6.0 / 20.0);
    assert!(out.iter().all(|v| v.abs() <= ceiling));
    // Windows of 240 frames: each holds a peak of the 100 Hz sine.
    for (k, w) in out[2 * 256 * 10..].chunks(2 * 240).enumerate() {
        let peak = w.iter().fold(0.0f32, |p, v| p.max(v.abs()));
        assert!(peak > 0.5 * ceiling, "a drop-out in window {k}: peak {peak}");
    }
    let (step, at) = largest_step(&out[2 * 256 * 10..]);
    let (before_step, _) = largest_step(&out[2 * 256 * 10..2 * 256 * 200]);
    assert!(step <= before_step + 0.003, "step {step} at {at} (before the edit {before_step})");
}

#[test]
fn reset_clears_all_state_as_a_fresh_engine_would_have_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    plugins(dir.path());
    let graph = || Graph::parse(G1, "g1.ron", dir.path()).expect("valid");
    let options = EngineOptions { max_block: 256, ..Default::default() };
    let (mut engine, mut audio) = Engine::new(graph(), options).expect("starts");
    let (_e2, mut unreset) = Engine::new(graph(), options).expect("starts");
    let (_e3, mut fresh) = Engine::new(graph(), options).expect("starts");
    // Half a second, then the same input again: after a reset the output is a fresh engine's.
    let x: Vec<f32> = (0..48000).map(|n| input_sample(n as u64 / 2 + 333, n % 2)).collect();
    let mut y = vec![0.0f32; x.len()];
    audio.process_interleaved(&x, &mut y, 2);
    unreset.process_interleaved(&x, &mut y, 2);
    engine.reset();
    let mut after_reset = vec![0.0f32; x.len()];
    audio.process_interleaved(&x, &mut after_reset, 2);
    let mut from_fresh = vec![0.0f32; x.len()];
    fresh.process_interleaved(&x, &mut from_fresh, 2);
    assert!(after_reset.iter().zip(&from_fresh).all(|(a, b)| a.to_bits() == b.to_bits()), "reset = a fresh start");
    let mut without = vec![0.0f32; x.len()];
    unreset.process_interleaved(&x, &mut without, 2);
    assert!(without.iter().zip(&from_fresh).any(|(a, b)| a != b), "without the reset the state would show");
}

#[test]
fn every_executor_allocates_nothing_while_events_and_edits_arrive() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    plugins(dir.path());
    // The last case runs several blocks per call (an offline batch), so the dataflow executor runs them.
    for (threads, parallelism, batch, frames) in [
        (1, Parallelism::Adaptive, 1, 300),
        (2, Parallelism::Adaptive, 1, 300),
        (3, Parallelism::Always, 1, 300),
        (2, Parallelism::Always, 8, 1000),
    ] {
        let graph = Graph::parse(G1, "g1.ron", dir.path()).expect("valid");
        // Loudness and true peak measured too, on the output and the metered node.
        let loudness = fxgraph::LoudnessMetering::WithTruePeak;
        let options = EngineOptions { max_block: 128, threads, parallelism, batch, loudness, ..Default::default() };
        let (mut engine, audio) = Engine::new(graph, options).expect("starts");
        engine.meter_node("comp").expect("metered");
        let player = std::thread::spawn(move || {
            let mut audio = audio;
            let (x, mut y) = (vec![0.25f32; 2 * frames], vec![0.0f32; 2 * frames]);
            let mut fresh = 0u64;
            for _ in 0..1500 {
                let before = (AUDIO_ALLOCS.load(Ordering::SeqCst), AUDIO_FREES.load(Ordering::SeqCst));
                audio.process_interleaved(&x, &mut y, 2);
                let after = (AUDIO_ALLOCS.load(Ordering::SeqCst), AUDIO_FREES.load(Ordering::SeqCst));
                fresh += (after.0 - before.0) + (after.1 - before.1);
                std::thread::sleep(Duration::from_micros(200));
            }
            (audio, fresh)
        });
        ARMED.store(true, Ordering::SeqCst);
        for k in 0..200 {
            let frame = k * 1000;
            engine.set_at("gain", "gain_db", -6.0 - (k % 6) as f64, frame).expect("set");
            engine.set("comp", "threshold_db", -10.0 - (k % 10) as f64).expect("set");
            if k % 50 == 25 {
                engine.apply_str(&g2(), "g2.ron", dir.path()).expect("valid");
            }
            if k % 50 == 40 {
                engine.apply_str(G_PORTS, "ports.ron", dir.path()).expect("valid");
            }
            if k % 50 == 0 && k > 0 {
                engine.apply_str(G1, "g1.ron", dir.path()).expect("valid");
            }
            engine.update();
            std::thread::sleep(Duration::from_millis(1));
        }
        let (_audio, fresh) = player.join().expect("player");
        ARMED.store(false, Ordering::SeqCst);
        assert_eq!(fresh, 0, "{threads} threads ({parallelism:?}): allocations or frees while processing");
        let report = engine.metrics();
        assert!(report.nodes.iter().any(|n| n.levels.is_some()), "the metered node was measured");
        let loudness = report.nodes.iter().find_map(|n| n.levels.as_ref()?.loudness).expect("the node's loudness");
        assert!(loudness.momentary_lufs.is_some() && loudness.true_peak_dbtp.is_some(), "{loudness:?}");
        assert!(report.output.loudness.and_then(|l| l.integrated_lufs).is_some(), "the output's loudness");
    }
}

/// A node kind that allocates a small buffer and frees it in every call: planted audio-side allocations.
#[derive(Debug, Clone, serde::Deserialize, bevy_ecs::component::Component)]
struct Leaky {}

impl fxgraph::node::NodeSpec for Leaky {
    fn kind(&self) -> &'static str {
        "Leaky"
    }
    fn validate(&self, _ctx: &fxgraph::node::BuildContext<'_>) -> Result<(), fxgraph::node::ParamError> {
        Ok(())
    }
    fn build(
        &self,
        _ctx: &fxgraph::node::BuildContext<'_>,
    ) -> Result<Box<dyn fxgraph::node::Processor>, fxgraph::node::NodeError> {
        Ok(Box::new(LeakyProcessor))
    }
    fn params(&self, _ctx: &fxgraph::node::BuildContext<'_>) -> Vec<fxgraph::node::ParamInfo> {
        Vec::new()
    }
    fn param(&self, _index: usize) -> f64 {
        0.0
    }
    fn set_param(&mut self, _index: usize, _value: f64) {}
    fn clone_spec(&self) -> Box<dyn fxgraph::node::NodeSpec> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

struct LeakyProcessor;

impl fxgraph::node::Processor for LeakyProcessor {
    fn initialize(&mut self, _config: &fxgraph::node::ProcessConfig) -> Result<(), fxgraph::node::NodeError> {
        Ok(())
    }
    fn process(&mut self, audio: &mut AudioOut<'_>) {
        let scratch: Vec<f32> = std::hint::black_box(audio.channel(0).to_vec());
        audio.channel_mut(0)[0] = scratch[0];
    }
}

#[test]
fn the_counter_sees_an_allocation_planted_on_the_audio_side_on_any_thread() {
    let _serial = serial();
    let mut registry = fxgraph::nodes::registry();
    registry.register(fxgraph::node::NodeKind::new::<Leaky>("Leaky", "allocates in every call"));
    // The leaky node on a branch of its own, so with workers it may run on any of them.
    let src = r#"(sample_rate: 48000, channels: 2,
        nodes: { "leak": Leaky(), "a": Gain(gain_db: -1.0), "b": Gain(gain_db: -2.0) },
        edges: [("input", "leak"), ("input", "a"), ("input", "b"), ("leak", "output"), ("a", "output"), ("b", "output")])"#;
    for (threads, parallelism) in [(1, Parallelism::Adaptive), (2, Parallelism::Always), (3, Parallelism::Always)] {
        let graph = Graph::parse_with(src, "leak.ron", ".".as_ref(), &registry).expect("valid");
        let options = EngineOptions { max_block: 256, threads, parallelism, ..Default::default() };
        let (_engine, audio) = Engine::new(graph, options).expect("starts");
        let before = (AUDIO_ALLOCS.load(Ordering::SeqCst), AUDIO_FREES.load(Ordering::SeqCst));
        ARMED.store(true, Ordering::SeqCst);
        let device = std::thread::spawn(move || {
            let mut audio = audio;
            let (x, mut y) = (vec![0.25f32; 2 * 256], vec![0.0f32; 2 * 256]);
            for _ in 0..50 {
                audio.process_interleaved(&x, &mut y, 2);
            }
            audio
        });
        let _audio = device.join().expect("device");
        ARMED.store(false, Ordering::SeqCst);
        let after = (AUDIO_ALLOCS.load(Ordering::SeqCst), AUDIO_FREES.load(Ordering::SeqCst));
        assert!(after.0 - before.0 >= 50, "{threads} threads: {} allocations seen of 50", after.0 - before.0);
        assert!(after.1 - before.1 >= 50, "{threads} threads: {} frees seen of 50", after.1 - before.1);
    }
}

#[test]
fn an_edit_cross_fades_over_crossfade_ms_with_equal_power_gains() {
    let _serial = serial();
    // Constant input; the edit replaces node "x" by node "y" (a new node, so its edge fades in while the old
    // one fades out). Muting one side shows the other's gain curve, sample by sample.
    let graph = |node: &str, db: f64| {
        format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"{node}\": Gain(gain_db: {db:.1}) }}, \
             edges: [(\"input\", \"{node}\"), (\"{node}\", \"output\")])"
        )
    };
    let curve = |before: &str, after: &str, crossfade_ms: f64| {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = Graph::parse(before, "a.ron", dir.path()).expect("valid");
        let options = EngineOptions { max_block: 64, crossfade_ms, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(g, options).expect("starts");
        let (x, mut y) = (vec![1.0f32; 2 * 64], vec![0.0f32; 2 * 64]);
        let mut out = Vec::new();
        for block in 0..100 {
            if block == 10 {
                engine.apply_str(after, "b.ron", dir.path()).expect("valid");
                engine.update();
            }
            audio.process_interleaved(&x, &mut y, 2);
            engine.update();
            out.extend(y.iter().step_by(2).map(|&v| f64::from(v)));
        }
        out
    };
    let muted = -96.0;
    for crossfade_ms in [20.0, 50.0] {
        let fade_out = curve(&graph("x", 0.0), &graph("y", muted), crossfade_ms);
        let fade_in = curve(&graph("x", muted), &graph("y", 0.0), crossfade_ms);
        let quiet = 10f64.powf(muted / 20.0);
        let start = fade_out.iter().position(|&v| v < 1.0 - 1e-6).expect("the old edge fades");
        let end = fade_out.iter().position(|&v| v <= quiet + 1e-6).expect("and is gone");
        let length_ms = (end - start) as f64 / 48.0;
        assert!(
            (length_ms / crossfade_ms - 1.0).abs() <= 0.1,
            "crossfade_ms {crossfade_ms}: the fade took {length_ms:.2} ms"
        );
        // Equal power: the two gains' squares sum to one all along (the muted side's share removed).
        for n in start..end {
            let (g_out, g_in) = ((fade_out[n] - quiet) / (1.0 - quiet), (fade_in[n] - quiet) / (1.0 - quiet));
            assert!((g_out * g_out + g_in * g_in - 1.0).abs() < 1e-3, "frame {n}: {g_out}^2 + {g_in}^2");
        }
        // Half way, each is cos(pi/4).
        let mid = (start + end) / 2;
        assert!((fade_out[mid] - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.02, "{}", fade_out[mid]);
    }
}

/// A watched graph's impulse response is rewritten on disk while it plays: the engine reloads it, and the
/// new IR is cross-faded in with no sample step beyond the signal's own (the new IR inverts the signal: a
/// switch without a crossfade would step by twice its amplitude), and the audio side allocates and frees
/// nothing the while, though the old IR's convolver (megabytes) goes and the new one comes.
#[test]
fn an_impulse_response_rewritten_on_disk_is_cross_faded_in_and_the_audio_side_never_allocates() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let ir = dir.path().join("room.wav");
    // A Dirac with a long tail of zeros: a convolver with every level of partitions.
    let mut taps = vec![0.0f32; 200_000];
    taps[0] = 1.0;
    common::write_float_wav(&ir, 48000, std::slice::from_ref(&taps));
    let graph = dir.path().join("g.ron");
    std::fs::write(
        &graph,
        r#"(sample_rate: 48000, channels: 2, nodes: { "room": Convolver(path: "room.wav") },
            edges: [("input", "room"), ("room", "output")])"#,
    )
    .expect("write graph");
    let options = EngineOptions { max_block: 128, ..Default::default() };
    let (mut engine, mut audio) = Engine::new(Graph::load(&graph).expect("valid"), options).expect("starts");
    engine.watch(&graph).expect("watch");
    let (mut x, mut y) = (vec![0.0f32; 256], vec![0.0f32; 256]);
    let mut out = Vec::new();
    let (mut allocations, mut edited_at) = (0u64, None);
    ARMED.store(true, Ordering::SeqCst);
    for block in 0..600u64 {
        if block == 200 {
            taps[0] = -1.0;
            common::write_float_wav(&ir, 48000, std::slice::from_ref(&taps));
            let t = Instant::now();
            while !engine.is_transitioning() {
                assert!(t.elapsed() < Duration::from_secs(10), "the rewritten IR was not picked up");
                std::thread::sleep(Duration::from_millis(5));
                engine.update();
            }
            edited_at = Some(block * 128);
        }
        for i in 0..128 {
            x[2 * i] = input_sample(block * 128 + i as u64, 0);
            x[2 * i + 1] = input_sample(block * 128 + i as u64, 1);
        }
        let before = AUDIO_ALLOCS.load(Ordering::SeqCst) + AUDIO_FREES.load(Ordering::SeqCst);
        audio.process_interleaved(&x, &mut y, 2);
        allocations += AUDIO_ALLOCS.load(Ordering::SeqCst) + AUDIO_FREES.load(Ordering::SeqCst) - before;
        engine.update();
        out.extend_from_slice(&y);
    }
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(allocations, 0, "allocations and frees on the audio side while the IR changed");
    assert!(!engine.is_transitioning(), "the crossfade has ended");
    let edited = edited_at.expect("edited") as usize;
    // Before: the input; long after: the input inverted.
    let n = out.len() / 2;
    for i in [edited - 10, 100] {
        assert_eq!(out[2 * i], input_sample(i as u64, 0), "frame {i}");
    }
    for i in [n - 10, n - 1000] {
        assert_eq!(out[2 * i], -input_sample(i as u64, 0), "frame {i}");
    }
    let own = largest_step(&out[..2 * edited]).0;
    let (step, at) = largest_step(&out[2 * edited..]);
    assert!(
        step <= own + 0.003,
        "a step of {step} at frame {} after the edit; the signal's own are {own}",
        edited + at
    );
}
