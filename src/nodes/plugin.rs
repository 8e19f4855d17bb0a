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
//! - an instance over its time budget for [`WATCHDOG_BLOCKS`] blocks in a row is faulted.

use crate::buffer::AudioOut;
use crate::dsp::smooth::{Ramp, ramp_frames};
use crate::node::{MessageKind, NodeError, PollContext, ProcessConfig, Processor, RAMP_MS, RAMP_STEP};
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
pub const MESSAGE_BYTES: usize = crate::audio::MESSAGE_BYTES;

/// What a faulted plugin outputs for the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum OnFault {
    /// Its input, unprocessed.
    #[default]
    Dry,
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
    /// Processes `audio` in place. On `Err`, `audio` must still hold the input.
    fn process(&mut self, audio: &mut AudioOut<'_>) -> Result<(), Fault>;
    /// Clears state (after `initialize`, `stop` or for a seek).
    fn start(&mut self) -> Result<(), Fault>;
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
}

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
        }
    }

    /// Faults the instance: counted, reported at the next poll, handed back, replaced after a backoff.
    fn fault(&mut self, fault: Fault) {
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

    fn send_param(&mut self, index: usize, value: f64) {
        let Some(live) = &mut self.live else { return };
        match live.set_param(self.params[index].0, value) {
            Ok(0) => {}
            Ok(code) => self.refused = Some((index, value, code)),
            Err(f) => self.fault(f),
        }
    }

    /// Runs one chunk through the instance, or bypasses it.
    fn run(&mut self, audio: &mut AudioOut<'_>) {
        let Some(live) = &mut self.live else {
            bypass(self.on_fault, audio);
            return;
        };
        let started = crate::clock::now();
        let result = live.process(audio);
        let elapsed = crate::clock::now().wrapping_sub(started);
        self.slow_blocks = if elapsed > self.budget_ticks { self.slow_blocks + 1 } else { 0 };
        let fault = result.err().or((self.slow_blocks >= WATCHDOG_BLOCKS).then_some(Fault::OverBudget));
        if let Some(fault) = fault {
            self.fault(fault);
            bypass(self.on_fault, audio);
        }
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

/// What a bypassed plugin outputs: its input (already in place), or silence.
pub fn bypass(on_fault: OnFault, audio: &mut AudioOut<'_>) {
    match on_fault {
        OnFault::Dry => {}
        OnFault::Silence => audio.fill_zero(),
    }
}

impl<I: Instance> Processor for PluginProcessor<I> {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        let live = (self.make)(config, &self.params).map_err(|e| NodeError(format!("{}: {e}", self.name)))?;
        self.latency = live.latency();
        self.live = Some(Box::new(live));
        self.ramp_len = ramp_frames(RAMP_MS, config.sample_rate);
        self.budget_ticks = (self.budget.as_nanos() as f64 / crate::clock::ns_per_tick()) as u64;
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
                            self.send_param(i, v);
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
            self.run(&mut audio.slice_mut(at, chunk));
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
            self.send_param(index, value);
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
                    self.send_param(i, self.params[i].1);
                }
            }
            self.moving.fill(false);
        }
        if let Some(live) = &mut self.live
            && let Err(f) = live.start()
        {
            self.fault(f);
        }
    }

    fn latency_frames(&self) -> usize {
        self.latency
    }

    fn polls(&self) -> bool {
        true
    }

    fn poll(&mut self, ctx: &mut dyn PollContext) {
        let mut buf = [0u8; MESSAGE_BYTES];
        if let Some(mut dead) = self.dead.take() {
            // What the plugin said before it faulted goes out with the fault.
            dead.drain(ctx);
            ctx.retire(dead);
        }
        if let Some(fault) = self.fault.take() {
            let permanent = if self.in_a_row >= MAX_FAULTS { "; bypassed for good" } else { "" };
            let msg = text(
                &mut buf,
                format_args!("fault {} ({} of {MAX_FAULTS} in a row): {fault}{permanent}", self.faults, self.in_a_row),
            );
            ctx.message(MessageKind::Fault, msg);
        }
        if let Some((index, value, code)) = self.refused.take() {
            let key = self.keys.get(index).map_or("?", String::as_str);
            let msg = text(&mut buf, format_args!("the plugin refused {key} = {value} (error {code})"));
            ctx.message(MessageKind::Log(1), msg);
        }
        if let Some(live) = &mut self.live
            && let Err(f) = live.check()
        {
            self.fault(f);
            if let Some(mut dead) = self.dead.take() {
                dead.drain(ctx);
                ctx.retire(dead);
            }
            if let Some(fault) = self.fault.take() {
                let msg = text(
                    &mut buf,
                    format_args!("fault {} ({} of {MAX_FAULTS} in a row): {fault}", self.faults, self.in_a_row),
                );
                ctx.message(MessageKind::Fault, msg);
            }
        }
        if let Some(live) = &mut self.live {
            live.drain(ctx);
        }
        if self.wants_replacement && !self.requested {
            self.requested = ctx.request_replacement();
        }
        let memory = self.live.as_ref().and_then(|l| l.memory());
        ctx.status(u64::from(self.faults), memory);
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
