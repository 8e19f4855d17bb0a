//! The audio side of a running graph: processors in execution order, their buffers, and the executors.
//!
//! Nodes are laid out level by level; inside a level, each branch (a chain of nodes, each feeding only the
//! next) is contiguous. Every node reads only buffers of nodes placed before it, so:
//!
//! - the **serial** executor (the reference) runs nodes in order;
//! - the **parallel** executor runs the branches of a level concurrently with `rayon::join`, each branch's
//!   nodes in order. Reads of earlier levels are shared borrows, writes are to disjoint `&mut` slices.
//!
//! Both call the same per-node function with the same inputs, summed in the same order, so their output is
//! bit-identical by construction (and tested). Per block nothing is allocated: all buffers exist from
//! [`Runtime::new`], and `rayon::join` keeps its jobs on the stack when called from inside the pool.

use crate::buffer::{AudioIn, AudioOut};
use crate::clock;
use crate::dsp::denormal::FlushDenormals;
use crate::monitor::{Meter, Timing};
use crate::node::Processor;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Gives `Sync` to a `Send` value by allowing only exclusive access. `Mutex::get_mut` needs `&mut self`
/// and therefore takes no lock: the mutex is never locked, it only carries the `Sync` proof that
/// `std::sync::Exclusive` would give on stable Rust.
pub struct Exclusive<T>(Mutex<T>);

impl<T> Exclusive<T> {
    pub fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    pub fn get_mut(&mut self) -> &mut T {
        // Never locked, so never poisoned; recover the value regardless.
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a node's input comes from, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    Input,
    Node(usize),
}

/// One input edge, delayed by `delay` frames to line up branches of different latency.
pub struct EdgeIn {
    pub from: Src,
    pub delay: usize,
    line: Vec<f32>,
    pos: usize,
}

impl EdgeIn {
    pub fn new(from: Src, delay: usize, channels: usize) -> Self {
        Self { from, delay, line: vec![0.0; delay * channels], pos: 0 }
    }
}

/// One node on the audio side.
pub struct RtNode {
    pub(crate) processor: Exclusive<Box<dyn Processor>>,
    inputs: Vec<EdgeIn>,
    out: Vec<f32>,
    mix: Vec<f32>,
    /// Processing time per block (recorded when the monitor is on).
    pub(crate) timing: Timing,
    /// Levels at the node's output, when the application asked for them.
    pub(crate) meter: Option<Box<Meter>>,
}

/// A level: nodes `start..end`, split into branches that may run concurrently.
pub struct Level {
    start: usize,
    end: usize,
    /// Node ranges, contiguous and in order.
    branches: Vec<(usize, usize)>,
    choice: Adaptive,
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

    /// Whether to run this block's level in parallel, and whether to time it (probe blocks only: a clock
    /// read is not free everywhere).
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

/// The description of a runtime, computed by the engine's compile system.
#[derive(Debug, Clone, Default)]
pub struct RuntimeLayout {
    /// For each node in execution order: its inputs and the compensating delay of each.
    pub inputs: Vec<Vec<(Src, usize)>>,
    /// What feeds the graph's output, with compensating delays.
    pub output: Vec<(Src, usize)>,
    /// Levels as node ranges, each split into branch ranges.
    pub levels: Vec<Vec<(usize, usize)>>,
}

/// Which executor runs the graph.
#[derive(Clone)]
pub enum Executor {
    /// The single-threaded reference.
    Serial,
    /// Branches of a level run concurrently on this pool: always if the flag is set, otherwise when
    /// measurements show it pays.
    Parallel(Arc<rayon::ThreadPool>, bool),
}

/// The audio side of the running graph, held as a resource while the graph runs.
#[derive(bevy_ecs::resource::Resource)]
pub struct Runtime {
    channels: usize,
    stride: usize,
    frames: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    zeros: Vec<f32>,
    pub(crate) nodes: Vec<RtNode>,
    output_edges: Vec<EdgeIn>,
    output_mix: bool,
    levels: Vec<Level>,
    executor: Executor,
    nonfinite_input: u64,
    /// Record timing and levels.
    monitor: bool,
    sample_rate: u32,
    pub(crate) block_timing: Timing,
    pub(crate) blocks_over_budget: u64,
    pub(crate) frames_processed: u64,
    pub(crate) output_meter: Meter,
    /// A frame's real-time duration in clock ticks: the budget for over-budget blocks.
    ticks_per_frame: f64,
}

struct Io<'a> {
    input: &'a [f32],
    zeros: &'a [f32],
    channels: usize,
    stride: usize,
    frames: usize,
    monitor: bool,
}

/// Resolves a source to its buffer: nodes below `lo.len()` are in `lo`, later ones in `hi`.
struct Lookup<'a> {
    lo: &'a [RtNode],
    hi: &'a [RtNode],
    hi_start: usize,
}

