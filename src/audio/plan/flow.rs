//! The dataflow executor, for offline runs of several blocks: every thread takes the next (branch, chunk)
//! whose inputs are ready (see [`Flow`]).
#![allow(unsafe_code)] // Branches and parts of their buffers are reached by pointer; see the SAFETY notes.

use super::*;

/// Set in a branch's [`Progress`] while a thread runs its next chunk.
pub(super) const RUNNING: u32 = 1 << 31;

/// A branch's place in a dataflow run; on a cache line of its own, since every thread polls it.
#[repr(align(64))]
pub(super) struct Progress {
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
    pub(super) bufs: Box<[BufPtr]>,
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
    pub(super) fn run(
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
            let serial = || {
                // SAFETY: one thread runs the input, every branch and the output, in order.
                unsafe {
                    run_input(parts, 0, frames);
                    for b in 0..parts.branch_count {
                        run_range(parts, b, 0, frames);
                    }
                    run_output(parts, 0, frames);
                }
            };
            // Without side jobs the workers are not called: one of them could take the one task, and the
            // branches' state and buffers would move to its core for the run.
            match side {
                Some(side) => run_with_side(workers, 1, Some(side), |_| serial()),
                None => serial(),
            }
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
pub(super) struct AbortOnUnwind<'a>(&'a AtomicBool);

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
