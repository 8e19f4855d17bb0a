//! The C API, called as C calls it (through its `extern "C"` functions), and the C example built with the
//! system's compiler against the committed header and run.

use fxgraph_c::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};

const GAIN: &str = r#"(sample_rate: 48000, channels: 2,
    nodes: { "gain": Gain(gain_db: 0.0), "comp": Compressor(threshold_db: -18.0, ratio: 4.0, attack_ms: 10.0, release_ms: 100.0, knee_db: 6.0, makeup_db: 0.0) },
    edges: [("input", "gain"), ("gain", "comp"), ("comp", "output")])"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The engine's two handles, freed at the end.
struct Engine {
    engine: *mut FxgraphEngine,
    audio: *mut FxgraphAudio,
}

// SAFETY: the handles are meant to be used from any thread, each side one call at a time (the header's
// contract), which the tests keep.
unsafe impl Send for Engine {}
// SAFETY: as above; a handle used from two threads at once is refused (tested).
unsafe impl Sync for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: handles made by `new`, or NULL.
        unsafe {
            fxgraph_audio_free(self.audio);
            fxgraph_engine_free(self.engine);
        }
    }
}

fn options(realtime: bool) -> FxgraphOptions {
    let mut o = std::mem::MaybeUninit::<FxgraphOptions>::uninit();
    // SAFETY: a valid pointer.
    assert_eq!(unsafe { fxgraph_options_default(o.as_mut_ptr()) }, FXGRAPH_OK);
    // SAFETY: filled above.
    let mut o = unsafe { o.assume_init() };
    o.realtime = u32::from(realtime);
    o
}

fn new(ron: &str) -> Result<Engine, (FxgraphStatus, String)> {
    let ron = CString::new(ron).unwrap();
    let mut e = Engine { engine: null_mut(), audio: null_mut() };
    let mut error = [0 as c_char; 1024];
    let o = options(false);
    // SAFETY: valid strings, options and out-pointers, and an error buffer of its length.
    let status = unsafe {
        fxgraph_engine_new_from_ron(
            ron.as_ptr(),
            null(),
            null(),
            &o,
            &mut e.engine,
            &mut e.audio,
            error.as_mut_ptr(),
            1024,
        )
    };
    // SAFETY: the error buffer holds a NUL-terminated message.
    let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
    if status == FXGRAPH_OK {
        Ok(e)
    } else {
        Err((status, message))
    }
}

fn last_error(engine: *mut FxgraphEngine) -> String {
    let mut buf = [0 as c_char; 1024];
    // SAFETY: a buffer of its length.
    unsafe { fxgraph_last_error(engine, buf.as_mut_ptr(), buf.len(), null_mut()) };
    // SAFETY: NUL-terminated.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

fn set(e: &Engine, node: &str, param: &str, value: f64) -> FxgraphStatus {
    let (node, param) = (CString::new(node).unwrap(), CString::new(param).unwrap());
    // SAFETY: valid strings.
    unsafe { fxgraph_set(e.engine, node.as_ptr(), param.as_ptr(), value) }
}

/// A test signal: two channels of different sines with noise, at -6 dBFS and above.
fn signal(frames: usize) -> Vec<f32> {
    let mut seed = 0x1234_5678u32;
    (0..frames * 2)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1 << 24) as f32 - 0.5;
            let t = (i / 2) as f32 / 48_000.0;
            let f = if i % 2 == 0 { 440.0 } else { 997.0 };
            0.6 * (std::f32::consts::TAU * f * t).sin() + 0.2 * noise
        })
        .collect()
}

