//! What every plugin node shares, whatever runs the plugin (wasmtime, a native library in this process, a
//! native library in a child process): parameter smoothing, fault handling with bypass, replacement and
//! backoff, the time-budget watchdog, and reporting.
//!
//! A backend provides an [`Instance`]; [`PluginProcessor`] drives it on the audio side:
//!
//! - numeric parameters ramp over [`RAMP_MS`], sent to the instance every [`RAMP_STEP`] frames (the block
//!   is cut there); enumerations and toggles are sent at once;
//! - an instance that faults (see [`Fault`]) is never re-entered: that block's output is its dry input (or
//!   silence, as the node's `on_fault` says), the fault is counted and reported, the instance goes to the
//!   control side to be dropped there, and a fresh one, built on the control side, takes over after a
//!   backoff of 2, 4, 8, 16 blocks; after [`MAX_FAULTS`] faults in a row (none [`FORGIVE_SECONDS`] of clean
//!   audio apart) the node stays bypassed;
//! - in real time ([`ProcessConfig::realtime`]), an instance over its time budget for [`WATCHDOG_BLOCKS`]
//!   blocks in a row is faulted. Offline nothing is late, and the watchdog does not run.
//!
//! # Whose time
//! A plugin is charged only for the CPU time it used itself, never for time its thread spent preempted:
//! on a busy machine a block may take far longer in wall time than the plugin computed, and that is a late
//! block (in real time, a device-level underrun), not the plugin's fault. The watchdog compares a call's
//! wall time with the budget first (the cheap clock), and only for a call over it asks the backend for the
//! plugin's own CPU time ([`Instance::own_time_ns`], a system call); the backends' hard deadlines charge
//! CPU time the same way (`clock::CpuMark`). So the same input gives the same output bits however busy the
//! machine is, and a plugin that really spins is still stopped.

use crate::clock::CpuMark;
use crate::dsp::smooth::{Ramp, ramp_frames};
use crate::node::AudioOut;
use crate::node::{MessageKind, NodeError, PluginHealth, PollContext, ProcessConfig, Processor, RAMP_MS, RAMP_STEP};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Faults in a row after which a node stays bypassed. Faults are in a row unless a replacement instance
/// runs for [`FORGIVE_SECONDS`] of audio without one in between.
pub const MAX_FAULTS: u32 = 5;
/// Audio a replacement must process without a fault for the faults before to be forgiven.
pub const FORGIVE_SECONDS: f64 = 10.0;
/// Consecutive over-budget blocks after which the watchdog bypasses a plugin.
pub const WATCHDOG_BLOCKS: u32 = 8;
/// Output magnitudes above this are absurd (about +60 dBFS).
pub const ABSURD: f32 = 1000.0;
/// Bytes kept of one message.
pub const MESSAGE_BYTES: usize = crate::node::MESSAGE_BYTES;

/// What a faulted plugin outputs for the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum OnFault {
    /// Its input, unprocessed.
    #[default]
    Dry,
    /// Silence.
    Silence,
}

/// Why a plugin was faulted. Holds no heap data, so faulting allocates nothing (but a wasmtime trap's own
/// error object is created by wasmtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A WebAssembly trap (`None`: an error that is not a trap code).
    #[cfg(feature = "wasm")]
    Trap(Option<wasmtime::Trap>),
    /// The plugin's process (or set-up) call returned this error code.
    ErrorReturn(i32),
    /// Non-finite or absurd output samples.
    BadOutput,
    /// Over its time budget for [`WATCHDOG_BLOCKS`] blocks in a row (in real time).
    OverBudget,
    /// A WebAssembly memory changed size during a block.
    MemoryGrew,
    /// A native plugin (through the SDK) panicked.
    Panicked,
    /// The plugin's health check failed with this code.
    Unhealthy(i32),
    /// An isolated plugin's process died (signal number, or exit code as a negative number).
    Crashed(i32),
    /// An isolated plugin's process did not answer within its deadline.
    TimedOut,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "wasm")]
            Fault::Trap(Some(t)) => write!(f, "Trap: {t}"),
            #[cfg(feature = "wasm")]
            Fault::Trap(None) => write!(f, "Trap"),
            Fault::ErrorReturn(code) => write!(f, "ErrorReturn: the plugin returned {code}"),
            Fault::BadOutput => write!(f, "BadOutput: non-finite or absurd samples"),
            Fault::OverBudget => write!(f, "OverBudget: {WATCHDOG_BLOCKS} blocks in a row over the budget"),
            Fault::MemoryGrew => write!(f, "MemoryGrew: memory changed during a block"),
            Fault::Panicked => write!(f, "Panicked: the plugin panicked (caught at the ABI boundary)"),
            Fault::Unhealthy(code) => write!(f, "Unhealthy: the health check returned {code}"),
            Fault::Crashed(sig) if *sig > 0 => write!(f, "Crashed: the plugin's process died of signal {sig}"),
            Fault::Crashed(code) => write!(f, "Crashed: the plugin's process exited with code {}", -code),
            Fault::TimedOut => write!(f, "TimedOut: the plugin's process did not answer in time"),
        }
    }
}