impl Lookup<'_> {
    fn buf<'s>(&'s self, src: Src, io: &'s Io<'_>) -> &'s [f32] {
        match src {
            Src::Input => io.input,
            Src::Node(g) if g < self.lo.len() => &self.lo[g].out,
            Src::Node(g) => &self.hi[g - self.hi_start].out,
        }
    }
}

/// The graph's output: the mix buffer, or the single source's buffer when nothing needs mixing.
fn output_slice<'a>(mixed: bool, mix: &'a [f32], edges: &[EdgeIn], input: &'a [f32], nodes: &'a [RtNode]) -> &'a [f32] {
    match (mixed, edges.first().map(|e| e.from)) {
        (false, Some(Src::Node(g))) => &nodes[g].out,
        (false, Some(Src::Input)) => input,
        _ => mix,
    }
}

/// Sums `edges` (delayed as each requires) into `dst`.
fn mix_into(dst: &mut [f32], edges: &mut [EdgeIn], lookup: &Lookup<'_>, io: &Io<'_>) {
    let (ch, stride, n) = (io.channels, io.stride, io.frames);
    for (k, edge) in edges.iter_mut().enumerate() {
        let src = lookup.buf(edge.from, io);
        for c in 0..ch {
            let x = &src[c * stride..c * stride + n];
            let y = &mut dst[c * stride..c * stride + n];
            if edge.delay == 0 {
                if k == 0 {
                    y.copy_from_slice(x);
                } else {
                    for (yi, xi) in y.iter_mut().zip(x) {
                        *yi += xi;
                    }
                }
            } else {
                let d = edge.delay;
                let line = &mut edge.line[c * d..(c + 1) * d];
                let mut pos = edge.pos;
                for (yi, xi) in y.iter_mut().zip(x) {
                    let v = line[pos];
                    line[pos] = *xi;
                    pos = if pos + 1 == d { 0 } else { pos + 1 };
                    *yi = if k == 0 { v } else { *yi + v };
                }
            }
        }
        if edge.delay > 0 {
            edge.pos = (edge.pos + n) % edge.delay;
        }
    }
}

/// Runs one node. With the monitor on, `started` is the clock reading when the node began (the previous
/// node's end, so consecutive nodes share one reading) and the return value is the reading at its end.
fn run_node(node: &mut RtNode, lookup: &Lookup<'_>, io: &Io<'_>, started: u64) -> u64 {
    let (ch, stride, n) = (io.channels, io.stride, io.frames);
    let RtNode { processor, inputs, out, mix, timing, meter } = node;
    let input = match inputs.as_slice() {
        [] => AudioIn::new(io.zeros, stride, ch, n),
        [single] if single.delay == 0 => AudioIn::new(lookup.buf(single.from, io), stride, ch, n),
        _ => {
            mix_into(mix, inputs, lookup, io);
            AudioIn::new(mix, stride, ch, n)
        }
    };
    processor.get_mut().process(&input, &mut AudioOut::new(out, stride, ch, n));
    if !io.monitor {
        return 0;
    }
    let ended = clock::now();
    timing.record(ended.saturating_sub(started));
    if let Some(meter) = meter {
        meter.feed(out, stride, ch, n);
        return clock::now();
    }
    ended
}