#[test]
fn a_bad_graph_gives_a_located_message_and_no_engine() {
    let (status, message) =
        new("(sample_rate: 48000, channels: 2,\n nodes: { \"g\": Gain(gain_db: 0.0 },\n edges: [])")
            .err()
            .expect("a bad graph is refused");
    assert_eq!(status, FXGRAPH_ERR_GRAPH);
    assert!(message.starts_with("<text>:2:"), "file, line and column: {message}");
    let (status, message) = new(r#"(sample_rate: 48000, channels: 2, nodes: { "g": Gain(gain_db: 99.0) },
        edges: [("input", "g"), ("g", "output")])"#)
    .err()
    .expect("an out-of-range value is refused");
    assert_eq!(status, FXGRAPH_ERR_GRAPH);
    assert!(message.contains("gain_db") && message.contains("\"g\""), "names the node and parameter: {message}");

    // A missing file, through the file constructor, with a short buffer: cut, NUL-terminated.
    let path = CString::new("/nonexistent/graph.ron").unwrap();
    let (mut engine, mut audio) = (null_mut(), null_mut());
    let mut error = [1 as c_char; 16];
    // SAFETY: valid arguments; the error buffer is 16 bytes.
    let status =
        unsafe { fxgraph_engine_new_from_file(path.as_ptr(), null(), &mut engine, &mut audio, error.as_mut_ptr(), 16) };
    assert_ne!(status, FXGRAPH_OK);
    assert!(engine.is_null() && audio.is_null());
    // A message longer than the buffer is not written (rather than cut mid-character).
    assert!(error.contains(&0) || error.iter().all(|&c| c == 1));
}

