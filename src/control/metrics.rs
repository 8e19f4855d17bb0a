//! The monitor's records as the control side reads them: [`MetricsReader`] (any thread) and the engine's
//! [`metrics`](Engine::metrics), [`meter_node`](Engine::meter_node) and
//! [`set_monitor`](Engine::set_monitor).

use super::*;
use crate::error::{Error, Result};
use crate::monitor::shared::{GraphStats, MeterWriter, NodeStats, SharedMeter};
use crate::monitor::{MemoryReport, MetricsReport, NodeReport};
use std::sync::{Arc, Mutex};

/// One node as a [`MetricsReader`] reports it.
#[derive(Clone)]
pub(crate) struct ReaderNode {
    pub name: String,
    pub kind: String,
    pub stats: Arc<NodeStats>,
    pub meter: Option<Arc<SharedMeter>>,
    pub latency: usize,
    /// Names of the node's status numbers.
    pub status_names: Vec<String>,
}

/// Reads the monitor's records from any thread while audio runs, without touching the engine or the
/// audio side. Cheap to clone.
#[derive(Clone)]
pub struct MetricsReader {
    stats: Arc<GraphStats>,
    nodes: Arc<Mutex<Vec<ReaderNode>>>,
    config: EngineConfig,
    heap_baseline: Option<u64>,
}

/// How long after a report the meters keep samples for the next one's spectra.
const SPECTRUM_WATCH_SECONDS: u64 = 10;

impl MetricsReader {
    /// Everything the monitor knows now.
    ///
    /// Spectra ([`crate::monitor::Levels::spectrum`]) need the latest 4096 frames, which the audio side
    /// keeps only while someone looks, in buffers of its own. Each report asks it to keep them for the next
    /// 10 seconds of audio and to publish its latest window after its next block (once it holds 4096
    /// frames): a reader that polls has spectra from its second report on, each of the 4096 frames up to
    /// the block after the report before. One that wants them in a single report at the end calls
    /// [`keep_spectrum`](Self::keep_spectrum) first, and the thread that drove the audio side
    /// [`AudioProcessor::publish_spectra`](crate::AudioProcessor::publish_spectra) after its last block
    /// ([`crate::control::render::render`] does).
    pub fn report(&self) -> MetricsReport {
        self.stats.watch_spectrum(SPECTRUM_WATCH_SECONDS * u64::from(self.config.format.sample_rate));
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let report = build_report(&nodes, &self.stats, &self.config, self.heap_baseline);
        self.stats.ask_spectrum();
        report
    }

    /// Frames the audio side has processed.
    pub fn frames(&self) -> u64 {
        self.stats.frames()
    }

    /// Has the meters keep the latest samples for spectra from now on, whether or not anyone reports (an
    /// offline render that reports once at its end). Costs the audio side a mono mix of each metered
    /// block into a buffer of its own.
    pub fn keep_spectrum(&self) {
        self.stats.watch_spectrum(u64::MAX);
    }
}

fn build_report(
    nodes: &[ReaderNode],
    g: &GraphStats,
    config: &EngineConfig,
    heap_baseline: Option<u64>,
) -> MetricsReport {
    let ns = crate::clock::ns_per_tick();
    let to_ns = |ticks: u64| (ticks as f64 * ns) as u64;
    let sr = config.format.sample_rate;
    let block_timing = g.block_timing.snapshot();
    let blocks = block_timing.calls();
    let timed = g.timed_frames();
    let block_mean_frames = if blocks == 0 { 0.0 } else { timed as f64 / blocks as f64 };
    let block_ns = block_mean_frames * 1e9 / f64::from(sr);
    let run_timing = g.run_timing.snapshot();
    let nodes: Vec<NodeReport> = nodes
        .iter()
        .map(|n| {
            let t = n.stats.timing.snapshot();
            let mean_ns = t.mean_ns() * ns;
            let memory = n.stats.memory();
            let health = n.stats.health();
            NodeReport {
                name: n.name.clone(),
                kind: n.kind.clone(),
                calls: t.calls(),
                mean_ns,
                p50_ns: to_ns(t.quantile_ns(0.5)),
                p99_ns: to_ns(t.quantile_ns(0.99)),
                max_ns: to_ns(t.max_ns()),
                faults: health.faults,
                fault_times_s: n.stats.fault_frames().iter().map(|&f| f as f64 / f64::from(sr)).collect(),
                bypassed_blocks: health.bypassed_blocks,
                bypassed_frames: health.bypassed_frames,
                replaced_samples: health.replaced_samples,
                preempted_calls: health.preempted_calls,
                memory_bytes: memory.map(|m| m.0),
                memory_cap_bytes: memory.map(|m| m.1),
                budget_share: if block_ns > 0.0 { mean_ns / block_ns } else { 0.0 },
                latency_frames: n.latency,
                levels: n.meter.as_ref().map(|m| m.snapshot().levels(sr)),
                status: n.status_names.iter().cloned().zip(n.stats.status_values(n.status_names.len())).collect(),
            }
        })
        .collect();
    let audio_ns = timed as f64 * 1e9 / f64::from(sr);
    let busy_ns = block_timing.total_ns() as f64 * ns;
    MetricsReport {
        executor: if config.threads > 1 { "parallel" } else { "serial" },
        threads: config.threads,
        sample_rate: sr,
        channels: config.format.channels,
        block_frames: config.max_block,
        blocks,
        block_mean_frames,
        frames: g.frames(),
        dsp_load: if audio_ns > 0.0 { busy_ns / audio_ns } else { 0.0 },
        blocks_over_budget: g.blocks_over_budget(),
        block_mean_ns: block_timing.mean_ns() * ns,
        block_p99_ns: to_ns(block_timing.quantile_ns(0.99)),
        block_max_ns: to_ns(block_timing.max_ns()),
        runs: run_timing.calls(),
        runs_over_budget: g.runs_over_budget(),
        run_mean_ns: run_timing.mean_ns() * ns,
        run_max_ns: to_ns(run_timing.max_ns()),
        nodes,
        output: g.output.snapshot().levels(sr),
        memory: MemoryReport::now(heap_baseline),
        nonfinite_input_samples: g.nonfinite_input(),
        dropped_messages: g.dropped_messages(),
        late_param_events: g.late_events(),
    }
}

