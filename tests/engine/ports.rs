//! Ports, routing nodes and graph inputs and outputs, checked against analytic answers.

use super::*;
use fxgraph::GraphError;

fn parse_err(src: &str) -> GraphError {
    match Graph::parse(src, "g.ron", ".".as_ref()) {
        Ok(_) => panic!("the graph should be refused:\n{src}"),
        Err(e) => e,
    }
}

/// `(sample_rate: 48000, channels: N, ...)` with these nodes and edges.
fn graph(head: &str, nodes: &str, edges: &str) -> String {
    format!("(sample_rate: 48000, {head}, nodes: {{ {nodes} }}, edges: [{edges}])")
}

#[test]
fn a_sidechain_keyed_compressor_ducks_the_music_by_its_static_curve_and_gives_it_back_at_its_release() {
    // Music at -20 dBFS on one input, a key on the other: 1 s at -6 dBFS (a constant peak), then silence.
    let src = graph(
        r#"inputs: {"music": 2, "voice": 1}, outputs: {"main": 2}"#,
        r#""duck": Compressor(threshold_db: -30.0, ratio: 4.0, attack_ms: 5.0, release_ms: 100.0, knee_db: 0.0, makeup_db: 0.0)"#,
        r#"("input.music", "duck"), ("input.voice", "duck.sidechain"), ("duck", "output")"#,
    );
    let (music, key) = (0.1, 0.5);
    let mut voice = alternating(key, 48000);
    voice.extend(vec![0.0; 48000]);
    let m = alternating(music, 96000);
    let y = run(&src, vec![m.clone(), m, voice], 256, 1, Parallelism::Adaptive);
    assert_eq!(y.len(), 2, "the output is the graph's one stereo output");
    let reduction = |n: usize| db(music) - db(f64::from(y[0][n].abs()));
    let full = (db(key) + 30.0) * (1.0 - 1.0 / 4.0);
    // While the key is present, the music is reduced by the static curve's gain reduction for the key.
    for n in [24000, 47999] {
        assert!((reduction(n) - full).abs() < 0.5, "frame {n}: {:.2} dB of reduction, want {full:.2}", reduction(n));
    }
    assert_eq!(y[0][47999], y[1][47999], "both music channels get the same gain");
    // The music alone is far below the threshold: without a key it would pass untouched.
    let e = std::f64::consts::E;
    let after_release = reduction(48000 + 4800 - 1);
    assert!(
        (after_release - full / e).abs() < 0.05 * full,
        "one release time after the key stops: {after_release:.2} dB"
    );
    assert!(reduction(95999) < 0.01, "given back: {:.4} dB left", reduction(95999));
}

#[test]
fn mid_side_round_trips_within_one_step_and_a_side_gain_changes_the_width_by_the_formula() {
    let l = xorshift(3, 4800);
    let r: Vec<f32> = xorshift(5, 4800).iter().zip(&l).map(|(a, b)| 0.5 * a + 0.3 * b).collect();
    let round = graph(
        "channels: 2",
        r#""enc": MidSide(mode: Encode), "dec": MidSide(mode: Decode)"#,
        r#"("input", "enc"), ("enc", "dec"), ("dec", "output")"#,
    );
    let y = run(&round, vec![l.clone(), r.clone()], 100, 1, Parallelism::Adaptive);
    // One step of the pair's level: the spacing of `f32`s at the larger of the two samples.
    for n in 0..l.len() {
        let step = f32::EPSILON * l[n].abs().max(r[n].abs()).max(f32::MIN_POSITIVE);
        for (a, b) in [(l[n], y[0][n]), (r[n], y[1][n])] {
            assert!((a - b).abs() <= step, "frame {n}: {a} came back as {b} (one step: {step})");
        }
    }
    // Side times g: L' = M + g S, R' = M - g S.
    for g in [0.0, 0.5, 2.0] {
        let src = graph(
            "channels: 2",
            &format!(
                r#""enc": MidSide(mode: Encode), "side": Mixer(gains: [[1.0, 0.0], [0.0, {g:.1}]]), "dec": MidSide(mode: Decode)"#
            ),
            r#"("input", "enc"), ("enc", "side"), ("side", "dec"), ("dec", "output")"#,
        );
        let y = run(&src, vec![l.clone(), r.clone()], 64, 1, Parallelism::Adaptive);
        for n in 0..4800 {
            let (a, b) = (f64::from(l[n]), f64::from(r[n]));
            let (mid, side) = ((a + b) / 2.0, (a - b) / 2.0);
            assert!((f64::from(y[0][n]) - (mid + g * side)).abs() < 1e-6, "g {g}, frame {n}, left");
            assert!((f64::from(y[1][n]) - (mid - g * side)).abs() < 1e-6, "g {g}, frame {n}, right");
        }
    }
}