#[test]
fn parameters_are_checked_as_engine_set_checks_them() {
    let e = new(GAIN).unwrap();
    assert_eq!(set(&e, "gain", "gain_db", -6.0), FXGRAPH_OK);
    assert_eq!(last_error(e.engine), "");
    assert_eq!(set(&e, "gain", "volume", 1.0), FXGRAPH_ERR_NO_SUCH_PARAM);
    assert!(last_error(e.engine).contains("has no parameter `volume`"), "{}", last_error(e.engine));
    assert_eq!(set(&e, "nope", "gain_db", 1.0), FXGRAPH_ERR_NO_SUCH_NODE);
    assert_eq!(set(&e, "gain", "gain_db", 100.0), FXGRAPH_ERR_BAD_VALUE);
    assert_eq!(set(&e, "gain", "gain_db", f64::NAN), FXGRAPH_ERR_BAD_VALUE);
    let (node, param) = (CString::new("gain").unwrap(), CString::new("gain_db").unwrap());
    let mut value = 0.0;
    // SAFETY: valid strings and out-pointer.
    assert_eq!(unsafe { fxgraph_get(e.engine, node.as_ptr(), param.as_ptr(), &mut value) }, FXGRAPH_OK);
    assert_eq!(value, -6.0, "refused values changed nothing");
    // Text out: the size asked first, then written.
    let mut needed = 0;
    // SAFETY: a NULL buffer of length 0 asks for the size.
    let status = unsafe { fxgraph_params_json(e.engine, null_mut(), 0, &mut needed) };
    assert_eq!(status, FXGRAPH_ERR_BUFFER_TOO_SMALL);
    let mut buf = vec![0 as c_char; needed];
    // SAFETY: a buffer of `needed` bytes.
    assert_eq!(unsafe { fxgraph_params_json(e.engine, buf.as_mut_ptr(), needed, null_mut()) }, FXGRAPH_OK);
    // SAFETY: NUL-terminated.
    let json = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    assert!(json.contains(r#""node":"gain""#) && json.contains(r#""value":-6.0"#), "{json}");
    // A preset that does not exist, and a node to bypass that does not.
    let missing = CString::new("missing").unwrap();
    // SAFETY: valid strings.
    unsafe {
        assert_eq!(fxgraph_apply_preset(e.engine, missing.as_ptr()), FXGRAPH_ERR_PRESET);
        assert_eq!(fxgraph_bypass(e.engine, missing.as_ptr(), 1), FXGRAPH_ERR_NO_SUCH_NODE);
        assert_eq!(fxgraph_bypass(e.engine, node.as_ptr(), 1), FXGRAPH_OK);
    }
}

#[test]
fn bad_handles_and_arguments_get_a_status_not_a_crash() {
    let e = new(GAIN).unwrap();
    let mut buf = signal(256);
    let mut out = vec![0.0f32; 512];
    // SAFETY: every call is given what the test means it to be given; the point is the status.
    unsafe {
        assert_eq!(fxgraph_update(null_mut()), FXGRAPH_ERR_NULL);
        assert_eq!(fxgraph_set(e.engine, null(), null(), 0.0), FXGRAPH_ERR_NULL);
        // A handle of the other side, either way.
        assert_eq!(fxgraph_update(e.audio.cast()), FXGRAPH_ERR_WRONG_SIDE);
        assert_eq!(
            fxgraph_process_interleaved_f32(e.engine.cast(), buf.as_ptr(), out.as_mut_ptr(), 256, 2),
            FXGRAPH_ERR_WRONG_SIDE
        );
        // Not a handle at all.
        let mut junk = [0u64; 4];
        assert_eq!(fxgraph_update(junk.as_mut_ptr().cast()), FXGRAPH_ERR_INVALID_HANDLE);
        assert_eq!(
            fxgraph_update(junk.as_mut_ptr().cast::<u8>().add(1).cast()),
            FXGRAPH_ERR_INVALID_HANDLE,
            "misaligned"
        );
        // Lengths and buffers.
        let audio = e.audio;
        assert_eq!(fxgraph_process_interleaved_f32(audio, null(), out.as_mut_ptr(), 256, 2), FXGRAPH_ERR_NULL);
        assert_eq!(
            fxgraph_process_interleaved_f32(audio, buf.as_ptr(), out.as_mut_ptr(), 256, 0),
            FXGRAPH_ERR_ARGUMENT
        );
        assert_eq!(
            fxgraph_process_interleaved_f32(audio, buf.as_ptr(), out.as_mut_ptr(), usize::MAX / 2, 2),
            FXGRAPH_ERR_ARGUMENT
        );
        // Overlapping but not the same: refused; the same: in place.
        let p = buf.as_mut_ptr();
        assert_eq!(fxgraph_process_interleaved_f32(audio, p, p.add(2), 100, 2), FXGRAPH_ERR_ARGUMENT);
        assert_eq!(fxgraph_process_interleaved_f32(audio, p, p, 100, 2), FXGRAPH_OK);
        assert_eq!(
            fxgraph_process_interleaved_f32(audio, null(), null_mut(), 0, 2),
            FXGRAPH_OK,
            "no frames, no buffers needed"
        );
        let planes_in = [buf.as_ptr(), null()];
        let planes_out = [out.as_mut_ptr(), out.as_mut_ptr().add(256)];
        assert_eq!(
            fxgraph_process_planar_f32(audio, planes_in.as_ptr(), 2, planes_out.as_ptr(), 2, 100),
            FXGRAPH_ERR_NULL
        );
        let crossed = [out.as_ptr().add(256), out.as_ptr()];
        assert_eq!(
            fxgraph_process_planar_f32(audio, crossed.as_ptr(), 2, planes_out.as_ptr(), 2, 100),
            FXGRAPH_ERR_ARGUMENT
        );
        let text = [b'g' as c_char, 0xff_u8 as c_char, 0];
        assert_eq!(fxgraph_set(e.engine, text.as_ptr(), text.as_ptr(), 0.0), FXGRAPH_ERR_ARGUMENT, "not UTF-8");
    }

    // A freed handle, passed again: refused, by every call and by its free function.
    let e = new(GAIN).unwrap();
    let (engine, audio) = (e.engine, e.audio);
    std::mem::forget(e);
    // SAFETY: handles this library made; the shells of freed ones stay readable.
    unsafe {
        assert_eq!(fxgraph_engine_free(engine), FXGRAPH_OK);
        assert_eq!(fxgraph_engine_free(engine), FXGRAPH_ERR_INVALID_HANDLE);
        assert_eq!(fxgraph_update(engine), FXGRAPH_ERR_INVALID_HANDLE);
        // The audio side plays on without its control side.
        assert_eq!(fxgraph_process_interleaved_f32(audio, buf.as_ptr(), out.as_mut_ptr(), 256, 2), FXGRAPH_OK);
        assert_eq!(fxgraph_audio_free(audio), FXGRAPH_OK);
        assert_eq!(
            fxgraph_process_interleaved_f32(audio, buf.as_ptr(), out.as_mut_ptr(), 256, 2),
            FXGRAPH_ERR_INVALID_HANDLE
        );
        assert_eq!(fxgraph_audio_free(audio), FXGRAPH_ERR_INVALID_HANDLE);
    }
}

#[test]
fn the_control_side_outlives_its_audio_side_and_never_waits_for_it() {
    let e = new(GAIN).unwrap();
    // SAFETY: a live audio handle, freed once; the engine's handle stays live.
    assert_eq!(unsafe { fxgraph_audio_free(e.audio) }, FXGRAPH_OK);
    let swapped = CString::new(GAIN.replace("gain_db: 0.0", "gain_db: -3.0")).unwrap();
    let mut needed = 0;
    // SAFETY: a live engine handle and valid strings; nothing processes any more, and nothing waits for it.
    unsafe {
        assert_eq!(fxgraph_set(e.engine, c"gain".as_ptr(), c"gain_db".as_ptr(), -6.0), FXGRAPH_OK);
        assert_eq!(fxgraph_load_ron(e.engine, swapped.as_ptr(), null(), null()), FXGRAPH_OK);
        for _ in 0..3 {
            assert_eq!(fxgraph_update(e.engine), FXGRAPH_OK);
        }
        assert_eq!(fxgraph_metrics_json(e.engine, null_mut(), 0, &mut needed), FXGRAPH_ERR_BUFFER_TOO_SMALL);
    }
    assert!(needed > 2);
}

#[test]
fn two_threads_on_one_handle_are_refused_not_raced() {
    let e = new(GAIN).unwrap();
    let long = signal(48_000 * 20);
    let done = AtomicBool::new(false);
    let mut refused = 0;
    let (e, done, long) = (&e, &done, &long);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut out = vec![0.0f32; long.len()];
            let mut ok = 0;
            while ok < 3 {
                // SAFETY: buffers of the frames given.
                let status = unsafe {
                    fxgraph_process_interleaved_f32(e.audio, long.as_ptr(), out.as_mut_ptr(), long.len() / 2, 2)
                };
                assert!(status == FXGRAPH_OK || status == FXGRAPH_ERR_BUSY);
                ok += usize::from(status == FXGRAPH_OK);
            }
            done.store(true, Ordering::Release);
        });
        let (input, mut out) = (signal(64), vec![0.0f32; 128]);
        while !done.load(Ordering::Acquire) {
            // SAFETY: as above.
            let status = unsafe { fxgraph_process_interleaved_f32(e.audio, input.as_ptr(), out.as_mut_ptr(), 64, 2) };
            assert!(status == FXGRAPH_OK || status == FXGRAPH_ERR_BUSY);
            refused += usize::from(status == FXGRAPH_ERR_BUSY);
        }
    });
    assert!(refused > 0, "a second thread processing at once was refused");
}

