//! Loudness on the audio side: the monitor's meter against an independent one (libebur128's port, the
//! `ebur128` crate), and the true-peak limiter's output read by that independent true-peak meter.

use super::*;

/// Deterministic white noise in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Two channels of the demo music, `seconds` long, times `gain`.
fn music(seconds: f64, gain: f32) -> Vec<Vec<f32>> {
    let frames = (seconds * SR) as usize;
    let mut demo = DemoSignal::new(48000, 2, seconds);
    let mut planar = vec![0f32; 2 * frames];
    demo.fill(&mut AudioOut::new(&mut planar, frames, 2, frames));
    planar.chunks(frames).map(|c| c.iter().map(|v| v * gain).collect()).collect()
}

/// The independent meter over planar channels.
fn reference(x: &[Vec<f32>]) -> ebur128::EbuR128 {
    use ebur128::Mode;
    let mode = Mode::I | Mode::M | Mode::S | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK;
    let mut m = ebur128::EbuR128::new(x.len() as u32, 48000, mode).expect("a meter");
    let planes: Vec<&[f32]> = x.iter().map(|c| &c[..]).collect();
    m.add_frames_planar_f32(&planes).expect("frames");
    m
}

fn true_peak_dbtp(m: &ebur128::EbuR128, channels: usize) -> f64 {
    let peak = (0..channels as u32).map(|c| m.true_peak(c).expect("a channel")).fold(0.0, f64::max);
    20.0 * peak.log10()
}

fn limiter(true_peak: bool) -> String {
    single_node(2, &format!("Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0, true_peak: {true_peak})"))
}

#[test]
fn a_true_peak_limiter_holds_its_ceiling_as_an_independent_true_peak_meter_reads_it() {
    // Music pushed 6, 12 and 20 dB into the limiter, white noise (which reaches the Nyquist frequency),
    // and noise whose level jumps, so that the gain moves fast.
    let jumpy = |seed: u64| -> Vec<f32> {
        let x = noise(seed, 10 * 48000);
        x.iter().enumerate().map(|(i, v)| v * [0.3, 4.0, 1.0, 8.0][(i / 7000) % 4]).collect()
    };
    let signals: Vec<(&str, Vec<Vec<f32>>)> = vec![
        ("music +6 dB", music(10.0, 2.0)),
        ("music +12 dB", music(10.0, 4.0)),
        ("music +20 dB", music(10.0, 10.0)),
        ("white noise", vec![noise(1, 10 * 48000).iter().map(|v| v * 3.0).collect(), noise(2, 10 * 48000)]),
        ("jumping noise", vec![jumpy(3), jumpy(4)]),
    ];
    for (what, x) in signals {
        let y = run(&limiter(true), x.clone(), 256, 1, Parallelism::Adaptive);
        let tp = true_peak_dbtp(&reference(&y), 2);
        assert!(tp <= -1.0, "{what}: the output reads {tp:.3} dBTP, over the -1 dBTP ceiling");
        // It limits no more than it must: within the margin (0.2 dB) and a little of the ceiling.
        assert!(tp > -1.5, "{what}: the output reads {tp:.3} dBTP");
        // Every sample too.
        let peak = y.iter().flatten().fold(0f32, |p, v| p.max(v.abs()));
        assert!(peak <= 10f32.powf(-1.0 / 20.0), "{what}: a sample at {peak}");
        // The same limiter holding sample peaks only lets the meter read over the ceiling: the test can
        // tell them apart.
        if what.starts_with("music +12") {
            let sample_only = run(&limiter(false), x, 256, 1, Parallelism::Adaptive);
            let over = true_peak_dbtp(&reference(&sample_only), 2);
            assert!(over > -0.5, "{what}: a sample-peak limiter's output reads {over:.3} dBTP");
        }
    }
}

#[test]
fn a_true_peak_limiter_reports_its_latency_and_takes_no_sidechain() {
    let (engine, _audio) = engine(&limiter(true), 256, 1, Parallelism::Adaptive);
    assert_eq!(
        engine.latency_frames(),
        240 + fxgraph::dsp::limiter::TRUE_PEAK_DELAY,
        "5 ms of lookahead and the detector"
    );
    // The render compensates it: an impulse under the ceiling comes out where it went in.
    let mut x = vec![0f32; 4800];
    x[1000] = 0.5;
    let y = run(&limiter(true), vec![x.clone(), x], 256, 1, Parallelism::Adaptive);
    let at = y[0].iter().position(|v| v.abs() > 0.25).expect("the impulse");
    assert_eq!(at, 1000);
    let keyed = r#"(sample_rate: 48000, inputs: {"main": 2, "key": 2}, outputs: {"main": 2}, nodes: {
        "l": Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0, true_peak: true) },
        edges: [("input.main", "l"), ("input.key", "l.sidechain"), ("l", "output")])"#;
    let err = Engine::new(parse(keyed), EngineOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("sidechain"), "{err}");
}

#[test]
fn the_monitor_measures_loudness_at_the_output_as_an_independent_meter_does() {
    let src = "(sample_rate: 48000, channels: 2, nodes: { \"g\": Gain(gain_db: -6.0) }, \
               edges: [(\"input\", \"g\"), (\"g\", \"output\")])";
    let x = music(20.0, 1.0);
    for loudness in [fxgraph::LoudnessMetering::Loudness, fxgraph::LoudnessMetering::WithTruePeak] {
        let options = EngineOptions { max_block: 512, realtime: false, loudness, ..Default::default() };
        let (mut engine, mut audio) = Engine::new(parse(src), options).expect("starts");
        engine.meter_node("g").expect("metered");
        let mut sink = MemorySink::default();
        render(&mut engine, &mut audio, &mut MemorySource::new(x.clone()), &mut sink, 512, &mut |_| true)
            .expect("render");
        let report = engine.metrics();
        let reference = reference(&sink.channels);
        for (what, levels) in
            [("output", Some(&report.output)), ("node", report.nodes.iter().find_map(|n| n.levels.as_ref()))]
        {
            let got = levels.and_then(|l| l.loudness).unwrap_or_else(|| panic!("{what}: no loudness"));
            let near = |a: Option<f64>, b: f64, tol: f64, name: &str| {
                let a = a.unwrap_or_else(|| panic!("{what}: no {name}"));
                assert!((a - b).abs() <= tol, "{what} ({loudness:?}): {name} {a:.3}, the reference {b:.3}");
            };
            near(got.integrated_lufs, reference.loudness_global().unwrap(), 0.02, "integrated");
            near(got.short_term_lufs, reference.loudness_shortterm().unwrap(), 1e-6, "short-term");
            near(got.momentary_lufs, reference.loudness_momentary().unwrap(), 1e-6, "momentary");
            match loudness {
                fxgraph::LoudnessMetering::WithTruePeak => {
                    near(got.true_peak_dbtp, true_peak_dbtp(&reference, 2), 0.15, "true peak")
                }
                _ => assert_eq!(got.true_peak_dbtp, None),
            }
        }
    }
    // Off (the default), nothing is measured.
    let (mut engine, _audio) = engine(src, 512, 1, Parallelism::Adaptive);
    assert!(engine.metrics().output.loudness.is_none());
}
