//! LV2 and CLAP nodes against calling the same plugin straight through its own ABI, and each format's
//! round trip to a child process (`isolation: Process`). The plugins are the test suite's: the LV2 level
//! plugin (`tests/lv2/hostile.c`, healthy build) and the CLAP gain (`tests/clap/plugins.c`, built without
//! asking for the host's thread pool, which the direct calls do not offer).

use crate::{demo, fxgraph_binary, paired, repo, run_engine, single_node_in, start};
use clap_sys::audio_buffer::clap_audio_buffer;
use clap_sys::entry::clap_plugin_entry;
use clap_sys::events::{
    CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_PARAM_VALUE, clap_event_header, clap_event_param_value, clap_input_events,
    clap_output_events,
};
use clap_sys::factory::plugin_factory::{CLAP_PLUGIN_FACTORY_ID, clap_plugin_factory};
use clap_sys::host::clap_host;
use clap_sys::plugin::clap_plugin;
use clap_sys::process::clap_process;
use clap_sys::version::CLAP_VERSION;
use fxgraph::EngineOptions;
use std::ffi::{c_char, c_void};
use std::hint::black_box;
use std::path::{Path, PathBuf};

/// Compiles a test plugin's C source with `cc` into `out`.
fn cc(source: &str, out: &Path, defines: &[&str]) {
    let mut cmd = std::process::Command::new("cc");
    cmd.args(["-std=c99", "-O2", "-fPIC", "-shared"]);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    let o = cmd.arg("-I").arg(repo().join("plugins/include")).arg("-o").arg(out).arg(repo().join(source)).arg("-lm");
    let o = o.output().expect("cc");
    assert!(o.status.success(), "cc {source}: {}", String::from_utf8_lossy(&o.stderr));
}

/// LV2's core descriptor, as `lv2/core/lv2.h` declares it.
#[repr(C)]
struct Lv2Descriptor {
    uri: *const c_char,
    instantiate: unsafe extern "C" fn(*const Lv2Descriptor, f64, *const c_char, *const *const c_void) -> *mut c_void,
    connect_port: unsafe extern "C" fn(*mut c_void, u32, *mut c_void),
    activate: Option<unsafe extern "C" fn(*mut c_void)>,
    run: unsafe extern "C" fn(*mut c_void, u32),
    deactivate: Option<unsafe extern "C" fn(*mut c_void)>,
    cleanup: unsafe extern "C" fn(*mut c_void),
    extension_data: Option<unsafe extern "C" fn(*const c_char) -> *const c_void>,
}

/// The LV2 level plugin called directly, one instance per channel, in calls of `block` frames.
struct DirectLv2 {
    _lib: libloading::Library,
    desc: *const Lv2Descriptor,
    handles: [*mut c_void; 2],
    level: Box<f32>,
}

impl DirectLv2 {
    fn new(so: &Path, level: f32) -> Self {
        type Entry = unsafe extern "C" fn(u32) -> *const Lv2Descriptor;
        // SAFETY: the test plugin's library; its entry point has LV2's signature.
        let lib = unsafe { libloading::Library::new(so) }.expect("load");
        // SAFETY: as above.
        let desc = unsafe { lib.get::<Entry>(b"lv2_descriptor\0").expect("entry")(0) };
        let mut level = Box::new(level);
        let features: [*const c_void; 1] = [std::ptr::null()];
        // SAFETY: LV2's instantiate, connect (the control to a value that outlives the instances) and activate.
        let handles = unsafe {
            let d = &*desc;
            let mut h = [std::ptr::null_mut(); 2];
            for slot in &mut h {
                *slot = (d.instantiate)(desc, 48000.0, c"".as_ptr(), features.as_ptr());
                (d.connect_port)(*slot, 2, std::ptr::from_mut(&mut *level).cast());
                if let Some(a) = d.activate {
                    a(*slot);
                }
            }
            h
        };
        Self { _lib: lib, desc, handles, level }
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], block: usize) {
        let n = input.len() / 2;
        // SAFETY: ports 0 and 1 are the audio input and output, each given `frames` valid samples.
        unsafe {
            let d = &*self.desc;
            let mut at = 0;
            while at < n {
                let frames = block.min(n - at);
                for (c, &h) in self.handles.iter().enumerate() {
                    (d.connect_port)(h, 0, input.as_ptr().add(c * n + at).cast_mut().cast());
                    (d.connect_port)(h, 1, output.as_mut_ptr().add(c * n + at).cast());
                    (d.run)(h, frames as u32);
                }
                at += frames;
            }
        }
        black_box(&self.level);
    }
}