#[test]
fn every_layout_and_call_size_gives_the_same_bits() {
    let frames = 48_000;
    let input = signal(frames);
    let run = |f: &dyn Fn(*mut FxgraphAudio) -> Vec<f32>| {
        let e = new(GAIN).unwrap();
        assert_eq!(set(&e, "gain", "gain_db", 3.0), FXGRAPH_OK);
        f(e.audio)
    };
    // The reference: one interleaved f32 call into another buffer.
    let reference = run(&|a| {
        let mut out = vec![0.0f32; frames * 2];
        // SAFETY: buffers of the frames given.
        let status = unsafe { fxgraph_process_interleaved_f32(a, input.as_ptr(), out.as_mut_ptr(), frames, 2) };
        assert_eq!(status, FXGRAPH_OK);
        out
    });
    assert!(reference.iter().any(|&s| s != 0.0));
    // f64 in place, in uneven calls: Go's layout.
    let f64_in_place = run(&|a| {
        let mut buf: Vec<f64> = input.iter().map(|&s| f64::from(s)).collect();
        let mut at = 0;
        for n in [1, 7, 511, 512, 513, 4096, 100_000].iter().cycle() {
            let n = (*n).min(frames - at);
            // SAFETY: in place, `n` frames from `at`.
            let status = unsafe {
                fxgraph_process_interleaved_f64(a, buf.as_ptr().add(at * 2), buf.as_mut_ptr().add(at * 2), n, 2)
            };
            assert_eq!(status, FXGRAPH_OK);
            at += n;
            if at == frames {
                break;
            }
        }
        buf.iter().map(|&s| s as f32).collect()
    });
    // Planar, in place.
    let planar = run(&|a| {
        let mut left: Vec<f32> = input.iter().step_by(2).copied().collect();
        let mut right: Vec<f32> = input.iter().skip(1).step_by(2).copied().collect();
        let ins = [left.as_ptr(), right.as_ptr()];
        let outs = [left.as_mut_ptr(), right.as_mut_ptr()];
        // SAFETY: two planes of `frames` samples, in place.
        assert_eq!(unsafe { fxgraph_process_planar_f32(a, ins.as_ptr(), 2, outs.as_ptr(), 2, frames) }, FXGRAPH_OK);
        left.iter().zip(&right).flat_map(|(&l, &r)| [l, r]).collect()
    });
    // The Rust API, for the same graph.
    let graph = fxgraph::Graph::parse(GAIN, "<text>", Path::new(".")).unwrap();
    let options = fxgraph::EngineOptions { realtime: false, ..Default::default() };
    let (mut engine, mut audio) = fxgraph::Engine::new(graph, options).unwrap();
    engine.set("gain", "gain_db", 3.0).unwrap();
    let mut rust = vec![0.0f32; frames * 2];
    audio.process_interleaved(&input, &mut rust, 2);
    for (name, out) in [("f64 in place", &f64_in_place), ("planar in place", &planar), ("Rust API", &rust)] {
        let same = out.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} differs from the f32 call");
    }
}

