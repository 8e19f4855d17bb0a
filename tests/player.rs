//! `fxgraph play` and presets: a scripted headless session (sets, loads, a preset, bypass, seek, pause,
//! status) checked for answers, underruns, callback allocations and clicks in the recording; located
//! preset errors; the library's player API; and, with the `device` feature, the cpal path on ALSA.

use fxgraph::graph::preset::Preset;
use fxgraph::io::stream::MemorySource;
use fxgraph::play::{DeviceChoice, Player, PlayerOptions};
use fxgraph::{Engine, EngineOptions, Graph, ParamValue};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[global_allocator]
static ALLOC: fxgraph::alloc::CountingAllocator = fxgraph::alloc::CountingAllocator;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A stereo sine as a 32-bit float WAV.
fn sine_wav(path: &Path, rate: u32, hz: f64, amplitude: f64, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for n in 0..(seconds * f64::from(rate)) as u64 {
        let v = (amplitude * (std::f64::consts::TAU * hz * n as f64 / f64::from(rate)).sin()) as f32;
        w.write_sample(v).expect("write");
        w.write_sample(v).expect("write");
    }
    w.finalize().expect("finalize");
}

fn read_interleaved(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path).expect("recording is a WAV file");
    let rate = r.spec().sample_rate;
    (rate, r.samples::<f32>().map(|s| s.expect("sample")).collect())
}

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

