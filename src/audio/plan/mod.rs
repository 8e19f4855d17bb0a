//! A compiled graph on the audio side: processors in execution order, one buffer per branch, the edges that
//! fill each branch's buffer, and the two executors that run it.
//!
//! A **branch** is a chain of nodes in which each node's only input is the previous node's output and
//! nothing else reads that output, so the whole chain works in place in one buffer. Its first node's input
//! is prepared in the buffer first: copied from the graph input or from one earlier branch, or mixed from
//! several (each input delayed as latency compensation requires, and faded in or out during a graph edit).
//! Branches are grouped into **levels**: a branch only reads branches of earlier levels, so:
//!
//! - the **serial** executor (the reference) runs the branches in order;
//! - the **parallel** executor runs the branches of a level concurrently on [`Workers`], each branch's nodes
//!   in order. Every branch writes only its own buffer and state;
//! - the **dataflow** executor, for offline runs of several blocks, cuts the run into chunks of whole
//!   blocks and lets every thread take whichever (branch, chunk) has its inputs ready, so a mix after
//!   parallel branches runs beside them rather than after them (see [`Flow`]).
//!
//! All run the same per-branch function with the same inputs, summed in the same order, and call every
//! node with the same blocks, so their output is bit-identical by construction (and tested). Nothing here
//! allocates per block.
#![allow(unsafe_code)] // Branches (and parts of their buffers) are handed to workers by pointer; see the SAFETY notes.

mod adaptive;
mod flow;
mod kernels;
mod levels;

use adaptive::Adaptive;
pub use flow::Flow;
use kernels::{run_input, run_output, run_range, run_task};
use levels::{run_levels, run_with_side};

use super::NodeId;
use super::workers::Workers;
use crate::clock;
use crate::dsp::denormal::FloatMode;
use crate::monitor::shared::{MeterTail, MeterWriter, NodeStats, SharedMeter, Spectrum};
use crate::node::Processor;
use crate::node::{AudioIn, AudioOut};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

/// Where an edge's signal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// The graph's input.
    Input,
    /// The output of a branch (its buffer after its last node).
    Branch(usize),
}

/// How an edge contributes during a graph edit (see [`crate::control`]): at full level, or faded in or out
/// with the equal-power crossfade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fade {
    Keep,
    In,
    Out,
}

/// Which channels an edge carries: `width` channels from channel `from_ch` of its source into channels
/// `to_ch..to_ch + width` of its destination. A `mono` source's one channel goes to each of them. The
/// `first` edge into those channels writes them; later ones add, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wiring {
    pub from_ch: usize,
    pub to_ch: usize,
    pub width: usize,
    pub mono: bool,
    pub first: bool,
}

/// One input of a branch (or of the graph output), delayed by `delay` frames to line up with its siblings.
pub struct Edge {
    pub from: Src,
    pub wiring: Wiring,
    pub delay: usize,
    pub fade: Fade,
    /// `delay` frames of each destination channel.
    line: Box<[f32]>,
    pos: usize,
}

impl Edge {
    pub fn new(from: Src, wiring: Wiring, delay: usize, fade: Fade) -> Self {
        Self { from, wiring, delay, fade, line: vec![0.0; delay * wiring.width].into_boxed_slice(), pos: 0 }
    }

    /// Takes over another edge's delay line (an edge that survives a graph edit keeps its contents).
    pub(crate) fn take_line(&mut self, other: &mut Edge) {
        if self.line.len() == other.line.len() {
            std::mem::swap(&mut self.line, &mut other.line);
            self.pos = other.pos;
        }
    }

    fn clear(&mut self) {
        self.line.fill(0.0);
        self.pos = 0;
    }
}

/// A node on the audio side.
pub struct Slot {
    pub id: NodeId,
    pub processor: Option<Box<dyn Processor>>,
    pub stats: Arc<NodeStats>,
    pub meter: Option<MeterWriter>,
    /// Channels of the block the node is called with (room for its inputs and outputs).
    pub channels: usize,
    /// Channels of its outputs together (what its meter reads).
    pub out_channels: usize,
}

/// A chain of nodes working in place in one buffer.
pub struct Branch {
    pub nodes: Range<usize>,
    pub inputs: Vec<Edge>,
    /// Channels of the first node's inputs that no edge feeds: zeroed before it runs.
    pub zero: Vec<Range<usize>>,
    pub buf: Box<[f32]>,
    /// The graph input is written straight into `buf` (this branch is its only reader, undelayed).
    pub takes_input: bool,
}

/// Branches that may run concurrently.
pub struct Level {
    pub branches: Range<usize>,
    choice: Adaptive,
}