impl Drop for DirectLv2 {
    fn drop(&mut self) {
        // SAFETY: the instances were made by this descriptor and are not used again.
        unsafe {
            for &h in &self.handles {
                if let Some(d) = (*self.desc).deactivate {
                    d(h);
                }
                ((*self.desc).cleanup)(h);
            }
        }
    }
}

unsafe extern "C" fn no_extension(_: *const clap_host, _: *const c_char) -> *const c_void {
    std::ptr::null()
}
unsafe extern "C" fn no_request(_: *const clap_host) {}
unsafe extern "C" fn no_events(_: *const clap_input_events) -> u32 {
    0
}
unsafe extern "C" fn one_event(list: *const clap_input_events) -> u32 {
    // SAFETY: `ctx` is null (no event) or the one event.
    u32::from(unsafe { !(*list).ctx.is_null() })
}
unsafe extern "C" fn get_event(list: *const clap_input_events, _: u32) -> *const clap_event_header {
    // SAFETY: as above.
    unsafe { (*list).ctx.cast() }
}
unsafe extern "C" fn take_event(_: *const clap_output_events, _: *const clap_event_header) -> bool {
    true
}

/// The CLAP gain called directly: a host that offers no extension, its gain set by an event with the
/// first call.
struct DirectClap {
    _lib: libloading::Library,
    plugin: *const clap_plugin,
    _host: Box<clap_host>,
    first: Box<clap_event_param_value>,
    sent: bool,
}

impl DirectClap {
    fn new(bundle: &Path, gain_db: f64, block: usize) -> Self {
        // SAFETY: the test bundle, loaded and used as CLAP says: entry init, factory, create, init,
        // activate, start processing.
        unsafe {
            let lib = libloading::Library::new(bundle).expect("load");
            let entry: *const clap_plugin_entry = *lib.get(b"clap_entry\0").expect("clap_entry");
            let e = &*entry;
            assert!(e.init.expect("init")(c"".as_ptr()));
            let factory =
                e.get_factory.expect("get_factory")(CLAP_PLUGIN_FACTORY_ID.as_ptr()).cast::<clap_plugin_factory>();
            let host = Box::new(clap_host {
                clap_version: CLAP_VERSION,
                host_data: std::ptr::null_mut(),
                name: c"bench".as_ptr(),
                vendor: c"".as_ptr(),
                url: c"".as_ptr(),
                version: c"".as_ptr(),
                get_extension: Some(no_extension),
                request_restart: Some(no_request),
                request_process: Some(no_request),
                request_callback: Some(no_request),
            });
            let plugin = (*factory).create_plugin.expect("create")(factory, &*host, c"org.fxgraph.test.gain".as_ptr());
            let p = &*plugin;
            assert!(p.init.expect("init")(plugin));
            assert!(p.activate.expect("activate")(plugin, 48000.0, 1, block as u32));
            assert!(p.start_processing.expect("start")(plugin));
            let first = Box::new(clap_event_param_value {
                header: clap_event_header {
                    size: std::mem::size_of::<clap_event_param_value>() as u32,
                    time: 0,
                    space_id: CLAP_CORE_EVENT_SPACE_ID,
                    type_: CLAP_EVENT_PARAM_VALUE,
                    flags: 0,
                },
                param_id: 0,
                cookie: std::ptr::null_mut(),
                note_id: -1,
                port_index: -1,
                channel: -1,
                key: -1,
                value: gain_db,
            });
            Self { _lib: lib, plugin, _host: host, first, sent: false }
        }
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], block: usize) {
        let n = input.len() / 2;
        let out_events = clap_output_events { ctx: std::ptr::null_mut(), try_push: Some(take_event) };
        let mut at = 0;
        while at < n {
            let frames = block.min(n - at);
            let mut ins = [input[at..].as_ptr().cast_mut(), input[n + at..].as_ptr().cast_mut()];
            let mut outs = [output[at..].as_mut_ptr(), output[n + at..].as_mut_ptr()];
            let buffer = |ptrs: &mut [*mut f32; 2]| clap_audio_buffer {
                data32: ptrs.as_mut_ptr(),
                data64: std::ptr::null_mut(),
                channel_count: 2,
                latency: 0,
                constant_mask: 0,
            };
            let (inb, mut outb) = (buffer(&mut ins), buffer(&mut outs));
            let ctx = if self.sent { std::ptr::null_mut() } else { std::ptr::from_mut(&mut *self.first).cast() };
            self.sent = true;
            let in_events = clap_input_events {
                ctx,
                size: Some(if ctx.is_null() { no_events } else { one_event }),
                get: Some(get_event),
            };
            let call = clap_process {
                steady_time: at as i64,
                frames_count: frames as u32,
                transport: std::ptr::null(),
                audio_inputs: &inb,
                audio_outputs: &mut outb,
                audio_inputs_count: 1,
                audio_outputs_count: 1,
                in_events: &in_events,
                out_events: &out_events,
            };
            // SAFETY: CLAP's process on a processing plugin with buffers of `frames` samples per channel.
            unsafe { (*self.plugin).process.expect("process")(self.plugin, &call) };
            at += frames;
        }
    }
}

