//! WebAssembly plugin nodes: the shipped plugins against the built-in filter, and a hostile corpus.
//!
//! The plugins are read from `FXGRAPH_PLUGIN_DIR` when set (CI points it at modules rebuilt from source),
//! otherwise from `plugins/wasm`.
#![cfg(feature = "wasm")]

#[global_allocator]
static ALLOC: fxgraph::alloc::CountingAllocator = fxgraph::alloc::CountingAllocator;

mod common;

use fxgraph::node::{AudioIn, AudioOut};
use fxgraph::{AudioProcessor, Engine, EngineEvent, EngineOptions, Graph, GraphErrorKind};
use std::path::{Path, PathBuf};

use common::plugin_dir;

fn graph(text: &str, dir: &Path) -> Result<Graph, fxgraph::GraphError> {
    Graph::parse(text, "plugin.ron", dir)
}

fn node_graph(node: &str) -> String {
    format!(
        "(sample_rate: 48000, channels: 2, nodes: {{ \"n\": {node} }}, edges: [(\"input\", \"n\"), (\"n\", \"output\")])"
    )
}

/// A started graph: its control side and its audio side, driven from the test's thread.
struct Rig {
    engine: Engine,
    audio: AudioProcessor,
}

/// Runs `blocks` blocks of 512 frames (planar stereo, cycling through `input`), updating the control side
/// after each as an application's UI loop would.
fn run(rig: &mut Rig, input: &[f32], blocks: usize) -> Vec<f32> {
    let block = 512;
    let mut out = Vec::new();
    let mut y = vec![0.0f32; 2 * block];
    for b in 0..blocks {
        let x = &input[(b * 2 * block) % input.len()..][..2 * block];
        rig.audio.process(&AudioIn::new(x, block, 2, block), &mut AudioOut::new(&mut y, block, 2, block));
        rig.engine.update();
        out.extend_from_slice(&y);
    }
    out
}

/// CPU time this thread has used (ns).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts)
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn noise(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.6
        })
        .collect()
}

fn start(g: Graph) -> fxgraph::Result<Rig> {
    start_with(g, true)
}

/// A started graph in real time (as `play` and device callbacks run it) or offline (as `render` does).
fn start_with(g: Graph, realtime: bool) -> fxgraph::Result<Rig> {
    Engine::new(g, EngineOptions { max_block: 512, threads: 1, realtime, ..Default::default() })
        .map(|(engine, audio)| Rig { engine, audio })
}

#[test]
fn shipped_plugins_match_the_builtin_filter_and_each_other() {
    let dir = plugin_dir();
    let input = noise(2 * 512 * 40);
    for (kind, eq_kind) in [("lowpass", "LowPass"), ("highpass", "HighPass"), ("bandpass", "BandPass")] {
        let builtin = graph(&node_graph(&format!("Eq(bands: [(kind: {eq_kind}, freq_hz: 3000.0, q: 2.0)])")), &dir)
            .expect("valid");
        let want = run(&mut start(builtin).expect("starts"), &input, 40);
        let mut outputs = Vec::new();
        for module in ["biquad_filter.wasm", "biquad_filter_c.wasm"] {
            let text = node_graph(&format!(
                "Wasm(path: \"{module}\", config: {{\"type\": \"{kind}\", \"cutoff_hz\": 3000.0, \"resonance\": 2.0}})"
            ));
            let got = run(&mut start(graph(&text, &dir).expect("valid")).expect("starts"), &input, 40);
            // Both in `f64` (the built-in in transposed direct form II with its own sine and cosine): they
            // differ by the last bit of an `f32` output now and then.
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "{module} {kind}: differs from the built-in by up to {worst}");
            outputs.push(got);
        }
        // The same operations in the same order in Rust and in C: the same bits.
        assert!(outputs[0] == outputs[1], "{kind}: the Rust and C plugins differ");
    }
}

/// The RBJ cookbook's coefficients `([b0, b1, b2], [a0, a1, a2])` for a low-pass, high-pass or (constant
/// 0 dB peak) band-pass at `f0` with `q`, at rate `sr`, with the standard library's sine and cosine.
fn cookbook(kind: &str, f0: f64, q: f64, sr: f64) -> ([f64; 3], [f64; 3]) {
    let w0 = std::f64::consts::TAU * f0 / sr;
    let (alpha, cw) = (w0.sin() / (2.0 * q), w0.cos());
    let b = match kind {
        "lowpass" => [(1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0],
        "highpass" => [(1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0],
        _ => [alpha, 0.0, -alpha],
    };
    (b, [1.0 + alpha, -2.0 * cw, 1.0 - alpha])
}

/// The RBJ cookbook biquad designed in `f64` with the standard library's sine and cosine (not the plugins'
/// own series) and run in `f64` in transposed direct form II (not the plugins' direct form I): the
/// independent double-precision reference.
fn rbj_reference(kind: &str, f0: f64, q: f64, sr: f64, x: &[f32]) -> Vec<f64> {
    let (b, a) = cookbook(kind, f0, q, sr);
    let (b, a) = ([b[0] / a[0], b[1] / a[0], b[2] / a[0]], [a[1] / a[0], a[2] / a[0]]);
    let (mut s0, mut s1) = (0.0, 0.0);
    x.iter()
        .map(|&v| {
            let v = f64::from(v);
            let y = b[0] * v + s0;
            s0 = b[1] * v - a[0] * y + s1;
            s1 = b[2] * v - a[1] * y;
            y
        })
        .collect()
}

#[test]
fn the_shipped_plugins_are_within_120_db_of_a_double_precision_reference_on_music() {
    // Ten seconds of the demo signal (drums, bass, chords, a melody: music's spectrum and dynamics), through
    // each type at a setting where it matters. The settings are exact in `f32` (the ABI passes parameters as
    // `f32`), so plugin and reference design the same filter. The output's own `f32` rounding is about
    // -150 dB of the peak; the `f32` plugins these replaced reached -74 dB at the 80 Hz high-pass.
    let block = 512;
    let frames = 48000 * 10 / block * block;
    let mut demo = fxgraph::io::demo::DemoSignal::new(48000, 2, frames as f64 / 48000.0);
    let mut planar = vec![0.0f32; 2 * frames];
    demo.fill(&mut AudioOut::new(&mut planar, frames, 2, frames));
    let (left, right) = planar.split_at(frames);
    // As `run` takes it: each block's left channel, then its right.
    let blocks: Vec<f32> = (0..frames / block)
        .flat_map(|b| [&left[b * block..][..block], &right[b * block..][..block]])
        .flatten()
        .copied()
        .collect();
    let dir = plugin_dir();
    for module in ["biquad_filter.wasm", "biquad_filter_c.wasm"] {
        for (kind, cutoff, q) in [("lowpass", 12000.0, 0.5), ("highpass", 80.0, 0.75), ("bandpass", 1000.0, 2.0)] {
            let text = node_graph(&format!(
                "Wasm(path: \"{module}\", config: {{\"type\": \"{kind}\", \"cutoff_hz\": {cutoff:?}, \"resonance\": {q:?}}})"
            ));
            let out = run(&mut start(graph(&text, &dir).expect("valid")).expect("starts"), &blocks, frames / block);
            for (c, x) in [left, right].into_iter().enumerate() {
                let want = rbj_reference(kind, cutoff, q, 48000.0, x);
                let got = (0..frames).map(|i| out[(i / block) * 2 * block + c * block + i % block]);
                let err = got.zip(&want).map(|(g, w)| (f64::from(g) - w).abs()).fold(0.0, f64::max);
                let peak = want.iter().fold(0.0f64, |p, w| p.max(w.abs()));
                let db = 20.0 * (err / peak).log10();
                eprintln!("{module} {kind} channel {c}: largest error {db:.1} dB of the peak");
                assert!(db < -120.0, "{module} {kind} channel {c}: largest error {db:.1} dB of the peak");
            }
        }
    }
}

#[test]
fn config_is_validated_against_the_manifest_naming_the_key() {
    let dir = plugin_dir();
    for (config, needle) in [
        ("{\"cutof_hz\": 100.0}", "config.cutof_hz"),
        ("{\"cutoff_hz\": 90000.0}", "between 10 and 22800 Hz"),
        ("{\"cutoff_hz\": 30000.0}", "between 10 and 22800 Hz"),
        ("{\"type\": \"notch\"}", "one of lowpass, highpass, bandpass"),
        ("{\"resonance\": \"high\"}", "must be a number"),
    ] {
        let text = node_graph(&format!("Wasm(path: \"biquad_filter.wasm\", config: {config})"));
        let err = graph(&text, &dir).expect_err(config);
        assert_eq!(err.kind, GraphErrorKind::Param, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(err.position.is_some());
    }
}

#[test]
fn mastering_graph_renders_with_the_plugin_in_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mastering.ron");
    let g = Graph::load(&path).expect("valid");
    let mut e = start(g).expect("starts");
    let out = run(&mut e, &noise(2 * 512 * 20), 20);
    assert!(out.iter().all(|v| v.is_finite() && v.abs() <= 0.8913));
    assert!(out.iter().any(|&v| v != 0.0));
    // The monitor reports the plugin's linear memory against its cap.
    let report = e.engine.metrics();
    let filter = report.nodes.iter().find(|n| n.name == "filter").expect("filter node");
    let (used, cap) = (filter.memory_bytes.expect("memory"), filter.memory_cap_bytes.expect("cap"));
    assert!(used > 0 && used <= cap && cap == 2 << 20, "{used} of {cap}");
    assert!(report.nodes.iter().filter(|n| n.name != "filter").all(|n| n.memory_bytes.is_none()));
}

/// A module implementing the ABI, with a pass-through `fxg_process`. Buffers: 2 channels x 512 frames,
/// input at 1024, output at 8192; the table at 16.
const TEMPLATE: &str = r#"(module
  IMPORTS
  (memory (export "memory") MEMORY)
  (table 1 funcref)
  (type $void (func))
  (data (i32.const 16) "TABLE_BYTES")
  (func $recurse (call $recurse))
  (func (export "fxg_abi_version") (result i32) (i32.const ABI))
  (func (export "fxg_set_param") (param i32 f32) (result i32) (i32.const 0))
  (func (export "fxg_initialize") (param i32 i32 i32) (result i32) INIT (i32.const 0))
  (func (export "fxg_buffers") (result i32) (i32.const TABLE_AT))
  (func (export "fxg_start"))
  (func (export "fxg_process") (param $n i32) (result i32)
    (memory.copy (i32.const 8192) (i32.const 1024) (i32.const 4096))
    PROCESS
    (i32.const 0))
  (func (export "fxg_stop"))
  (func (export "fxg_cleanup"))
)"#;

fn table_bytes(input: u32, output: u32) -> String {
    input.to_le_bytes().iter().chain(output.to_le_bytes().iter()).map(|b| format!("\\{b:02x}")).collect()
}

struct Variant<'a> {
    imports: &'a str,
    memory: &'a str,
    abi: &'a str,
    init: &'a str,
    process: &'a str,
    table: (u32, u32),
    table_at: &'a str,
}