impl Level {
    pub fn new(branches: Range<usize>) -> Self {
        Self { branches, choice: Adaptive::every(256) }
    }
}

/// A crossfade in progress: `pos` frames done of `delay` at the old plan's level, then `len` of fading.
///
/// The delay is the new plan's latency: a path of new nodes gives silence until its lookahead delay lines
/// have filled, and would start with a step if it were already fading in meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Crossfade {
    pub len: usize,
    pub pos: usize,
    pub delay: usize,
}

/// Where the graph's output comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFrom {
    /// A branch's buffer, as it is.
    Branch(usize),
    /// The mix of `Plan::output` in `Plan::output_buf`.
    Mix,
}

/// Which edge, for moving delay lines from one plan to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeAt {
    Branch(usize, usize),
    Output(usize),
}

/// A compiled graph with its processors and buffers.
pub struct Plan {
    pub slots: Vec<Slot>,
    pub branches: Vec<Branch>,
    pub levels: Vec<Level>,
    pub output: Vec<Edge>,
    pub output_buf: Box<[f32]>,
    /// Channels of the graph's outputs that no edge feeds (silent).
    pub output_zero: Vec<Range<usize>>,
    pub output_from: OutputFrom,
    /// Execution position of each node id (`u32::MAX`: not in this plan).
    pub pos_of: Box<[u32]>,
    /// Positions of the nodes whose processors want [`Processor::poll`].
    pub polling: Vec<usize>,
    /// Frames from the graph input to its output.
    pub latency: usize,
    /// Set on a transitional plan: the crossfade, and the plan that follows it.
    pub crossfade: Option<Crossfade>,
    pub next: Option<Box<Plan>>,
    /// Processors to take from the previous plan when this one starts: (its position, ours).
    pub moves_in: Vec<(usize, usize)>,
    /// Delay lines to take from the previous plan's edges.
    pub edge_moves_in: Vec<(EdgeAt, EdgeAt)>,
    /// Channels of the graph's inputs together, and of its outputs.
    pub in_channels: usize,
    pub out_channels: usize,
    /// Samples between channels in every buffer: the most frames one run handles (`max_block` times the
    /// batch).
    pub stride: usize,
    /// The most frames a node is given at once.
    pub max_block: usize,
    /// The dataflow executor's bookkeeping, for runs of more than one chunk, and the buffer addresses
    /// every executor reaches the buffers through.
    pub flow: Flow,
}

impl Plan {
    /// The node at `id`, if it is in this plan.
    pub fn slot_mut(&mut self, id: NodeId) -> Option<&mut Slot> {
        let pos = *self.pos_of.get(id as usize)?;
        self.slots.get_mut(pos as usize)
    }

    /// Takes the kept processors and delay lines from `prev` (which then holds only what this plan drops).
    pub fn take_from(&mut self, prev: &mut Plan) {
        for &(from, to) in &self.moves_in {
            if let (Some(src), Some(dst)) = (prev.slots.get_mut(from), self.slots.get_mut(to))
                && dst.processor.is_none()
            {
                dst.processor = src.processor.take();
            }
        }
        for i in 0..self.edge_moves_in.len() {
            let (from, to) = self.edge_moves_in[i];
            let (Some(src), Some(dst)) = (prev.edge_mut(from), self.edge_mut(to)) else { continue };
            dst.take_line(src);
        }
    }

    fn edge_mut(&mut self, at: EdgeAt) -> Option<&mut Edge> {
        match at {
            EdgeAt::Branch(b, k) => self.branches.get_mut(b)?.inputs.get_mut(k),
            EdgeAt::Output(k) => self.output.get_mut(k),
        }
    }