/// A running plugin instance, as a backend provides it. Every method but `cleanup` runs on the audio
/// side and must not allocate, lock or wait without bound.
pub trait Instance: Send + 'static {
    /// Sends a parameter's value. `Ok(0)`: taken; `Ok(code)`: refused by the plugin (reported, not a fault).
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault>;
    /// Processes `audio` in place. On `Err`, `audio` must still hold the input. `mark` is the call's start
    /// on this thread, for a backend whose deadline charges the plugin's CPU time.
    fn process(&mut self, audio: &mut AudioOut<'_>, mark: &CpuMark) -> Result<(), Fault>;
    /// Clears state (after `initialize`, `stop` or for a seek).
    fn start(&mut self) -> Result<(), Fault>;
    /// Processing has ended (control side, or the audio side's stop).
    fn stop(&mut self) -> Result<(), Fault>;
    /// Releases what the plugin holds (control side; the instance is dropped next).
    fn cleanup(&mut self);
    /// Hands over what the plugin said since the last poll, and any count worth reporting.
    fn drain(&mut self, _ctx: &mut dyn PollContext) {}
    /// A health check after a block (the instance decides how often it really asks the plugin); an error
    /// faults the instance.
    fn check(&mut self) -> Result<(), Fault> {
        Ok(())
    }
    /// Memory in use and its cap, in bytes, where the backend knows.
    fn memory(&self) -> Option<(usize, usize)> {
        None
    }
    /// Frames by which the output lags the input.
    fn latency(&self) -> usize {
        0
    }
    /// The CPU time the plugin used itself in the last [`process`](Self::process) call, at least (ns).
    /// Asked only after a call that took longer than the budget in wall time; it may make a system call.
    /// The default is the calling thread's time since `mark`: the plugin ran on it.
    fn own_time_ns(&mut self, mark: &CpuMark) -> u64 {
        mark.used_at_least()
    }
    /// What happened since the last call that is not a fault: calls that passed their deadline in wall
    /// time while the plugin had not used it, and non-finite output samples replaced with silence.
    fn take_counts(&mut self) -> Counts {
        Counts::default()
    }
}

/// See [`Instance::take_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls that ran past their deadline in wall time because the plugin's thread (or process) was
    /// preempted, and were let finish.
    pub preempted_calls: u64,
    /// Non-finite output samples replaced with silence.
    pub replaced_samples: u64,
    /// Heap calls (`malloc`, `free`, `operator new`...) the plugin's own code made in its audio functions,
    /// where it claims to be real-time safe and the host watches (see `native::rtwatch`).
    pub heap_calls: u64,
}

/// Faults whose frames a processor keeps between two polls.
const FAULT_FRAMES: usize = 4;

/// Builds instances for a [`PluginProcessor`]: from the processing configuration and the parameters'
/// `(id, value)`s. Runs on the control side.
pub type Factory<I> = Box<dyn Fn(&ProcessConfig, &[(u32, f64)]) -> Result<I, String> + Send>;

