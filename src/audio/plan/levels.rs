//! The level-by-level executors: the serial reference, and branches of a level run concurrently on the
//! workers where that pays.
#![allow(unsafe_code)] // Branches and parts of their buffers are reached by pointer; see the SAFETY notes.

use super::*;

/// Runs `work(0..own)` and the side jobs as the tasks of one job on `workers`. The caller claims tasks
/// from the front, so it starts on the work at once; workers claim from the back, so they take the side
/// jobs first.
pub(super) fn run_with_side(
    workers: &mut Workers,
    own: usize,
    side: Option<&SideJobs<'_, '_>>,
    work: impl Fn(usize) + Sync,
) {
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
pub(super) fn run_levels(
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