/// Runs the nodes of one branch in order. `done` holds every node before the level.
fn run_branch(done: &[RtNode], branch: &mut [RtNode], branch_start: usize, io: &Io<'_>) {
    let mut t = if io.monitor { clock::now() } else { 0 };
    for k in 0..branch.len() {
        let (prefix, rest) = branch.split_at_mut(k);
        let lookup = Lookup { lo: done, hi: prefix, hi_start: branch_start };
        t = run_node(&mut rest[0], &lookup, io, t);
    }
}

/// Runs `branches` (node ranges within `nodes`, which starts at global index `offset`) concurrently.
fn run_branches(done: &[RtNode], nodes: &mut [RtNode], offset: usize, branches: &[(usize, usize)], io: &Io<'_>) {
    match branches {
        [] => {}
        [(start, _)] => run_branch(done, nodes, *start, io),
        _ => {
            let mid = branches.len() / 2;
            let split = branches[mid].0 - offset;
            let (left, right) = nodes.split_at_mut(split);
            rayon::join(
                || {
                    let _ftz = FlushDenormals::new();
                    run_branches(done, left, offset, &branches[..mid], io)
                },
                || {
                    let _ftz = FlushDenormals::new();
                    run_branches(done, right, offset + split, &branches[mid..], io)
                },
            );
        }
    }
}

impl Runtime {
    /// Builds the runtime. `processors` are initialized and started, in execution order. With `monitor`,
    /// every block records per-node and per-block timing and the output's levels.
    pub fn new(
        processors: Vec<Box<dyn Processor>>,
        layout: RuntimeLayout,
        channels: usize,
        max_block: usize,
        sample_rate: u32,
        executor: Executor,
        monitor: bool,
    ) -> Self {
        let len = channels * max_block;
        let nodes = processors
            .into_iter()
            .zip(layout.inputs)
            .map(|(p, ins)| RtNode {
                processor: Exclusive::new(p),
                inputs: ins.into_iter().map(|(s, d)| EdgeIn::new(s, d, channels)).collect(),
                out: vec![0.0; len],
                mix: vec![0.0; len],
                timing: Timing::default(),
                meter: None,
            })
            .collect();
        let output_mix = !matches!(layout.output.as_slice(), [(_, 0)]);
        let levels = layout
            .levels
            .into_iter()
            .map(|branches| Level {
                start: branches.first().map_or(0, |b| b.0),
                end: branches.last().map_or(0, |b| b.1),
                branches,
                choice: Adaptive::default(),
            })
            .collect();
        Self {
            channels,
            stride: max_block,
            frames: 0,
            input: vec![0.0; len],
            output: vec![0.0; len],
            zeros: vec![0.0; len],
            nodes,
            output_edges: layout.output.into_iter().map(|(s, d)| EdgeIn::new(s, d, channels)).collect(),
            output_mix,
            levels,
            executor,
            nonfinite_input: 0,
            monitor,
            sample_rate,
            block_timing: Timing::default(),
            blocks_over_budget: 0,
            frames_processed: 0,
            output_meter: Meter::new(),
            ticks_per_frame: if monitor { 1e9 / f64::from(sample_rate) / clock::ns_per_tick() } else { 0.0 },
        }
    }

