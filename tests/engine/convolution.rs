//! The `Convolver` node in graphs: against a double-precision direct convolution, at every block size and
//! on every executor; a Dirac's exact pass-through and delay; IRs at another rate; located errors.

use super::*;
use std::path::Path;

/// A decaying noise IR, as a room's, with values that are `f32` (as the file stores them).
pub fn room_ir(len: usize, seed: u64) -> Vec<f64> {
    let noise = xorshift(seed, len);
    let decay = (1e-3f64).ln() / len as f64;
    noise.iter().enumerate().map(|(i, &x)| f64::from((f64::from(x) * (decay * i as f64).exp()) as f32)).collect()
}

/// The direct convolution of `x` with `h`, in `f64`.
fn direct(x: &[f32], h: &[f64]) -> Vec<f64> {
    (0..x.len()).map(|t| (0..h.len().min(t + 1)).map(|k| h[k] * f64::from(x[t - k])).sum()).collect()
}

/// The largest error against `want`, in dB of `want`'s peak.
fn error_db(got: &[f32], want: &[f64]) -> f64 {
    let err = got.iter().zip(want).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max);
    let peak = want.iter().map(|w| w.abs()).fold(0.0, f64::max);
    20.0 * (err / peak).log10()
}

/// A graph of one node, `channels` wide, whose files are found in `dir`.
fn graph_in(dir: &Path, channels: usize, node: &str) -> Graph {
    Graph::parse(&single_node(channels, node), "g.ron", dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A stereo IR (one per channel) on music: within -120 dB of the direct convolution in `f64`, with no
/// latency and with a block's (compensated); the same bits at every block size, on two threads in a
/// graph with a parallel branch too.
#[test]
fn a_convolver_matches_a_double_precision_direct_convolution_at_every_block_size_and_executor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let irs = [room_ir(6000, 7), room_ir(6000, 8)];
    common::write_float_wav(&dir.path().join("room.wav"), 48000, &irs);
    let input = demo(1.0);
    let want: Vec<Vec<f64>> = input.iter().zip(&irs).map(|(x, h)| direct(x, h)).collect();
    for latency in ["Zero", "Block"] {
        let node = format!("Convolver(path: \"room.wav\", latency: {latency})");
        let graph = graph_in(dir.path(), 2, &node);
        let reference = run_graph(graph.clone(), input.clone(), 512, 1, Parallelism::Adaptive);
        for (c, (got, want)) in reference.iter().zip(&want).enumerate() {
            let db = error_db(got, want);
            assert!(db < -120.0, "{latency}, channel {c}: {db:.1} dB from the direct convolution");
        }
        for (block, threads, parallelism) in [
            (1, 1, Parallelism::Adaptive),
            (64, 2, Parallelism::Always),
            (333, 1, Parallelism::Adaptive),
            (4096, 2, Parallelism::Always),
        ] {
            let out = run_graph(graph.clone(), input.clone(), block, threads, parallelism);
            assert!(bits(&out) == bits(&reference), "{latency}: block {block}, {threads} thread(s) changed the bits");
        }
    }
    // Beside a parallel branch, which the dataflow executor runs on the other thread.
    let text = r#"(sample_rate: 48000, channels: 2,
        nodes: { "conv": Convolver(path: "room.wav"), "eq": Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0)]) },
        edges: [("input", "conv"), ("input", "eq"), ("conv", "output"), ("eq", "output")])"#;
    let graph = Graph::parse(text, "two.ron", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let one = run_graph(graph.clone(), input.clone(), 512, 1, Parallelism::Adaptive);
    for block in [64, 512, 4096] {
        let out = run_graph(graph.clone(), input.clone(), block, 2, Parallelism::Always);
        assert!(bits(&out) == bits(&one), "block {block}");
    }
}

