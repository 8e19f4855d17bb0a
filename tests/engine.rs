//! DSP and engine behaviour, checked against analytic answers.

mod common;
#[path = "engine/convolution.rs"]
mod convolution;
#[path = "engine/loudness.rs"]
mod loudness;
#[path = "engine/ports.rs"]
mod ports;

use fxgraph::Graph;
use fxgraph::control::render::render;
use fxgraph::control::{Lifecycle, NodeName};
use fxgraph::io::demo::DemoSignal;
use fxgraph::io::stream::{MemorySink, MemorySource};
use fxgraph::node::NodeKind;
use fxgraph::node::{AudioIn, AudioOut};
use fxgraph::node::{BuildContext, GraphFormat, NodeError, NodeSpec, ParamError, ParamInfo, ProcessConfig, Processor};
use fxgraph::{AudioProcessor, Engine, EngineOptions, Parallelism};
use std::f64::consts::TAU;
use std::sync::{Arc, Mutex};

const SR: f64 = 48000.0;

fn parse(src: &str) -> Graph {
    Graph::parse(src, "test.ron", ".".as_ref()).unwrap_or_else(|e| panic!("{e}"))
}

fn engine(src: &str, block: usize, threads: usize, parallelism: Parallelism) -> (Engine, AudioProcessor) {
    start(parse(src), block, threads, parallelism)
}

fn start(graph: Graph, block: usize, threads: usize, parallelism: Parallelism) -> (Engine, AudioProcessor) {
    Engine::new(graph, EngineOptions { max_block: block, threads, parallelism, ..Default::default() })
        .expect("engine starts")
}

/// Renders `input` (planar) through a graph, latency-compensated.
fn run(src: &str, input: Vec<Vec<f32>>, block: usize, threads: usize, parallelism: Parallelism) -> Vec<Vec<f32>> {
    run_graph(parse(src), input, block, threads, parallelism)
}

/// [`run`] for a parsed graph.
fn run_graph(
    graph: Graph,
    input: Vec<Vec<f32>>,
    block: usize,
    threads: usize,
    parallelism: Parallelism,
) -> Vec<Vec<f32>> {
    let (mut engine, mut audio) = start(graph, block, threads, parallelism);
    let mut sink = MemorySink::default();
    render(&mut engine, &mut audio, &mut MemorySource::new(input), &mut sink, block, &mut |_| true).expect("render");
    sink.channels
}

fn single_node(channels: usize, node: &str) -> String {
    format!(
        "(sample_rate: 48000, channels: {channels}, nodes: {{ \"n\": {node} }}, \
         edges: [(\"input\", \"n\"), (\"n\", \"output\")])"
    )
}

fn sine(freq: f64, amp: f64, frames: usize) -> Vec<f32> {
    (0..frames).map(|n| (amp * (TAU * freq * n as f64 / SR).sin()) as f32).collect()
}

