//! Running a CLAP plugin in this process: activated on the control side (its main thread), processing
//! started, run, reset and stopped on the audio side, as CLAP's thread rules say; parameter changes as
//! events at the frame they apply from, and values the plugin sends back read.
#![allow(unsafe_code)] // CLAP is a C ABI; see the SAFETY notes.

use super::host::{Host, as_audio};
use super::library::{ClapInfo, destroy, extension};
use crate::clock::CpuMark;
use crate::node::{AudioOut, MessageKind, PollContext, ProcessConfig};
use crate::nodes::native::{copy_in, copy_out};
use crate::nodes::plugin::{Counts, Fault, Instance};
use clap_sys::audio_buffer::clap_audio_buffer;
use clap_sys::events::{
    CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_PARAM_VALUE, clap_event_header, clap_event_param_value, clap_input_events,
    clap_output_events,
};
use clap_sys::ext::latency::{CLAP_EXT_LATENCY, clap_plugin_latency};
use clap_sys::ext::params::{CLAP_EXT_PARAMS, clap_plugin_params};
use clap_sys::ext::state::{CLAP_EXT_STATE, clap_plugin_state};
use clap_sys::plugin::clap_plugin;
use clap_sys::process::{CLAP_PROCESS_ERROR, clap_process};
use clap_sys::stream::{clap_istream, clap_ostream};
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The node's plugin that is playing, shared with the node's description so that the control side can
/// ask it for its state (CLAP's `state.save` is a main-thread call a plugin takes while it processes).
/// Set when the instance starts processing, cleared when it is dropped; isolated instances never set it.
#[derive(Debug, Default)]
pub struct Live(AtomicPtr<clap_plugin>);

impl Live {
    /// The playing plugin's state, saved through its state extension (control side).
    ///
    /// # Errors
    /// A message if no instance plays in this process or the plugin fails to save.
    pub fn save(&self) -> Result<Vec<u8>, String> {
        let plugin = self.0.load(Ordering::Acquire);
        if plugin.is_null() {
            return Err(
                "no instance of it plays in this process (it runs in a child process, or has not started)".into()
            );
        }
        let ext = extension::<clap_plugin_state>(plugin, CLAP_EXT_STATE).ok_or("it has no state extension")?;
        let mut out: Vec<u8> = Vec::new();
        let stream = clap_ostream { ctx: std::ptr::from_mut(&mut out).cast(), write: Some(write_to_vec) };
        // SAFETY: the state extension's save on the main thread (the one that made the plugin: the control
        // side, which also drops it, so it lives through this call), with a stream valid for the call.
        let ok = unsafe { (*ext).save.is_some_and(|f| f(plugin, &stream)) };
        if ok { Ok(out) } else { Err("the plugin's state.save failed".into()) }
    }
}

unsafe extern "C" fn write_to_vec(stream: *const clap_ostream, buffer: *const c_void, size: u64) -> i64 {
    // SAFETY: `ctx` is the Vec `Live::save` made; the plugin's buffer holds `size` bytes.
    unsafe {
        let out = &mut *(*stream).ctx.cast::<Vec<u8>>();
        if size > 0 {
            out.extend_from_slice(std::slice::from_raw_parts(buffer.cast::<u8>(), size as usize));
        }
    }
    size as i64
}

/// A state being read by the plugin: the bytes and how far it has read.
struct Reading<'a> {
    bytes: &'a [u8],
    at: usize,
}

unsafe extern "C" fn read_from_slice(stream: *const clap_istream, buffer: *mut c_void, size: u64) -> i64 {
    // SAFETY: `ctx` is the Reading `load_state` made; the plugin's buffer has room for `size` bytes.
    unsafe {
        let r = &mut *(*stream).ctx.cast::<Reading<'_>>();
        let n = (size as usize).min(r.bytes.len() - r.at);
        std::ptr::copy_nonoverlapping(r.bytes[r.at..].as_ptr(), buffer.cast::<u8>(), n);
        r.at += n;
        n as i64
    }
}

/// Parameter changes for the next `process` call: at most one event per parameter (a later change of the
/// same one replaces the value), so the room made at the start is never outgrown.
#[repr(C)]
struct InEvents {
    list: clap_input_events,
    events: Vec<clap_event_param_value>,
}

unsafe extern "C" fn in_size(list: *const clap_input_events) -> u32 {
    // SAFETY: `ctx` is the `InEvents` that holds the list.
    unsafe { (*(*list).ctx.cast::<InEvents>()).events.len() as u32 }
}

