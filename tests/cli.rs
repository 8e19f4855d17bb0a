//! Graph files and the `fxgraph` command: every shipped graph, every kind of bad graph, WAV in and out.

mod common;

use fxgraph::{Graph, GraphErrorKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fxgraph(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fxgraph")).args(args).current_dir(dir).output().expect("run fxgraph")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_graphs() -> Vec<PathBuf> {
    let mut graphs: Vec<PathBuf> = std::fs::read_dir(repo().join("graphs"))
        .expect("graphs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    graphs.sort();
    assert!(graphs.len() >= 3, "graphs/ holds {graphs:?}");
    graphs
}

#[test]
fn the_issue_s_chain_loads_exactly_as_written() {
    let text = std::fs::read_to_string(repo().join("graphs/chain.ron")).expect("chain.ron");
    assert!(text.contains(r#""comp": Compressor(threshold_db: -18.0, ratio: 4.0, attack_ms: 10.0, release_ms: 100.0, knee_db: 6.0, makeup_db: 2.0),"#));
    let graph = Graph::parse(&text, "chain.ron", ".".as_ref()).expect("valid");
    let kinds: Vec<&str> = graph.nodes.iter().map(|n| n.spec.kind()).collect();
    assert_eq!(kinds, ["Eq", "Compressor", "Limiter"]);
    assert_eq!((graph.format.sample_rate, graph.format.channels), (48000, 2));
}

#[test]
fn every_shipped_graph_checks_and_renders() {
    let dir = tempfile::tempdir().expect("tempdir");
    for graph in shipped_graphs() {
        let g = graph.to_str().expect("utf-8 path");
        let check = fxgraph(&["check", g], dir.path());
        let out = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "check {g}: {}", stderr(&check));
        assert!(out.contains("processing order") && out.contains("total latency"), "{out}");
        for threads in ["1", "2"] {
            let wav = dir.path().join(format!("out-{threads}.wav"));
            let o = fxgraph(
                &["render", g, "-o", wav.to_str().expect("utf-8"), "--seconds", "2", "--threads", threads],
                dir.path(),
            );
            assert!(o.status.success(), "render {g}: {}", stderr(&o));
        }
        let one = std::fs::read(dir.path().join("out-1.wav")).expect("output");
        let two = std::fs::read(dir.path().join("out-2.wav")).expect("output");
        assert!(one == two, "{g}: 1 and 2 threads wrote different files");
        let reader = hound::WavReader::open(dir.path().join("out-1.wav")).expect("readable WAV");
        let spec = reader.spec();
        assert_eq!((spec.bits_per_sample, spec.sample_format), (32, hound::SampleFormat::Float));
        let rate = spec.sample_rate;
        assert_eq!(u64::from(reader.duration()), 2 * u64::from(rate));
        let samples: Vec<f32> = reader.into_samples::<f32>().map(|s| s.expect("sample")).collect();
        let peak = samples.iter().fold(0.0f32, |p, x| p.max(x.abs()));
        assert!(peak > 0.3 && peak <= 1.0, "{g}: peak {peak}");
    }
}

#[test]
fn render_defaults_to_the_graph_name_in_the_current_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = repo().join("graphs/chain.ron");
    let o = fxgraph(&["render", g.to_str().expect("utf-8"), "--seconds", "1"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("chain.wav").exists());
    // Nothing else is left behind (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

/// A bad graph, the error kind it must give, the node it must name and the text its position must point at.
struct Bad {
    name: &'static str,
    src: &'static str,
    kind: GraphErrorKind,
    node: Option<&'static str>,
    at: &'static str,
}

const BAD: &[Bad] = &[
    Bad {
        name: "unknown kind",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"verb\": Reverb(size: 1.0),\n },\n edges: [(\"input\", \"verb\"), (\"verb\", \"output\")])",
        kind: GraphErrorKind::UnknownKind,
        node: Some("verb"),
        at: "Reverb",
    },
    Bad {
        name: "unknown parameter",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"g\": Gain(gain_db: 1.0, volume: 2.0),\n },\n edges: [(\"input\", \"g\"), (\"g\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("g"),
        at: "volume",
    },
    Bad {
        name: "missing parameter",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"c\": Compressor(threshold_db: -10.0, ratio: 2.0, attack_ms: 1.0, release_ms: 10.0, knee_db: 0.0),\n },\n edges: [(\"input\", \"c\"), (\"c\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("c"),
        at: ")",
    },
    Bad {
        name: "ratio below 1",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"c\": Compressor(threshold_db: -10.0,\n      ratio: 0.5, attack_ms: 1.0, release_ms: 10.0, knee_db: 0.0, makeup_db: 0.0),\n },\n edges: [(\"input\", \"c\"), (\"c\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("c"),
        at: "ratio",
    },
    Bad {
        name: "negative time",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"l\": Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: -3.0),\n },\n edges: [(\"input\", \"l\"), (\"l\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("l"),
        at: "release_ms",
    },
    Bad {
        name: "frequency at Nyquist",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"eq\": Eq(bands: [\n    (kind: Peak, freq_hz: 1000.0, gain_db: 1.0, q: 1.0),\n    (kind: LowPass, freq_hz: 24000.0, q: 0.7),\n  ]),\n },\n edges: [(\"input\", \"eq\"), (\"eq\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("eq"),
        at: "freq_hz: 24000",
    },
    Bad {
        name: "q of zero",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"eq\": Eq(bands: [(kind: Notch, freq_hz: 50.0, q: 0.0)]),\n },\n edges: [(\"input\", \"eq\"), (\"eq\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("eq"),
        at: "q: 0.0",
    },
    Bad {
        name: "wrong type",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"g\": Gain(gain_db: \"loud\"),\n },\n edges: [(\"input\", \"g\"), (\"g\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("g"),
        at: "\"loud\"",
    },
    Bad {
        name: "unknown band kind",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"eq\": Eq(bands: [(kind: Lowpass, freq_hz: 50.0, q: 1.0)]),\n },\n edges: [(\"input\", \"eq\"), (\"eq\", \"output\")])",
        kind: GraphErrorKind::Param,
        node: Some("eq"),
        at: "Lowpass",
    },
    Bad {
        name: "stereo node into a mono output",
        src: "(sample_rate: 48000, channels: 1,\n nodes: {\n  \"w\": StereoWidth(width: 1.5),\n },\n edges: [(\"input\", \"w\"), (\"w\", \"output\")])",
        kind: GraphErrorKind::Width,
        node: None,
        at: "\"output\"",
    },
    Bad {
        name: "ports of different widths",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"m\": Mixer(gains: [[0.5, 0.5, 0.5]]),\n },\n edges: [(\"input\", \"m\"),\n   (\"m\", \"output\")])",
        kind: GraphErrorKind::Width,
        node: Some("m"),
        at: "\"m\")",
    },
    Bad {
        name: "no such port",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"x\": Crossover(freqs_hz: [400.0]),\n },\n edges: [(\"input\", \"x\"),\n   (\"x.band3\", \"output\")])",
        kind: GraphErrorKind::UnknownEndpoint,
        node: Some("x"),
        at: "\"x.band3\"",
    },
    Bad {
        name: "edge to no node",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"g\": Gain(gain_db: 1.0),\n },\n edges: [(\"input\", \"g\"),\n   (\"g\", \"limiter\")])",
        kind: GraphErrorKind::UnknownEndpoint,
        node: None,
        at: "\"limiter\"",
    },
    Bad {
        name: "cycle",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"a\": Gain(gain_db: 1.0),\n  \"b\": Gain(gain_db: 1.0),\n },\n edges: [(\"input\", \"a\"), (\"a\", \"b\"), (\"b\", \"a\"), (\"b\", \"output\")])",
        kind: GraphErrorKind::Cycle,
        node: Some("a"),
        at: "\"b\", \"a\"",
    },
    Bad {
        name: "output not reached",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"a\": Gain(gain_db: 1.0),\n },\n edges: [(\"input\", \"a\")])",
        kind: GraphErrorKind::OutputUnreachable,
        node: None,
        at: "edges",
    },
    Bad {
        name: "duplicate name",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"a\": Gain(gain_db: 1.0),\n  \"a\": Gain(gain_db: 2.0),\n },\n edges: [(\"input\", \"a\"), (\"a\", \"output\")])",
        kind: GraphErrorKind::DuplicateNode,
        node: Some("a"),
        at: "\"a\": Gain(gain_db: 2.0)",
    },
    Bad {
        name: "reserved name",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"input\": Gain(gain_db: 1.0),\n },\n edges: [(\"input\", \"output\")])",
        kind: GraphErrorKind::ReservedName,
        node: Some("input"),
        at: "\"input\": Gain",
    },
    Bad {
        name: "edge into input",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"a\": Gain(gain_db: 1.0),\n },\n edges: [(\"input\", \"a\"), (\"a\", \"input\"), (\"a\", \"output\")])",
        kind: GraphErrorKind::BadEdge,
        node: None,
        at: "\"input\"), (\"a\", \"output",
    },
    Bad {
        name: "syntax error",
        src: "(sample_rate: 48000, channels: 2,\n nodes: {\n  \"a\": Gain(gain_db: 1.0)\n  \"b\": Gain(gain_db: 1.0),\n },\n edges: [])",
        kind: GraphErrorKind::Syntax,
        node: None,
        at: "\"b\"",
    },
    Bad {
        name: "unknown top-level field",
        src: "(sample_rate: 48000, channels: 2, nodes: {}, edges: [],\n block_size: 64)",
        kind: GraphErrorKind::Syntax,
        node: None,
        at: "block_size",
    },
    Bad {
        name: "sample rate out of range",
        src: "(sample_rate: 1000, channels: 2, nodes: {}, edges: [(\"input\", \"output\")])",
        kind: GraphErrorKind::Format,
        node: None,
        at: "sample_rate",
    },
];

/// 1-based line and column of the `nth` occurrence of `needle` (the position a case expects).
fn position_of(src: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = src.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("{needle:?} not in source")).0;
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
    (line, col)
}

#[test]
fn each_kind_of_bad_graph_is_reported_with_file_line_column_and_node() {
    for case in BAD {
        let err = Graph::parse(case.src, "bad.ron", ".".as_ref()).expect_err(case.name);
        assert_eq!(err.kind, case.kind, "{}: {err}", case.name);
        assert_eq!(err.node.as_deref(), case.node, "{}: {err}", case.name);
        let want = if case.name == "missing parameter" {
            // Reported where the parameter list closes.
            let (l, c) = position_of(case.src, "knee_db: 0.0)", 0);
            (l, c + "knee_db: 0.0".len())
        } else {
            position_of(case.src, case.at, 0)
        };
        assert_eq!(err.position, Some(want), "{}: {err}", case.name);
        assert!(err.to_string().starts_with(&format!("bad.ron:{}:{}: ", want.0, want.1)), "{err}");
    }
}

#[test]
fn bad_graphs_exit_with_code_2_and_one_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    for case in BAD {
        let path = dir.path().join("bad.ron");
        std::fs::write(&path, case.src).expect("write");
        for command in ["check", "render"] {
            let o = fxgraph(&[command, "bad.ron"], dir.path());
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{}: {command}: {err}", case.name);
            assert!(err.starts_with("error: bad.ron:"), "{}: {err}", case.name);
            if let Some(node) = case.node {
                assert!(err.contains(&format!("node \"{node}\"")), "{}: {err}", case.name);
            }
            assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
            assert_eq!(err.lines().count(), 1, "{}: one line expected: {err}", case.name);
        }
    }
    let o = fxgraph(&["check", "does-not-exist.ron"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does-not-exist.ron"));
    let o = fxgraph(&["render", "--block", "0", "x.ron"], dir.path());
    assert_eq!(o.status.code(), Some(2), "bad arguments are bad input too");
    let g = repo().join("graphs/chain.ron");
    for command in ["render", "bench", "play"] {
        for seconds in ["0", "-1", "nan", "inf", "ten"] {
            let o = fxgraph(&[command, g.to_str().expect("utf-8"), "--seconds", seconds], dir.path());
            assert_eq!(o.status.code(), Some(2), "{command} --seconds {seconds}");
            assert!(stderr(&o).contains("must be a positive number of seconds"), "{}", stderr(&o));
        }
    }
}

fn write_wav(path: &Path, spec: hound::WavSpec, frames: usize, f: impl Fn(usize, usize) -> f64) {
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..frames {
        for c in 0..usize::from(spec.channels) {
            let x = f(i, c);
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(x as f32).expect("write"),
                (_, bits) => {
                    let scale = f64::from(1u32 << (bits - 1));
                    w.write_sample((x * scale).round().clamp(-scale, scale - 1.0) as i32).expect("write")
                }
            }
        }
    }
    w.finalize().expect("finalize");
}

fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    }
}

const PASS: &str = r#"(sample_rate: 48000, channels: 2, nodes: { "g": Gain(gain_db: 0.0) }, edges: [("input", "g"), ("g", "output")])"#;

#[test]
fn wav_in_every_format_comes_out_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    let signal = |i: usize, c: usize| 0.5 * (i as f64 * if c == 0 { 0.01 } else { 0.023 }).sin();
    for (bits, float) in [(16, false), (24, false), (32, false), (32, true)] {
        let input = dir.path().join(format!("in{bits}{float}.wav"));
        write_wav(&input, spec(2, 48000, bits, float), 12345, signal);
        for (format, out_bits, out_float) in
            [("f32", 32, true), ("s16", 16, false), ("s24", 24, false), ("s32", 32, false)]
        {
            let out = dir.path().join("out.wav");
            let o = fxgraph(
                &["render", "pass.ron", "-i", input.to_str().expect("utf-8"), "-o", "out.wav", "--format", format],
                dir.path(),
            );
            assert!(o.status.success(), "{bits}-bit in, {format} out: {}", stderr(&o));
            let reader = hound::WavReader::open(&out).expect("readable");
            let s = reader.spec();
            assert_eq!((s.bits_per_sample, s.sample_format == hound::SampleFormat::Float), (out_bits, out_float));
            assert_eq!((s.channels, s.sample_rate, reader.duration()), (2, 48000, 12345));
            // The signal survives within the coarser of the two quantizations (plus dither).
            let lsb = 1.0 / f64::from(1u32 << (bits.min(out_bits) - 1));
            let got: Vec<f64> = if out_float {
                reader.into_samples::<f32>().map(|x| f64::from(x.expect("sample"))).collect()
            } else {
                let scale = f64::from(1u32 << (out_bits - 1));
                reader.into_samples::<i32>().map(|x| f64::from(x.expect("sample")) / scale).collect()
            };
            for (k, v) in got.iter().enumerate() {
                let want = signal(k / 2, k % 2);
                assert!((v - want).abs() <= 2.0 * lsb + 1e-7, "{bits}->{format} sample {k}: {v} vs {want}");
            }
        }
    }
}