/// Amplitude of the `freq` component of `y` (an integer number of cycles long), by correlation.
fn amplitude(y: &[f32], freq: f64) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (n, &v) in y.iter().enumerate() {
        let w = TAU * freq * n as f64 / SR;
        s += f64::from(v) * w.sin();
        c += f64::from(v) * w.cos();
    }
    2.0 * s.hypot(c) / y.len() as f64
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// The Audio EQ Cookbook's transfer functions, written out independently of the library.
fn cookbook_db(kind: &str, f0: f64, gain_db: f64, q: f64, f: f64) -> f64 {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = TAU * f0 / SR;
    let (cw, sw) = (w0.cos(), w0.sin());
    let al = sw / (2.0 * q);
    let sa = 2.0 * a.sqrt() * al;
    let (b, aa): ([f64; 3], [f64; 3]) = match kind {
        "LowPass" => ([(1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "HighPass" => ([(1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "BandPass" => ([al, 0.0, -al], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "Notch" => ([1.0, -2.0 * cw, 1.0], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "AllPass" => ([1.0 - al, -2.0 * cw, 1.0 + al], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "Peak" => ([1.0 + al * a, -2.0 * cw, 1.0 - al * a], [1.0 + al / a, -2.0 * cw, 1.0 - al / a]),
        "LowShelf" => (
            [
                a * ((a + 1.0) - (a - 1.0) * cw + sa),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cw),
                a * ((a + 1.0) - (a - 1.0) * cw - sa),
            ],
            [(a + 1.0) + (a - 1.0) * cw + sa, -2.0 * ((a - 1.0) + (a + 1.0) * cw), (a + 1.0) + (a - 1.0) * cw - sa],
        ),
        "HighShelf" => (
            [
                a * ((a + 1.0) + (a - 1.0) * cw + sa),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cw),
                a * ((a + 1.0) + (a - 1.0) * cw - sa),
            ],
            [(a + 1.0) - (a - 1.0) * cw + sa, 2.0 * ((a - 1.0) - (a + 1.0) * cw), (a + 1.0) - (a - 1.0) * cw - sa],
        ),
        _ => unreachable!(),
    };
    // H(e^jw) = (b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2)
    let w = TAU * f / SR;
    let eval = |k: [f64; 3]| {
        let re = k[0] + k[1] * w.cos() + k[2] * (2.0 * w).cos();
        let im = -k[1] * w.sin() - k[2] * (2.0 * w).sin();
        re.hypot(im)
    };
    db(eval(b) / eval(aa))
}

#[test]
fn eq_band_kinds_match_the_cookbook_response() {
    let kinds = [
        ("Peak", 6.0, 2.0),
        ("LowShelf", 6.0, 0.707),
        ("HighShelf", -6.0, 0.707),
        ("LowPass", 0.0, 0.707),
        ("HighPass", 0.0, 2.0),
        ("BandPass", 0.0, 1.0),
        ("Notch", 0.0, 1.0),
        ("AllPass", 0.0, 0.707),
    ];
    let freqs = [40.0, 125.0, 400.0, 800.0, 1000.0, 1250.0, 2500.0, 6000.0, 14000.0, 21000.0];
    let settle = 24000;
    for (kind, gain_db, q) in kinds {
        // Three channels exercise both the stereo-pair and the single-channel paths.
        let src = single_node(3, &format!("Eq(bands: [(kind: {kind}, freq_hz: 1000.0, gain_db: {gain_db}, q: {q})])"));
        for f in freqs {
            let x = sine(f, 0.5, settle + 48000);
            let y = run(&src, vec![x.clone(), x.clone(), x], 512, 1, Parallelism::Adaptive);
            for ch in &y {
                let measured = db(amplitude(&ch[settle..], f) / 0.5);
                if kind == "Notch" && f == 1000.0 {
                    assert!(measured < -60.0, "Notch at its center: {measured:.1} dB");
                    continue;
                }
                let want = cookbook_db(kind, 1000.0, gain_db, q, f);
                // f64 filters: the measured response is the cookbook's to a thousandth of a dB (the
                // measurement's own limit: a finite f32 signal, a finite window).
                assert!(
                    (measured - want).abs() < 0.001,
                    "{kind} at {f} Hz: measured {measured:.5} dB, cookbook {want:.5} dB"
                );
            }
        }
    }
}

/// Giannoulis et al.'s soft-knee static curve: output level for input level, in dB.
fn static_curve(x: f64, t: f64, r: f64, w: f64) -> f64 {
    if 2.0 * (x - t) < -w {
        x
    } else if 2.0 * (x - t).abs() <= w && w > 0.0 {
        x + (1.0 / r - 1.0) * (x - t + w / 2.0).powi(2) / (2.0 * w)
    } else {
        t + (x - t) / r
    }
}

/// A constant-magnitude signal: +a, -a, +a... (its peak level is its level at every sample).
fn alternating(a: f64, frames: usize) -> Vec<f32> {
    (0..frames).map(|n| if n % 2 == 0 { a as f32 } else { -a as f32 }).collect()
}

#[test]
fn compressor_steady_state_follows_its_static_curve() {
    for (knee, ratio) in [(6.0, 4.0), (0.0, 4.0), (12.0, 2.0), (6.0, 20.0)] {
        let src = single_node(
            2,
            &format!(
                "Compressor(threshold_db: -18.0, ratio: {ratio}, attack_ms: 10.0, release_ms: 100.0, \
                 knee_db: {knee}, makeup_db: 2.0)"
            ),
        );
        let mut level = -40.0;
        while level <= 0.0 {
            let a = 10f64.powf(level / 20.0);
            let y = run(&src, vec![alternating(a, 48000), alternating(a, 48000)], 512, 1, Parallelism::Adaptive);
            let out = db(f64::from(y[0][47999].abs()));
            let want = static_curve(level, -18.0, ratio, knee) + 2.0;
            assert!(
                (out - want).abs() < 0.05,
                "knee {knee}, ratio {ratio}, input {level} dB: output {out:.3} dB, static curve {want:.3} dB"
            );
            assert_eq!(y[0][47999].abs(), y[1][47999].abs(), "channels are linked");
            level += 2.0;
        }
    }
}

#[test]
fn compressor_attack_and_release_are_one_pole_time_constants() {
    // Attack faster than release, as usual, and the other way round.
    for (attack_ms, release_ms) in [(20.0, 200.0), (100.0, 30.0)] {
        let src = single_node(
            1,
            &format!(
                "Compressor(threshold_db: -20.0, ratio: 10.0, attack_ms: {attack_ms:.1}, release_ms: {release_ms:.1}, \
                 knee_db: 0.0, makeup_db: 0.0)"
            ),
        );
        // 1 s at -60 dBFS, 1 s at 0 dBFS, 1 s at -60 dBFS.
        let low = 10f64.powf(-60.0 / 20.0);
        let mut x = alternating(low, 48000);
        x.extend(alternating(1.0, 48000));
        x.extend(alternating(low, 48000));
        let y = run(&src, vec![x.clone()], 256, 1, Parallelism::Adaptive);
        let reduction = |n: usize| db(f64::from(x[n].abs())) - db(f64::from(y[0][n].abs()));
        let full = 20.0 * (1.0 - 1.0 / 10.0); // 0 dBFS is 20 dB over the threshold
        assert!((reduction(95999) - full).abs() < 0.01, "settled reduction {}", reduction(95999));
        // One time constant after each step, a one-pole smoother has covered 1 - 1/e of the way.
        let e = std::f64::consts::E;
        let frames = |ms: f64| (ms * 48.0) as usize;
        let after_attack = reduction(48000 + frames(attack_ms) - 1);
        assert!(
            (after_attack - full * (1.0 - 1.0 / e)).abs() < 0.02 * full,
            "attack {attack_ms} ms: {after_attack:.3} dB after it"
        );
        // On release the target drops to 0, so 1/e of the reduction remains after release_ms.
        let after_release = reduction(96000 + frames(release_ms) - 1);
        assert!(
            (after_release - full / e).abs() < 0.02 * full,
            "release {release_ms} ms: {after_release:.3} dB after it"
        );
    }
}

fn xorshift(seed: u64, frames: usize) -> Vec<f32> {
    let mut s = seed;
    (0..frames)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn limiter_ceiling_holds_on_every_sample_with_20_db_of_gain_before_it() {
    let n = 96000;
    let square: Vec<f32> = (0..n).map(|i| if (i / 50) % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let mut impulses = vec![0.0f32; n];
    for i in (0..n).step_by(997) {
        impulses[i] = if i % 2 == 0 { 1.0 } else { -1.0 };
    }
    let random = xorshift(7, n);
    let sweep: Vec<f32> =
        (0..n).map(|i| ((TAU * (20.0 + 10000.0 * i as f64 / n as f64) * i as f64 / SR).sin()) as f32).collect();
    for (ceiling_db, lookahead_ms, release_ms) in [(-1.0, 5.0, 50.0), (-6.0, 0.0, 10.0), (-0.1, 1.0, 0.0)] {
        let src = format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"gain\": Gain(gain_db: 20.0), \
             \"lim\": Limiter(ceiling_db: {ceiling_db}, lookahead_ms: {lookahead_ms}, release_ms: {release_ms}) }}, \
             edges: [(\"input\", \"gain\"), (\"gain\", \"lim\"), (\"lim\", \"output\")])"
        );
        let ceiling = 10f64.powf(ceiling_db / 20.0) as f32;
        for (name, signal) in [("square", &square), ("impulses", &impulses), ("random", &random), ("sweep", &sweep)] {
            for block in [64, 333] {
                let right: Vec<f32> = signal.iter().map(|x| -0.5 * x).collect();
                let y = run(&src, vec![signal.clone(), right], block, 1, Parallelism::Adaptive);
                let peak = y.iter().flatten().fold(0.0f32, |p, x| p.max(x.abs()));
                assert!(
                    peak <= ceiling,
                    "{name}, ceiling {ceiling_db} dB, block {block}: peak {peak} > ceiling {ceiling}"
                );
                assert!(peak > 0.98 * ceiling, "{name}: peak {peak} far below the ceiling: the limiter over-reduces");
            }
        }
    }
}

#[test]
fn limiter_is_bit_transparent_below_its_ceiling_and_reports_its_latency() {
    let src = single_node(2, "Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0)");
    assert_eq!(engine(&src, 512, 1, Parallelism::Adaptive).0.latency_frames(), 240);
    let x = sine(440.0, 0.8, 48000);
    let y = run(&src, vec![x.clone(), x.clone()], 500, 1, Parallelism::Adaptive);
    assert_eq!(y[0], x, "below the ceiling the output is the input, delayed by the latency");
}

fn demo(seconds: f64) -> Vec<Vec<f32>> {
    let mut demo = DemoSignal::new(48000, 2, seconds);
    let mut sink = MemorySink::default();
    let frames = demo.total_frames() as usize;
    let mut buf = vec![0.0f32; 2 * frames];
    demo.fill(&mut AudioOut::new(&mut buf, frames, 2, frames));
    fxgraph::io::stream::BlockSink::write(&mut sink, &AudioIn::new(&buf, frames, 2, frames)).expect("memory sink");
    sink.channels
}

fn bits(x: &[Vec<f32>]) -> Vec<Vec<u32>> {
    x.iter().map(|c| c.iter().map(|v| v.to_bits()).collect()).collect()
}

fn graph_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/graphs/{name}", env!("CARGO_MANIFEST_DIR"))).expect("graph file")
}

#[test]
fn parallel_executor_is_bit_identical_to_the_reference_for_any_block_size_and_thread_count() {
    let src = graph_file("parallel.ron");
    let input = demo(4.0);
    let reference = bits(&run(&src, input.clone(), 512, 1, Parallelism::Adaptive));
    assert!(reference[0].iter().any(|&b| b != 0));
    for (threads, parallelism) in [(2, Parallelism::Always), (4, Parallelism::Always), (2, Parallelism::Adaptive)] {
        for block in [1, 64, 333, 512, 4096] {
            let out = bits(&run(&src, input.clone(), block, threads, parallelism));
            assert!(out == reference, "threads {threads} ({parallelism:?}), block {block} differs from the reference");
        }
    }
}

/// `Eq(import: ...)` of the shipped example profile (graphs/headphones/ParametricEQ.txt): its preamp plus
/// its five bands' cookbook responses (written out here from the file, evaluated independently), measured
/// on sines; and a profile line fxgraph does not read is a located error, in the graph and in the file.
#[test]
fn an_imported_parametric_eq_has_the_profile_s_response_and_bad_lines_are_located() {
    let profile = format!("{}/graphs/headphones/ParametricEQ.txt", env!("CARGO_MANIFEST_DIR"));
    let src = single_node(2, &format!("Eq(import: \"{profile}\")"));
    let bands = [
        ("LowShelf", 105.0, 5.5, 0.70),
        ("Peak", 180.0, -3.2, 0.90),
        ("Peak", 2300.0, 2.1, 1.40),
        ("Peak", 5800.0, -4.0, 3.00),
        ("HighShelf", 10000.0, 2.0, 0.70),
    ];
    let settle = 24000;
    for f in [40.0, 105.0, 180.0, 1000.0, 2300.0, 5800.0, 8000.0, 15000.0] {
        let want = -6.2 + bands.iter().map(|&(k, f0, g, q)| cookbook_db(k, f0, g, q, f)).sum::<f64>();
        let x = sine(f, 0.25, settle + 48000);
        let y = run(&src, vec![x.clone(), x], 512, 1, Parallelism::Adaptive);
        for ch in &y {
            let measured = db(amplitude(&ch[settle..], f) / 0.25);
            assert!((measured - want).abs() < 0.001, "{f} Hz: measured {measured:.5} dB, the profile {want:.5} dB");
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.txt"), "Preamp: -3 dB\nFilter 1: ON PK Fc 100 Hz Gain 3 dB Q 1\nChannel: L\n")
        .expect("write");
    let text = single_node(2, "Eq(import: \"p.txt\")");
    let e = Graph::parse(&text, "g.ron", dir.path()).expect_err("Channel: is not read");
    let message = e.to_string();
    assert!(message.starts_with("g.ron:1:") && message.contains("node \"n\""), "{message}");
    assert!(message.contains("p.txt:3:1: `Channel:` is not supported"), "{message}");
}

/// Every layout a call may take (planar, interleaved `f32`, interleaved `f64` in place, planar in place),
/// driven in long batched runs on two threads (where the dataflow executor runs) and in uneven calls, gives
/// the reference's bits.
#[test]
fn every_call_layout_in_place_or_not_gives_the_same_bits() {
    let src = graph_file("parallel.ron");
    let input = demo(2.0);
    let frames = input[0].len();
    let interleaved: Vec<f32> = (0..frames).flat_map(|i| [input[0][i], input[1][i]]).collect();
    let start = || {
        let options = EngineOptions { threads: 2, batch: 16, parallelism: Parallelism::Always, ..Default::default() };
        let (engine, mut audio) = Engine::new(parse(&src), options).expect("engine starts");
        audio.take_messages();
        (engine, audio)
    };
    let deinterleave = |x: &[f32]| {
        vec![x.iter().step_by(2).copied().collect::<Vec<_>>(), x.iter().skip(1).step_by(2).copied().collect()]
    };
    let (_e, mut audio) = start();
    let mut out = vec![0.0f32; 2 * frames];
    audio.process_interleaved(&interleaved, &mut out, 2);
    let reference = bits(&deinterleave(&out));

    let (_e, mut audio) = start();
    let mut buf: Vec<f64> = interleaved.iter().map(|&s| f64::from(s)).collect();
    let mut at = 0;
    for n in [3, 8192, 1000, 30_000].iter().cycle() {
        let n = (*n).min(frames - at);
        audio.process_interleaved_f64(&mut buf[2 * at..2 * (at + n)], 2);
        at += n;
        if at == frames {
            break;
        }
    }
    let f64_in_place: Vec<f32> = buf.iter().map(|&s| s as f32).collect();
    assert!(bits(&deinterleave(&f64_in_place)) == reference, "f64 in place");

    let (_e, mut audio) = start();
    let mut buf = interleaved.clone();
    audio.process_interleaved_in_place(&mut buf, 2);
    assert!(bits(&deinterleave(&buf)) == reference, "f32 interleaved in place");

    let (_e, mut audio) = start();
    let mut planar: Vec<f32> = input.concat();
    audio.process_in_place(&mut AudioOut::new(&mut planar, frames, 2, frames));
    assert!(bits(&[planar[..frames].to_vec(), planar[frames..].to_vec()]) == reference, "planar in place");

    let (_e, mut audio) = start();
    let mut planar_out = vec![0.0f32; 2 * frames];
    let planar_in = input.concat();
    audio.process(&AudioIn::new(&planar_in, frames, 2, frames), &mut AudioOut::new(&mut planar_out, frames, 2, frames));
    assert!(bits(&[planar_out[..frames].to_vec(), planar_out[frames..].to_vec()]) == reference, "planar");
}

#[test]
fn output_does_not_depend_on_block_size() {
    for file in ["chain.ron", "enhancer.ron"] {
        let mut src = graph_file(file);
        if file == "enhancer.ron" {
            src = src.replace("sample_rate: 44100", "sample_rate: 48000");
        }
        let input = demo(3.0);
        let reference = bits(&run(&src, input.clone(), 512, 1, Parallelism::Adaptive));
        for block in [1, 7, 64, 100, 4096] {
            assert!(
                bits(&run(&src, input.clone(), block, 1, Parallelism::Adaptive)) == reference,
                "{file}, block {block}"
            );
        }
    }
}

#[test]
fn branches_of_different_latency_are_aligned_before_they_are_summed() {
    // One branch has the limiter's 240 frames of latency, the other none; summed they must give exactly
    // twice the input (the limiter is transparent below its ceiling) instead of a comb filter.
    let src = r#"(sample_rate: 48000, channels: 1,
        nodes: { "lim": Limiter(ceiling_db: 0.0, lookahead_ms: 5.0, release_ms: 50.0), "dry": Gain(gain_db: 0.0) },
        edges: [("input", "lim"), ("input", "dry"), ("lim", "output"), ("dry", "output")])"#;
    let (e, _) = engine(src, 256, 1, Parallelism::Adaptive);
    assert_eq!(e.plan().compensations, vec![("dry".to_string(), "output".to_string(), 240)]);
    let x = sine(1000.0, 0.25, 24000);
    let y = run(src, vec![x.clone()], 256, 1, Parallelism::Adaptive);
    let twice: Vec<f32> = x.iter().map(|v| v + v).collect();
    assert_eq!(y[0], twice);
}

#[test]
fn decaying_tails_reach_exact_zero_without_subnormals() {
    let src = single_node(
        2,
        "Eq(bands: [(kind: LowPass, freq_hz: 60.0, q: 0.707), (kind: Peak, freq_hz: 15000.0, gain_db: 6.0, q: 4.0), \
         (kind: HighPass, freq_hz: 20000.0, q: 0.707)])",
    );
    let mut x = vec![0.0f32; 48000 * 3];
    x[0] = 1.0;
    let y = run(&src, vec![x.clone(), x], 512, 1, Parallelism::Adaptive);
    for ch in &y {
        assert!(ch.iter().all(|v| !v.is_subnormal()), "subnormal output in a decaying tail");
        assert!(ch[48000 * 2..].iter().all(|&v| v == 0.0), "the tail never settled to exact zero");
        assert!(ch[..100].iter().any(|&v| v != 0.0));
    }
}

#[test]
fn non_finite_input_is_silenced_and_never_poisons_state() {
    let src = graph_file("chain.ron");
    let clean = demo(1.0);
    let mut dirty = clean.clone();
    let mut zeroed = clean.clone();
    for (i, bad) in [(1000, f32::NAN), (1001, f32::INFINITY), (5000, f32::NEG_INFINITY)] {
        dirty[0][i] = bad;
        dirty[1][i + 7] = bad;
        zeroed[0][i] = 0.0;
        zeroed[1][i + 7] = 0.0;
    }
    let (mut e, mut a) = engine(&src, 512, 1, Parallelism::Adaptive);
    let mut sink = MemorySink::default();
    render(&mut e, &mut a, &mut MemorySource::new(dirty), &mut sink, 512, &mut |_| true).expect("render");
    assert_eq!(e.nonfinite_input(), 6);
    assert!(bits(&sink.channels) == bits(&run(&src, zeroed, 512, 1, Parallelism::Adaptive)));

    // Processors on their own, fed NaN and infinity directly: the bad block may be lost, later ones are not.
    let format = GraphFormat { sample_rate: 48000, channels: 2 };
    let config = ProcessConfig::effect(48000, 2, 256);
    for node in [
        "Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 6.0, q: 1.0)])",
        "Compressor(threshold_db: -20.0, ratio: 4.0, attack_ms: 5.0, release_ms: 50.0, knee_db: 6.0, makeup_db: 0.0)",
        "Limiter(ceiling_db: -1.0, lookahead_ms: 1.0, release_ms: 50.0)",
    ] {
        let graph = parse(&single_node(2, node));
        let ctx = BuildContext { format, base_dir: ".".as_ref() };
        let start = || {
            let mut p = graph.nodes[0].spec.build(&ctx).expect("build");
            p.initialize(&config).expect("initialize");
            p.start();
            p
        };
        // The same music-like input to a processor that sees bad samples in block 2 and to one that never
        // does: after recovery (the filters' and detectors' time constants) they give the same output.
        let (mut hit, mut clean) = (start(), start());
        let signal = demo(0.6);
        let mut worst_late = 0.0f64;
        for block in 0..100 {
            let take = |c: usize| signal[c][block * 256..(block + 1) * 256].to_vec();
            let mut a: Vec<f32> = [take(0), take(1)].concat();
            let mut b = a.clone();
            if block == 2 {
                a[10] = f32::NAN;
                a[300] = f32::INFINITY;
                a[400] = f32::NEG_INFINITY;
            }
            hit.process(&mut AudioOut::new(&mut a, 256, 2, 256));
            clean.process(&mut AudioOut::new(&mut b, 256, 2, 256));
            if block >= 4 {
                assert!(a.iter().all(|v| v.is_finite()), "{node}: block {block} is still not finite");
            }
            if block >= 80 {
                worst_late = a.iter().zip(&b).fold(worst_late, |m, (x, y)| m.max(f64::from((x - y).abs())));
            }
        }
        assert!(worst_late < 1e-6, "{node}: 0.4 s later the output still differs from the clean run by {worst_late}");
    }
}

#[test]
fn stereo_width_and_gain_do_what_they_say() {
    let l = sine(300.0, 0.5, 4800);
    let r = sine(700.0, 0.3, 4800);
    let mono =
        run(&single_node(2, "StereoWidth(width: 0.0)"), vec![l.clone(), r.clone()], 512, 1, Parallelism::Adaptive);
    for i in 0..l.len() {
        assert_eq!(mono[0][i], mono[1][i]);
        assert!((mono[0][i] - 0.5 * (l[i] + r[i])).abs() < 1e-7);
    }
    let same =
        run(&single_node(2, "StereoWidth(width: 1.0)"), vec![l.clone(), r.clone()], 512, 1, Parallelism::Adaptive);
    for i in 0..l.len() {
        assert!((same[0][i] - l[i]).abs() < 1e-7 && (same[1][i] - r[i]).abs() < 1e-7);
    }
    let doubled = run(&single_node(2, "Gain(gain_db: 6.020599913)"), vec![l.clone(), r], 512, 1, Parallelism::Adaptive);
    for i in 0..l.len() {
        assert!((doubled[0][i] - 2.0 * l[i]).abs() < 1e-6);
    }
}

/// The `NodeSpec` methods of a test kind with no parameters.
macro_rules! spec_without_params {
    () => {
        fn params(&self, _ctx: &BuildContext<'_>) -> Vec<ParamInfo> {
            Vec::new()
        }
        fn param(&self, _index: usize) -> f64 {
            0.0
        }
        fn set_param(&mut self, _index: usize, _value: f64) {}
        fn clone_spec(&self) -> Box<dyn NodeSpec> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
            self
        }
    };
}

/// A node kind from outside the crate, recording the lifecycle calls it gets.
#[derive(Debug, Clone, serde::Deserialize, bevy_ecs::component::Component)]
struct Probe {}

static PROBE_LOG: std::sync::OnceLock<Arc<Mutex<Vec<String>>>> = std::sync::OnceLock::new();

impl NodeSpec for Probe {
    fn kind(&self) -> &'static str {
        "Probe"
    }
    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        Ok(())
    }
    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let log = PROBE_LOG.get_or_init(Default::default).clone();
        log.lock().expect("log").push("build".into());
        Ok(Box::new(ProbeProcessor(log)))
    }
    spec_without_params!();
}

struct ProbeProcessor(Arc<Mutex<Vec<String>>>);

impl ProbeProcessor {
    fn note(&self, what: &str) {
        let mut log = self.0.lock().expect("log");
        if log.last().map(String::as_str) != Some(what) {
            log.push(what.into());
        }
    }
}

impl Processor for ProbeProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.note(&format!("initialize {} {} {}", config.sample_rate, config.channels, config.max_block));
        Ok(())
    }
    fn start(&mut self) {
        self.note("start");
    }
    fn process(&mut self, _audio: &mut AudioOut<'_>) {
        // A test double: it records (which a real processor must not do on the audio side).
        self.note("process");
    }
    fn stop(&mut self) {
        self.note("stop");
    }
    fn cleanup(&mut self) {
        self.note("cleanup");
    }
}

#[test]
fn a_registered_kind_goes_through_the_lifecycle_in_order_on_its_entity() {
    let mut registry = fxgraph::nodes::registry();
    registry.register(NodeKind::new::<Probe>("Probe", "records lifecycle calls"));
    let src = "(sample_rate: 44100, channels: 1, nodes: { \"p\": Probe() }, edges: [(\"input\", \"p\"), (\"p\", \"output\")])";
    let graph = Graph::parse_with(src, "probe.ron", ".".as_ref(), &registry).expect("valid");
    let (mut engine, mut audio) =
        Engine::new(graph, EngineOptions { max_block: 64, threads: 1, ..Default::default() }).expect("starts");
    let state = |e: &Engine| {
        let world = e.world();
        let entity = e.plan().order[0];
        assert_eq!(world.get::<NodeName>(entity).map(|n| n.0.as_str()), Some("p"));
        world.get::<Lifecycle>(entity).cloned()
    };
    assert_eq!(state(&engine), Some(Lifecycle::Running));
    let x = vec![0.5f32; 64];
    let mut y = vec![0.0f32; 64];
    for _ in 0..3 {
        audio.process(&AudioIn::new(&x, 64, 1, 64), &mut AudioOut::new(&mut y, 64, 1, 64));
    }
    assert_eq!(y, x);
    // Stopping hands the processor back to its entity, stopped; starting again sends it back.
    engine.stop();
    audio.process(&AudioIn::new(&x, 64, 1, 64), &mut AudioOut::new(&mut y, 64, 1, 64));
    assert!(y.iter().all(|&v| v == 0.0), "a stopped engine plays silence");
    engine.update();
    assert_eq!(state(&engine), Some(Lifecycle::Stopped));
    engine.stop();
    engine.start();
    engine.start();
    engine.update();
    assert_eq!(state(&engine), Some(Lifecycle::Running));
    audio.process(&AudioIn::new(&x, 64, 1, 64), &mut AudioOut::new(&mut y, 64, 1, 64));
    assert_eq!(y, x);
    engine.stop();
    audio.process(&AudioIn::new(&x, 64, 1, 64), &mut AudioOut::new(&mut y, 64, 1, 64));
    engine.update();
    drop(engine);
    let log = PROBE_LOG.get().expect("probe built").lock().expect("log").clone();
    assert_eq!(
        log,
        ["build", "initialize 44100 1 64", "start", "process", "stop", "start", "process", "stop", "cleanup"]
    );
}

#[test]
fn spectra_are_kept_while_someone_reports() {
    let src = graph_file("chain.ron");
    let (mut e, mut a) = engine(&src, 256, 1, Parallelism::Adaptive);
    let play = |e: &mut Engine, a: &mut AudioProcessor, seconds: f64| {
        let mut sink = MemorySink::default();
        render(e, a, &mut MemorySource::new(demo(seconds)), &mut sink, 256, &mut |_| true).expect("render");
    };
    // Nobody has asked: the audio side kept no samples for a spectrum.
    play(&mut e, &mut a, 0.5);
    assert!(e.metrics().output.spectrum.is_empty());
    // That report asked for the next 10 s: 4096 frames later there is one.
    play(&mut e, &mut a, 0.5);
    assert!(!e.metrics().output.spectrum.is_empty());
    // More than 10 s without a report: the samples were dropped.
    play(&mut e, &mut a, 11.0);
    assert!(e.metrics().output.spectrum.is_empty());
    // Kept for good, reports or not.
    e.metrics_reader().keep_spectrum();
    play(&mut e, &mut a, 11.0);
    assert!(!e.metrics().output.spectrum.is_empty());
}

/// The audio side publishes its latest samples for a spectrum after the first block that follows a
/// report, driven here as a device callback would drive it (not through `render`, which publishes at its
/// end); each spectrum is of the latest 4096 frames at that block.
#[test]
fn a_polling_reader_gets_the_window_after_its_last_report() {
    let src = graph_file("chain.ron");
    let (mut e, mut a) = engine(&src, 256, 1, Parallelism::Adaptive);
    // A 1 kHz tone for 0.5 s, then a 5 kHz one.
    let tone = |hz: f64, from: usize, n: usize| -> Vec<f32> {
        (from..from + n).map(|i| (0.25 * (TAU * hz * i as f64 / 48000.0).sin()) as f32).collect()
    };
    let mut at = 0;
    let mut play = |a: &mut AudioProcessor, hz: f64, frames: usize| {
        for _ in 0..frames / 256 {
            let x = tone(hz, at, 256);
            let input = [x.clone(), x].concat();
            let mut out = vec![0.0f32; 512];
            a.process(&AudioIn::new(&input, 256, 2, 256), &mut AudioOut::new(&mut out, 256, 2, 256));
            at += 256;
        }
    };
    // The loudest third-octave band of a report's output spectrum.
    let loudest = |e: &mut Engine| {
        let bands = e.metrics().output.spectrum;
        bands.iter().max_by(|x, y| x.level_db.total_cmp(&y.level_db)).map(|b| b.center_hz)
    };
    play(&mut a, 1000.0, 24000);
    assert_eq!(loudest(&mut e), None, "nobody had asked");
    play(&mut a, 1000.0, 24000);
    let first = loudest(&mut e).expect("the first report's request was served");
    assert!((first - 1000.0).abs() < 100.0, "{first}");
    // The tone changes after that report: the next one holds the window published at the first block
    // after it, which is still the 1 kHz tone; the one after that, the 5 kHz tone.
    play(&mut a, 5000.0, 24000);
    let then = loudest(&mut e).expect("served");
    assert!((then - 1000.0).abs() < 100.0, "{then}");
    play(&mut a, 5000.0, 24000);
    let now = loudest(&mut e).expect("served");
    assert!((now - 5000.0).abs() < 500.0, "{now}");
    // Kept for good before any report, with one report at the end: the window is published by the
    // driving thread after its last block.
    let (mut e, mut a) = engine(&src, 256, 1, Parallelism::Adaptive);
    e.metrics_reader().keep_spectrum();
    play(&mut a, 5000.0, 24000);
    assert_eq!(loudest(&mut e), None, "nothing asked for a window yet");
    a.publish_spectra();
    let end = loudest(&mut e).expect("published");
    assert!((end - 5000.0).abs() < 500.0, "{end}");
}

#[test]
fn the_monitor_reports_timing_load_levels_and_memory() {
    let src = graph_file("chain.ron");
    let (mut e, mut a) = engine(&src, 256, 1, Parallelism::Adaptive);
    e.meter_node("comp").expect("comp runs");
    e.metrics_reader().keep_spectrum();
    assert!(e.meter_node("nope").is_err());
    let mut sink = MemorySink::default();
    render(&mut e, &mut a, &mut MemorySource::new(demo(2.0)), &mut sink, 256, &mut |_| true).expect("render");
    let report = e.metrics();
    let blocks = (96000 + 240usize).div_ceil(256) as u64;
    assert_eq!(report.blocks, blocks);
    assert_eq!(report.frames, 96000 + 240);
    assert_eq!(report.executor, "serial");
    assert!(report.dsp_load > 0.0 && report.dsp_load < 1.0);
    let names: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["eq", "comp", "limiter"]);
    for n in &report.nodes {
        assert_eq!(n.calls, blocks);
        assert!(n.mean_ns > 0.0 && n.p50_ns <= n.p99_ns && n.p99_ns <= n.max_ns, "{n:?}");
        assert!(n.budget_share > 0.0 && n.budget_share < 1.0);
    }
    assert_eq!(report.nodes[2].latency_frames, 240);
    // The output meter agrees with the rendered samples.
    let peak = sink.channels.iter().flatten().fold(0.0f32, |p, x| p.max(x.abs()));
    assert!((report.output.peak_dbfs - 20.0 * f64::from(peak).log10()).abs() < 1e-3);
    assert!(report.output.peak_dbfs <= -1.0 + 1e-4, "the limiter's ceiling shows in the meter");
    assert_eq!(report.output.clipped_samples, 0);
    assert!(report.output.rms_dbfs < report.output.peak_dbfs);
    assert!(!report.output.spectrum.is_empty());
    // Only the metered node has levels; the compressor's output is louder than its input's threshold.
    assert!(report.nodes[1].levels.is_some() && report.nodes[0].levels.is_none());
    if cfg!(target_os = "linux") {
        assert!(report.memory.peak_rss_bytes.unwrap_or(0) > 1 << 20);
    }
    let json = serde_json::to_value(&report).expect("serializes");
    assert!(json["nodes"][0]["p99_ns"].is_u64());

    // With the monitor off nothing is timed.
    let options = EngineOptions { max_block: 256, threads: 1, monitor: false, ..Default::default() };
    let (mut quiet, mut qa) = Engine::new(parse(&src), options).expect("engine");
    render(&mut quiet, &mut qa, &mut MemorySource::new(demo(0.5)), &mut MemorySink::default(), 256, &mut |_| true)
        .expect("render");
    assert!(quiet.metrics().nodes.iter().all(|n| n.calls == 0));
}

/// The cookbook's coefficients (b0, b1, b2, a0, a1, a2), written out independently of the library.
fn cookbook_coeffs(kind: &str, f0: f64, gain_db: f64, q: f64, sr: f64) -> ([f64; 3], [f64; 3]) {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = TAU * f0 / sr;
    let (cw, sw) = (w0.cos(), w0.sin());
    let al = sw / (2.0 * q);
    let sa = 2.0 * a.sqrt() * al;
    match kind {
        "LowPass" => ([(1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "HighPass" => ([(1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "BandPass" => ([al, 0.0, -al], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "Notch" => ([1.0, -2.0 * cw, 1.0], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "AllPass" => ([1.0 - al, -2.0 * cw, 1.0 + al], [1.0 + al, -2.0 * cw, 1.0 - al]),
        "Peak" => ([1.0 + al * a, -2.0 * cw, 1.0 - al * a], [1.0 + al / a, -2.0 * cw, 1.0 - al / a]),
        "LowShelf" => (
            [
                a * ((a + 1.0) - (a - 1.0) * cw + sa),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cw),
                a * ((a + 1.0) - (a - 1.0) * cw - sa),
            ],
            [(a + 1.0) + (a - 1.0) * cw + sa, -2.0 * ((a - 1.0) + (a + 1.0) * cw), (a + 1.0) + (a - 1.0) * cw - sa],
        ),
        "HighShelf" => (
            [
                a * ((a + 1.0) + (a - 1.0) * cw + sa),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cw),
                a * ((a + 1.0) + (a - 1.0) * cw - sa),
            ],
            [(a + 1.0) - (a - 1.0) * cw + sa, 2.0 * ((a - 1.0) - (a + 1.0) * cw), (a + 1.0) - (a - 1.0) * cw - sa],
        ),
        _ => unreachable!(),
    }
}

/// A double-precision reference: direct form I, straight from the difference equation.
fn reference_filter(x: &[f64], b: [f64; 3], a: [f64; 3]) -> Vec<f64> {
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    x.iter()
        .map(|&x0| {
            let y0 = (b[0] * x0 + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2) / a[0];
            (x2, x1, y2, y1) = (x1, x0, y1, y0);
            y0
        })
        .collect()
}

/// Error of `got` against `want` as relative RMS, in dB.
fn relative_error_db(got: &[f32], want: &[f64]) -> f64 {
    let (mut err, mut sig) = (0.0, 0.0);
    for (g, w) in got.iter().zip(want) {
        err += (f64::from(*g) - w).powi(2);
        sig += w * w;
    }
    10.0 * (err / sig).log10()
}

#[test]
fn every_biquad_node_is_within_minus_120_db_of_a_double_precision_reference_on_music() {
    let input = demo(4.0);
    // The precision issue's EQ: -6 dB, five peaks, a 12 kHz low-pass.
    let bands = [
        ("Peak", 100.0, 3.0, 1.0),
        ("Peak", 400.0, -2.0, 1.0),
        ("Peak", 1000.0, 1.5, 1.0),
        ("Peak", 4000.0, -3.0, 1.0),
        ("Peak", 10000.0, 2.0, 1.0),
        ("LowPass", 12000.0, 0.0, 0.707),
    ];
    let band_text: Vec<String> =
        bands.iter().map(|(k, f, g, q)| format!("(kind: {k}, freq_hz: {f:?}, gain_db: {g:?}, q: {q:?})")).collect();
    let src = format!(
        "(sample_rate: 48000, channels: 2, nodes: {{ \"trim\": Gain(gain_db: -6.0), \"eq\": Eq(bands: [{}]) }}, \
         edges: [(\"input\", \"trim\"), (\"trim\", \"eq\"), (\"eq\", \"output\")])",
        band_text.join(", ")
    );
    let got = run(&src, input.clone(), 512, 1, Parallelism::Adaptive);
    for c in 0..2 {
        let mut want: Vec<f64> = input[c].iter().map(|&x| f64::from(x) * 10f64.powf(-6.0 / 20.0)).collect();
        for (k, f, g, q) in bands {
            let (b, a) = cookbook_coeffs(k, f, g, q, SR);
            want = reference_filter(&want, b, a);
        }
        let e = relative_error_db(&got[c], &want);
        eprintln!("the issue's EQ chain, channel {c}: {e:.1} dB");
        assert!(e < -120.0, "the issue's EQ chain, channel {c}: {e:.1} dB");
    }
    // Every band kind alone, at low frequencies too (where f32 filters fail), and the shelf presets.
    type Band = (&'static str, f64, f64, f64);
    let mut cases: Vec<(String, Vec<Band>)> = Vec::new();
    for (kind, f, g, q) in [
        ("Peak", 40.0, 6.0, 2.0),
        ("LowShelf", 60.0, 6.0, 0.707),
        ("HighShelf", 9000.0, -6.0, 0.707),
        ("LowPass", 30.0, 0.0, 0.707),
        ("HighPass", 25.0, 0.0, 0.707),
        ("BandPass", 80.0, 0.0, 4.0),
        ("Notch", 50.0, 0.0, 10.0),
        ("AllPass", 200.0, 0.0, 0.707),
    ] {
        cases.push((
            format!("Eq(bands: [(kind: {kind}, freq_hz: {f:?}, gain_db: {g:?}, q: {q:?})])"),
            vec![(kind, f, g, q)],
        ));
    }
    cases.push((
        "BassBoost(gain_db: 6.0, freq_hz: 80.0)".into(),
        vec![("LowShelf", 80.0, 6.0, std::f64::consts::FRAC_1_SQRT_2)],
    ));
    cases.push((
        "TrebleBoost(gain_db: -4.0)".into(),
        vec![("HighShelf", 8000.0, -4.0, std::f64::consts::FRAC_1_SQRT_2)],
    ));
    for (node, filters) in cases {
        let got = run(&single_node(2, &node), input.clone(), 333, 1, Parallelism::Adaptive);
        for c in 0..2 {
            let mut want: Vec<f64> = input[c].iter().map(|&x| f64::from(x)).collect();
            for &(k, f, g, q) in &filters {
                let (b, a) = cookbook_coeffs(k, f, g, q, SR);
                want = reference_filter(&want, b, a);
            }
            let e = relative_error_db(&got[c], &want);
            eprintln!("{node}, channel {c}: {e:.1} dB");
            assert!(e < -120.0, "{node}, channel {c}: {e:.1} dB");
        }
    }
}

#[test]
fn side_jobs_run_once_each_beside_the_graph_and_leave_its_output_alone() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let input = demo(0.5);
    let frames = input[0].len();
    for (name, threads) in [("parallel.ron", 2), ("chain.ron", 2), ("parallel.ron", 1)] {
        let src = graph_file(name);
        let block = 256;
        let reference = bits(&run(&src, input.clone(), block, 1, Parallelism::Adaptive));
        let (_engine, mut audio) = engine(&src, block, threads, Parallelism::Always);
        let latency = _engine.latency_frames();
        let mut out = vec![Vec::new(); 2];
        let (mut input_buf, mut output_buf) = (vec![0.0f32; 2 * block], vec![0.0f32; 2 * block]);
        let (runs, in_audio, flushed) = (AtomicUsize::new(0), AtomicBool::new(false), AtomicBool::new(false));
        for start in (0..frames + latency).step_by(block) {
            let n = block.min(frames + latency - start);
            for c in 0..2 {
                for i in 0..n {
                    input_buf[c * block + i] = input[c].get(start + i).copied().unwrap_or(0.0);
                }
            }
            // With workers, each job waits until the other has started: they run at the same time, on two
            // threads. Without, they run one after the other.
            let started = [AtomicBool::new(false), AtomicBool::new(false)];
            let job = |me: usize| {
                runs.fetch_add(1, Ordering::Relaxed);
                in_audio.fetch_or(fxgraph::alloc::in_audio_context(), Ordering::Relaxed);
                // The caller's floating-point mode, not the audio side's flush-to-zero: half the smallest
                // normal f32 is a subnormal, not zero.
                flushed.fetch_or(std::hint::black_box(f32::MIN_POSITIVE) * 0.5 == 0.0, Ordering::Relaxed);
                started[me].store(true, Ordering::SeqCst);
                if threads > 1 {
                    let t0 = Instant::now();
                    while !started[1 - me].load(Ordering::SeqCst) {
                        assert!(
                            t0.elapsed() < Duration::from_secs(10),
                            "{name}, block at {start}: side job {me} ran alone"
                        );
                        std::hint::spin_loop();
                    }
                }
            };
            let (mut a, mut b) = (|| job(0), || job(1));
            audio.process_overlapping(
                &AudioIn::new(&input_buf, block, 2, n),
                &mut AudioOut::new(&mut output_buf, block, 2, n),
                &mut [&mut a, &mut b],
            );
            for c in 0..2 {
                out[c].extend_from_slice(&output_buf[c * block..c * block + n]);
            }
        }
        let out: Vec<Vec<f32>> = out.into_iter().map(|c| c[latency..].to_vec()).collect();
        assert!(bits(&out) == reference, "{name}, {threads} threads: the output changed");
        assert_eq!(runs.load(Ordering::Relaxed), 2 * (frames + latency).div_ceil(block), "{name}: once each");
        assert!(!in_audio.load(Ordering::Relaxed), "{name}: a side job ran in the audio context");
        assert!(!flushed.load(Ordering::Relaxed), "{name}: a side job ran with flush-to-zero");
    }
}

#[test]
fn the_monitor_can_be_switched_off_and_on_while_audio_runs() {
    // Timing and levels are recorded only for blocks processed with the monitor on; the output does not
    // change.
    let src = graph_file("chain.ron");
    let input = demo(0.5);
    let reference = bits(&run(&src, input.clone(), 256, 1, Parallelism::Adaptive));
    let (mut engine, mut audio) = engine(&src, 256, 1, Parallelism::Adaptive);
    let frames = input[0].len();
    let latency = engine.latency_frames();
    let planar: Vec<f32> =
        input.iter().flat_map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, latency))).collect();
    let total = frames + latency;
    let mut output = vec![0.0f32; 2 * total];
    let (mut blocks_on, mut samples_on, mut at) = (0u64, 0u64, 0);
    for (segment, on) in [(0.2, true), (0.3, false), (0.5, true)] {
        engine.set_monitor(on);
        let end = if on && segment == 0.5 { total } else { at + (segment * frames as f64) as usize / 256 * 256 };
        while at < end {
            let n = 256.min(end - at);
            audio.process(
                &AudioIn::new(&planar, total, 2, total).slice(at, n),
                &mut AudioOut::new(&mut output, total, 2, total).slice_mut(at, n),
            );
            blocks_on += u64::from(on);
            samples_on += if on { 2 * n as u64 } else { 0 };
            at += n;
        }
        engine.update();
        let report = engine.metrics();
        assert!(report.nodes.iter().all(|n| n.calls == blocks_on), "after a segment with the monitor {on}");
        assert_eq!(report.output.samples, samples_on, "after a segment with the monitor {on}: levels");
    }
    let out: Vec<Vec<f32>> = (0..2).map(|c| output[c * total + latency..(c + 1) * total].to_vec()).collect();
    assert!(bits(&out) == reference, "switching the monitor changed the output");
}

/// Runs `input` through `src` in runs of `block * batch` frames (the offline renderer's hand-off).
fn run_batched(
    src: &str,
    input: Vec<Vec<f32>>,
    block: usize,
    batch: usize,
    threads: usize,
    p: Parallelism,
) -> Vec<Vec<f32>> {
    let options = EngineOptions { max_block: block, threads, batch, parallelism: p, ..Default::default() };
    let (mut engine, mut audio) = Engine::new(parse(src), options).expect("engine starts");
    let mut sink = MemorySink::default();
    render(&mut engine, &mut audio, &mut MemorySource::new(input), &mut sink, block * batch, &mut |_| true)
        .expect("render");
    sink.channels
}

/// Branches of different latency (delay lines on the edges that line them up), a branch reading a mix of
/// two others and one reading the input beside them, three levels, and an output that mixes three branches
/// with delays.
const TANGLED: &str = r#"(sample_rate: 48000, channels: 2,
    nodes: {
        "lim": Limiter(ceiling_db: -3.0, lookahead_ms: 5.0, release_ms: 50.0),
        "after_lim": Eq(bands: [(kind: HighPass, freq_hz: 150.0, q: 0.7071)]),
        "dry": Gain(gain_db: -2.0),
        "mix": Compressor(threshold_db: -20.0, ratio: 3.0, attack_ms: 5.0, release_ms: 80.0, knee_db: 6.0, makeup_db: 0.0),
        "tail": Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 4.0, q: 1.0)]),
        "side": Eq(bands: [(kind: LowPass, freq_hz: 500.0, q: 0.7071)]),
        "late": Limiter(ceiling_db: -6.0, lookahead_ms: 2.0, release_ms: 30.0),
    },
    edges: [
        ("input", "lim"), ("lim", "after_lim"), ("input", "dry"),
        ("after_lim", "mix"), ("dry", "mix"), ("mix", "tail"),
        ("input", "side"), ("side", "late"),
        ("tail", "output"), ("late", "output"), ("dry", "output"),
    ],
)"#;