const BASE: Variant<'static> =
    Variant { imports: "", memory: "2", abi: "1", init: "", process: "", table: (1024, 8192), table_at: "16" };

fn module(v: &Variant<'_>) -> String {
    TEMPLATE
        .replace("IMPORTS", v.imports)
        .replace("MEMORY", v.memory)
        .replace("ABI", v.abi)
        .replace("INIT", v.init)
        .replace("PROCESS", v.process)
        .replace("TABLE_BYTES", &table_bytes(v.table.0, v.table.1))
        .replace("TABLE_AT", v.table_at)
}

const MANIFEST: &str = r#"{"id": "test.hostile", "name": "Hostile", "version": "0.0.1", "abi_version": 1,
  "memory_limit_bytes": 1048576, "block_budget_us": 500, "parameters": []}"#;

/// Writes a module (WAT text, or raw bytes) and its manifest; returns the graph text for a node using it.
fn install(dir: &Path, name: &str, wasm: &[u8]) -> String {
    std::fs::write(dir.join(format!("{name}.wasm")), wasm).expect("write module");
    std::fs::write(dir.join(format!("{name}.json")), MANIFEST).expect("write manifest");
    node_graph(&format!("Wasm(path: \"{name}.wasm\")"))
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("bad test module: {e}\n{text}"))
}

#[test]
fn a_pass_through_module_passes_audio_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = install(dir.path(), "pass", &wat(&module(&BASE)));
    let input = noise(2 * 512 * 4);
    let mut e = start(graph(&text, dir.path()).expect("valid")).expect("starts");
    assert_eq!(run(&mut e, &input, 4), input);
    assert_eq!(e.engine.metrics().nodes[0].faults, 0);
}

#[test]
fn modules_that_fail_at_load_are_rejected_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wasi",
            wat(&module(&Variant {
                imports: r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
                ..BASE
            })),
            "wasi_snapshot_preview1.fd_write",
        ),
        (
            "unknown_import",
            wat(&module(&Variant { imports: r#"(import "env" "now" (func (result f64)))"#, ..BASE })),
            "env.now",
        ),
        ("not_wasm", b"this is a text file, not a module".to_vec(), "not a WebAssembly module"),
        ("truncated", wat(&module(&BASE))[..40].to_vec(), "not a valid WebAssembly module"),
    ];
    for (name, bytes, needle) in cases {
        let text = install(dir.path(), name, &bytes);
        let err = graph(&text, dir.path()).expect_err(name);
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert_eq!(err.node.as_deref(), Some("n"));
    }
}

#[test]
fn modules_that_fail_at_setup_do_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong_abi", module(&Variant { abi: "2", ..BASE }), "ABI version 2"),
        ("init_loops", module(&Variant { init: "(loop $l (br $l))", ..BASE }), "fxg_initialize failed: trap"),
        ("huge_minimum", module(&Variant { memory: "2000", ..BASE }), "cannot instantiate"),
        ("table_outside", module(&Variant { table_at: "2147483000", ..BASE }), "outside the module's memory"),
        ("buffers_outside", module(&Variant { table: (1024, 0xFFFF_F000), ..BASE }), "ends past"),
        ("buffers_overlap", module(&Variant { table: (1024, 2048), ..BASE }), "overlap"),
        ("buffers_misaligned", module(&Variant { table: (1026, 8192), ..BASE }), "not aligned"),
        (
            "wrong_signature",
            module(&BASE).replace(r#"(func (export "fxg_start"))"#, r#"(func (export "fxg_start") (param f32))"#),
            "export `fxg_start`",
        ),
    ];
    for (name, text, needle) in cases {
        let g = install(dir.path(), name, &wat(&text));
        let err = match start(graph(&g, dir.path()).expect("loads")) {
            Ok(_) => panic!("{name}: started"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn faults_while_processing_bypass_the_node_and_the_host_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("loop_forever", "(loop $l (br $l))"),
        ("recursion", "(call $recurse)"),
        ("out_of_bounds_load", "(drop (i32.load (i32.const 2147483000)))"),
        ("out_of_bounds_store", "(i32.store (i32.const 2147483000) (i32.const 1))"),
        ("unreachable", "unreachable"),
        ("divide_by_zero", "(drop (i32.div_s (i32.const 1) (i32.sub (local.get $n) (local.get $n))))"),
        ("null_indirect_call", "(call_indirect (type $void) (i32.const 0))"),
        ("nan_output", "(f32.store (i32.const 8200) (f32.const nan))"),
        ("infinite_output", "(f32.store (i32.const 8200) (f32.const inf))"),
        ("absurd_output", "(f32.store (i32.const 8200) (f32.const 1e30))"),
        ("error_return", "(f32.store (i32.const 8200) (f32.const 0.25)) (return (i32.const 7))"),
    ];
    let input = noise(2 * 512 * 8);
    for (name, body) in cases {
        let text = install(dir.path(), name, &wat(&module(&Variant { process: body, ..BASE })));
        // The plugin sits between two gains; the host and the other nodes must carry on.
        let g = format!(
            "(sample_rate: 48000, channels: 2, nodes: {{ \"a\": Gain(gain_db: 0.0), \"n\": Wasm(path: \"{name}.wasm\"), \
             \"b\": Gain(gain_db: 0.0) }}, edges: [(\"input\", \"a\"), (\"a\", \"n\"), (\"n\", \"b\"), (\"b\", \"output\")])"
        );
        let _ = text;
        let mut e = start(graph(&g, dir.path()).expect("valid")).expect("starts");
        let out = run(&mut e, &input, 40);
        // Every block is either processed (pass-through) or bypassed dry: the output is the input.
        let expected: Vec<f32> = (0..40).flat_map(|b| input[(b * 1024) % input.len()..][..1024].to_vec()).collect();
        assert_eq!(out, expected, "{name}: the faulted node's output must be its dry input");
        let report = e.engine.metrics();
        let faults: Vec<u64> = report.nodes.iter().map(|n| n.faults).collect();
        // Faulted, re-created with backoff (1, 2, 4, 8 blocks), and bypassed for good after the fifth.
        assert_eq!(faults, [0, 5, 0], "{name}: fault counts per node");
    }
}

#[test]
fn memory_cannot_grow_during_a_block_or_past_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Grows in a loop at initialize (stops at the 1 MiB cap), and tries again in every block (denied).
    let grow_loop = "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))";
    let text = install(
        dir.path(),
        "grower",
        &wat(&module(&Variant {
            init: grow_loop,
            process: "(if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))",
            ..BASE
        })),
    );
    let input = noise(2 * 512 * 4);
    let mut e = start(graph(&text, dir.path()).expect("valid")).expect("starts");
    assert_eq!(run(&mut e, &input, 4), input, "growth was denied (no trap), so the module passed audio through");
    assert_eq!(e.engine.metrics().nodes[0].faults, 0);
}

#[test]
fn guest_tricks_after_setup_change_nothing_for_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = r#"(import "fxgraph" "log" (func $log (param i32 i32 i32)))"#;
    let cases = [
        // Rewriting the buffer table: the host kept its own copy.
        ("rewrite_table", "", "(i64.store (i32.const 16) (i64.const 0))"),
        // Log calls with an out-of-bounds pointer, a 2 GiB length and invalid UTF-8.
        (
            "bad_logs",
            log,
            "(call $log (i32.const 1) (i32.const 2147483000) (i32.const 16)) \
             (call $log (i32.const 1) (i32.const 0) (i32.const 2147483647)) \
             (i32.store (i32.const 100) (i32.const 0xfffefdfc)) (call $log (i32.const 1) (i32.const 100) (i32.const 4))",
        ),
    ];
    let input = noise(2 * 512 * 4);
    for (name, imports, body) in cases {
        let text = install(dir.path(), name, &wat(&module(&Variant { imports, process: body, ..BASE })));
        let mut e = start(graph(&text, dir.path()).expect("valid")).expect("starts");
        assert_eq!(run(&mut e, &input, 4), input, "{name}");
        assert_eq!(e.engine.metrics().nodes[0].faults, 0, "{name}");
    }
    // A million log calls in one block: the per-block deadline applies; the host carries on either way.
    let flood = "(local $i i32) (loop $l (call $log (i32.const 1) (i32.const 0) (i32.const 4)) \
                 (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))";
    let text = install(
        dir.path(),
        "flood",
        &wat(&module(&Variant { imports: log, process: flood, ..BASE })
            .replace(
                "(param $n i32) (result i32)\n    (memory.copy",
                "(param $n i32) (result i32) (local $i i32)\n    (memory.copy",
            )
            .replace("(local $i i32) (loop", "(loop")),
    );
    let mut e = start(graph(&text, dir.path()).expect("valid")).expect("starts");
    assert_eq!(run(&mut e, &input, 4), input, "flood: processed or bypassed dry, the output is the input");
}