/// The shared audio side of a plugin node. See the [module documentation](self).
pub struct PluginProcessor<I: Instance> {
    /// Names the plugin in messages (its id).
    name: Arc<str>,
    /// Parameter keys (for messages), ids and current target values, in the node's parameter order.
    keys: Arc<[String]>,
    params: Vec<(u32, f64)>,
    numeric: Vec<bool>,
    ramps: Vec<Ramp>,
    /// Parameters whose ramp is moving.
    moving: Vec<bool>,
    ramp_len: u32,
    ramp_pos: usize,
    ramping: bool,
    on_fault: OnFault,
    budget: Duration,
    /// `budget` in [`crate::clock`] ticks (set on the control side, in `initialize`): the watchdog reads the
    /// cheap clock, not `Instant`, which is a system call in some VMs.
    budget_ticks: u64,
    /// Whether the watchdog runs ([`ProcessConfig::realtime`]).
    realtime: bool,
    /// How old (in ticks) the thread's CPU-clock reading behind a [`CpuMark`] may be: an eighth of the
    /// budget, from 20 µs to 1 ms, so a reading is taken at most every 20 µs of wall time.
    mark_age: u64,
    /// The last call took longer than the budget in wall time: mark the next one exactly.
    suspect: bool,
    make: Factory<I>,
    config: Option<ProcessConfig>,
    live: Option<Box<I>>,
    /// A faulted instance, handed to the control side at the next poll.
    dead: Option<Box<I>>,
    /// A replacement waiting for its backoff to end.
    spare: Option<Box<I>>,
    faults: u32,
    in_a_row: u32,
    clean_frames: u64,
    forgive_frames: u64,
    fault: Option<Fault>,
    wants_replacement: bool,
    requested: bool,
    /// A parameter change the plugin refused: (index, value, code).
    refused: Option<(usize, f64, i32)>,
    needs_start: bool,
    block: u64,
    retry_at: u64,
    slow_blocks: u32,
    latency: usize,
    /// Frames processed since the node started (a fault's time).
    position: u64,
    /// What [`PluginHealth`] publishes.
    health: PluginHealth,
    /// Frames of faults not yet handed over (the first [`FAULT_FRAMES`] between two polls).
    fault_frames: [u64; FAULT_FRAMES],
    new_faults: usize,
    /// Replaced samples already reported in a message.
    replaced_reported: u64,
    /// Heap calls the plugin made on the audio thread, in all, and how many of them were reported.
    heap_calls: u64,
    heap_reported: u64,
}

/// Writes formatted text into a fixed buffer (no allocation), cutting what does not fit.
pub fn text<'a>(buf: &'a mut [u8; MESSAGE_BYTES], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let len = cursor.position() as usize;
    &buf[..len]
}

impl<I: Instance> PluginProcessor<I> {
    /// A processor for a plugin named `name` whose parameters are `keys` with `params` (`(id, value)`),
    /// `numeric` marking the ones to ramp; `budget` is its time per block before the watchdog counts.
    pub fn new(
        name: impl Into<Arc<str>>,
        keys: Vec<String>,
        params: Vec<(u32, f64)>,
        numeric: Vec<bool>,
        on_fault: OnFault,
        budget: Duration,
        make: Factory<I>,
    ) -> Self {
        let ramps = params.iter().map(|&(_, v)| Ramp::new(v)).collect();
        Self {
            name: name.into(),
            keys: keys.into(),
            moving: vec![false; params.len()],
            params,
            numeric,
            ramps,
            ramp_len: 1,
            ramp_pos: 0,
            ramping: false,
            on_fault,
            budget,
            budget_ticks: u64::MAX,
            realtime: true,
            mark_age: 0,
            suspect: false,
            make,
            config: None,
            live: None,
            dead: None,
            spare: None,
            faults: 0,
            in_a_row: 0,
            clean_frames: 0,
            forgive_frames: u64::MAX,
            fault: None,
            wants_replacement: false,
            requested: false,
            refused: None,
            needs_start: false,
            block: 0,
            retry_at: 0,
            slow_blocks: 0,
            latency: 0,
            position: 0,
            health: PluginHealth::default(),
            fault_frames: [0; FAULT_FRAMES],
            new_faults: 0,
            replaced_reported: 0,
            heap_calls: 0,
            heap_reported: 0,
        }
    }

