//! Running an LV2 plugin in this process: one instance per channel for mono plugins, or one whose audio
//! buses are the node's ports; the host features it is given; its ports' buffers.
#![allow(unsafe_code)] // LV2 is a C ABI; see the SAFETY notes.

use super::info::{Lv2Info, PortKind};
use super::lilv::{LilvInstance, LilvPlugin, Lv2Descriptor, Lv2Feature};
use super::worker::Worker;
use crate::clock::CpuMark;
use crate::node::{AudioOut, PollContext, ProcessConfig};
use crate::nodes::native::{ControlOutputs, copy_in, copy_out};
use crate::nodes::plugin::{Counts, Fault, Instance};
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::{Arc, Mutex, OnceLock};

/// The host features fxgraph gives: URIs it maps, options, and block lengths bounded by `max_block`.
pub const SUPPORTED: &[&str] = &[
    URID_MAP,
    URID_UNMAP,
    OPTIONS,
    BOUNDED_BLOCK,
    super::worker::SCHEDULE,
    // Satisfied by how fxgraph runs every plugin: separate input and output buffers, and a thread that may
    // be a real-time one.
    "http://lv2plug.in/ns/lv2core#inPlaceBroken",
    "http://lv2plug.in/ns/lv2core#hardRTCapable",
    "http://lv2plug.in/ns/lv2core#isLive",
];
const URID_MAP: &str = "http://lv2plug.in/ns/ext/urid#map";
const URID_UNMAP: &str = "http://lv2plug.in/ns/ext/urid#unmap";
const OPTIONS: &str = "http://lv2plug.in/ns/ext/options#options";
const BOUNDED_BLOCK: &str = "http://lv2plug.in/ns/ext/buf-size#boundedBlockLength";

/// URIDs: one table for the process, so every plugin sees the same numbers. Mapping takes a lock: plugins
/// map URIs when they are made (on the control side), as LV2 asks of them.
struct Urids {
    ids: HashMap<String, u32>,
    uris: Vec<CString>,
}

fn urids() -> &'static Mutex<Urids> {
    static U: OnceLock<Mutex<Urids>> = OnceLock::new();
    U.get_or_init(|| Mutex::new(Urids { ids: HashMap::new(), uris: Vec::new() }))
}

/// The URID of `uri` (from 1).
pub fn urid(uri: &str) -> u32 {
    let mut u = urids().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&id) = u.ids.get(uri) {
        return id;
    }
    u.uris.push(CString::new(uri).unwrap_or_default());
    let id = u.uris.len() as u32;
    u.ids.insert(uri.to_string(), id);
    id
}

unsafe extern "C" fn map_uri(_handle: *mut c_void, uri: *const c_char) -> u32 {
    if uri.is_null() {
        return 0;
    }
    // SAFETY: LV2 passes a NUL-terminated URI.
    let s = unsafe { CStr::from_ptr(uri) }.to_string_lossy();
    urid(&s)
}

unsafe extern "C" fn unmap_uri(_handle: *mut c_void, id: u32) -> *const c_char {
    let u = urids().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // The strings are never freed: a pointer stays valid for the life of the process, as LV2 requires.
    id.checked_sub(1).and_then(|i| u.uris.get(i as usize)).map_or(std::ptr::null(), |s| s.as_ptr())
}

#[repr(C)]
struct UridMap {
    handle: *mut c_void,
    map: unsafe extern "C" fn(*mut c_void, *const c_char) -> u32,
}

/// The process's URID map, for lilv's use on the control side (reading presets).
pub(super) fn urid_map() -> *const c_void {
    struct Shared(UridMap);
    // SAFETY: the map's handle is null and its function thread-safe (it takes the table's lock).
    unsafe impl Sync for Shared {}
    static MAP: Shared = Shared(UridMap { handle: std::ptr::null_mut(), map: map_uri });
    std::ptr::from_ref(&MAP.0).cast()
}