/// The response of `h` at `f` (a DFT bin of any frequency), as magnitude in dB.
fn response_db(h: &[f64], f: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &v) in h.iter().enumerate() {
        let (s, c) = (TAU * f * n as f64 / SR).sin_cos();
        re += v * c;
        im -= v * s;
    }
    10.0 * (re * re + im * im).log10()
}

/// The LR4 low-pass or high-pass magnitude at `f` for a crossover at `f0`, bilinear with the cookbook's
/// prewarping: with `r = tan(pi f / fs) / tan(pi f0 / fs)`, `1 / (1 + r^4)` and `r^4 / (1 + r^4)`.
fn lr4(f: f64, f0: f64, high: bool) -> f64 {
    let r = ((std::f64::consts::PI * f / SR).tan() / (std::f64::consts::PI * f0 / SR).tan()).powi(4);
    if high { r / (1.0 + r) } else { 1.0 / (1.0 + r) }
}

/// Band `k`'s magnitude by the crossover's documented tree: split bands `lo..=hi` at the middle
/// frequency, the low side through the low-pass, the high side through the high-pass (all-passes add
/// nothing to the magnitude).
fn band_magnitude(freqs: &[f64], k: usize, f: f64) -> f64 {
    let (mut lo, mut hi, mut gain) = (0, freqs.len(), 1.0);
    while lo < hi {
        let m = (lo + hi) / 2;
        if k <= m {
            gain *= lr4(f, freqs[m], false);
            hi = m;
        } else {
            gain *= lr4(f, freqs[m], true);
            lo = m + 1;
        }
    }
    gain
}

