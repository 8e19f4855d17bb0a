//! Worker threads for the parallel executor, safe to drive from a device callback.
//!
//! Rayon's `join` and `install` block a thread from outside the pool on a mutex and condition variable
//! (its `LockLatch`), which a real-time callback must never do. Here the calling thread never waits for a
//! worker to wake up:
//!
//! 1. The caller publishes a job (a function and a count of tasks) by storing a new generation into the
//!    job's claim word, and unparks workers that went to sleep. It never takes a lock.
//! 2. Workers spin for a short while after each job (so back-to-back blocks find them awake), then park;
//!    offline runs spin longer ([`Workers::with_spin`]).
//! 3. Tasks are claimed one at a time with a compare-and-swap on the claim word, which carries the job's
//!    generation: a worker that arrives after the job ended cannot claim anything. The caller claims from
//!    the front (task 0, 1, ...) and workers from the back, so with one worker a branch keeps running on
//!    the same thread block after block, and its state and buffers stay in that core's cache.
//! 4. The caller claims tasks too, so a task no worker has claimed is run by the caller. It then waits,
//!    spinning, only for tasks a worker has already started: bounded by that task's own work.
//!
//! The threads come from a `rayon::ThreadPool` built for the purpose (its naming, stack and lifetime), each
//! running one long-lived loop; no rayon work-stealing call is made on the audio path.
#![allow(unsafe_code)] // A scoped hand-off of borrowed work to other threads; see the SAFETY notes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it parks, by default: back-to-back callbacks find it
/// awake.
pub const SPIN: Duration = Duration::from_micros(200);

/// The shared job slot. `claim` packs the generation (high 32 bits), the end of the unclaimed tasks (next
/// 16) and their start (low 16), so a claim sees all three at once.
struct Shared {
    claim: AtomicU64,
    /// Tasks finished in the current generation.
    done: AtomicUsize,
    /// The task function and its environment, valid while the generation's tasks are unfinished.
    run: AtomicUsize,
    env: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleeping: Vec<AtomicBool>,
    threads: std::sync::OnceLock<Vec<std::thread::Thread>>,
    /// How long a worker spins for the next job before it parks.
    spin: Duration,
}

/// A task function: runs task `i` of the job whose environment is `env`.
type TaskFn = unsafe fn(env: usize, i: usize);

/// Worker threads that run the tasks of one job at a time alongside the calling thread.
pub struct Workers {
    shared: Arc<Shared>,
    pool: Option<rayon::ThreadPool>,
    generation: u32,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").field("threads", &self.shared.sleeping.len()).finish()
    }
}

impl Workers {
    /// Starts `threads` workers that spin for `spin` after each job before they park. Offline work, which
    /// runs serial stages (and reads and writes files) for longer than [`SPIN`] between parallel jobs, keeps
    /// them awake with a longer spin: a parked worker wakes late, and the caller then runs most of the
    /// tasks itself.
    ///
    /// # Errors
    /// If the threads cannot be started.
    pub fn with_spin(threads: usize, spin: Duration) -> Result<Self, rayon::ThreadPoolBuildError> {
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            run: AtomicUsize::new(0),
            env: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleeping: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            threads: std::sync::OnceLock::new(),
            spin,
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("fxgraph-worker-{i}"))
            .build()?;
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let shared = shared.clone();
            let tx = tx.clone();
            pool.spawn(move || {
                let index = rayon::current_thread_index().unwrap_or(0);
                let _ = tx.send((index, std::thread::current()));
                worker(&shared, index);
            });
        }
        let mut handles: Vec<(usize, std::thread::Thread)> = rx.iter().take(threads).collect();
        handles.sort_by_key(|(i, _)| *i);
        let _ = shared.threads.set(handles.into_iter().map(|(_, t)| t).collect());
        Ok(Self { shared, pool: Some(pool), generation: 0 })
    }

    /// Worker threads (the caller is one more).
    pub fn threads(&self) -> usize {
        self.shared.sleeping.len()
    }

    /// Runs `task(0..count)` on the calling thread and the workers; returns when every task has finished.
    /// Allocates nothing and takes no lock.
    ///
    /// # Panics
    /// If a task panicked (on any thread), or `count` exceeds 65535.
    pub fn run<F: Fn(usize) + Sync>(&mut self, count: usize, task: &F) {
        if count == 0 {
            return;
        }
        assert!(count <= 0xFFFF, "at most 65535 tasks per job");
        unsafe fn call<F: Fn(usize) + Sync>(env: usize, i: usize) {
            // SAFETY: `env` is the address of the `F` passed to `run`, which does not return before every
            // task of this generation has finished (see `run`).
            let f = unsafe { &*(env as *const F) };
            f(i);
        }
        let s = &*self.shared;
        self.generation = self.generation.wrapping_add(1);
        let generation = u64::from(self.generation) << 32;
        s.done.store(0, Ordering::Relaxed);
        s.run.store(call::<F> as TaskFn as usize, Ordering::Relaxed);
        s.env.store(task as *const F as usize, Ordering::Relaxed);
        // Publishing the generation releases the fields above to workers that acquire it.
        s.claim.store(generation | (count as u64) << 16, Ordering::SeqCst);
        if let Some(threads) = s.threads.get() {
            for (sleeping, thread) in s.sleeping.iter().zip(threads) {
                if sleeping.load(Ordering::SeqCst) {
                    thread.unpark();
                }
            }
        }
        // The caller claims tasks like any worker.
        while let Some(i) = claim(s, generation, false) {
            run_task(s, call::<F>, task as *const F as usize, i);
        }
        // Only tasks already running on a worker remain.
        while s.done.load(Ordering::Acquire) < count {
            std::hint::spin_loop();
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a processing task panicked on a worker thread");
        }
    }
}