#[repr(C)]
struct UridUnmap {
    handle: *mut c_void,
    unmap: unsafe extern "C" fn(*mut c_void, u32) -> *const c_char,
}

/// LV2_Options_Option.
#[repr(C)]
struct OptionEntry {
    context: u32,
    subject: u32,
    key: u32,
    size: u32,
    value_type: u32,
    value: *const c_void,
}

/// The features one instance is given, at addresses that stay put while it lives.
struct Features {
    _uris: Vec<CString>,
    _map: Box<UridMap>,
    _unmap: Box<UridUnmap>,
    _ints: Box<[i32; 3]>,
    _rate: Box<f32>,
    _options: Box<[OptionEntry]>,
    features: Box<[Lv2Feature]>,
}

impl Features {
    /// The list for one instance: these features, then its worker's, null-terminated.
    fn list_with(&self, worker: &Worker) -> Box<[*const Lv2Feature]> {
        let ours = self.features.iter().map(std::ptr::from_ref);
        ours.chain([std::ptr::from_ref(&worker.feature), std::ptr::null()]).collect()
    }

    fn new(config: &ProcessConfig) -> Self {
        let map = Box::new(UridMap { handle: std::ptr::null_mut(), map: map_uri });
        let unmap = Box::new(UridUnmap { handle: std::ptr::null_mut(), unmap: unmap_uri });
        let max = i32::try_from(config.max_block).unwrap_or(i32::MAX);
        let ints = Box::new([1, max, max]);
        let rate = Box::new(config.sample_rate as f32);
        let (int, float) = (urid("http://lv2plug.in/ns/ext/atom#Int"), urid("http://lv2plug.in/ns/ext/atom#Float"));
        let entry = |key: &str, value_type: u32, value: *const c_void| OptionEntry {
            context: 0,
            subject: 0,
            key: urid(key),
            size: 4,
            value_type,
            value,
        };
        let options: Box<[OptionEntry]> = vec![
            entry("http://lv2plug.in/ns/ext/buf-size#minBlockLength", int, std::ptr::from_ref(&ints[0]).cast()),
            entry("http://lv2plug.in/ns/ext/buf-size#maxBlockLength", int, std::ptr::from_ref(&ints[1]).cast()),
            entry("http://lv2plug.in/ns/ext/buf-size#nominalBlockLength", int, std::ptr::from_ref(&ints[2]).cast()),
            entry("http://lv2plug.in/ns/ext/parameters#sampleRate", float, std::ptr::from_ref(&*rate).cast()),
            OptionEntry { context: 0, subject: 0, key: 0, size: 0, value_type: 0, value: std::ptr::null() },
        ]
        .into_boxed_slice();
        let uris: Vec<CString> = [URID_MAP, URID_UNMAP, OPTIONS, BOUNDED_BLOCK]
            .iter()
            .map(|u| CString::new(*u).unwrap_or_default())
            .collect();
        let data: [*mut c_void; 4] = [
            std::ptr::from_ref(&*map).cast_mut().cast(),
            std::ptr::from_ref(&*unmap).cast_mut().cast(),
            options.as_ptr().cast_mut().cast(),
            std::ptr::null_mut(),
        ];
        let features: Box<[Lv2Feature]> =
            uris.iter().zip(data).map(|(u, data)| Lv2Feature { uri: u.as_ptr(), data }).collect();
        Self { _uris: uris, _map: map, _unmap: unmap, _ints: ints, _rate: rate, _options: options, features }
    }
}

/// Bytes of an atom port's buffer.
const ATOM_BYTES: usize = 8192;

