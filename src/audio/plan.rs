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
//!   in order. Every branch writes only its own buffer and state.
//!
//! Both run the same per-branch function with the same inputs, summed in the same order, so their output is
//! bit-identical by construction (and tested). Nothing here allocates per block.
#![allow(unsafe_code)] // Branches of a level are handed to workers by pointer; see the SAFETY notes.

use super::NodeId;
use super::workers::Workers;
use crate::buffer::AudioOut;
use crate::clock;
use crate::dsp::denormal::FloatMode;
use crate::monitor::shared::{NodeStats, SharedMeter};
use crate::node::Processor;
use std::ops::Range;
use std::sync::Arc;
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
    pub meter: Option<Arc<SharedMeter>>,
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
        Self { branches, choice: Adaptive::default() }
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

    /// The branch that takes the graph input in place, if any.
    pub fn input_branch(&self) -> Option<usize> {
        self.branches.iter().position(|b| b.takes_input)
    }

    /// Runs one block of `frames` frames. The graph input is already in `input` (or in the buffer of the
    /// branch that takes it); the output is left where [`output`](Self::output) finds it.
    pub fn run(&mut self, ctx: &mut RunContext<'_, '_>) {
        let frames = ctx.frames;
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
        let io = Io {
            input: ctx.input.as_ptr(),
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
        let branches = self.branches.as_mut_ptr();
        let slots = self.slots.as_mut_ptr();
        let parts = Parts { branches, slots, io };
        // Side jobs run beside the level that leaves a worker idle the longest: the last serial level, or
        // else beside the last level's branches.
        let side = ctx.side.take().map(|side| SideJobs::new(side.jobs, side.mode));
        let host = match (&side, ctx.workers.is_some()) {
            (Some(_), true) => {
                self.levels.iter().rposition(|l| l.branches.len() == 1).or(self.levels.len().checked_sub(1))
            }
            _ => None,
        };
        for (index, level) in self.levels.iter_mut().enumerate() {
            let range = level.branches.clone();
            let parallel_ok = range.len() > 1 && ctx.workers.is_some();
            let (parallel, timed) = match (parallel_ok, ctx.always_parallel) {
                (false, _) => (false, false),
                (true, true) => (true, false),
                (true, false) => level.choice.choose(),
            };
            let t0 = timed.then(Instant::now);
            let side = if host == Some(index) { side.as_ref() } else { None };
            match (ctx.workers.as_deref_mut(), side) {
                (Some(workers), side) if parallel || side.is_some() => {
                    let start = range.start;
                    // The branches' tasks come first, so the caller starts on them at once.
                    let branch_tasks = if parallel { range.len() } else { 1 };
                    let task = |i: usize| {
                        if let Some(job) = i.checked_sub(branch_tasks) {
                            if let Some(side) = side {
                                // SAFETY: task `branch_tasks + job` is claimed once, so one thread runs the job.
                                unsafe { side.run(job) }
                            }
                        } else if parallel {
                            // SAFETY: each task index is claimed once, so branch `start + i` is run by one
                            // thread; the branches of a level are distinct and read only earlier levels (see
                            // `run_branch`).
                            unsafe { run_branch(&parts, start + i) }
                        } else {
                            for b in range.clone() {
                                // SAFETY: one task runs every branch, in order; see `run_branch`.
                                unsafe { run_branch(&parts, b) }
                            }
                        }
                    };
                    workers.run(branch_tasks + side.map_or(0, SideJobs::len), &task);
                }
                _ => {
                    for b in range {
                        // SAFETY: one thread; see `run_branch`.
                        unsafe { run_branch(&parts, b) }
                    }
                }
            }
            if let Some(t0) = t0 {
                level.choice.record(parallel, t0.elapsed().as_nanos() as f64);
            }
        }
        // Jobs no worker took (no workers, or no levels) run now.
        if let Some(side) = &side {
            for job in 0..side.len() {
                // SAFETY: no other thread has them now.
                unsafe { side.run(job) }
            }
        }
        if self.output_from == OutputFrom::Mix {
            let io = parts.io;
            let Plan { output, output_buf, branches, .. } = self;
            for (k, edge) in output.iter_mut().enumerate() {
                let src: &[f32] = match edge.from {
                    Src::Input => ctx.input,
                    Src::Branch(b) => &branches[b].buf,
                };
                mix_edge(output_buf, src, edge, k == 0, &io);
            }
        }
        if let Some(x) = &mut self.crossfade {
            x.pos = (x.pos + frames).min(x.len);
        }
    }

    /// The graph's output after [`run`](Self::run).
    pub fn output_samples(&self) -> &[f32] {
        match self.output_from {
            OutputFrom::Branch(b) => &self.branches[b].buf,
            OutputFrom::Mix => &self.output_buf,
        }
    }

    /// Whether a crossfade has run its course.
    pub fn crossfade_done(&self) -> bool {
        self.crossfade.is_some_and(|x| x.pos >= x.len)
    }
}