#[test]
fn the_dataflow_executor_gives_the_reference_bits_on_a_tangled_graph() {
    // Offline runs of several blocks go to the dataflow executor, which runs branches a chunk at a time on
    // whichever thread is free. Every way must give the single-thread bits.
    let src = TANGLED;
    let input = demo(2.0);
    let reference = bits(&run(src, input.clone(), 512, 1, Parallelism::Adaptive));
    assert!(reference[0].iter().any(|&b| b != 0));
    for (threads, block, batch, p) in [
        (2, 512, 8, Parallelism::Always),
        (2, 64, 64, Parallelism::Always),
        (3, 100, 13, Parallelism::Always),
        (2, 512, 8, Parallelism::Adaptive),
        (4, 256, 3, Parallelism::Always),
        // Long runs, cut into larger chunks (16 per run): 1024 frames, and 1300 (13 blocks of 100).
        (2, 512, 32, Parallelism::Always),
        (3, 100, 200, Parallelism::Always),
    ] {
        let out = bits(&run_batched(src, input.clone(), block, batch, threads, p));
        assert!(out == reference, "{threads} threads ({p:?}), block {block}, batch {batch}: the output changed");
    }
}

#[test]
fn levels_and_counts_do_not_depend_on_the_executor_or_the_batch() {
    // The output's meter, a node's meter and the count of non-finite input samples see the same blocks
    // (those the nodes are called with) whichever executor runs and however many blocks a call holds:
    // serial, level by level, or dataflow, where a worker may copy the input in and the output out.
    let mut input = demo(2.0);
    for i in [100, 20_000, 50_001] {
        input[0][i] = f32::NAN;
        input[1][i + 3] = f32::NEG_INFINITY;
    }
    let measure = |threads: usize, block: usize, batch: usize, p: Parallelism| {
        let options = EngineOptions { max_block: block, threads, batch, parallelism: p, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(parse(TANGLED), options).expect("engine starts");
        engine.meter_node("mix").expect("mix runs");
        let mut sink = MemorySink::default();
        render(&mut engine, &mut audio, &mut MemorySource::new(input.clone()), &mut sink, block * batch, &mut |_| true)
            .expect("render");
        let r = engine.metrics();
        let levels = |l: &fxgraph::monitor::Levels| {
            (l.peak_dbfs.to_bits(), l.rms_dbfs.to_bits(), l.dynamic_range_db.to_bits(), l.clipped_samples, l.samples)
        };
        let node = r.nodes.iter().find(|n| n.name == "mix").and_then(|n| n.levels.as_ref()).map(levels);
        (bits(&sink.channels), levels(&r.output), node, r.nonfinite_input_samples)
    };
    let reference = measure(1, 256, 1, Parallelism::Adaptive);
    assert_eq!(reference.3, 6);
    assert!(reference.2.is_some_and(|n| n.4 > 0), "the metered node was measured");
    for (threads, batch, p) in [
        (1, 16, Parallelism::Adaptive),
        (2, 1, Parallelism::Always),
        (2, 16, Parallelism::Always),
        (3, 7, Parallelism::Always),
        (2, 64, Parallelism::Always),
    ] {
        let got = measure(threads, 256, batch, p);
        assert!(got.0 == reference.0, "{threads} threads, batch {batch}: the output changed");
        assert_eq!(got.1, reference.1, "{threads} threads, batch {batch}: the output's levels");
        assert_eq!(got.2, reference.2, "{threads} threads, batch {batch}: the node's levels");
        assert_eq!(got.3, reference.3, "{threads} threads, batch {batch}: non-finite input samples");
    }
}

/// A node kind that panics on its `at`-th block.
#[derive(Debug, Clone, serde::Deserialize, bevy_ecs::component::Component)]
struct Bomb {
    at: usize,
}

impl NodeSpec for Bomb {
    fn kind(&self) -> &'static str {
        "Bomb"
    }
    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        Ok(())
    }
    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(BombProcessor { left: self.at }))
    }
    spec_without_params!();
}