/// LV2 instances in this process: one per channel (mono plugins) or one.
pub struct Lv2Instance {
    instances: Vec<*mut LilvInstance>,
    max_block: usize,
    /// Planar buffers the audio ports are connected to: one channel per instance (mono), or per audio port
    /// in bus order.
    input: Vec<f32>,
    output: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    /// Control values (one set per instance, at stable addresses), by port index.
    controls: Vec<Box<[f32]>>,
    /// Atom port buffers (8-byte aligned), CV buffers, each instance's own.
    atoms: Vec<Box<[u64]>>,
    atom_out: Vec<(usize, usize)>,
    cv: Vec<Box<[f32]>>,
    /// The control outputs shown as status numbers and latency.
    outputs: ControlOutputs,
    sequence: u32,
    chunk: u32,
    replaced: u64,
    /// It says it is hard-real-time capable: heap calls in `run` are counted (since the last
    /// `take_counts`).
    hard_rt: bool,
    heap_calls: u64,
    active: bool,
    /// lilv's `lilv_instance_free`, kept so that dropping takes no lock.
    free: unsafe extern "C" fn(*mut LilvInstance),
    /// Each instance's worker (boxed: the plugin holds its address) and its feature list; their threads
    /// are stopped before the instances are freed, the rest dropped after.
    #[allow(clippy::vec_box, reason = "the plugin holds each worker's address")]
    workers: Vec<Box<Worker>>,
    _lists: Vec<Box<[*const Lv2Feature]>>,
    _features: Box<Features>,
    _info: Arc<Lv2Info>,
}

// SAFETY: the instances are used by one thread at a time, as LV2's audio class of functions requires.
unsafe impl Send for Lv2Instance {}