    /// Faults the instance at frame `at` of the current block: counted, reported at the next poll, handed
    /// back, replaced after a backoff.
    fn fault(&mut self, fault: Fault, at: usize) {
        if self.new_faults < FAULT_FRAMES {
            self.fault_frames[self.new_faults] = self.position + at as u64;
            self.new_faults += 1;
        }
        self.faults = self.faults.saturating_add(1);
        self.in_a_row += 1;
        self.clean_frames = 0;
        self.fault = Some(fault);
        if let Some(live) = self.live.take() {
            // Only one is kept; an older dead instance (two faults between polls) is dropped with it.
            self.dead = Some(live);
        }
        self.slow_blocks = 0;
        self.retry_at = self.block + (1u64 << self.in_a_row.min(16));
        self.wants_replacement = self.in_a_row < MAX_FAULTS;
        self.requested = false;
    }

    /// Sends a parameter's value at frame `at` of the current block.
    fn send_param(&mut self, index: usize, value: f64, at: usize) {
        let Some(live) = &mut self.live else { return };
        match live.set_param(self.params[index].0, value) {
            Ok(0) => {}
            Ok(code) => self.refused = Some((index, value, code)),
            Err(f) => self.fault(f, at),
        }
    }

    /// Runs the chunk at frame `at` of the current block through the instance, or bypasses it; returns
    /// whether it was bypassed.
    fn run(&mut self, audio: &mut AudioOut<'_>, at: usize) -> bool {
        let Some(live) = &mut self.live else {
            bypass(self.on_fault, audio, &self.layout());
            return true;
        };
        let mark = CpuMark::start(self.mark_age, self.suspect);
        let result = live.process(audio, &mark);
        let elapsed = crate::clock::now().wrapping_sub(mark.start);
        // Over the budget in wall time: the next call is marked exactly, and in real time the plugin's own
        // CPU time decides whether this block counts against it (a preempted thread is not its fault).
        self.suspect = elapsed > self.budget_ticks;
        let over = self.suspect && self.realtime && live.own_time_ns(&mark) > self.budget.as_nanos() as u64;
        let counts = live.take_counts();
        self.health.preempted_calls += counts.preempted_calls;
        self.health.replaced_samples += counts.replaced_samples;
        self.heap_calls += counts.heap_calls;
        self.slow_blocks = if over { self.slow_blocks + 1 } else { 0 };
        let fault = result.err().or((self.slow_blocks >= WATCHDOG_BLOCKS).then_some(Fault::OverBudget));
        if let Some(fault) = fault {
            self.fault(fault, at);
            bypass(self.on_fault, audio, &self.layout());
            return true;
        }
        false
    }
}

/// What a plugin node's `build_replacement` returns: the instance `make` builds (on the control side), or
/// its error prefixed with the plugin's `source` (its id and version, or its path).
pub fn replacement<T: std::any::Any + Send>(
    source: impl FnOnce() -> String,
    make: impl FnOnce() -> Result<T, String>,
) -> Option<Result<Box<dyn std::any::Any + Send>, NodeError>> {
    Some(
        make()
            .map(|live| Box::new(live) as Box<dyn std::any::Any + Send>)
            .map_err(|e| NodeError(format!("{}: {e}", source()))),
    )
}

/// What a bypassed plugin outputs: its first input (already in place; an output wider than it repeats its
/// channels, as a mono edge feeds a wider port), or silence.
pub fn bypass(on_fault: OnFault, audio: &mut AudioOut<'_>, layout: &crate::node::Layout) {
    match on_fault {
        OnFault::Dry => {
            let (dry, out) = (layout.input(0), layout.output_channels().min(audio.channels()));
            for c in dry.min(out)..out {
                if dry == 0 {
                    audio.channel_mut(c).fill(0.0);
                } else {
                    audio.copy_channel(c % dry, c);
                }
            }
        }
        OnFault::Silence => audio.fill_zero(),
    }
}

impl<I: Instance> PluginProcessor<I> {
    /// The port widths the processor was prepared for (an effect's, before it is).
    fn layout(&self) -> crate::node::Layout {
        self.config.map_or(crate::node::Layout::effect(0), |c| c.layout)
    }
}