#[test]
fn parameters_can_be_automated_by_key_while_audio_runs() {
    let dir = plugin_dir();
    let text = node_graph("Wasm(path: \"biquad_filter.wasm\", config: {\"cutoff_hz\": 200.0})");
    let mut e = start(graph(&text, &dir).expect("valid")).expect("starts");
    let input = noise(2 * 512 * 20);
    let dark = run(&mut e, &input, 20);
    e.engine.set("n", "cutoff_hz", 15000.0).expect("in range");
    e.engine.set("n", "type", "highpass").expect("one of the choices");
    e.engine.set("n", "type", "lowpass").expect("one of the choices");
    let bright = run(&mut e, &input, 20);
    let energy = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>();
    assert!(energy(&bright) > 4.0 * energy(&dark), "raising the cutoff lets far more of white noise through");
    assert!(e.engine.set("n", "cutoff_hz", 1e9).is_err(), "out of the manifest's range");
    assert!(e.engine.set("n", "type", "notch").is_err(), "not one of the choices");
    assert!(e.engine.set("n", "cutof_hz", 1.0).is_err(), "no such parameter");
    assert!(e.engine.set("nope", "cutoff_hz", 100.0).is_err(), "no such node");
    assert_eq!(e.engine.get("n", "cutoff_hz").expect("known"), fxgraph::ParamValue::Number(15000.0));
    assert_eq!(e.engine.get("n", "type").expect("known"), fxgraph::ParamValue::Text("lowpass".into()));
}

#[test]
fn the_plugin_command_prints_metadata_or_a_clear_error() {
    let exe = env!("CARGO_BIN_EXE_fxgraph");
    let module = plugin_dir().join("biquad_filter.wasm");
    let o = std::process::Command::new(exe).arg("plugin").arg(&module).output().expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for needle in
        ["org.fxgraph.biquad-filter", "ABI version 1", "cutoff_hz", "one of lowpass, highpass, bandpass", "setup: ok"]
    {
        assert!(out.contains(needle), "missing {needle}: {out}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("junk.wasm"), b"junk").expect("write");
    std::fs::write(dir.path().join("junk.json"), MANIFEST).expect("write");
    let o = std::process::Command::new(exe).arg("plugin").arg(dir.path().join("junk.wasm")).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a WebAssembly module"));
    let o = std::process::Command::new(exe).arg("plugin").arg(dir.path().join("missing.wasm")).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn log_lines_and_events_reach_the_application_without_trusting_the_guest() {
    use fxgraph::node::MessageKind;
    let dir = tempfile::tempdir().expect("tempdir");
    let imports = r#"(import "fxgraph" "log" (func $log (param i32 i32 i32)))
  (import "fxgraph" "emit_event" (func $event (param i32 i32 i32)))
  (data (i32.const 200) "hello from the plugin")
  (data (i32.const 240) "peak")"#;
    let body = "(call $log (i32.const 2) (i32.const 200) (i32.const 21)) \
                (call $event (i32.const 7) (i32.const 240) (i32.const 4)) \
                (call $log (i32.const 1) (i32.const 2147483000) (i32.const 100))";
    let text = install(dir.path(), "talker", &wat(&module(&Variant { imports, process: body, ..BASE })));
    let mut e = start(graph(&text, dir.path()).expect("valid")).expect("starts");
    let input = noise(2 * 512 * 30);
    run(&mut e, &input, 1);
    let messages = e.engine.messages();
    let kinds: Vec<(MessageKind, &str)> = messages.iter().map(|m| (m.kind, m.text.raw())).collect();
    assert_eq!(
        kinds,
        [
            (MessageKind::Log(2), "hello from the plugin"),
            (MessageKind::Event(7), "peak"),
            (MessageKind::Log(1), "<message outside the plugin's memory>"),
        ]
    );
    assert!(messages.iter().all(|m| m.node == "n" && m.source == "test.hostile"));
    // Every block's messages are handed over after the block, in order.
    run(&mut e, &input, 30);
    let messages = e.engine.messages();
    assert_eq!(messages.len(), 90);
    assert!(messages.chunks(3).all(|m| m[0].kind == MessageKind::Log(2) && m[1].kind == MessageKind::Event(7)));
    assert!(e.engine.messages().is_empty(), "drained");

    // More than 64 in one block: 64 kept, the rest counted.
    let flood = "(local $i i32) (loop $l (call $log (i32.const 1) (i32.const 200) (i32.const 5)) \
                 (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))";
    let text = module(&Variant { imports, process: flood, ..BASE })
        .replace(
            "(param $n i32) (result i32)\n    (memory.copy",
            "(param $n i32) (result i32) (local $i i32)\n    (memory.copy",
        )
        .replace("(local $i i32) (loop", "(loop");
    let g = install(dir.path(), "chatty", &wat(&text));
    let mut e = start(graph(&g, dir.path()).expect("valid")).expect("starts");
    run(&mut e, &input, 1);
    let messages = e.engine.messages();
    assert_eq!(messages.len(), 65);
    assert_eq!(messages[64].kind, MessageKind::Dropped(36));
}

#[test]
fn faults_are_reported_as_messages() {
    use fxgraph::node::MessageKind;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = install(dir.path(), "trapper", &wat(&module(&Variant { process: "unreachable", ..BASE })));
    let mut e = start(graph(&text, dir.path()).expect("valid")).expect("starts");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    e.engine.subscribe(move |ev| {
        if let EngineEvent::Message(m) = ev {
            sink.lock().expect("lock").push(m.kind);
        }
    });
    run(&mut e, &noise(2 * 512 * 4), 40);
    let faults: Vec<String> = e
        .engine
        .messages()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Fault)
        .map(|m| m.text.raw().to_string())
        .collect();
    assert_eq!(faults.len(), 5, "{faults:?}");
    assert_eq!(*seen.lock().expect("lock"), vec![MessageKind::Fault; 5], "subscribers see every message");
    assert!(faults[0].contains("unreachable"), "{}", faults[0]);
    assert!(faults[4].contains("bypassed for good"), "{}", faults[4]);
}

/// The only `.cwasm` file in a cache folder.
fn cache_entry(cache: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one compiled module: {entries:?}");
    entries[0].clone()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

#[cfg(unix)]
fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
#[test]
fn the_module_cache_runs_only_what_this_user_compiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for f in ["biquad_filter.wasm", "biquad_filter.json"] {
        std::fs::copy(plugin_dir().join(f), d.join(f)).expect("copy");
    }
    std::fs::write(d.join("g.ron"), node_graph("Wasm(path: \"biquad_filter.wasm\")")).expect("write");
    // A module that passes audio through: compiled code that must never run in the filter's place.
    std::fs::write(d.join("p.ron"), install(d, "pass", &wat(&module(&BASE)))).expect("write");
    let render = |graph: &str, cache: &Path| -> (Vec<u8>, String) {
        let out = d.join("out.wav");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fxgraph"))
            .args(["render", graph, "--seconds", "1", "-o"])
            .arg(&out)
            .current_dir(d)
            .env("FXGRAPH_CACHE_DIR", cache)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        (std::fs::read(&out).expect("output"), err)
    };
    // Without a disk cache every module is compiled from its .wasm.
    let (reference, _) = render("g.ron", Path::new(""));
    let (passed, _) = render("p.ron", Path::new(""));
    assert_ne!(reference, passed, "the two modules sound different");

    // A cache of this user's: created private, with a private key, and used as written.
    let cache = d.join("cache");
    let (out, err) = render("g.ron", &cache);
    assert_eq!(out, reference);
    assert!(!err.contains("cache"), "{err}");
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join("key")), 0o600);
    let entry = cache_entry(&cache);
    let good = std::fs::read(&entry).expect("read");
    let (out, err) = render("g.ron", &cache);
    assert_eq!((out, err.contains("cache")), (reference.clone(), false), "{err}");
    assert_eq!(std::fs::read(&entry).expect("read"), good, "the second start used the entry as it was");

    // The pass-through module compiled into another cache of this user's: valid code, tagged there.
    let other = d.join("other");
    render("p.ron", &other);
    let planted = std::fs::read(cache_entry(&other)).expect("read");
    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let cases: [(&str, Vec<u8>); 5] = [
        ("another module's entry under this name", planted.clone()),
        ("compiled code without a tag", planted[32..].to_vec()),
        ("tampered contents", tampered),
        ("a truncated file", good[..good.len() / 2].to_vec()),
        ("a file shorter than a tag", good[..10].to_vec()),
    ];
    let name = entry.file_name().expect("name").to_string_lossy().into_owned();
    for (what, bytes) in cases {
        std::fs::write(&entry, &bytes).expect("plant");
        let (out, err) = render("g.ron", &cache);
        assert!(out == reference, "{what}: the planted code ran");
        assert!(err.contains(&name) && err.contains("removed"), "{what}: the warning names the file: {err}");
        assert_eq!(std::fs::read(&entry).expect("read"), good, "{what}: compiled again and stored anew");
    }

    // Folders others could have written: not read, not written, whatever they hold. Each is given the
    // other cache's key and, under the filter's name, the pass-through's entry tagged with that key.
    let mut folders: Vec<(PathBuf, String)> = Vec::new();
    for (i, (m, why)) in [(0o777, "writable by others"), (0o770, "writable by its group")].into_iter().enumerate() {
        folders.push((d.join(format!("open-{i}")), why.to_string()));
        std::fs::create_dir(&folders[i].0).expect("mkdir");
        chmod(&folders[i].0, m);
    }
    if fxgraph::trust::current_user() == 0 {
        let theirs = d.join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        folders.push((theirs, "owned by user 65534".into()));
    }
    for (folder, why) in &folders {
        std::fs::copy(other.join("key"), folder.join("key")).expect("key");
        std::fs::write(folder.join(&name), &planted).expect("plant");
        let (out, err) = render("g.ron", folder);
        assert!(out == reference, "{why}: the planted code ran");
        assert!(err.contains(&folder.display().to_string()) && err.contains(why.as_str()), "{why}: {err}");
        assert_eq!(std::fs::read(folder.join(&name)).expect("read"), planted, "{why}: nothing written there");
        assert_eq!(std::fs::read_dir(folder).expect("dir").count(), 2, "{why}: nothing written there");
    }
    // A private folder under one that others can write (without the sticky bit).
    let open = d.join("open-0");
    let (out, err) = render("g.ron", &open.join("cache"));
    assert!(out == reference);
    assert!(err.contains(&open.display().to_string()) && err.contains("writable by others"), "{err}");
    // A key that others can read.
    chmod(&cache.join("key"), 0o644);
    let (out, err) = render("g.ron", &cache);
    assert!(out == reference);
    assert!(err.contains(&cache.join("key").display().to_string()), "{err}");
}

