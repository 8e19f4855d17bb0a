//! `fxgraph bench`: the demo signal (or input files) through a graph with no file output; speed, timing,
//! load, levels.

use crate::{Failure, bad_input, default_threads, load, open_inputs, prepare_rate, report_faults, start_metering};
use fxgraph::control::render::render;
use std::path::Path;

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    graph_path: &Path,
    inputs: &[String],
    seconds: Option<f64>,
    block: usize,
    threads: Option<u32>,
    json: bool,
    plot: Option<&Path>,
    allow_faults: bool,
    loudness: fxgraph::LoudnessMetering,
) -> Result<(), Failure> {
    let graph = prepare_rate(load(graph_path)?, inputs, None, fxgraph::graph::DEFAULT_RATE)?;
    let fmt = graph.format;
    let threads = default_threads(threads);
    // The signal is in memory before the engine starts and timing begins, so only the engine's processing
    // (and allocations) are measured.
    let limit = seconds.map(|s| (s * f64::from(fmt.sample_rate)) as u64);
    let mut source = open_inputs(&graph, inputs, seconds, 10.0, None)?.source;
    let (in_ch, graph_outputs) = (graph.endpoints().input_channels(), graph.endpoints().output_channels());
    let mut channels: Vec<Vec<f32>> = vec![Vec::new(); in_ch];
    let mut buf = vec![0.0f32; in_ch * 65536];
    loop {
        let want = limit.map_or(65536, |l| (l - channels[0].len() as u64).min(65536)) as usize;
        let got = source.read(&mut fxgraph::AudioOut::new(&mut buf, 65536, in_ch, want)).map_err(bad_input)?;
        for (c, ch) in channels.iter_mut().enumerate() {
            ch.extend_from_slice(&buf[c * 65536..c * 65536 + got]);
        }
        if got < want || want == 0 {
            break;
        }
    }
    drop(source);
    let frames = channels[0].len();
    let seconds = frames as f64 / f64::from(fmt.sample_rate);
    let mut source = fxgraph::io::stream::MemorySource::new(channels);
    let (mut engine, mut audio) = start_metering(graph, block, threads, loudness)?;
    if json {
        // The JSON has the output's spectrum at the end.
        engine.metrics_reader().keep_spectrum();
    }
    // With --plot, the output's levels are kept per 100 ms window (a pass over the output, inside the
    // timing: the realtime factor then includes it).
    let mut levels = plot.map(|_| crate::picture::LevelSink::new(fmt.sample_rate, 0.1));
    let started = std::time::Instant::now();
    let machine = fxgraph::monitor::MachineClock::start();
    let sink: &mut dyn fxgraph::io::stream::BlockSink = match &mut levels {
        Some(l) => l,
        None => &mut fxgraph::io::stream::NullSink,
    };
    render(
        &mut engine,
        &mut audio,
        &mut source,
        sink,
        block * fxgraph::EngineOptions::offline_batch(block, threads),
        &mut |_| true,
    )?;
    let elapsed = started.elapsed().as_secs_f64();
    let machine = machine.report();
    let report = engine.metrics();
    if let (Some(path), Some(levels)) = (plot, levels) {
        let track = levels.finish(graph_outputs);
        let title = graph_path.display().to_string();
        crate::picture::write_picture(
            path,
            (1200, 860),
            |a| crate::picture::draw_bench(a, &title, &report, &track),
            |a| crate::picture::draw_bench(a, &title, &report, &track),
        )?;
        eprintln!("plot -> {}", path.display());
    }
    let realtime_factor = seconds / elapsed.max(1e-12);
    if json {
        let nodes: Vec<serde_json::Value> = report
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name, "kind": n.kind, "calls": n.calls, "mean_ns": n.mean_ns, "p50_ns": n.p50_ns,
                    "p99_ns": n.p99_ns, "max_ns": n.max_ns, "budget_share": n.budget_share, "faults": n.faults,
                    "fault_times_s": n.fault_times_s, "bypassed_blocks": n.bypassed_blocks,
                    "bypassed_frames": n.bypassed_frames, "replaced_samples": n.replaced_samples,
                    "preempted_calls": n.preempted_calls, "memory_bytes": n.memory_bytes,
                    "memory_cap_bytes": n.memory_cap_bytes,
                })
            })
            .collect();
        let out = serde_json::json!({
            "graph": graph_path.display().to_string(),
            "realtime_factor": realtime_factor,
            "seconds": seconds,
            "elapsed_seconds": elapsed,
            "frames": frames,
            "block": block,
            "threads": threads,
            "executor": report.executor,
            "dsp_load": report.dsp_load,
            "blocks": report.blocks,
            "block_mean_frames": report.block_mean_frames,
            "blocks_over_budget": report.blocks_over_budget,
            "block_mean_ns": report.block_mean_ns,
            "block_p99_ns": report.block_p99_ns,
            "block_max_ns": report.block_max_ns,
            "runs": report.runs,
            "runs_over_budget": report.runs_over_budget,
            "run_mean_ns": report.run_mean_ns,
            "run_max_ns": report.run_max_ns,
            "machine": machine,
            "outliers": outliers(&report).iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            "nodes": nodes,
            "peak_rss_bytes": report.memory.peak_rss_bytes,
            "memory": report.memory,
            "output": report.output,
            "faulted": report.faulted_nodes().next().is_some(),
        });
        println!("{out}");
        return report_faults(&report, allow_faults, "benchmark");
    }
    let us = |ns: f64| ns / 1000.0;
    println!(
        "{}: {seconds} s of {} in {elapsed:.3} s, {realtime_factor:.0}x realtime ({} executor, {threads} thread{}, block {block})",
        graph_path.display(),
        if inputs.is_empty() { "demo signal".to_string() } else { inputs.join(" + ") },
        report.executor,
        if threads == 1 { "" } else { "s" },
    );
    let block_us = report.block_mean_frames * 1e6 / f64::from(report.sample_rate);
    println!(
        "DSP load {:.2}%, blocks ({} frames, {block_us:.0} us) over budget {} of {}, block time mean {:.1} us, p99 {:.1} us, max {:.1} us",
        report.dsp_load * 100.0,
        report.block_frames,
        report.blocks_over_budget,
        report.blocks,
        us(report.block_mean_ns),
        us(report.block_p99_ns as f64),
        us(report.block_max_ns as f64)
    );
    if report.runs != report.blocks {
        println!(
            "the executor's hand-offs: {} of {:.0} frames, mean {:.1} us, max {:.1} us, {} over budget (timed as a \
             whole: the block figures above count each block of a hand-off at its mean)",
            report.runs,
            report.frames as f64 / report.runs.max(1) as f64,
            us(report.run_mean_ns),
            us(report.run_max_ns as f64),
            report.runs_over_budget
        );
    }
    let width = report.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<12} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "node", "kind", "mean us", "p50 us", "p99 us", "max us", "budget"
    );
    for n in &report.nodes {
        println!(
            "{:<width$}  {:<12} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>7.2}%",
            n.name,
            n.kind,
            us(n.mean_ns),
            us(n.p50_ns as f64),
            us(n.p99_ns as f64),
            us(n.max_ns as f64),
            n.budget_share * 100.0
        );
    }
    for n in outliers(&report) {
        println!(
            "note: {}'s longest call ({:.1} us) is {:.0} times its p99 ({:.1} us): a thread the machine descheduled \
             more likely than a slow node",
            n.name,
            us(n.max_ns as f64),
            n.max_ns as f64 / n.p99_ns.max(1) as f64,
            us(n.p99_ns as f64)
        );
    }
    println!(
        "machine: the driving thread ran {:.3} s of the {:.3} s (not running {:.3} s: descheduled, or waiting for \
         workers){}",
        machine.cpu_seconds,
        machine.wall_seconds,
        machine.not_running_seconds(),
        machine.preemptions.map_or(String::new(), |p| format!("; threads preempted {p} times"))
    );
    for n in &report.nodes {
        if let (Some(used), Some(cap)) = (n.memory_bytes, n.memory_cap_bytes) {
            println!("plugin {}: linear memory {} KiB of {} KiB, {} faults", n.name, used / 1024, cap / 1024, n.faults);
        }
        if !n.status.is_empty() {
            let values: Vec<String> = n.status.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            println!("plugin {}: {}, {} faults", n.name, values.join(", "), n.faults);
        }
    }
    let mib = |b: Option<u64>| b.map_or("n/a".to_string(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    println!(
        "memory: resident {}, peak resident {}, heap allocated since start {}, heap live {}",
        mib(report.memory.rss_bytes),
        mib(report.memory.peak_rss_bytes),
        mib(report.memory.heap_allocated_since_start_bytes),
        mib(report.memory.heap_live_bytes)
    );
    let o = &report.output;
    println!(
        "output: peak {:.2} dBFS, RMS {:.2} dBFS, crest factor {:.2} dB, dynamic range {:.1} dB, clipped samples {}",
        o.peak_dbfs, o.rms_dbfs, o.crest_factor_db, o.dynamic_range_db, o.clipped_samples
    );
    report_faults(&report, allow_faults, "benchmark")
}

/// Nodes whose longest call is far above their 99th percentile (ten times, and over 100 us): a thread
/// descheduled by the machine, most likely.
fn outliers(report: &fxgraph::monitor::MetricsReport) -> Vec<&fxgraph::monitor::NodeReport> {
    report.nodes.iter().filter(|n| n.max_ns > 100_000 && n.max_ns > 10 * n.p99_ns.max(1)).collect()
}