impl Lv2Instance {
    /// Instantiates, connects and activates (control side).
    ///
    /// # Errors
    /// A message if lilv or the plugin cannot instantiate it.
    pub fn new(
        info: Arc<Lv2Info>,
        config: &ProcessConfig,
        params: &[(u32, f64)],
        preset: Option<&str>,
    ) -> Result<Self, String> {
        let free = super::lilv::world()?.f.lilv_instance_free;
        let mono = info.mono();
        let count = if mono { config.channels.max(1) } else { 1 };
        let (ins, outs) = info.buses();
        let mut channel_of = vec![0usize; info.ports.len()];
        for bus in [ins, outs] {
            for (c, &p) in bus.iter().flat_map(|b| &b.ports).enumerate() {
                channel_of[p] = c;
            }
        }
        let (in_channels, out_channels) = if mono {
            (config.channels, config.channels)
        } else {
            (info.ports(PortKind::AudioIn).count(), info.ports(PortKind::AudioOut).count())
        };
        let ports = info.ports.len();
        let features = Box::new(Features::new(config));
        let mut inst = Self {
            instances: Vec::new(),
            max_block: config.max_block,
            input: vec![0.0; in_channels.max(1) * config.max_block],
            output: vec![0.0; out_channels.max(1) * config.max_block],
            in_channels,
            out_channels,
            controls: (0..count).map(|_| vec![0.0f32; ports].into_boxed_slice()).collect(),
            atoms: Vec::new(),
            atom_out: Vec::new(),
            cv: Vec::new(),
            outputs: ControlOutputs::new(info.ports(PortKind::ControlOut).map(|p| p.index), info.latency_port),
            sequence: urid("http://lv2plug.in/ns/ext/atom#Sequence"),
            chunk: urid("http://lv2plug.in/ns/ext/atom#Chunk"),
            replaced: 0,
            hard_rt: info.hard_rt,
            heap_calls: 0,
            active: false,
            free,
            workers: Vec::new(),
            _lists: Vec::new(),
            _features: features,
            _info: info.clone(),
        };
        for c in &mut inst.controls {
            for p in info.ports(PortKind::ControlIn) {
                c[p.index] = p.default_at(config.sample_rate) as f32;
            }
            for &(port, value) in params {
                c[port as usize] = value as f32;
            }
        }
        let plugin = info.plugin as *const LilvPlugin;
        // The preset's state (beyond its controls), restored into each instance before it is activated.
        let state_of = preset.and_then(|name| info.preset(name)).filter(|p| p.properties > 0).map(|p| p.uri.clone());
        for h in 0..count {
            let mut worker = Worker::new();
            let list = inst._features.list_with(&worker);
            let instance = {
                // lilv loads the plugin's library on first use: under the world's lock.
                let w = super::lilv::world()?;
                // SAFETY: lilv instantiates a plugin of its world with a null-terminated feature list that
                // lives as long as the instance (owned by it); null is a failure.
                unsafe { (w.f.lilv_plugin_instantiate)(plugin, f64::from(config.sample_rate), list.as_ptr()) }
            };
            if instance.is_null() {
                return Err(format!("{}: the plugin could not be instantiated at {} Hz", info.uri, config.sample_rate));
            }
            inst.instances.push(instance);
            if let (true, Some(lib)) = (info.hard_rt, &info.library) {
                // Loaded now: its heap calls in `run` are watched.
                if let Err(e) = crate::nodes::native::rtwatch::watch(lib) {
                    tracing::warn!("{}: its heap calls cannot be watched: {e}", info.uri);
                }
            }
            // SAFETY: a live lilv instance; its descriptor's extension_data takes a NUL-terminated URI.
            unsafe {
                let d = &*(*instance).descriptor;
                if let Some(ext) = d.extension_data {
                    worker.bind(ext(c"http://lv2plug.in/ns/ext/worker#interface".as_ptr()).cast(), (*instance).handle);
                }
            }
            if let Some(uri) = &state_of {
                let w = super::lilv::world()?;
                let node = w.uri(uri);
                let node = &node;
                // SAFETY: lilv's state of a preset it has loaded, restored into a live, inactive instance
                // with the instance's own features (its worker runs the work at once); freed after.
                unsafe {
                    let state = (w.f.lilv_state_new_from_world)(w.world, urid_map(), node.p);
                    if state.is_null() {
                        return Err(format!("{}: the preset {uri} could not be read", info.uri));
                    }
                    (w.f.lilv_state_restore)(state, instance, None, std::ptr::null_mut(), 0, list.as_ptr());
                    (w.f.lilv_state_free)(state);
                }
                worker.after_run();
            }
            inst.workers.push(worker);
            inst._lists.push(list);
            for p in &info.ports {
                let c = if mono { h } else { channel_of[p.index] };
                let at: *mut c_void = match p.kind {
                    PortKind::AudioIn => inst.input[c * config.max_block..].as_mut_ptr().cast(),
                    PortKind::AudioOut => inst.output[c * config.max_block..].as_mut_ptr().cast(),
                    PortKind::ControlIn | PortKind::ControlOut => {
                        std::ptr::from_mut(&mut inst.controls[h][p.index]).cast()
                    }
                    PortKind::AtomIn | PortKind::AtomOut => {
                        let mut buf = vec![0u64; ATOM_BYTES / 8].into_boxed_slice();
                        let ptr = buf.as_mut_ptr().cast::<c_void>();
                        if p.kind == PortKind::AtomOut {
                            inst.atom_out.push((inst.atoms.len(), p.index));
                        }
                        inst.atoms.push(buf);
                        ptr
                    }
                    PortKind::CvIn | PortKind::CvOut => {
                        let mut buf = vec![0.0f32; config.max_block].into_boxed_slice();
                        let ptr = buf.as_mut_ptr().cast::<c_void>();
                        inst.cv.push(buf);
                        ptr
                    }
                    // Only optional ones get here (`find` refuses the rest).
                    PortKind::Other => std::ptr::null_mut(),
                };
                // SAFETY: the buffers live (boxed, never resized) as long as the instance.
                unsafe { inst.connect(h, p.index, at) };
            }
        }
        inst.reset_atoms();
        inst.activate();
        if inst.outputs.has_latency() {
            // Plugins set their latency port when they run: one block of silence tells it, then the state
            // is cleared again.
            inst.run(config.max_block);
            inst.deactivate();
            inst.activate();
            // That run was the control side's: its heap calls are not the audio thread's.
            inst.heap_calls = 0;
        }
        if config.realtime {
            for w in &mut inst.workers {
                w.start_thread()?;
            }
        }
        Ok(inst)
    }