unsafe extern "C" fn in_get(list: *const clap_input_events, index: u32) -> *const clap_event_header {
    // SAFETY: as above.
    let e = unsafe { &*(*list).ctx.cast::<InEvents>() };
    e.events.get(index as usize).map_or(std::ptr::null(), |ev| &ev.header)
}

/// The values of parameters the plugin sends out (read-only ones are its readouts), by slot.
#[repr(C)]
struct OutEvents {
    list: clap_output_events,
    /// Every parameter's id, sorted, and its last value from the plugin.
    ids: Vec<u32>,
    values: Vec<f64>,
    /// Values the plugin sent since the last drain.
    received: u64,
    /// Per id: its index among the node's parameters (settable ones), and whether the plugin sent a value
    /// since the last drain.
    node_index: Vec<Option<usize>>,
    changed: Vec<bool>,
}

unsafe extern "C" fn out_push(list: *const clap_output_events, event: *const clap_event_header) -> bool {
    // SAFETY: `ctx` is the `OutEvents` that holds the list; the plugin's event is valid for this call.
    unsafe {
        let o = &mut *(*list).ctx.cast::<OutEvents>();
        let Some(h) = event.as_ref() else { return false };
        if h.space_id == CLAP_CORE_EVENT_SPACE_ID
            && h.type_ == CLAP_EVENT_PARAM_VALUE
            && h.size as usize >= std::mem::size_of::<clap_event_param_value>()
        {
            let e = &*event.cast::<clap_event_param_value>();
            if let Ok(i) = o.ids.binary_search(&e.param_id) {
                o.values[i] = e.value;
                o.received += 1;
                o.changed[i] = true;
            }
        }
    }
    // Other events (gestures, notes) are taken and dropped.
    true
}

/// A CLAP plugin instance in this process.
pub struct ClapInstance {
    plugin: *const clap_plugin,
    host: Box<Host>,
    max_block: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    /// The port buffers `process` gets, pointing into `input` and `output` (set once).
    in_bufs: Vec<clap_audio_buffer>,
    out_bufs: Vec<clap_audio_buffer>,
    _ptrs: (Vec<*mut f32>, Vec<*mut f32>),
    events: Box<InEvents>,
    out_events: Box<OutEvents>,
    /// Where each readout's value is in `out_events`.
    readouts: Vec<usize>,
    status: Vec<f64>,
    processing: bool,
    active: bool,
    steady: i64,
    latency: usize,
    replaced: u64,
    reported_logs: u32,
    /// Heap calls its library made in `process` since the last `take_counts` (CLAP's `process` must be
    /// real-time safe).
    heap_calls: u64,
    live: Option<Arc<Live>>,
    _info: Arc<ClapInfo>,
}

// SAFETY: the plugin is used by one thread at a time: made and activated on the control side, then run by
// the audio side, then dropped on the control side once the audio side has let it go.
unsafe impl Send for ClapInstance {}