#[test]
fn the_audio_side_allocates_nothing_while_another_thread_sets_parameters() {
    let e = new(GAIN).unwrap();
    let stop = AtomicBool::new(false);
    let mut before = FxgraphAllocStats::default();
    // SAFETY: a valid pointer.
    unsafe { fxgraph_alloc_stats(&mut before) };
    let e = &e;
    let stop = &stop;
    let (levels, allocs) = std::thread::scope(|s| {
        let audio = s.spawn(move || {
            let input = signal(512);
            let mut out = vec![0.0f32; 1024];
            let mut buf64: Vec<f64> = input.iter().map(|&x| f64::from(x)).collect();
            // Warm up (the first plan arrives), then count.
            // SAFETY: buffers of the frames given.
            unsafe { fxgraph_process_interleaved_f32(e.audio, input.as_ptr(), out.as_mut_ptr(), 512, 2) };
            let start =
                fxgraph::alloc::CountingAllocator::thread_audio_calls().expect("the library's allocator counts");
            let mut levels = Vec::new();
            let mut blocks = 0;
            while !stop.load(Ordering::Acquire) || blocks < 200 {
                // SAFETY: as above, and in place for f64.
                unsafe {
                    assert_eq!(
                        fxgraph_process_interleaved_f32(e.audio, input.as_ptr(), out.as_mut_ptr(), 512, 2),
                        FXGRAPH_OK
                    );
                    assert_eq!(
                        fxgraph_process_interleaved_f64(e.audio, buf64.as_ptr(), buf64.as_mut_ptr(), 256, 2),
                        FXGRAPH_OK
                    );
                }
                buf64.iter_mut().zip(&input).for_each(|(b, &x)| *b = f64::from(x));
                levels.push(out.iter().fold(0.0f32, |m, &s| m.max(s.abs())));
                blocks += 1;
            }
            (levels, fxgraph::alloc::CountingAllocator::thread_audio_calls().unwrap() - start)
        });
        // The control thread: parameters, reads and updates while the audio thread runs.
        for step in 0..200 {
            let db = if step % 2 == 0 { -40.0 } else { -3.0 };
            assert_eq!(set(e, "gain", "gain_db", db), FXGRAPH_OK);
            assert_eq!(set(e, "comp", "threshold_db", -10.0 - f64::from(step % 20)), FXGRAPH_OK);
            // SAFETY: a valid handle.
            assert_eq!(unsafe { fxgraph_update(e.engine) }, FXGRAPH_OK);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        assert_eq!(set(e, "gain", "gain_db", -40.0), FXGRAPH_OK);
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.store(true, Ordering::Release);
        audio.join().unwrap()
    });
    assert_eq!(allocs, 0, "allocations on the audio thread");
    let mut after = FxgraphAllocStats::default();
    // SAFETY: a valid pointer.
    unsafe { fxgraph_alloc_stats(&mut after) };
    assert!(after.calls > before.calls, "the counter counts (the control side allocates)");
    // The changes reached the audio side: loud blocks early on, quiet (-40 dB) ones at the end.
    let last = *levels.last().unwrap();
    let loudest = levels.iter().fold(0.0f32, |m, &l| m.max(l));
    assert!(loudest > 0.3 && last < 0.02, "levels {loudest} then {last}");
}

/// A WebAssembly plugin that passes audio through and logs "hello" at level 2 from every block (the Go
/// package's tests use it too, assembled: `logger.wasm` beside it).
const LOGGER: &str = include_str!("../../examples/go/fxgraph/testdata/logger.wat");

#[test]
fn messages_reach_a_registered_callback_on_the_control_side() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(LOGGER).unwrap();
    let testdata = repo().join("examples/go/fxgraph/testdata");
    if std::env::var_os("FXGRAPH_WRITE_FIXTURES").is_some() {
        // After an edit of logger.wat: `FXGRAPH_WRITE_FIXTURES=1 cargo test --release -p fxgraph-capi messages`.
        std::fs::write(testdata.join("logger.wasm"), &wasm).unwrap();
    }
    assert_eq!(std::fs::read(testdata.join("logger.wasm")).unwrap(), wasm, "logger.wasm is logger.wat assembled");
    std::fs::write(dir.path().join("logger.wasm"), wasm).unwrap();
    std::fs::copy(testdata.join("logger.json"), dir.path().join("logger.json")).unwrap();
    let graph = r#"(sample_rate: 48000, channels: 2, nodes: { "talker": Wasm(path: "logger.wasm") },
        edges: [("input", "talker"), ("talker", "output")])"#;
    let (ron, base) = (CString::new(graph).unwrap(), CString::new(dir.path().to_str().unwrap()).unwrap());
    let mut e = Engine { engine: null_mut(), audio: null_mut() };
    let o = options(false);
    // SAFETY: valid strings, options and out-pointers; no error buffer.
    let status = unsafe {
        fxgraph_engine_new_from_ron(ron.as_ptr(), null(), base.as_ptr(), &o, &mut e.engine, &mut e.audio, null_mut(), 0)
    };
    assert_eq!(status, FXGRAPH_OK);

    struct Seen {
        thread: std::thread::ThreadId,
        lines: Vec<(String, String, i64, String)>,
        reentry: FxgraphStatus,
        engine: *mut FxgraphEngine,
    }
    unsafe extern "C" fn on_message(
        user: *mut c_void,
        node: *const c_char,
        kind: *const c_char,
        code: i64,
        text: *const c_char,
    ) {
        // SAFETY: the test passes its `Seen`, and strings valid for the call.
        unsafe {
            let seen = &mut *user.cast::<Seen>();
            assert_eq!(std::thread::current().id(), seen.thread, "called on the control call's thread");
            let s = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
            seen.lines.push((s(node), s(kind), code, s(text)));
            // Calling the engine back from its own callback: refused, not deadlocked.
            seen.reentry = fxgraph_update(seen.engine);
        }
    }
    let input = signal(512);
    let mut out = vec![0.0f32; 1024];
    let mut seen = Seen { thread: std::thread::current().id(), lines: Vec::new(), reentry: 0, engine: e.engine };
    // SAFETY: valid handles and buffers; `seen` outlives the engine's calls below.
    unsafe {
        // Before a callback: kept, and handed over as JSON.
        assert_eq!(fxgraph_process_interleaved_f32(e.audio, input.as_ptr(), out.as_mut_ptr(), 512, 2), FXGRAPH_OK);
        let mut buf = vec![0 as c_char; 4096];
        assert_eq!(fxgraph_messages_json(e.engine, buf.as_mut_ptr(), buf.len(), null_mut()), FXGRAPH_OK);
        let json = CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
        assert!(json.contains(r#""node":"talker""#) && json.contains("hello"), "{json}");
        // With one: each message, on this thread.
        assert_eq!(fxgraph_set_message_callback(e.engine, Some(on_message), (&raw mut seen).cast()), FXGRAPH_OK);
        let audio = e.audio as usize;
        std::thread::spawn(move || {
            let mut out = vec![0.0f32; 1024];
            for _ in 0..3 {
                fxgraph_process_interleaved_f32(audio as *mut FxgraphAudio, input.as_ptr(), out.as_mut_ptr(), 512, 2);
            }
        })
        .join()
        .unwrap();
        assert_eq!(fxgraph_update(e.engine), FXGRAPH_OK);
        assert_eq!(fxgraph_set_message_callback(e.engine, None, null_mut()), FXGRAPH_OK);
    }
    assert_eq!(seen.lines.len(), 3, "{:?}", seen.lines);
    assert_eq!(seen.lines[0], ("talker".into(), "log".into(), 2, "hello".into()));
    assert_eq!(seen.reentry, FXGRAPH_ERR_BUSY);
}

/// The `fxgraph` command next to this test's binary (built by the same `cargo test`).
fn fxgraph_command() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("fxgraph");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` from the repository's top (it builds the command)",
        bin.display()
    );
    bin
}

/// The samples of a 32-bit float WAV file (its data chunk).
fn wav_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"data").unwrap();
    let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    bytes[at + 8..at + 8 + len].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// How a C program links the library.
#[derive(Clone, Copy, Debug)]
enum Link {
    Shared,
    Static,
}

/// Builds a C program against the committed header and the shared or static library, or `None` without a
/// C compiler (an error under CI).
fn build_c(source: &Path, exe: &Path, link: Link) -> Option<()> {
    let Some(cc) = ["cc", "gcc", "clang"].into_iter().find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        assert!(std::env::var_os("CI").is_none(), "no C compiler (CI must have one)");
        eprintln!("skipped: no C compiler");
        return None;
    };
    // `cargo test` builds the shared library beside this test's binary (`cargo build` also copies it up to
    // `target/release`).
    let lib_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    assert!(lib_dir.join("libfxgraph_c.so").exists(), "the shared library is built with this test");
    let built = Command::new(cc)
        .args(["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(format!("-I{}", repo().join("capi/include").display()))
        .arg(source)
        .args(match link {
            Link::Shared => {
                vec![
                    format!("-L{}", lib_dir.display()),
                    "-lfxgraph_c".into(),
                    format!("-Wl,-rpath,{}", lib_dir.display()),
                ]
            }
            // What the static library needs from the system (`--print native-static-libs`).
            Link::Static => vec![lib_dir.join("libfxgraph_c.a").display().to_string(), "-lgcc_s".into(), "-ldl".into()],
        })
        .args(["-lpthread", "-lm"])
        .arg("-o")
        .arg(exe)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    Some(())
}

#[test]
fn the_c_api_from_c_linked_shared_and_static_refuses_bad_input_and_allocates_nothing_on_the_audio_side() {
    let dir = tempfile::tempdir().unwrap();
    for link in [Link::Shared, Link::Static] {
        let exe = dir.path().join(format!("api_test_{link:?}"));
        if build_c(&repo().join("capi/tests/c/api_test.c"), &exe, link).is_none() {
            return;
        }
        let out = Command::new(&exe).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.ends_with("0 failed\n"), "{link:?}: {said}{err}");
        assert!(said.lines().filter(|l| l.starts_with("ok ")).count() >= 15, "{link:?}: {said}");
    }
}

#[test]
fn the_c_example_builds_against_the_header_and_renders_as_fxgraph_render_does() {
    let repo = repo();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("render-c");
    if build_c(&repo.join("examples/c/render.c"), &exe, Link::Shared).is_none() {
        return;
    }

    // The input: four seconds of the demo through the reference chain; then the headline graph (with a
    // WebAssembly plugin and a limiter's latency) through the C example and through `fxgraph render`.
    let input = dir.path().join("in.wav");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fxgraph = fxgraph_command();
    run(Command::new(&fxgraph)
        .current_dir(&repo)
        .args(["render", "graphs/chain.ron", "--seconds", "4", "-o"])
        .arg(&input));
    let graph = repo.join("graphs/mastering.ron");
    let (c_out, c_set, r_out) = (dir.path().join("c.wav"), dir.path().join("c-set.wav"), dir.path().join("r.wav"));
    let said = run(Command::new(&exe).arg(&graph).arg(&input).arg(&c_out));
    assert!(said.contains("audio-side allocations: 0"), "{said}");
    run(Command::new(&exe).arg(&graph).arg(&input).arg(&c_set).args(["comp", "threshold_db", "-40"]));
    run(Command::new(&fxgraph).args(["render", "--threads", "1", "-i"]).arg(&input).arg("-o").arg(&r_out).arg(&graph));
    let (c, c_set, r) = (wav_f32(&c_out), wav_f32(&c_set), wav_f32(&r_out));
    assert_eq!(c.len(), 4 * 48_000 * 2);
    assert!(
        c == r && c.iter().zip(&r).all(|(a, b)| a.to_bits() == b.to_bits()),
        "the C API renders as `fxgraph render`"
    );
    // The change at the middle frame: everything before it is the same; after it, not.
    let half = 2 * 48_000 * 2;
    let first = c_set.iter().zip(&c).position(|(a, b)| a.to_bits() != b.to_bits()).expect("the change is heard");
    assert!(
        first >= half - 2 * 512 && first <= half + 2 * 4800,
        "first changed sample at {first}, the middle is {half}"
    );
}
