//! The audio side: one `Send` object, [`AudioProcessor`], that any thread may drive (a device callback, a
//! render loop, a test), and that never touches the `World`.
//!
//! It owns the compiled [`Plan`] (processors, buffers, edges), and talks to the control side through two
//! lock-free single-producer single-consumer queues (`rtrb`):
//!
//! - **in**: parameter events (each may name the frame it takes effect at), new plans to cross-fade to,
//!   replacement plugin instances, meters, bypass, reset and stop;
//! - **out**: retired objects (old plans, faulted plugin instances), which are dropped on the control side;
//!   node messages copied into fixed-size slots; requests for replacement instances; acknowledgements.
//!
//! Per block it allocates nothing, frees nothing, takes no lock, logs nothing, does no I/O and never waits
//! for another thread to wake (the parallel executor's [`Workers`] are handed branches through atomics).
//! A call may pass any number of frames, planar or interleaved: it is cut into blocks of at most
//! `max_block` frames, and at the frames where parameter events are due.

mod ends;
pub mod plan;
pub mod workers;

use crate::alloc::AudioContext;
use crate::clock;
use crate::dsp::denormal::{FloatMode, FlushDenormals};
use crate::monitor::shared::{GraphStats, MeterTail, MeterWriter, NodeStats, Spectrum};
use crate::node::{AudioIn, AudioOut};
use crate::node::{MESSAGE_BYTES, MessageKind, PluginHealth, PollContext};
use plan::{Plan, Slot};
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use workers::Workers;

/// A node's identity on the audio side: stable while the node keeps its processor.
pub type NodeId = u32;

/// Parameter events scheduled for a later frame that the audio side can hold.
pub const PENDING_EVENTS: usize = 1024;
/// Messages to the control side (other than node messages) the audio side can hold when the queue is full.
const BACKLOG: usize = 256;

/// From the control side to the audio side.
pub(crate) enum ToAudio {
    /// Parameter `index` of node `node` takes `value`, at frame `at` of the audio side's clock (or at once).
    Param { node: NodeId, index: u32, value: f64, at: Option<u64> },
    /// A plan to switch to (a transitional one carries its crossfade and the plan that follows it).
    Transition(Box<Plan>),
    /// A fresh instance for a node that asked for one.
    Replacement { node: NodeId, object: Box<dyn Any + Send> },
    /// Start (or stop) metering a node's output.
    Meter { node: NodeId, meter: Option<MeterWriter> },
    /// Clear all node state (a seek).
    Reset,
    /// Turn the monitor's timing and metering on or off; the clock ticks a frame lasts, for the load.
    Monitor { on: bool, ticks_per_frame: f64 },
    /// Hand everything back and play silence.
    Stop,
}

/// A node message in a fixed-size slot.
pub(crate) struct RawMessage {
    pub node: NodeId,
    pub kind: MessageKind,
    pub len: usize,
    pub bytes: [u8; MESSAGE_BYTES],
}

/// From the audio side to the control side. Messages travel inline (no allocation), which makes the type
/// as large as a message slot.
#[allow(clippy::large_enum_variant)]
pub(crate) enum FromAudio {
    /// Something to drop on the control side (an old plan with the processors it no longer uses, a faulted
    /// plugin instance, a replacement that did not fit).
    Retired(Box<dyn Any + Send>),
    RetiredMeter(MeterWriter),
    Message(RawMessage),
    /// A node asks for a fresh instance.
    NeedReplacement(NodeId),
    /// A plugin set one of its parameters itself: (node, parameter index, value).
    PluginParam(NodeId, usize, f64),
    /// The last plan sent is now the one running (its crossfade, if any, is over).
    TransitionDone,
    /// After [`ToAudio::Stop`]: the plan has been handed back.
    Stopped,
}

/// The audio side of an engine. Create it with [`crate::Engine::new`], move it to the thread that drives
/// audio, and call [`process`](Self::process) or [`process_interleaved`](Self::process_interleaved).
pub struct AudioProcessor {
    from_control: rtrb::Consumer<ToAudio>,
    to_control: rtrb::Producer<FromAudio>,
    backlog: Vec<FromAudio>,
    plan: Option<Box<Plan>>,
    in_channels: usize,
    out_channels: usize,
    max_block: usize,
    /// The most frames one run handles: `max_block` times the batch.
    capacity: usize,
    input: Box<[f32]>,
    fade_in: Box<[f32]>,
    fade_out: Box<[f32]>,
    /// Events due at a later frame, latest first.
    pending: Vec<(u64, NodeId, u32, f64)>,
    frame: u64,
    workers: Option<Workers>,
    always_parallel: bool,
    stats: Arc<GraphStats>,
    /// The output meter's samples for a spectrum (the meter is in `stats`).
    output_tail: MeterTail,
    monitor: bool,
    ticks_per_frame: f64,
    dropped: u64,
    /// Replacement instances asked of the control side so far.
    requests: u64,
}

