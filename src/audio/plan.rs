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

use super::NodeId;
use super::workers::Workers;
use crate::clock;
use crate::dsp::denormal::FloatMode;
use crate::monitor::shared::{MeterWriter, NodeStats, SharedMeter, Spectrum, SpectrumTail};
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

/// One input of a branch (or of the graph output), delayed by `delay` frames to line up with its siblings.
pub struct Edge {
    pub from: Src,
    pub delay: usize,
    pub fade: Fade,
    line: Box<[f32]>,
    pos: usize,
}

impl Edge {
    pub fn new(from: Src, delay: usize, fade: Fade, channels: usize) -> Self {
        Self { from, delay, fade, line: vec![0.0; delay * channels].into_boxed_slice(), pos: 0 }
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
}

/// A chain of nodes working in place in one buffer.
pub struct Branch {
    pub nodes: Range<usize>,
    pub inputs: Vec<Edge>,
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

/// A crossfade in progress: `pos` of `len` frames done.
#[derive(Debug, Clone, Copy)]
pub struct Crossfade {
    pub len: usize,
    pub pos: usize,
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
    pub channels: usize,
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
        assert!(ctx.input.len() >= self.channels * self.stride, "the input buffer holds a run");
        // Crossfade gains for this block.
        let fading = self.crossfade.is_some();
        if let Some(x) = &self.crossfade {
            let quarter = std::f64::consts::FRAC_PI_2;
            for i in 0..frames {
                let t = ((x.pos + i + 1) as f64 / x.len as f64).min(1.0);
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
            channels: self.channels,
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
            x.pos = (x.pos + frames).min(x.len);
        }
    }

