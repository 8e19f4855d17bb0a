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
    /// Blocks it processed.
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
    /// Mean processing time over the mean block's real-time duration.
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
    /// Blocks (runs of the audio side) timed.
    pub blocks: u64,
    /// Frames processed.
    pub frames: u64,
    /// Processing time over the real-time duration of the audio processed.
    pub dsp_load: f64,
    /// Blocks whose processing took longer than their duration (the offline equivalent of an xrun).
    pub blocks_over_budget: u64,
    /// Mean processing time per block (ns).
    pub block_mean_ns: f64,
    /// 99th percentile of the processing time per block (ns).
    pub block_p99_ns: u64,
    /// Longest processing time of a block (ns).
    pub block_max_ns: u64,
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