    fn descriptor(&self, h: usize) -> (&Lv2Descriptor, *mut c_void) {
        // SAFETY: a live lilv instance and its descriptor, which lives as long as the plugin's library.
        unsafe { (&*(*self.instances[h]).descriptor, (*self.instances[h]).handle) }
    }

    /// # Safety
    /// `at` is null or a buffer for the port's type that lives as long as the instance.
    unsafe fn connect(&self, h: usize, port: usize, at: *mut c_void) {
        let (d, handle) = self.descriptor(h);
        if let Some(f) = d.connect_port {
            // SAFETY: the caller's contract.
            unsafe { f(handle, port as u32, at) };
        }
    }

    /// Empty event sequences in, and each output's room, as LV2's atom rules ask before every run.
    fn reset_atoms(&mut self) {
        let (sequence, chunk) = (u64::from(self.sequence), u64::from(self.chunk));
        let outs = &self.atom_out;
        for (i, buf) in self.atoms.iter_mut().enumerate() {
            // An atom header is (size: u32, type: u32); a sequence's body starts with (unit, pad).
            if outs.iter().any(|&(k, _)| k == i) {
                buf[0] = (ATOM_BYTES as u64 - 8) | chunk << 32;
            } else {
                buf[0] = 8 | sequence << 32;
                buf[1] = 0;
            }
        }
    }

    fn run(&mut self, n: usize) {
        self.reset_atoms();
        for h in 0..self.instances.len() {
            let (d, handle) = self.descriptor(h);
            if let Some(run) = d.run {
                // SAFETY: LV2's run with `n` (at most max_block) frames on connected buffers.
                let call = || unsafe { run(handle, n as u32) };
                if self.hard_rt {
                    self.heap_calls += crate::nodes::native::rtwatch::in_audio_call(call).1;
                } else {
                    call();
                }
            }
            self.workers[h].after_run();
        }
    }

    fn activate(&mut self) {
        for h in 0..self.instances.len() {
            let (d, handle) = self.descriptor(h);
            if let Some(f) = d.activate {
                // SAFETY: LV2's activate on an inactive instance.
                unsafe { f(handle) };
            }
        }
        self.active = true;
    }

    fn deactivate(&mut self) {
        if !self.active {
            return;
        }
        for h in 0..self.instances.len() {
            let (d, handle) = self.descriptor(h);
            if let Some(f) = d.deactivate {
                // SAFETY: LV2's deactivate on an active instance.
                unsafe { f(handle) };
            }
        }
        self.active = false;
    }
}

impl Instance for Lv2Instance {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        crate::nodes::native::set_control(&mut self.controls, id, value);
        Ok(0)
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, _mark: &CpuMark) -> Result<(), Fault> {
        copy_in(audio, &mut self.input, self.max_block, self.in_channels);
        self.run(audio.frames());
        self.replaced += copy_out(audio, &self.output, self.max_block, self.out_channels);
        Ok(())
    }

    fn start(&mut self) -> Result<(), Fault> {
        // LV2 clears state by deactivating and activating again.
        self.deactivate();
        self.activate();
        Ok(())
    }

    fn stop(&mut self) -> Result<(), Fault> {
        Ok(())
    }

    fn cleanup(&mut self) {}

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        self.outputs.publish(&self.controls[0], ctx);
    }

    fn latency(&self) -> usize {
        self.outputs.latency(&self.controls[0])
    }

    fn take_counts(&mut self) -> Counts {
        Counts {
            replaced_samples: std::mem::take(&mut self.replaced),
            heap_calls: std::mem::take(&mut self.heap_calls),
            ..Counts::default()
        }
    }
}

impl Drop for Lv2Instance {
    fn drop(&mut self) {
        self.deactivate();
        for w in &mut self.workers {
            w.stop_thread();
        }
        for &i in &self.instances {
            // SAFETY: each instance freed once (lilv calls the plugin's cleanup; the world is not used).
            unsafe { (self.free)(i) };
        }
    }
}