/// A Dirac IR passes the input through bit for bit with `latency: Zero`; with `Block`, the engine reports
/// the latency and the output is the input delayed by exactly that (which `render` compensates).
#[test]
fn a_dirac_is_an_exact_pass_through_or_an_exact_delay_of_the_reported_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut long = vec![0.0; 30_000];
    long[0] = 1.0;
    common::write_float_wav(&dir.path().join("dirac.wav"), 48000, &[long]);
    let input = demo(1.0);
    for (latency, frames) in [("Zero", 0), ("Block", fxgraph::dsp::convolver::BLOCK_LATENCY)] {
        let graph = graph_in(dir.path(), 2, &format!("Convolver(path: \"dirac.wav\", latency: {latency})"));
        let (engine, _) = Engine::new(graph.clone(), EngineOptions::default()).expect("starts");
        assert_eq!(engine.latency_frames(), frames, "{latency}");
        let out = run_graph(graph, input.clone(), 256, 1, Parallelism::Adaptive);
        assert!(bits(&out) == bits(&input), "{latency}: not the input, bit for bit");
    }
}

/// An IR stored at 44.1 kHz is resampled to the graph's 48 kHz with its gain kept: a 1 ms moving average
/// (DC gain 1) still has a DC gain of 1, and a 500 Hz sine comes out with the moving average's response.
#[test]
fn an_ir_at_another_rate_is_resampled_with_its_gain_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taps = 44;
    common::write_float_wav(&dir.path().join("avg.wav"), 44100, &[vec![1.0 / taps as f64; taps]]);
    let graph = graph_in(dir.path(), 1, "Convolver(path: \"avg.wav\")");
    let dc = run_graph(graph.clone(), vec![vec![0.5; 24000]], 512, 1, Parallelism::Adaptive);
    let settled = f64::from(dc[0][20000]);
    assert!((settled - 0.5).abs() < 1e-3, "DC gain {}", settled / 0.5);
    // |H(f)| of an L-tap moving average at rate r: |sin(pi f L / r) / (L sin(pi f / r))|.
    let f = 500.0;
    let want = ((std::f64::consts::PI * f * taps as f64 / 44100.0).sin()
        / (taps as f64 * (std::f64::consts::PI * f / 44100.0).sin()))
    .abs();
    let y = run_graph(graph, vec![sine(f, 0.25, 48000)], 512, 1, Parallelism::Adaptive);
    let got = amplitude(&y[0][24000..], f) / 0.25;
    assert!((db(got) - db(want)).abs() < 0.05, "500 Hz: {:.3} dB, the moving average's {:.3} dB", db(got), db(want));
}