#[test]
fn a_plugin_always_over_its_budget_is_bypassed_by_the_watchdog_without_a_trap() {
    use fxgraph::node::MessageKind;
    let dir = tempfile::tempdir().expect("tempdir");
    let spin = "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) \
                (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))";
    let text = module(&Variant { process: spin, ..BASE }).replace(
        "(param $n i32) (result i32)\n    (memory.copy",
        "(param $n i32) (result i32) (local $i i32)\n    (memory.copy",
    );
    let text = text.replace("(local $i i32) (loop", "(loop");
    let bytes = wat(&text);
    let manifest = |budget_us: u64| {
        format!(
            r#"{{"id": "test.slow", "name": "Slow", "version": "0.0.1", "abi_version": 1,
                "memory_limit_bytes": 1048576, "block_budget_us": {budget_us}, "parameters": []}}"#
        )
    };
    let input = noise(2 * 512 * 4);
    // Measure how long the loop takes here, with a budget it cannot overrun.
    std::fs::write(dir.path().join("slow.wasm"), &bytes).expect("write");
    std::fs::write(dir.path().join("slow.json"), manifest(1_000_000)).expect("write");
    let g = node_graph("Wasm(path: \"slow.wasm\")");
    let mut e = start(graph(&g, dir.path()).expect("valid")).expect("starts");
    // The fastest of a dozen blocks: load only ever makes a block slower.
    let mut fastest_us = f64::INFINITY;
    let mut y = vec![0.0f32; 1024];
    for _ in 0..12 {
        let t = std::time::Instant::now();
        e.audio.process(&AudioIn::new(&input[..1024], 512, 2, 512), &mut AudioOut::new(&mut y, 512, 2, 512));
        fastest_us = fastest_us.min(t.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(e.engine.metrics().nodes[0].faults, 0);
    // Now a budget of a third of the fastest run: the plugin is always over budget (the watchdog's threshold
    // is 1x, for 8 blocks in a row; the margin absorbs this VM's speed swings of about 50%), and far inside
    // the hard deadline (ten budgets, at least 50 ms). A fresh copy of the module under another name, so
    // the manifest is read again.
    let budget_us = ((fastest_us / 3.0) as u64).max(1);
    std::fs::write(dir.path().join("slow2.wasm"), &bytes).expect("write");
    std::fs::write(dir.path().join("slow2.json"), manifest(budget_us)).expect("write");
    let g = node_graph("Wasm(path: \"slow2.wasm\")");
    let mut e = start(graph(&g, dir.path()).expect("valid")).expect("starts");
    let out = run(&mut e, &input, 12);
    let expected: Vec<f32> = (0..12).flat_map(|b| input[(b * 1024) % input.len()..][..1024].to_vec()).collect();
    assert_eq!(out, expected, "processed or bypassed dry, the output is the input");
    let faults: Vec<String> = e
        .engine
        .messages()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Fault)
        .map(|m| m.text.raw().to_string())
        .collect();
    assert_eq!(
        faults.len(),
        1,
        "one watchdog fault after 8 slow blocks (fastest {fastest_us} us, budget {budget_us} us): {faults:?}"
    );
    assert!(faults[0].contains("OverBudget") && !faults[0].contains("Trap"), "{}", faults[0]);
    // Offline nothing is late: the same plugin is slow, and never faulted for it.
    let mut e = start_with(graph(&g, dir.path()).expect("valid"), false).expect("starts");
    assert_eq!(run(&mut e, &input, 12), expected);
    assert_eq!(e.engine.metrics().nodes[0].faults, 0, "offline, a slow plugin is only slow");
}

#[test]
fn a_plugin_that_spins_is_stopped_after_its_own_deadline_in_real_time_and_offline() {
    // The hostile corpus's budget (500 us) makes the deadline two 5 ms ticks: a call is stopped at the first
    // tick at which the plugin has used 5 ms of CPU time, which on an idle machine is 5 to 10 ms after it
    // began, as when the deadline was wall time. CPU time is what the plugin is charged, so it is what this
    // test measures: it does not depend on how busy the machine is.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = install(dir.path(), "spin", &wat(&module(&Variant { process: "(loop $l (br $l))", ..BASE })));
    let input = noise(2 * 512);
    for realtime in [true, false] {
        let mut e = start_with(graph(&text, dir.path()).expect("valid"), realtime).expect("starts");
        let (cpu0, wall0) = (thread_cpu_ns(), std::time::Instant::now());
        assert_eq!(run(&mut e, &input, 1), input, "bypassed dry");
        let cpu_ms = (thread_cpu_ns() - cpu0) as f64 / 1e6;
        let wall = wall0.elapsed();
        eprintln!("realtime {realtime}: the stuck block used {cpu_ms:.2} ms of CPU in {wall:?}");
        assert!(
            (4.0..20.0).contains(&cpu_ms),
            "realtime {realtime}: the stuck block used {cpu_ms} ms of CPU ({wall:?})"
        );
        let report = e.engine.metrics();
        assert_eq!(report.nodes[0].faults, 1, "realtime {realtime}");
        assert_eq!((report.nodes[0].bypassed_blocks, report.nodes[0].bypassed_frames), (1, 512), "realtime {realtime}");
        assert_eq!(report.nodes[0].fault_times_s, [0.0], "realtime {realtime}");
    }
}

#[test]
fn the_shipped_plugins_are_stable_for_every_value_their_manifest_accepts_at_every_rate() {
    // Cutoff at 40 log-spaced points from the minimum to the rate's maximum (inclusive), at the smallest,
    // a middle and the largest resonance, each type, 44.1, 48 and 96 kHz: no fault, no absurd output.
    let dir = plugin_dir();
    let input = noise(2 * 512 * 2);
    for rate in [44100u32, 48000, 96000] {
        let max = 40000f64.min(0.95 * f64::from(rate) / 2.0);
        for module in ["biquad_filter.wasm", "biquad_filter_c.wasm"] {
            for kind in ["lowpass", "highpass", "bandpass"] {
                for q in [0.1, 0.707, 20.0] {
                    let text = format!(
                        "(sample_rate: {rate}, channels: 2, nodes: {{ \"n\": Wasm(path: \"{module}\", config: \
                         {{\"type\": \"{kind}\", \"resonance\": {q}, \"cutoff_hz\": 10.0}}) }}, \
                         edges: [(\"input\", \"n\"), (\"n\", \"output\")])"
                    );
                    let mut e = start(graph(&text, &dir).expect("valid")).expect("starts");
                    let mut peak = 0.0f32;
                    for k in 0..40 {
                        let cutoff = if k == 39 { max } else { 10.0 * (max / 10.0).powf(f64::from(k) / 39.0) };
                        e.engine.set("n", "cutoff_hz", cutoff).expect("accepted");
                        // Settle past the ramp, then measure.
                        let out = run(&mut e, &input, 6);
                        peak = out.iter().fold(peak, |p, v| p.max(v.abs()));
                        assert!(out.iter().all(|v| v.is_finite()), "{module} {kind} q {q} at {cutoff} Hz, {rate} Hz");
                    }
                    let faults = e.engine.metrics().nodes[0].faults;
                    assert_eq!(faults, 0, "{module} {kind} q {q} at {rate} Hz faulted");
                    // White noise of at most 0.8 through a resonance of Q 20: gain at most about 20.
                    assert!(peak < 40.0, "{module} {kind} q {q} at {rate} Hz: peak {peak}");
                }
            }
            // One step past the rate's maximum is refused where it is written.
            let text = node_graph(&format!("Wasm(path: \"{module}\", config: {{\"cutoff_hz\": {}}})", max + 1.0))
                .replace("48000", &rate.to_string());
            let err = graph(&text, &dir).expect_err("past the maximum");
            assert!(err.to_string().contains("config.cutoff_hz") && err.position.is_some(), "{err}");
        }
    }
}