/// Claims the first (or with `from_back`, the last) unclaimed task of `generation`, if any is left.
fn claim(s: &Shared, generation: u64, from_back: bool) -> Option<usize> {
    let mut current = s.claim.load(Ordering::Acquire);
    loop {
        if current & !0xFFFF_FFFF != generation {
            return None;
        }
        let (end, start) = (((current >> 16) & 0xFFFF) as usize, (current & 0xFFFF) as usize);
        if start >= end {
            return None;
        }
        let (next, task) = if from_back { (current - (1 << 16), end - 1) } else { (current + 1, start) };
        match s.claim.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(task),
            Err(seen) => current = seen,
        }
    }
}

fn run_task(s: &Shared, f: TaskFn, env: usize, i: usize) {
    // SAFETY: the task was claimed for the current generation, whose environment stays valid until `done`
    // reaches the count, which happens only after this call.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { f(env, i) }));
    if result.is_err() {
        s.panicked.store(true, Ordering::Relaxed);
    }
    s.done.fetch_add(1, Ordering::Release);
}

fn worker(s: &Shared, index: usize) {
    // Every thread computes with the same floating-point mode, so results do not depend on the thread.
    let _ftz = crate::dsp::denormal::FlushDenormals::new();
    // Everything a worker does is audio work.
    let _audio = crate::alloc::AudioContext::enter();
    // No generation yet: a job published before this thread got here is still joined (its claim word
    // tells whether any task is left).
    let mut seen = 0;
    loop {
        // Wait for a new generation: spin for a while, then park.
        let mut since = Instant::now();
        let mut spins = 0u32;
        let generation = loop {
            if s.shutdown.load(Ordering::Relaxed) {
                return;
            }
            let g = s.claim.load(Ordering::Acquire) & !0xFFFF_FFFF;
            if g != seen {
                break g;
            }
            spins += 1;
            if !spins.is_multiple_of(64) || since.elapsed() < s.spin {
                std::hint::spin_loop();
                continue;
            }
            s.sleeping[index].store(true, Ordering::SeqCst);
            if s.claim.load(Ordering::SeqCst) & !0xFFFF_FFFF == seen && !s.shutdown.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(250));
            }
            s.sleeping[index].store(false, Ordering::SeqCst);
            since = Instant::now();
        };
        seen = generation;
        while let Some(i) = claim(s, generation, true) {
            // Read after the claim: the generation cannot end (so the caller cannot rewrite the fields)
            // before this task is done.
            let (f, env) = (s.run.load(Ordering::Acquire), s.env.load(Ordering::Acquire));
            // SAFETY: `f` was stored from a `TaskFn` for this generation, as the successful claim proves.
            let f: TaskFn = unsafe { std::mem::transmute::<usize, TaskFn>(f) };
            run_task(s, f, env, i);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(threads) = self.shared.threads.get() {
            for t in threads {
                t.unpark();
            }
        }
        // The pool's threads end when their loops return.
        drop(self.pool.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_whoever_claims_it() {
        let mut w = Workers::with_spin(3, SPIN).expect("workers");
        for round in 0..2000usize {
            let hits: Vec<AtomicUsize> = (0..7).map(|_| AtomicUsize::new(0)).collect();
            let task = |i: usize| {
                hits[i].fetch_add(round + 1, Ordering::Relaxed);
            };
            w.run(7, &task);
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1), "round {round}");
        }
    }

    #[test]
    fn a_panicking_task_is_reported_to_the_caller() {
        let mut w = Workers::with_spin(1, SPIN).expect("workers");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.run(4, &|i: usize| assert!(i != 2, "task 2 fails"));
        }));
        assert!(result.is_err());
        // And the pool still works.
        let n = AtomicUsize::new(0);
        w.run(5, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 5);
    }
}