impl Drop for DirectClap {
    fn drop(&mut self) {
        // SAFETY: stop, deactivate and destroy the plugin made in `new`, once.
        unsafe {
            let p = &*self.plugin;
            p.stop_processing.expect("stop")(self.plugin);
            p.deactivate.expect("deactivate")(self.plugin);
            p.destroy.expect("destroy")(self.plugin);
        }
    }
}

/// Runs planar stereo input to output through a plugin called directly.
type Direct = Box<dyn FnMut(&[f32], &mut [f32])>;

/// Each format's node overhead per block against direct calls, and its isolated round trip.
pub fn format_overheads() {
    let dir = repo().join("target/test-plugins/bench-formats");
    let lv2_path = dir.join("lv2");
    let bundle = lv2_path.join("hostile.lv2");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    let so = bundle.join("hostile.so");
    cc("tests/lv2/hostile.c", &so, &[]);
    std::fs::write(
        bundle.join("manifest.ttl"),
        "@prefix lv2: <http://lv2plug.in/ns/lv2core#> .\n@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n\
         <urn:fxgraph:test:hostile> a lv2:Plugin ; lv2:binary <hostile.so> ; rdfs:seeAlso <hostile.ttl> .\n",
    )
    .expect("write");
    std::fs::write(
        bundle.join("hostile.ttl"),
        "@prefix lv2: <http://lv2plug.in/ns/lv2core#> .\n@prefix doap: <http://usefulinc.com/ns/doap#> .\n\
         <urn:fxgraph:test:hostile> a lv2:Plugin ; doap:name \"fxgraph level test\" ;\n\
           lv2:port [ a lv2:AudioPort, lv2:InputPort ; lv2:index 0 ; lv2:symbol \"in\" ; lv2:name \"In\" ] ,\n\
             [ a lv2:AudioPort, lv2:OutputPort ; lv2:index 1 ; lv2:symbol \"out\" ; lv2:name \"Out\" ] ,\n\
             [ a lv2:ControlPort, lv2:InputPort ; lv2:index 2 ; lv2:symbol \"level\" ; lv2:name \"Level\" ;\n\
               lv2:default 1.0 ; lv2:minimum 0.0 ; lv2:maximum 2.0 ] .\n",
    )
    .expect("write");
    let clap: PathBuf = dir.join("gain.clap");
    cc("tests/clap/plugins.c", &clap, &["NO_POOL"]);
    // SAFETY: set before this process reads the variable (its lilv world is made by the first LV2 node,
    // below) and before any thread that could read the environment is started by this benchmark.
    unsafe { std::env::set_var("LV2_PATH", &lv2_path) };
    fxgraph::nodes::native::set_host_program(fxgraph_binary());
    let have_lilv =
        ["/usr/lib/x86_64-linux-gnu/liblilv-0.so.0", "/usr/lib/liblilv-0.so.0"].iter().any(|p| Path::new(p).exists());
    let input = demo(48000);
    let frames = input.len() / 2;
    let (mut out, mut out2) = (vec![0.0f32; input.len()], vec![0.0f32; input.len()]);
    let rounds = 41;
    println!("LV2 and CLAP nodes ({rounds} ABBA rounds of 1 s of audio each; median [p25, p75]):");
    for block in [512, 64] {
        let options = EngineOptions { max_block: block, threads: 1, ..Default::default() };
        let blocks = frames.div_ceil(block) as f64;
        let lv2 = |iso: &str| format!("Lv2(uri: \"urn:fxgraph:test:hostile\", controls: {{\"level\": 0.5}}{iso})");
        let clap_node = |iso: &str| {
            format!(
                "Clap(path: {:?}, id: \"org.fxgraph.test.gain\", params: {{\"gain\": -6.0}}{iso})",
                clap.display().to_string()
            )
        };
        let mut cases: Vec<(&str, String, Direct)> = Vec::new();
        if have_lilv {
            let mut d = DirectLv2::new(&so, 0.5);
            cases.push(("LV2", lv2(""), Box::new(move |i: &[f32], o: &mut [f32]| d.process(i, o, block))));
        } else {
            println!("  (liblilv-0-0 is not installed: no LV2 figure)");
        }
        let mut d = DirectClap::new(&clap, -6.0, block);
        cases.push(("CLAP", clap_node(""), Box::new(move |i: &[f32], o: &mut [f32]| d.process(i, o, block))));
        for (format, node, mut direct) in cases {
            let mut rig = start(single_node_in(&node, "/".as_ref()), options);
            run_engine(&mut rig, &input, &mut out, block);
            direct(&input, &mut out2);
            assert!(out == out2, "the {format} node computes what the direct calls compute");
            let (r, lo, hi, t) = paired(
                rounds,
                || direct(black_box(&input), &mut out2),
                || run_engine(&mut rig, black_box(&input), &mut out, block),
            );
            let per_block = |r: f64| (r - 1.0) * t * 1e9 / blocks;
            println!(
                "  block {block:>3}: {format} node / direct calls = {r:.2} [{lo:.2}, {hi:.2}]: the node adds {:.0} ns per block [{:.0}, {:.0}] (the engine's own input, output and metering included; {:.2} ns/frame direct)",
                per_block(r),
                per_block(lo),
                per_block(hi),
                t * 1e9 / frames as f64
            );
            let iso_node =
                if format == "LV2" { lv2(", isolation: Process") } else { clap_node(", isolation: Process") };
            let mut isolated = start(single_node_in(&iso_node, "/".as_ref()), options);
            run_engine(&mut isolated, &input, &mut out2, block);
            run_engine(&mut rig, &input, &mut out, block);
            assert!(out == out2, "the isolated {format} node computes what the node in process computes");
            let (r, lo, hi, t) = paired(
                rounds,
                || run_engine(&mut rig, black_box(&input), &mut out, block),
                || run_engine(&mut isolated, black_box(&input), &mut out2, block),
            );
            let us = |r: f64| (r - 1.0) * t / blocks * 1e6;
            println!(
                "  block {block:>3}: {format} isolated / in process = {r:.2} [{lo:.2}, {hi:.2}]: round trip {:.2} us per block [{:.2}, {:.2}]",
                us(r),
                us(lo),
                us(hi)
            );
        }
    }
}