/// The RBJ cookbook's magnitude (dB) at `f` for a low-pass, high-pass or (constant 0 dB peak) band-pass at
/// `f0` with `q`, at rate `sr`: the analytic reference for the shipped plugins.
fn cookbook_db(kind: &str, f0: f64, q: f64, sr: f64, f: f64) -> f64 {
    let (b, a) = cookbook(kind, f0, q, sr);
    let w = std::f64::consts::TAU * f / sr;
    let eval =
        |c: [f64; 3]| (c[0] + c[1] * w.cos() + c[2] * (2.0 * w).cos()).hypot(c[1] * w.sin() + c[2] * (2.0 * w).sin());
    20.0 * (eval(b) / eval(a)).log10()
}

#[test]
fn the_shipped_plugins_follow_the_cookbook_response_across_the_sweep() {
    // Each type at three resonances, five cutoffs from 100 Hz to the rate's maximum, three rates: the
    // impulse response's magnitude at half, one and two times the cutoff (below 0.45 of the rate) is the
    // cookbook's within 0.001 dB, wherever it is above -80 dB (the plugins compute in `f64`; the impulse
    // response's `f32` samples are the error).
    let dir = plugin_dir();
    for rate in [44100u32, 48000, 96000] {
        let sr = f64::from(rate);
        let max = 40000f64.min(0.95 * sr / 2.0);
        for module in ["biquad_filter.wasm", "biquad_filter_c.wasm"] {
            for kind in ["lowpass", "highpass", "bandpass"] {
                for q in [0.5, 0.707, 8.0] {
                    for k in 0..5 {
                        let cutoff = 100.0 * (max / 100.0).powf(f64::from(k) / 4.0);
                        let text = format!(
                            "(sample_rate: {rate}, channels: 1, nodes: {{ \"n\": Wasm(path: \"{module}\", config: \
                             {{\"type\": \"{kind}\", \"resonance\": {q}, \"cutoff_hz\": {cutoff}}}) }}, \
                             edges: [(\"input\", \"n\"), (\"n\", \"output\")])"
                        );
                        let (mut engine, mut audio) =
                            Engine::new(graph(&text, &dir).expect("valid"), EngineOptions::default()).expect("starts");
                        let frames = rate as usize / 2;
                        let mut x = vec![0.0f32; frames];
                        x[0] = 1.0;
                        let mut h = vec![0.0f32; frames];
                        audio.process_interleaved(&x, &mut h, 1);
                        engine.update();
                        for f in [cutoff / 2.0, cutoff, 2.0 * cutoff] {
                            if f > 0.45 * sr {
                                continue;
                            }
                            let want = cookbook_db(kind, cutoff, q, sr, f);
                            if want < -80.0 {
                                continue;
                            }
                            let w = std::f64::consts::TAU * f / sr;
                            let (re, im) = h.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, &v)| {
                                (re + f64::from(v) * (w * n as f64).cos(), im - f64::from(v) * (w * n as f64).sin())
                            });
                            let got = 20.0 * re.hypot(im).log10();
                            assert!(
                                (got - want).abs() < 0.001,
                                "{module} {kind} q {q}, cutoff {cutoff:.1} Hz at {rate} Hz: {got:.3} dB at {f:.1} Hz, cookbook {want:.3}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_plugin_can_refuse_its_configuration_with_a_message_the_host_shows() {
    // The shipped plugins refuse a cutoff at or above Nyquist themselves (the manifest keeps graphs from
    // asking, so go around it with a manifest that does not limit the cutoff).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(plugin_dir().join("biquad_filter.wasm"), dir.path().join("loose.wasm")).expect("copy");
    let manifest = std::fs::read_to_string(plugin_dir().join("biquad_filter.json"))
        .expect("manifest")
        .replace(", \"max_nyquist_fraction\": 0.95", "");
    std::fs::write(dir.path().join("loose.json"), manifest).expect("write");
    let text = node_graph("Wasm(path: \"loose.wasm\", config: {\"cutoff_hz\": 30000.0})");
    let err = match start(graph(&text, dir.path()).expect("the manifest allows it")) {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("the plugin refused this configuration"), "{err}");
    assert!(err.contains("cutoff_hz must be below the Nyquist frequency"), "{err}");
    assert!(err.starts_with("node \"n\""), "{err}");
}

#[test]
fn the_hard_deadline_is_capped_whatever_the_manifest_claims() {
    // The largest budget a manifest may declare (1 s): ten budgets would be 10 s; the cap is four block
    // periods (512 frames at 48 kHz: 43 ms), rounded up to the epoch's 5 ms ticks.
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = wat(&module(&Variant { process: "(loop $l (br $l))", ..BASE }));
    std::fs::write(dir.path().join("stuck.wasm"), &wasm).expect("write");
    std::fs::write(
        dir.path().join("stuck.json"),
        MANIFEST.replace("\"block_budget_us\": 500", "\"block_budget_us\": 1000000"),
    )
    .expect("write");
    let mut e = start(graph(&node_graph("Wasm(path: \"stuck.wasm\")"), dir.path()).expect("valid")).expect("starts");
    let input = noise(2 * 512);
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        assert_eq!(run(&mut e, &input, 1), input, "bypassed dry");
        worst = worst.max(t.elapsed());
    }
    assert!(worst < std::time::Duration::from_millis(200), "a stuck block took {worst:?}");
    assert!(e.engine.metrics().nodes[0].faults >= 1);
    // An absurd budget is refused when the graph is loaded, naming the field.
    std::fs::write(
        dir.path().join("stuck.json"),
        MANIFEST.replace("\"block_budget_us\": 500", "\"block_budget_us\": 30000000"),
    )
    .expect("write");
    std::fs::copy(dir.path().join("stuck.wasm"), dir.path().join("stuck2.wasm")).expect("copy");
    std::fs::copy(dir.path().join("stuck.json"), dir.path().join("stuck2.json")).expect("copy");
    let err = graph(&node_graph("Wasm(path: \"stuck2.wasm\")"), dir.path()).expect_err("absurd budget");
    assert!(err.to_string().contains("block_budget_us") && err.position.is_some(), "{err}");
}

#[test]
fn memory_may_grow_where_the_abi_allows_it_and_faults_nowhere_else() {
    // Growing in fxg_initialize and fxg_start is allowed (the buffers are checked against the memory as
    // setup leaves it); a block never faults for it.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = module(&Variant { init: "(drop (memory.grow (i32.const 1)))", ..BASE })
        .replace(r#"(func (export "fxg_start"))"#, r#"(func (export "fxg_start") (drop (memory.grow (i32.const 2))))"#);
    let g = install(dir.path(), "grows_at_start", &wat(&text));
    let mut e = start(graph(&g, dir.path()).expect("valid")).expect("starts");
    let input = noise(2 * 512 * 8);
    assert_eq!(
        run(&mut e, &input, 40),
        (0..40).flat_map(|b| input[(b * 1024) % input.len()..][..1024].to_vec()).collect::<Vec<_>>()
    );
    let report = e.engine.metrics();
    assert_eq!(report.nodes[0].faults, 0, "growth in start is not a fault");
    assert_eq!(report.nodes[0].memory_bytes, Some(5 * 65536), "2 pages, 1 more at initialize, 2 at start");
}

#[test]
fn plugin_text_cannot_forge_host_output() {
    // A plugin logging a forged host line, control characters and an invalid sequence, during a render:
    // stderr shows one escaped line marked as the plugin's.
    let dir = tempfile::tempdir().expect("tempdir");
    let imports = r#"(import "fxgraph" "log" (func $log (param i32 i32 i32)))
  (data (i32.const 200) "ok\0aerror: forged by the plugin\0d\00\1b[31m")"#;
    let text =
        module(&Variant { imports, process: "(call $log (i32.const 0) (i32.const 200) (i32.const 37))", ..BASE });
    std::fs::write(dir.path().join("forger.wasm"), wat(&text)).expect("write");
    std::fs::write(dir.path().join("forger.json"), MANIFEST).expect("write");
    std::fs::write(dir.path().join("g.ron"), node_graph("Wasm(path: \"forger.wasm\")")).expect("write");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(["render", "g.ron", "--seconds", "0.05", "-o", "out.wav"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("error: forged")), "{err}");
    assert!(!err.contains('\r') && !err.contains('\0') && !err.contains('\x1b'), "{err:?}");
    assert!(err.contains(r"[plugin] ok\nerror: forged by the plugin\r\u{0}\u{1b}[31m"), "{err}");
    // Subscribers get the text as the plugin sent it, typed as untrusted.
    let mut e = start(graph(&node_graph("Wasm(path: \"forger.wasm\")"), dir.path()).expect("valid")).expect("starts");
    run(&mut e, &noise(1024), 1);
    let m = e.engine.messages().pop().expect("a message");
    assert_eq!(m.text.raw(), "ok\nerror: forged by the plugin\r\0\x1b[31m");
    assert_eq!(m.text.to_string(), r"ok\nerror: forged by the plugin\r\u{0}\u{1b}[31m");
}

#[test]
fn inconsistent_manifests_are_refused_at_load_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = wat(&module(&BASE));
    for (name, params, needle) in [
        (
            "dup_id",
            r#"{"id": 1, "key": "a", "name": "A", "min": 0, "max": 1, "default": 0}, {"id": 1, "key": "b", "name": "B", "min": 0, "max": 1, "default": 0}"#,
            "id 1 is declared twice",
        ),
        (
            "dup_key",
            r#"{"id": 1, "key": "a", "name": "A", "min": 0, "max": 1, "default": 0}, {"id": 2, "key": "a", "name": "B", "min": 0, "max": 1, "default": 0}"#,
            "key `a` is declared twice",
        ),
        ("unbounded", r#"{"id": 1, "key": "a", "name": "A", "default": 0}"#, "needs `min`"),
        ("huge", r#"{"id": 1, "key": "a", "name": "A", "min": 0, "max": 1e300, "default": 0}"#, "finite 32-bit"),
    ] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), &wasm).expect("write");
        std::fs::write(
            dir.path().join(format!("{name}.json")),
            MANIFEST.replace(r#""parameters": []"#, &format!(r#""parameters": [{params}]"#)),
        )
        .expect("write");
        let err = graph(&node_graph(&format!("Wasm(path: \"{name}.wasm\")")), dir.path()).expect_err(name);
        assert!(err.to_string().contains(needle) && err.node.as_deref() == Some("n"), "{name}: {err}");
    }
}

#[test]
fn faults_far_apart_are_forgiven_so_a_long_session_keeps_its_plugin() {
    // A plugin that faults once every 2000 blocks of its own life (each instance counts from zero): over a
    // long stretch it faults far more than five times, each time replaced, never bypassed for good.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = module(&Variant {
        imports: r#"(global $blocks (mut i32) (i32.const 0))"#,
        process: "(global.set $blocks (i32.add (global.get $blocks) (i32.const 1))) \
                  (if (i32.eq (global.get $blocks) (i32.const 1000)) (then (return (i32.const 9))))",
        ..BASE
    });
    let g = install(dir.path(), "flaky", &wat(&text));
    let mut e = start(graph(&g, dir.path()).expect("valid")).expect("starts");
    let input = noise(2 * 512 * 4);
    run(&mut e, &input, 7 * 1010);
    let faults = e.engine.metrics().nodes[0].faults;
    assert!(faults >= 6, "{faults} faults, each forgiven after 10 s of clean audio");
    let messages = e.engine.messages();
    assert!(!messages.iter().any(|m| m.text.raw().contains("bypassed for good")));
}

// ---- Plugin packages -------------------------------------------------------------------------------

/// `fxgraph` with its plugin folder set to `root` (and no other user folder).
fn fx(args: &[&str], dir: &Path, root: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .args(args)
        .current_dir(dir)
        .env("FXGRAPH_PLUGIN_PATH", root)
        .env("XDG_DATA_HOME", dir.join("no-user-data"))
        .output()
        .expect("run fxgraph")
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A copy of the shipped package folder, with `edit` applied to its plugin.json.
fn package_copy(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = plugin_dir();
    let to = dir.join(name);
    std::fs::create_dir_all(&to).expect("mkdir");
    for f in ["biquad_filter.wasm", "biquad_filter_c.wasm"] {
        std::fs::copy(src.join(f), to.join(f)).expect("copy");
    }
    std::fs::copy(repo_plugins().join("README.md"), to.join("README.md")).expect("copy");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_plugins().join("plugin.json")).expect("plugin.json"))
            .expect("json");
    edit(&mut m);
    std::fs::write(to.join("plugin.json"), serde_json::to_string_pretty(&m).expect("json")).expect("write");
    to
}

/// The shipped package folder (plugin.json lives with the committed modules).
fn repo_plugins() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/wasm"))
}