struct BombProcessor {
    left: usize,
}

impl Processor for BombProcessor {
    fn initialize(&mut self, _config: &ProcessConfig) -> Result<(), NodeError> {
        Ok(())
    }
    fn process(&mut self, _audio: &mut AudioOut<'_>) {
        self.left = self.left.saturating_sub(1);
        assert!(self.left > 0, "the bomb went off");
    }
}

#[test]
fn a_panicking_node_stops_a_parallel_run_instead_of_hanging_it() {
    // Whichever thread runs the panicking chunk, the others stop taking chunks and the panic reaches the
    // caller, in every executor.
    let mut registry = fxgraph::nodes::registry();
    registry.register(NodeKind::new::<Bomb>("Bomb", "panics on a given block"));
    let src = r#"(sample_rate: 48000, channels: 2,
        nodes: { "a": Gain(gain_db: -1.0), "b": Bomb(at: 30), "c": Gain(gain_db: 1.0), "sum": Gain(gain_db: 0.0) },
        edges: [("input", "a"), ("input", "b"), ("a", "sum"), ("b", "sum"), ("input", "c"), ("c", "sum"), ("sum", "output")])"#;
    for (threads, block, batch) in [(2, 64, 64), (3, 512, 8), (2, 128, 1), (1, 64, 64)] {
        let graph = Graph::parse_with(src, "bomb.ron", ".".as_ref(), &registry).expect("valid");
        let options =
            EngineOptions { max_block: block, threads, batch, parallelism: Parallelism::Always, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(graph, options).expect("starts");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut sink = MemorySink::default();
                let source = &mut MemorySource::new(demo(2.0));
                render(&mut engine, &mut audio, source, &mut sink, block * batch, &mut |_| true).map(|_| ())
            }));
            let _ = tx.send(result.is_err());
        });
        let panicked = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(panicked, Ok(true), "{threads} threads, block {block}, batch {batch}: the panic must end the run");
    }
}

