//! Native plugins: the SDK's enhancer and a plain-C plugin against analytic answers and the built-in
//! shelves; libraries refused before their code runs; panics, NaN and crashes contained; LADSPA plugins from
//! Debian's packages against what their documentation says; the out-of-process tier.

#![cfg(target_os = "linux")] // Native plugins are hosted on Linux (the isolation tier uses memfd and futexes).

mod common;

use fxgraph::{AudioIn, AudioOut, AudioProcessor, Engine, EngineOptions, Graph, ParamValue};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[global_allocator]
static ALLOC: fxgraph::alloc::CountingAllocator = fxgraph::alloc::CountingAllocator;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds a crate's cdylib with cargo, in its own target folder (the test's own build holds the main one).
fn cargo_cdylib(manifest: &str, package: Option<&str>, lib: &str) -> PathBuf {
    let target = repo().join("target/test-plugins");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--offline", "--manifest-path"]).arg(repo().join(manifest));
    if let Some(p) = package {
        cmd.args(["-p", p]);
    }
    let o = cmd.arg("--target-dir").arg(&target).output().expect("cargo");
    assert!(o.status.success(), "building {manifest}: {}", String::from_utf8_lossy(&o.stderr));
    target.join("release").join(lib)
}

/// The SDK's enhancer plugin.
fn enhancer() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| cargo_cdylib("Cargo.toml", Some("fxgraph-enhancer"), "libfxgraph_enhancer.so"))
}

/// The native build of the shipped WebAssembly biquad's DSP source (`plugins/native/biquad`, the SDK).
#[cfg(feature = "wasm")]
fn biquad() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| cargo_cdylib("Cargo.toml", Some("fxgraph-biquad"), "libfxgraph_biquad.so"))
}

/// The SDK test plugin that panics on purpose.
fn panicky() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| cargo_cdylib("tests/native/panic_plugin/Cargo.toml", None, "libfxgraph_panic_plugin.so"))
}

/// Compiles C plugin sources with `cc` into `target/test-plugins/NAME.so`.
fn cc(source: &str, name: &str, defines: &[&str]) -> PathBuf {
    let out = repo().join("target/test-plugins").join(format!("{name}.so"));
    std::fs::create_dir_all(out.parent().expect("dir")).expect("mkdir");
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Werror"]);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    let o = cmd
        .arg("-I")
        .arg(repo().join("plugins/include"))
        .arg("-o")
        .arg(&out)
        .arg(repo().join(source))
        .arg("-lm")
        .output()
        .expect("cc");
    assert!(o.status.success(), "cc {source} {defines:?}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Whether Debian's LADSPA plugins (`swh-plugins`, `tap-plugins`, `cmt`, `ladspa-sdk`) are installed (see
/// [`installed`]).
fn ladspa() -> bool {
    let have = ["amp_1181.so", "filter.so", "fast_lookahead_limiter_1913.so", "tap_eq.so", "cmt.so"]
        .iter()
        .all(|f| Path::new("/usr/lib/ladspa").join(f).exists());
    installed(have, "swh-plugins tap-plugins cmt ladspa-sdk")
}

/// Whether what a group of checks needs (Debian's `packages`) is there: without it they are skipped with a
/// note, except in CI (`CI` set), which must run them (`.ci/run` installs the packages).
fn installed(have: bool, packages: &str) -> bool {
    if !have {
        assert!(std::env::var_os("CI").is_none(), "{packages}: not installed, and CI must run the checks that need it");
        eprintln!("note: not installed (apt install {packages}); the checks that need it are skipped");
    }
    have
}

/// Debian's LSP LADSPA library (`lsp-plugins-ladspa`), if installed; CI must have it.
fn lsp() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib/ladspa")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("lsp-plugins-ladspa")));
    installed(found.is_some(), "lsp-plugins-ladspa");
    found
}

fn c_gain() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| cc("plugins/native/c/gain.c", "libfxgraph_gain", &[]))
}

fn graph(nodes: &str, chain: &[&str]) -> Graph {
    let mut edges = vec![format!("(\"input\", \"{}\")", chain[0])];
    for w in chain.windows(2) {
        edges.push(format!("(\"{}\", \"{}\")", w[0], w[1]));
    }
    edges.push(format!("(\"{}\", \"output\")", chain[chain.len() - 1]));
    let text = format!("(sample_rate: 48000, channels: 2, nodes: {{ {nodes} }}, edges: [{}])", edges.join(", "));
    Graph::parse(&text, "native.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"))
}

struct Rig {
    engine: Engine,
    audio: AudioProcessor,
}

fn start(g: Graph) -> Rig {
    let (engine, audio) =
        Engine::new(g, EngineOptions { max_block: 512, threads: 1, ..Default::default() }).expect("engine");
    Rig { engine, audio }
}

/// Runs interleaved-stereo `input` through in 512-frame calls, updating the control side after each.
fn run(rig: &mut Rig, input: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; input.len()];
    for (x, y) in input.chunks(1024).zip(out.chunks_mut(1024)) {
        rig.audio.process_interleaved(x, y, 2);
        rig.engine.update();
    }
    out
}

fn sine(hz: f64, amp: f64, frames: usize) -> Vec<f32> {
    (0..frames)
        .flat_map(|n| {
            let v = (amp * (std::f64::consts::TAU * hz * n as f64 / 48000.0).sin()) as f32;
            [v, v]
        })
        .collect()
}

/// Peak of the left channel after the first `skip` frames.
fn peak(x: &[f32], skip: usize) -> f64 {
    x.chunks(2).skip(skip).fold(0.0f64, |p, f| p.max(f64::from(f[0]).abs()))
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// The cookbook's low shelf magnitude (Q 0.707), written out here.
fn low_shelf_db(f0: f64, gain_db: f64, f: f64) -> f64 {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = std::f64::consts::TAU * f0 / 48000.0;
    let (alpha, c) = (w0.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2), w0.cos());
    let k = 2.0 * a.sqrt() * alpha;
    let b = [
        a * ((a + 1.0) - (a - 1.0) * c + k),
        2.0 * a * ((a - 1.0) - (a + 1.0) * c),
        a * ((a + 1.0) - (a - 1.0) * c - k),
    ];
    let d = [(a + 1.0) + (a - 1.0) * c + k, -2.0 * ((a - 1.0) + (a + 1.0) * c), (a + 1.0) + (a - 1.0) * c - k];
    let w = std::f64::consts::TAU * f / 48000.0;
    let mag =
        |p: [f64; 3]| (p[0] + p[1] * w.cos() + p[2] * (2.0 * w).cos()).hypot(p[1] * w.sin() + p[2] * (2.0 * w).sin());
    db(mag(b) / mag(d))
}

fn native(path: &Path, rest: &str) -> String {
    format!("Native(path: {:?}{rest})", path.display().to_string())
}

/// One source (`plugins/src/biquad_rust/dsp.rs`), two builds: `f64x2` in WebAssembly's SIMD in the sandbox,
/// SSE2 natively. The same operations in the same order give the same bits, so the speed of the two
/// (`cargo bench -p fxgraph-benches --bench engine -- plugins`) compares the sandbox with native code alone.
#[cfg(feature = "wasm")]
#[test]
fn the_biquad_source_built_natively_and_as_webassembly_gives_the_same_bits() {
    let module = common::plugin_dir().join("biquad_filter.wasm");
    // Settings an `f32` holds exactly: the WebAssembly ABI passes parameters as `f32`, the native one as `f64`.
    for channels in [1usize, 2, 3] {
        for (kind, code, cutoff, q) in
            [("lowpass", 0, 12000.0, 0.5), ("highpass", 1, 80.0, 0.75), ("bandpass", 2, 1000.0, 2.0)]
        {
            let settings = format!("\"cutoff_hz\": {cutoff:?}, \"resonance\": {q:?}");
            let nodes = [
                format!("Wasm(path: {:?}, config: {{\"type\": \"{kind}\", {settings}}})", module.display().to_string()),
                native(biquad(), &format!(", config: {{\"type\": {code}, {settings}}}")),
            ];
            let input: Vec<f32> =
                (0..48000 * channels).map(|i| (i as f32 * 0.37).sin() * 0.5 + (i as f32 * 0.011).sin() * 0.3).collect();
            let outputs: Vec<Vec<f32>> = nodes
                .iter()
                .map(|node| {
                    let text = format!(
                        "(sample_rate: 48000, channels: {channels}, nodes: {{ \"f\": {node} }}, edges: [(\"input\", \"f\"), (\"f\", \"output\")])"
                    );
                    let g = Graph::parse(&text, "biquad.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
                    let mut rig = start(g);
                    let mut out = vec![0.0f32; input.len()];
                    for (x, y) in input.chunks(512 * channels).zip(out.chunks_mut(512 * channels)) {
                        rig.audio.process_interleaved(x, y, channels);
                        rig.engine.update();
                    }
                    assert_eq!(rig.engine.metrics().nodes[0].faults, 0);
                    out
                })
                .collect();
            assert!(outputs[0].iter().any(|v| v.abs() > 0.01), "{kind}: the filter passes signal");
            assert!(outputs[0] == outputs[1], "{kind}, {channels} channels: the two builds differ");
        }
    }
}

#[test]
fn the_sdk_enhancer_is_the_cookbook_shelf_and_matches_the_built_in() {
    let bass_only =
        ", config: {\"bass_gain_db\": 6.0, \"bass_freq_hz\": 100.0, \"treble_gain_db\": 0.0, \"width\": 1.0}";
    // Against the cookbook, sine by sine.
    for f in [30.0, 100.0, 400.0, 3000.0] {
        let mut rig = start(graph(&format!("\"enh\": {}", native(enhancer(), bass_only)), &["enh"]));
        let out = run(&mut rig, &sine(f, 0.25, 48000));
        let measured = db(peak(&out, 24000) / 0.25);
        let want = low_shelf_db(100.0, 6.0, f);
        assert!((measured - want).abs() < 0.01, "{f} Hz: {measured} dB, cookbook {want} dB");
    }
    // Against the built-in BassBoost: the same filter, written twice.
    let input: Vec<f32> = (0..96000).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.8).collect();
    let a = run(&mut start(graph(&format!("\"enh\": {}", native(enhancer(), bass_only)), &["enh"])), &input);
    let b = run(&mut start(graph("\"bass\": BassBoost(gain_db: 6.0, freq_hz: 100.0)", &["bass"])), &input);
    let worst = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst < 1e-6, "{worst}");
    // Width 0 makes mono; a preset applies, and config overrides it.
    let out = run(
        &mut start(graph(&format!("\"enh\": {}", native(enhancer(), ", config: {\"width\": 0.0}")), &["enh"])),
        &input,
    );
    assert!(out.chunks(2).all(|f| f[0] == f[1]));
    let mut rig = start(graph(
        &format!("\"enh\": {}", native(enhancer(), ", preset: \"warm\", config: {\"width\": 1.0}")),
        &["enh"],
    ));
    assert_eq!(rig.engine.get("enh", "bass_gain_db").expect("param"), ParamValue::Number(5.0));
    assert_eq!(rig.engine.get("enh", "width").expect("param"), ParamValue::Number(1.0));
    // Automation: every stage back to neutral, and after the ramp the output is the input, bit for bit.
    for (k, v) in [("bass_gain_db", 0.0), ("treble_gain_db", 0.0)] {
        rig.engine.set("enh", k, v).expect("set");
    }
    rig.engine.update();
    let out = run(&mut rig, &input);
    assert!(out[48000..].iter().zip(&input[48000..]).all(|(a, b)| a == b), "neutral after the ramp");
    // Status numbers reach the monitor.
    let report = rig.engine.metrics();
    let node = report.nodes.iter().find(|n| n.name == "enh").expect("node");
    let names: Vec<&str> = node.status.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["peak_in_dbfs", "peak_out_dbfs"]);
    assert!(node.status[0].1 > -10.0 && node.status[0].1 <= 0.0, "{:?}", node.status);
    // An unknown key, a bad preset, a value out of range: errors naming the field.
    for (rest, want) in [
        (", config: {\"gain\": 1.0}", "config.gain"),
        (", preset: \"loud\"", "has no preset \"loud\" (it has: flat, warm, bright, wide)"),
        (", config: {\"width\": 9.0}", "must be between 0 and 4"),
    ] {
        let text = format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"enh\": {} }}, edges: [(\"input\", \"enh\"), (\"enh\", \"output\")])",
            native(enhancer(), rest)
        );
        let e = Graph::parse(&text, "bad.ron", "/".as_ref()).expect_err("refused").to_string();
        assert!(e.contains("node \"enh\"") && e.contains(want), "{e}");
    }
}

