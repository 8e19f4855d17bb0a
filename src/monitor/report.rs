//! What the monitor reports: per node, per graph, and the process's memory.

use super::Levels;
use serde::Serialize;

/// Timing of one node, in a report.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// The node's name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Calls it processed: blocks, and parts of blocks where a parameter event was due.
    pub calls: u64,
    /// Mean processing time per block (ns).
    pub mean_ns: f64,
    /// Median processing time per block (ns).
    pub p50_ns: u64,
    /// 99th percentile of the processing time per block (ns).
    pub p99_ns: u64,
    /// Longest processing time of a block (ns).
    pub max_ns: u64,
    /// Faults the node reported (plugins: traps, error returns, bad output, overruns).
    pub faults: u64,
    /// When the first faults happened: seconds from the start of the node's processing (at most 16).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fault_times_s: Vec<f64>,
    /// Blocks whose output was, wholly or in part, the node's bypass instead of the plugin's, and the frames
    /// that were.
    pub bypassed_blocks: u64,
    /// Frames of output that were the node's bypass.
    pub bypassed_frames: u64,
    /// Non-finite output samples of a plugin replaced with silence.
    pub replaced_samples: u64,
    /// Plugin calls that passed their deadline in wall time while the plugin had not used it (its thread
    /// was preempted): late blocks, not faults.
    pub preempted_calls: u64,
    /// A plugin's linear memory now, and its cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<usize>,
    /// A plugin's cap on its linear memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_cap_bytes: Option<usize>,
    /// Mean processing time per call over the real-time duration of a block (see
    /// [`MetricsReport::block_mean_frames`]).
    pub budget_share: f64,
    /// Frames of latency the node adds.
    pub latency_frames: usize,
    /// Levels at the node's output, if it is metered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<Levels>,
    /// A plugin's named status numbers (native plugins that declare some).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<(String, f64)>,
}

/// Memory, where the platform and the application make it available.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    /// Resident set size of the process now (Linux).
    pub rss_bytes: Option<u64>,
    /// Peak resident set size of the process (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Heap bytes allocated since the engine was created, if the application installed
    /// [`crate::alloc::CountingAllocator`].
    pub heap_allocated_since_start_bytes: Option<u64>,
    /// Heap bytes live now, with the same condition.
    pub heap_live_bytes: Option<u64>,
}

impl MemoryReport {
    /// Reads the process's memory now. `baseline` is the counting allocator's total at engine start.
    pub fn now(baseline: Option<u64>) -> Self {
        let (rss, peak) = proc_status();
        let counted = crate::alloc::CountingAllocator::stats();
        Self {
            rss_bytes: rss,
            peak_rss_bytes: peak,
            heap_allocated_since_start_bytes: counted.zip(baseline).map(|(s, b)| s.allocated_total.saturating_sub(b)),
            heap_live_bytes: counted.map(|s| s.live),
        }
    }
}

/// VmRSS and VmHWM from /proc/self/status, in bytes.
fn proc_status() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return (None, None) };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).map(|kb| kb * 1024))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Everything the monitor knows, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// `serial` or `parallel`.
    pub executor: &'static str,
    /// Threads the audio side runs on.
    pub threads: usize,
    /// The graph's sample rate.
    pub sample_rate: u32,
    /// The graph's channels.
    pub channels: usize,
    /// The most frames nodes are called with at once: the engine's `max_block` (`--block`).
    pub block_frames: usize,
    /// Blocks timed: what nodes are called with, at most [`block_frames`](Self::block_frames) each. A run
    /// of the audio side of `n` frames is `n / block_frames` blocks, rounded up; offline that is frames /
    /// block.
    pub blocks: u64,
    /// The mean frames of a block timed (the real-time budget of a block is this over the sample rate).
    pub block_mean_frames: f64,
    /// Frames processed.
    pub frames: u64,
    /// Processing time over the real-time duration of the audio processed.
    pub dsp_load: f64,
    /// Blocks whose processing took longer than their duration (the offline equivalent of an xrun). In a
    /// run of several blocks (offline hand-offs), each block counts at the run's mean.
    pub blocks_over_budget: u64,
    /// Mean processing time per block (ns).
    pub block_mean_ns: f64,
    /// 99th percentile of the processing time per block (ns); a run of several blocks counts each at its
    /// mean.
    pub block_p99_ns: u64,
    /// Longest processing time of a block (ns), with the same rule.
    pub block_max_ns: u64,
    /// Runs of the audio side timed: its calls (a device callback), or offline the executor's hand-offs of
    /// several blocks (`EngineOptions::batch`), which the monitor times as a whole.
    pub runs: u64,
    /// Runs that took longer than their real-time duration.
    pub runs_over_budget: u64,
    /// Mean processing time per run (ns).
    pub run_mean_ns: f64,
    /// Longest processing time of a run (ns).
    pub run_max_ns: u64,
    /// Nodes in processing order.
    pub nodes: Vec<NodeReport>,
    /// Levels at the graph's output.
    pub output: Levels,
    /// The process's memory.
    pub memory: MemoryReport,
    /// Non-finite input samples replaced by silence.
    pub nonfinite_input_samples: u64,
    /// Node messages lost because the queue to the control side was full.
    pub dropped_messages: u64,
    /// Parameter changes scheduled for a frame ([`Engine::set_at`](crate::Engine::set_at)) that were applied
    /// later, because the audio side's list of pending events was full.
    pub late_param_events: u64,
}

impl NodeReport {
    /// Whether a fault changed the node's output: it faulted, was bypassed, or had samples replaced.
    pub fn faulted(&self) -> bool {
        self.faults > 0 || self.bypassed_frames > 0 || self.replaced_samples > 0
    }
}

impl MetricsReport {
    /// The nodes whose output a fault changed (see [`NodeReport::faulted`]).
    pub fn faulted_nodes(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(|n| n.faulted())
    }
}

/// What the machine did to a run, from the thread that drove it: to tell a slow graph from a busy machine.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MachineReport {
    /// Wall time of the run (s).
    pub wall_seconds: f64,
    /// CPU time the driving thread used meanwhile (s). Below the wall time by the time it was not running:
    /// descheduled by the machine, or waiting (for a worker's branch, for I/O).
    pub cpu_seconds: f64,
    /// Times the process's threads were preempted meanwhile (involuntary context switches; Linux).
    pub preemptions: Option<u64>,
}

impl MachineReport {
    /// The wall time the driving thread was not running.
    pub fn not_running_seconds(&self) -> f64 {
        (self.wall_seconds - self.cpu_seconds).max(0.0)
    }
}

/// Starts measuring a run on the calling thread (see [`MachineReport`]).
#[derive(Debug, Clone, Copy)]
pub struct MachineClock {
    wall: std::time::Instant,
    cpu_ns: u64,
    switches: Option<u64>,
}

impl MachineClock {
    /// Now, on the calling thread.
    pub fn start() -> Self {
        Self {
            wall: std::time::Instant::now(),
            cpu_ns: crate::clock::thread_cpu_ns(),
            switches: involuntary_switches(),
        }
    }

    /// The run so far, on the calling thread (the one that called [`start`](Self::start)).
    pub fn report(&self) -> MachineReport {
        MachineReport {
            wall_seconds: self.wall.elapsed().as_secs_f64(),
            cpu_seconds: crate::clock::thread_cpu_ns().saturating_sub(self.cpu_ns) as f64 * 1e-9,
            preemptions: involuntary_switches().zip(self.switches).map(|(now, then)| now.saturating_sub(then)),
        }
    }
}

/// Involuntary context switches of every thread of the process so far (Linux's `/proc/self/task`).
fn involuntary_switches() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}