/// A caller's audio buffer by pointer, in one of the layouts the audio side reads and writes: what
/// [`AudioProcessor::process_raw`] takes from bindings to other languages, whose buffers are not Rust
/// slices. The safe calls ([`process`](AudioProcessor::process) and the others) describe their slices with
/// it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawAudio {
    /// Planar `f32`: channel `c` at `ptr + c * stride`.
    Strided {
        /// The first channel's first sample.
        ptr: *mut f32,
        /// Samples from one channel's start to the next's.
        stride: usize,
        /// Channels in the buffer.
        channels: usize,
    },
    /// Planar `f32`: channel `c` at `planes[c]`.
    Planes {
        /// One pointer a channel.
        planes: *const *mut f32,
        /// Channels (pointers in `planes`).
        channels: usize,
    },
    /// Interleaved `f32`: `channels` samples a frame.
    Interleaved {
        /// The first frame's first sample.
        ptr: *mut f32,
        /// Samples a frame.
        channels: usize,
    },
    /// Interleaved `f64`: `channels` samples a frame (Go's `[][2]float64`, for one). The graph runs in
    /// `f32`: input samples are rounded to `f32` (a finite value beyond its range counts as non-finite and
    /// becomes silence) and output samples are `f32` values, exactly.
    InterleavedF64 {
        /// The first frame's first sample.
        ptr: *mut f64,
        /// Samples a frame.
        channels: usize,
    },
}

impl RawAudio {
    /// Channels in the buffer.
    pub fn channels(&self) -> usize {
        match *self {
            RawAudio::Strided { channels, .. }
            | RawAudio::Planes { channels, .. }
            | RawAudio::Interleaved { channels, .. }
            | RawAudio::InterleavedF64 { channels, .. } => channels,
        }
    }
}

pub(crate) struct AudioSetup {
    pub from_control: rtrb::Consumer<ToAudio>,
    pub to_control: rtrb::Producer<FromAudio>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub max_block: usize,
    pub batch: usize,
    pub sample_rate: u32,
    pub workers: Option<Workers>,
    pub always_parallel: bool,
    pub stats: Arc<GraphStats>,
    pub monitor: bool,
    pub loudness: crate::LoudnessMetering,
}

impl AudioProcessor {
    pub(crate) fn new(s: AudioSetup) -> Self {
        let capacity = s.max_block * s.batch.max(1);
        let len = s.in_channels * capacity;
        // Touched once here, so that its pages are not first faulted in on the audio thread.
        let mut backlog = Vec::with_capacity(BACKLOG);
        backlog.resize_with(BACKLOG, || FromAudio::TransitionDone);
        backlog.clear();
        Self {
            from_control: s.from_control,
            to_control: s.to_control,
            backlog,
            plan: None,
            in_channels: s.in_channels,
            out_channels: s.out_channels,
            max_block: s.max_block,
            capacity,
            input: vec![0.0; len].into_boxed_slice(),
            fade_in: vec![0.0; capacity].into_boxed_slice(),
            fade_out: vec![0.0; capacity].into_boxed_slice(),
            pending: Vec::with_capacity(PENDING_EVENTS),
            frame: 0,
            workers: s.workers,
            always_parallel: s.always_parallel,
            stats: s.stats,
            output_tail: MeterTail::with_loudness(s.loudness.meter(s.sample_rate, s.out_channels)),
            monitor: s.monitor,
            ticks_per_frame: if s.monitor { 1e9 / f64::from(s.sample_rate) / clock::ns_per_tick() } else { 0.0 },
            dropped: 0,
            requests: 0,
        }
    }

    /// The channels of the graph's inputs together (in the order the graph declares them).
    pub fn input_channels(&self) -> usize {
        self.in_channels
    }