const BY_ID: &str = r#"(sample_rate: 48000, channels: 2,
    nodes: { "filter": Wasm(id: "org.fxgraph.biquad-filter", version: "REQ", config: {"cutoff_hz": 3000.0}) },
    edges: [("input", "filter"), ("filter", "output")])"#;

fn picked(dir: &Path, root: &Path, req: &str) -> String {
    std::fs::write(dir.join("g.ron"), BY_ID.replace("REQ", req)).expect("write");
    let o = fx(&["check", "g.ron"], dir, root);
    text(&o)
}

#[test]
fn packages_install_by_id_pick_versions_and_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, root) = (dir.path(), dir.path().join("plugins"));
    // The shipped plugin, packaged by the documented command, installed.
    let o = fx(&["plugin", "pack", repo_plugins().to_str().expect("utf-8"), "-o", "bq.tar.gz"], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    let o = fx(&["plugin", "install", "bq.tar.gz"], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("installed org.fxgraph.biquad-filter 1.0.0"), "{}", text(&o));
    // A graph naming it by id renders, bit for bit as the same module named by path.
    std::fs::write(d.join("g.ron"), BY_ID.replace("REQ", "^1.0")).expect("write");
    let path_form = BY_ID.replace(
        r#"id: "org.fxgraph.biquad-filter", version: "REQ""#,
        &format!("path: {:?}", plugin_dir().join("biquad_filter.wasm")),
    );
    std::fs::write(d.join("p.ron"), path_form).expect("write");
    for (g, out) in [("g.ron", "a.wav"), ("p.ron", "b.wav")] {
        let o = fx(&["render", g, "-o", out, "--seconds", "1"], d, &root);
        assert!(o.status.success(), "{g}: {}", text(&o));
    }
    assert!(std::fs::read(d.join("a.wav")).expect("a") == std::fs::read(d.join("b.wav")).expect("b"));

    // 1.1 beside 1.0 (its C build preferred): requirements pick the newest match.
    let v11 = package_copy(d, "v11", |m| {
        m["version"] = "1.1.0".into();
        m["modules"][0]["preferred"] = false.into();
        m["modules"][1]["preferred"] = true.into();
    });
    let o = fx(&["plugin", "install", v11.to_str().expect("utf-8")], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    assert!(picked(d, &root, "^1.0").contains("Wasm (org.fxgraph.biquad-filter@1.1.0)"));
    assert!(picked(d, &root, "~1.0").contains("Wasm (org.fxgraph.biquad-filter@1.0.0)"));
    assert!(picked(d, &root, "=1.0.0").contains("Wasm (org.fxgraph.biquad-filter@1.0.0)"));
    let none = picked(d, &root, "^2");
    assert!(
        none.contains("g.ron:2:62: node \"filter\": Wasm: `version` no installed version of \"org.fxgraph.biquad-filter\" matches \"^2\" (installed: 1.0.0, 1.1.0)"),
        "{none}"
    );
    let list = text(&fx(&["plugin", "list"], d, &root));
    assert!(
        list.contains("org.fxgraph.biquad-filter 1.0.0") && list.contains("org.fxgraph.biquad-filter 1.1.0"),
        "{list}"
    );
    let v11_line = list.lines().find(|l| l.contains("biquad-filter 1.1.0")).expect("1.1.0 listed");
    let (c, rust) = (v11_line.find("biquad_filter_c.wasm (sha256 "), v11_line.find("biquad_filter.wasm (sha256 "));
    assert!(c.is_some() && rust.is_some() && c < rust, "1.1 prefers its C build: {list}");
    assert!(v11_line.contains(", c), ") && v11_line.contains(", rust)"), "{list}");

    // Installing a version again is refused unless forced.
    let o = fx(&["plugin", "install", v11.to_str().expect("utf-8")], d, &root);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already installed"), "{}", text(&o));
    let o = fx(&["plugin", "install", "--force", v11.to_str().expect("utf-8")], d, &root);
    assert!(o.status.success(), "{}", text(&o));

    // Remove 1.1, then everything.
    let o = fx(&["plugin", "remove", "org.fxgraph.biquad-filter@1.1.0"], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    assert!(picked(d, &root, "^1.0").contains("@1.0.0)"));
    let o = fx(&["plugin", "remove", "org.fxgraph.biquad-filter"], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    let missing = picked(d, &root, "^1.0");
    assert!(
        missing
            .contains("g.ron:2:29: node \"filter\": Wasm: `id` no plugin \"org.fxgraph.biquad-filter\" is installed"),
        "{missing}"
    );
    assert_eq!(std::fs::read_dir(&root).expect("root").count(), 0, "nothing is left in the plugin folder");
}

/// One raw archive entry: name, type, data, link target.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a [u8]>);

/// A .tar.gz with entries written as given (names, types and sizes unchecked), for hostile packages.
fn raw_archive(path: &Path, entries: &[RawEntry<'_>]) {
    let file = std::fs::File::create(path).expect("create");
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name);
            if let Some(link) = link {
                gnu.linkname[..link.len()].copy_from_slice(link);
            }
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish tar").finish().expect("finish gz");
}

#[test]
fn hostile_and_incompatible_packages_are_refused_leaving_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, root) = (dir.path(), dir.path().join("plugins"));
    let manifest = std::fs::read(repo_plugins().join("plugin.json")).expect("plugin.json");
    let module = std::fs::read(plugin_dir().join("biquad_filter.wasm")).expect("module");
    let file = tar::EntryType::Regular;
    let cases: Vec<(&str, Vec<RawEntry<'_>>, &str)> = vec![
        (
            "traversal",
            vec![(b"p/plugin.json", file, &manifest, None), (b"p/../../evil.wasm", file, &module, None)],
            "outside the package folder",
        ),
        ("absolute", vec![(b"/tmp/fxgraph-evil.wasm", file, &module, None)], "outside the package folder"),
        (
            "symlink",
            vec![
                (b"p/plugin.json", file, &manifest, None),
                (b"p/biquad_filter.wasm", tar::EntryType::Symlink, b"", Some(b"/etc/passwd")),
            ],
            "is a link",
        ),
        (
            "hardlink",
            vec![
                (b"p/plugin.json", file, &manifest, None),
                (b"p/biquad_filter.wasm", tar::EntryType::Link, b"", Some(b"../../../etc/passwd")),
            ],
            "is a link",
        ),
        ("device", vec![(b"p/dev", tar::EntryType::Char, b"", None)], "packages may hold only files and folders"),
    ];
    let mut archives: Vec<(String, &str)> = Vec::new();
    for (name, entries, why) in &cases {
        raw_archive(&d.join(format!("{name}.tar.gz")), entries);
        archives.push((format!("{name}.tar.gz"), why));
    }
    // A gzip bomb: a 100 MiB file of zeros (a hundred kilobytes compressed).
    let zeros = vec![0u8; 100 << 20];
    raw_archive(&d.join("bomb.tar.gz"), &[(b"p/plugin.json", file, &manifest, None), (b"p/zeros", file, &zeros, None)]);
    archives.push(("bomb.tar.gz".into(), "unpacks to more than 64 MiB"));
    drop(zeros);
    // Too many files.
    let names: Vec<Vec<u8>> = (0..300).map(|i| format!("p/f{i}").into_bytes()).collect();
    let many: Vec<RawEntry<'_>> = names.iter().map(|n| (n.as_slice(), file, b"x".as_slice(), None)).collect();
    raw_archive(&d.join("many.tar.gz"), &many);
    archives.push(("many.tar.gz".into(), "more than 256 files"));
    // An id with a path separator.
    let evil_id = package_copy(d, "evil-id", |m| m["id"] = "../../evil".into());
    assert!(
        fx(&["plugin", "pack", evil_id.to_str().expect("utf-8"), "-o", "x.tar.gz"], d, &root).status.code() == Some(2)
    );
    let bad_manifest = String::from_utf8_lossy(&manifest).replace("org.fxgraph.biquad-filter", "../../evil");
    raw_archive(
        &d.join("id.tar.gz"),
        &[(b"p/plugin.json", file, bad_manifest.as_bytes(), None), (b"p/biquad_filter.wasm", file, &module, None)],
    );
    archives.push(("id.tar.gz".into(), "no path separators"));
    // A truncated archive, and one that is not gzip at all.
    let o = fx(&["plugin", "pack", repo_plugins().to_str().expect("utf-8"), "-o", "good.tar.gz"], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    let good = std::fs::read(d.join("good.tar.gz")).expect("good");
    std::fs::write(d.join("cut.tar.gz"), &good[..good.len() / 2]).expect("write");
    archives.push(("cut.tar.gz".into(), "truncated or corrupt"));
    std::fs::write(d.join("plain.tar.gz"), b"not a package").expect("write");
    archives.push(("plain.tar.gz".into(), "not a .tar.gz package"));
    // Incompatible: another ABI, a newer fxgraph, a host function the host does not have, an import the
    // manifest does not declare.
    for (name, edit, why) in [
        (
            "abi",
            Box::new(|m: &mut serde_json::Value| m["abi_versions"] = serde_json::json!([2]))
                as Box<dyn Fn(&mut serde_json::Value)>,
            "supports plugin ABI version(s) [2]; this fxgraph implements ABI version 1",
        ),
        (
            "newer",
            Box::new(|m: &mut serde_json::Value| m["min_fxgraph"] = "99.0.0".into()),
            "needs fxgraph 99.0.0 or newer; this is fxgraph 0.1.0",
        ),
        (
            "offer",
            Box::new(|m: &mut serde_json::Value| {
                m["host_functions"] = serde_json::json!(["fxgraph.log", "fxgraph.open_file"])
            }),
            "which this host does not offer",
        ),
        (
            "undeclared",
            Box::new(|m: &mut serde_json::Value| m["host_functions"] = serde_json::json!([])),
            "which its manifest does not declare",
        ),
    ] {
        let p = package_copy(d, name, edit);
        archives.push((p.to_str().expect("utf-8").to_string(), why));
    }
    for (archive, why) in &archives {
        let o = fx(&["plugin", "install", archive], d, &root);
        assert_eq!(o.status.code(), Some(2), "{archive}: {}", text(&o));
        assert!(text(&o).contains(why), "{archive}: wanted {why:?} in {}", text(&o));
        let left: Vec<_> =
            std::fs::read_dir(&root).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{archive} left {left:?}");
    }
    assert!(!d.join("evil.wasm").exists() && !dir.path().parent().expect("tmp").join("evil.wasm").exists());
    assert!(!Path::new("/tmp/fxgraph-evil.wasm").exists());

    // At load too: an installed module whose manifest was edited to need a newer fxgraph is refused.
    let o = fx(&["plugin", "install", "good.tar.gz"], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    let json = root.join("org.fxgraph.biquad-filter/1.0.0/biquad_filter.json");
    let edited = std::fs::read_to_string(&json)
        .expect("json")
        .replace("\"min_fxgraph\": \"0.1.0\"", "\"min_fxgraph\": \"99.0.0\"");
    std::fs::write(&json, edited).expect("write");
    let out = picked(d, &root, "^1");
    assert!(out.contains("needs fxgraph 99.0.0 or newer; this is fxgraph 0.1.0"), "{out}");
}

// ---- Long-run stability (by hand) ------------------------------------------------------------------

/// The soak test, run by hand (see fuzz/README.md for the recorded run):
///
/// `FXGRAPH_SOAK_SECONDS=3600 FXGRAPH_SOAK_REALTIME=1 cargo test --release --test wasm soak -- --ignored --nocapture`
///
/// The headline chain (EQ, compressor, the shipped WebAssembly filter, limiter) with a plugin that traps
/// every 1100 blocks of its own life (11.7 s), on the demo signal, for `FXGRAPH_SOAK_SECONDS` of audio
/// (default 600), at real-time pace with `FXGRAPH_SOAK_REALTIME=1`. The plugin logs a line in the block
/// before each trap, so the faults injected are counted independently of the host's fault counter. Checks:
/// every fault injected is counted, the plugin is never bypassed for good, no output sample is NaN or
/// infinite or above the limiter's ceiling, and RSS (sampled every 10 s of audio) grows by less than 1 MiB
/// after the first minute.
#[test]
#[ignore = "long: run by hand"]
fn soak_with_a_plugin_that_faults_every_few_seconds() {
    let seconds: f64 = std::env::var("FXGRAPH_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600.0);
    let realtime = std::env::var_os("FXGRAPH_SOAK_REALTIME").is_some();
    let dir = tempfile::tempdir().expect("tempdir");
    let flaky = module(&Variant {
        imports: r#"(import "fxgraph" "log" (func $log (param i32 i32 i32)))
                    (global $blocks (mut i32) (i32.const 0))
                    (data (i32.const 64) "fault injected next block")"#,
        process: "(global.set $blocks (i32.add (global.get $blocks) (i32.const 1))) \
                  (if (i32.eq (global.get $blocks) (i32.const 1099)) (then (call $log (i32.const 1) (i32.const 64) (i32.const 25)))) \
                  (if (i32.eq (global.get $blocks) (i32.const 1100)) (then unreachable))",
        ..BASE
    });
    std::fs::write(dir.path().join("flaky.wasm"), wat(&flaky)).expect("write");
    // A generous budget: the deadline is then the host's cap (four block periods), so a busy machine's
    // scheduling does not add faults to the injected ones.
    std::fs::write(
        dir.path().join("flaky.json"),
        MANIFEST.replace("\"block_budget_us\": 500", "\"block_budget_us\": 10000"),
    )
    .expect("write");
    let text = format!(
        "(sample_rate: 48000, channels: 2, nodes: {{
            \"eq\": Eq(bands: [(kind: LowShelf, freq_hz: 100.0, gain_db: 2.0, q: 0.707), (kind: Peak, freq_hz: 3000.0, gain_db: -1.5, q: 1.2)]),
            \"comp\": Compressor(threshold_db: -18.0, ratio: 3.0, attack_ms: 10.0, release_ms: 120.0, knee_db: 6.0, makeup_db: 2.0),
            \"filter\": Wasm(path: \"{}/biquad_filter.wasm\", config: {{\"type\": \"lowpass\", \"cutoff_hz\": 12000.0}}),
            \"flaky\": Wasm(path: \"flaky.wasm\"),
            \"limit\": Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0),
        }}, edges: [(\"input\", \"eq\"), (\"eq\", \"comp\"), (\"comp\", \"filter\"), (\"filter\", \"flaky\"), (\"flaky\", \"limit\"), (\"limit\", \"output\")])",
        plugin_dir().display()
    );
    let g = graph(&text, dir.path()).expect("valid");
    let mut rig = start(g).expect("starts");
    let block = 512usize;
    let total_blocks = (seconds * 48000.0 / block as f64) as u64;
    let mut demo = fxgraph::io::demo::DemoSignal::new(48000, 2, seconds);
    let (mut x, mut y) = (vec![0.0f32; 2 * block], vec![0.0f32; 2 * block]);
    let ceiling = 10f32.powf(-1.0 / 20.0);
    let rss = || {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc");
        let kb = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1));
        kb.and_then(|k| k.parse::<u64>().ok()).expect("VmRSS") * 1024
    };
    let (mut injected, mut given_up, mut bad_samples, mut over) = (0u64, 0u64, 0u64, 0u64);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let every = (10.0 * 48000.0 / block as f64) as u64;
    let started = std::time::Instant::now();
    for b in 0..total_blocks {
        demo.fill(&mut AudioOut::new(&mut x, block, 2, block));
        rig.audio.process(&AudioIn::new(&x, block, 2, block), &mut AudioOut::new(&mut y, block, 2, block));
        rig.engine.update();
        // As an application would: it takes the messages (and the engine's events, which it ignores here).
        drop(rig.engine.events());
        for m in rig.engine.messages() {
            if m.text.raw().contains("fault injected next block") {
                injected += 1;
            }
            if m.text.raw().contains("bypassed for good") {
                given_up += 1;
            }
        }
        bad_samples += y.iter().filter(|v| !v.is_finite()).count() as u64;
        over += y.iter().filter(|v| v.abs() > ceiling).count() as u64;
        if b % every == 0 {
            let t = b as f64 * block as f64 / 48000.0;
            samples.push((t, rss()));
            if samples.len() % 30 == 1 {
                let faults = rig.engine.metrics().nodes.iter().find(|n| n.name == "flaky").map_or(0, |n| n.faults);
                let heap = fxgraph::alloc::CountingAllocator::stats().expect("installed").live;
                eprintln!(
                    "soak: {t:>6.0} s of audio, RSS {:.2} MiB, heap {:.2} MiB, {faults} faults",
                    samples.last().expect("sample").1 as f64 / 1048576.0,
                    heap as f64 / 1048576.0
                );
            }
        }
        if realtime {
            let due = started + std::time::Duration::from_secs_f64((b + 1) as f64 * block as f64 / 48000.0);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let report = rig.engine.metrics();
    let faults = report.nodes.iter().find(|n| n.name == "flaky").expect("flaky").faults;
    let after_minute: Vec<u64> = samples.iter().filter(|(t, _)| *t >= 60.0).map(|s| s.1).collect();
    let (lo, hi) = (after_minute.iter().min().copied().unwrap_or(0), after_minute.iter().max().copied().unwrap_or(0));
    eprintln!(
        "soak done: {seconds} s of audio in {:.0} s, {faults} faults counted, {injected} injected, RSS after the first minute {:.2} to {:.2} MiB (growth {} KiB), {bad_samples} non-finite samples, {over} over the ceiling",
        started.elapsed().as_secs_f64(),
        lo as f64 / 1048576.0,
        hi as f64 / 1048576.0,
        (hi - lo) / 1024
    );
    // The run may end between a block's log line and the next block's trap.
    assert!(injected > 0 && (faults == injected || faults + 1 == injected), "{faults} counted, {injected} injected");
    assert_eq!(given_up, 0, "the plugin was bypassed for good");
    assert_eq!(bad_samples, 0);
    assert_eq!(over, 0);
    assert!(hi - lo < 1 << 20, "RSS grew by {} KiB after the first minute", (hi - lo) / 1024);
}

#[cfg(unix)]
#[test]
fn pins_hold_for_modules_and_install_refuses_folders_others_can_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for f in ["biquad_filter.wasm", "biquad_filter.json"] {
        std::fs::copy(plugin_dir().join(f), d.join(f)).expect("copy");
    }
    let digest = fxgraph::nodes::plugin::file_sha256(&d.join("biquad_filter.wasm")).expect("digest");
    let pinned = |pin: &str| node_graph(&format!("Wasm(path: \"biquad_filter.wasm\", sha256: {pin:?})"));
    let mut rig = start(graph(&pinned(&digest), d).expect("the pin matches")).expect("starts");
    run(&mut rig, &noise(2 * 512), 2);
    assert_eq!(rig.engine.metrics().nodes[0].faults, 0);
    // Another module's digest: refused at the pin, before anything is compiled.
    std::fs::write(d.join("pass.wasm"), wat(&module(&BASE))).expect("write");
    let other = fxgraph::nodes::plugin::file_sha256(&d.join("pass.wasm")).expect("digest");
    let e = graph(&pinned(&other), d).expect_err("refused").to_string();
    assert!(e.contains("does not match the graph's pin") && e.contains(&digest) && e.contains(&other), "{e}");
    assert!(e.contains("plugin.ron:1:") && e.contains("node \"n\""), "located: {e}");
    let e = graph(&pinned("sha256-of-nothing"), d).expect_err("refused").to_string();
    assert!(e.contains("64 hexadecimal digits"), "{e}");

    // `plugin install` into a folder others can write is refused (nothing written), unless --force; `plugin
    // list` prints each module's digest.
    use std::os::unix::fs::PermissionsExt as _;
    let root = d.join("plugins");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let pkg = package_copy(d, "pkg", |_| {});
    let o = fx(&["plugin", "install", pkg.to_str().expect("utf-8")], d, &root);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("refusing to install into") && text(&o).contains("writable by others"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&root).expect("dir").count(), 0, "nothing left behind");
    let o = fx(&["plugin", "install", "--force", pkg.to_str().expect("utf-8")], d, &root);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let o = fx(&["plugin", "install", "--force", pkg.to_str().expect("utf-8")], d, &root);
    assert!(o.status.success(), "a private folder: {}", text(&o));
    let o = fx(&["plugin", "list"], d, &root);
    assert!(text(&o).contains(&format!("biquad_filter.wasm (sha256 {digest}")), "{}", text(&o));
}

/// A module of ABI 1.1 with audio buses: inputs `a` (1 channel) and `key` (optional, at most 1 channel),
/// output `out` (1 channel): `out = a * key`, or `a` when nothing feeds the key.
const VCA: &str = r#"(module
  (memory (export "memory") 2)
  (global $key (mut i32) (i32.const 0))
  (data (i32.const 16) "\00\04\00\00\00\10\00\00\00\20\00\00")
  (func (export "fxg_abi_version") (result i32) (i32.const 1))
  (func (export "fxg_set_param") (param i32 f32) (result i32) (i32.const 0))
  (func (export "fxg_bus_channels") (param $bus i32) (param $ch i32) (result i32)
    (if (i32.eq (local.get $bus) (i32.const 1)) (then (global.set $key (local.get $ch))))
    (if (result i32) (i32.gt_u (local.get $ch) (i32.const 1)) (then (i32.const 1)) (else (i32.const 0))))
  (func (export "fxg_initialize") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "fxg_buffers") (result i32) (i32.const 16))
  (func (export "fxg_start"))
  (func (export "fxg_process") (param $n i32) (result i32) (local $i i32) (local $g f32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $g (f32.const 1))
      (if (global.get $key)
        (then (local.set $g (f32.load (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2)))))))
      (f32.store (i32.add (i32.const 8192) (i32.shl (local.get $i) (i32.const 2)))
        (f32.mul (local.get $g) (f32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0))
  (func (export "fxg_stop"))
  (func (export "fxg_cleanup"))
)"#;