impl ClapInstance {
    /// Creates, initializes and activates the plugin, parameters set (control side).
    ///
    /// # Errors
    /// A message if the plugin cannot be made or activated.
    pub fn new(
        info: Arc<ClapInfo>,
        config: &ProcessConfig,
        params: &[(u32, f64)],
        state: Option<&[u8]>,
        live: Option<Arc<Live>>,
    ) -> Result<Self, String> {
        let host = Host::new();
        let plugin = info.library.create(&info.id, &host)?;
        let (in_channels, out_channels) = info.channels();
        let mb = config.max_block;
        let mut ids: Vec<u32> = info.params.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        let mut inst = Self {
            plugin,
            host,
            max_block: mb,
            input: vec![0.0; in_channels.max(1) * mb],
            output: vec![0.0; out_channels.max(1) * mb],
            in_channels,
            out_channels,
            in_bufs: Vec::new(),
            out_bufs: Vec::new(),
            _ptrs: (Vec::new(), Vec::new()),
            events: Box::new(InEvents {
                list: clap_input_events { ctx: std::ptr::null_mut(), size: Some(in_size), get: Some(in_get) },
                events: Vec::with_capacity(info.params.len()),
            }),
            out_events: Box::new(OutEvents {
                list: clap_output_events { ctx: std::ptr::null_mut(), try_push: Some(out_push) },
                values: vec![0.0; ids.len()],
                node_index: ids.iter().map(|id| info.settable().position(|p| p.id == *id)).collect(),
                changed: vec![false; ids.len()],
                ids,
                received: 0,
            }),
            readouts: Vec::new(),
            status: Vec::new(),
            processing: false,
            active: false,
            steady: 0,
            latency: 0,
            replaced: 0,
            reported_logs: 0,
            heap_calls: 0,
            live,
            _info: info.clone(),
        };
        inst.events.list.ctx = std::ptr::from_mut(&mut *inst.events).cast::<c_void>();
        inst.out_events.list.ctx = std::ptr::from_mut(&mut *inst.out_events).cast::<c_void>();
        inst.readouts = info.readouts().filter_map(|p| inst.out_events.ids.binary_search(&p.id).ok()).collect();
        inst.status = vec![0.0; inst.readouts.len()];
        // Port buffers: one pointer per channel, consecutive planes of `input`/`output` in port order.
        inst._ptrs.0 = (0..in_channels).map(|c| inst.input[c * mb..].as_mut_ptr()).collect();
        inst._ptrs.1 = (0..out_channels).map(|c| inst.output[c * mb..].as_mut_ptr()).collect();
        let buffers = |ports: &[super::library::AudioPort], ptrs: &mut Vec<*mut f32>| {
            let mut at = 0;
            ports
                .iter()
                .map(|p| {
                    let b = clap_audio_buffer {
                        data32: ptrs[at..].as_mut_ptr(),
                        data64: std::ptr::null_mut(),
                        channel_count: p.channels as u32,
                        latency: 0,
                        constant_mask: 0,
                    };
                    at += p.channels;
                    b
                })
                .collect::<Vec<_>>()
        };
        inst.in_bufs = buffers(&info.inputs, &mut inst._ptrs.0);
        inst.out_bufs = buffers(&info.outputs, &mut inst._ptrs.1);
        // Initial values: sent as events with the first block (CLAP has no other way for a host to set
        // one), and read back from the plugin for the readouts.
        for &(id, v) in params {
            inst.queue(id, v);
        }
        if let Some(bytes) = state {
            let ext = extension::<clap_plugin_state>(plugin, CLAP_EXT_STATE)
                .ok_or_else(|| format!("{}: a state is given, and the plugin has no state extension", info.id))?;
            let mut reading = Reading { bytes, at: 0 };
            let stream = clap_istream { ctx: std::ptr::from_mut(&mut reading).cast(), read: Some(read_from_slice) };
            // SAFETY: the state extension's load on the main thread, before activation, with a stream
            // valid for the call.
            if !unsafe { (*ext).load.is_some_and(|f| f(plugin, &stream)) } {
                return Err(format!("{}: the plugin refused the state it was given", info.id));
            }
        }
        inst.read_values();
        // SAFETY: CLAP's activate on the main thread, on an initialized, inactive plugin.
        let ok = unsafe { (*plugin).activate.is_some_and(|f| f(plugin, f64::from(config.sample_rate), 1, mb as u32)) };
        if !ok {
            return Err(format!("{}: the plugin refused to activate at {} Hz", info.id, config.sample_rate));
        }
        inst.active = true;
        if let Some(l) = extension::<clap_plugin_latency>(plugin, CLAP_EXT_LATENCY) {
            // SAFETY: the latency extension on the main thread, while active.
            inst.latency = unsafe { (*l).get.map_or(0, |g| g(plugin)) } as usize;
        }
        Ok(inst)
    }

    /// Queues a parameter change for the next call (at its first frame).
    fn queue(&mut self, id: u32, value: f64) {
        if let Some(e) = self.events.events.iter_mut().find(|e| e.param_id == id) {
            e.value = value;
            return;
        }
        if self.events.events.len() == self.events.events.capacity() {
            return; // Not a parameter the plugin listed: nothing to send.
        }
        self.events.events.push(clap_event_param_value {
            header: clap_event_header {
                size: std::mem::size_of::<clap_event_param_value>() as u32,
                time: 0,
                space_id: CLAP_CORE_EVENT_SPACE_ID,
                type_: CLAP_EVENT_PARAM_VALUE,
                flags: 0,
            },
            param_id: id,
            cookie: std::ptr::null_mut(),
            note_id: -1,
            port_index: -1,
            channel: -1,
            key: -1,
            value,
        });
    }

    /// Every parameter's value as the plugin holds it (main thread).
    fn read_values(&mut self) {
        let Some(p) = extension::<clap_plugin_params>(self.plugin, CLAP_EXT_PARAMS) else { return };
        // SAFETY: the params extension on the main thread.
        let Some(get) = (unsafe { (*p).get_value }) else { return };
        for (i, &id) in self.out_events.ids.iter().enumerate() {
            let mut v = 0.0;
            // SAFETY: as above, writing one f64.
            if unsafe { get(self.plugin, id, &mut v) } {
                self.out_events.values[i] = v;
            }
        }
    }