    /// The channels of the graph's outputs together (in the order the graph declares them).
    pub fn output_channels(&self) -> usize {
        self.out_channels
    }

    /// The largest block nodes are called with (longer calls are cut into blocks of this size).
    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// The most frames one call processes in one go: the largest block times the engine's batch (a longer
    /// call is cut into runs of this many).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes what the control side has sent (the first plan, parameter events) without processing audio,
    /// as every call does before its first block: for a caller that wants to know the plan's
    /// [latency](Self::latency_frames) before the first block.
    pub fn take_messages(&mut self) {
        self.receive();
    }

    /// Frames processed so far: the audio side's clock, against which [`crate::Engine::set_at`] schedules.
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// How many times nodes have asked the control side for a replacement instance (a plugin that
    /// faulted): a thread that drives the audio side offline and updates the engine only now and then
    /// ([`crate::control::render::render`]) updates it as soon as this grows, so a faulted plugin is replaced after
    /// its backoff rather than at the next periodic update.
    pub fn replacement_requests(&self) -> u64 {
        self.requests
    }

    /// Frames by which the output lags the input in the plan now running.
    pub fn latency_frames(&self) -> usize {
        self.plan.as_ref().map_or(0, |p| p.latency)
    }

    /// Clears every node's state (delay lines, envelopes, filter memories) at once, as
    /// [`crate::Engine::reset`] does at the next block; for the thread that drives the audio side, e.g.
    /// after it moved its source to another position. A crossfade in progress is completed first.
    pub fn reset(&mut self) {
        if self.plan.as_ref().is_some_and(|p| p.next.is_some()) {
            self.finish_transition();
        }
        if let Some(p) = &mut self.plan {
            p.reset();
        }
    }

    /// Hands each meter's latest samples for a spectrum to the readers now, rather than after the first
    /// block following a report's request: for a thread that drives the audio side offline and reports
    /// once after its last block ([`crate::control::render::render`] calls it at its end). Meters keep samples only
    /// while someone asks ([`crate::MetricsReader::keep_spectrum`]), and publish only a whole window.
    /// No allocation: 2048 stores per meter.
    pub fn publish_spectra(&mut self) {
        self.stats.output.publish(&self.output_tail);
        let slots = self.plan.iter_mut().flat_map(|p| p.slots.iter());
        for m in slots.filter_map(|s| s.meter.as_ref()) {
            m.meter.publish(&m.tail);
        }
    }