#[test]
fn batched_runs_give_the_same_bits() {
    // Offline runs may hold several blocks per hand-off to the workers; nodes still see blocks of at most
    // max_block and the output is the reference's, bit for bit.
    let src = graph_file("parallel.ron");
    let input = demo(3.0);
    let reference = bits(&run(&src, input.clone(), 512, 1, Parallelism::Adaptive));
    for (threads, block, batch) in [(1, 512, 8), (2, 64, 64), (2, 512, 8), (3, 100, 7)] {
        let options =
            EngineOptions { max_block: block, threads, batch, parallelism: Parallelism::Always, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(parse(&src), options).expect("engine starts");
        let mut sink = MemorySink::default();
        render(&mut engine, &mut audio, &mut MemorySource::new(input.clone()), &mut sink, block * batch, &mut |_| true)
            .expect("render");
        assert!(bits(&sink.channels) == reference, "{threads} threads, block {block}, batch {batch}");
        let report = engine.metrics();
        // Runs of block * batch frames (the last one shorter), each cut into blocks of `block`.
        let (total, run) = (3 * 48000 + 240usize, block * batch);
        let expected = total / run * batch + (total % run).div_ceil(block);
        assert_eq!(report.nodes[0].calls, expected as u64, "every node saw blocks of at most {block}");
    }
}

/// Which handles may cross threads, asserted when this file compiles (as kira's `tests/sync_send.rs` does):
/// moving one to the wrong thread, or sharing one that must not be shared, is a compile error.
///
/// - `Engine` (the control side) is `Send`: it may live on any one thread (a UI's). It is not `Sync`: its
///   methods take `&mut self`, and the subscribers it calls are `FnMut`; a program that reaches it from
///   several threads wraps it in a `Mutex`.
/// - `AudioProcessor` (the audio side) is `Send` and not `Sync`: exactly one thread drives it at a time.
/// - `MetricsReader` is `Send + Sync` and cheap to clone: any thread may read the monitor while audio runs.
/// - `Player` is `Send`; `Graph`, `GraphError` and `Error` are `Send + Sync`.
#[test]
fn handles_are_send_and_sync_where_documented() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<fxgraph::Engine>();
    send::<fxgraph::AudioProcessor>();
    send::<fxgraph::play::Player>();
    send_sync::<fxgraph::MetricsReader>();
    send_sync::<fxgraph::Graph>();
    send_sync::<fxgraph::GraphError>();
    send_sync::<fxgraph::Error>();
    // Not `Sync`: naming `is_sync` for a type that is would be ambiguous (two impls apply), and not compile.
    trait NotSync<A> {
        fn is_sync() {}
    }
    impl<T: ?Sized> NotSync<()> for T {}
    impl<T: ?Sized + Sync> NotSync<u8> for T {}
    <fxgraph::Engine as NotSync<_>>::is_sync();
    <fxgraph::AudioProcessor as NotSync<_>>::is_sync();
}