impl<I: Instance> Processor for PluginProcessor<I> {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        let live = (self.make)(config, &self.params).map_err(|e| NodeError(format!("{}: {e}", self.name)))?;
        self.latency = live.latency();
        self.live = Some(Box::new(live));
        self.ramp_len = ramp_frames(RAMP_MS, config.sample_rate);
        let ns_per_tick = crate::clock::ns_per_tick();
        self.budget_ticks = (self.budget.as_nanos() as f64 / ns_per_tick) as u64;
        let age_ns = (self.budget.as_nanos() as f64 / 8.0).clamp(20e3, 1e6);
        self.mark_age = (age_ns / ns_per_tick) as u64;
        self.realtime = config.realtime;
        self.forgive_frames = (FORGIVE_SECONDS * f64::from(config.sample_rate)) as u64;
        self.config = Some(*config);
        Ok(())
    }

    fn start(&mut self) {
        if self.needs_start {
            self.needs_start = false;
            if let Some(live) = &mut self.live
                && live.start().is_err()
            {
                self.live = None;
            }
        }
    }

    fn process(&mut self, audio: &mut AudioOut<'_>) {
        self.block += 1;
        if self.live.is_none() && self.block >= self.retry_at && self.in_a_row < MAX_FAULTS {
            self.live = self.spare.take();
        }
        let n = audio.frames();
        let mut at = 0;
        let mut bypassed = 0;
        while at < n {
            let mut chunk = n - at;
            if self.ramping {
                // Cut at every step of the ramp; send the moving parameters their ramped values there, and
                // their exact targets when the ramp ends.
                if self.ramp_pos.is_multiple_of(RAMP_STEP) || self.ramp_pos >= self.ramp_len as usize {
                    let done = self.ramp_pos >= self.ramp_len as usize;
                    for i in 0..self.ramps.len() {
                        if self.moving[i] {
                            let v = if done { self.params[i].1 } else { self.ramps[i].value() };
                            self.send_param(i, v, at);
                        }
                    }
                    if done {
                        self.moving.fill(false);
                        self.ramping = false;
                    }
                }
                if self.ramping {
                    chunk = chunk.min(RAMP_STEP - self.ramp_pos % RAMP_STEP);
                }
            }
            if self.run(&mut audio.slice_mut(at, chunk), at) {
                bypassed += chunk;
            }
            if self.live.is_some() && self.in_a_row > 0 {
                self.clean_frames += chunk as u64;
                if self.clean_frames >= self.forgive_frames {
                    self.in_a_row = 0;
                }
            }
            if self.ramping {
                for r in &mut self.ramps {
                    r.advance(chunk);
                }
                self.ramp_pos += chunk;
            }
            at += chunk;
        }
        if bypassed > 0 {
            self.health.bypassed_blocks += 1;
            self.health.bypassed_frames += bypassed as u64;
        }
        self.position += n as u64;
    }

    fn set_param(&mut self, index: usize, value: f64) {
        if index >= self.params.len() {
            return;
        }
        self.params[index].1 = value;
        if self.numeric[index] {
            let len = self.ramp_len;
            for (i, r) in self.ramps.iter_mut().enumerate() {
                if i == index {
                    r.set(value, len);
                } else {
                    r.restart(len);
                }
            }
            self.moving[index] = true;
            self.ramp_pos = 0;
            self.ramping = true;
        } else {
            self.ramps[index].jump(value);
            self.send_param(index, value, 0);
        }
    }

    fn reset(&mut self) {
        for (r, &(_, v)) in self.ramps.iter_mut().zip(&self.params) {
            r.jump(v);
        }
        if self.ramping {
            self.ramping = false;
            for i in 0..self.params.len() {
                if self.moving[i] {
                    self.send_param(i, self.params[i].1, 0);
                }
            }
            self.moving.fill(false);
        }
        if let Some(live) = &mut self.live
            && let Err(f) = live.start()
        {
            self.fault(f, 0);
        }
    }

    fn latency_frames(&self) -> usize {
        self.latency
    }

    fn polls(&self) -> bool {
        true
    }

    fn poll(&mut self, ctx: &mut dyn PollContext) {
        if let Some(live) = &mut self.live
            && let Err(f) = live.check()
        {
            self.fault(f, 0);
        }
        let mut buf = [0u8; MESSAGE_BYTES];
        if let Some(mut dead) = self.dead.take() {
            // What the plugin said before it faulted goes out with the fault.
            dead.drain(ctx);
            ctx.retire(dead);
        }
        if let Some(fault) = self.fault.take() {
            let permanent = if self.in_a_row >= MAX_FAULTS { "; bypassed for good" } else { "" };
            let at = self.fault_frames[self.new_faults.max(1) - 1];
            let rate = self.config.map_or(1.0, |c| f64::from(c.sample_rate));
            let msg = text(
                &mut buf,
                format_args!(
                    "fault {} ({} of {MAX_FAULTS} in a row): {fault} (at {:.3} s){permanent}",
                    self.faults,
                    self.in_a_row,
                    at as f64 / rate
                ),
            );
            ctx.message(MessageKind::Fault, msg);
        }
        for &frame in &self.fault_frames[..self.new_faults] {
            ctx.fault_at(frame);
        }
        self.new_faults = 0;
        if let Some((index, value, code)) = self.refused.take() {
            let key = self.keys.get(index).map_or("?", String::as_str);
            let msg = text(&mut buf, format_args!("the plugin refused {key} = {value} (error {code})"));
            ctx.message(MessageKind::Log(1), msg);
        }
        if self.health.replaced_samples > self.replaced_reported {
            let msg = text(
                &mut buf,
                format_args!("{} non-finite output samples replaced with silence so far", self.health.replaced_samples),
            );
            ctx.message(MessageKind::Log(2), msg);
            self.replaced_reported = self.health.replaced_samples;
        }
        // Reported the first time, then each time the count has doubled: a few lines however long it plays.
        if self.heap_calls > 2 * self.heap_reported {
            let msg = text(
                &mut buf,
                format_args!(
                    "{} heap calls (malloc, free, new, delete) on the audio thread so far, though the plugin claims to be real-time safe",
                    self.heap_calls
                ),
            );
            ctx.message(MessageKind::Log(0), msg);
            self.heap_reported = self.heap_calls;
        }
        if let Some(live) = &mut self.live {
            // Values the plugin set itself become its targets here too, so a later change ramps from them.
            let mut tap = Tap { inner: ctx, params: &mut self.params, ramps: &mut self.ramps, moving: &self.moving };
            live.drain(&mut tap);
        }
        if self.wants_replacement && !self.requested {
            self.requested = ctx.request_replacement();
        }
        self.health.faults = u64::from(self.faults);
        self.health.memory = self.live.as_ref().and_then(|l| l.memory());
        ctx.status(&self.health);
    }

    fn install(&mut self, replacement: Box<dyn std::any::Any + Send>) -> Result<(), Box<dyn std::any::Any + Send>> {
        let live = replacement.downcast::<I>()?;
        if self.in_a_row >= MAX_FAULTS || self.spare.is_some() {
            return Err(live);
        }
        self.wants_replacement = false;
        self.spare = Some(live);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(live) = &mut self.live
            && live.stop().is_err()
        {
            self.live = None;
        }
        self.needs_start = true;
    }

    fn cleanup(&mut self) {
        if let Some(mut live) = self.live.take() {
            live.cleanup();
        }
    }
}