impl Engine {
    /// Turns the monitor on or off at the audio side's next block (it starts as
    /// [`EngineOptions::monitor`] says): per-node and per-block timing, and the levels of the output and of
    /// metered nodes. While it is off the audio side reads no clock and measures nothing, and the records
    /// keep what they had: timing figures and the DSP load cover the blocks processed with it on.
    pub fn set_monitor(&mut self, on: bool) {
        // Calibrated here, once per process, on the control side.
        let ticks_per_frame =
            if on { 1e9 / f64::from(self.format().sample_rate) / crate::clock::ns_per_tick() } else { 0.0 };
        self.world.resource_mut::<EngineConfig>().monitor = on;
        self.world.resource_mut::<Link>().send(ToAudio::Monitor { on, ticks_per_frame });
    }

    /// Measures the levels at a node's output from now on (the meter is allocated here).
    ///
    /// # Errors
    /// [`Error::NoSuchNode`].
    pub fn meter_node(&mut self, name: &str) -> Result<()> {
        let e = self.node(name).ok_or_else(|| Error::NoSuchNode(name.into()))?;
        let meter = Arc::new(SharedMeter::new());
        self.world.entity_mut(e).insert(Metered(meter.clone()));
        if let Some(node) = self.world.get::<AudioNode>(e) {
            let (id, channels) = (node.id, node.layout.output_channels());
            let config = self.world.resource::<EngineConfig>();
            let loudness = config.loudness.meter(config.format.sample_rate, channels);
            self.world
                .resource_mut::<Link>()
                .send(ToAudio::Meter { node: id, meter: Some(MeterWriter::new(meter, loudness)) });
        }
        systems::refresh_reader(&mut self.world);
        Ok(())
    }

    /// A reader of the monitor's records for any thread.
    pub fn metrics_reader(&self) -> MetricsReader {
        MetricsReader {
            stats: self.stats.clone(),
            nodes: self.world.resource::<ReaderNodes>().0.clone(),
            config: self.config().clone(),
            heap_baseline: self.heap_baseline,
        }
    }

    /// Gathers what the monitor recorded (running the [`Monitor`] schedule, which fills the
    /// [`NodeTiming`] and [`NodeMeter`] components and the [`GraphMetrics`] resource), reports it as
    /// `tracing` events (target `fxgraph::monitor`) and returns it. Control side: allocates.
    pub fn metrics(&mut self) -> MetricsReport {
        let span = tracing::info_span!(target: "fxgraph::monitor", "metrics");
        let _entered = span.enter();
        self.update();
        self.world.run_schedule(Monitor);
        let report = self.metrics_reader().report();
        for n in &report.nodes {
            tracing::info!(
                target: "fxgraph::monitor",
                node = %n.name, kind = %n.kind, calls = n.calls, mean_ns = n.mean_ns, p99_ns = n.p99_ns,
                max_ns = n.max_ns, budget_share = n.budget_share, "node timing"
            );
        }
        tracing::info!(
            target: "fxgraph::monitor",
            blocks = report.blocks, dsp_load = report.dsp_load, over_budget = report.blocks_over_budget,
            peak_dbfs = report.output.peak_dbfs, rms_dbfs = report.output.rms_dbfs,
            clipped = report.output.clipped_samples, rss_bytes = report.memory.rss_bytes,
            "graph metrics"
        );
        report
    }
}