#[test]
fn crossover_bands_sum_flat_and_each_band_is_its_analytic_lr4_response() {
    for freqs in [vec![1000.0], vec![200.0, 2000.0, 8000.0], vec![80.0, 250.0, 800.0, 2500.0, 6000.0]] {
        let bands = freqs.len() + 1;
        let outputs: Vec<String> = (0..bands).map(|k| format!("\"b{k}\": 1")).collect();
        let edges: Vec<String> = (0..bands).map(|k| format!("(\"x.band{k}\", \"output.b{k}\")")).collect();
        let list: Vec<String> = freqs.iter().map(|f| format!("{f:.1}")).collect();
        let src = graph(
            &format!(r#"inputs: {{"in": 1}}, outputs: {{ {} }}"#, outputs.join(", ")),
            &format!(r#""x": Crossover(freqs_hz: [{}])"#, list.join(", ")),
            &format!(r#"("input", "x"), {}"#, edges.join(", ")),
        );
        let len = 1 << 16;
        let mut impulse = vec![0.0f32; len];
        impulse[0] = 1.0;
        let y = run(&src, vec![impulse], 512, 1, Parallelism::Adaptive);
        assert_eq!(y.len(), bands);
        let h: Vec<Vec<f64>> = y.iter().map(|c| c.iter().map(|&v| f64::from(v)).collect()).collect();
        let sum: Vec<f64> = (0..len).map(|n| h.iter().map(|b| b[n]).sum()).collect();
        let mut f = 20.0;
        while f <= 20000.0 {
            let flat = response_db(&sum, f);
            assert!(flat.abs() < 0.01, "{freqs:?}: the bands sum to {flat:.4} dB at {f:.0} Hz");
            for (k, band) in h.iter().enumerate() {
                let want = 20.0 * band_magnitude(&freqs, k, f).log10();
                let got = response_db(band, f);
                if want > -60.0 {
                    assert!(
                        (got - want).abs() < 0.01,
                        "{freqs:?}: band {k} at {f:.0} Hz is {got:.4} dB, LR4 {want:.4}"
                    );
                } else {
                    assert!(got < -59.0, "{freqs:?}: band {k} at {f:.0} Hz is {got:.1} dB, LR4 {want:.1}");
                }
            }
            f *= 1.25;
        }
    }
}

#[test]
fn a_5_1_file_folds_to_stereo_through_a_mixer_with_itu_coefficients() {
    // ITU-R BS.775: L' = L + 0.7071 C + 0.7071 Ls, R' = R + 0.7071 C + 0.7071 Rs; the LFE is left out.
    let k = std::f64::consts::FRAC_1_SQRT_2;
    let src = graph(
        r#"inputs: {"surround": 6}, outputs: {"stereo": 2}"#,
        &format!(r#""fold": Mixer(gains: [[1.0, 0.0, {k}, 0.0, {k}, 0.0], [0.0, 1.0, {k}, 0.0, 0.0, {k}]])"#),
        r#"("input", "fold"), ("fold", "output")"#,
    );
    let input: Vec<Vec<f32>> = (0..6).map(|c| xorshift(11 + c, 9600).iter().map(|v| v * 0.4).collect()).collect();
    let y = run(&src, input.clone(), 512, 1, Parallelism::Adaptive);
    assert_eq!(y.len(), 2);
    let x = |c: usize, n: usize| f64::from(input[c][n]);
    for (n, (yl, yr)) in y[0].iter().zip(&y[1]).enumerate() {
        let l = x(0, n) + k * x(2, n) + k * x(4, n);
        let r = x(1, n) + k * x(2, n) + k * x(5, n);
        assert!((f64::from(*yl) - l).abs() < 1e-6 && (f64::from(*yr) - r).abs() < 1e-6, "frame {n}");
    }
}

#[test]
fn channels_pick_and_a_mono_edge_feeds_every_channel_of_a_wider_port() {
    let src = graph(
        r#"inputs: {"a": 3, "mic": 1}, outputs: {"main": 2}"#,
        r#""pick": Channels(select: [2, 0]), "sum": Gain(gain_db: 0.0)"#,
        r#"("input.a", "pick"), ("pick", "sum"), ("input.mic", "sum"), ("sum", "output")"#,
    );
    let input: Vec<Vec<f32>> = (0..4).map(|c| xorshift(21 + c, 1000)).collect();
    let y = run(&src, input.clone(), 64, 1, Parallelism::Adaptive);
    for n in 0..1000 {
        assert_eq!(y[0][n], input[2][n] + input[3][n], "left: channel 2 and the microphone");
        assert_eq!(y[1][n], input[0][n] + input[3][n], "right: channel 0 and the microphone");
    }
}

#[test]
fn a_delay_is_exact_in_frames_and_a_change_is_cross_faded() {
    let src = graph("channels: 1", r#""d": Delay(delay_ms: 10.0)"#, r#"("input", "d"), ("d", "output")"#);
    let x = xorshift(9, 4800);
    let y = run(&src, vec![x.clone()], 100, 1, Parallelism::Adaptive);
    assert!(y[0][..480].iter().all(|&v| v == 0.0));
    assert_eq!(&y[0][480..], &x[..4800 - 480], "10 ms is 480 frames at 48 kHz");
    // A change from 10 ms to 1 ms on a 100 Hz sine: no step larger than the sine's own.
    let (mut engine, mut audio) = super::engine(&src, 256, 1, Parallelism::Adaptive);
    let s = sine(100.0, 0.9, 48000);
    let mut out = Vec::new();
    for (i, chunk) in s.chunks(256).enumerate() {
        if i == 40 {
            engine.set("d", "delay_ms", 1.0).expect("delay_ms is a parameter");
            engine.update();
        }
        let mut o = vec![0.0f32; chunk.len()];
        audio.process(
            &AudioIn::new(chunk, chunk.len(), 1, chunk.len()),
            &mut AudioOut::new(&mut o, chunk.len(), 1, chunk.len()),
        );
        out.extend(o);
    }
    let largest = |v: &[f32]| v.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
    let natural = largest(&s);
    assert!(largest(&out[480..]) <= natural * 1.01, "a step of {} (the sine's own: {natural})", largest(&out[480..]));
    assert_eq!(&out[47000..], &s[47000 - 48..48000 - 48], "after the crossfade the delay is 1 ms");
}

#[test]
fn a_gate_keyed_by_its_sidechain_opens_for_the_key_and_closes_to_its_range() {
    let src = graph(
        r#"inputs: {"music": 1, "key": 1}, outputs: {"main": 1}"#,
        r#""g": Gate(threshold_db: -30.0, attack_ms: 1.0, hold_ms: 50.0, release_ms: 20.0, range_db: -40.0)"#,
        r#"("input.music", "g"), ("input.key", "g.sidechain"), ("g", "output")"#,
    );
    let music = alternating(0.5, 48000);
    let mut key = vec![0.0f32; 12000];
    key.extend(alternating(0.1, 12000));
    key.extend(vec![0.0f32; 24000]);
    let y = run(&src, vec![music, key], 128, 1, Parallelism::Adaptive);
    let gain = |n: usize| db(f64::from(y[0][n].abs()) / 0.5);
    assert!((gain(11999) + 40.0).abs() < 0.01, "closed before the key: {:.2} dB", gain(11999));
    assert!(gain(23999).abs() < 0.01, "open with the key: {:.2} dB", gain(23999));
    assert!(gain(24000 + 2300).abs() < 0.01, "held for 50 ms after it: {:.2} dB", gain(24000 + 2300));
    assert!((gain(47999) + 40.0).abs() < 0.01, "closed again: {:.2} dB", gain(47999));
}

#[test]
fn bad_ports_and_widths_are_located_errors() {
    // What went wrong, the graph, the message, and the text the position points at.
    let cases: [(&str, String, &str, &str); 6] = [
        (
            "width",
            graph(
                "channels: 2",
                r#""m": Mixer(gains: [[1.0, 1.0, 1.0]])"#,
                "(\"input\", \"m\"),\n (\"m\", \"output\")",
            ),
            "joins 2 channels to a port of 3",
            "\"m\"",
        ),
        (
            "port",
            graph(
                "channels: 2",
                r#""c": Compressor(threshold_db: -20.0, ratio: 2.0, attack_ms: 1.0, release_ms: 10.0, knee_db: 0.0, makeup_db: 0.0)"#,
                "(\"input\", \"c.side\"), (\"c\", \"output\")",
            ),
            "no input port `side` (the node's inputs: in, sidechain)",
            "\"c.side\"",
        ),
        (
            "output port",
            graph(
                "channels: 2",
                r#""x": Crossover(freqs_hz: [500.0])"#,
                "(\"input\", \"x\"), (\"x.band2\", \"output\")",
            ),
            "no output port `band2` (the node's outputs: band0, band1)",
            "\"x.band2\"",
        ),
        (
            "graph input",
            graph(
                r#"inputs: {"a": 2}, outputs: {"b": 2}"#,
                r#""g": Gain(gain_db: 0.0)"#,
                "(\"input.c\", \"g\"), (\"g\", \"output\")",
            ),
            "the graph has no input `c` (its inputs: a)",
            "\"input.c\"",
        ),
        (
            "select",
            graph("channels: 2", r#""c": Channels(select: [0, 2])"#, "(\"input\", \"c\"), (\"c\", \"output\")"),
            "picks channel 2 of an input with 2 channels",
            "2])",
        ),
        (
            "output width",
            graph(
                "channels: 2",
                r#""m": Mixer(gains: [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])"#,
                "(\"input\", \"m\"), (\"m\", \"output\")",
            ),
            "joins 3 channels to a port of 2",
            "\"output\"",
        ),
    ];
    for (what, src, message, at) in &cases {
        let e = parse_err(src);
        assert!(e.to_string().contains(message), "{what}: {e}");
        let (line, col) = e.position.unwrap_or_else(|| panic!("{what}: no position in {e}"));
        // The position points at the offending edge end, or the node's parameter.
        let there: String = src.lines().nth(line - 1).unwrap_or("").chars().skip(col - 1).collect();
        assert!(there.starts_with(at), "{what}: {e} points at {there:?}, not {at:?}");
    }
}

/// A random graph of `n` nodes of every routing kind, each reading earlier nodes' ports (so acyclic),
/// with widths that always join (mono or equal), and the graph's output reading the last few.
fn random_graph(seed: u64, n: usize) -> String {
    let mut s = seed;
    let mut next = move |k: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % k as u64) as usize
    };
    // (name, its output ports as (port name, width)).
    let mut made: Vec<(String, Vec<(String, usize)>)> = vec![("input".into(), vec![("main".into(), 2)])];
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for i in 0..n {
        let name = format!("n{i}");
        // A source port of width `w` (or mono) from an earlier node.
        let pick = |w: Option<usize>, next: &mut dyn FnMut(usize) -> usize| -> String {
            for _ in 0..16 {
                let (node, ports) = &made[next(made.len())];
                let (port, width) = &ports[next(ports.len())];
                if w.is_none_or(|w| *width == w || *width == 1) {
                    return if node == "input" { "input".into() } else { format!("{node}.{port}") };
                }
            }
            "input".into()
        };
        let (kind, outs) = match next(8) {
            0 => ("Gain(gain_db: -3.0)".to_string(), vec![("out".to_string(), 2)]),
            1 => ("Eq(bands: [(kind: Peak, freq_hz: 900.0, gain_db: 3.0, q: 1.0)])".into(), vec![("out".into(), 2)]),
            2 => (
                "Compressor(threshold_db: -24.0, ratio: 3.0, attack_ms: 2.0, release_ms: 40.0, knee_db: 4.0, makeup_db: 0.0)"
                    .into(),
                vec![("out".into(), 2)],
            ),
            3 => ("Crossover(freqs_hz: [300.0, 3000.0])".into(), (0..3).map(|k| (format!("band{k}"), 2)).collect()),
            4 => ("Mixer(inputs: [2, 2], gains: [[0.5, 0.25, 0.25, 0.0], [0.1, 0.5, 0.0, 0.4]])".into(), vec![("out".into(), 2)]),
            5 => ("Channels(select: [0])".into(), vec![("out".into(), 1)]),
            6 => ("Limiter(ceiling_db: -2.0, lookahead_ms: 1.0, release_ms: 20.0)".into(), vec![("out".into(), 2)]),
            _ => ("Delay(delay_ms: 0.5)".into(), vec![("out".into(), 2)]),
        };
        match kind.split('(').next() {
            Some("Mixer") => {
                edges.push(format!("(\"{}\", \"{name}.in0\")", pick(Some(2), &mut next)));
                edges.push(format!("(\"{}\", \"{name}.in1\")", pick(Some(2), &mut next)));
            }
            Some("Compressor") => {
                edges.push(format!("(\"{}\", \"{name}\")", pick(Some(2), &mut next)));
                if next(2) == 0 {
                    edges.push(format!("(\"{}\", \"{name}.sidechain\")", pick(None, &mut next)));
                }
            }
            Some("Channels") => edges.push(format!("(\"{}\", \"{name}\")", pick(Some(2), &mut next))),
            _ => {
                edges.push(format!("(\"{}\", \"{name}\")", pick(Some(2), &mut next)));
                if next(3) == 0 {
                    edges.push(format!("(\"{}\", \"{name}\")", pick(Some(2), &mut next)));
                }
            }
        }
        nodes.push(format!("\"{name}\": {kind}"));
        made.push((name, outs));
    }
    for (node, ports) in made.iter().rev().take(3) {
        let port = &ports[0].0;
        if node != "input" {
            edges.push(format!("(\"{node}.{port}\", \"output\")"));
        }
    }
    edges.sort();
    edges.dedup();
    graph("channels: 2", &nodes.join(", "), &edges.join(", "))
}

#[test]
fn random_graphs_with_ports_give_the_reference_bits_on_every_executor_block_and_batch() {
    let input = demo(1.0);
    for seed in 1..=12u64 {
        let src = random_graph(seed * 7919, 6 + (seed as usize % 7));
        let reference = bits(&run(&src, input.clone(), 512, 1, Parallelism::Adaptive));
        assert!(reference.iter().flatten().any(|&b| b != 0), "seed {seed}: silent\n{src}");
        for (threads, block, batch, p) in [
            (1, 37, 1, Parallelism::Adaptive),
            (2, 64, 1, Parallelism::Always),
            (2, 333, 1, Parallelism::Always),
            (2, 512, 1, Parallelism::Always),
            (2, 512, 8, Parallelism::Always),
            (3, 100, 13, Parallelism::Always),
        ] {
            let out = bits(&run_batched(&src, input.clone(), block, batch, threads, p));
            assert!(out == reference, "seed {seed}: {threads} threads, block {block}, batch {batch} differ\n{src}");
        }
    }
}

/// The magnitude in dB of a biquad `(b, a)` at `f` for a rate `sr`: `|B(e^jw) / A(e^jw)|`.
fn biquad_db((b, a): ([f64; 3], [f64; 3]), f: f64, sr: f64) -> f64 {
    let w = TAU * f / sr;
    let eval = |c: [f64; 3]| {
        let re = c[0] + c[1] * w.cos() + c[2] * (2.0 * w).cos();
        let im = -(c[1] * w.sin() + c[2] * (2.0 * w).sin());
        re.hypot(im)
    };
    20.0 * (eval(b) / eval(a)).log10()
}

/// The response of `h` (an impulse response at `sr`) at `f`, in dB.
fn response_db_at(h: &[f32], f: f64, sr: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &v) in h.iter().enumerate() {
        let (s, c) = (TAU * f * n as f64 / sr).sin_cos();
        re += f64::from(v) * c;
        im -= f64::from(v) * s;
    }
    10.0 * (re * re + im * im).log10()
}

#[test]
fn a_graph_without_a_rate_is_prepared_at_any_and_each_node_answers_for_that_rate() {
    // No `sample_rate`: the engine prepares it at the rate asked for, and the cookbook's filters and the
    // crossover's LR4 bands follow that rate.
    let src = r#"(channels: 1, outputs: {"low": 1, "high": 1},
        nodes: {
            "eq": Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 6.0, q: 1.0), (kind: HighShelf, freq_hz: 5000.0, gain_db: -4.0, q: 0.7)]),
            "x": Crossover(freqs_hz: [3000.0]),
        },
        edges: [("input", "eq"), ("eq", "x"), ("x.band0", "output.low"), ("x.band1", "output.high")])"#;
    let graph = parse(src);
    assert!(!graph.rate_given);
    for sr in [44100u32, 48000, 96000] {
        let options = EngineOptions { sample_rate: Some(sr), max_block: 256, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(graph.clone(), options).expect("starts");
        assert_eq!(engine.format().sample_rate, sr);
        let mut impulse = vec![0.0f32; 1 << 15];
        impulse[0] = 1.0;
        let mut sink = MemorySink::default();
        render(&mut engine, &mut audio, &mut MemorySource::new(vec![impulse]), &mut sink, 256, &mut |_| true)
            .expect("render");
        let srf = f64::from(sr);
        let sum: Vec<f32> = sink.channels[0].iter().zip(&sink.channels[1]).map(|(a, b)| a + b).collect();
        for f in [50.0, 300.0, 1000.0, 2500.0, 5000.0, 12000.0, 20000.0] {
            let eq = biquad_db(cookbook_coeffs("Peak", 1000.0, 6.0, 1.0, srf), f, srf)
                + biquad_db(cookbook_coeffs("HighShelf", 5000.0, -4.0, 0.7, srf), f, srf);
            // The bands sum to an all-pass: the sum is the Eq's response.
            let got = response_db_at(&sum, f, srf);
            assert!((got - eq).abs() < 0.01, "{sr} Hz: {got:.4} dB at {f} Hz, the cookbook's {eq:.4}");
            let r = ((std::f64::consts::PI * f / srf).tan() / (std::f64::consts::PI * 3000.0 / srf).tan()).powi(4);
            let low = eq + 20.0 * (1.0 / (1.0 + r)).log10();
            if low > -60.0 {
                let got = response_db_at(&sink.channels[0], f, srf);
                assert!((got - low).abs() < 0.01, "{sr} Hz: low band {got:.4} dB at {f} Hz, want {low:.4}");
            }
        }
    }
    // A frequency is checked against the Nyquist frequency of the rate the graph is prepared at.
    let high = r#"(channels: 1, nodes: { "lp": Eq(bands: [(kind: LowPass, freq_hz: 30000.0, q: 0.7071)]) },
        edges: [("input", "lp"), ("lp", "output")])"#;
    let at_96k = high.replace("(channels: 1", "(sample_rate: 96000, channels: 1");
    let g = parse(&at_96k);
    assert_eq!(g.format.sample_rate, 96000);
    let err = g.at_rate(48000).expect_err("30 kHz is above Nyquist at 48 kHz");
    assert!(err.to_string().contains("below the Nyquist frequency, 24000 Hz at 48000 Hz"), "{err}");
    assert_eq!(err.node.as_deref(), Some("lp"));
    let (line, col) = err.position.expect("located");
    let line_text = at_96k.lines().nth(line - 1).expect("line");
    assert!(line_text[col - 1..].starts_with("freq_hz: 30000.0"), "{err}");
    assert!(Graph::parse(high, "g.ron", ".".as_ref()).is_err(), "validated at 48 kHz until prepared at another rate");
    assert!(g.at_rate(96000).is_ok() && g.at_rate(192000).is_ok());
}