/// The poll context a plugin instance drains into: passes everything on, and takes the values the plugin
/// set itself as the processor's own.
struct Tap<'a> {
    inner: &'a mut dyn PollContext,
    params: &'a mut [(u32, f64)],
    ramps: &'a mut [Ramp],
    moving: &'a [bool],
}

impl PollContext for Tap<'_> {
    fn message(&mut self, kind: MessageKind, text: &[u8]) {
        self.inner.message(kind, text);
    }
    fn retire(&mut self, garbage: Box<dyn std::any::Any + Send>) {
        self.inner.retire(garbage);
    }
    fn request_replacement(&mut self) -> bool {
        self.inner.request_replacement()
    }
    fn status(&mut self, health: &PluginHealth) {
        self.inner.status(health);
    }
    fn fault_at(&mut self, frame: u64) {
        self.inner.fault_at(frame);
    }
    fn status_values(&mut self, values: &[f64]) {
        self.inner.status_values(values);
    }
    fn param_from_plugin(&mut self, index: usize, value: f64) {
        if let Some(p) = self.params.get_mut(index) {
            p.1 = value;
            if !self.moving.get(index).copied().unwrap_or(false) {
                self.ramps[index] = Ramp::new(value);
            }
        }
        self.inner.param_from_plugin(index, value);
    }
}