/// The enhancer and its presets in a scratch folder, with two variants to load: one with other
/// parameters, one with another node (a structural change).
fn scratch_enhancer(dir: &Path) {
    let text = std::fs::read_to_string(repo().join("graphs/enhancer.ron")).expect("enhancer.ron");
    std::fs::write(dir.join("enhancer.ron"), &text).expect("write");
    std::fs::create_dir_all(dir.join("presets")).expect("presets dir");
    for name in ["warm", "bright", "loudness", "night"] {
        std::fs::copy(repo().join(format!("graphs/presets/{name}.ron")), dir.join(format!("presets/{name}.ron")))
            .expect("copy preset");
    }
    let params = text.replace("threshold_db: -16.0", "threshold_db: -22.0").replace("width: 1.25", "width: 0.9");
    assert_ne!(params, text);
    std::fs::write(dir.join("params.ron"), params).expect("write");
    let structural = text
        .replace(r#""trim": Gain(gain_db: -1.0),"#, r#""trim": Gain(gain_db: -1.0), "extra": Gain(gain_db: -2.0),"#)
        .replace(r#"("trim", "limiter"),"#, r#"("trim", "extra"), ("extra", "limiter"),"#);
    assert_ne!(structural, text);
    std::fs::write(dir.join("structural.ron"), structural).expect("write");
}

/// Starts `fxgraph play` as set up in `command`, with stdin, stdout and stderr piped (a session driven as a
/// player drives it).
fn play_piped(command: &mut Command) -> std::process::Child {
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start fxgraph play")
}

#[test]
fn a_scripted_headless_session_is_answered_without_underruns_allocations_or_clicks() {
    let dir = tempfile::tempdir().expect("tempdir");
    scratch_enhancer(dir.path());
    // 48 kHz input into the 44.1 kHz graph: resampled, not refused.
    sine_wav(&dir.path().join("sine.wav"), 48000, 100.0, 0.3, 12.0);
    let record = dir.path().join("played.wav");
    let mut child = play_piped(
        Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["play", "enhancer.ron", "sine.wav", "--device", "null", "--buffer", "256", "--record", "played.wav"])
            .current_dir(dir.path()),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let answers = std::thread::spawn(move || stdout.lines().map(|l| l.expect("line")).collect::<Vec<String>>());

    // Gentle moves, as a listener makes them (the click bound below is about the edits, not about
    // distortion from extreme settings).
    let sets: Vec<String> = (0..20)
        .map(|i| {
            let x = f64::from(i) / 19.0;
            match i % 5 {
                0 => format!("set compressor.threshold_db {}", -10.0 - 14.0 * x),
                1 => format!("set eq.bands[1].gain_db {}", -4.0 + 8.0 * x),
                2 => format!("set bass.gain_db {}", 6.0 * x),
                3 => format!("set width.width {}", 0.5 + x),
                _ => format!("set eq.bands[2].freq_hz {}", 2000.0 + 3000.0 * x),
            }
        })
        .collect();
    let mut script: Vec<String> = Vec::new();
    script.extend(sets[..10].iter().cloned());
    script.push("preset warm".into());
    script.push("bypass width on".into());
    script.push("seek 3.5".into());
    script.extend(sets[10..].iter().cloned());
    script.push("load params.ron".into());
    script.push("pause".into());
    script.push("resume".into());
    script.push("load structural.ron".into());
    script.push("bypass width off".into());
    script.push("load enhancer.ron".into());
    script.push("status".into());
    script.push("quit".into());
    // A command every 150 ms: about 6 s of playing.
    std::thread::sleep(Duration::from_millis(300));
    for line in &script {
        writeln!(stdin, "{line}").expect("write command");
        stdin.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(150));
    }
    let status = child.wait().expect("fxgraph play ends");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    let answers = answers.join().expect("reader");
    assert!(status.success(), "{err}");
    assert!(err.contains("resampled"), "the 48 kHz input is resampled to 44.1 kHz: {err}");

    // Every command answered, in order, each with ok.
    assert_eq!(answers.len(), script.len(), "{answers:#?}\n{err}");
    for (command, answer) in script.iter().zip(&answers) {
        assert!(answer.starts_with("ok"), "{command} -> {answer}");
    }
    assert!(answers[10].starts_with("ok preset warm (15 values)"), "{}", answers[10]);
    let status_line = &answers[script.len() - 2];
    let json: serde_json::Value =
        serde_json::from_str(status_line.strip_prefix("ok ").expect("status")).expect("status is JSON");
    assert_eq!(json["underruns"], 0, "{status_line}");
    assert_eq!(json["callback_allocations"], 0, "{status_line}");
    assert_eq!(json["audio_allocations"], 0, "{status_line}");
    assert_eq!(json["record_dropped_frames"], 0, "{status_line}");
    assert!(json["callbacks"].as_u64().expect("callbacks") > 500, "{status_line}");
    assert_eq!(json["device"], "null");
    // The output's loudness as it plays: finite, and the true peak at least the momentary loudness's
    // worth of signal (a loud sine: some tens of LUFS, a peak near full scale).
    for key in ["momentary_lufs", "short_term_lufs", "integrated_lufs", "true_peak_dbtp"] {
        let v = json[key].as_f64().unwrap_or_else(|| panic!("{key}: {status_line}"));
        assert!((-70.0..=6.0).contains(&v), "{key} {v}: {status_line}");
    }
    let nodes = json["nodes"].as_array().expect("nodes");
    assert!(nodes.iter().any(|n| n["name"] == "extra") || nodes.len() == 7, "{status_line}");
    assert!(nodes.iter().all(|n| n["mean_us"].as_f64().is_some_and(|t| t > 0.0)), "{status_line}");
    let position = json["position_s"].as_f64().expect("position");
    assert!(position > 3.5 && position < 12.0, "{position}");

    // The recording: what the device got, at the graph's rate, with no click. A 100 Hz sine of peak P
    // moves at most 2*pi*100/44100*P per sample; smoothing, crossfades and the declick ramps (256 frames)
    // add a little: half as much again, plus 0.004, is the bound. A click is a jump of a good part of
    // the level (tenths).
    let (rate, rec) = read_interleaved(&record);
    assert_eq!(rate, 44100);
    let seconds = rec.len() as f64 / 2.0 / 44100.0;
    assert!(seconds > 4.0, "{seconds} s recorded");
    let peak = rec.iter().fold(0.0f32, |p, v| p.max(v.abs()));
    assert!(peak > 0.2 && peak <= 1.0, "peak {peak}");
    let bound = 1.5 * (std::f32::consts::TAU * 100.0 / 44100.0) * peak + 0.004;
    let (step, at) = largest_step(&rec);
    eprintln!("largest step {step} at {:.3} s of {seconds:.2} s (bound {bound})", at as f64 / 44100.0);
    assert!(step < bound, "a step of {step} at {:.3} s", at as f64 / 44100.0);
    // The detector sees a click: a 10 ms gap cut into the recording.
    let mut clicked = rec.clone();
    let loud = (0..rec.len() / 2).find(|&i| rec[2 * i].abs() > 0.2).expect("signal");
    clicked[2 * loud..2 * (loud + 441)].fill(0.0);
    assert!(largest_step(&clicked).0 > bound);
}

/// A stall of the whole process (SIGSTOP here; a virtual machine whose CPU is taken away, in the wild)
/// stops the device's thread as well as the renderer: a card would report an xrun, and the null device
/// does the same instead of asking for the lost time back to back (which drained the ring and was counted
/// as the renderer's underrun).
#[test]
fn a_stalled_process_is_a_device_xrun_not_an_underrun() {
    let dir = tempfile::tempdir().expect("tempdir");
    scratch_enhancer(dir.path());
    sine_wav(&dir.path().join("sine.wav"), 44100, 100.0, 0.3, 6.0);
    let mut child = play_piped(
        Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["play", "enhancer.ron", "sine.wav", "--device", "null", "--buffer", "256", "--json"])
            .current_dir(dir.path()),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let answers = std::thread::spawn(move || stdout.lines().map(|l| l.expect("line")).collect::<Vec<String>>());
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    #[allow(unsafe_code, reason = "kill(2): stopping and continuing the child is the test")]
    let signal = |sig: libc::c_int| {
        // SAFETY: kill(2) with the pid of the child this test started and still waits for.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {sig}");
    };
    std::thread::sleep(Duration::from_millis(500));
    // 300 ms stopped: 52 callbacks of 256 frames, against a ring of 2048 frames (46 ms).
    signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    for line in ["status", "quit"] {
        writeln!(stdin, "{line}").expect("write command");
        stdin.flush().expect("flush");
    }
    assert!(child.wait().expect("fxgraph play ends").success());
    let answers = answers.join().expect("reader");
    let answer: serde_json::Value = serde_json::from_str(&answers[0]).expect("status is JSON");
    assert_eq!(answer["ok"], true, "{answer}");
    let status = &answer["status"];
    assert_eq!(status["underruns"], 0, "{status}");
    assert!(status["device_xruns"].as_u64().expect("device_xruns") >= 1, "{status}");
}

/// docs/PROTOCOL.md's `--json` mode: one JSON object a command, answers in order, errors as `"ok": false`
/// with the message, and the protocol's version.
#[test]
fn the_json_protocol_answers_every_command_with_one_object() {
    let script = [
        "version",
        "set comp.threshold_db -20",
        "get comp.threshold_db",
        "set comp.volume 1",
        "set comp.threshold_db loud",
        "nodes",
        "params limiter",
        "presets",
        "bypass eq on",
        "frobnicate",
        "status",
        "quit",
    ];
    let mut child = play_piped(
        Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["play", "graphs/chain.ron", "--device", "null", "--json"])
            .current_dir(repo()),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    for line in script {
        if line == "status" {
            // Time for the device's first callbacks (the answer is checked either way).
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        writeln!(stdin, "{line}").expect("write command");
    }
    let out = child.wait_with_output().expect("fxgraph play ends");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l}: {e}")))
        .collect();
    assert_eq!(answers.len(), script.len(), "{answers:#?}");
    for (line, answer) in script.iter().zip(&answers) {
        let verb = line.split(' ').next().unwrap();
        assert_eq!(answer["command"], verb, "{answer}");
        let failing = matches!(*line, "set comp.volume 1" | "set comp.threshold_db loud" | "frobnicate");
        assert_eq!(answer["ok"], !failing, "{line} -> {answer}");
        if failing {
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
        }
    }
    assert_eq!(answers[0]["protocol"], 1);
    assert_eq!(answers[2]["value"], -20.0);
    assert!(answers[3]["error"].as_str().unwrap().contains("no parameter `volume`"));
    assert_eq!(answers[5]["nodes"], serde_json::json!(["eq", "comp", "limiter"]));
    assert_eq!(answers[6]["params"][0]["name"], "ceiling_db");
    assert_eq!(answers[8]["bypass"], true);
    // No allocation in a callback; before the first callback (a slow start on a busy machine) the count is
    // not known yet, and says so.
    let status = &answers[10]["status"];
    match status["callbacks"].as_u64() {
        Some(0) => assert!(status["callback_allocations"].is_null(), "{status}"),
        _ => assert_eq!(status["callback_allocations"], 0, "{status}"),
    }
}

#[test]
fn play_refuses_what_it_cannot_play_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    scratch_enhancer(dir.path());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run fxgraph")
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // A device that does not exist (or no device support at all): a clear message, exit 2.
    let o = run(&["play", "enhancer.ron", "--device", "no-such-card-anywhere", "--seconds", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--device null") || text(&o).contains("--list-devices"), "{}", text(&o));
    // A missing input, a broken graph, a bad preset, a bad buffer.
    let o = run(&["play", "enhancer.ron", "missing.flac", "--device", "null"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing.flac"), "{}", text(&o));
    std::fs::write(dir.path().join("broken.ron"), "(sample_rate: 44100, channels: 2, nodes: {,}, edges: [])")
        .expect("w");
    let o = run(&["play", "broken.ron", "--device", "null"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("broken.ron:1:"), "{}", text(&o));
    std::fs::write(
        dir.path().join("presets/bad.ron"),
        "(\n    values: {\n        \"compressor.ratio\": 2.0,\n        \"compressor.threshold_db\": 12.0,\n    },\n)\n",
    )
    .expect("w");
    let o = run(&["play", "enhancer.ron", "--device", "null", "--preset", "bad"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("presets/bad.ron:4:9: node \"compressor\": `threshold_db` must be between"),
        "{}",
        text(&o)
    );
    let o = run(&["play", "enhancer.ron", "--device", "null", "--buffer", "8"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Stdin closed at once: plays the (short) input to its end and exits 0.
    let o = run(&["play", "enhancer.ron", "--device", "null", "--seconds", "0.5", "--buffer", "128"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("played to 0.50 s: 0 underruns"), "{}", text(&o));
}

#[test]
fn presets_are_checked_whole_and_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    scratch_enhancer(dir.path());
    let graph = Graph::load(&dir.path().join("enhancer.ron")).expect("graph");
    let (mut engine, _audio) = Engine::new(graph, EngineOptions::default()).expect("engine");
    let cases = [
        (
            "\"eq.bands[1].gain_db\": 1.0,\n        \"nosuch.gain_db\": 1.0,",
            "p.ron:4:9: \"nosuch.gain_db\" names no node",
        ),
        (
            "\"eq.bands[1].gain_db\": 1.0,\n        \"bass.nope\": 1.0,",
            "p.ron:4:9: node \"bass\": has no parameter `nope`",
        ),
        (
            "\"eq.bands[1].gain_db\": 1.0,\n        \"bass.gain_db\": 99.0,",
            "p.ron:4:9: node \"bass\": `gain_db` must be between",
        ),
        (
            "\"eq.bands[1].gain_db\": 1.0,\n        \"bass.gain_db\": \"loud\",",
            "p.ron:4:9: node \"bass\": `gain_db` must be a number",
        ),
    ];
    for (values, expected) in cases {
        let text = format!("(\n    values: {{\n        {values}\n    }},\n)\n");
        let preset = Preset::parse(&text, "p.ron").expect("parses");
        let e = engine.apply_preset_values(&preset).expect_err("refused").to_string();
        assert!(e.starts_with(expected), "{e}\nwanted: {expected}");
        // Nothing was applied: the valid first value did not land either.
        assert_eq!(engine.get("eq", "bands[1].gain_db").expect("known"), ParamValue::Number(-2.0));
    }
    let other = Preset::parse("(graph: \"other.ron\", values: {})", "q.ron").expect("parses");
    let e = engine.apply_preset_values(&other).expect_err("wrong graph").to_string();
    assert!(e.starts_with("q.ron:1:2: this preset is for other.ron"), "{e}");

    // Every shipped preset fits the enhancer and lands whole; saving writes the running values back.
    for name in ["warm", "bright", "loudness", "night"] {
        let preset = Preset::load(&repo().join(format!("graphs/presets/{name}.ron"))).expect("shipped preset");
        assert_eq!(engine.apply_preset_values(&preset).expect("fits"), preset.entries.len());
        for e in &preset.entries {
            let (node, param) = engine.split_key(&e.key).expect("key");
            assert_eq!(engine.get(node, param).expect("value"), e.value, "{name}: {}", e.key);
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["preset", "save", "enhancer.ron", "mine", "--set", "bass.gain_db=4.5"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let saved = Preset::load(&dir.path().join("presets/mine.ron")).expect("saved preset parses");
    assert_eq!(saved.graph.as_deref(), Some("enhancer.ron"));
    let bass = saved.entries.iter().find(|e| e.key == "bass.gain_db").expect("bass");
    assert_eq!(bass.value, ParamValue::Number(4.5));
    // 24 of the nodes' own, and the Eq's gain before its bands (`eq.gain_db`).
    assert_eq!(saved.entries.len(), 25, "every automatable parameter of the enhancer");
    assert!(saved.entries.iter().any(|e| e.key == "eq.gain_db"), "the Eq's gain is saved");
    // Saving again does not overwrite.
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["preset", "save", "enhancer.ron", "mine"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let list = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["preset", "list", "enhancer.ron"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && out.contains("mine: 25 values") && out.contains("night: 15 values"), "{out}");
}

#[test]
fn the_player_api_plays_a_source_to_its_end_on_the_null_device() {
    let text = "(sample_rate: 48000, channels: 2, nodes: { \"g\": Gain(gain_db: -6.0) }, \
                edges: [(\"input\", \"g\"), (\"g\", \"output\")])";
    let graph = Graph::parse(text, "t.ron", ".".as_ref()).expect("graph");
    let (engine, audio) = Engine::new(graph, EngineOptions { threads: 1, ..Default::default() }).expect("engine");
    let frames = 24000;
    let ramp: Vec<f32> = (0..frames).map(|i| (i as f32 / frames as f32) * 0.5).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("rec.wav");
    let mut player = Player::start(
        engine,
        audio,
        Box::new(MemorySource::new(vec![ramp.clone(), ramp.clone()])),
        PlayerOptions {
            device: DeviceChoice::Null,
            buffer_frames: 480,
            ahead_frames: None,
            looping: false,
            record: Some(record.clone()),
        },
    )
    .expect("player starts");
    let started = std::time::Instant::now();
    while !player.is_finished() {
        player.update().expect("plays");
        assert!(started.elapsed() < Duration::from_secs(10), "half a second of audio never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, path) = player.finish().expect("finishes");
    assert_eq!(status.underruns, 0);
    assert_eq!(status.callback_allocations, Some(0));
    assert_eq!(status.state, "ended");
    assert!((status.position_s - 0.5).abs() < 1e-9, "{}", status.position_s);
    // The recording is the source at -6 dB, after the 256-frame fade-in, then silence to the last callback.
    let (_, rec) = read_interleaved(&path.expect("recorded"));
    let gain = 10f32.powf(-6.0 / 20.0);
    for i in 256..frames {
        let want = ramp[i] * gain;
        assert!((rec[2 * i] - want).abs() < 1e-6 && (rec[2 * i + 1] - want).abs() < 1e-6, "frame {i}");
    }
    assert!(rec[2 * frames..].iter().all(|v| *v == 0.0));
}

#[cfg(feature = "wasm")]
#[test]
fn a_plugin_that_spins_in_play_is_stopped_bypassed_and_reported() {
    // A plugin whose process never returns, on the null device (real time): each block it is given is
    // stopped at its deadline and bypassed dry; after five faults it stays bypassed, and playback goes on.
    let dir = tempfile::tempdir().expect("tempdir");
    let module = r#"(module
      (memory (export "memory") 2)
      (data (i32.const 16) "\00\04\00\00\00\20\00\00")
      (func (export "fxg_abi_version") (result i32) (i32.const 1))
      (func (export "fxg_set_param") (param i32 f32) (result i32) (i32.const 0))
      (func (export "fxg_initialize") (param i32 i32 i32) (result i32) (i32.const 0))
      (func (export "fxg_buffers") (result i32) (i32.const 16))
      (func (export "fxg_start"))
      (func (export "fxg_process") (param $n i32) (result i32) (loop $l (br $l)) (i32.const 0))
      (func (export "fxg_stop"))
      (func (export "fxg_cleanup")))"#;
    std::fs::write(dir.path().join("spin.wasm"), wat::parse_str(module).expect("module")).expect("write");
    std::fs::write(
        dir.path().join("spin.json"),
        r#"{"id": "test.spin", "name": "Spin", "version": "0.0.1", "abi_version": 1,
            "memory_limit_bytes": 1048576, "block_budget_us": 500, "parameters": []}"#,
    )
    .expect("write");
    let text = "(sample_rate: 48000, channels: 2, nodes: { \"spin\": Wasm(path: \"spin.wasm\") }, \
                edges: [(\"input\", \"spin\"), (\"spin\", \"output\")])";
    let graph = Graph::parse(text, "t.ron", dir.path()).expect("graph");
    let (mut engine, audio) = Engine::new(graph, EngineOptions { threads: 1, ..Default::default() }).expect("engine");
    // Subscribed before playback starts: the first block is processed while the player starts.
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
    let frames = 48000;
    let tone: Vec<f32> = (0..frames).map(|i| (i as f32 * 0.05).sin() * 0.25).collect();
    let mut player = Player::start(
        engine,
        audio,
        Box::new(MemorySource::new(vec![tone.clone(), tone])),
        PlayerOptions {
            device: DeviceChoice::Null,
            buffer_frames: 480,
            ahead_frames: None,
            looping: false,
            record: None,
        },
    )
    .expect("player starts");
    let started = std::time::Instant::now();
    while !player.is_finished() {
        player.update().expect("plays");
        assert!(started.elapsed() < Duration::from_secs(20), "a second of audio never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _) = player.finish().expect("finishes");
    assert_eq!(status.state, "ended");
    let node = &status.nodes[0];
    assert_eq!(node.faults, 5, "{node:?}");
    assert!(node.bypassed_blocks >= 5, "{node:?}");
    let events = events.lock().expect("lock").clone();
    let faults = events.iter().filter(|e| e.contains("Trap: wasm trap: interrupt")).count();
    assert_eq!(faults, 5, "{events:?}");
    assert!(events.iter().any(|e| e.contains("bypassed for good")), "{events:?}");
}

/// With the `device` feature: the cpal path on a real ALSA device (the `file` plugin over `null`, which
/// takes samples as fast as they come and writes them to a file).
#[cfg(feature = "device")]
#[test]
fn the_cpal_path_plays_on_an_alsa_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("alsa.raw");
    std::fs::write(
        dir.path().join(".asoundrc"),
        format!("pcm.!default {{\n type file\n slave.pcm \"null\"\n file \"{}\"\n format \"raw\"\n}}\n", raw.display()),
    )
    .expect("asoundrc");
    let list = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["play", "--list-devices"])
        .env("HOME", dir.path())
        .output()
        .expect("run");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && listed.contains("(default)"), "{listed}");
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args([
            "play",
            &repo().join("graphs/enhancer.ron").display().to_string(),
            "--seconds",
            "1",
            "--device",
            "default",
        ])
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("played to 1.00 s") && err.contains("0 allocations in the callback"), "{err}");
    let bytes = std::fs::read(&raw).expect("ALSA wrote the stream");
    assert!(bytes.iter().any(|b| *b != 0), "the device got sound");
}

/// With the `device` feature: a device that fails while playing (ALSA's `file` plugin writing to
/// /dev/full) is reported, and playback stops cleanly with exit code 1.
#[cfg(feature = "device")]
#[test]
fn a_failing_device_is_reported_and_playback_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".asoundrc"),
        "pcm.!default {\n type file\n slave.pcm \"null\"\n file \"/dev/full\"\n format \"raw\"\n}\n",
    )
    .expect("asoundrc");
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["play", &repo().join("graphs/enhancer.ron").display().to_string(), "--seconds", "2"])
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", &err[err.len().saturating_sub(2000)..]);
    assert!(
        err.trim_end().ends_with("I/O error (5)'") && err.contains("error: audio device: "),
        "{}",
        &err[err.len().saturating_sub(2000)..]
    );
}

#[test]
fn a_graph_without_a_rate_plays_at_the_rate_it_is_given_and_renders_at_its_input_s() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("free.ron"),
        r#"(channels: 2, nodes: { "eq": Eq(bands: [(kind: Peak, freq_hz: 1000.0, gain_db: 3.0, q: 1.0)]) },
            edges: [("input", "eq"), ("eq", "output")])"#,
    )
    .expect("write");
    sine_wav(&dir.path().join("in44.wav"), 44100, 440.0, 0.3, 1.0);
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run fxgraph");
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    // The null device follows --rate; the graph is prepared at it (nothing resamples its output).
    for rate in ["44100", "96000"] {
        let rec = format!("rec{rate}.wav");
        run(&["play", "free.ron", "--device", "null", "--rate", rate, "--seconds", "0.5", "--record", &rec]);
        let (got, samples) = read_interleaved(&dir.path().join(&rec));
        assert_eq!(got.to_string(), rate);
        assert!(samples.len() / 2 >= got as usize / 4, "{} frames recorded at {got} Hz", samples.len() / 2);
    }
    // Without --rate the null device plays at the input's rate, and render runs at it too.
    run(&["play", "free.ron", "in44.wav", "--device", "null", "--seconds", "0.5", "--record", "rec.wav"]);
    assert_eq!(read_interleaved(&dir.path().join("rec.wav")).0, 44100);
    run(&["render", "free.ron", "-i", "in44.wav", "-o", "out.wav"]);
    let (rate, out) = read_interleaved(&dir.path().join("out.wav"));
    assert_eq!((rate, out.len() / 2), (44100, 44100), "the input's rate and length, nothing resampled");
    // A graph with two inputs plays a file into each: the first by position, the other by name.
    let ducking = repo().join("graphs/ducking.ron");
    let g = ducking.to_str().expect("utf-8");
    run(&[
        "play",
        g,
        "in44.wav",
        "-i",
        "voice=in44.wav",
        "--device",
        "null",
        "--seconds",
        "0.5",
        "--record",
        "duck.wav",
    ]);
    let (rate, samples) = read_interleaved(&dir.path().join("duck.wav"));
    assert_eq!(rate, 48000, "ducking.ron gives its own rate");
    assert!(samples.iter().any(|v| v.abs() > 0.01), "the music and the voice are heard");
}

/// The K-weighting filter's gain at `hz` (48 kHz), dB: both stages' responses at e^{j w}.
fn k_weighting_db(hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 48000.0;
    let stage = |[b0, b1, b2, a1, a2]: [f64; 5]| {
        let (c1, s1, c2, s2) = (w.cos(), -w.sin(), (2.0 * w).cos(), -(2.0 * w).sin());
        let num = ((b0 + b1 * c1 + b2 * c2).powi(2) + (b1 * s1 + b2 * s2).powi(2)).sqrt();
        let den = ((1.0 + a1 * c1 + a2 * c2).powi(2) + (a1 * s1 + a2 * s2).powi(2)).sqrt();
        20.0 * (num / den).log10()
    };
    fxgraph::dsp::loudness::k_weighting(48000).into_iter().map(stage).sum()
}

/// The RMS of interleaved stereo, in dB.
fn rms_db(x: &[f32]) -> f64 {
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    10.0 * (sum / x.len() as f64).log10()
}

#[test]
fn replaygain_plays_files_at_their_tagged_or_measured_gain_and_status_says_which() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A graph that passes its input through, so that the recording shows the gain itself.
    let graph = dir.path().join("pass.ron");
    std::fs::write(
        &graph,
        "(sample_rate: 48000, channels: 2, nodes: { \"g\": Gain(gain_db: 0.0) }, \
                            edges: [(\"input\", \"g\"), (\"g\", \"output\")])",
    )
    .expect("graph");
    let wav = dir.path().join("tone.wav");
    sine_wav(&wav, 48000, 440.0, 0.25, 3.0);
    // FLAC with ReplayGain tags, Ogg Vorbis with an R128 album gain, MP3 with ID3v2 TXXX tags: encoded by
    // the reference encoders.
    let flac = dir.path().join("tone.flac");
    let ogg = dir.path().join("tone.ogg");
    let mp3 = dir.path().join("tone.mp3");
    let s16 = dir.path().join("tone16.wav");
    let o = Command::new("sox").args([wav.to_str().unwrap(), "-b", "16", s16.to_str().unwrap()]).output().expect("sox");
    assert!(o.status.success());
    let run = |cmd: &str, args: &[&str]| {
        let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(
        "flac",
        &[
            "-s",
            "-f",
            "--tag=REPLAYGAIN_TRACK_GAIN=-6.00 dB",
            "--tag=REPLAYGAIN_TRACK_PEAK=0.25",
            "--tag=REPLAYGAIN_ALBUM_GAIN=-9.00 dB",
            "-o",
            flac.to_str().unwrap(),
            s16.to_str().unwrap(),
        ],
    );
    run("oggenc", &["-Q", "-c", "R128_ALBUM_GAIN=-1024", "-o", ogg.to_str().unwrap(), s16.to_str().unwrap()]);
    run(
        "lame",
        &["--silent", "--tv", "TXXX=REPLAYGAIN_TRACK_GAIN=+3.00 dB", s16.to_str().unwrap(), mp3.to_str().unwrap()],
    );
    // MP4 (AAC) with iTunes freeform atoms, as taggers write them (ffmpeg encodes, mutagen tags).
    let m4a = dir.path().join("tone.m4a");
    run(
        "ffmpeg",
        &["-v", "error", "-y", "-i", s16.to_str().unwrap(), "-c:a", "aac", "-b:a", "192k", m4a.to_str().unwrap()],
    );
    let tag = format!(
        "import mutagen.mp4 as m; f = m.MP4('{}'); \
         f['----:com.apple.iTunes:replaygain_track_gain'] = [m.MP4FreeForm(b'-2.00 dB')]; f.save()",
        m4a.display()
    );
    run("python3", &["-c", &tag]);
    let play = |file: &Path, args: &[&str]| -> (f64, serde_json::Value) {
        let rec = dir.path().join("rec.wav");
        let mut child = play_piped(
            Command::new(env!("CARGO_BIN_EXE_fxgraph"))
                .args(["play", graph.to_str().unwrap(), file.to_str().unwrap(), "--device", "null", "--seconds", "1.5"])
                .args(["--record", rec.to_str().unwrap()])
                .args(args),
        );
        let mut stdin = child.stdin.take().expect("stdin");
        std::thread::sleep(Duration::from_millis(700));
        writeln!(stdin, "status").expect("status");
        writeln!(stdin, "quit").expect("quit");
        let out = child.wait_with_output().expect("play ends");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("ok {").map(|r| format!("{{{r}")))
            .expect("status");
        let (_, x) = read_interleaved(&rec);
        // Skip the fade-in at the start.
        (rms_db(&x[9600..]), serde_json::from_str(&line).expect("JSON"))
    };
    // Each file's own level without ReplayGain (the MP3 decodes a little differently).
    let plain: Vec<f64> = [&flac, &ogg, &mp3, &s16, &m4a]
        .iter()
        .map(|f| {
            let (level, status) = play(f, &[]);
            assert!(status["replaygain"].is_null(), "{status}");
            level
        })
        .collect();
    for (file, args, want_db, source) in [
        (&flac, &["--replaygain", "track"][..], -6.0, "track tags"),
        (&flac, &["--replaygain", "album"], -9.0, "album tags"),
        (&flac, &["--replaygain", "track", "--preamp", "2"], -4.0, "track tags"),
        // R128 -1024/256 = -4 dB to -23 LUFS: +1 dB to ReplayGain's -18.
        (&ogg, &["--replaygain", "album"], 1.0, "track tags"),
        (&mp3, &["--replaygain", "track", "--allow-clipping"], 3.0, "track tags"),
        (&m4a, &["--replaygain", "track"], -2.0, "track tags"),
        // +3 dB would put the tagged peak (0.25) nowhere near full scale; a +15 dB preamp would: capped at
        // 20 log10(1 / 0.25) = +12.04 dB.
        (&flac, &["--replaygain", "track", "--preamp", "21"], 12.04, "track tags"),
        // No tags: measured, to -18 LUFS. The tone is a 440 Hz sine of amplitude 0.25 in both channels:
        // -0.691 + 20 log10(0.25) + K-weighting's gain at 440 Hz LUFS (BS.1770-4).
        (
            &s16,
            &["--replaygain", "track"],
            -18.0 - (-0.691 + 20.0 * 0.25f64.log10() + k_weighting_db(440.0)),
            "measured",
        ),
    ] {
        let (level, status) = play(file, args);
        let got = level - plain[[&flac, &ogg, &mp3, &s16, &m4a].iter().position(|f| f == &file).expect("a file")];
        let want_source = if file == &ogg { "album tags" } else { source };
        assert!((got - want_db).abs() < 0.15, "{} {args:?}: {got:.2} dB, want {want_db}", file.display());
        let rg = &status["replaygain"];
        assert_eq!(rg["source"], want_source, "{status}");
        assert!((rg["gain_db"].as_f64().expect("gain") - want_db).abs() < 0.15, "{status}");
    }
}