#[test]
fn the_plain_c_plugin_works_without_the_sdk() {
    let input = sine(1000.0, 0.5, 24000);
    let mut rig = start(graph(&format!("\"g\": {}", native(c_gain(), ", config: {\"gain_db\": -6.0}")), &["g"]));
    let out = run(&mut rig, &input);
    assert!((db(peak(&out, 0) / 0.5) + 6.0).abs() < 1e-4);
    rig.engine.set("g", "invert", 1.0).expect("toggle");
    rig.engine.update();
    let out = run(&mut rig, &input);
    let gain = 10f32.powf(-6.0 / 20.0);
    assert!(
        out.iter().zip(&input).all(|(y, x)| (y + x * gain).abs() < 1e-6),
        "inverted at once (a toggle is not ramped)"
    );
    let mut rig = start(graph(&format!("\"g\": {}", native(c_gain(), ", preset: \"minus6\"")), &["g"]));
    assert_eq!(rig.engine.get("g", "gain_db").expect("param"), ParamValue::Number(-6.0));
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph")).arg("plugin").arg(c_gain()).output().expect("run");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("org.fxgraph.c-gain") && text.contains("presets: minus6, invert"),
        "{text}"
    );
}

#[test]
fn bad_libraries_are_refused_before_their_code_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let text = dir.path().join("notes.so");
    std::fs::write(&text, "not a library").expect("write");
    // The pass-through plugin with its ELF class byte flipped: another architecture's library.
    let good = cc("tests/native/variants.c", "variant_ok", &[]);
    let mut bytes = std::fs::read(&good).expect("read");
    bytes[4] = 1; // ELFCLASS32
    let wrong_arch = dir.path().join("wrong_arch.so");
    std::fs::write(&wrong_arch, bytes).expect("write");
    let cases: Vec<(PathBuf, &str)> = vec![
        (text, "cannot load the library"),
        (wrong_arch, "cannot load the library"),
        (cc("tests/native/variants.c", "variant_no_entry", &["NO_ENTRY"]), "exports no `fxgraph_plugin_v1`"),
        (
            cc("tests/native/variants.c", "variant_abi2", &["ABI_MAJOR=2u"]),
            "implements native plugin ABI 2.1; this fxgraph implements ABI 1.1",
        ),
        (
            cc("tests/native/variants.c", "variant_short", &["SHORT_STRUCT"]),
            "its descriptor is 64 bytes; ABI 1.1 needs at least",
        ),
        (
            cc("tests/native/variants.c", "variant_null", &["NULL_PROCESS"]),
            "the descriptor's `process` function is null",
        ),
    ];
    for (lib, why) in &cases {
        let graph_text = format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"p\": Native(path: {:?}) }}, edges: [(\"input\", \"p\"), (\"p\", \"output\")])",
            lib.display().to_string()
        );
        std::fs::write(dir.path().join("g.ron"), graph_text).expect("write");
        let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["check", "g.ron"])
            .current_dir(dir.path())
            .env("FXG_TEST_MARKER", &marker)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", lib.display());
        assert!(
            err.contains(&lib.display().to_string()) && err.contains(why),
            "{}: wanted {why:?}: {err}",
            lib.display()
        );
        assert!(err.contains("g.ron:1:") && err.contains("node \"p\""), "located: {err}");
        assert!(!marker.exists(), "{}: plugin code ran before the refusal", lib.display());
    }
    // A LADSPA library without the label asked for.
    if !ladspa() {
        return;
    }
    let text = "(sample_rate: 48000, channels: 2, nodes: { \"a\": Ladspa(path: \"amp_1181.so\", label: \"nope\") }, edges: [(\"input\", \"a\"), (\"a\", \"output\")])";
    let e = Graph::parse(text, "l.ron", "/".as_ref()).expect_err("refused").to_string();
    assert!(e.contains("has no plugin labelled \"nope\" (it has: amp)"), "{e}");
}

#[test]
fn a_pinned_library_is_hashed_before_it_loads_and_check_warns_of_libraries_others_can_change() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::copy(cc("tests/native/variants.c", "variant_constructor", &["CONSTRUCTOR"]), d.join("p.so"))
        .expect("copy");
    let digest = fxgraph::nodes::plugin::file_sha256(&d.join("p.so")).expect("digest");
    let marker = d.join("loaded");
    let check = |pin: &str| {
        let text = format!(
            "(sample_rate: 48000, channels: 2,\n nodes: {{ \"p\": Native(path: \"p.so\",\n sha256: {pin:?}) }},\n edges: [(\"input\", \"p\"), (\"p\", \"output\")])"
        );
        std::fs::write(d.join("g.ron"), text).expect("write");
        let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["check", "g.ron"])
            .current_dir(d)
            .env("FXG_TEST_LOAD_MARKER", &marker)
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let wrong = format!("{}{}", if digest.starts_with('0') { '1' } else { '0' }, &digest[1..]);
    let (code, _, err) = check(&wrong);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not match the graph's pin") && err.contains(&digest) && err.contains(&wrong), "{err}");
    assert!(err.contains("g.ron:3:") && err.contains("node \"p\""), "located at the pin: {err}");
    assert!(!marker.exists(), "the library was loaded before its pin was checked");
    let (code, _, err) = check("12ab");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("64 hexadecimal digits") && err.contains("g.ron:3:"), "{err}");
    assert!(!marker.exists());
    let (code, out, err) = check(&digest.to_uppercase());
    assert_eq!(code, Some(0), "digits in either case: {err}");
    assert!(marker.exists(), "the matching library was loaded");
    assert!(!out.contains("warning"), "{out}");
    // The same library in a folder others can write: `check` says so.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (code, out, _) = check(&digest);
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_eq!(code, Some(0));
    assert!(out.contains("warning: node \"p\" loads native code from") && out.contains("writable by others"), "{out}");
    if ladspa() {
        let pinned = format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"a\": Ladspa(path: \"amp_1181.so\", label: \"amp\", sha256: {wrong:?}) }}, edges: [(\"input\", \"a\"), (\"a\", \"output\")])"
        );
        let e = Graph::parse(&pinned, "l.ron", "/".as_ref()).expect_err("refused").to_string();
        assert!(e.contains("amp_1181.so does not match the graph's pin"), "{e}");
    }
}

#[test]
fn panics_and_nan_are_contained_in_process() {
    let input = sine(440.0, 0.5, 48000);
    // A panic in process: caught by the SDK, the node bypassed (dry), reported, then replaced.
    let nodes = format!("\"p\": {}", native(panicky(), ", config: {\"panic_at\": 10}"));
    let mut rig = start(graph(&nodes, &["p"]));
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    rig.engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
    let out = run(&mut rig, &input);
    assert_eq!(out, input, "pass-through, and dry while faulted");
    let report = rig.engine.metrics();
    assert!(report.nodes[0].faults >= 1);
    let events = events.lock().expect("lock").clone();
    assert!(events.iter().any(|e| e.contains("Panicked")), "{events:?}");
    // A panic in set_param too.
    let mut rig = start(graph(&format!("\"p\": {}", native(panicky(), "")), &["p"]));
    rig.engine.set("p", "panic_on_set", 1.0).expect("set");
    rig.engine.update();
    let out = run(&mut rig, &input);
    assert_eq!(out, input);
    assert!(rig.engine.metrics().nodes[0].faults >= 1);
    // NaN out: replaced with silence and counted.
    let nan = cc("tests/native/variants.c", "variant_nan", &["NAN_OUT"]);
    let mut rig = start(graph(&format!("\"n\": {}", native(&nan, "")), &["n"]));
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    rig.engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
    let out = run(&mut rig, &input);
    assert!(out.iter().all(|v| v.is_finite()));
    assert!(out.chunks(2).skip(1).step_by(2).all(|f| f[0] == 0.0), "every other sample was NaN, now silence");
    let events = events.lock().expect("lock").clone();
    assert!(events.iter().any(|e| e.contains("non-finite output samples replaced with silence")), "{events:?}");
}

/// A steady sine through one LADSPA node; the left channel's peak after a second, in dB relative to the
/// input's.
fn through_ladspa(node: &str, hz: f64) -> (f64, Rig) {
    let mut rig = start(graph(&format!("\"l\": {node}"), &["l"]));
    let out = run(&mut rig, &sine(hz, 0.25, 96000));
    (db(peak(&out, 48000) / 0.25), rig)
}