/// An IR that is unreadable, empty, not finite, longer than 10 s or of more than 2^24 samples over its
/// channels is an error naming the node, with the line and column of its `path`, and why.
#[test]
fn a_bad_impulse_response_is_a_located_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::write_float_wav(&d.join("empty.wav"), 48000, &[Vec::<f64>::new()]);
    common::write_float_wav(&d.join("nan.wav"), 48000, &[vec![0.5, f64::NAN, 0.25]]);
    common::write_float_wav(&d.join("long.wav"), 48000, &[vec![0.0; 480_001]]);
    std::fs::write(d.join("noise.wav"), b"RIFF this is not a WAV file").expect("write");
    // 40 channels of 430,000 frames (under 10 s, over 2^24 samples in all): 16-bit silence.
    let (ch, frames) = (40u32, 430_000u32);
    let bytes = ch * frames * 2;
    let mut wide = b"RIFF".to_vec();
    for v in [
        36 + bytes,
        u32::from_le_bytes(*b"WAVE"),
        u32::from_le_bytes(*b"fmt "),
        16,
        1 | (ch << 16),
        48000,
        48000 * ch * 2,
        (ch * 2) | (16 << 16),
        u32::from_le_bytes(*b"data"),
        bytes,
    ] {
        wide.extend_from_slice(&v.to_le_bytes());
    }
    wide.resize(wide.len() + bytes as usize, 0);
    std::fs::write(d.join("wide.wav"), wide).expect("write");
    for (file, why) in [
        ("missing.wav", "cannot read"),
        ("noise.wav", "not a readable WAV file"),
        ("empty.wav", "holds no audio"),
        ("nan.wav", "channel 0 has a non-finite sample (NaN) at frame 1"),
        ("long.wav", "longer than 10 s at 48000 Hz"),
        ("wide.wav", "more than 16777216 samples over its 40 channels"),
    ] {
        let text = format!(
            "(sample_rate: 48000, channels: 2,\n nodes: {{\n  \"room\": Convolver(path: \"{file}\"),\n }},\n edges: [(\"input\", \"room\"), (\"room\", \"output\")])"
        );
        let e = Graph::parse(&text, "g.ron", d).expect_err(file);
        let message = e.to_string();
        assert!(message.starts_with("g.ron:3:") && message.contains("node \"room\""), "{file}: {message}");
        assert!(message.contains("`path`") && message.contains(why), "{file}: {message}");
    }
    // A mapping that does not fit the IR or the input.
    common::write_float_wav(&d.join("three.wav"), 48000, &[vec![1.0], vec![1.0], vec![1.0]]);
    for (node, why) in [
        ("Convolver(path: \"three.wav\")", "the IR has 3 channels and the input 2"),
        ("Convolver(path: \"three.wav\", channels: One(3))", "`One(3)`: the IR has 3 channel(s)"),
        ("Convolver(path: \"three.wav\", channels: Matrix([[Some(0), Some(4)], [None, Some(1)]]))", "IR channel 4"),
    ] {
        let e = Graph::parse(&single_node(2, node), "g.ron", d).expect_err(node);
        assert!(e.to_string().contains(why), "{node}: {e}");
    }
}

/// True stereo from a 4-channel IR through `channels: Matrix(...)`: each output is the sum of both inputs,
/// each through its own IR, within -120 dB of the direct convolution; a mono input spread to stereo by a
/// 1-column matrix gets a port of one channel and an output of two.
#[test]
fn a_matrix_convolves_true_stereo_and_spreads_mono() {
    let dir = tempfile::tempdir().expect("tempdir");
    let irs: Vec<Vec<f64>> = (0..4).map(|s| room_ir(3000, 20 + s)).collect();
    common::write_float_wav(&dir.path().join("ts.wav"), 48000, &irs);
    let input = demo(0.5);
    let graph = graph_in(
        dir.path(),
        2,
        "Convolver(path: \"ts.wav\", channels: Matrix([[Some(0), Some(1)], [Some(2), Some(3)]]))",
    );
    let out = run_graph(graph, input.clone(), 512, 1, Parallelism::Adaptive);
    for (o, pair) in [(0, [0, 1]), (1, [2, 3])] {
        let want: Vec<f64> =
            direct(&input[0], &irs[pair[0]]).iter().zip(direct(&input[1], &irs[pair[1]])).map(|(a, b)| a + b).collect();
        let db = error_db(&out[o], &want);
        assert!(db < -120.0, "output {o}: {db:.1} dB");
    }
    let mono = r#"(sample_rate: 48000, channels: 2,
        nodes: {
            "left": Channels(select: [0]),
            "spread": Convolver(path: "ts.wav", channels: Matrix([[Some(0)], [Some(3)]])),
        },
        edges: [("input", "left"), ("left", "spread"), ("spread", "output")])"#;
    let g = Graph::parse(mono, "mono.ron", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let node = g.nodes.iter().find(|n| n.name == "spread").expect("node");
    assert_eq!((node.layout.inputs(), node.layout.outputs()), (vec![1], vec![2]));
    let out = run_graph(g.clone(), input.clone(), 256, 1, Parallelism::Adaptive);
    for (o, ir) in [(0, 0), (1, 3)] {
        let db = error_db(&out[o], &direct(&input[0], &irs[ir]));
        assert!(db < -120.0, "mono to output {o}: {db:.1} dB");
    }
}