/// What a block needs besides the plan.
pub struct RunContext<'a, 's> {
    pub input: &'a [f32],
    pub frames: usize,
    pub monitor: bool,
    /// Whether meters keep samples for a spectrum this block.
    pub spectrum: bool,
    pub workers: Option<&'a mut Workers>,
    pub always_parallel: bool,
    /// Jobs to run once each beside the processing (see [`crate::AudioProcessor::process_overlapping`]).
    pub side: Option<Side<'a, 's>>,
    pub fade_in: &'a mut [f32],
    pub fade_out: &'a mut [f32],
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
        let _other = super::AudioContext::leave();
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
            let _other = super::AudioContext::leave();
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
    input: *const f32,
    fade_in: *const f32,
    fade_out: *const f32,
    frames: usize,
    channels: usize,
    stride: usize,
    max_block: usize,
    monitor: bool,
    spectrum: bool,
    fading: bool,
}

/// Pointers into the plan for the branch function.
struct Parts {
    branches: *mut Branch,
    slots: *mut Slot,
    io: Io,
}

// SAFETY: `Parts` is shared with worker threads only for the duration of one `Workers::run`, during which
// each branch (and its nodes) is touched by exactly one thread and everything else is only read.
unsafe impl Sync for Parts {}

/// Runs branch `b`: prepares its input, then runs its nodes in place.
///
/// # Safety
/// No other thread may access branch `b` or its nodes meanwhile, and every branch that `b` reads must be
/// finished and not written during the call (branches read only branches of earlier levels).
unsafe fn run_branch(parts: &Parts, b: usize) {
    let io = parts.io;
    // SAFETY: by the contract, this thread alone has branch `b`.
    let branch = unsafe { &mut *parts.branches.add(b) };
    let len = io.stride * io.channels;
    if !branch.takes_input {
        let Branch { inputs, buf, .. } = &mut *branch;
        for (k, edge) in inputs.iter_mut().enumerate() {
            let src: &[f32] = match edge.from {
                // SAFETY: the input buffer is written before the block and only read during it.
                Src::Input => unsafe { std::slice::from_raw_parts(io.input, len) },
                // SAFETY: `s` is an earlier, finished branch (never `b`, whose buffer we hold).
                Src::Branch(s) => unsafe { &(*parts.branches.add(s)).buf },
            };
            mix_edge(buf, src, edge, k == 0, &io);
        }
        if inputs.is_empty() {
            buf.fill(0.0);
        }
    }
    let (ch, stride, n) = (io.channels, io.stride, io.frames);
    let mut t = if io.monitor { clock::now() } else { 0 };
    for k in branch.nodes.clone() {
        // SAFETY: the branch's nodes belong to this thread alone, by the contract.
        let slot = unsafe { &mut *parts.slots.add(k) };
        // A run may hold several blocks (a batch): each node gets them one by one, in order.
        let mut at = 0;
        while at < n {
            let len = io.max_block.min(n - at);
            if let Some(p) = &mut slot.processor {
                p.process(&mut AudioOut::new(&mut branch.buf, stride, ch, n).slice_mut(at, len));
            }
            if io.monitor {
                let ended = clock::now();
                slot.stats.timing.record(ended.saturating_sub(t));
                t = ended;
            }
            at += len;
        }
        if io.monitor
            && let Some(meter) = &slot.meter
        {
            meter.feed(&branch.buf, stride, ch, n, io.spectrum);
            t = clock::now();
        }
    }
}

/// Adds (or, for the first edge, writes) `edge`'s share of `src` into `dst`: delayed, and faded during a
/// crossfade.
fn mix_edge(dst: &mut [f32], src: &[f32], edge: &mut Edge, first: bool, io: &Io) {
    let (ch, stride, n) = (io.channels, io.stride, io.frames);
    let gains: Option<&[f32]> = match (io.fading, edge.fade) {
        // SAFETY: the gain buffers hold `frames` values for this block and are only read during it.
        (true, Fade::In) => Some(unsafe { std::slice::from_raw_parts(io.fade_in, n) }),
        (true, Fade::Out) => Some(unsafe { std::slice::from_raw_parts(io.fade_out, n) }),
        _ => None,
    };
    let d = edge.delay;
    for c in 0..ch {
        let y = &mut dst[c * stride..c * stride + n];
        let x = &src[c * stride..c * stride + n];
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

/// Per-level choice between running branches serially or in parallel, by measured time. The choice
/// affects speed only: both ways give the same bits.
///
/// Every [`Self::PERIOD`] blocks the level runs [`Self::PROBES`] blocks alternating serial and parallel
/// (alternating, so the worker threads are awake for the parallel probes as they would be in use), then
/// keeps the way whose best recent time is clearly lower. The fastest of a few runs is a steady measure on
/// a noisy machine; re-probing follows changes in load.
#[derive(Default)]
struct Adaptive {
    serial_ns: [f64; 4],
    parallel_ns: [f64; 4],
    serial_runs: usize,
    parallel_runs: usize,
    blocks: u64,
    parallel: bool,
}

impl Adaptive {
    const PERIOD: u64 = 256;
    const PROBES: u64 = 8;

    /// Whether to run this block's level in parallel, and whether to time it.
    fn choose(&mut self) -> (bool, bool) {
        let phase = self.blocks % Self::PERIOD;
        self.blocks += 1;
        if phase < Self::PROBES {
            return (phase % 2 == 1, true);
        }
        if phase == Self::PROBES {
            let best = |v: &[f64; 4]| v.iter().copied().fold(f64::INFINITY, f64::min);
            // Parallel only when clearly (20%) faster: a close call is not worth waking a second core for.
            self.parallel = best(&self.parallel_ns) < 0.8 * best(&self.serial_ns);
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