const VCA_MANIFEST: &str = r#"{"id": "test.vca", "name": "VCA", "version": "0.0.1", "abi_version": 1, "abi_minor": 1,
  "memory_limit_bytes": 1048576, "block_budget_us": 500, "parameters": [],
  "buses": {"inputs": [{"name": "a", "channels": 1}, {"name": "key", "optional": true}], "outputs": [{"name": "out", "channels": 1}]}}"#;

#[test]
fn a_module_of_abi_1_1_declares_buses_that_are_the_node_s_ports() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vca.wasm"), wat(VCA)).expect("write module");
    std::fs::write(dir.path().join("vca.json"), VCA_MANIFEST).expect("write manifest");
    let render = |text: &str, input: Vec<Vec<f32>>| {
        let (y, report) = common::render_planar(graph(text, dir.path()).unwrap_or_else(|e| panic!("{e}")), input);
        assert_eq!(report.nodes[0].faults, 0);
        y
    };
    let a: Vec<f32> = noise(3000).iter().map(|v| v * 0.5).collect();
    let k: Vec<f32> = (0..3000).map(|n| (n % 100) as f32 / 100.0).collect();
    let keyed = r#"(sample_rate: 48000, inputs: {"a": 1, "k": 1}, outputs: {"main": 1},
        nodes: { "v": Wasm(path: "vca.wasm") }, edges: [("input.a", "v.a"), ("input.k", "v.key"), ("v", "output")])"#;
    let y = render(keyed, vec![a.clone(), k.clone()]);
    let want: Vec<f32> = a.iter().zip(&k).map(|(a, k)| a * k).collect();
    assert_eq!(y[0], want, "out = a * key");
    // Without the optional key the plugin is told it has 0 channels, and passes `a`.
    let alone = r#"(sample_rate: 48000, inputs: {"a": 1}, outputs: {"main": 1},
        nodes: { "v": Wasm(path: "vca.wasm") }, edges: [("input", "v.a"), ("v", "output")])"#;
    assert_eq!(render(alone, vec![a.clone()])[0], a);
    // A stereo key is refused by the plugin (fxg_bus_channels), naming the bus.
    let stereo = keyed.replace(r#""k": 1"#, r#""k": 2"#);
    let g = graph(&stereo, dir.path()).expect("the graph is valid");
    let e = Engine::new(g, EngineOptions::default()).err().expect("refused").to_string();
    assert!(e.contains("the plugin refused 2 channels on bus 1"), "{e}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fxgraph"))
        .arg("plugin")
        .arg(dir.path().join("vca.wasm"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("ABI version 1.1") && text.contains("audio buses: in a (1 ch), key (optional); out out (1 ch)"),
        "{text}"
    );
    // `buses` need `abi_minor` 1; a manifest of ABI 1.0 runs as before (every other test here).
    std::fs::write(dir.path().join("vca.json"), VCA_MANIFEST.replace(r#""abi_minor": 1,"#, "")).expect("write");
    let e = graph(keyed, dir.path()).expect_err("refused").to_string();
    assert!(e.contains("declares `buses`, which needs `abi_minor` 1"), "{e}");
}