#[test]
fn ladspa_plugins_do_what_their_documentation_says() {
    if !ladspa() {
        return;
    }
    // swh-plugins' amp: "Amps gain (dB)" +6 dB measures +6 dB (by port name, and by key).
    for controls in ["{\"Amps gain (dB)\": 6.0}", "{\"amps_gain_db\": 6.0}"] {
        let (gain, _) =
            through_ladspa(&format!("Ladspa(path: \"amp_1181.so\", label: \"amp\", controls: {controls})"), 1000.0);
        assert!((gain - 6.0).abs() < 0.01, "{gain}");
    }
    // ladspa-sdk's low-pass at 1 kHz: passes 100 Hz, attenuates above the cutoff.
    let lpf = "Ladspa(path: \"filter.so\", label: \"lpf\", controls: {\"Cutoff Frequency (Hz)\": 1000.0})";
    let (low, _) = through_ladspa(lpf, 100.0);
    let (high, _) = through_ladspa(lpf, 8000.0);
    assert!(low > -0.5 && high < -15.0, "100 Hz: {low} dB, 8 kHz: {high} dB");
    // swh-plugins' fast lookahead limiter (a stereo plugin: one instance for both channels): a 0 dBFS sine
    // under a -6 dB limit comes out at most -6 dBFS, with its latency reported and its attenuation shown.
    let limiter = "Ladspa(path: \"fast_lookahead_limiter_1913.so\", label: \"fastLookaheadLimiter\", controls: {\"Limit (dB)\": -6.0})";
    let mut rig = start(graph(&format!("\"l\": {limiter}"), &["l"]));
    let out = run(&mut rig, &sine(500.0, 1.0, 96000));
    let top = db(peak(&out, 48000));
    assert!(top <= -5.99 && top > -7.0, "{top} dBFS");
    assert!(rig.engine.latency_frames() > 0, "the latency port is the node's latency");
    let report = rig.engine.metrics();
    let status = &report.nodes[0].status;
    assert!(status.iter().any(|(n, v)| n == "attenuation_db" && *v > 3.0), "{status:?}");
    // tap-plugins' equalizer: band 4 (1 kHz) at +6 dB lifts a 1 kHz sine by 6 dB, leaves 100 Hz and 10 kHz
    // (other bands flat) within a fraction of a dB; it does not declare itself hard-real-time capable, and
    // the node says so.
    let eq = "Ladspa(path: \"tap_eq.so\", label: \"tap_equalizer\", controls: {\"band_4_gain_db\": 6.0})";
    let mut rig = start(graph(&format!("\"l\": {eq}"), &["l"]));
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    rig.engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
    let mid = db(peak(&run(&mut rig, &sine(1000.0, 0.25, 96000)), 48000) / 0.25);
    assert!((mid - 6.0).abs() < 0.1, "1 kHz: {mid} dB");
    let events = events.lock().expect("lock").clone();
    assert!(events.iter().any(|e| e.contains("does not declare itself hard-real-time capable")), "{events:?}");
    for hz in [100.0, 10000.0] {
        let (g, _) = through_ladspa(eq, hz);
        assert!(g.abs() < 0.5, "{hz} Hz: {g} dB");
    }
    // cmt's stereo amplifier (linear gain, one instance for both channels): x2 measures +6.02 dB.
    let (amp, _) = through_ladspa("Ladspa(path: \"cmt.so\", label: \"amp_stereo\", controls: {\"gain\": 2.0})", 1000.0);
    assert!((amp - 20.0 * 2f64.log10()).abs() < 0.01, "{amp} dB");
    // A control outside its range hints is an error naming the port.
    let text = "(sample_rate: 48000, channels: 2, nodes: { \"l\": Ladspa(path: \"amp_1181.so\", label: \"amp\", controls: {\"Amps gain (dB)\": 99.0}) }, edges: [(\"input\", \"l\"), (\"l\", \"output\")])";
    let e = Graph::parse(text, "l.ron", "/".as_ref()).expect_err("refused").to_string();
    assert!(e.contains("controls.Amps gain (dB)") && e.contains("must be between -70 and 70"), "{e}");
    // `fxgraph plugin` lists a library's plugins and ports.
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["plugin", "/usr/lib/ladspa/filter.so"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("label \"lpf\"") && text.contains("label \"hpf\"") && text.contains("\"Cutoff Frequency (Hz)\""),
        "{text}"
    );
}

/// RMS of `x[from..to]`.
fn rms(x: &[f32], from: usize, to: usize) -> f64 {
    (x[from..to].iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / (to - from) as f64).sqrt()
}

#[test]
fn ladspa_buses_are_ports_a_sidechain_keys_lsp_s_compressor_and_a_mono_delay_goes_stereo() {
    let Some(lsp) = lsp() else { return };
    let lib = lsp.display();
    // LSP's sidechain compressor: `in`, `sidechain` (stereo each) and `out`, its detector on the external
    // sidechain ("Sidechain type" 2). Music at -20 dBFS; the key loud for a second, then near silence.
    let text = format!(
        r#"(sample_rate: 48000, inputs: {{"music": 2, "key": 2}}, outputs: {{"main": 2}},
            nodes: {{ "sc": Ladspa(path: "{lib}", label: "http://lsp-plug.in/plugins/ladspa/sc_compressor_stereo",
                controls: {{"Sidechain type": 2, "Attack threshold (G)": 0.1, "Ratio": 10.0, "Attack time (ms)": 1.0, "Release time (ms)": 50.0}}) }},
            edges: [("input.music", "sc"), ("input.key", "sc.sidechain"), ("sc", "output")])"#
    );
    let g = Graph::parse(&text, "sc.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<(&str, usize)> =
        g.nodes[0].ports.inputs.iter().map(|p| p.name.as_str()).zip(g.nodes[0].layout.inputs()).collect();
    assert_eq!(names, [("in", 2), ("sidechain", 2)]);
    let frames = 96000;
    let music: Vec<f32> = sine(1000.0, 0.1, frames).into_iter().step_by(2).collect();
    let key: Vec<f32> = (0..frames).map(|n| if n < 48000 { 0.5 } else { 0.001 } * (n as f32 * 0.04).sin()).collect();
    let inputs = vec![music.clone(), music.clone(), key.clone(), key];
    let (y, _) = common::render_planar(g, inputs.clone());
    // The same bits in a child process: its blocks carry both input buses.
    host_env();
    let isolated = text.replace("controls:", "isolation: Process, controls:");
    let g = Graph::parse(&isolated, "sc.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert!(common::render_planar(g, inputs).0 == y, "the isolated sidechain compressor differs");
    let (loud, quiet) = (rms(&y[0], 24000, 48000), rms(&y[0], 72000, 96000));
    let dry = rms(&music, 72000, 96000);
    assert!(db(loud / dry) < -6.0, "with the key loud the music is reduced: {:.2} dB", db(loud / dry));
    assert!(db(quiet / dry).abs() < 0.5, "with the key quiet it is not: {:.2} dB", db(quiet / dry));
    // LSP's artistic delay, mono: 1 input, a stereo output; panned hard left, the right channel is silent.
    let text = format!(
        r#"(sample_rate: 48000, inputs: {{"voice": 1}}, outputs: {{"main": 2}},
            nodes: {{ "d": Ladspa(path: "{lib}", label: "http://lsp-plug.in/plugins/ladspa/art_delay_mono", controls: {{"input_panorama": -100.0}}) }},
            edges: [("input", "d"), ("d", "output")])"#
    );
    let g = Graph::parse(&text, "ad.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((g.nodes[0].layout.inputs(), g.nodes[0].layout.outputs()), (vec![1], vec![2]));
    let voice: Vec<f32> = sine(440.0, 0.5, 48000).into_iter().step_by(2).collect();
    let (y, _) = common::render_planar(g, vec![voice.clone()]);
    assert_eq!(y.len(), 2);
    assert!((rms(&y[0], 4800, 48000) / rms(&voice, 4800, 48000) - 1.0).abs() < 0.01, "left carries the voice");
    assert!(rms(&y[1], 0, 48000) < 1e-6, "right is silent");
    // Isolated, a mono input and a stereo output: the same bits.
    let isolated = text.replace("controls:", "isolation: Process, controls:");
    let g = Graph::parse(&isolated, "ad.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert!(common::render_planar(g, vec![voice]).0 == y, "the isolated delay differs");
}

#[test]
fn a_native_plugin_declares_buses_as_ports_and_a_1_0_plugin_runs_unchanged() {
    let lib = cc("tests/native/buses.c", "buses", &[]);
    let graph = |edges: &str, extra: &str| {
        let text = format!(
            r#"(sample_rate: 48000, inputs: {{"a": 1, "b": 1{extra}}}, outputs: {{"main": 2}},
                nodes: {{ "p": Native(path: "{}") }}, edges: [{edges}])"#,
            lib.display()
        );
        Graph::parse(&text, "b.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"))
    };
    let a: Vec<f32> = sine(440.0, 0.4, 4800).into_iter().step_by(2).collect();
    let b: Vec<f32> = sine(1000.0, 0.3, 4800).into_iter().step_by(2).collect();
    // The buses are the node's ports: out[0] = a + b, out[1] = a - b; the optional `gain` absent.
    let g = graph(r#"("input.a", "p.a"), ("input.b", "p.b"), ("p", "output")"#, "");
    assert_eq!(g.nodes[0].layout.inputs(), [1, 1, 0]);
    let (y, _) = common::render_planar(g, vec![a.clone(), b.clone()]);
    for n in 0..4800 {
        assert_eq!((y[0][n], y[1][n]), (a[n] + b[n], a[n] - b[n]), "frame {n}");
    }
    // Connected, it scales both.
    let gain = vec![0.5f32; 4800];
    let g = graph(r#"("input.a", "p.a"), ("input.b", "p.b"), ("input.g", "p.gain"), ("p", "output")"#, r#", "g": 1"#);
    let (y, _) = common::render_planar(g, vec![a.clone(), b.clone(), gain]);
    for n in 0..4800 {
        assert_eq!((y[0][n], y[1][n]), ((a[n] + b[n]) * 0.5, (a[n] - b[n]) * 0.5), "frame {n}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph")).arg("plugin").arg(&lib).output().expect("run");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("ABI 1.1")
            && text.contains("audio buses: in a (1 ch), b (1 ch), gain (optional); out out (2 ch)"),
        "{text}"
    );
    // In a child process, its buses (the optional one fed and not) give the same bits.
    host_env();
    for (edges, extra, inputs) in [
        (r#"("input.a", "p.a"), ("input.b", "p.b"), ("p", "output")"#, "", vec![a.clone(), b.clone()]),
        (
            r#"("input.a", "p.a"), ("input.b", "p.b"), ("input.g", "p.gain"), ("p", "output")"#,
            r#", "g": 1"#,
            vec![a.clone(), b.clone(), vec![0.5f32; 4800]],
        ),
    ] {
        let inproc = common::render_planar(graph(edges, extra), inputs.clone()).0;
        let text = format!(
            r#"(sample_rate: 48000, inputs: {{"a": 1, "b": 1{extra}}}, outputs: {{"main": 2}},
                nodes: {{ "p": Native(path: "{}", isolation: Process) }}, edges: [{edges}])"#,
            lib.display()
        );
        let g = Graph::parse(&text, "b.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
        assert!(common::render_planar(g, inputs).0 == inproc, "{extra}: the isolated plugin differs");
    }
    // A plugin built for ABI 1.0 (a descriptor that ends before the buses) is an effect, as before.
    let old = cc("tests/native/buses.c", "buses_old", &["OLD_ABI"]);
    let text = format!(
        r#"(sample_rate: 48000, channels: 2, nodes: {{ "p": Native(path: "{}") }}, edges: [("input", "p"), ("p", "output")])"#,
        old.display()
    );
    let g = Graph::parse(&text, "o.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((g.nodes[0].layout.inputs(), g.nodes[0].layout.outputs()), (vec![2], vec![2]));
    let (y, _) = common::render_planar(g, vec![a.clone(), b.clone()]);
    assert_eq!((&y[0], &y[1]), (&a, &b), "a 1.0 pass-through passes through");
}

#[test]
fn native_audio_side_allocates_nothing() {
    let with_ladspa = ladspa();
    let amp = if with_ladspa {
        "Ladspa(path: \"amp_1181.so\", label: \"amp\", controls: {\"Amps gain (dB)\": -3.0})"
    } else {
        "Gain(gain_db: -3.0)"
    };
    // An LV2 compressor too, where lilv and LSP's plugins are installed (its own code is C++, which the
    // counting allocator does not see: this counts the host's side).
    let with_lv2 = lsp_lv2();
    let lv2 = if with_lv2 {
        format!("Lv2(uri: \"{LSP}compressor_stereo\", controls: {{\"al\": 0.1}})")
    } else {
        "Gain(gain_db: 0.0)".to_string()
    };
    // And the CLAP test gain, whose parameter changes travel as events.
    let nodes = format!(
        "\"enh\": {}, \"g\": {}, \"amp\": {amp}, \"iso\": {}, \"lv2\": {lv2}, \"clap\": {}",
        native(enhancer(), ""),
        native(c_gain(), ", config: {\"gain_db\": -1.0}"),
        native(c_gain(), ", isolation: Process"),
        clap_node(&clap_bundle(&[]), "gain", "")
    );
    host_env();
    let mut rig = start(graph(&nodes, &["enh", "g", "amp", "iso", "lv2", "clap"]));
    let input = sine(220.0, 0.3, 4800);
    run(&mut rig, &input);
    let before = fxgraph::alloc::CountingAllocator::stats().expect("installed").audio_calls;
    for i in 0..200 {
        if i % 10 == 0 {
            rig.engine.set("enh", "bass_gain_db", f64::from(i % 7)).expect("set");
            let key = if with_ladspa { "amps_gain_db" } else { "gain_db" };
            rig.engine.set("amp", key, -f64::from(i % 5)).expect("set");
            if with_lv2 {
                rig.engine.set("lv2", "cr", f64::from(2 + i % 5)).expect("set");
            }
            rig.engine.set("clap", "gain", -f64::from(i % 6)).expect("set");
            rig.engine.set("clap", "invert", f64::from(i % 2)).expect("set");
        }
        run(&mut rig, &input[..2048]);
    }
    let after = fxgraph::alloc::CountingAllocator::stats().expect("installed").audio_calls;
    assert_eq!(after - before, 0, "allocations or frees on the audio side");
}

/// The ways a test plugin misbehaves on its 20th call (`tests/native/misbehave.h`) in every format, and
/// what the fault report says of each in a child process.
const CRASHES: &[(&str, &str)] = &[
    ("NULL_DEREF", "Crashed: the plugin's process died of signal 11"),
    ("ABORT", "Crashed: the plugin's process died of signal 6"),
    ("HANG", "TimedOut"),
    ("OVERRUN", "Crashed: the plugin's process died of signal"),
];

fn host_env() {
    // The isolated plugins' host: the fxgraph program.
    fxgraph::nodes::native::set_host_program(PathBuf::from(env!("CARGO_BIN_EXE_fxgraph")));
}

#[test]
fn isolated_plugins_match_in_process_and_survive_crashes() {
    host_env();
    let input: Vec<f32> = (0..96000).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.8).collect();
    // The same bits in a child process as in process, for an SDK plugin and a LADSPA one.
    let mut nodes = vec![native(enhancer(), "")];
    if ladspa() {
        nodes.push("Ladspa(path: \"amp_1181.so\", label: \"amp\", controls: {\"Amps gain (dB)\": 6.0})".to_string());
    }
    for node in nodes {
        let isolated = format!("{}, isolation: Process)", &node[..node.len() - 1]);
        let a = run(&mut start(graph(&format!("\"n\": {node}"), &["n"])), &input);
        let b = run(&mut start(graph(&format!("\"n\": {isolated}"), &["n"])), &input);
        assert!(a == b, "{node}: isolated output differs");
    }
    // Crashers: contained; the rest of the graph plays on, the crashed node bypassed (dry).
    for &(variant, why) in CRASHES.iter().chain(&[("EXIT_IN_PROCESS", "exited with code 0"), ("SLEEP", "TimedOut")]) {
        let lib = cc("tests/native/variants.c", &format!("variant_{}", variant.to_lowercase()), &[variant]);
        let nodes = format!("\"pre\": Gain(gain_db: -6.0), \"bad\": {}", native(&lib, ", isolation: Process"));
        let mut rig = start(graph(&nodes, &["pre", "bad"]));
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        rig.engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
        let started = std::time::Instant::now();
        let out = run(&mut rig, &input);
        let gain = 10f32.powf(-6.0 / 20.0);
        assert!(out.iter().zip(&input).all(|(y, x)| (y - x * gain).abs() < 1e-6), "{variant}: the graph plays on, dry");
        let events = events.lock().expect("lock").clone();
        assert!(events.iter().any(|e| e.contains(why)), "{variant}: wanted {why:?} in {events:?}");
        assert!(rig.engine.metrics().nodes.iter().any(|n| n.name == "bad" && n.faults >= 1));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{variant}: {:?}", started.elapsed());
    }
    // In process, the same libraries load cleanly (running them there would end this test's process, as
    // README says).
    for variant in ["NULL_DEREF", "ABORT", "HANG", "EXIT_IN_PROCESS", "OVERRUN", "SLEEP"] {
        let lib = repo().join(format!("target/test-plugins/variant_{}.so", variant.to_lowercase()));
        fxgraph::nodes::native::describe(&lib).expect("loads and sets up in process");
    }
}

/// Threads that keep every core busy until dropped, as a parallel batch of renders or a compile would.
struct Busy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    /// Three spinning threads per core.
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..3 * cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A WebAssembly plugin that works about a millisecond a block (a counting loop), then halves its input.
/// Its budget (1 ms) makes the deadline two 5 ms ticks: a thread preempted inside it for that long passes
/// the deadline in wall time without having used it.
#[cfg(feature = "wasm")]
fn busy_wasm(dir: &Path) -> PathBuf {
    let text = r#"(module
      (memory (export "memory") 2)
      (data (i32.const 16) "\00\04\00\00\00\20\00\00")
      (func (export "fxg_abi_version") (result i32) (i32.const 1))
      (func (export "fxg_set_param") (param i32 f32) (result i32) (i32.const 0))
      (func (export "fxg_initialize") (param i32 i32 i32) (result i32) (i32.const 0))
      (func (export "fxg_buffers") (result i32) (i32.const 16))
      (func (export "fxg_start"))
      (func (export "fxg_process") (param $n i32) (result i32) (local $i i32) (local $k i32)
        (loop $work
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $work (i32.lt_u (local.get $k) (i32.const 1000000))))
        (loop $halve
          (f32.store (i32.add (i32.const 8192) (local.get $i))
            (f32.mul (f32.load (i32.add (i32.const 1024) (local.get $i))) (f32.const 0.5)))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br_if $halve (i32.lt_u (local.get $i) (i32.const 4096))))
        (i32.const 0))
      (func (export "fxg_stop"))
      (func (export "fxg_cleanup")))"#;
    let path = dir.join("busy.wasm");
    std::fs::write(&path, wat::parse_str(text).expect("module")).expect("write");
    std::fs::write(
        dir.join("busy.json"),
        r#"{"id": "test.busy", "name": "Busy", "version": "0.0.1", "abi_version": 1,
            "memory_limit_bytes": 1048576, "block_budget_us": 1000, "parameters": []}"#,
    )
    .expect("write");
    path
}