    /// Processes planar audio: `input` has the graph's input channels ([`input_channels`](Self::input_channels))
    /// and `output` its output channels, with any (equal) number of frames. Channels beyond the graph's are
    /// ignored on input and silenced on output; missing input channels are silence.
    pub fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        let frames = input.frames().min(output.frames());
        self.run(input.raw(), output.raw(), frames, None);
    }

    /// [`process`](Self::process), and each of the `side` jobs once, on a worker thread while the caller
    /// runs a stretch of the graph that leaves that worker idle: beside the last serial level (all of a
    /// chain), else beside the last level's branches. Jobs may run at the same time as each other. With
    /// no workers they run after the processing. For offline work that does not touch the audio (reading
    /// the next input and writing the last output, as [`crate::control::render::render`] does), so it costs no time
    /// of its own. The output is the same as [`process`](Self::process)'s, bit for bit.
    ///
    /// The jobs run outside the audio context (they may allocate and do I/O) and with the calling thread's
    /// floating-point mode, not the audio side's flush-to-zero. A wait for them is counted in this call's
    /// time (and so in the DSP load the monitor reports), not in any node's.
    ///
    /// Not for a device callback: the call waits for the jobs, however long they take.
    ///
    /// # Panics
    /// With more than 64 jobs.
    pub fn process_overlapping(
        &mut self,
        input: &AudioIn<'_>,
        output: &mut AudioOut<'_>,
        side: &mut [&mut (dyn FnMut() + Send)],
    ) {
        let frames = input.frames().min(output.frames());
        let side = plan::Side { jobs: side, mode: FloatMode::current() };
        self.run(input.raw(), output.raw(), frames, Some(side));
    }

    /// Processes interleaved audio with `channels` channels per frame in both buffers (usually the
    /// graph's), as a device callback delivers it.
    pub fn process_interleaved(&mut self, input: &[f32], output: &mut [f32], channels: usize) {
        let channels = channels.max(1);
        let frames = (input.len() / channels).min(output.len() / channels);
        let input = RawAudio::Interleaved { ptr: input.as_ptr().cast_mut(), channels };
        self.run(input, RawAudio::Interleaved { ptr: output.as_mut_ptr(), channels }, frames, None);
    }

    /// [`process`](Self::process) in place: `buffer` holds the input and receives the output.
    pub fn process_in_place(&mut self, buffer: &mut AudioOut<'_>) {
        let frames = buffer.frames();
        let both = buffer.raw();
        self.run(both, both, frames, None);
    }

    /// [`process_interleaved`](Self::process_interleaved) in place: `buffer` holds the input and receives
    /// the output.
    pub fn process_interleaved_in_place(&mut self, buffer: &mut [f32], channels: usize) {
        let channels = channels.max(1);
        let frames = buffer.len() / channels;
        let both = RawAudio::Interleaved { ptr: buffer.as_mut_ptr(), channels };
        self.run(both, both, frames, None);
    }

    /// Processes interleaved `f64` audio in place, `channels` samples a frame: the layout of a Go player's
    /// `[][2]float64`, with no copy on the caller's side. The graph runs in `f32` (see
    /// [`RawAudio::InterleavedF64`]), so the output is what [`process_interleaved`](Self::process_interleaved)
    /// gives for the input rounded to `f32`, bit for bit.
    pub fn process_interleaved_f64(&mut self, buffer: &mut [f64], channels: usize) {
        let channels = channels.max(1);
        let frames = buffer.len() / channels;
        let both = RawAudio::InterleavedF64 { ptr: buffer.as_mut_ptr(), channels };
        self.run(both, both, frames, None);
    }

    /// Processes `frames` frames from `input` to `output`, buffers given by pointer in any of
    /// [`RawAudio`]'s layouts, for bindings to other languages. Channels beyond the graph's are ignored on
    /// input and silenced on output; missing input channels are silence. `input` and `output` may be the
    /// same buffer (planar: channel for channel the same pointers): the call then works in place.
    ///
    /// # Safety
    /// For the whole call, `input` must be valid for reads of `frames` frames of its channels and
    /// `output` valid for writes of `frames` frames of its channels (for [`RawAudio::Planes`], the array
    /// of pointers too), and nothing else may access them. The two may not overlap unless they are equal.
    #[allow(unsafe_code)]
    pub unsafe fn process_raw(&mut self, input: RawAudio, output: RawAudio, frames: usize) {
        self.run(input, output, frames, None);
    }

    /// Processes `frames` frames of `input` into `output` (the callers' buffers, valid for that many
    /// frames; the same buffer, or apart).
    fn run(&mut self, input: RawAudio, output: RawAudio, frames: usize, mut side: Option<plan::Side<'_, '_>>) {
        let _audio = AudioContext::enter();
        let _ftz = FlushDenormals::new();
        // In place, a run stays short enough for the level-by-level executor, which takes a run's input
        // before it writes any of its output (the dataflow executor may write a chunk of output that does
        // not depend on the input before it reads that chunk's input).
        // SAFETY: a `Planes` buffer's array holds its pointers (`run`'s callers' contract).
        #[allow(unsafe_code)]
        let in_place = unsafe { ends::shares(input, output) };
        let most = if in_place { self.capacity.min(plan::Flow::chunk(self.max_block, 0)) } else { self.capacity };
        let mut done = 0;
        while done < frames {
            self.receive();
            let mut n = (frames - done).min(most);
            // Events due now are applied; the block ends where the next one is due.
            while let Some(&(at, node, index, value)) = self.pending.last() {
                if at <= self.frame {
                    self.pending.pop();
                    self.apply(node, index, value);
                } else {
                    n = n.min((at - self.frame) as usize);
                    break;
                }
            }
            self.block(input, output, done, n, side.take());
            done += n;
        }
        if let Some(side) = side {
            side.run_here();
        }
        self.flush_backlog();
    }

    /// One block of `n` frames at offset `at` of the call.
    fn block(&mut self, input: RawAudio, output: RawAudio, at: usize, n: usize, side: Option<plan::Side<'_, '_>>) {
        let t0 = if self.monitor { clock::now() } else { 0 };
        let spectrum = if self.monitor { self.stats.spectrum() } else { Spectrum::default() };
        let stride = self.capacity;
        let Some(plan) = self.plan.as_deref_mut() else {
            // SAFETY: the output holds the call's frames (`run`'s contract).
            #[allow(unsafe_code)]
            unsafe {
                ends::write_silence(output, at, n)
            };
            self.frame += n as u64;
            self.stats.add_frames(n as u64);
            if let Some(side) = side {
                side.run_here();
            }
            return;
        };
        // The plan takes the input (non-finite samples replaced by silence) and hands over the output through
        // `ends`, and meters the output.
        let ends = ends::CallEnds {
            input,
            output,
            at,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            stride,
            nonfinite: AtomicU64::new(0),
        };
        let mut ctx = plan::RunContext {
            input: &mut self.input,
            ends: &ends,
            frames: n,
            monitor: self.monitor,
            spectrum,
            output_meter: &self.stats.output,
            output_tail: &mut self.output_tail,
            workers: self.workers.as_mut(),
            always_parallel: self.always_parallel,
            side,
            fade_in: &mut self.fade_in,
            fade_out: &mut self.fade_out,
        };
        plan.run(&mut ctx);
        self.stats.add_nonfinite(ends.nonfinite.into_inner());
        if self.monitor {
            let ticks = clock::now().saturating_sub(t0);
            let blocks = n.div_ceil(self.max_block) as u64;
            self.stats.add_timed(n as u64, blocks, ticks, ticks as f64 > n as f64 * self.ticks_per_frame);
        }
        // Plugins hand over messages, retired instances and status.
        for &pos in &plan.polling {
            let slot = &mut plan.slots[pos];
            let mut outbox = Outbox {
                tx: &mut self.to_control,
                backlog: &mut self.backlog,
                node: slot.id,
                stats: &slot.stats,
                dropped: &mut self.dropped,
                requests: &mut self.requests,
            };
            if let Some(p) = &mut slot.processor {
                p.poll(&mut outbox);
            }
        }
        if plan.crossfade_done() {
            self.finish_transition();
        }
        self.frame += n as u64;
        self.stats.add_frames(n as u64);
        if self.dropped > 0 {
            self.stats.add_dropped(std::mem::take(&mut self.dropped));
        }
    }

    /// Takes everything the control side sent.
    fn receive(&mut self) {
        while let Ok(msg) = self.from_control.pop() {
            match msg {
                ToAudio::Param { node, index, value, at } => match at {
                    Some(at) if at > self.frame => self.schedule(at, node, index, value),
                    _ => self.apply(node, index, value),
                },
                ToAudio::Transition(mut next) => {
                    if self.plan.as_ref().is_some_and(|p| p.next.is_some()) {
                        // A crossfade still running ends now (the control side normally waits for it).
                        self.finish_transition();
                    }
                    if let Some(mut old) = self.plan.take() {
                        next.take_from(&mut old);
                        self.retire(old);
                    }
                    let fading = next.crossfade.is_some();
                    self.plan = Some(next);
                    if !fading {
                        self.send(FromAudio::TransitionDone);
                    }
                }
                ToAudio::Replacement { node, object } => {
                    let rejected = match self.plan.as_deref_mut().and_then(|p| p.slot_mut(node)) {
                        Some(Slot { processor: Some(p), .. }) => p.install(object).err(),
                        _ => Some(object),
                    };
                    if let Some(object) = rejected {
                        self.retire(object);
                    }
                }
                ToAudio::Meter { node, meter } => {
                    let old = match self.plan.as_deref_mut().and_then(|p| p.slot_mut(node)) {
                        Some(slot) => std::mem::replace(&mut slot.meter, meter),
                        None => meter,
                    };
                    if let Some(old) = old {
                        self.send(FromAudio::RetiredMeter(old));
                    }
                }
                ToAudio::Reset => self.reset(),
                ToAudio::Monitor { on, ticks_per_frame } => {
                    self.monitor = on;
                    self.ticks_per_frame = ticks_per_frame;
                }
                ToAudio::Stop => {
                    if let Some(p) = self.plan.take() {
                        self.retire(p);
                    }
                    self.send(FromAudio::Stopped);
                }
            }
        }
    }

    fn schedule(&mut self, at: u64, node: NodeId, index: u32, value: f64) {
        if self.pending.len() == self.pending.capacity() {
            // No room to wait: late rather than lost.
            self.stats.add_late();
            self.apply(node, index, value);
            return;
        }
        // Latest first; among equal frames, the one sent first stays nearer the end.
        let pos = self.pending.partition_point(|e| e.0 > at);
        self.pending.insert(pos, (at, node, index, value));
    }

    fn apply(&mut self, node: NodeId, index: u32, value: f64) {
        if let Some(Slot { processor: Some(p), .. }) = self.plan.as_deref_mut().and_then(|p| p.slot_mut(node)) {
            p.set_param(index as usize, value);
        }
    }

    /// Ends a crossfade: the plan that follows takes the processors it keeps, and the transitional plan
    /// (with the nodes that faded out) goes back to the control side.
    fn finish_transition(&mut self) {
        let Some(mut union) = self.plan.take() else { return };
        match union.next.take() {
            Some(mut next) => {
                next.take_from(&mut union);
                self.retire(union);
                self.plan = Some(next);
            }
            None => {
                union.crossfade = None;
                self.plan = Some(union);
            }
        }
        self.send(FromAudio::TransitionDone);
    }

    fn send(&mut self, msg: FromAudio) {
        if !self.backlog.is_empty() {
            // Keep the order: behind what already waits.
            push_backlog(&mut self.backlog, msg, &mut self.dropped);
            return;
        }
        if let Err(rtrb::PushError::Full(msg)) = self.to_control.push(msg) {
            push_backlog(&mut self.backlog, msg, &mut self.dropped);
        }
    }

    fn retire(&mut self, obj: Box<dyn Any + Send>) {
        self.send(FromAudio::Retired(obj));
    }

    /// Sends what waited in the backlog, in order.
    fn flush_backlog(&mut self) {
        let mut sent = 0;
        for msg in self.backlog.iter_mut() {
            if self.to_control.is_full() {
                break;
            }
            let msg = std::mem::replace(msg, FromAudio::TransitionDone);
            if self.to_control.push(msg).is_err() {
                break;
            }
            sent += 1;
        }
        self.backlog.drain(..sent);
    }
}