    /// Whether a crossfade has run its course.
    pub fn crossfade_done(&self) -> bool {
        self.crossfade.is_some_and(|x| x.pos >= x.len)
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
    pub output_tail: &'a mut SpectrumTail,
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
    channels: usize,
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
    mix_output: bool,
    /// The buffer the graph output is in after the output mix.
    output_from: *const f32,
    output_meter: Option<(&'e SharedMeter, *mut SpectrumTail)>,
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
unsafe impl Sync for BufPtr {}

/// Runs `work(0..own)` and the side jobs as the tasks of one job on `workers`. The caller claims tasks
/// from the front, so it starts on the work at once; workers claim from the back, so they take the side
/// jobs first.
fn run_with_side(workers: &mut Workers, own: usize, side: Option<&SideJobs<'_, '_>>, work: impl Fn(usize) + Sync) {
    let task = |i: usize| match (i.checked_sub(own), side) {
        // SAFETY: task `own + job` is claimed once, so one thread runs the job.
        (Some(job), Some(side)) => unsafe { side.run(job) },
        (Some(_), None) => {}
        (None, _) => work(i),
    };
    workers.run(own + side.map_or(0, SideJobs::len), &task);
}

/// The level-by-level executor: the branches of each level in order, or (where there are workers and it
/// pays) concurrently.
fn run_levels(
    levels: &mut [Level],
    mut workers: Option<&mut Workers>,
    parts: &Parts<'_>,
    side: Option<&SideJobs<'_, '_>>,
    always_parallel: bool,
) {
    let frames = parts.io.frames;
    // Side jobs run beside the level that leaves a worker idle the longest: the last serial level, or else
    // beside the last level's branches.
    let host = match (side, workers.is_some()) {
        (Some(_), true) => levels.iter().rposition(|l| l.branches.len() == 1).or(levels.len().checked_sub(1)),
        _ => None,
    };
    for (index, level) in levels.iter_mut().enumerate() {
        let range = level.branches.clone();
        let parallel_ok = range.len() > 1 && workers.is_some();
        let (parallel, timed) = match (parallel_ok, always_parallel) {
            (false, _) => (false, false),
            (true, true) => (true, false),
            (true, false) => level.choice.choose(),
        };
        let t0 = timed.then(Instant::now);
        let side = if host == Some(index) { side } else { None };
        match (workers.as_deref_mut(), side) {
            (Some(workers), side) if parallel || side.is_some() => {
                let start = range.start;
                let branch_tasks = if parallel { range.len() } else { 1 };
                run_with_side(workers, branch_tasks, side, |i| {
                    if parallel {
                        // SAFETY: each task index is claimed once, so branch `start + i` is run by one
                        // thread; the branches of a level are distinct and read only earlier levels, which
                        // have finished.
                        unsafe { run_range(parts, start + i, 0, frames) }
                    } else {
                        for b in range.clone() {
                            // SAFETY: one task runs every branch, in order.
                            unsafe { run_range(parts, b, 0, frames) }
                        }
                    }
                });
            }
            _ => {
                for b in range {
                    // SAFETY: one thread, in order.
                    unsafe { run_range(parts, b, 0, frames) }
                }
            }
        }
        if let Some(t0) = t0 {
            level.choice.record(parallel, t0.elapsed().as_nanos() as f64);
        }
    }
}

/// Set in a branch's [`Progress`] while a thread runs its next chunk.
const RUNNING: u32 = 1 << 31;

/// A branch's place in a dataflow run; on a cache line of its own, since every thread polls it.
#[repr(align(64))]
struct Progress {
    /// Chunks done in this run, and [`RUNNING`].
    state: AtomicU32,
    /// The participant that ran its last chunk (kept from run to run; `u32::MAX`: none yet).
    owner: AtomicU32,
}

/// The dataflow executor's bookkeeping: who may run which chunk of which branch.
pub struct Flow {
    progress: Box<[Progress]>,
    /// The branches that branch `b` reads: `deps[dep_at[b]..dep_at[b + 1]]`.
    deps: Box<[u32]>,
    dep_at: Box<[u32]>,
    /// Branches with every chunk done.
    finished: AtomicU32,
    /// Set when a chunk panicked: the other threads stop taking chunks.
    abort: AtomicBool,
    /// Each branch's buffer address, set by [`Plan::run`] for every run and used by every executor.
    bufs: Box<[BufPtr]>,
    /// Dataflow or one thread, by measured time (the "parallel" side of the choice is the dataflow).
    choice: Adaptive,
}

impl Flow {
    /// Frames a dataflow chunk holds at least: large enough that claiming it costs little against its
    /// work, small enough that a mix after parallel branches starts soon and finishes soon after them.
    const MIN_CHUNK: usize = 512;
    /// The chunks a long run is cut into (see [`chunk`](Self::chunk)).
    const CHUNKS: usize = 16;
    /// How many chunks further along a thread may run a branch it owns rather than a less advanced one it
    /// does not (see [`participate`](Self::participate)).
    const SLACK: u32 = 1;

    /// The bookkeeping for `branches` and the graph's `output` edges (mixed when `output_from` says so).
    /// Its tasks are the branches, then the input (task `branches.len()`), then the output (the next).
    pub fn new(branches: &[Branch], output: &[Edge], output_from: OutputFrom) -> Self {
        let input_task = branches.len() as u32;
        let task_of = |src: Src| match src {
            Src::Input => input_task,
            Src::Branch(b) => b as u32,
        };
        let mut deps = Vec::new();
        let mut dep_at = vec![0u32];
        let add = |deps: &mut Vec<u32>, start: usize, t: u32| {
            if !deps[start..].contains(&t) {
                deps.push(t);
            }
        };
        for b in branches {
            let start = deps.len();
            if b.takes_input {
                add(&mut deps, start, input_task);
            }
            for edge in &b.inputs {
                add(&mut deps, start, task_of(edge.from));
            }
            dep_at.push(deps.len() as u32);
        }
        // The input reads nothing of the run's.
        dep_at.push(deps.len() as u32);
        let start = deps.len();
        match output_from {
            OutputFrom::Branch(b) => add(&mut deps, start, b as u32),
            OutputFrom::Mix => {
                for edge in output {
                    add(&mut deps, start, task_of(edge.from));
                }
            }
        }
        dep_at.push(deps.len() as u32);
        Self {
            progress: (0..branches.len() + 2)
                .map(|_| Progress { state: AtomicU32::new(0), owner: AtomicU32::new(u32::MAX) })
                .collect(),
            deps: deps.into(),
            dep_at: dep_at.into(),
            finished: AtomicU32::new(0),
            abort: AtomicBool::new(false),
            bufs: branches.iter().map(|_| BufPtr(std::ptr::null_mut())).collect(),
            // A run is a batch of blocks (4096 frames offline): 1024 of them are 87 s of 48 kHz audio, and
            // the four slower probes among them cost 0.4% where the dataflow pays.
            choice: Adaptive::every(1024),
        }
    }

    /// Frames per chunk of a run of `frames` with nodes given at most `max_block` at once: at least
    /// `MIN_CHUNK`, and larger in long runs, which keep `CHUNKS` to
    /// pipeline with (fewer claims: 1.6% to 3.5% faster on `parallel.ron` with two threads and 16384-frame runs
    /// at 1024 frames than at 512). A whole number of node calls, so every node is called with the same
    /// frames as in the level-by-level executor, and the output is the same bit for bit.
    pub fn chunk(max_block: usize, frames: usize) -> usize {
        let max_block = max_block.max(1);
        max_block * Self::MIN_CHUNK.max(frames / Self::CHUNKS).div_ceil(max_block)
    }

    /// Runs every branch over the run's frames, by dataflow on the caller and the workers or (when that
    /// measured slower) in order on one thread; side jobs go to the workers first.
    fn run(
        &mut self,
        workers: &mut Workers,
        parts: &Parts<'_>,
        side: Option<&SideJobs<'_, '_>>,
        chunk: usize,
        always_parallel: bool,
    ) {
        let (flow, timed) = if always_parallel { (true, false) } else { self.choice.choose() };
        let t0 = timed.then(Instant::now);
        let frames = parts.io.frames;
        if flow {
            for p in self.progress.iter() {
                p.state.store(0, Ordering::Relaxed);
            }
            self.finished.store(0, Ordering::Relaxed);
            self.abort.store(false, Ordering::Relaxed);
            // Publishing the job releases the resets above to the workers.
            let participants = workers.threads() + 1;
            let chunks = frames.div_ceil(chunk) as u32;
            let this = &*self;
            run_with_side(workers, participants, side, |i| {
                // SAFETY: every task runs chunks only as `participate` claims them.
                unsafe { this.participate(parts, i, participants, chunk, chunks) }
            });
        } else {
            run_with_side(workers, 1, side, |_| {
                // SAFETY: one task runs the input, every branch and the output, in order.
                unsafe {
                    run_input(parts, 0, frames);
                    for b in 0..parts.branch_count {
                        run_range(parts, b, 0, frames);
                    }
                    run_output(parts, 0, frames);
                }
            });
        }
        if let Some(t0) = t0 {
            self.choice.record(flow, t0.elapsed().as_nanos() as f64);
        }
    }

    /// One thread's share of a dataflow run: until every branch has run every chunk, claims a ready
    /// (branch, chunk) and runs it. A (branch, chunk) is ready when the branch has run the chunks before it
    /// and every branch it reads has run that chunk. It spins only while every ready chunk is taken, which
    /// lasts at most one chunk of another thread's work.
    ///
    /// Which one: the ready chunk of a branch this thread *owns* (ran last), unless some other branch's
    /// ready chunk is more than [`SLACK`](Self::SLACK) chunks behind it; then the least advanced one, ties
    /// going to the first from this thread's starting branch (so threads spread over the branches). The
    /// lowest chunk first keeps a mix after parallel branches running beside them, not after them all; the
    /// ownership keeps each branch's state and buffer in one core's cache. Without it about half of all
    /// chunks moved from core to core, and two threads ran `parallel.ron` 1.5x as fast as one instead of
    /// 1.65x.
    ///
    /// # Safety
    /// Only during a run whose bookkeeping has been reset, with `parts` describing that run, and while every
    /// thread that touches its branches does so through this function.
    unsafe fn participate(&self, parts: &Parts<'_>, p: usize, participants: usize, chunk: usize, chunks: u32) {
        let tasks = self.progress.len();
        let first = p * tasks / participants;
        loop {
            if self.abort.load(Ordering::Relaxed) || self.finished.load(Ordering::Acquire) as usize == tasks {
                return;
            }
            // The ready (task, chunk) with the lowest chunk, and the one this thread ran last time.
            let mut best: Option<(usize, u32)> = None;
            let mut mine: Option<(usize, u32)> = None;
            for i in 0..tasks {
                let b = if first + i < tasks { first + i } else { first + i - tasks };
                let state = self.progress[b].state.load(Ordering::Acquire);
                if state & RUNNING != 0 || state >= chunks || mine.is_some_and(|(_, j)| j <= state) {
                    continue;
                }
                let own = self.progress[b].owner.load(Ordering::Relaxed) == p as u32;
                if !own && best.is_some_and(|(_, j)| j <= state) {
                    continue;
                }
                let deps = &self.deps[self.dep_at[b] as usize..self.dep_at[b + 1] as usize];
                if deps.iter().all(|&d| self.progress[d as usize].state.load(Ordering::Acquire) & !RUNNING > state) {
                    if own {
                        mine = Some((b, state));
                    }
                    if best.is_none_or(|(_, j)| state < j) {
                        best = Some((b, state));
                    }
                }
            }
            let pick = match (mine, best) {
                (Some(m), Some(b)) if m.1 <= b.1 + Self::SLACK => Some(m),
                (_, b) => b,
            };
            let Some((b, j)) = pick else {
                std::hint::spin_loop();
                continue;
            };
            // Claiming acquires the previous chunk's writes (by whichever thread ran it).
            if self.progress[b].state.compare_exchange(j, j | RUNNING, Ordering::Acquire, Ordering::Relaxed).is_err() {
                continue;
            }
            let abort = AbortOnUnwind(&self.abort);
            self.progress[b].owner.store(p as u32, Ordering::Relaxed);
            let at = j as usize * chunk;
            // SAFETY: this thread alone holds chunk `j` of task `b` (the claim): of a branch, its inputs,
            // nodes and those frames of its buffer; of an end, that end's call for those frames. The tasks
            // it reads have finished those frames and only read them from now on; chunks are whole node
            // calls.
            unsafe { run_task(parts, b, at, chunk.min(parts.io.frames - at)) };
            std::mem::forget(abort);
            // Releases the chunk's frames and the branch's state to whoever claims what follows.
            self.progress[b].state.store(j + 1, Ordering::Release);
            if j + 1 == chunks {
                self.finished.fetch_add(1, Ordering::Release);
            }
        }
    }
}

/// Stops a dataflow run if a chunk unwinds (the task's panic is reported by [`Workers::run`]).
struct AbortOnUnwind<'a>(&'a AtomicBool);

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs frames `at..at + n` of dataflow task `t`: a branch, the input (the task after the branches) or
/// the output (the last).
///
/// # Safety
/// As [`run_range`] for a branch; for an end, as [`run_input`] or [`run_output`].
unsafe fn run_task(parts: &Parts<'_>, t: usize, at: usize, n: usize) {
    // SAFETY: passed on.
    unsafe {
        match t.checked_sub(parts.branch_count) {
            None => run_range(parts, t, at, n),
            Some(0) => run_input(parts, at, n),
            Some(_) => run_output(parts, at, n),
        }
    }
}

/// Writes frames `at..at + n` of the graph input where the branches read it.
///
/// # Safety
/// Called for consecutive ranges from 0, one call at a time, before any branch reads those frames; `at + n`
/// is at most the run's frames.
unsafe fn run_input(parts: &Parts<'_>, at: usize, n: usize) {
    // SAFETY: those frames are this call's (the contract), and `input_to` holds the run's frames.
    unsafe { parts.ends.input(parts.input_to.add(at), at, n) }
}

/// Mixes frames `at..at + n` of the graph output (where it is a mix), hands them to the run's end and
/// meters them, in blocks of at most `max_block` frames for the meter.
///
/// # Safety
/// Called for consecutive ranges from 0, one call at a time, once those frames of everything the output
/// reads are final; `at + n` is at most the run's frames.
unsafe fn run_output(parts: &Parts<'_>, at: usize, n: usize) {
    let io = parts.io;
    if parts.mix_output {
        for k in 0..parts.outputs {
            // SAFETY: the output's edges and buffer are this call's alone (one call at a time).
            let edge = unsafe { &mut *parts.output.add(k) };
            let src = parts.source(edge.from);
            // SAFETY: frames `at..at + n` of `src` are final; the output buffer is distinct from the
            // branches' and holds the run's frames.
            unsafe { mix_edge(parts.output_buf, src, edge, k == 0, &io, at, n) };
        }
    }
    // SAFETY: those frames of the output are final (the contract, and the mix above).
    let src = unsafe { parts.output_from.add(at) };
    unsafe { parts.ends.output(src, at, n) };
    // Metered after the copy: the meter's last stores (the spectrum's samples, when kept) then drain while
    // the block ends, instead of holding up the copy's loads (0.3% to 0.5% of `chain.ron`'s time).
    if let Some((meter, tail)) = parts.output_meter {
        // SAFETY: as above; the tail is this call's alone, like the output's edges.
        unsafe { feed_blocks(meter, &mut *tail, src, &io, n) };
    }
}

/// Feeds `n` frames from `data` (planar, the run's channels and stride) to `meter`, in blocks of at most
/// `max_block` frames: a meter's block levels are those of the blocks nodes are called with, whatever the
/// executor and however many blocks a run holds.
///
/// # Safety
/// Those frames of each channel are valid and not written meanwhile.
unsafe fn feed_blocks(meter: &SharedMeter, tail: &mut SpectrumTail, data: *const f32, io: &Io, n: usize) {
    let mut off = 0;
    while off < n {
        let len = io.max_block.min(n - off);
        // SAFETY: by the contract.
        meter.feed(&unsafe { AudioIn::from_raw(data.add(off), io.stride, io.channels, len) }, tail, io.spectrum);
        off += len;
    }
}

/// Runs frames `at..at + n` of branch `b`: prepares that part of its input, then runs its nodes over it
/// in place, each in calls of at most `max_block` frames.
///
/// # Safety
/// No other thread may access branch `b`'s inputs or nodes, or frames `at..at + n` of its buffer,
/// meanwhile; frames `at..at + n` of every branch that `b` reads must be final and not written during the
/// call; `at + n` is at most the run's frames and `at` a multiple of `max_block`.
unsafe fn run_range(parts: &Parts<'_>, b: usize, at: usize, n: usize) {
    let io = parts.io;
    let (ch, stride) = (io.channels, io.stride);
    // SAFETY: the branch's fields other than its buffer are this thread's by the contract (its buffer is
    // reached through `bufs`, a part at a time).
    let bp = unsafe { parts.branches.add(b) };
    let (nodes, takes_input) = unsafe { ((*bp).nodes.clone(), (*bp).takes_input) };
    let inputs = unsafe { &mut *std::ptr::addr_of_mut!((*bp).inputs) };
    let buf = unsafe { (*parts.bufs.add(b)).0 };
    if !takes_input {
        for (k, edge) in inputs.iter_mut().enumerate() {
            let src = parts.source(edge.from);
            // SAFETY: frames `at..at + n` of `src` are final (the contract), and of `buf` this thread's.
            unsafe { mix_edge(buf, src, edge, k == 0, &io, at, n) };
        }
        if inputs.is_empty() {
            for c in 0..ch {
                // SAFETY: frames `at..at + n` of channel `c`, this thread's.
                unsafe { std::slice::from_raw_parts_mut(buf.add(c * stride + at), n) }.fill(0.0);
            }
        }
    }
    let mut t = if io.monitor { clock::now() } else { 0 };
    for k in nodes {
        // SAFETY: the branch's nodes belong to this thread alone, by the contract.
        let slot = unsafe { &mut *parts.slots.add(k) };
        // A run may hold several blocks (a batch): each node gets them one by one, in order.
        let mut off = 0;
        while off < n {
            let len = io.max_block.min(n - off);
            if let Some(p) = &mut slot.processor {
                // SAFETY: frames `at + off..at + off + len` of each channel, this thread's; `len <= stride`.
                p.process(&mut unsafe { AudioOut::from_raw(buf.add(at + off), stride, ch, len) });
            }
            if io.monitor {
                let ended = clock::now();
                slot.stats.timing.record(ended.saturating_sub(t));
                t = ended;
            }
            off += len;
        }
        if io.monitor
            && let Some(m) = &mut slot.meter
        {
            // SAFETY: frames `at..at + n` of this branch, which only this thread writes.
            unsafe { feed_blocks(&m.meter, &mut m.tail, buf.add(at), &io, n) };
            t = clock::now();
        }
    }
}

/// Adds (or, for the first edge, writes) `edge`'s share of frames `at..at + n` of `src` into `dst`:
/// delayed, and faded during a crossfade.
///
/// # Safety
/// `dst` and `src` are distinct planar buffers of the run's channels and stride; frames `at..at + n` of
/// `src` are not written and of `dst` not accessed by another thread meanwhile; `at + n` is at most the
/// run's frames.
unsafe fn mix_edge(dst: *mut f32, src: *const f32, edge: &mut Edge, first: bool, io: &Io, at: usize, n: usize) {
    let (ch, stride) = (io.channels, io.stride);
    let gains: Option<&[f32]> = match (io.fading, edge.fade) {
        // SAFETY: the gain buffers hold the run's frames and are only read during it.
        (true, Fade::In) => Some(unsafe { std::slice::from_raw_parts(io.fade_in.add(at), n) }),
        (true, Fade::Out) => Some(unsafe { std::slice::from_raw_parts(io.fade_out.add(at), n) }),
        _ => None,
    };
    let d = edge.delay;
    for c in 0..ch {
        // SAFETY: by the contract.
        let y = unsafe { std::slice::from_raw_parts_mut(dst.add(c * stride + at), n) };
        let x = unsafe { std::slice::from_raw_parts(src.add(c * stride + at), n) };
        if d == 0 {
            match (first, gains) {
                (true, None) => y.copy_from_slice(x),
                (false, None) => {
                    for (yi, xi) in y.iter_mut().zip(x) {
                        *yi += xi;
                    }
                }
                (true, Some(g)) => {
                    for ((yi, xi), gi) in y.iter_mut().zip(x).zip(g) {
                        *yi = xi * gi;
                    }
                }
                (false, Some(g)) => {
                    for ((yi, xi), gi) in y.iter_mut().zip(x).zip(g) {
                        *yi += xi * gi;
                    }
                }
            }
        } else {
            let line = &mut edge.line[c * d..(c + 1) * d];
            let mut pos = edge.pos;
            for (i, (yi, xi)) in y.iter_mut().zip(x).enumerate() {
                let mut v = line[pos];
                line[pos] = *xi;
                pos = if pos + 1 == d { 0 } else { pos + 1 };
                if let Some(g) = gains {
                    v *= g[i];
                }
                *yi = if first { v } else { *yi + v };
            }
        }
    }
    if d > 0 {
        edge.pos = (edge.pos + n) % d;
    }
}

/// Choice between running branches serially or in parallel (a level's, or a dataflow run's), by measured
/// time. The choice affects speed only: both ways give the same bits.
///
/// Every `period` runs it makes [`Self::PROBES`] runs alternating serial and parallel
/// (alternating, so the worker threads are awake for the parallel probes as they would be in use), then
/// keeps the way whose best recent time is clearly lower. The fastest of a few runs is a steady measure on
/// a noisy machine; re-probing follows changes in load.
///
/// Where one thread keeps winning outright (the parallel runs no faster at all), the period doubles at
/// each probe that confirms it, up to [`Self::MAX_BACKOFF`] times the first: there the parallel probes are
/// the slow runs (each wakes the workers, which can take longer than a short block's work), and staying
/// serial a while longer risks nothing. A close call, and a parallel choice, are re-checked at the first
/// period, so that a change in the load on the workers' cores is noticed soon.
struct Adaptive {
    base: u64,
    period: u64,
    /// Runs since this period's probes began.
    phase: u64,
    serial_ns: [f64; 4],
    parallel_ns: [f64; 4],
    serial_runs: usize,
    parallel_runs: usize,
    decided: bool,
    parallel: bool,
}

impl Adaptive {
    const PROBES: u64 = 8;
    const MAX_BACKOFF: u64 = 16;

    /// A choice that probes every `period` runs (more rarely while one thread keeps winning).
    fn every(period: u64) -> Self {
        let period = period.max(Self::PROBES + 1);
        Self {
            base: period,
            period,
            phase: 0,
            serial_ns: [0.0; 4],
            parallel_ns: [0.0; 4],
            serial_runs: 0,
            parallel_runs: 0,
            decided: false,
            parallel: false,
        }
    }

    /// Whether to run this block's level in parallel, and whether to time it.
    fn choose(&mut self) -> (bool, bool) {
        let phase = self.phase;
        self.phase = if phase + 1 >= self.period { 0 } else { phase + 1 };
        if phase < Self::PROBES {
            return (phase % 2 == 1, true);
        }
        if phase == Self::PROBES {
            let best = |v: &[f64; 4]| v.iter().copied().fold(f64::INFINITY, f64::min);
            // Parallel only when clearly (20%) faster: a close call is not worth waking a second core for.
            let (serial_ns, parallel_ns) = (best(&self.serial_ns), best(&self.parallel_ns));
            let parallel = parallel_ns < 0.8 * serial_ns;
            // Backing off only where parallel lost outright: a close call is probed at the first period.
            let confirmed = self.decided && !self.parallel && parallel_ns >= serial_ns;
            self.period = if confirmed { (self.period * 2).min(self.base * Self::MAX_BACKOFF) } else { self.base };
            (self.parallel, self.decided) = (parallel, true);
        }
        (self.parallel, false)
    }

    fn record(&mut self, parallel: bool, ns: f64) {
        let (times, runs) = if parallel {
            (&mut self.parallel_ns, &mut self.parallel_runs)
        } else {
            (&mut self.serial_ns, &mut self.serial_runs)
        };
        times[*runs % times.len()] = ns;
        *runs += 1;
    }
}

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