/// Renders `input` offline through `graph` (as `render` does: one thread, no real-time deadlines);
/// returns the output and the report.
fn render_offline(graph: Graph, input: &[f32]) -> (Vec<f32>, fxgraph::monitor::MetricsReport) {
    let (mut engine, mut audio) =
        Engine::new(graph, EngineOptions { max_block: 512, threads: 1, realtime: false, ..Default::default() })
            .expect("engine");
    let mut out = vec![0.0f32; input.len()];
    for (x, y) in input.chunks(1024).zip(out.chunks_mut(1024)) {
        audio.process_interleaved(x, y, 2);
        engine.update();
    }
    let report = engine.metrics();
    (out, report)
}

#[cfg(feature = "wasm")]
#[test]
fn a_busy_machine_changes_no_bit_of_a_render_and_faults_no_healthy_plugin() {
    // The shipped filter (stateful: a bypassed block or a fresh instance changes the bits after it), the
    // busy WebAssembly plugin, the SDK enhancer and the busy C plugin in child processes: each busy plugin
    // halves its input, so a block bypassed dry would change the output too.
    host_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = busy_wasm(dir.path());
    let worker = cc("tests/native/variants.c", "variant_work", &["WORK=1000000"]);
    let filter = repo().join("plugins/wasm/biquad_filter.wasm");
    let nodes = format!(
        "\"filter\": Wasm(path: \"{}\", config: {{\"cutoff_hz\": 5000.0}}), \"busy\": Wasm(path: \"{}\"), \
         \"enh\": {}, \"work\": {}",
        filter.display(),
        busy.display(),
        native(enhancer(), ", isolation: Process, config: {\"bass_gain_db\": 6.0}"),
        native(&worker, ", isolation: Process")
    );
    let chain = ["filter", "busy", "enh", "work"];
    let input = sine(440.0, 0.5, 2 * 48000);
    let (idle, report) = render_offline(graph(&nodes, &chain), &input);
    assert!(report.nodes.iter().all(|n| !n.faulted()), "idle: {:?}", report.nodes);
    assert!(idle.iter().any(|&v| v != 0.0));
    // Under load until the load has made some plugin call late, at most five times: every time, the same
    // bits and no fault.
    let mut late = 0;
    for attempt in 0..5 {
        let _busy = Busy::start();
        let (loaded, report) = render_offline(graph(&nodes, &chain), &input);
        let differ = idle.iter().zip(&loaded).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "attempt {attempt}: {differ} samples differ from the idle render");
        for n in &report.nodes {
            assert!(!n.faulted(), "attempt {attempt}: node {} faulted under load: {n:?}", n.name);
        }
        late = report.nodes.iter().map(|n| n.preempted_calls).sum::<u64>();
        if late > 0 {
            break;
        }
    }
    assert!(late > 0, "the load never made a plugin call pass its deadline: this test checked nothing");
}

#[test]
fn native_and_isolated_plugins_back_off_are_recreated_and_bypassed_for_good_after_five_faults() {
    host_env();
    let lib = cc("tests/native/variants.c", "variant_fail", &["FAIL"]);
    let input = sine(440.0, 0.5, 512 * 80);
    for isolation in ["InProcess", "Process"] {
        let mut rig = start(graph(&format!("\"p\": {}", native(&lib, &format!(", isolation: {isolation}"))), &["p"]));
        let out = run(&mut rig, &input);
        // Every call fails, so every block is the node's dry input, never the plugin's half.
        assert!(out == input, "{isolation}: a faulted block's output is its dry input");
        let report = rig.engine.metrics();
        let node = &report.nodes[0];
        assert_eq!(node.faults, 5, "{isolation}: bypassed for good after the fifth fault");
        assert_eq!(node.bypassed_blocks, 80, "{isolation}: every block bypassed");
        // A faulted instance is never called again, so each fault after the first is a new instance's
        // first call, and the waits before them grow: the backoff.
        let blocks: Vec<f64> = node.fault_times_s.iter().map(|t| t * 48000.0 / 512.0).collect();
        assert_eq!(blocks.len(), 5, "{isolation}: {blocks:?}");
        let gaps: Vec<f64> = blocks.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= 2.0 && gaps.windows(2).all(|g| g[1] >= 2.0 * g[0] - 1.0), "{isolation}: {blocks:?}");
        let texts: Vec<String> = rig.engine.messages().iter().map(|m| m.text.raw().to_string()).collect();
        assert!(texts.iter().any(|t| t.contains("bypassed for good")), "{isolation}: {texts:?}");
    }
}

/// Whether lilv and LSP's LV2 plugins (`liblilv-0-0`, `lsp-plugins-lv2`) are installed (see [`installed`]).
fn lsp_lv2() -> bool {
    let have = Path::new("/usr/lib/lv2/lsp-plugins.lv2").is_dir()
        && ["/usr/lib/x86_64-linux-gnu/liblilv-0.so.0", "/usr/lib/liblilv-0.so.0"]
            .iter()
            .any(|p| Path::new(p).exists());
    installed(have, "liblilv-0-0 lsp-plugins-lv2")
}

const LSP: &str = "http://lsp-plug.in/plugins/lv2/";

/// Whether x42's bundle `name` (`x42-plugins`) is installed; CI must have it.
fn x42(name: &str) -> bool {
    installed(Path::new("/usr/lib/lv2").join(format!("{name}.lv2")).is_dir(), "x42-plugins")
}