/// A node kind that spins for `us` microseconds of wall time per call (and passes its input through).
#[derive(Debug, Clone, serde::Deserialize, bevy_ecs::component::Component)]
struct Spin {
    us: u64,
}

impl NodeSpec for Spin {
    fn kind(&self) -> &'static str {
        "Spin"
    }
    fn validate(&self, _ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        Ok(())
    }
    fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        Ok(Box::new(SpinProcessor(std::time::Duration::from_micros(self.us))))
    }
    spec_without_params!();
}

struct SpinProcessor(std::time::Duration);

impl Processor for SpinProcessor {
    fn initialize(&mut self, _config: &ProcessConfig) -> Result<(), NodeError> {
        Ok(())
    }
    fn process(&mut self, _audio: &mut AudioOut<'_>) {
        let start = std::time::Instant::now();
        while start.elapsed() < self.0 {
            std::hint::spin_loop();
        }
    }
}

#[test]
fn a_block_means_what_nodes_are_called_with_in_every_count_and_every_budget_share() {
    // A node that takes 1 ms a call, in a graph run at block 512 (10.67 ms at 48 kHz): its budget share is
    // 0.094 whatever the executor's hand-offs, and the blocks are frames / block.
    let mut registry = fxgraph::nodes::registry();
    registry.register(NodeKind::new::<Spin>("Spin", "spins for a fixed time per call"));
    let src = r#"(sample_rate: 48000, channels: 2,
        nodes: { "spin": Spin(us: 1000), "a": Gain(gain_db: -1.0), "sum": Gain(gain_db: 0.0) },
        edges: [("input", "spin"), ("input", "a"), ("spin", "sum"), ("a", "sum"), ("sum", "output")])"#;
    let (block, seconds) = (512usize, 1.0);
    let input = demo(seconds);
    let frames = input[0].len();
    // Offline (hand-offs of `batch` blocks) with one and two threads, and driven per callback.
    for (threads, batch, callback) in
        [(1, 8, None), (2, 32, None), (1, 1, Some(block)), (2, 1, Some(block)), (2, 1, Some(128))]
    {
        let graph = Graph::parse_with(src, "spin.ron", ".".as_ref(), &registry).expect("valid");
        let options = EngineOptions { max_block: block, threads, batch, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(graph, options).expect("starts");
        let processed = match callback {
            None => {
                let mut sink = MemorySink::default();
                render(
                    &mut engine,
                    &mut audio,
                    &mut MemorySource::new(input.clone()),
                    &mut sink,
                    block * batch,
                    &mut |_| true,
                )
                .expect("render");
                frames + engine.latency_frames()
            }
            Some(n) => {
                let mut out = vec![0.0f32; 2 * n];
                let mut x = vec![0.0f32; 2 * n];
                for at in (0..frames - frames % n).step_by(n) {
                    for c in 0..2 {
                        x[c * n..(c + 1) * n].copy_from_slice(&input[c][at..at + n]);
                    }
                    audio.process(&AudioIn::new(&x, n, 2, n), &mut AudioOut::new(&mut out, n, 2, n));
                }
                frames - frames % n
            }
        };
        let what = format!("{threads} threads, batch {batch}, callback {callback:?}");
        let r = engine.metrics();
        let per_block = callback.unwrap_or(block).min(block);
        assert_eq!(r.block_frames, block, "{what}");
        assert_eq!(r.blocks, processed.div_ceil(per_block) as u64, "{what}: blocks are frames / block");
        assert!((r.block_mean_frames - processed as f64 / r.blocks as f64).abs() < 1e-9, "{what}");
        let spin = r.nodes.iter().find(|n| n.name == "spin").expect("spin");
        assert_eq!(spin.calls, r.blocks, "{what}: one call a block");
        let budget_ns = per_block as f64 / 48000.0 * 1e9;
        // The median call is the spin's 1 ms (within the histogram's resolution), however busy the machine.
        let typical = spin.p50_ns as f64 / budget_ns;
        let expected = 1e6 / budget_ns;
        assert!((typical / expected - 1.0).abs() < 0.08, "{what}: median share {typical}, expected {expected}");
        let mean_block_ns = r.block_mean_frames / 48000.0 * 1e9;
        assert!((spin.budget_share - spin.mean_ns / mean_block_ns).abs() < 1e-9, "{what}");
        // No upper bound on the mean: on a busy machine preempted calls last longer in wall time.
        assert!(spin.budget_share >= expected * 0.99, "{what}: {}", spin.budget_share);
        // The blocks' time covers at least the spin, and the runs are counted under their own name.
        assert!(r.block_mean_ns >= 0.99e6, "{what}: {}", r.block_mean_ns);
        assert_eq!(
            r.runs,
            match callback {
                Some(_) => r.blocks,
                None => processed.div_ceil(block * batch) as u64,
            },
            "{what}"
        );
    }
}