    /// The last value of parameter `id` the plugin reported.
    pub fn value(&self, id: u32) -> Option<f64> {
        self.out_events.ids.binary_search(&id).ok().map(|i| self.out_events.values[i])
    }
}

impl Instance for ClapInstance {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        self.queue(id, value);
        Ok(0)
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, _mark: &CpuMark) -> Result<(), Fault> {
        let plugin = self.plugin;
        if !self.processing {
            // SAFETY: start_processing on the audio thread of an active plugin.
            let ok = as_audio(|| unsafe { (*plugin).start_processing.is_none_or(|f| f(plugin)) });
            if !ok {
                return Err(Fault::ErrorReturn(-1));
            }
            self.processing = true;
            if let Some(l) = &self.live {
                l.0.store(plugin.cast_mut(), Ordering::Release);
            }
        }
        let n = audio.frames();
        copy_in(audio, &mut self.input, self.max_block, self.in_channels);
        let call = clap_process {
            steady_time: self.steady,
            frames_count: n as u32,
            transport: std::ptr::null(),
            audio_inputs: self.in_bufs.as_ptr(),
            audio_outputs: self.out_bufs.as_mut_ptr(),
            audio_inputs_count: self.in_bufs.len() as u32,
            audio_outputs_count: self.out_bufs.len() as u32,
            in_events: &self.events.list,
            out_events: &self.out_events.list,
        };
        let (status, heap_calls) = crate::nodes::native::rtwatch::in_audio_call(|| {
            // SAFETY: CLAP's process on the audio thread of a processing plugin, with buffers of `n` (at
            // most max_block) frames per channel and event lists valid for the call.
            as_audio(|| unsafe { (*plugin).process.map_or(CLAP_PROCESS_ERROR, |f| f(plugin, &call)) })
        });
        self.heap_calls += heap_calls;
        self.events.events.clear();
        self.steady += n as i64;
        if status == CLAP_PROCESS_ERROR {
            return Err(Fault::ErrorReturn(0));
        }
        self.replaced += copy_out(audio, &self.output, self.max_block, self.out_channels);
        Ok(())
    }

    fn start(&mut self) -> Result<(), Fault> {
        if self.processing {
            let plugin = self.plugin;
            // SAFETY: CLAP's reset on the audio thread of an active plugin.
            as_audio(|| unsafe {
                if let Some(f) = (*plugin).reset {
                    f(plugin);
                }
            });
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), Fault> {
        if self.processing {
            let plugin = self.plugin;
            // SAFETY: CLAP's stop_processing on the audio thread of a processing plugin.
            as_audio(|| unsafe {
                if let Some(f) = (*plugin).stop_processing {
                    f(plugin);
                }
            });
            self.processing = false;
        }
        Ok(())
    }

    fn cleanup(&mut self) {}

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        // Settable parameters the plugin changed itself: the node's values follow.
        let o = &mut *self.out_events;
        for i in 0..o.ids.len() {
            if std::mem::take(&mut o.changed[i])
                && let Some(index) = o.node_index[i]
            {
                ctx.param_from_plugin(index, o.values[i]);
            }
        }
        if !self.readouts.is_empty() {
            for (s, &i) in self.status.iter_mut().zip(&self.readouts) {
                *s = self.out_events.values[i];
            }
            ctx.status_values(&self.status);
        }
        let r = &self.host.requests;
        let logs = r.audio_logs.load(Ordering::Relaxed);
        if logs > self.reported_logs {
            self.reported_logs = logs;
            ctx.message(MessageKind::Log(2), b"the plugin logged from the audio thread (counted, not printed)");
        }
        if r.restart.swap(false, Ordering::Relaxed) {
            ctx.message(
                MessageKind::Log(2),
                b"the plugin asked for a restart, which fxgraph does not do while playing",
            );
        }
    }

    fn latency(&self) -> usize {
        self.latency
    }

    fn take_counts(&mut self) -> Counts {
        Counts {
            replaced_samples: std::mem::take(&mut self.replaced),
            heap_calls: std::mem::take(&mut self.heap_calls),
            ..Counts::default()
        }
    }
}

impl Drop for ClapInstance {
    fn drop(&mut self) {
        // The audio side has let the plugin go: this thread finishes its processing as its audio thread,
        // then deactivates and destroys it as its main thread.
        let _ = self.stop();
        let plugin = self.plugin;
        if let Some(l) = &self.live {
            let _ = l.0.compare_exchange(plugin.cast_mut(), std::ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed);
        }
        // SAFETY: deactivate on an active plugin, destroy once.
        unsafe {
            if self.active
                && let Some(f) = (*plugin).deactivate
            {
                f(plugin);
            }
            destroy(plugin);
        }
    }
}