/// The cookbook's peaking EQ magnitude at 48 kHz, written out here.
fn peak_db(f0: f64, gain_db: f64, q: f64, f: f64) -> f64 {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = std::f64::consts::TAU * f0 / 48000.0;
    let (alpha, c) = (w0.sin() / (2.0 * q), w0.cos());
    let b = [1.0 + alpha * a, -2.0 * c, 1.0 - alpha * a];
    let d = [1.0 + alpha / a, -2.0 * c, 1.0 - alpha / a];
    let w = std::f64::consts::TAU * f / 48000.0;
    let mag =
        |p: [f64; 3]| (p[0] + p[1] * w.cos() + p[2] * (2.0 * w).cos()).hypot(p[1] * w.sin() + p[2] * (2.0 * w).sin());
    db(mag(b) / mag(d))
}

#[test]
fn an_lv2_parametric_eq_has_its_declared_cookbook_response() {
    if !lsp_lv2() {
        return;
    }
    // LSP's parametric EQ, band 0 a bell in its "APO (DR)" mode: the cookbook's peaking filter (+6 dB at
    // 1 kHz, Q 1.5, the gain as a linear factor), measured on sines in a stereo graph (one instance per
    // channel).
    let node = format!(
        r#""eq": Lv2(uri: "{LSP}para_equalizer_x16_mono", controls: {{"ft_0": 1.0, "fm_0": 6.0, "f_0": 1000.0, "g_0": {}, "q_0": 1.5}})"#,
        10f64.powf(6.0 / 20.0)
    );
    let mut rig = start(graph(&node, &["eq"]));
    for f in [60.0, 300.0, 700.0, 1000.0, 1500.0, 4000.0, 12000.0] {
        let x = sine(f, 0.25, 48000);
        let y = run(&mut rig, &x);
        let got = db(peak(&y, 24000) / 0.25);
        assert!(y.chunks(2).all(|f| f[0] == f[1]), "{f} Hz: the two channels' instances differ");
        let want = peak_db(1000.0, 6.0, 1.5, f);
        // Within 0.001 dB up to the centre; above it LSP's bell falls a little faster (0.06 dB at 4 kHz).
        let tolerance = if f <= 1000.0 { 0.002 } else { 0.1 };
        assert!((got - want).abs() < tolerance, "{f} Hz: {got:.4} dB, the cookbook's {want:.4} dB");
    }
    assert_eq!(rig.engine.metrics().nodes.iter().find(|n| n.name == "eq").map(|n| n.faults), Some(0));
}

/// LSP's sidechain compressor with its `sidechain` port fed from a second graph input: a quiet signal
/// passes while the key is silent and is pressed down while the key is loud.
#[test]
fn an_lv2_sidechain_compressor_is_keyed_by_its_sidechain_port() {
    if !lsp_lv2() {
        return;
    }
    let text = format!(
        r#"(sample_rate: 48000, inputs: {{"main": 2, "key": 2}}, outputs: {{"out": 2}},
        nodes: {{ "c": Lv2(uri: "{LSP}sc_compressor_stereo", controls: {{"sct": 2.0, "al": 0.1, "cr": 10.0, "at": 1.0, "rt": 50.0}}) }},
        edges: [("input.main", "c"), ("input.key", "c.sidechain"), ("c", "output.out")])"#
    );
    let g = Graph::parse(&text, "sc.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let frames = 48000;
    let main: Vec<f32> = sine(1000.0, 0.03, frames).into_iter().step_by(2).collect();
    let level = |key_amp: f64| {
        let key: Vec<f32> = sine(200.0, key_amp, frames).into_iter().step_by(2).collect();
        let (_e, mut audio) =
            Engine::new(g.clone(), EngineOptions { max_block: 512, threads: 1, ..Default::default() }).expect("engine");
        let x: Vec<f32> = [&main[..], &main, &key, &key].concat();
        let mut y = vec![0.0f32; 2 * frames];
        audio.process(&AudioIn::new(&x, frames, 4, frames), &mut AudioOut::new(&mut y, frames, 2, frames));
        let tail = &y[frames / 2..frames];
        db(tail.iter().fold(0.0f64, |p, v| p.max(f64::from(*v).abs())) / 0.03)
    };
    let (quiet, keyed) = (level(0.0), level(0.5));
    assert!(quiet.abs() < 0.5, "with a silent key the signal passes: {quiet:.2} dB");
    // The key's RMS (its default detector) is 10.97 dB over the -20 dB threshold; at 10:1 that is 9.87 dB
    // of gain reduction.
    let want = -(20.0 * (0.5 / 2f64.sqrt()).log10() + 20.0) * (1.0 - 1.0 / 10.0);
    assert!((keyed - want).abs() < 0.3, "a loud key presses the signal down: {keyed:.2} dB, want {want:.2} dB");
}

/// A plugin's latency port is the node's latency, compensated: LSP's compressor with 5 ms of lookahead,
/// transparent below its threshold, beside a dry path sums to twice the input.
#[test]
fn an_lv2_plugin_s_latency_is_reported_and_compensated() {
    if !lsp_lv2() {
        return;
    }
    let text = format!(
        r#"(sample_rate: 48000, channels: 2,
        nodes: {{ "c": Lv2(uri: "{LSP}compressor_stereo", controls: {{"sla": 5.0, "al": 1.0}}), "dry": Gain(gain_db: 0.0) }},
        edges: [("input", "c"), ("input", "dry"), ("c", "output"), ("dry", "output")])"#
    );
    let g = Graph::parse(&text, "lat.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let mut rig = start(g);
    rig.audio.take_messages();
    assert_eq!(rig.engine.latency_frames(), 240);
    assert_eq!(rig.engine.plan().compensations, vec![("dry".to_string(), "output".to_string(), 240)]);
    let x = sine(997.0, 0.1, 48000);
    let y = run(&mut rig, &x);
    // After the latency, the output is the input, delayed, twice.
    let err = y[2 * 24000..]
        .iter()
        .zip(&x[2 * (24000 - 240)..])
        .fold(0.0f64, |e, (y, x)| e.max(f64::from(y - 2.0 * x).abs()));
    assert!(db(err / 0.2) < -60.0, "misaligned or not transparent: {:.1} dB", db(err / 0.2));
}

/// x42's stereo balance (ports without groups: "In Left" and "In Right" are one stereo bus): its trim,
/// phase invert and per-channel delay are exact.
#[test]
fn an_x42_lv2_plugin_gains_inverts_and_delays_exactly() {
    if !(lsp_lv2() && x42("balance")) {
        return;
    }
    let node = r#""b": Lv2(uri: "http://gareus.org/oss/lv2/balance", controls: {"trim": 6.0, "phaseL": 1.0, "delayRight": 10.0})"#;
    let mut rig = start(graph(node, &["b"]));
    let x = sine(440.0, 0.25, 96000);
    let y = run(&mut rig, &x);
    let gain = 10f64.powf(6.0 / 20.0);
    for n in 48000..96000 {
        let (l, r) = (f64::from(y[2 * n]), f64::from(y[2 * n + 1]));
        assert!((l + gain * f64::from(x[2 * n])).abs() < 1e-5, "frame {n}: left {l}");
        assert!((r - gain * f64::from(x[2 * (n - 10) + 1])).abs() < 1e-5, "frame {n}: right {r}");
    }
}