    pub fn monitor(&self) -> bool {
        self.monitor
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn max_block(&self) -> usize {
        self.stride
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Non-finite input samples replaced by 0.0 so far.
    pub fn nonfinite_input(&self) -> u64 {
        self.nonfinite_input
    }

    /// Copies a block into the graph's input, replacing NaN and infinity with 0.0.
    pub fn write_input(&mut self, input: &AudioIn<'_>) {
        let n = input.frames();
        assert!(n <= self.stride, "block of {n} frames exceeds the prepared maximum of {}", self.stride);
        assert_eq!(input.channels(), self.channels, "channel count differs from the graph's");
        self.frames = n;
        // A local count keeps the loop free of stores to `self`, so it vectorizes.
        let mut nonfinite = 0u64;
        for c in 0..self.channels {
            let dst = &mut self.input[c * self.stride..c * self.stride + n];
            for (d, &s) in dst.iter_mut().zip(input.channel(c)) {
                let finite = s.is_finite();
                nonfinite += u64::from(!finite);
                *d = if finite { s } else { 0.0 };
            }
        }
        self.nonfinite_input += nonfinite;
    }

    /// Copies the last processed block out.
    pub fn read_output(&self, output: &mut AudioOut<'_>) {
        let n = self.frames;
        assert_eq!(output.frames(), n, "output block length differs from the input's");
        let src = self.output_buf();
        for c in 0..self.channels {
            output.channel_mut(c).copy_from_slice(&src[c * self.stride..c * self.stride + n]);
        }
    }

    fn output_buf(&self) -> &[f32] {
        output_slice(self.output_mix, &self.output, &self.output_edges, &self.input, &self.nodes)
    }

    /// Processes the block written by [`write_input`](Self::write_input).
    pub fn process(&mut self) {
        let _ftz = FlushDenormals::new();
        let t0 = self.monitor.then(clock::now);
        match self.executor.clone() {
            Executor::Serial => self.run_serial(),
            Executor::Parallel(pool, always) => {
                if pool.current_thread_index().is_some() {
                    self.run_parallel(always);
                } else {
                    // Outside the pool rayon must hand the work over (a latch and a queue push). Callers
                    // that care render inside `ThreadPool::install`; see `Engine::run`.
                    pool.install(|| {
                        let _ftz = FlushDenormals::new();
                        self.run_parallel(always)
                    });
                }
            }
        }
        self.mix_output();
        if let Some(t0) = t0 {
            let ticks = clock::now().saturating_sub(t0);
            self.block_timing.record(ticks);
            if ticks as f64 > self.frames as f64 * self.ticks_per_frame {
                self.blocks_over_budget += 1;
            }
            let out = output_slice(self.output_mix, &self.output, &self.output_edges, &self.input, &self.nodes);
            self.output_meter.feed(out, self.stride, self.channels, self.frames);
        }
        self.frames_processed += self.frames as u64;
    }

    fn io_parts(&mut self) -> (Io<'_>, &mut Vec<RtNode>, &mut Vec<Level>) {
        let io = Io {
            input: &self.input,
            zeros: &self.zeros,
            channels: self.channels,
            stride: self.stride,
            frames: self.frames,
            monitor: self.monitor,
        };
        (io, &mut self.nodes, &mut self.levels)
    }

    fn run_serial(&mut self) {
        let (io, nodes, _) = self.io_parts();
        let mut t = if io.monitor { clock::now() } else { 0 };
        for i in 0..nodes.len() {
            let (before, rest) = nodes.split_at_mut(i);
            let lookup = Lookup { lo: before, hi: &[], hi_start: i };
            t = run_node(&mut rest[0], &lookup, &io, t);
        }
    }

    fn run_parallel(&mut self, always: bool) {
        let (io, nodes, levels) = self.io_parts();
        for level in levels.iter_mut() {
            let (done, rest) = nodes.split_at_mut(level.start);
            let current = &mut rest[..level.end - level.start];
            if level.branches.len() < 2 {
                run_branch(done, current, level.start, &io);
                continue;
            }
            let (parallel, timed) = if always { (true, false) } else { level.choice.choose() };
            let t0 = timed.then(Instant::now);
            if parallel {
                run_branches(done, current, level.start, &level.branches, &io);
            } else {
                for &(s, e) in &level.branches {
                    run_branch(done, &mut current[s - level.start..e - level.start], s, &io);
                }
            }
            if let Some(t0) = t0 {
                level.choice.record(parallel, t0.elapsed().as_nanos() as f64);
            }
        }
    }

    fn mix_output(&mut self) {
        if !self.output_mix {
            return;
        }
        let io = Io {
            input: &self.input,
            zeros: &self.zeros,
            channels: self.channels,
            stride: self.stride,
            frames: self.frames,
            monitor: false,
        };
        let lookup = Lookup { lo: &self.nodes, hi: &[], hi_start: self.nodes.len() };
        mix_into(&mut self.output, &mut self.output_edges, &lookup, &io);
    }

    /// Gives the processors back, in execution order.
    pub fn into_processors(self) -> Vec<Box<dyn Processor>> {
        self.nodes.into_iter().map(|n| n.processor.into_inner()).collect()
    }
}