    /// Clears every node's state and every delay line.
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            if let Some(p) = &mut slot.processor {
                p.reset();
            }
        }
        for b in &mut self.branches {
            for e in &mut b.inputs {
                e.clear();
            }
        }
        for e in &mut self.output {
            e.clear();
        }
    }

    /// Runs `ctx.frames` frames (at most [`stride`](Self::stride)): the graph input through `ctx.ends`, the
    /// branches, the output mix, the output's meter, and the output through `ctx.ends` again.
    ///
    /// With workers, a run of more than one [chunk](Flow::chunk) (an offline batch) goes to the **dataflow**
    /// executor: every thread takes the next (branch, chunk) whose inputs are ready, so a branch that reads
    /// others (a mix after parallel bands) works on chunk `j` while they work on chunk `j + 1`, and no thread
    /// waits at a level's end. Copying the input in and the output out are two more tasks of that kind, so
    /// they too run beside the branches. A shorter run (a device callback's block) runs level by level,
    /// between the input and the output.
    pub(crate) fn run(&mut self, ctx: &mut RunContext<'_, '_>) {
        let frames = ctx.frames;
        assert!(frames <= self.stride, "a run of {frames} frames in buffers of {}", self.stride);
        assert!(ctx.input.len() >= self.in_channels * self.stride, "the input buffer holds a run");
        // Crossfade gains for this block.
        let fading = self.crossfade.is_some();
        if let Some(x) = &self.crossfade {
            let quarter = std::f64::consts::FRAC_PI_2;
            for i in 0..frames {
                let t = ((x.pos + i + 1).saturating_sub(x.delay) as f64 / x.len as f64).min(1.0);
                let (s, c) = (t * quarter).sin_cos();
                ctx.fade_in[i] = s as f32;
                ctx.fade_out[i] = c as f32;
            }
        }
        // The buffers' addresses, taken while this thread has the plan to itself: the executors reach a
        // buffer only through these, a part at a time, never borrowing a whole buffer that another thread
        // reads or writes another part of.
        for (ptr, b) in self.flow.bufs.iter_mut().zip(&mut self.branches) {
            *ptr = BufPtr(b.buf.as_mut_ptr());
        }
        let input = ctx.input.as_mut_ptr();
        let output_buf = self.output_buf.as_mut_ptr();
        let io = Io {
            input,
            fade_in: ctx.fade_in.as_ptr(),
            fade_out: ctx.fade_out.as_ptr(),
            frames,
            out_channels: self.out_channels,
            stride: self.stride,
            max_block: self.max_block,
            monitor: ctx.monitor,
            spectrum: ctx.spectrum,
            fading,
        };
        let parts = Parts {
            branches: self.branches.as_mut_ptr(),
            branch_count: self.branches.len(),
            slots: self.slots.as_mut_ptr(),
            bufs: self.flow.bufs.as_ptr(),
            io,
            // The graph input goes straight into the buffer of a branch that is its only reader.
            input_to: match self.branches.iter().position(|b| b.takes_input) {
                Some(b) => self.flow.bufs[b].0,
                None => input,
            },
            output: self.output.as_mut_ptr(),
            outputs: self.output.len(),
            output_buf,
            output_zero: &self.output_zero,
            output_from: match self.output_from {
                OutputFrom::Branch(b) => self.flow.bufs[b].0,
                OutputFrom::Mix => output_buf,
            },
            mix_output: self.output_from == OutputFrom::Mix,
            output_meter: ctx.monitor.then_some((ctx.output_meter, std::ptr::from_mut(ctx.output_tail))),
            ends: ctx.ends,
        };
        let side = ctx.side.take().map(|side| SideJobs::new(side.jobs, side.mode));
        let chunk = Flow::chunk(self.max_block, frames);
        match ctx.workers.as_deref_mut() {
            Some(workers) if self.branches.len() > 1 && frames > chunk => {
                self.flow.run(workers, &parts, side.as_ref(), chunk, ctx.always_parallel);
            }
            workers => {
                // SAFETY: this thread alone runs the plan here, each end once, in order.
                unsafe { run_input(&parts, 0, frames) };
                run_levels(&mut self.levels, workers, &parts, side.as_ref(), ctx.always_parallel);
                // SAFETY: as above.
                unsafe { run_output(&parts, 0, frames) };
            }
        }
        // Jobs no worker took (no workers, or no levels) run now.
        if let Some(side) = &side {
            for job in 0..side.len() {
                // SAFETY: no other thread has them now.
                unsafe { side.run(job) }
            }
        }
        if let Some(x) = &mut self.crossfade {
            x.pos = (x.pos + frames).min(x.delay + x.len);
        }
    }

    /// Whether a crossfade has run its course.
    pub fn crossfade_done(&self) -> bool {
        self.crossfade.is_some_and(|x| x.pos >= x.delay + x.len)
    }
}

/// What a block needs besides the plan.
pub(crate) struct RunContext<'a, 's> {
    /// The graph input's buffer for the branches that read it (unless one branch alone takes it in place):
    /// the plan's channels and stride.
    pub input: &'a mut [f32],
    /// Where the input comes from and the output goes.
    pub ends: &'a dyn Ends,
    pub frames: usize,
    pub monitor: bool,
    /// What meters do with samples for a spectrum this block.
    pub spectrum: Spectrum,
    /// The graph output's meter, fed while `monitor` is on, and its tail.
    pub output_meter: &'a SharedMeter,
    pub output_tail: &'a mut MeterTail,
    pub workers: Option<&'a mut Workers>,
    pub always_parallel: bool,
    /// Jobs to run once each beside the processing (see [`crate::AudioProcessor::process_overlapping`]).
    pub side: Option<Side<'a, 's>>,
    pub fade_in: &'a mut [f32],
    pub fade_out: &'a mut [f32],
}