#[test]
fn lv2_plugins_that_are_missing_need_what_fxgraph_lacks_or_get_bad_controls_are_located_errors() {
    if !lsp_lv2() {
        return;
    }
    let bad = |node: &str| {
        let text = format!(
            "(sample_rate: 48000, channels: 2,\n nodes: {{ \"p\": {node} }},\n edges: [(\"input\", \"p\"), (\"p\", \"output\")])"
        );
        Graph::parse(&text, "lv2.ron", "/".as_ref()).expect_err("refused").to_string()
    };
    let e = bad(r#"Lv2(uri: "http://example.org/no-such-plugin")"#);
    assert!(e.starts_with("lv2.ron:2:") && e.contains("node \"p\"") && e.contains("no LV2 plugin has the URI"), "{e}");
    let e = bad(&format!(r#"Lv2(uri: "{LSP}compressor_stereo", controls: {{"ratio": 4.0}})"#));
    assert!(e.contains("controls.ratio") && e.contains("it has: enabled, g_in"), "{e}");
    let e = bad(&format!(r#"Lv2(uri: "{LSP}compressor_stereo", controls: {{"cr": 500.0}})"#));
    assert!(e.contains("controls.cr") && e.contains("100"), "{e}");
    let e = bad(&format!(r#"Lv2(uri: "{LSP}compressor_stereo", controls: {{"sct": 0.5}})"#));
    assert!(e.contains("whole number"), "{e}");
    // A plugin that requires a feature fxgraph does not give (the level plugin, said to need instance access).
    let bundle = repo().join("target/test-plugins/lv2_needs.lv2");
    let description = format!("lv2:requiredFeature <http://lv2plug.in/ns/ext/instance-access> ;\n{LEVEL_PORTS}");
    lv2_bundle("tests/lv2/hostile.c", &[], &bundle, "urn:fxgraph:test:needs", &description);
    fxgraph::nodes::native::lv2::load_bundle(&bundle).expect("bundle");
    let e = bad(r#"Lv2(uri: "urn:fxgraph:test:needs")"#);
    assert!(e.contains("requires the LV2 feature http://lv2plug.in/ns/ext/instance-access"), "{e}");
    let e = fxgraph::nodes::native::lv2::load_bundle(&repo().join("tests")).expect_err("not a bundle");
    assert!(e.contains("is not an LV2 bundle"), "{e}");
}

#[test]
fn fxgraph_plugin_lv2_lists_plugins_and_shows_one_s_buses_and_ports() {
    if !lsp_lv2() {
        return;
    }
    let fx = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_fxgraph")).args(args).output().expect("fxgraph");
    let o = fx(&["plugin", "lv2"]);
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && list.contains(&format!("{LSP}sc_compressor_stereo  LSP Sidechain Compressor Stereo")),
        "{list}"
    );
    let o = fx(&["plugin", "lv2", &format!("{LSP}sc_compressor_stereo")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("inputs: in (2 ch), sidechain (2 ch)\noutputs: out (2 ch)"), "{text}");
    assert!(text.contains("latency: reported by port 52 (out_latency)"), "{text}");
    assert!(
        text.contains(
            "sct \"Sidechain type\" 0 to 2, default 0, integer: 0 = Feed-forward, 1 = Feed-back, 2 = External"
        ),
        "{text}"
    );
    let o = fx(&["plugin", "lv2", "http://example.org/none"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no LV2 plugin has the URI"));
}

/// The same graph's output in process and with every plugin node given `isolation: Process`, and their
/// latencies.
fn in_and_out_of_process(text: &str, input: &[f32], inputs: usize) -> [(Vec<f32>, usize); 2] {
    host_env();
    let isolated = text.replace("/*iso*/", ", isolation: Process");
    assert_ne!(isolated, text, "the graph marks where isolation goes");
    [text.to_string(), isolated].map(|t| {
        let g = Graph::parse(&t, "iso.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let (engine, mut audio) =
            Engine::new(g, EngineOptions { max_block: 512, threads: 1, ..Default::default() }).expect("engine");
        let frames = input.len() / inputs;
        let mut y = vec![0.0f32; 2 * frames];
        audio.process(&AudioIn::new(input, frames, inputs, frames), &mut AudioOut::new(&mut y, frames, 2, frames));
        (y, engine.latency_frames())
    })
}

#[test]
fn lv2_plugins_give_the_same_bits_and_latency_in_a_child_process() {
    if !lsp_lv2() {
        return;
    }
    let frames = 48000;
    let x: Vec<f32> = sine(1000.0, 0.3, frames).into_iter().step_by(2).collect();
    let key: Vec<f32> = sine(200.0, 0.5, frames).into_iter().step_by(2).collect();
    let stereo: Vec<f32> = [&x[..], &x].concat();
    // One instance per channel (a mono EQ), a plugin with latency, and one with a sidechain bus.
    let cases = [
        (
            format!(
                r#"(sample_rate: 48000, channels: 2, nodes: {{ "eq": Lv2(uri: "{LSP}para_equalizer_x16_mono", controls: {{"ft_0": 1.0, "g_0": 2.0}}/*iso*/) }},
                edges: [("input", "eq"), ("eq", "output")])"#
            ),
            stereo.clone(),
            2,
            0,
        ),
        (
            format!(
                r#"(sample_rate: 48000, channels: 2, nodes: {{ "c": Lv2(uri: "{LSP}compressor_stereo", controls: {{"sla": 5.0, "cr": 4.0}}/*iso*/) }},
                edges: [("input", "c"), ("c", "output")])"#
            ),
            stereo.clone(),
            2,
            240,
        ),
        (
            format!(
                r#"(sample_rate: 48000, inputs: {{"main": 2, "key": 2}}, outputs: {{"out": 2}},
                nodes: {{ "c": Lv2(uri: "{LSP}sc_compressor_stereo", controls: {{"sct": 2.0, "cr": 10.0}}/*iso*/) }},
                edges: [("input.main", "c"), ("input.key", "c.sidechain"), ("c", "output.out")])"#
            ),
            [&x[..], &x, &key, &key].concat(),
            4,
            0,
        ),
    ];
    for (text, input, inputs, latency) in cases {
        let [(a, la), (b, lb)] = in_and_out_of_process(&text, &input, inputs);
        assert!(a.iter().any(|v| v.abs() > 0.01), "{text}: silent");
        assert!(a == b, "{text}: the isolated output differs");
        assert_eq!((la, lb), (latency, latency), "{text}");
    }
}

/// The workspace's CLAP test bundle (`tests/clap/plugins.c`), built with `defines`.
fn clap_bundle(defines: &[&str]) -> PathBuf {
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!("clap_test{}", defines.iter().map(|d| format!("_{}", d.to_lowercase())).collect::<String>());
    // Built under a name of its own, then renamed into place: tests build the same bundle side by side.
    let build = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let lib = cc("tests/clap/plugins.c", &format!("{name}.{}.{build}", std::process::id()), defines);
    let bundle = lib.with_file_name(format!("{name}.clap"));
    std::fs::rename(&lib, &bundle).expect("rename");
    bundle
}

fn clap_node(bundle: &Path, id: &str, rest: &str) -> String {
    format!("Clap(path: {:?}, id: \"org.fxgraph.test.{id}\"{rest})", bundle.display().to_string())
}

fn status(rig: &mut Rig, node: &str) -> Vec<(String, f64)> {
    rig.engine.metrics().nodes.iter().find(|n| n.name == node).expect("node").status.clone()
}

/// The CLAP gain plugin applies `10^(dB/20)` in double precision to each sample: the host's buffers,
/// events and parameter ids carry exactly what was set. A stepped parameter set between two callbacks
/// changes the output from the first frame of the next; read-only parameters come back as status
/// numbers; the plugin saw every call on the thread CLAP's rules name, and ran its channels as tasks of
/// the host's thread pool.
#[test]
fn a_clap_gain_plugin_is_exact_its_events_land_on_their_frame_and_its_readouts_come_back() {
    let bundle = clap_bundle(&[]);
    let node = format!("\"g\": {}", clap_node(&bundle, "gain", ", params: {\"gain\": -6.0}"));
    for isolation in ["", ", isolation: Process"] {
        host_env();
        let node = node.replace(", params", &format!("{isolation}, params"));
        let mut rig = start(graph(&node, &["g"]));
        let x = sine(997.0, 0.5, 48000);
        let g = 10f64.powf(-6.0 / 20.0);
        // 100-frame callbacks; after the third, invert.
        let mut y = vec![0.0f32; x.len()];
        for (i, (a, b)) in x.chunks(200).zip(y.chunks_mut(200)).enumerate() {
            if i == 3 {
                rig.engine.set("g", "invert", 1.0).expect("set");
            }
            rig.audio.process_interleaved(a, b, 2);
            rig.engine.update();
        }
        for (n, (a, b)) in x.iter().zip(&y).enumerate() {
            let sign = if n < 600 { 1.0 } else { -1.0 };
            assert_eq!(*b, (f64::from(*a) * g * sign) as f32, "{isolation}: sample {n}");
        }
        let s = status(&mut rig, "g");
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap_or(f64::NAN);
        let calls = 48000.0 / 100.0;
        assert!((get("peak") - 0.5 * g).abs() < 1e-3, "{isolation}: {s:?}");
        assert_eq!(get("rule_breaks"), 0.0, "{isolation}: {s:?}");
        assert_eq!(get("pool_tasks"), 2.0 * calls, "{isolation}: {s:?}");
        assert_eq!(rig.engine.metrics().nodes.iter().find(|n| n.name == "g").map(|n| n.faults), Some(0));
    }
}

/// The CLAP sidechain compressor, keyed through its `sidechain` port from a second graph input, presses
/// the signal down by what its detector says: the key's mean square (0.125 for a 0.5 sine) is 10.97 dB
/// over the -20 dB threshold, 8.23 dB of gain reduction at 4:1; a silent key passes the signal. The same
/// bits in a child process.
#[test]
fn a_clap_sidechain_compressor_is_keyed_by_its_sidechain_port_in_and_out_of_process() {
    let bundle = clap_bundle(&[]);
    let frames = 48000;
    let main: Vec<f32> = sine(1000.0, 0.1, frames).into_iter().step_by(2).collect();
    let text = format!(
        r#"(sample_rate: 48000, inputs: {{"main": 2, "key": 2}}, outputs: {{"out": 2}},
        nodes: {{ "c": {} }},
        edges: [("input.main", "c"), ("input.key", "c.sidechain"), ("c", "output.out")])"#,
        clap_node(&bundle, "compressor", ", params: {\"threshold\": -20.0, \"ratio\": 4.0}/*iso*/")
    );
    let want = -(10.0 * 0.125f64.log10() + 20.0) * (1.0 - 1.0 / 4.0);
    for (key_amp, want) in [(0.0, 0.0), (0.5, want)] {
        let key: Vec<f32> = sine(3000.0, key_amp, frames).into_iter().step_by(2).collect();
        let input = [&main[..], &main, &key, &key].concat();
        let [(a, _), (b, _)] = in_and_out_of_process(&text, &input, 4);
        assert!(a == b, "key {key_amp}: the isolated output differs");
        let tail = &a[frames / 2..frames];
        let got = db(tail.iter().fold(0.0f64, |p, v| p.max(f64::from(*v).abs())) / 0.1);
        assert!((got - want).abs() < 0.02, "key {key_amp}: {got:.3} dB, want {want:.3} dB");
    }
}

/// The CLAP delay's latency (the latency extension: 100 frames) is the node's, and compensated beside a
/// dry path: the sum is the input, delayed, twice, exactly.
#[test]
fn a_clap_plugin_s_latency_is_reported_and_compensated() {
    let bundle = clap_bundle(&[]);
    let text = format!(
        r#"(sample_rate: 48000, channels: 2,
        nodes: {{ "d": {}, "dry": Gain(gain_db: 0.0) }},
        edges: [("input", "d"), ("input", "dry"), ("d", "output"), ("dry", "output")])"#,
        clap_node(&bundle, "delay", "/*iso*/")
    );
    let frames = 4800;
    let left: Vec<f32> = sine(440.0, 0.25, frames).into_iter().step_by(2).collect();
    let [(a, la), (b, lb)] = in_and_out_of_process(&text, &[&left[..], &left].concat(), 2);
    assert_eq!((la, lb), (100, 100));
    assert!(a == b, "the isolated output differs");
    // Planar out: left then right, each the input delayed by 100 frames, twice.
    for (n, got) in a.iter().enumerate() {
        let k = n % frames;
        let want = if k < 100 { 0.0 } else { 2.0 * left[k - 100] };
        assert_eq!(*got, want, "frame {k} of channel {}", n / frames);
    }
}

#[test]
fn clap_plugins_that_are_missing_or_get_bad_params_are_located_errors_and_the_bundle_is_described() {
    let bundle = clap_bundle(&[]);
    let bad = |node: &str| {
        let text = format!(
            "(sample_rate: 48000, channels: 2,\n nodes: {{ \"p\": {node} }},\n edges: [(\"input\", \"p\"), (\"p\", \"output\")])"
        );
        Graph::parse(&text, "clap.ron", "/".as_ref()).expect_err("refused").to_string()
    };
    let e = bad(&clap_node(&bundle, "nothing", ""));
    assert!(e.starts_with("clap.ron:2:") && e.contains("node \"p\"") && e.contains("has no CLAP plugin"), "{e}");
    assert!(e.contains("it has: org.fxgraph.test.gain, org.fxgraph.test.compressor, org.fxgraph.test.delay"), "{e}");
    let e = bad(&clap_node(&bundle, "gain", ", params: {\"volume\": 1.0}"));
    assert!(e.contains("params.volume") && e.contains("it has: gain, invert"), "{e}");
    let e = bad(&clap_node(&bundle, "gain", ", params: {\"gain\": 30.0}"));
    assert!(e.contains("params.gain") && e.contains("24"), "{e}");
    let e = bad(&clap_node(&bundle, "gain", ", params: {\"invert\": 0.5}"));
    assert!(e.contains("params.invert") && e.contains("toggle"), "{e}");
    let e = bad(&clap_node(&bundle, "gain", ", params: {\"peak\": 1.0}"));
    assert!(e.contains("params.peak"), "a read-only parameter is not set: {e}");
    let e = bad(&format!("Clap(path: {:?}, id: \"x\")", c_gain().display().to_string()));
    assert!(e.contains("is not a CLAP plugin (no clap_entry symbol)"), "{e}");
    let fx = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_fxgraph")).args(args).output().expect("fxgraph");
    let o = fx(&["plugin", "clap", &bundle.display().to_string()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("Test sidechain compressor (org.fxgraph.test.compressor) 1.0.0 by fxgraph"), "{text}");
    assert!(text.contains("inputs: in (2 ch, \"Main In\", main), sidechain (2 ch, \"Sidechain\")"), "{text}");
    assert!(text.contains("7  readout gain_reduction \"Gain reduction\""), "{text}");
    assert!(text.contains("extensions: clap.audio-ports, clap.latency"), "{text}");
    let o = fx(&["plugin", "clap", "/nonexistent.clap"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Misbehaving CLAP builds in a child process: a crash, an abort, an endless loop and a write far past
/// the output buffer are faults, the node bypassed (dry) and the graph playing on; heap calls in process
/// are reported; NaN output is replaced with silence and counted, in process and out.
#[test]
fn misbehaving_clap_plugins_are_contained_in_a_child_process() {
    host_env();
    let input: Vec<f32> = (0..96000).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.8).collect();
    for &(variant, why) in CRASHES {
        let bundle = clap_bundle(&[variant]);
        let nodes =
            format!("\"pre\": Gain(gain_db: -6.0), \"bad\": {}", clap_node(&bundle, "gain", ", isolation: Process"));
        let mut rig = start(graph(&nodes, &["pre", "bad"]));
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        rig.engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
        let out = run(&mut rig, &input);
        let gain = 10f32.powf(-6.0 / 20.0);
        assert!(out.iter().zip(&input).all(|(y, x)| (y - x * gain).abs() < 1e-6), "{variant}: the graph plays on, dry");
        let events = events.lock().expect("lock").clone();
        assert!(events.iter().any(|e| e.contains(why)), "{variant}: wanted {why:?} in {events:?}");
        assert!(rig.engine.metrics().nodes.iter().any(|n| n.name == "bad" && n.faults >= 1));
    }
    // A plugin that allocates and frees in every process call (CLAP says process must be real-time safe):
    // its output is right, and the heap calls are reported, counted in process and in the child.
    for (defines, heap) in [(&[][..], false), (&["ALLOC"][..], true)] {
        let bundle = clap_bundle(defines);
        for isolation in ["", ", isolation: Process"] {
            let mut rig = start(graph(&format!("\"g\": {}", clap_node(&bundle, "gain", isolation)), &["g"]));
            let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = events.clone();
            rig.engine.subscribe(move |e| sink.lock().expect("lock").push(e.to_string()));
            let out = run(&mut rig, &input);
            assert!(out == input, "{defines:?}{isolation}: the output is the input");
            let events = events.lock().expect("lock").clone();
            let said = events.iter().any(|e| {
                e.contains("heap calls (malloc, free, new, delete) on the audio thread so far, though the plugin claims to be real-time safe")
            });
            assert_eq!(said, heap, "{defines:?}{isolation}: {events:?}");
        }
    }
    let bundle = clap_bundle(&["NAN_OUT"]);
    for isolation in ["", ", isolation: Process"] {
        let mut rig = start(graph(&format!("\"bad\": {}", clap_node(&bundle, "gain", isolation)), &["bad"]));
        let out = run(&mut rig, &input);
        assert!(out.iter().all(|v| v.is_finite()), "{isolation}");
        for (n, (y, x)) in out.chunks(2).zip(input.chunks(2)).enumerate() {
            let want = if n % 2 == 0 { x } else { &[0.0, 0.0][..] };
            assert_eq!(y, want, "{isolation}: frame {n}: even frames pass, odd ones are silence");
        }
        let node = rig.engine.metrics().nodes.into_iter().find(|n| n.name == "bad").expect("node");
        assert_eq!(node.replaced_samples, input.len() as u64 / 2, "{isolation}: every odd frame of both channels");
    }
}

/// Builds an LV2 test plugin from C `source` with `defines` into the folder `bundle`, with Turtle saying
/// `uri` is a plugin whose binary it is, and `description` (ports, features) of it.
fn lv2_bundle(source: &str, defines: &[&str], bundle: &Path, uri: &str, description: &str) {
    let name = bundle.file_stem().and_then(|n| n.to_str()).expect("name");
    let lib = cc(source, &format!("{name}-{}", defines.join("-").to_lowercase()), defines);
    std::fs::create_dir_all(bundle).expect("mkdir");
    std::fs::rename(&lib, bundle.join("plugin.so")).expect("move");
    let prefixes = "@prefix lv2: <http://lv2plug.in/ns/lv2core#> .\n@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n\
                    @prefix doap: <http://usefulinc.com/ns/doap#> .\n";
    let manifest = format!("{prefixes}<{uri}> a lv2:Plugin ; lv2:binary <plugin.so> ; rdfs:seeAlso <plugin.ttl> .\n");
    std::fs::write(bundle.join("manifest.ttl"), manifest).expect("write");
    let plugin = format!("{prefixes}<{uri}> a lv2:Plugin ; doap:name \"{name}\" ;\n{description} .\n");
    std::fs::write(bundle.join("plugin.ttl"), plugin).expect("write");
}

/// The level plugin's ports (`tests/lv2/hostile.c`).
const LEVEL_PORTS: &str = "lv2:port [ a lv2:AudioPort, lv2:InputPort ; lv2:index 0 ; lv2:symbol \"in\" ; lv2:name \"In\" ] ,\n\
      [ a lv2:AudioPort, lv2:OutputPort ; lv2:index 1 ; lv2:symbol \"out\" ; lv2:name \"Out\" ] ,\n\
      [ a lv2:ControlPort, lv2:InputPort ; lv2:index 2 ; lv2:symbol \"level\" ; lv2:name \"Level\" ;\n\
        lv2:default 1.0 ; lv2:minimum 0.0 ; lv2:maximum 2.0 ]";

/// The LV2 test plugin (`tests/lv2/hostile.c`) built with `define` into a bundle of its own, alone in a
/// folder for `LV2_PATH`; returns the folder. It says it is hard-real-time capable.
fn hostile_lv2(define: Option<&str>) -> PathBuf {
    let folder =
        repo().join("target/test-plugins").join(format!("hostile_{}.lv2path", define.unwrap_or("none").to_lowercase()));
    let description = format!("lv2:optionalFeature lv2:hardRTCapable ;\n{LEVEL_PORTS}");
    lv2_bundle(
        "tests/lv2/hostile.c",
        define.as_slice(),
        &folder.join("hostile.lv2"),
        "urn:fxgraph:test:hostile",
        &description,
    );
    folder
}

/// Misbehaving LV2 builds, rendered by `fxgraph render` with the bundle on `LV2_PATH`: in a child process
/// a crash, an abort, an endless loop and a write far past the output buffer are faults, the node is
/// bypassed (dry), the render is the dry graph's bit for bit and says it had faults (exit code 3); heap
/// calls in `run` (it claims to be hard-real-time capable) are reported; NaN output is replaced with
/// silence and counted, in process and out. A healthy build gives the dry bits and no report.
#[test]
fn misbehaving_lv2_plugins_are_contained_in_a_child_process() {
    if !lsp_lv2() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let render = |node: &str, bundle: Option<&Path>, name: &str| {
        let (nodes, edges) = if node.is_empty() {
            (String::new(), "(\"pre\", \"output\")")
        } else {
            (format!(", \"p\": {node}"), "(\"pre\", \"p\"), (\"p\", \"output\")")
        };
        let text = format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"pre\": Gain(gain_db: -6.0){nodes} }},\n\
             edges: [(\"input\", \"pre\"), {edges}])"
        );
        let g = dir.path().join(format!("{name}.ron"));
        std::fs::write(&g, text).expect("write");
        let out = dir.path().join(format!("{name}.wav"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fxgraph"));
        cmd.args(["render", "--seconds", "2"]).arg(&g).arg("-o").arg(&out);
        if let Some(b) = bundle {
            cmd.env("LV2_PATH", b);
        }
        let o = cmd.output().expect("fxgraph");
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), std::fs::read(&out).unwrap_or_default())
    };
    let (code, err, dry) = render("", None, "dry");
    assert_eq!(code, Some(0), "{err}");
    let node = "Lv2(uri: \"urn:fxgraph:test:hostile\"/*iso*/)";
    let healthy = hostile_lv2(None);
    for iso in ["", ", isolation: Process"] {
        let (code, err, wav) = render(&node.replace("/*iso*/", iso), Some(&healthy), "healthy");
        assert_eq!(code, Some(0), "{iso}: {err}");
        assert!(!err.contains("heap calls"), "{iso}: {err}");
        assert!(wav == dry, "{iso}: a healthy plugin at level 1 gives the dry bits");
    }
    for &(variant, why) in CRASHES {
        let bundle = hostile_lv2(Some(variant));
        let (code, err, wav) =
            render(&node.replace("/*iso*/", ", isolation: Process"), Some(&bundle), &variant.to_lowercase());
        assert_eq!(code, Some(3), "{variant}: {err}");
        assert!(err.contains(why) && err.contains("plugin faults changed this render"), "{variant}: {err}");
        assert!(wav == dry, "{variant}: bypassed, the node passes the dry signal");
    }
    // A plugin that says it is hard-real-time capable and allocates and frees in every run: the render is
    // right, and says so.
    let bundle = hostile_lv2(Some("ALLOC"));
    for iso in ["", ", isolation: Process"] {
        let (code, err, wav) = render(&node.replace("/*iso*/", iso), Some(&bundle), "alloc");
        assert_eq!(code, Some(0), "{iso}: {err}");
        assert!(wav == dry, "{iso}");
        assert!(err.contains("heap calls (malloc, free, new, delete) on the audio thread so far, though the plugin claims to be real-time safe"), "{iso}: {err}");
    }
    let bundle = hostile_lv2(Some("NAN_OUT"));
    for iso in ["", ", isolation: Process"] {
        let (code, err, wav) = render(&node.replace("/*iso*/", iso), Some(&bundle), "nan");
        assert_eq!(code, Some(3), "{iso}: {err}");
        // Every other frame of two seconds, both channels.
        assert!(
            err.contains("node \"p\" (Lv2): 96000 non-finite output samples replaced with silence"),
            "{iso}: {err}"
        );
        assert_eq!(wav.len(), dry.len(), "{iso}");
    }
}

/// An LV2 plugin's own presets (x42's autotune ships two): a preset's values are the node's, `controls`
/// override them, a preset that is not one of the plugin's is a located error listing them, and
/// `fxgraph plugin lv2 URI` lists them.
#[test]
fn an_lv2_plugin_s_own_presets_set_its_controls() {
    if !(lsp_lv2() && x42("fat1")) {
        return;
    }
    let graph = |rest: &str| {
        let text = format!(
            "(sample_rate: 48000, channels: 1,\n nodes: {{ \"p\": Lv2(uri: \"http://gareus.org/oss/lv2/fat1\"{rest}) }},\n edges: [(\"input\", \"p\"), (\"p\", \"output\")])"
        );
        Graph::parse(&text, "fat.ron", "/".as_ref())
    };
    let value = |rest: &str, key: &str| {
        let (mut engine, _audio) =
            Engine::new(graph(rest).unwrap_or_else(|e| panic!("{e}")), EngineOptions::default()).expect("engine");
        match engine.get("p", key).expect("get") {
            ParamValue::Number(v) => v,
            other => panic!("{other:?}"),
        }
    };
    // The "Live" preset (presets.ttl in x42's bundle): correction 0.84 (as an f32), fast mode on.
    assert_eq!(value(", preset: \"Live\"", "corr"), f64::from(0.84f32));
    assert_eq!(value(", preset: \"Live\"", "fastmode"), 1.0);
    assert_eq!(value("", "fastmode"), 0.0, "the default");
    assert_eq!(value(", preset: \"Live\", controls: {\"corr\": 0.5}", "corr"), 0.5, "controls override the preset");
    assert_eq!(value(", preset: \"Live\", controls: {\"corr\": 0.5}", "fastmode"), 1.0);
    let e = graph(", preset: \"Loud\"").expect_err("refused").to_string();
    assert!(
        e.starts_with("fat.ron:2:") && e.contains("preset") && e.contains("it has: \"Live\", \"Slightly Corrected\""),
        "{e}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["plugin", "lv2", "http://gareus.org/oss/lv2/fat1"])
        .output()
        .expect("fxgraph");
    assert!(String::from_utf8_lossy(&o.stdout).contains("presets: \"Live\", \"Slightly Corrected\""));
}

/// The LV2 worker test plugin (`tests/lv2/worker.c`) in a bundle of its own, loaded into this process.
fn worker_lv2() {
    static B: OnceLock<()> = OnceLock::new();
    B.get_or_init(|| {
        let bundle = repo().join("target/test-plugins/lv2_worker.lv2");
        let description = "lv2:requiredFeature <http://lv2plug.in/ns/ext/worker#schedule> ;\n\
             lv2:extensionData <http://lv2plug.in/ns/ext/worker#interface> ;\n\
             lv2:port [ a lv2:AudioPort, lv2:InputPort ; lv2:index 0 ; lv2:symbol \"in\" ; lv2:name \"In\" ] ,\n\
               [ a lv2:AudioPort, lv2:OutputPort ; lv2:index 1 ; lv2:symbol \"out\" ; lv2:name \"Out\" ] ,\n\
               [ a lv2:ControlPort, lv2:OutputPort ; lv2:index 2 ; lv2:symbol \"responses\" ; lv2:name \"Responses\" ] ,\n\
               [ a lv2:ControlPort, lv2:OutputPort ; lv2:index 3 ; lv2:symbol \"elsewhere\" ; lv2:name \"Elsewhere\" ]";
        lv2_bundle("tests/lv2/worker.c", &[], &bundle, "urn:fxgraph:test:worker", description);
        fxgraph::nodes::native::lv2::load_bundle(&bundle).expect("bundle");
    });
}

/// LV2's worker: offline, each `run`'s work runs at once and its response is delivered after that same
/// run (the output halves from the second block on, exactly: the same bits on any machine); in real time
/// the work runs on a thread of its own, the responses come back, and the audio side allocates nothing.
#[test]
fn an_lv2_plugin_s_work_runs_off_the_audio_thread_in_real_time_and_at_once_offline() {
    if !lsp_lv2() {
        return;
    }
    worker_lv2();
    let text = "(sample_rate: 48000, channels: 1, nodes: { \"w\": Lv2(uri: \"urn:fxgraph:test:worker\") },\n\
                edges: [(\"input\", \"w\"), (\"w\", \"output\")])";
    let x: Vec<f32> = sine(440.0, 0.5, 5120).into_iter().step_by(2).collect();
    for realtime in [false, true] {
        let g = Graph::parse(text, "worker.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let (mut engine, mut audio) =
            Engine::new(g, EngineOptions { max_block: 512, threads: 1, realtime, ..Default::default() })
                .expect("engine");
        let mut y = vec![0.0f32; x.len()];
        let before = fxgraph::alloc::CountingAllocator::stats().expect("installed").audio_calls;
        for (a, b) in x.chunks(512).zip(y.chunks_mut(512)) {
            let n = a.len();
            audio.process(&AudioIn::new(a, n, 1, n), &mut AudioOut::new(b, n, 1, n));
            engine.update();
            if realtime {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let after = fxgraph::alloc::CountingAllocator::stats().expect("installed").audio_calls;
        let status = engine.metrics().nodes.into_iter().find(|n| n.name == "w").expect("node").status;
        let get = |k: &str| status.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap_or(f64::NAN);
        if realtime {
            assert_eq!(after - before, 0, "allocations or frees on the audio side");
            assert_eq!(get("elsewhere"), 1.0, "the work ran on another thread: {status:?}");
            assert!(get("responses") >= 1.0, "{status:?}");
            assert!(y.iter().zip(&x).all(|(y, x)| *y == *x || *y == 0.5 * x));
        } else {
            assert_eq!(get("elsewhere"), 0.0, "{status:?}");
            assert_eq!(get("responses"), 9.0, "a response for each of the first nine runs: {status:?}");
            for (n, (y, x)) in y.iter().zip(&x).enumerate() {
                assert_eq!(*y, if n < 512 { *x } else { 0.5 * x }, "frame {n}");
            }
        }
    }
}

/// x42's preset convolver: its "No-OP Mono" preset is state (an impulse response file in the bundle),
/// restored through the plugin's state interface, and the plugin loads the file in its worker's work: a
/// delta, so the output is the input, as late as the plugin's latency port says.
#[test]
fn an_lv2_preset_s_state_is_restored_through_the_worker() {
    if !(lsp_lv2() && x42("zeroconvo")) {
        return;
    }
    let x: Vec<f32> = sine(997.0, 0.5, 9600).into_iter().step_by(2).collect();
    for iso in ["", ", isolation: Process"] {
        host_env();
        let text = format!(
            "(sample_rate: 48000, channels: 1, nodes: {{ \"c\": Lv2(uri: \"http://gareus.org/oss/lv2/zeroconvolv#Mono\", preset: \"No-OP Mono\"{iso}) }},\n\
             edges: [(\"input\", \"c\"), (\"c\", \"output\")])"
        );
        let g = Graph::parse(&text, "convolver.ron", "/".as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let (engine, mut audio) =
            Engine::new(g, EngineOptions { max_block: 512, threads: 1, ..Default::default() }).expect("engine");
        // Its latency port says 64 frames (its convolution's partition), which the engine reports.
        let latency = engine.latency_frames();
        assert_eq!(latency, 64, "{iso}");
        let n = x.len();
        let mut y = vec![0.0f32; n];
        audio.process(&AudioIn::new(&x, n, 1, n), &mut AudioOut::new(&mut y, n, 1, n));
        assert!(y[..latency].iter().all(|v| *v == 0.0), "{iso}");
        let err = y[latency..].iter().zip(&x).fold(0.0f64, |e, (y, x)| e.max(f64::from(y - x).abs()));
        assert!(db(err / 0.5) < -120.0, "{iso}: the output is not the input: {:.1} dB", db(err / 0.5));
    }
    let e = Graph::parse(
        "(sample_rate: 48000, channels: 1, nodes: { \"c\": Lv2(uri: \"http://gareus.org/oss/lv2/zeroconvolv#Mono\", preset: \"Hall\") },\n\
         edges: [(\"input\", \"c\"), (\"c\", \"output\")])",
        "convolver.ron",
        "/".as_ref(),
    )
    .expect_err("refused")
    .to_string();
    assert!(e.contains("it has: \"No-OP Mono\""), "{e}");
}

/// A CLAP plugin's own state goes into presets: the test gain keeps the largest output it has made (its
/// "Peak hold", not a parameter) in its state. A preset saved while it plays holds that state; applied to
/// a fresh graph it makes a new instance that restores it; a graph file can give it too, also to a plugin
/// in a child process. States that are not hexadecimal, or that the plugin refuses, are errors.
#[test]
fn a_clap_plugin_s_state_is_saved_into_presets_and_restored() {
    host_env();
    let bundle = clap_bundle(&[]);
    let graph = |rest: &str| {
        let text = format!(
            "(sample_rate: 48000, channels: 2,\n nodes: {{ \"g\": {} }},\n edges: [(\"input\", \"g\"), (\"g\", \"output\")])",
            clap_node(&bundle, "gain", rest)
        );
        Graph::parse(&text, "state.ron", "/".as_ref())
    };
    let hold =
        |rig: &mut Rig| status(rig, "g").iter().find(|(k, _)| k == "peak_hold").map(|(_, v)| *v).expect("peak_hold");
    let loud = sine(997.0, 0.5, 4800);
    let silence = vec![0.0f32; 4800];
    let mut a = start(graph("").unwrap_or_else(|e| panic!("{e}")));
    run(&mut a, &loud);
    let peak = hold(&mut a);
    assert!((peak - 0.5).abs() < 1e-3, "{peak}");
    let preset = a.engine.snapshot().expect("snapshot");
    let want = format!("{}{}", fxgraph_hex(b"FXGS"), fxgraph_hex(&peak.to_le_bytes()));
    assert_eq!(preset.states.len(), 1);
    assert_eq!((preset.states[0].node.as_str(), preset.states[0].data.as_str()), ("g", want.as_str()));
    // A fresh graph holds nothing until the preset is applied; then a new instance restores the state.
    let mut b = start(graph("").unwrap_or_else(|e| panic!("{e}")));
    run(&mut b, &silence);
    assert_eq!(hold(&mut b), 0.0);
    let text = preset.to_ron();
    assert!(text.contains(&format!("states: {{\n        \"g\": \"{want}\",")), "{text}");
    b.engine
        .apply_preset_values(&fxgraph::graph::preset::Preset::parse(&text, "p.ron").expect("parses"))
        .expect("applies");
    let out = run(&mut b, &silence);
    assert_eq!(hold(&mut b), peak, "restored");
    assert!(out.iter().all(|v| *v == 0.0));
    // In the graph file, in process and in a child process.
    for iso in ["", ", isolation: Process"] {
        let mut c = start(graph(&format!(", state: \"{want}\"{iso}")).unwrap_or_else(|e| panic!("{e}")));
        run(&mut c, &silence);
        assert_eq!(hold(&mut c), peak, "{iso}");
        if !iso.is_empty() {
            let e = c.engine.snapshot().expect_err("not in this process").to_string();
            assert!(e.contains("node \"g\"") && e.contains("child process"), "{e}");
        }
    }
    let e = graph(", state: \"xyz\"").expect_err("refused").to_string();
    assert!(e.starts_with("state.ron:2:") && e.contains("state") && e.contains("hexadecimal"), "{e}");
    let e = Engine::new(graph(", state: \"00\"").expect("parses"), EngineOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("refused the state"), "{e}");
}

fn fxgraph_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Values a CLAP plugin sets itself come back: the test gain turns itself down 6 dB after a full-scale
/// sample and says so; the node's `gain` then reads -6 dB lower, the output follows from the next call,
/// and nothing is sent back to the plugin (a later change of another parameter leaves the gain alone); in
/// process and in a child process.
#[test]
fn a_clap_plugin_s_own_parameter_changes_come_back_to_the_node() {
    let bundle = clap_bundle(&[]);
    host_env();
    for isolation in ["", ", isolation: Process"] {
        let node =
            format!("\"g\": {}", clap_node(&bundle, "gain", &format!(", params: {{\"gain\": -3.0}}{isolation}")));
        let mut rig = start(graph(&node, &["g"]));
        let get = |rig: &mut Rig| match rig.engine.get("g", "gain").expect("get") {
            ParamValue::Number(v) => v,
            other => panic!("{other:?}"),
        };
        let quiet = sine(440.0, 0.25, 512);
        let mut loud = quiet.clone();
        loud[100] = 1.0;
        let mut y = vec![0.0f32; 1024];
        for (block, x) in [&quiet, &loud, &quiet, &quiet].into_iter().enumerate() {
            rig.audio.process_interleaved(x, &mut y, 2);
            rig.engine.update();
            let want_db = if block < 2 { -3.0 } else { -9.0 };
            let g = 10f64.powf(want_db / 20.0);
            for (n, (a, b)) in x.iter().zip(&y).enumerate() {
                assert_eq!(*b, (f64::from(*a) * g) as f32, "{isolation}: block {block}, sample {n}");
            }
            assert_eq!(get(&mut rig), if block < 1 { -3.0 } else { -9.0 }, "{isolation}: block {block}");
        }
        rig.engine.set("g", "invert", 1.0).expect("set");
        rig.audio.process_interleaved(&quiet, &mut y, 2);
        rig.engine.update();
        let g = -(10f64.powf(-9.0 / 20.0));
        assert!(quiet.iter().zip(&y).all(|(a, b)| *b == (f64::from(*a) * g) as f32), "still -9 dB, inverted");
        assert_eq!(get(&mut rig), -9.0);
    }
}