#[test]
fn reducing_to_16_bits_applies_tpdf_dither() {
    // A sine of a quarter of a 16-bit step: rounding alone would give silence; with TPDF dither the
    // quantization error is independent of the signal, so the sine survives on average.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    let lsb = 1.0 / 32768.0;
    let freq = 1000.0;
    write_wav(&dir.path().join("quiet.wav"), spec(2, 48000, 32, true), 48000, |i, _| {
        0.25 * lsb * (std::f64::consts::TAU * freq * i as f64 / 48000.0).sin()
    });
    let o = fxgraph(&["render", "pass.ron", "-i", "quiet.wav", "-o", "q16.wav", "--format", "s16"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let q: Vec<i32> = hound::WavReader::open(dir.path().join("q16.wav"))
        .expect("readable")
        .into_samples::<i32>()
        .map(|x| x.expect("sample"))
        .step_by(2)
        .collect();
    assert!(q.iter().all(|v| v.abs() <= 1), "TPDF dither of ±1 LSB cannot reach further");
    assert!(q.iter().any(|&v| v != 0), "no dither: a quarter-LSB sine rounds to silence");
    let (mut s, mut c) = (0.0, 0.0);
    for (n, &v) in q.iter().enumerate() {
        let w = std::f64::consts::TAU * freq * n as f64 / 48000.0;
        s += f64::from(v) * w.sin();
        c += f64::from(v) * w.cos();
    }
    let amplitude = 2.0 * f64::hypot(s, c) / q.len() as f64;
    assert!((amplitude - 0.25).abs() < 0.03, "recovered amplitude {amplitude} LSB, want 0.25");
}

#[test]
fn inputs_are_never_overwritten_and_failures_leave_no_partial_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    let input = dir.path().join("in.wav");
    write_wav(&input, spec(2, 48000, 16, false), 4800, |i, _| (i as f64 * 0.01).sin() * 0.3);
    let before = std::fs::read(&input).expect("read");
    let o = fxgraph(&["render", "pass.ron", "-i", "in.wav", "-o", "in.wav"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("refusing to overwrite"));
    let o = fxgraph(
        &[
            "render",
            "pass.ron",
            "-i",
            "./in.wav",
            "-o",
            "../{}/in.wav".replace("{}", dir.path().file_name().and_then(|n| n.to_str()).expect("name")).as_str(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "the same file by another path: {}", stderr(&o));
    let o = fxgraph(&["render", "pass.ron", "-o", "pass.ron"], dir.path());
    assert_eq!(o.status.code(), Some(2), "the graph file is an input too: {}", stderr(&o));
    assert_eq!(std::fs::read(&input).expect("read"), before);
    assert_eq!(std::fs::read_to_string(dir.path().join("pass.ron")).expect("read"), PASS);

    // A truncated input fails mid-render: the existing output stays as it was and no temporary is left.
    let mut truncated = before.clone();
    truncated.truncate(before.len() / 2);
    std::fs::write(dir.path().join("cut.wav"), &truncated).expect("write");
    std::fs::write(dir.path().join("out.wav"), b"previous render").expect("write");
    let o = fxgraph(&["render", "pass.ron", "-i", "cut.wav", "-o", "out.wav", "--block", "64"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.path().join("out.wav")).expect("read"), b"previous render");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    // Unwritable destination: exit 1, not 2 (the input was fine).
    let o = fxgraph(&["render", "pass.ron", "-i", "in.wav", "-o", "no/such/dir/out.wav"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn mismatched_or_invalid_audio_input_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    write_wav(&dir.path().join("six.wav"), spec(6, 48000, 16, false), 100, |_, _| 0.0);
    std::fs::write(dir.path().join("text.wav"), "this is not audio").expect("write");
    std::fs::write(dir.path().join("text.mp3"), "this is not audio either").expect("write");
    for (file, needle) in [
        ("six.wav", "six.wav has 6 channels and the graph 2"),
        ("text.wav", "not a readable audio file"),
        ("text.mp3", "text.mp3: not a readable audio file"),
        ("missing.wav", "missing.wav"),
    ] {
        let o = fxgraph(&["render", "pass.ron", "-i", file, "-o", "out.wav"], dir.path());
        assert_eq!(o.status.code(), Some(2), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{file}: {}", stderr(&o));
        assert!(!dir.path().join("out.wav").exists());
    }
}

#[test]
fn the_demo_signal_is_deterministic_and_peaks_near_full_scale() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    for (name, block) in [("a.wav", "512"), ("b.wav", "37")] {
        let o = fxgraph(&["render", "pass.ron", "-o", name, "--seconds", "3", "--block", block], dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let a = std::fs::read(dir.path().join("a.wav")).expect("read");
    assert!(a == std::fs::read(dir.path().join("b.wav")).expect("read"));
    let samples: Vec<f32> = hound::WavReader::open(dir.path().join("a.wav"))
        .expect("wav")
        .into_samples::<f32>()
        .map(|s| s.expect("s"))
        .collect();
    let peak_db = 20.0 * samples.iter().fold(0.0f32, |p, x| p.max(x.abs())).log10();
    assert!((-1.0..=0.0).contains(&peak_db), "demo peaks at {peak_db} dBFS");
    // Stereo, not dual mono.
    assert!(samples.chunks(2).any(|f| (f[0] - f[1]).abs() > 0.01));
}

#[test]
fn bench_reports_json_usable_as_a_regression_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = repo().join("graphs/parallel.ron");
    let o = fxgraph(
        &["bench", g.to_str().expect("utf-8"), "--seconds", "1", "--block", "256", "--threads", "2", "--json"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    assert!(v["realtime_factor"].as_f64().expect("realtime_factor") > 1.0);
    assert_eq!(v["frames"], 48000);
    assert_eq!(v["block"], 256);
    assert_eq!(v["threads"], 2);
    // Blocks are what nodes are called with: frames (with the limiter's lookahead flushed) / block, and
    // every node saw each; the executor's larger hand-offs are counted apart.
    let blocks = v["blocks"].as_u64().expect("blocks");
    assert_eq!(blocks, (48000u64 + 240).div_ceil(256), "{v}");
    assert!(v["runs"].as_u64().expect("runs") < blocks / 8, "{v}");
    assert!(v["machine"]["wall_seconds"].as_f64().expect("machine") > 0.0, "{v}");
    assert!(v["peak_rss_bytes"].as_u64().expect("peak_rss_bytes") > 0);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 6);
    for n in nodes {
        for key in ["name", "kind"] {
            assert!(n[key].is_string(), "{n}");
        }
        for key in ["mean_ns", "p99_ns", "max_ns"] {
            assert!(n[key].as_f64().expect(key) > 0.0, "{n}");
        }
        assert_eq!(n["calls"].as_u64(), Some(blocks), "{n}");
        let share = n["mean_ns"].as_f64().expect("mean") / (256.0 / 48000.0 * 1e9);
        assert!((n["budget_share"].as_f64().expect("share") / share - 1.0).abs() < 0.01, "{n}");
    }
    // The table form names every node too.
    let o = fxgraph(&["bench", g.to_str().expect("utf-8"), "--seconds", "1"], dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("realtime") && text.contains("high_mid_comp") && text.contains("DSP load"),
        "{text}"
    );
    let o = fxgraph(&["bench", "nope.ron"], dir.path());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn render_writes_metrics_json_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = repo().join("graphs/chain.ron");
    let o = fxgraph(&["render", g.to_str().expect("utf-8"), "--seconds", "1", "--metrics", "m.json"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).expect("metrics file")).expect("json");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3));
    assert!(v["dsp_load"].as_f64().expect("dsp_load") > 0.0);
    assert!(v["output"]["peak_dbfs"].as_f64().expect("peak") <= -0.999);
    assert!(v["memory"]["peak_rss_bytes"].as_u64().is_some());
}

#[cfg(feature = "wasm")]
#[test]
fn a_run_in_which_a_plugin_faulted_says_so_and_exits_with_code_3() {
    // A plugin that halves its input and traps on its third block: the first instance at frame 1024, and
    // each fresh one two blocks after it takes over, until the node is bypassed for good after the fifth.
    // Bypassed blocks are the dry input, so the render differs from a clean one, and says so.
    let dir = tempfile::tempdir().expect("tempdir");
    let module = r#"(module
      (memory (export "memory") 2)
      (global $blocks (mut i32) (i32.const 0))
      (data (i32.const 16) "\00\04\00\00\00\20\00\00")
      (func (export "fxg_abi_version") (result i32) (i32.const 1))
      (func (export "fxg_set_param") (param i32 f32) (result i32) (i32.const 0))
      (func (export "fxg_initialize") (param i32 i32 i32) (result i32) (i32.const 0))
      (func (export "fxg_buffers") (result i32) (i32.const 16))
      (func (export "fxg_start"))
      (func (export "fxg_process") (param $n i32) (result i32) (local $i i32)
        (global.set $blocks (i32.add (global.get $blocks) (i32.const 1)))
        (if (i32.eq (global.get $blocks) (i32.const 3)) (then unreachable))
        (loop $halve
          (f32.store (i32.add (i32.const 8192) (local.get $i))
            (f32.mul (f32.load (i32.add (i32.const 1024) (local.get $i))) (f32.const 0.5)))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br_if $halve (i32.lt_u (local.get $i) (i32.const 4096))))
        (i32.const 0))
      (func (export "fxg_stop"))
      (func (export "fxg_cleanup")))"#;
    std::fs::write(dir.path().join("flaky.wasm"), wat::parse_str(module).expect("module")).expect("write");
    std::fs::write(
        dir.path().join("flaky.json"),
        r#"{"id": "test.flaky", "name": "Flaky", "version": "0.0.1", "abi_version": 1,
            "memory_limit_bytes": 1048576, "block_budget_us": 5000, "parameters": []}"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("g.ron"),
        r#"(sample_rate: 48000, channels: 2, nodes: { "half": Wasm(path: "flaky.wasm") },
            edges: [("input", "half"), ("half", "output")])"#,
    )
    .expect("write");
    let render = |extra: &[&str]| {
        let mut args =
            vec!["render", "g.ron", "-o", "out.wav", "--seconds", "1", "--threads", "1", "--metrics", "m.json"];
        args.extend_from_slice(extra);
        fxgraph(&args, dir.path())
    };
    let o = render(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("plugin faults changed this render"), "{err}");
    assert!(err.contains("node \"half\" (Wasm): 5 faults (at 0.021 s, "), "{err}");
    assert!(err.contains(" blocks bypassed ("), "{err}");
    assert!(err.contains("--allow-faults"), "{err}");
    // The output is written all the same, whole.
    let reader = hound::WavReader::open(dir.path().join("out.wav")).expect("the output is written");
    assert_eq!(reader.duration(), 48000);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).expect("metrics")).expect("json");
    let node = &m["nodes"][0];
    assert_eq!(node["faults"].as_u64(), Some(5), "{node}");
    let times: Vec<f64> = node["fault_times_s"].as_array().expect("times").iter().filter_map(|t| t.as_f64()).collect();
    assert_eq!(times.len(), 5, "{node}");
    assert!((times[0] - 1024.0 / 48000.0).abs() < 1e-9 && times.windows(2).all(|w| w[0] < w[1]), "{node}");
    // Bypassed: the five faulted blocks, those before each replacement took over, and all after the fifth.
    let (blocks, frames) =
        (node["bypassed_blocks"].as_u64().expect("blocks"), node["bypassed_frames"].as_u64().expect("frames"));
    assert!(blocks >= 5 && frames <= 512 * blocks && frames > 512 * (blocks - 1), "{node}");
    assert!(frames as f64 >= (1.0 - times[4]) * 48000.0, "{node}");
    // Accepted on request: exit 0, the same summary.
    let o = render(&["--allow-faults"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("5 faults (at 0.021 s, "), "{}", stderr(&o));
    // bench says the same in its JSON, and with its exit code.
    let o = fxgraph(&["bench", "g.ron", "--seconds", "1", "--threads", "1", "--json"], dir.path());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["faulted"], true);
    assert_eq!(v["nodes"][0]["faults"], 5);
    let o = fxgraph(&["bench", "g.ron", "--seconds", "1", "--threads", "1", "--json", "--allow-faults"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A clean run says nothing of faults.
    let o = fxgraph(
        &["render", repo().join("graphs/mastering.ron").to_str().expect("utf-8"), "--seconds", "1"],
        dir.path(),
    );
    assert!(o.status.success() && !stderr(&o).contains("fault"), "{}", stderr(&o));
}

#[test]
fn no_edit_of_a_shipped_graph_can_panic_the_loader() {
    // Random edits as typing makes them (a few characters deleted, inserted or replaced, quotes, brackets
    // and multibyte characters among them) of every shipped graph: the loader answers each with a graph
    // or an error whose position lies inside the file, never a panic.
    let alphabet: Vec<char> = "\"'()[]{},:;.-+0123456789eE_ aZ\n\t/*#!r\\é€😀".chars().collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    let (mut errors, mut cases) = (0, 0);
    for path in shipped_graphs() {
        let original = std::fs::read_to_string(&path).expect("graph");
        let dir = path.parent().expect("dir").to_path_buf();
        for _ in 0..2500 {
            let mut chars: Vec<char> = original.chars().collect();
            for _ in 0..1 + next(3) {
                let at = next(chars.len() + 1);
                match next(3) {
                    0 if at < chars.len() => {
                        let len = 1 + next(3);
                        chars.drain(at..(at + len).min(chars.len()));
                    }
                    1 => chars.insert(at, alphabet[next(alphabet.len())]),
                    _ if at < chars.len() => chars[at] = alphabet[next(alphabet.len())],
                    _ => {}
                }
            }
            let text: String = chars.into_iter().collect();
            cases += 1;
            let result = std::panic::catch_unwind(|| Graph::parse(&text, "edited.ron", &dir));
            match result {
                Err(_) => panic!("the loader panicked on:\n{text}"),
                Ok(Err(e)) => {
                    errors += 1;
                    if let Some((line, col)) = e.position {
                        let lines: Vec<&str> = text.split('\n').collect();
                        assert!(line >= 1 && line <= lines.len(), "{e} (of {} lines)", lines.len());
                        assert!(col >= 1 && col <= lines[line - 1].chars().count() + 1, "{e}");
                    }
                }
                Ok(Ok(_)) => {}
            }
        }
    }
    assert!(errors > cases / 2, "most edits break a graph: {errors} of {cases}");
    // The typo from the report: one missing quote.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("typo.ron"),
        r#"(sample_rate: 48000, channels: 2, nodes: { "g": Gain(gain_db: 0.0) }, edges: [("input", g", "output")])"#,
    )
    .expect("write");
    let o = fxgraph(&["check", "typo.ron"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: typo.ron:1:"), "{}", stderr(&o));
    // Very deep nesting is refused, not followed off the stack.
    let deep = format!(
        "(sample_rate: 48000, channels: 2, nodes: {{}}, edges: {}{})",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(Graph::parse(&deep, "deep.ron", ".".as_ref()).is_err());
}

#[test]
fn eight_bit_and_double_float_wav_inputs_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    let signal = |i: usize, c: usize| 0.5 * (i as f64 * if c == 0 { 0.01 } else { 0.023 }).sin();
    write_wav(&dir.path().join("in8.wav"), spec(2, 48000, 8, false), 4800, signal);
    // 64-bit float, written by hand (hound does not write it): RIFF, fmt (format 3, 64 bits), data.
    let frames = 4800usize;
    let mut f64wav = Vec::new();
    let data: Vec<u8> = (0..frames).flat_map(|i| (0..2).flat_map(move |c| signal(i, c).to_le_bytes())).collect();
    f64wav.extend_from_slice(b"RIFF");
    f64wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    f64wav.extend_from_slice(b"WAVEfmt ");
    f64wav.extend_from_slice(&16u32.to_le_bytes());
    for v in [3u16, 2] {
        f64wav.extend_from_slice(&v.to_le_bytes());
    }
    f64wav.extend_from_slice(&48000u32.to_le_bytes());
    f64wav.extend_from_slice(&(48000u32 * 16).to_le_bytes());
    for v in [16u16, 64] {
        f64wav.extend_from_slice(&v.to_le_bytes());
    }
    f64wav.extend_from_slice(b"data");
    f64wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    f64wav.extend_from_slice(&data);
    std::fs::write(dir.path().join("in64.wav"), &f64wav).expect("write");
    for (file, lsb) in [("in8.wav", 1.0 / 128.0), ("in64.wav", 1e-7)] {
        let o = fxgraph(&["render", "pass.ron", "-i", file, "-o", "out.wav"], dir.path());
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        let got: Vec<f32> = hound::WavReader::open(dir.path().join("out.wav"))
            .expect("wav")
            .into_samples::<f32>()
            .map(|s| s.expect("s"))
            .collect();
        assert_eq!(got.len(), 2 * frames);
        for (k, v) in got.iter().enumerate() {
            let want = signal(k / 2, k % 2);
            assert!((f64::from(*v) - want).abs() <= lsb, "{file} sample {k}: {v} vs {want}");
        }
    }
}

#[test]
fn outputs_past_the_riff_limit_are_written_as_rf64_and_read_back() {
    // The limit is lowered for the test (4 GiB is the real one): 1 s of float stereo is 384000 bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["render", "pass.ron", "--seconds", "1", "-o", "big.wav"])
        .env("FXGRAPH_WAV_RF64_ABOVE", "100000")
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(dir.path().join("big.wav")).expect("read");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    // EBU Tech 3306: "RF64", size -1, "WAVE", then ds64 with the 64-bit RIFF size, data size and frames.
    assert_eq!(&bytes[0..4], b"RF64");
    assert_eq!(u32_at(4), u32::MAX);
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(&bytes[12..16], b"ds64");
    assert_eq!(u64_at(20), bytes.len() as u64 - 8, "RIFF size");
    assert_eq!(u64_at(28), 48000 * 8, "data size");
    assert_eq!(u64_at(36), 48000, "sample count");
    let data = bytes.windows(4).position(|w| w == b"data").expect("data chunk");
    assert_eq!(u32_at(data + 4), u32::MAX, "the data chunk's size is in ds64");
    // fxgraph reads it back: the same samples as a plain RIFF render.
    let o = fxgraph(&["render", "pass.ron", "-i", "big.wav", "-o", "again.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fxgraph(&["render", "pass.ron", "--seconds", "1", "-o", "plain.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let samples = |f: &str| -> Vec<f32> {
        hound::WavReader::open(dir.path().join(f)).expect("wav").into_samples::<f32>().map(|s| s.expect("s")).collect()
    };
    assert_eq!(samples("again.wav"), samples("plain.wav"));
    // And so do sox and ffprobe (CI installs both; elsewhere a missing one is skipped with a note).
    if tool("soxi") {
        let o = Command::new("soxi").args(["-s", "big.wav"]).current_dir(dir.path()).output().expect("soxi");
        assert!(o.status.success(), "soxi reads the RF64 file: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "48000", "soxi");
    }
    if tool("ffprobe") {
        let o = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=duration_ts", "-of", "csv=p=0", "big.wav"])
            .current_dir(dir.path())
            .output()
            .expect("ffprobe");
        assert!(o.status.success(), "ffprobe reads the RF64 file: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "48000", "ffprobe");
    }
}

#[test]
fn an_interrupted_render_leaves_nothing_behind_and_exits_with_the_signal_s_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = repo().join("graphs/chain.ron");
    std::fs::write(dir.path().join("out.wav"), b"previous render").expect("write");
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let child = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["render", g.to_str().expect("utf-8"), "--seconds", "100000", "-o", "out.wav"])
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        // Wait until the temporary output exists (the render is under way), then signal.
        let started = std::time::Instant::now();
        while !std::fs::read_dir(dir.path())
            .expect("dir")
            .any(|e| e.expect("entry").file_name().to_string_lossy().ends_with(".tmp"))
        {
            assert!(started.elapsed().as_secs() < 30, "the render never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let kill = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill");
        assert!(kill.success());
        let o = child.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(code), "SIG{signal}: {}", stderr(&o));
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["out.wav"], "SIG{signal}: only the previous output remains");
        assert_eq!(std::fs::read(dir.path().join("out.wav")).expect("read"), b"previous render");
    }
}

#[test]
fn a_backtrace_setting_does_not_change_the_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.ron"), BAD[3].src).expect("write");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    std::fs::write(dir.path().join("text.wav"), "not audio").expect("write");
    for args in [&["render", "bad.ron"][..], &["render", "pass.ron", "-i", "text.wav"], &["check", "nope.ron"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .current_dir(dir.path())
            .output()
            .expect("run");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: ") && !err.contains("backtrace"), "{args:?}: {err}");
    }
}

/// Whether a command-line tool is installed (the media tests need Debian's encoders; .ci/run installs
/// them). Missing ones are reported and their checks skipped, except in CI (`CI` set), where a missing tool
/// fails the test.
fn tool(name: &str) -> bool {
    // Whether it starts at all: tools disagree on what `--version` prints and returns.
    let ok = Command::new(name).arg("--version").output().is_ok();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{name} is not installed, and CI must run every media check");
        eprintln!("note: {name} is not installed; its checks are skipped");
    }
    ok
}

fn read_f32(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let r = hound::WavReader::open(path).expect("readable WAV");
    let spec = r.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => r.into_samples::<f32>().map(|s| s.expect("sample")).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.into_samples::<i32>().map(|s| s.expect("sample") as f32 * scale).collect()
        }
    };
    (spec, samples)
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (a, b) in reference.iter().zip(test) {
        sig += f64::from(*a).powi(2);
        err += f64::from(a - b).powi(2);
    }
    10.0 * (sig / err.max(1e-300)).log10()
}

