//! The child's side of the out-of-process tier: `fxgraph` started again as a plugin host (see
//! [`super::isolate`]). It maps the shared memory it was given, loads the plugin, and answers the host's
//! requests until told to quit or until the host dies.
#![allow(unsafe_code)] // Shared memory and the plugin's private buffers; see the SAFETY notes.

use super::isolate::{
    CMD_PROCESS, CMD_QUIT, CMD_START, CMD_STOP, HOST_ARG, Header, MAGIC, MAX_PARAMS, STATUS, Shm, futex_wait,
    futex_wake, process_cpu_ns,
};
use crate::clock::CpuMark;
use crate::node::{AudioOut, PollContext, ProcessConfig};
use crate::nodes::plugin::{Fault, Instance};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Private buffers for the plugin in the child, with an inaccessible page right after them.
struct Guarded {
    base: *mut u8,
    len: usize,
    data: *mut f32,
}

impl Guarded {
    fn new(samples: usize) -> Result<Self, String> {
        let bytes = (samples * 4).div_ceil(4096) * 4096;
        let len = bytes + 4096;
        // SAFETY: an anonymous mapping; the last page made inaccessible.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()));
            }
            let base: *mut u8 = base.cast();
            libc::mprotect(base.add(bytes).cast(), 4096, libc::PROT_NONE);
            // The data ends where the guard page begins.
            let data = base.add(bytes - samples * 4).cast::<f32>();
            Ok(Self { base, len, data })
        }
    }

    fn slice(&mut self, samples: usize) -> &mut [f32] {
        // SAFETY: `samples` floats before the guard page, as allocated.
        unsafe { std::slice::from_raw_parts_mut(self.data, samples) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// If this process was started as a plugin host (its first argument is the hidden `__plugin-host`), runs it and exits.
/// Programs that embed fxgraph and use `isolation: Process` call this first thing in `main` (or point
/// `FXGRAPH_PLUGIN_HOST` at the `fxgraph` program).
pub fn run_if_plugin_host() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(HOST_ARG) {
        std::process::exit(host_main(&args[2..]));
    }
}

/// The child's side. Arguments: sample rate, the kind (`native`, `ladspa`, `lv2`, `clap`), the library (an
/// LV2 plugin's URI), the LADSPA label, LV2 preset or CLAP id, and for CLAP the state to restore (hex).
fn host_main(args: &[String]) -> i32 {
    let (rate, kind, path, label, state) = match args {
        [rate, kind, path, label] => (rate, kind, path, label, ""),
        [rate, kind, path, label, state] => (rate, kind, path, label, state.as_str()),
        _ => {
            eprintln!("fxgraph plugin host: bad arguments");
            return 2;
        }
    };
    // SAFETY: fd 3 is the memory file the parent made; its size is read back before mapping the rest.
    let shm = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(3, &mut st) != 0 {
            eprintln!("fxgraph plugin host: no shared memory on fd 3");
            return 2;
        }
        match Shm::map(3, st.st_size as usize) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fxgraph plugin host: {e}");
                return 2;
            }
        }
    };
    let h = shm.header();
    if h.magic != MAGIC {
        return 2;
    }
    let fail = |msg: String| {
        let n = msg.len().min(h.error.len());
        // SAFETY: within the mapping; the parent reads `error` only after seeing `ready == 2`.
        unsafe {
            let error = shm.base.add(std::mem::offset_of!(Header, error));
            std::ptr::copy_nonoverlapping(msg.as_ptr(), error, n);
        }
        h.error_len.store(n as u32, Ordering::Relaxed);
        h.ready.store(2, Ordering::Release);
        1
    };
    let (in_widths, out_widths) = h.widths();
    let (ins, outs, max_block) = (in_widths.iter().sum::<usize>(), out_widths.iter().sum(), h.max_block as usize);
    let channels = ins.max(outs);
    let Ok(sample_rate) = rate.parse::<u32>() else { return fail(format!("bad sample rate {rate}")) };
    let mut config = ProcessConfig::effect(sample_rate, channels, max_block);
    config.layout = crate::node::Layout::new(&in_widths, &out_widths);
    let count = h.param_count.load(Ordering::Relaxed) as usize;
    let mut params: Vec<(u32, f64)> = (0..count.min(MAX_PARAMS))
        .map(|i| (h.param_ids[i].load(Ordering::Relaxed), f64::from_bits(h.param_values[i].load(Ordering::Relaxed))))
        .collect();
    let mut instance: Box<dyn Instance> = match kind.as_str() {
        "native" => {
            match super::load(Path::new(path)).and_then(|lib| super::NativeInstance::new(lib, &config, &params)) {
                Ok(i) => Box::new(i),
                Err(e) => return fail(e),
            }
        }
        "ladspa" => {
            let built = super::ladspa::load(Path::new(path)).and_then(|lib| {
                let index = lib.find(label)?.index;
                super::ladspa::LadspaInstance::new(lib, index, &config, &params)
            });
            match built {
                Ok(i) => Box::new(i),
                Err(e) => return fail(e),
            }
        }
        "lv2" => {
            let preset = (!label.is_empty()).then_some(label.as_str());
            match super::lv2::find(path).and_then(|info| super::lv2::Lv2Instance::new(info, &config, &params, preset)) {
                Ok(i) => Box::new(i),
                Err(e) => return fail(e),
            }
        }
        "clap" => {
            let state = (!state.is_empty()).then(|| crate::sha256::unhex(state).unwrap_or_default());
            match super::clap::find(Path::new(path), label)
                .and_then(|info| super::clap::ClapInstance::new(info, &config, &params, state.as_deref(), None))
            {
                Ok(i) => Box::new(i),
                Err(e) => return fail(e),
            }
        }
        other => return fail(format!("unknown plugin kind {other}")),
    };
    let mut buffers = match Guarded::new(channels * max_block) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    h.latency.store(instance.latency() as u32, Ordering::Relaxed);
    h.ready.store(1, Ordering::Release);
    let mut status_ctx =
        StatusCtx { values: [0.0; STATUS], n: 0, params: vec![(0, 0.0); count.min(MAX_PARAMS)], params_n: 0 };
    let mut seen = 0u32;
    loop {
        let request = h.request.load(Ordering::Acquire);
        if request == seen {
            futex_wait(&h.request, seen, Duration::from_secs(1));
            continue;
        }
        seen = request;
        // The host charges this request the CPU time used from here.
        h.cpu_at_pick.store(process_cpu_ns(), Ordering::Relaxed);
        h.picked.store(request, Ordering::Release);
        // Parameter changes first.
        for (i, p) in params.iter_mut().enumerate() {
            if h.param_dirty[i].swap(0, Ordering::Relaxed) != 0 {
                p.1 = f64::from_bits(h.param_values[i].load(Ordering::Relaxed));
                let _ = instance.set_param(p.0, p.1);
            }
        }
        let result = match h.command.load(Ordering::Relaxed) {
            CMD_PROCESS => {
                let n = (h.frames.load(Ordering::Relaxed) as usize).min(max_block);
                let data = buffers.slice(channels * max_block);
                for c in 0..ins {
                    // SAFETY: the parent wrote the input planes before its request.
                    unsafe {
                        std::ptr::copy_nonoverlapping(shm.plane(false, c), data[c * max_block..].as_mut_ptr(), n)
                    };
                }
                let r = instance.process(&mut AudioOut::new(data, max_block, channels, n), &CpuMark::default());
                let counts = instance.take_counts();
                if counts.replaced_samples > 0 {
                    h.replaced.store(h.replaced.load(Ordering::Relaxed) + counts.replaced_samples, Ordering::Relaxed);
                }
                if counts.heap_calls > 0 {
                    h.heap_calls.store(h.heap_calls.load(Ordering::Relaxed) + counts.heap_calls, Ordering::Relaxed);
                }
                for c in 0..outs {
                    // SAFETY: the output planes, read by the parent after our answer.
                    unsafe { std::ptr::copy_nonoverlapping(data[c * max_block..].as_ptr(), shm.plane(true, c), n) };
                }
                // What the instance publishes (each decides how often it asks its plugin).
                instance.drain(&mut status_ctx);
                for (slot, v) in h.status.iter().zip(&status_ctx.values[..status_ctx.n]) {
                    slot.store(v.to_bits(), Ordering::Relaxed);
                }
                for &(i, v) in &status_ctx.params[..status_ctx.params_n] {
                    h.plugin_values[i].store(v.to_bits(), Ordering::Relaxed);
                    h.plugin_dirty[i].store(1, Ordering::Release);
                }
                if status_ctx.params_n > 0 {
                    h.plugin_any.store(1, Ordering::Release);
                }
                status_ctx.params_n = 0;
                match r {
                    Ok(()) => 0,
                    Err(Fault::Panicked) => fxgraph_plugin::ERR_PANIC,
                    Err(Fault::ErrorReturn(c)) => c,
                    Err(_) => -1,
                }
            }
            CMD_START => i32::from(instance.start().is_err()),
            CMD_STOP => i32::from(instance.stop().is_err()),
            CMD_QUIT => {
                instance.cleanup();
                drop(instance);
                return 0;
            }
            _ => -1,
        };
        h.result.store(result, Ordering::Relaxed);
        h.done.store(request, Ordering::Release);
        futex_wake(&h.done);
    }
}

/// Collects what an instance publishes, in the child: status numbers, and values the plugin set itself
/// (room for one per parameter a call).
struct StatusCtx {
    values: [f64; STATUS],
    n: usize,
    params: Vec<(usize, f64)>,
    params_n: usize,
}

impl PollContext for StatusCtx {
    fn message(&mut self, _kind: crate::node::MessageKind, _text: &[u8]) {}
    fn retire(&mut self, _garbage: Box<dyn std::any::Any + Send>) {}
    fn request_replacement(&mut self) -> bool {
        false
    }
    fn status(&mut self, _health: &crate::node::PluginHealth) {}
    fn status_values(&mut self, values: &[f64]) {
        self.n = values.len().min(STATUS);
        self.values[..self.n].copy_from_slice(&values[..self.n]);
    }
    fn param_from_plugin(&mut self, index: usize, value: f64) {
        if index < MAX_PARAMS && self.params_n < self.params.len() {
            self.params[self.params_n] = (index, value);
            self.params_n += 1;
        }
    }
}
