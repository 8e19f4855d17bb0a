//! Running a LADSPA plugin in this process: one handle per channel for mono plugins, or one for all.
#![allow(unsafe_code)] // LADSPA is a C ABI; see the SAFETY notes.

use super::abi::*;
use super::library::{LadspaLibrary, PortKind};
use crate::clock::CpuMark;
use crate::node::{AudioOut, MessageKind, PollContext, ProcessConfig};
use crate::nodes::native::{ControlOutputs, copy_in, copy_out};
use crate::nodes::plugin::{Counts, Fault, Instance, text};
use std::ffi::{c_ulong, c_void};
use std::sync::Arc;

/// LADSPA instances in this process: one per channel (mono plugins) or one.
pub struct LadspaInstance {
    lib: Arc<LadspaLibrary>,
    descriptor: *const Descriptor,
    handles: Vec<*mut c_void>,
    max_block: usize,
    /// Planar input and output buffers the ports are connected to: one channel per block channel (one
    /// instance per channel), or per audio port, in bus order.
    input: Vec<f32>,
    output: Vec<f32>,
    /// The block channels the inputs come from and the outputs go to.
    in_channels: usize,
    out_channels: usize,
    /// Control input values (one set per handle, at stable addresses), by port index.
    controls: Vec<Box<[f32]>>,
    /// Control outputs of the first handle (and dummies for the others), by port index.
    control_out: Vec<Box<[f32]>>,
    /// The control outputs shown as status numbers and latency.
    outputs: ControlOutputs,
    /// Non-finite output samples replaced since the last [`Instance::take_counts`].
    replaced: u64,
    warned: bool,
    hard_rt: bool,
    active: bool,
}

// SAFETY: the handles are only used by one thread at a time, as LADSPA requires.
unsafe impl Send for LadspaInstance {}

impl LadspaInstance {
    /// Instantiates, connects and activates (control side): a plugin with one audio input and one output
    /// as one instance per block channel, any other as one instance whose buses are the node's ports (see
    /// [`LadspaInfo::buses`](super::library::LadspaInfo::buses)).
    ///
    /// # Errors
    /// A message if `instantiate` fails.
    pub fn new(
        lib: Arc<LadspaLibrary>,
        index: usize,
        config: &ProcessConfig,
        params: &[(u32, f64)],
    ) -> Result<Self, String> {
        let info = lib.plugins[index].clone();
        let mono = info.mono();
        let count = if mono { config.channels.max(1) } else { 1 };
        // The buffer channel of each audio port: its handle's channel, or its place among the buses.
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
        let descriptor = lib.descriptor(index);
        // SAFETY: a descriptor of the loaded library; its functions checked non-null at load.
        let d = unsafe { &*descriptor };
        let ports = info.ports.len();
        let mut inst = Self {
            lib: lib.clone(),
            descriptor,
            handles: Vec::new(),
            max_block: config.max_block,
            input: vec![0.0; in_channels.max(1) * config.max_block],
            output: vec![0.0; out_channels.max(1) * config.max_block],
            in_channels,
            out_channels,
            controls: (0..count).map(|_| vec![0.0f32; ports].into_boxed_slice()).collect(),
            control_out: (0..count).map(|_| vec![0.0f32; ports].into_boxed_slice()).collect(),
            outputs: ControlOutputs::new(
                info.ports(PortKind::ControlOut).map(|p| p.index),
                info.ports(PortKind::ControlOut).find(|p| p.key == "latency").map(|p| p.index),
            ),
            replaced: 0,
            warned: false,
            hard_rt: info.hard_rt(),
            active: false,
        };
        for &(port, value) in params {
            for c in &mut inst.controls {
                c[port as usize] = value as f32;
            }
        }
        for h in 0..count {
            // SAFETY: instantiate per LADSPA; null is a failure.
            let handle =
                unsafe { (d.instantiate.expect("checked at load"))(descriptor, c_ulong::from(config.sample_rate)) };
            if handle.is_null() {
                return Err(format!("{}: instantiate returned null at {} Hz", info.label, config.sample_rate));
            }
            inst.handles.push(handle);
            for p in &info.ports {
                let c = if mono { h } else { channel_of[p.index] };
                let at: *mut f32 = match p.kind {
                    PortKind::AudioIn => inst.input[c * config.max_block..].as_mut_ptr(),
                    PortKind::AudioOut => inst.output[c * config.max_block..].as_mut_ptr(),
                    PortKind::ControlIn => &mut inst.controls[h][p.index],
                    PortKind::ControlOut => &mut inst.control_out[h][p.index],
                };
                // SAFETY: the buffers live (and do not move: boxed and never resized) as long as the handle.
                unsafe { (d.connect_port.expect("checked at load"))(handle, p.index as c_ulong, at) };
            }
        }
        inst.activate();
        if inst.outputs.has_latency() {
            // Plugins set their latency port when they run: one block of silence tells it, then the state
            // is cleared again.
            let run = d.run.expect("checked at load");
            for &h in &inst.handles {
                // SAFETY: LADSPA's run on connected buffers (zeroed), at most max_block frames.
                unsafe { run(h, config.max_block as c_ulong) };
            }
            inst.deactivate();
            inst.activate();
        }
        Ok(inst)
    }