#[test]
fn flac_vorbis_and_mp3_inputs_decode_to_their_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    // Five seconds of the demo as 16-bit WAV: the source every encoder gets.
    let o = fxgraph(&["render", "pass.ron", "--seconds", "5", "--format", "s16", "-o", "src.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, source) = read_f32(&dir.path().join("src.wav"));
    let encoders: [(&str, &str, &[&str], f64); 3] = [
        ("flac", "src.flac", &["-s", "-f", "-o", "src.flac", "src.wav"], f64::INFINITY),
        ("oggenc", "src.ogg", &["-Q", "-q", "6", "-o", "src.ogg", "src.wav"], 20.0),
        ("lame", "src.mp3", &["--quiet", "-b", "256", "src.wav", "src.mp3"], 20.0),
    ];
    for (encoder, file, args, min_snr) in encoders {
        if !tool(encoder) {
            continue;
        }
        let e = Command::new(encoder).args(args).current_dir(dir.path()).output().expect("encode");
        assert!(e.status.success(), "{encoder}: {}", stderr(&e));
        let o = fxgraph(&["render", "pass.ron", "-i", file, "-o", "decoded.wav"], dir.path());
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        let (spec, decoded) = read_f32(&dir.path().join("decoded.wav"));
        assert_eq!((spec.channels, spec.sample_rate), (2, 48000));
        assert_eq!(decoded.len(), source.len(), "{file}: the decoded length is the source's (gapless)");
        if min_snr.is_infinite() {
            assert!(decoded == source, "{file}: FLAC is lossless, so the decode is bit-exact");
        } else {
            // Lossy codecs: within a stated tolerance, sample-aligned (no delay left in).
            let snr = snr_db(&source, &decoded);
            assert!(snr > min_snr, "{file}: {snr:.1} dB signal-to-error");
        }
    }
}

#[test]
fn other_rates_are_resampled_and_mono_and_stereo_convert() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    // A 1 kHz sine at 44.1 kHz, 2 s: resampled to 48 kHz it is the same sine at 48 kHz, to within the
    // resampler's stated quality, and exactly round(88200 * 48000 / 44100) = 96000 frames long.
    let sine = |i: usize, rate: f64| 0.5 * (std::f64::consts::TAU * 1000.0 * i as f64 / rate).sin();
    write_wav(&dir.path().join("44k.wav"), spec(2, 44100, 32, true), 88200, |i, _| sine(i, 44100.0));
    let o = fxgraph(&["render", "pass.ron", "-i", "44k.wav", "-o", "out.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resampled from 44100 Hz to 48000 Hz"), "{}", stderr(&o));
    let (s, out) = read_f32(&dir.path().join("out.wav"));
    assert_eq!((s.sample_rate, out.len()), (48000, 2 * 96000));
    let ideal: Vec<f32> = (0..96000).flat_map(|i| [sine(i, 48000.0) as f32; 2]).collect();
    // Away from the ends (the filter's edges), the resampled sine is the ideal one.
    let snr = snr_db(&ideal[2 * 2000..2 * 94000], &out[2 * 2000..2 * 94000]);
    assert!(snr > 80.0, "resampled sine: {snr:.1} dB signal-to-error");
    // Mono into a stereo graph: both channels carry it.
    write_wav(&dir.path().join("mono.wav"), spec(1, 48000, 32, true), 4800, |i, _| sine(i, 48000.0));
    let o = fxgraph(&["render", "pass.ron", "-i", "mono.wav", "-o", "out.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, out) = read_f32(&dir.path().join("out.wav"));
    assert!(out.chunks(2).enumerate().all(|(i, f)| f[0] == f[1] && f[0] == sine(i, 48000.0) as f32));
    // Stereo into a mono graph: the mean of the two.
    std::fs::write(dir.path().join("mono.ron"), PASS.replace("channels: 2", "channels: 1")).expect("write");
    write_wav(&dir.path().join("st.wav"), spec(2, 48000, 32, true), 4800, |i, c| {
        if c == 0 { 0.5 } else { 0.1 * (i % 7) as f64 }
    });
    let o = fxgraph(&["render", "mono.ron", "-i", "st.wav", "-o", "out.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let (s, out) = read_f32(&dir.path().join("out.wav"));
    assert_eq!(s.channels, 1);
    assert!(out.iter().enumerate().all(|(i, v)| (v - (0.5 * (0.5 + 0.1 * (i % 7) as f64)) as f32).abs() < 1e-6));
    // Three channels into stereo: refused, clearly.
    write_wav(&dir.path().join("three.wav"), spec(3, 48000, 16, false), 100, |_, _| 0.0);
    let o = fxgraph(&["render", "pass.ron", "-i", "three.wav", "-o", "out3.wav"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("three.wav has 3 channels and the graph 2"), "{}", stderr(&o));
}

#[test]
fn a_file_corrupt_midway_is_an_error_naming_the_file_and_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    if !tool("flac") {
        return;
    }
    let o = fxgraph(&["render", "pass.ron", "--seconds", "4", "--format", "s16", "-o", "src.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let e = Command::new("flac")
        .args(["-s", "-f", "-o", "src.flac", "src.wav"])
        .current_dir(dir.path())
        .output()
        .expect("flac");
    assert!(e.status.success());
    let mut bytes = std::fs::read(dir.path().join("src.flac")).expect("read");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(dir.path().join("bad.flac"), &bytes).expect("write");
    let o = fxgraph(&["render", "pass.ron", "-i", "bad.flac", "-o", "out.wav"], dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.flac") && err.contains(" s:"), "the file and the position: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.contains("out.wav")), "no output, partial or temporary: {left:?}");
}

#[test]
fn decoding_streams_in_flat_memory_whatever_the_length() {
    // Peak memory rendering 20 s and 200 s of the same FLAC differ by less than the longer file's
    // decoded size would be (36 MiB of float samples): it streams.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pass.ron"), PASS).expect("write");
    if !tool("flac") {
        return;
    }
    let mut peaks = Vec::new();
    for seconds in ["20", "200"] {
        let o = fxgraph(&["render", "pass.ron", "--seconds", seconds, "--format", "s16", "-o", "s.wav"], dir.path());
        assert!(o.status.success());
        let e = Command::new("flac")
            .args(["-s", "-f", "--fast", "-o", "s.flac", "s.wav"])
            .current_dir(dir.path())
            .output()
            .expect("flac");
        assert!(e.status.success());
        let o = fxgraph(&["render", "pass.ron", "-i", "s.flac", "-o", "o.wav", "--metrics", "m.json"], dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).expect("metrics")).expect("json");
        peaks.push(m["memory"]["peak_rss_bytes"].as_u64().expect("peak rss"));
    }
    let growth = peaks[1].saturating_sub(peaks[0]);
    assert!(growth < 8 << 20, "peak resident memory grew by {growth} bytes for 10x the length: {peaks:?}");
}

/// The cookbook's magnitude in dB, written out again here (independent of the library's code).
fn cookbook_db(kind: &str, f0: f64, gain_db: f64, q: f64, sr: f64, f: f64) -> f64 {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = std::f64::consts::TAU * f0 / sr;
    let (alpha, cw) = (w0.sin() / (2.0 * q), w0.cos());
    let sa = 2.0 * a.sqrt() * alpha;
    let (b, den) = match kind {
        "LowPass" => ([(1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0], [1.0 + alpha, -2.0 * cw, 1.0 - alpha]),
        "HighPass" => ([(1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0], [1.0 + alpha, -2.0 * cw, 1.0 - alpha]),
        "BandPass" => ([alpha, 0.0, -alpha], [1.0 + alpha, -2.0 * cw, 1.0 - alpha]),
        "Notch" => ([1.0, -2.0 * cw, 1.0], [1.0 + alpha, -2.0 * cw, 1.0 - alpha]),
        "AllPass" => ([1.0 - alpha, -2.0 * cw, 1.0 + alpha], [1.0 + alpha, -2.0 * cw, 1.0 - alpha]),
        "Peak" => ([1.0 + alpha * a, -2.0 * cw, 1.0 - alpha * a], [1.0 + alpha / a, -2.0 * cw, 1.0 - alpha / a]),
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
        other => panic!("{other}"),
    };
    // |B(e^jw)| / |A(e^jw)| by complex arithmetic.
    let w = std::f64::consts::TAU * f / sr;
    let eval = |c: [f64; 3]| {
        let re = c[0] + c[1] * w.cos() + c[2] * (2.0 * w).cos();
        let im = -c[1] * w.sin() - c[2] * (2.0 * w).sin();
        re.hypot(im)
    };
    20.0 * (eval(b) / eval(den)).log10()
}

const EVERY_BAND: &str = r#"(sample_rate: 48000, channels: 2, nodes: {
    "eq": Eq(bands: [
        (kind: Peak, freq_hz: 1000.0, gain_db: 6.0, q: 1.4),
        (kind: LowShelf, freq_hz: 120.0, gain_db: -4.0, q: 0.707),
        (kind: HighShelf, freq_hz: 9000.0, gain_db: 3.0, q: 0.9),
        (kind: LowPass, freq_hz: 15000.0, q: 0.707),
        (kind: HighPass, freq_hz: 40.0, q: 0.6),
        (kind: BandPass, freq_hz: 2500.0, q: 0.5),
        (kind: Notch, freq_hz: 60.0, q: 8.0),
        (kind: AllPass, freq_hz: 700.0, q: 0.707),
    ]),
    "comp": Compressor(threshold_db: -20.0, ratio: 3.0, attack_ms: 5.0, release_ms: 50.0, knee_db: 6.0, makeup_db: 0.0),
    "limiter": Limiter(ceiling_db: -1.0, lookahead_ms: 2.0, release_ms: 50.0),
}, edges: [("input", "eq"), ("eq", "comp"), ("comp", "limiter"), ("limiter", "output")])"#;

#[test]
fn plotted_responses_match_the_cookbook_for_every_band_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bands.ron"), EVERY_BAND).expect("write");
    let o = fxgraph(
        &[
            "plot",
            "bands.ron",
            "--node",
            "eq",
            "--node",
            "comp",
            "--node",
            "limiter",
            "-o",
            "r.svg",
            "--data",
            "r.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).expect("data")).expect("JSON");
    let level = data["level_dbfs"].as_f64().expect("level");
    assert!(level <= -20.0 - 3.0 - 10.0, "the impulse is below the compressor's knee: {level}");
    let freqs: Vec<f64> = data["freq_hz"].as_array().expect("grid").iter().map(|v| v.as_f64().expect("f")).collect();
    assert!(freqs[0] == 20.0 && *freqs.last().expect("last") > 23_000.0);
    let curve = |name: &str, kind: &str| -> Vec<f64> {
        let c = data["curves"]
            .as_array()
            .expect("curves")
            .iter()
            .find(|c| c["name"] == name && c["kind"] == kind)
            .unwrap_or_else(|| panic!("curve {name} {kind}"));
        c["magnitude_db"].as_array().expect("magnitude").iter().map(|v| v.as_f64().expect("dB")).collect()
    };
    let bands = [
        ("Peak", 1000.0, 6.0, 1.4),
        ("LowShelf", 120.0, -4.0, 0.707),
        ("HighShelf", 9000.0, 3.0, 0.9),
        ("LowPass", 15000.0, 0.0, 0.707),
        ("HighPass", 40.0, 0.0, 0.6),
        ("BandPass", 2500.0, 0.0, 0.5),
        ("Notch", 60.0, 0.0, 8.0),
        ("AllPass", 700.0, 0.0, 0.707),
    ];
    let mut whole = vec![0.0; freqs.len()];
    for (i, (kind, f0, g, q)) in bands.iter().enumerate() {
        let measured = curve(&format!("eq.bands[{i}]"), "measured");
        let drawn = curve(&format!("eq.bands[{i}]"), "analytic");
        for (j, &f) in freqs.iter().enumerate() {
            let want = cookbook_db(kind, *f0, *g, *q, 48000.0, f);
            whole[j] += want;
            if want > -60.0 {
                assert!((measured[j] - want).abs() < 0.05, "{kind} at {f:.1} Hz: measured {} want {want}", measured[j]);
                assert!((drawn[j] - want).abs() < 0.05, "{kind} at {f:.1} Hz: cookbook curve {} want {want}", drawn[j]);
            }
        }
    }
    let eq = curve("eq", "measured");
    for (j, f) in freqs.iter().enumerate() {
        if whole[j] > -60.0 {
            assert!((eq[j] - whole[j]).abs() < 0.05, "the Eq at {f:.1} Hz: {} want {}", eq[j], whole[j]);
        }
    }
    // Below threshold the dynamics are flat, and the limiter's 2 ms lookahead shows as group delay.
    for name in ["comp", "limiter"] {
        assert!(curve(name, "measured").iter().all(|v| v.abs() < 0.01), "{name} is linear below its threshold");
    }
    let limiter = data["curves"].as_array().expect("curves").iter().find(|c| c["name"] == "limiter").expect("limiter");
    let gd = limiter["group_delay_ms"][100].as_f64().expect("group delay");
    assert!((gd - 2.0).abs() < 0.03, "{gd} ms");

    // The picture is XML with a legend entry and a curve per requested node, band and cookbook curve.
    let svg = std::fs::read_to_string(dir.path().join("r.svg")).expect("svg");
    let doc = roxmltree::Document::parse(&svg).expect("the SVG parses as XML");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect();
    for name in ["graph", "eq", "comp", "limiter"] {
        assert_eq!(texts.iter().filter(|t| **t == format!("{name} (measured)")).count(), 1, "{name}: {texts:?}");
    }
    assert_eq!(texts.iter().filter(|t| t.ends_with("(cookbook)")).count(), 9, "the Eq and its 8 bands");
    let lines = doc.descendants().filter(|n| n.has_tag_name("polyline")).count();
    assert!(lines >= 2 * (4 + 8 + 9), "{lines} polylines for 21 curves and their legend marks");
}

#[test]
fn topology_goes_out_as_dot_and_through_graphviz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parallel = repo().join("graphs/parallel.ron");
    let p = parallel.to_str().expect("utf-8");
    let o = fxgraph(&["check", p, "--dot"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let dot = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(dot.starts_with("digraph") && dot.contains("\"input\" -> ") && dot.contains("-> \"output\""), "{dot}");
    assert_eq!(dot.matches("subgraph \"cluster_").count(), 4, "four parallel branches: {dot}");
    assert!(dot.contains("Compressor\\nthreshold_db = -20 dB"), "{dot}");
    assert!(dot.contains("latency 240 frames"), "{dot}");
    if tool_exists("dot") {
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("dot");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), dot.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("dot runs");
        assert!(out.status.success(), "dot -Tsvg accepts the DOT");
        let svg = String::from_utf8_lossy(&out.stdout).into_owned();
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
        roxmltree::Document::parse_with_options(&svg, options).expect("dot's SVG parses");
        let o = fxgraph(&["plot", p, "--topology", "-o", "topo.svg"], dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::read_to_string(dir.path().join("topo.svg")).expect("drawn").contains("low_comp"));
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI installs Graphviz");
    }
    // Without Graphviz: a note, and the DOT written instead.
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["plot", p, "--topology", "-o", "t2.svg"])
        .current_dir(dir.path())
        .env("PATH", dir.path())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Graphviz's `dot` is not installed"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(dir.path().join("t2.dot")).expect("dot file"), dot);
}

#[test]
fn bench_draws_timing_and_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = repo().join("graphs/chain.ron");
    let o = fxgraph(&["bench", g.to_str().expect("utf-8"), "--seconds", "2", "--plot", "b.svg"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(dir.path().join("b.svg")).expect("svg");
    let doc = roxmltree::Document::parse(&svg).expect("XML");
    let texts: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    for label in ["eq", "comp", "limiter", "mean", "p99", "max", "peak", "RMS"] {
        assert!(texts.contains(&label), "{label}: {texts:?}");
    }
    // Three bars per node.
    let bars = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!(bars >= 9, "{bars}");
}

fn tool_exists(name: &str) -> bool {
    Command::new(name).arg("-V").output().is_ok()
}

#[test]
fn inputs_at_absurd_sample_rates_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A WAV header claiming 16.8 MHz (found by fuzzing: resampling it took seconds and 600 MB).
    let mut wav = Vec::new();
    let data = [0u8; 400];
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&16_788_241u32.to_le_bytes());
    wav.extend_from_slice(&(16_788_241u32 * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(dir.path().join("fast.wav"), wav).expect("write");
    let g = repo().join("graphs/chain.ron");
    let o = fxgraph(&["render", g.to_str().expect("utf-8"), "-i", "fast.wav", "-o", "out.wav"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("16788241 Hz is not audio fxgraph plays"), "{}", stderr(&o));
    assert!(!dir.path().join("out.wav").exists());
}

/// What the fuzzers found stays fixed: every input in `fuzz/regressions/TARGET/` goes through the loader
/// its target drives, which must answer (an error or a value) without panicking.
#[test]
fn fuzzer_findings_stay_fixed() {
    let dir = repo().join("fuzz/regressions");
    let files = |target: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(dir.join(target)).expect("regressions").map(|e| e.expect("entry").path()).collect();
        v.sort();
        assert!(!v.is_empty(), "{target}: no regression inputs");
        v
    };
    // A WAV header declaring 16.8 MHz: refused at once, naming the rate.
    for f in files("decode") {
        let format = fxgraph::GraphFormat { sample_rate: 48000, channels: 2 };
        let e = fxgraph::io::decode::AudioFile::open(&f, format)
            .err()
            .unwrap_or_else(|| panic!("{}: accepted", f.display()));
        assert!(e.to_string().contains("Hz"), "{}: {e}", f.display());
    }
    // A preset whose keys hold escapes: parsed or refused, never a panic.
    for f in files("preset") {
        let text = String::from_utf8_lossy(&std::fs::read(&f).expect("read")).into_owned();
        if let Err(e) = fxgraph::graph::preset::Preset::parse(&text, "regression.ron") {
            let _ = e.to_string();
        }
    }
    // A module that once ran past the fuzzer's time limit under load: compiles and sets up, or is refused.
    #[cfg(feature = "wasm")]
    for f in files("wasm_module") {
        let bytes = std::fs::read(&f).expect("read");
        let manifest = fxgraph::nodes::wasm::Manifest::parse(
            r#"{"id": "fuzz", "name": "Fuzz", "version": "0", "abi_version": 1, "memory_limit_bytes": 4194304,
                "block_budget_us": 2000, "parameters": []}"#,
        )
        .expect("manifest");
        let config = fxgraph::ProcessConfig::effect(48000, 2, 512);
        let _ = fxgraph::nodes::wasm::try_module(&bytes, &manifest, &[], &config);
    }
}

fn read_planar(path: &Path) -> Vec<Vec<f32>> {
    let r = hound::WavReader::open(path).expect("wav");
    let ch = usize::from(r.spec().channels);
    let samples: Vec<f32> = r.into_samples::<f32>().map(|s| s.expect("sample")).collect();
    (0..ch).map(|c| samples.iter().skip(c).step_by(ch).copied().collect()).collect()
}

#[test]
fn render_feeds_named_inputs_from_files_and_folds_5_1_to_stereo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let noise = |seed: u32, len: usize| -> Vec<f32> {
        (0..len)
            .map(|n| ((n as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
            .collect()
    };
    // Six channels, L R C LFE Ls Rs, folded by ITU-R BS.775.
    let surround: Vec<Vec<f32>> = (0..6).map(|c| noise(c * 977, 4800)).collect();
    common::write_float_wav(&dir.path().join("six.wav"), 48000, &surround);
    let k = std::f64::consts::FRAC_1_SQRT_2;
    std::fs::write(
        dir.path().join("fold.ron"),
        format!(
            r#"(sample_rate: 48000, inputs: {{"surround": 6}}, outputs: {{"stereo": 2}},
                nodes: {{ "fold": Mixer(gains: [[1.0, 0.0, {k}, 0.0, {k}, 0.0], [0.0, 1.0, {k}, 0.0, 0.0, {k}]]) }},
                edges: [("input", "fold"), ("fold", "output")])"#
        ),
    )
    .expect("write");
    let o = fxgraph(&["render", "fold.ron", "-i", "surround=six.wav", "-o", "two.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let y = read_planar(&dir.path().join("two.wav"));
    assert_eq!((y.len(), y[0].len()), (2, 4800));
    let x = |c: usize, n: usize| f64::from(surround[c][n]);
    for (n, (yl, yr)) in y[0].iter().zip(&y[1]).enumerate() {
        let (l, r) = (x(0, n) + k * (x(2, n) + x(4, n)), x(1, n) + k * (x(2, n) + x(5, n)));
        assert!((f64::from(*yl) - l).abs() < 1e-6 && (f64::from(*yr) - r).abs() < 1e-6, "frame {n}");
    }
    // The ducking graph: music and voice from files by name; the output is as long as the music.
    common::write_float_wav(&dir.path().join("music.wav"), 48000, &[noise(1, 9600), noise(2, 9600)]);
    common::write_float_wav(&dir.path().join("voice.wav"), 44100, &[noise(3, 2000)]);
    let ducking = repo().join("graphs/ducking.ron");
    let g = ducking.to_str().expect("utf-8");
    let o = fxgraph(&["render", g, "-i", "voice=voice.wav", "-i", "music=music.wav", "-o", "mix.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("voice.wav: resampled from 44100 Hz"), "{}", stderr(&o));
    let mix = read_planar(&dir.path().join("mix.wav"));
    assert_eq!((mix.len(), mix[0].len()), (2, 9600));
    // `bench` takes the same inputs.
    let o = fxgraph(&["bench", g, "-i", "music=music.wav", "-i", "voice=voice.wav", "--json"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3), "{v}");
    // A bare file feeds the first input; naming an input twice, or one the graph lacks, is refused.
    let o = fxgraph(&["render", g, "-i", "music.wav", "-o", "bare.wav"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fxgraph(&["render", g, "-i", "music.wav", "-i", "music=music.wav", "-o", "x.wav"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the graph's input `music` is given twice"), "{}", stderr(&o));
}

/// The independent meter (libebur128's port) over a WAV file.
fn reference_meter(path: &Path) -> (ebur128::EbuR128, usize) {
    let mut reader = hound::WavReader::open(path).expect("a WAV");
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.expect("sample")).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.expect("sample") as f32 * scale).collect()
        }
    };
    let mode = ebur128::Mode::I | ebur128::Mode::LRA | ebur128::Mode::TRUE_PEAK | ebur128::Mode::SAMPLE_PEAK;
    let mut m = ebur128::EbuR128::new(channels as u32, spec.sample_rate, mode).expect("a meter");
    m.add_frames_f32(&samples).expect("frames");
    (m, channels)
}

#[test]
fn analyze_reports_what_an_independent_meter_reads_and_goes_on_past_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two files: the mastering graph's output, and a 44.1 kHz sine at -20 dBFS (-20 LUFS, stereo).
    let song = dir.path().join("song.wav");
    let o =
        fxgraph(&["render", "graphs/mastering.ron", "-o", song.to_str().expect("utf-8"), "--seconds", "8"], &repo());
    assert!(o.status.success(), "{}", stderr(&o));
    let sine = dir.path().join("sine.wav");
    write_wav(&sine, spec(2, 44100, 24, false), 441000, |n, _| {
        0.1 * (std::f64::consts::TAU * 1000.0 * n as f64 / 44100.0).sin()
    });
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"RIFF....WAVEfmt garbage").expect("write");
    let args: Vec<&str> =
        ["analyze", "--json"].into_iter().chain([&song, &bad, &sine].map(|p| p.to_str().expect("utf-8"))).collect();
    let o = fxgraph(&args, dir.path());
    assert_eq!(o.status.code(), Some(2), "a bad file exits with 2");
    assert!(stderr(&o).contains("bad.wav"), "the bad file is named: {}", stderr(&o));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(lines.len(), 3, "two files and the album, the bad one left out");
    for (line, path) in lines.iter().zip([&song, &sine]) {
        let (reference, channels) = reference_meter(path);
        let get = |key: &str| line[key].as_f64().unwrap_or_else(|| panic!("{key} in {line}"));
        for key in [
            "integrated_lufs",
            "loudness_range_lu",
            "true_peak_dbtp",
            "sample_peak_dbfs",
            "momentary_max_lufs",
            "short_term_max_lufs",
        ] {
            get(key);
        }
        assert!((get("integrated_lufs") - reference.loudness_global().unwrap()).abs() < 0.05, "{line}");
        let peak = |f: &dyn Fn(u32) -> f64| 20.0 * (0..channels as u32).map(f).fold(0.0, f64::max).log10();
        assert!((get("sample_peak_dbfs") - peak(&|c| reference.sample_peak(c).unwrap())).abs() < 1e-3, "{line}");
        assert!((get("true_peak_dbtp") - peak(&|c| reference.true_peak(c).unwrap())).abs() < 0.2, "{line}");
    }
    assert!((lines[1]["integrated_lufs"].as_f64().expect("sine") + 20.0).abs() < 0.05, "{}", lines[1]);
    // The album: the two files' gating blocks pooled, louder than the quieter file, quieter than the louder.
    let album = lines[2]["album"]["integrated_lufs"].as_f64().expect("album");
    let (a, b) = (lines[0]["integrated_lufs"].as_f64().expect("a"), lines[1]["integrated_lufs"].as_f64().expect("b"));
    assert!(album > a.min(b) && album < a.max(b), "album {album} of {a} and {b}");
}

#[test]
fn a_normalized_render_measures_its_target_under_its_true_peak_ceiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (graph, target, ceiling, format) in [
        ("graphs/mastering.ron", "-14", "-1", "f32"),
        ("graphs/chain.ron", "-23", "-2", "s24"),
        ("graphs/mastering.ron", "-10", "-1", "s16"),
    ] {
        let out = dir.path().join(format!("n{target}.wav"));
        let o = fxgraph(
            &[
                "render",
                graph,
                "-o",
                out.to_str().expect("utf-8"),
                "--normalize",
                target,
                "--true-peak",
                ceiling,
                "--format",
                format,
            ],
            &repo(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("pass 1 (the graph's output): integrated") && err.contains("pass 2 (gain"), "{err}");
        let (reference, channels) = reference_meter(&out);
        let (target, ceiling): (f64, f64) = (target.parse().expect("target"), ceiling.parse().expect("ceiling"));
        let got = reference.loudness_global().unwrap();
        assert!((got - target).abs() <= 0.2, "{graph}: {got:.2} LUFS, want {target}");
        let tp = 20.0 * (0..channels as u32).map(|c| reference.true_peak(c).unwrap()).fold(0.0, f64::max).log10();
        assert!(tp <= ceiling, "{graph}: {tp:.3} dBTP over the {ceiling} dBTP ceiling");
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("pass1"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    // Normalizing over its own input is refused, as a plain render is.
    let input = dir.path().join("in.wav");
    std::fs::copy(dir.path().join("n-14.wav"), &input).expect("copy");
    let before = std::fs::read(&input).expect("input");
    let i = input.to_str().expect("utf-8");
    let o = fxgraph(&["render", "graphs/chain.ron", "-i", i, "-o", i, "--normalize"], &repo());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("refusing to overwrite"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&input).expect("input"), before, "the input is untouched");
    // A target out of range is refused.
    let o = fxgraph(&["render", "graphs/chain.ron", "-o", "/dev/null", "--normalize", "5"], &repo());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `fxgraph import eq` writes the shipped profile out as a graph whose render is bit-identical to the same
/// graph importing the profile (`Eq(import: ...)`); a profile line it does not read exits with 2, located.
#[test]
fn import_eq_writes_a_graph_that_renders_as_the_imported_profile_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = repo().join("graphs/headphones/ParametricEQ.txt");
    let profile = profile.to_str().expect("UTF-8 path");
    let o = fxgraph(&["import", "eq", profile, "-o", "written.ron"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let written = std::fs::read_to_string(dir.path().join("written.ron")).expect("written");
    assert!(written.contains("gain_db: -6.2") && written.matches("(kind: ").count() == 5, "{written}");
    let importing = format!(
        "(sample_rate: 48000, channels: 2, nodes: {{ \"eq\": Eq(import: \"{profile}\") }}, edges: [(\"input\", \"eq\"), (\"eq\", \"output\")])"
    );
    std::fs::write(dir.path().join("importing.ron"), importing).expect("write");
    for g in ["written", "importing"] {
        let o = fxgraph(&["render", &format!("{g}.ron"), "--seconds", "2", "-o", &format!("{g}.wav")], dir.path());
        assert!(o.status.success(), "{g}: {}", stderr(&o));
    }
    let read = |f: &str| std::fs::read(dir.path().join(f)).expect("rendered");
    assert!(read("written.wav") == read("importing.wav"), "the written graph renders differently");

    std::fs::write(
        dir.path().join("bad.txt"),
        "Preamp: -3 dB\nFilter 1: ON PK Fc 100 Hz Gain 3 dB Q 1\nFilter 2: ON XX Fc 100 Hz\n",
    )
    .expect("write");
    let o = fxgraph(&["import", "eq", "bad.txt"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.txt:3:14: filter type \"XX\" is not supported"), "{}", stderr(&o));
}

/// `plot --data` of a convolver: its measured magnitude and group delay are a two-tap average's,
/// |cos(pi f / fs)| and half a frame; `--target` writes a target curve beside it, interpolated in log
/// frequency between the file's points; a target whose frequencies fall back is refused (exit 2).
#[test]
fn plot_measures_a_convolver_and_writes_a_target_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_wav(&dir.path().join("avg.wav"), spec(1, 48000, 32, true), 2, |_, _| 0.5);
    std::fs::write(
        dir.path().join("g.ron"),
        r#"(sample_rate: 48000, channels: 2, nodes: { "avg": Convolver(path: "avg.wav") }, edges: [("input", "avg"), ("avg", "output")])"#,
    )
    .expect("write");
    std::fs::write(dir.path().join("target.csv"), "frequency,raw\n20,6\n1000,0\n20000,-6\n").expect("write");
    let o = fxgraph(&["plot", "g.ron", "--target", "target.csv", "--data", "d.csv", "-o", "p.svg"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.path().join("d.csv")).expect("data");
    let mut lines = csv.lines().skip(1);
    let header = lines.next().expect("header");
    assert_eq!(header, "freq_hz,graph measured magnitude_db,graph measured group_delay_ms,target target magnitude_db");
    let mut rows = 0;
    for line in lines {
        let v: Vec<f64> = line.split(',').map(|x| x.parse().expect("number")).collect();
        let f = v[0];
        let want = 20.0 * (std::f64::consts::PI * f / 48000.0).cos().abs().log10();
        if want > -60.0 {
            assert!((v[1] - want).abs() < 0.01, "{f} Hz: {} dB, the two-tap average's {want} dB", v[1]);
            assert!((v[2] - 1000.0 * 0.5 / 48000.0).abs() < 1e-4, "{f} Hz: group delay {} ms", v[2]);
        }
        let target =
            if f <= 1000.0 { 6.0 * (1000.0 / f).ln() / 50f64.ln() } else { -6.0 * (f / 1000.0).ln() / 20f64.ln() };
        let target = if f >= 20000.0 { -6.0 } else { target };
        assert!((v[3] - target).abs() < 1e-4, "{f} Hz: target {} dB, want {target}", v[3]);
        rows += 1;
    }
    assert!(rows > 400, "{rows} rows");

    std::fs::write(dir.path().join("bad.csv"), "20,6\n1000,0\n500,1\n").expect("write");
    let o = fxgraph(&["plot", "g.ron", "--target", "bad.csv", "-o", "p.svg"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.csv:3: the frequencies must rise"), "{}", stderr(&o));
}