/// The two ends of a run, supplied by its caller: where the graph input comes from and where the output
/// goes. Each function is called over consecutive ranges of the run's frames, from frame 0 and in order, one
/// call at a time; calls may come from different threads, each call's writes visible to the next.
pub(crate) trait Ends: Sync {
    /// Writes frames `at..at + n` of the graph input to `dst`: planar, the plan's channels and stride.
    ///
    /// # Safety
    /// Frames `at..at + n` of each channel of `dst` are the caller's to write, and nothing else accesses
    /// them meanwhile.
    unsafe fn input(&self, dst: *mut f32, at: usize, n: usize);

    /// Takes frames `at..at + n` of the graph output from `src`: planar, the plan's channels and stride.
    ///
    /// # Safety
    /// Frames `at..at + n` of each channel of `src` are final and not written meanwhile.
    unsafe fn output(&self, src: *const f32, at: usize, n: usize);
}

/// Side jobs for one block, and the floating-point mode of the thread that gave them.
pub struct Side<'a, 's> {
    pub jobs: &'a mut [&'s mut (dyn FnMut() + Send + 's)],
    pub mode: FloatMode,
}

impl Side<'_, '_> {
    /// Runs every job on the calling thread, outside the audio context and in the giver's mode.
    pub fn run_here(self) {
        let _mode = self.mode.enter();
        let _other = crate::alloc::AudioContext::leave();
        for job in self.jobs {
            job();
        }
    }
}

/// Side jobs shared with the workers for one level: whichever thread claims a job's task runs it.
struct SideJobs<'a, 's> {
    jobs: std::cell::UnsafeCell<&'a mut [&'s mut (dyn FnMut() + Send + 's)]>,
    len: usize,
    /// Bit `i`: job `i` has run.
    ran: std::sync::atomic::AtomicU64,
    mode: FloatMode,
}

// SAFETY: the jobs are `Send`, and each is called by one thread at most, once (see `run`).
unsafe impl Sync for SideJobs<'_, '_> {}

impl<'a, 's> SideJobs<'a, 's> {
    fn new(jobs: &'a mut [&'s mut (dyn FnMut() + Send + 's)], mode: FloatMode) -> Self {
        assert!(jobs.len() <= 64, "at most 64 side jobs");
        Self { len: jobs.len(), jobs: std::cell::UnsafeCell::new(jobs), ran: 0.into(), mode }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Runs job `i` unless it has run, outside the audio context and in the giver's floating-point mode.
    ///
    /// # Safety
    /// No other thread may run job `i` meanwhile.
    unsafe fn run(&self, i: usize) {
        let bit = 1u64 << i;
        if self.ran.fetch_or(bit, std::sync::atomic::Ordering::Relaxed) & bit == 0 {
            let _mode = self.mode.enter();
            let _other = crate::alloc::AudioContext::leave();
            // SAFETY: by the contract, this thread alone touches job `i`; jobs are distinct objects, so
            // the pointer to the one element is all this thread takes of the slice.
            let job: *mut &'s mut (dyn FnMut() + Send + 's) = unsafe { (*self.jobs.get()).as_mut_ptr().add(i) };
            // SAFETY: as above.
            unsafe { (*job)() }
        }
    }
}

/// The block's shared facts, as the branch function sees them.
#[derive(Clone, Copy)]
struct Io {
    input: *mut f32,
    fade_in: *const f32,
    fade_out: *const f32,
    frames: usize,
    out_channels: usize,
    stride: usize,
    max_block: usize,
    monitor: bool,
    spectrum: Spectrum,
    fading: bool,
}

/// Pointers into the plan for the branch function and the run's ends.
struct Parts<'e> {
    branches: *mut Branch,
    branch_count: usize,
    slots: *mut Slot,
    /// The address of each branch's buffer.
    bufs: *const BufPtr,
    io: Io,
    /// Where the graph input is written: the input buffer, or the buffer of the one branch that takes it.
    input_to: *mut f32,
    /// The output's edges, mixed into `output_buf` when `mix_output`.
    output: *mut Edge,
    outputs: usize,
    output_buf: *mut f32,
    output_zero: &'e [Range<usize>],
    mix_output: bool,
    /// The buffer the graph output is in after the output mix.
    output_from: *const f32,
    output_meter: Option<(&'e SharedMeter, *mut MeterTail)>,
    ends: &'e dyn Ends,
}

// SAFETY: `Parts` is shared with worker threads only for the duration of one `Workers::run`, during which
// each part of a branch (its inputs and nodes, and each range of frames of its buffer) and each end (the
// input's buffer, the output's edges and buffer) is written by one thread at a time and read by others only
// once it is final (see `run_range`, `run_input` and `run_output`).
unsafe impl Sync for Parts<'_> {}

impl Parts<'_> {
    /// The buffer an edge reads: the graph input's, or a branch's.
    fn source(&self, src: Src) -> *const f32 {
        match src {
            Src::Input => self.io.input,
            // SAFETY: `bufs` holds one address per branch, and edges name branches of the plan.
            Src::Branch(b) => unsafe { (*self.bufs.add(b)).0 },
        }
    }
}

/// The address of a branch's buffer.
#[derive(Clone, Copy)]
pub struct BufPtr(*mut f32);

// SAFETY: only an address; the executors that use it say why each access is exclusive.
unsafe impl Send for BufPtr {}
// SAFETY: as above.
unsafe impl Sync for BufPtr {}

#[cfg(test)]
mod tests {
    use super::Adaptive;