    fn d(&self) -> &Descriptor {
        // SAFETY: a descriptor of a library that stays loaded.
        unsafe { &*self.descriptor }
    }

    fn activate(&mut self) {
        if let Some(f) = self.d().activate {
            for &h in &self.handles {
                // SAFETY: LADSPA's activate on a live handle.
                unsafe { f(h) };
            }
        }
        self.active = true;
    }

    fn deactivate(&mut self) {
        if self.active
            && let Some(f) = self.d().deactivate
        {
            for &h in &self.handles {
                // SAFETY: LADSPA's deactivate on an active handle.
                unsafe { f(h) };
            }
        }
        self.active = false;
    }
}

impl Instance for LadspaInstance {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        crate::nodes::native::set_control(&mut self.controls, id, value);
        Ok(0)
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, _mark: &CpuMark) -> Result<(), Fault> {
        let n = audio.frames();
        let run = self.d().run.expect("checked at load");
        copy_in(audio, &mut self.input, self.max_block, self.in_channels);
        for &h in &self.handles {
            // SAFETY: LADSPA's run with `n` (at most max_block) frames on connected buffers.
            unsafe { run(h, n as c_ulong) };
        }
        self.replaced += copy_out(audio, &self.output, self.max_block, self.out_channels);
        Ok(())
    }

    fn start(&mut self) -> Result<(), Fault> {
        // LADSPA clears state by deactivating and activating again.
        self.deactivate();
        self.activate();
        Ok(())
    }

    fn stop(&mut self) -> Result<(), Fault> {
        Ok(())
    }

    fn cleanup(&mut self) {}

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        if !self.warned {
            self.warned = true;
            if !self.hard_rt {
                let mut buf = [0u8; crate::nodes::plugin::MESSAGE_BYTES];
                let msg =
                    text(&mut buf, format_args!("this LADSPA plugin does not declare itself hard-real-time capable"));
                ctx.message(MessageKind::Log(2), msg);
            }
        }
        self.outputs.publish(&self.control_out[0], ctx);
    }

    fn latency(&self) -> usize {
        self.outputs.latency(&self.control_out[0])
    }

    fn take_counts(&mut self) -> Counts {
        Counts { replaced_samples: std::mem::take(&mut self.replaced), ..Counts::default() }
    }
}

impl Drop for LadspaInstance {
    fn drop(&mut self) {
        self.deactivate();
        if let Some(cleanup) = self.d().cleanup {
            for &h in &self.handles {
                // SAFETY: each handle cleaned up once; the library stays loaded.
                unsafe { cleanup(h) };
            }
        }
        let _ = &self.lib;
    }
}