/// Drives an engine's audio side with calls of `sizes` frames in turn (planar), as a device would, and
/// returns the raw output (latency not compensated).
fn drive(audio: &mut AudioProcessor, input: &[Vec<f32>], sizes: &[usize]) -> Vec<Vec<f32>> {
    let (channels, frames) = (input.len(), input[0].len());
    let mut out = vec![Vec::with_capacity(frames); channels];
    let (mut at, mut k) = (0, 0);
    while at < frames {
        let n = sizes[k % sizes.len()].min(frames - at);
        k += 1;
        let x: Vec<f32> = input.iter().flat_map(|c| c[at..at + n].iter().copied()).collect();
        let mut y = vec![0.0f32; channels * n];
        audio.process(&AudioIn::new(&x, n, channels, n), &mut AudioOut::new(&mut y, n, channels, n));
        for (c, o) in out.iter_mut().enumerate() {
            o.extend_from_slice(&y[c * n..(c + 1) * n]);
        }
        at += n;
    }
    out
}

#[test]
fn the_parallel_executor_driven_per_callback_gives_the_serial_bits_for_any_callback_size() {
    // Four parallel branches and a limiter's latency; callbacks that are not multiples of the block.
    let src = graph_file("parallel.ron");
    let input = demo(2.0);
    let (_e, mut serial) = engine(&src, 512, 1, Parallelism::Adaptive);
    let reference = bits(&drive(&mut serial, &input, &[512]));
    assert!(reference[0].iter().any(|&b| b != 0));
    for sizes in [&[1usize][..], &[37], &[511], &[4097], &[1, 37, 511, 4097, 64]] {
        for (threads, parallelism) in [(2, Parallelism::Always), (2, Parallelism::Adaptive), (3, Parallelism::Always)] {
            let (_e, mut audio) = engine(&src, 512, threads, parallelism);
            let out = bits(&drive(&mut audio, &input, sizes));
            assert!(out == reference, "{threads} threads ({parallelism:?}), callbacks of {sizes:?}: the bits differ");
        }
    }
}

#[test]
fn stereo_width_scales_the_side_and_leaves_the_mid() {
    // Width w: mid (L + R) / 2 unchanged, side (L - R) / 2 times w, at 0, 1, 2 and 4.
    let input = vec![sine(440.0, 0.4, 4800), sine(1000.0, 0.3, 4800)];
    for width in [0.0, 1.0, 2.0, 4.0] {
        let out =
            run(&single_node(2, &format!("StereoWidth(width: {width})")), input.clone(), 256, 1, Parallelism::Adaptive);
        // Past the 20 ms ramp from the default width.
        for n in 2400..4800 {
            let (l, r) = (f64::from(input[0][n]), f64::from(input[1][n]));
            let (ol, or) = (f64::from(out[0][n]), f64::from(out[1][n]));
            let (mid, side) = ((l + r) / 2.0, (l - r) / 2.0);
            assert!(((ol + or) / 2.0 - mid).abs() < 1e-6, "width {width}, frame {n}: the mid moved");
            assert!(
                ((ol - or) / 2.0 - width * side).abs() < 1e-6 * (1.0 + width),
                "width {width}, frame {n}: the side"
            );
        }
    }
}