/// A plugin file's content, pinned by a graph: `sha256: "..."` (64 hexadecimal digits, as `sha256sum` and
/// `fxgraph plugin list` print them) on a `Wasm`, `Native` or `Ladspa` node. The file is hashed before any
/// of its code is loaded or run, and a file that does not match is refused.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Pin(pub [u8; 32]);

impl std::fmt::Debug for Sha256Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::sha256::hex(&self.0))
    }
}

impl TryFrom<String> for Sha256Pin {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("sha256 must be 64 hexadecimal digits, the file's SHA-256 (got {text:?})");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl From<Sha256Pin> for String {
    fn from(pin: Sha256Pin) -> String {
        crate::sha256::hex(&pin.0)
    }
}

/// The SHA-256 of a file, in hexadecimal (what a `sha256` pin holds).
///
/// # Errors
/// If the file cannot be read.
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read(path).map(|bytes| crate::sha256::hex(&crate::sha256::sha256(&bytes)))
}

/// Checks `path` against `pin`, if there is one.
///
/// # Errors
/// A message naming the file and both digests, or why it cannot be read.
pub fn check_pin(pin: Option<&Sha256Pin>, path: &std::path::Path) -> Result<(), String> {
    let Some(pin) = pin else { return Ok(()) };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {} to check its sha256: {e}", path.display()))?;
    pin.check(&crate::sha256::sha256(&bytes), path)
}

impl Sha256Pin {
    /// Checks the digest of the file at `path` (named in the message) against the pin.
    ///
    /// # Errors
    /// A message naming the file and both digests.
    pub fn check(&self, digest: &[u8; 32], path: &std::path::Path) -> Result<(), String> {
        if *digest == self.0 {
            return Ok(());
        }
        Err(format!(
            "{} does not match the graph's pin: its sha256 is {}, the graph pins {self:?}; nothing of it was run",
            path.display(),
            crate::sha256::hex(digest)
        ))
    }
}

/// An optional pin written plainly (`sha256: "..."`, not RON's `Some("...")`).
pub(crate) fn plain_pin<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Sha256Pin>, D::Error> {
    Sha256Pin::deserialize(d).map(Some)
}

/// One audio bus a plugin declares, as [`check_buses`] checks it: name, channels (0: the graph's),
/// optional.
pub(crate) type BusSpec<'a> = (&'a str, u32, bool);

/// Checks the audio buses a plugin declares (ABI 1.1 of either kind): at most [`MAX_PORTS`] a side and
/// at least one output if any are declared; names unique on their side, 1 to 64 characters, without
/// dots, spaces or control characters; at most [`MAX_CHANNELS`] channels; no optional output. `at(output,
/// i)` names a bus in errors.
///
/// [`MAX_PORTS`]: crate::node::MAX_PORTS
/// [`MAX_CHANNELS`]: crate::node::MAX_CHANNELS
pub(crate) fn check_buses(
    inputs: &[BusSpec<'_>],
    outputs: &[BusSpec<'_>],
    at: impl Fn(bool, usize) -> String,
) -> Result<(), String> {
    use crate::node::{MAX_CHANNELS, MAX_PORTS};
    if inputs.len() > MAX_PORTS || outputs.len() > MAX_PORTS {
        return Err(format!("a plugin may declare at most {MAX_PORTS} input and {MAX_PORTS} output buses"));
    }
    if !inputs.is_empty() && outputs.is_empty() {
        return Err("a plugin that declares buses declares at least one output".into());
    }
    for (output, list) in [(false, inputs), (true, outputs)] {
        for (i, &(name, channels, optional)) in list.iter().enumerate() {
            if name.is_empty()
                || name.len() > 64
                || name.contains(|c: char| c == '.' || c.is_whitespace() || c.is_control())
                || list[..i].iter().any(|b| b.0 == name)
            {
                return Err(format!(
                    "{} is named {name:?}: names are unique, 1 to 64 characters, without dots or spaces",
                    at(output, i)
                ));
            }
            if channels as usize > MAX_CHANNELS {
                return Err(format!("{} has {channels} channels (at most {MAX_CHANNELS})", at(output, i)));
            }
            if output && optional {
                return Err(format!("{} is an output and cannot be optional", at(output, i)));
            }
        }
    }
    Ok(())
}