    /// Runs `runs` choices where a serial run takes `serial_ns` and a parallel one `parallel_ns` (each a
    /// function of the run's index); returns the indices of the timed (probe) runs and the choices made.
    fn drive(
        a: &mut Adaptive,
        runs: u64,
        serial_ns: impl Fn(u64) -> f64,
        parallel_ns: impl Fn(u64) -> f64,
    ) -> (Vec<u64>, Vec<bool>) {
        let (mut probes, mut chosen) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let (parallel, timed) = a.choose();
            if timed {
                probes.push(i);
                a.record(parallel, if parallel { parallel_ns(i) } else { serial_ns(i) });
            } else {
                chosen.push(parallel);
            }
        }
        (probes, chosen)
    }

    /// The first run of each probing period (probes come in runs of `PROBES`).
    fn period_starts(probes: &[u64]) -> Vec<u64> {
        probes.iter().copied().filter(|i| !probes.contains(&i.wrapping_sub(1))).collect()
    }

    #[test]
    fn a_serial_choice_that_wins_outright_is_probed_ever_more_rarely_a_close_or_parallel_one_at_the_base_period() {
        let mut serial = Adaptive::every(100);
        let (probes, chosen) = drive(&mut serial, 100 * 40, |_| 1.0, |_| 3.0);
        assert!(chosen.iter().all(|&p| !p));
        // 0, then 100 (the first confirmation doubles the period), 300, 700, 1500, then every 1600.
        assert_eq!(period_starts(&probes), [0, 100, 300, 700, 1500, 3100]);
        assert_eq!(probes.len() as u64, 6 * Adaptive::PROBES);

        // Parallel 10% faster: not enough to choose it, too close to stop checking at the base period.
        let mut close = Adaptive::every(100);
        let (probes, chosen) = drive(&mut close, 1000, |_| 1.0, |_| 0.9);
        assert!(chosen.iter().all(|&p| !p));
        assert_eq!(period_starts(&probes), (0..10).map(|k| 100 * k).collect::<Vec<_>>());

        let mut parallel = Adaptive::every(100);
        let (probes, chosen) = drive(&mut parallel, 1000, |_| 3.0, |_| 1.0);
        assert!(chosen.iter().all(|&p| p));
        assert_eq!(period_starts(&probes), (0..10).map(|k| 100 * k).collect::<Vec<_>>());
    }

    #[test]
    fn a_change_of_winner_returns_to_the_base_period() {
        let mut a = Adaptive::every(100);
        // Serial wins until run 1500, parallel after: the probes at 1500 see it and choose parallel.
        let (probes, chosen) =
            drive(&mut a, 2000, |i| if i < 1500 { 1.0 } else { 3.0 }, |i| if i < 1500 { 3.0 } else { 1.0 });
        assert_eq!(period_starts(&probes), [0, 100, 300, 700, 1500, 1600, 1700, 1800, 1900]);
        assert!(!chosen[0] && *chosen.last().unwrap());
        // And back: a parallel choice that stops paying is dropped at the next base period.
        let (probes, chosen) = drive(&mut a, 200, |_| 1.0, |_| 3.0);
        assert_eq!(period_starts(&probes), [0, 100]);
        assert!(!chosen.last().unwrap());
    }
}