#[test]
fn a_keyed_limiter_applies_the_gain_that_holds_the_key_under_its_ceiling() {
    // Ceiling -6 dBFS (0.5). The key is at 1.0 for the first half second, then at 0.1; the music at 0.8.
    let src = graph(
        r#"inputs: {"music": 1, "key": 1}, outputs: {"main": 1}"#,
        r#""lim": Limiter(ceiling_db: -6.020599913279624, lookahead_ms: 2.0, release_ms: 10.0)"#,
        r#"("input.music", "lim"), ("input.key", "lim.sidechain"), ("lim", "output")"#,
    );
    let mut key = alternating(1.0, 24000);
    key.extend(alternating(0.1, 24000));
    let y = run(&src, vec![alternating(0.8, 48000), key], 256, 1, Parallelism::Adaptive);
    // Latency compensated: frame n of the output is frame n of the input.
    let gain = |n: usize| f64::from(y[0][n].abs()) / 0.8;
    assert!((gain(12000) - 0.5).abs() < 1e-4, "the key at 1.0 under a 0.5 ceiling: gain {}", gain(12000));
    assert!((gain(47999) - 1.0).abs() < 1e-4, "the key under the ceiling: gain {}", gain(47999));
    assert!(y[0].iter().any(|v| v.abs() > 0.5), "the music itself is not clamped to the key's ceiling");
}