/// Keeps a message that could not be queued. Node messages are dropped (and counted) instead; a retired
/// object with no room left anywhere is leaked rather than freed on the audio thread (the queue sizes make
/// that unreachable unless the control side stops draining).
fn push_backlog(backlog: &mut Vec<FromAudio>, msg: FromAudio, dropped: &mut u64) {
    match msg {
        FromAudio::Message(_) => *dropped += 1,
        msg if backlog.len() < backlog.capacity() => backlog.push(msg),
        msg => std::mem::forget(msg),
    }
}

/// The [`PollContext`] a node gets after a block.
struct Outbox<'a> {
    tx: &'a mut rtrb::Producer<FromAudio>,
    backlog: &'a mut Vec<FromAudio>,
    node: NodeId,
    stats: &'a NodeStats,
    dropped: &'a mut u64,
    requests: &'a mut u64,
}

impl PollContext for Outbox<'_> {
    fn message(&mut self, kind: MessageKind, text: &[u8]) {
        let len = text.len().min(MESSAGE_BYTES);
        let mut bytes = [0u8; MESSAGE_BYTES];
        bytes[..len].copy_from_slice(&text[..len]);
        if self.tx.push(FromAudio::Message(RawMessage { node: self.node, kind, len, bytes })).is_err() {
            *self.dropped += 1;
        }
    }

    fn retire(&mut self, garbage: Box<dyn Any + Send>) {
        let msg = FromAudio::Retired(garbage);
        if !self.backlog.is_empty() {
            push_backlog(self.backlog, msg, self.dropped);
        } else if let Err(rtrb::PushError::Full(msg)) = self.tx.push(msg) {
            push_backlog(self.backlog, msg, self.dropped);
        }
    }

    fn request_replacement(&mut self) -> bool {
        let sent = self.tx.push(FromAudio::NeedReplacement(self.node)).is_ok();
        *self.requests += u64::from(sent);
        sent
    }

    fn status(&mut self, health: &PluginHealth) {
        self.stats.set_status(health);
    }

    fn fault_at(&mut self, frame: u64) {
        self.stats.record_fault(frame);
    }

    fn status_values(&mut self, values: &[f64]) {
        self.stats.set_status_values(values);
    }

    fn param_from_plugin(&mut self, index: usize, value: f64) {
        if self.tx.push(FromAudio::PluginParam(self.node, index, value)).is_err() {
            *self.dropped += 1;
        }
    }
}