#[test]
fn the_limiter_holds_the_ceiling_in_effect_at_every_sample_while_it_moves_and_releases_at_its_time() {
    let src = single_node(2, "Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0)");
    let (mut limiter, mut audio) = engine(&src, 256, 1, Parallelism::Adaptive);
    let d = limiter.latency_frames();
    assert_eq!(d, 240);
    // Loud input (a 2.0 sine and noise), the ceiling moved every 0.25 s between -6 and -0.5 dB.
    let frames = 96000;
    let noise = demo(2.0);
    let x: Vec<Vec<f32>> = (0..2)
        .map(|c| (0..frames).map(|n| 2.0 * (TAU * 200.0 * n as f64 / SR).sin() as f32 + noise[c][n]).collect())
        .collect();
    let ceilings = [-1.0, -6.0, -0.5, -3.0, -6.0, -0.5, -2.0, -4.5];
    let at = |k: usize| k as u64 * 12000;
    for (k, &c) in ceilings.iter().enumerate().skip(1) {
        limiter.set_at("n", "ceiling_db", c, at(k)).expect("scheduled");
    }
    limiter.update();
    let y = drive(&mut audio, &x, &[256]);
    let ramp = (0.020 * SR) as u64; // RAMP_MS
    let gain = |db: f64| 10f64.powf(db / 20.0);
    for k in 0..ceilings.len() {
        let (from, to) = (at(k), at(k + 1).min(frames as u64));
        let mut loudest = 0.0f64;
        for frame in from..to {
            // The sample that entered at `frame` leaves `d` frames later, holding the ceiling of its entry.
            let out = frame as usize + d;
            if out >= frames {
                break;
            }
            let moving = k > 0 && frame < from + ramp;
            let bound = if moving { gain(ceilings[k - 1]).max(gain(ceilings[k])) } else { gain(ceilings[k]) };
            for channel in &y {
                let v = f64::from(channel[out].abs());
                assert!(v <= bound * (1.0 + 1e-6), "frame {frame}: {v} over the ceiling {bound}");
                if !moving {
                    loudest = loudest.max(v);
                }
            }
        }
        assert!(loudest > 0.97 * gain(ceilings[k]), "segment {k}: the output reaches the ceiling ({loudest})");
    }

    // Release: DC 0.1 with a 2.0 burst; after it the gain recovers as 1 - 0.75 e^(-t / release), smoothed over
    // the lookahead window (half of it, 2.5 ms, of delay).
    for release_ms in [50.0, 200.0] {
        let src = single_node(1, &format!("Limiter(ceiling_db: -6.0206, lookahead_ms: 5.0, release_ms: {release_ms})"));
        let (_e, mut audio) = engine(&src, 256, 1, Parallelism::Adaptive);
        let (burst, end) = (24000usize, 28800usize);
        let x = vec![(0..96000).map(|n| if (burst..end).contains(&n) { 2.0 } else { 0.1 }).collect::<Vec<f32>>()];
        let y = drive(&mut audio, &x, &[256]);
        let g = |n: usize| f64::from(y[0][n + 240]) / 0.1;
        assert!((g(end + 10) - 0.25).abs() < 0.01, "fully limited right after the burst: {}", g(end + 10));
        let target = 1.0 - 0.75 / std::f64::consts::E;
        let t = (end..90000).find(|&n| g(n) >= target).expect("recovers") - end;
        let t_ms = t as f64 / 48.0 - 2.5;
        assert!((t_ms / release_ms - 1.0).abs() < 0.1, "release {release_ms} ms: recovered in {t_ms:.1} ms");
    }
}

#[test]
fn filter_sweeps_leave_no_transient_even_towards_nyquist() {
    // A 100 Hz sine through one band whose setting jumps back and forth every 7 blocks of 128 frames (each
    // jump ramped over 20 ms). Coefficients recomputed every 32 frames left a click of 0.009 on this 0.5 sine
    // when a low-pass swept between 8 and 20 kHz; every 8 frames, none.
    for (node, key, lo, hi) in [
        ("Eq(bands: [(kind: LowPass, freq_hz: 12000.0, q: 0.7)])", "bands[0].freq_hz", 8000.0, 20000.0),
        ("Eq(bands: [(kind: HighShelf, freq_hz: 12000.0, gain_db: 6.0, q: 0.7)])", "bands[0].freq_hz", 8000.0, 21000.0),
        ("Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0)])", "bands[0].gain_db", -12.0, 12.0),
        ("Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0)])", "bands[0].freq_hz", 300.0, 3000.0),
        ("Eq(bands: [(kind: LowShelf, freq_hz: 100.0, gain_db: 2.0, q: 0.7)])", "bands[0].q", 0.5, 2.0),
    ] {
        let (mut e, mut audio) = engine(&single_node(1, node), 512, 1, Parallelism::Adaptive);
        let mut out = Vec::new();
        for block in 0..2000u64 {
            if block % 7 == 3 {
                e.set("n", key, if (block / 7) % 2 == 0 { lo } else { hi }).expect("set");
                e.update();
            }
            let x: Vec<f32> =
                (0..128).map(|i| (0.5 * (TAU * 100.0 * (block * 128 + i) as f64 / SR).sin()) as f32).collect();
            let mut y = vec![0.0f32; 128];
            audio.process(&AudioIn::new(&x, 128, 1, 128), &mut AudioOut::new(&mut y, 128, 1, 128));
            out.extend_from_slice(&y);
        }
        let (click, at) = common::largest_click(&out[4800..], 1);
        assert!(click < 0.001, "{node}, {key} between {lo} and {hi}: a click of {click} at frame {}", at + 4800);
    }
}

/// One of every built-in kind: a three-band split, a compressor keyed by a sidechain, a gate, mid/side
/// there and back, a stereo width, a channel picked and spread, a delay, a mixer of three buses, a
/// convolver beside them, a limiter and a gain.
const EVERY_KIND: &str = r#"(sample_rate: 48000, channels: 2,
    nodes: {
        "eq": Eq(bands: [(kind: LowShelf, freq_hz: 120.0, gain_db: 3.0, q: 0.7), (kind: Peak, freq_hz: 2500.0, gain_db: -4.0, q: 2.0), (kind: HighPass, freq_hz: 30.0, q: 0.7071)]),
        "bands": Crossover(freqs_hz: [300.0, 4000.0]),
        "comp": Compressor(threshold_db: -30.0, ratio: 4.0, attack_ms: 3.0, release_ms: 60.0, knee_db: 6.0, makeup_db: 3.0),
        "gate": Gate(threshold_db: -40.0, attack_ms: 1.0, hold_ms: 20.0, release_ms: 30.0, range_db: -30.0),
        "enc": MidSide(mode: Encode),
        "dec": MidSide(mode: Decode),
        "wide": StereoWidth(width: 1.4),
        "left": Channels(select: [0]),
        "delay": Delay(delay_ms: 3.0),
        "mix": Mixer(inputs: [2, 2, 2], gains: [[1.0, 0.0, 0.8, 0.0, 0.5, 0.1], [0.0, 1.0, 0.0, 0.8, 0.1, 0.5]]),
        "room": Convolver(path: "graphs/ir/room.flac", gain_db: -12.0),
        "lim": Limiter(ceiling_db: -1.0, lookahead_ms: 2.0, release_ms: 40.0),
        "gain": Gain(gain_db: -2.0),
    },
    edges: [
        ("input", "eq"), ("eq", "bands"),
        ("bands.band0", "comp"), ("eq", "comp.sidechain"),
        ("bands.band1", "gate"),
        ("bands.band2", "enc"), ("enc", "dec"), ("dec", "wide"), ("wide", "left"), ("left", "delay"),
        ("comp", "mix.in0"), ("gate", "mix.in1"), ("delay", "mix.in2"),
        ("eq", "room"), ("mix", "lim"), ("room", "lim"), ("lim", "gain"), ("gain", "output"),
    ],
)"#;

/// The processor contract's "the same bits whatever the block size", for every built-in kind at once:
/// callbacks of random sizes (1 to 512 frames) give the bits of whole 512-frame callbacks, on one thread and
/// on two (always parallel, and adaptive). The monitor counts one call per callback and node.
#[test]
fn every_built_in_kind_gives_the_same_bits_however_its_blocks_are_cut_into_calls() {
    let graph = parse(EVERY_KIND);
    let input = demo(2.0);
    let (_e, mut serial) = start(graph.clone(), 512, 1, Parallelism::Adaptive);
    let reference = bits(&drive(&mut serial, &input, &[512]));
    assert!(reference.iter().all(|c| c.iter().any(|&b| b != 0)));
    // Call sizes from 1 to 512, from a fixed linear congruential sequence.
    let mut s = 1u64;
    let random: Vec<usize> = (0..997)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            1 + (s >> 33) as usize % 512
        })
        .collect();
    for (threads, parallelism, sizes) in [
        (1, Parallelism::Adaptive, &random[..]),
        (2, Parallelism::Always, &[512][..]),
        (2, Parallelism::Always, &random[..]),
        (2, Parallelism::Adaptive, &random[..]),
    ] {
        let (mut engine, mut audio) = start(graph.clone(), 512, threads, parallelism);
        engine.set_monitor(true);
        let out = bits(&drive(&mut audio, &input, sizes));
        let what = format!("{threads} threads ({parallelism:?}), {} call sizes", sizes.len());
        assert!(out == reference, "{what}");
        let metrics = engine.metrics();
        assert!(metrics.blocks > 0, "{what}");
        for node in &metrics.nodes {
            assert_eq!(node.calls, metrics.blocks, "{}: one call a callback ({what})", node.name);
        }
    }
}