#[test]
fn a_sidechain_path_with_latency_is_lined_up_with_the_signal_it_keys() {
    // The key passes a limiter (5 ms lookahead, transparent below its ceiling) on its way to the
    // sidechain; the music goes straight in. The music is delayed to match, so the compressor (instant
    // attack) reduces the music from the very frame the key starts, in the compensated output.
    let src = graph(
        r#"inputs: {"music": 1, "key": 1}, outputs: {"main": 1}"#,
        r#""late": Limiter(ceiling_db: 0.0, lookahead_ms: 5.0, release_ms: 50.0),
           "duck": Compressor(threshold_db: -30.0, ratio: 10.0, attack_ms: 0.0, release_ms: 1000.0, knee_db: 0.0, makeup_db: 0.0)"#,
        r#"("input.music", "duck"), ("input.key", "late"), ("late", "duck.sidechain"), ("duck", "output")"#,
    );
    let (engine, _audio) = super::engine(&src, 256, 1, Parallelism::Adaptive);
    assert_eq!(engine.latency_frames(), 240, "the limiter's lookahead is the graph's latency");
    let mut key = vec![0.0f32; 24000];
    key.extend(alternating(0.5, 24000));
    let y = run(&src, vec![alternating(0.1, 48000), key], 256, 1, Parallelism::Adaptive);
    assert_eq!(y[0][23999].abs(), 0.1, "untouched before the key");
    assert!(y[0][24000].abs() < 0.05, "reduced from the key's first frame: {}", y[0][24000]);
}

#[test]
fn a_node_whose_first_input_and_output_differ_in_width_cannot_be_bypassed() {
    let src = graph(
        r#"inputs: {"surround": 6}, outputs: {"stereo": 2}"#,
        r#""fold": Mixer(gains: [[1.0, 0.0, 0.7, 0.0, 0.7, 0.0], [0.0, 1.0, 0.7, 0.0, 0.0, 0.7]]), "g": Gain(gain_db: -6.0)"#,
        r#"("input", "fold"), ("fold", "g"), ("g", "output")"#,
    );
    let (mut engine, _audio) = super::engine(&src, 256, 1, Parallelism::Adaptive);
    let e = engine.bypass("fold", true).expect_err("6 channels cannot stand in for 2").to_string();
    assert!(e.contains("its first input has 6 channels and its first output 2"), "{e}");
    engine.bypass("g", true).expect("a gain can be bypassed");
}
