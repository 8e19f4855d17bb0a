//! `fxgraph`: render and check effect graphs.
//!
//! Exit codes: 0 success, 2 bad input of any kind (graph, audio file, arguments), 1 anything else.

use clap::{Parser, Subcommand, ValueEnum};
use fxgraph::demo::DemoSignal;
use fxgraph::engine::{Engine, EngineError, EngineOptions, NodeParams};
use fxgraph::render::{BlockSource, render};
use fxgraph::wav::{WavFormat, WavSink, WavSource, same_file};
use fxgraph::{Graph, Registry};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: fxgraph::alloc::CountingAllocator = fxgraph::alloc::CountingAllocator;

#[derive(Parser)]
#[command(name = "fxgraph", version, about = "Audio effect graphs described in RON, rendered headlessly")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a graph over a WAV file, or over the built-in demo signal when no input is given.
    Render {
        /// The graph file (RON).
        graph: PathBuf,
        /// Input WAV file; without it, the built-in demo signal (drums, bass, chords) is rendered.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Output WAV file [default: the graph's name with .wav, in the current directory].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Frames per processing block.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
        block: u32,
        /// Worker threads; 1 runs the single-threaded reference executor [default: the number of cores].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: Option<u32>,
        /// Seconds to render: the demo's length [default: 10], or at most this much of the input.
        #[arg(long)]
        seconds: Option<f64>,
        /// Output sample format; 16 and 24 bit are TPDF-dithered.
        #[arg(long, value_enum, default_value_t = Format::F32)]
        format: Format,
        /// Also write the monitor's metrics (timing, load, levels, memory) to this JSON file.
        #[arg(long)]
        metrics: Option<PathBuf>,
    },
    /// Render the demo signal through a graph with no file output and report speed, per-node timing, DSP
    /// load, levels and memory.
    Bench {
        /// The graph file (RON).
        graph: PathBuf,
        /// Seconds of demo signal to render.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Frames per processing block.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
        block: u32,
        /// Worker threads; 1 runs the single-threaded reference executor [default: the number of cores].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: Option<u32>,
        /// Print one JSON object on stdout instead of the tables.
        #[arg(long)]
        json: bool,
    },
    /// Print a WebAssembly plugin's metadata, parameters, declared limits and ABI version, after checking that
    /// it loads and sets up.
    Plugin {
        /// The module (`NAME.wasm`, with `NAME.json` beside it).
        path: PathBuf,
    },
    /// Validate a graph and print its processing order, parallel branch groups and latency.
    Check {
        /// The graph file (RON).
        graph: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    F32,
    S16,
    S24,
    S32,
}

/// An error and the exit code it maps to.
enum Failure {
    /// Bad input: exit code 2.
    Input(anyhow::Error),
    /// Anything else: exit code 1.
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Input(e.into())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "fxgraph=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render { graph, input, output, block, threads, seconds, format, metrics } => {
            cmd_render(&graph, input.as_deref(), output, block as usize, threads, seconds, format, metrics.as_deref())
        }
        Command::Bench { graph, seconds, block, threads, json } => {
            cmd_bench(&graph, seconds, block as usize, threads, json)
        }
        Command::Check { graph } => cmd_check(&graph),
        Command::Plugin { path } => cmd_plugin(&path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path) -> Result<Graph, Failure> {
    Graph::load(path, &Registry::with_builtins()).map_err(bad_input)
}

fn start(graph: Graph, max_block: usize, threads: usize) -> Result<Engine, Failure> {
    Engine::new(graph, EngineOptions { max_block, threads, ..EngineOptions::default() }).map_err(|e| match e {
        EngineError::Node { .. } => bad_input(e),
        other => Failure::Other(other.into()),
    })
}

fn default_threads(threads: Option<u32>) -> usize {
    threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |t| t as usize)
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> Result<(), Failure> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "metrics".into());
    let tmp = path.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::Other(anyhow::anyhow!("cannot write {}: {e}", path.display()))
    })
}

#[allow(clippy::too_many_arguments)]
fn cmd_render(
    graph_path: &Path,
    input: Option<&Path>,
    output: Option<PathBuf>,
    block: usize,
    threads: Option<u32>,
    seconds: Option<f64>,
    format: Format,
    metrics: Option<&Path>,
) -> Result<(), Failure> {
    if let Some(s) = seconds
        && !(s.is_finite() && s > 0.0)
    {
        return Err(bad_input(anyhow::anyhow!("--seconds must be a positive number of seconds (got {s})")));
    }
    let graph = load(graph_path)?;
    let fmt = graph.format;
    let output = match output {
        Some(o) => o,
        None => PathBuf::from(format!("{}.wav", graph_path.file_stem().map_or("out".into(), |s| s.to_string_lossy()))),
    };
    for (what, path) in [("graph file", Some(graph_path)), ("input", input)] {
        if let Some(path) = path
            && same_file(path, &output)
        {
            return Err(bad_input(anyhow::anyhow!(
                "refusing to overwrite the {what} {}: choose another output with -o",
                path.display()
            )));
        }
    }

    // The source, and how many frames it will give (for the progress bar).
    let (mut source, total): (Box<dyn BlockSource>, u64) = match input {
        Some(path) => {
            let mut wav = WavSource::open(path).map_err(bad_input)?;
            if wav.sample_rate() != fmt.sample_rate {
                return Err(bad_input(anyhow::anyhow!(
                    "{} is at {} Hz but {} runs at {} Hz; resample the input or change the graph's sample_rate",
                    path.display(),
                    wav.sample_rate(),
                    graph_path.display(),
                    fmt.sample_rate
                )));
            }
            if wav.channels() != fmt.channels {
                return Err(bad_input(anyhow::anyhow!(
                    "{} has {} channels but {} has {}",
                    path.display(),
                    wav.channels(),
                    graph_path.display(),
                    fmt.channels
                )));
            }
            if let Some(s) = seconds {
                wav.limit((s * f64::from(fmt.sample_rate)) as u64);
            }
            let frames = wav.frames();
            (Box::new(wav), frames)
        }
        None => {
            let demo = DemoSignal::new(fmt.sample_rate, fmt.channels, seconds.unwrap_or(10.0));
            let frames = demo.total_frames();
            (Box::new(demo), frames)
        }
    };

    let threads = default_threads(threads);
    let mut engine = start(graph, block, threads)?;
    let wav_format = match format {
        Format::F32 => WavFormat::F32,
        Format::S16 => WavFormat::I16,
        Format::S24 => WavFormat::I24,
        Format::S32 => WavFormat::I32,
    };
    let mut sink = WavSink::create(&output, wav_format, fmt.channels, fmt.sample_rate)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} rendering [{bar:40}] {percent:>3}% {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let progress_bar = bar.clone();
    let mut progress = move |frames: u64| {
        if let Some(bar) = &progress_bar {
            bar.inc(frames);
        }
    };
    let started = std::time::Instant::now();
    let stats = render(&mut engine, source.as_mut(), &mut sink, block, &mut progress).map_err(|e| {
        // Reading the input is the only part of the render that can fail on bad data.
        if input.is_some() { bad_input(e) } else { Failure::Other(e) }
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let clipped = sink.clipped;
    let path = sink.finish()?;
    let audio_s = stats.frames as f64 / f64::from(fmt.sample_rate);
    eprintln!(
        "rendered {:.2} s of {} through {} in {:.3} s ({:.0}x realtime, {} thread{}, block {}) -> {}",
        audio_s,
        input.map_or("the demo signal".into(), |p| p.display().to_string()),
        graph_path.display(),
        elapsed,
        audio_s / elapsed.max(1e-9),
        threads,
        if threads == 1 { "" } else { "s" },
        block,
        path.display()
    );
    if clipped > 0 {
        eprintln!("warning: {clipped} samples exceeded full scale and were clipped in the output format");
    }
    if engine.nonfinite_input() > 0 {
        eprintln!("warning: {} non-finite input samples were replaced by silence", engine.nonfinite_input());
    }
    if let Some(metrics_path) = metrics {
        let report = engine.metrics();
        let text = serde_json::to_string_pretty(&report).map_err(|e| Failure::Other(e.into()))?;
        write_atomically(metrics_path, &text)?;
    }
    Ok(())
}

fn cmd_bench(graph_path: &Path, seconds: f64, block: usize, threads: Option<u32>, json: bool) -> Result<(), Failure> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(bad_input(anyhow::anyhow!("--seconds must be a positive number of seconds (got {seconds})")));
    }
    let graph = load(graph_path)?;
    let fmt = graph.format;
    let threads = default_threads(threads);
    // The demo signal is generated before the engine starts and timing begins, so only the engine's
    // processing (and allocations) are measured.
    let mut demo = DemoSignal::new(fmt.sample_rate, fmt.channels, seconds);
    let frames = demo.total_frames() as usize;
    let mut planar = vec![0.0f32; fmt.channels * frames];
    demo.fill(&mut fxgraph::AudioOut::new(&mut planar, frames, fmt.channels, frames));
    let channels: Vec<Vec<f32>> = planar.chunks(frames.max(1)).map(<[f32]>::to_vec).collect();
    drop(planar);
    let mut source = fxgraph::render::MemorySource::new(channels);
    let mut engine = start(graph, block, threads)?;
    let started = std::time::Instant::now();
    render(&mut engine, &mut source, &mut fxgraph::render::NullSink, block, &mut |_| {})?;
    let elapsed = started.elapsed().as_secs_f64();
    let report = engine.metrics();
    let realtime_factor = seconds / elapsed.max(1e-12);
    if json {
        let nodes: Vec<serde_json::Value> = report
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name, "kind": n.kind, "calls": n.calls, "mean_ns": n.mean_ns, "p50_ns": n.p50_ns,
                    "p99_ns": n.p99_ns, "max_ns": n.max_ns, "budget_share": n.budget_share, "faults": n.faults,
                    "memory_bytes": n.memory_bytes, "memory_cap_bytes": n.memory_cap_bytes,
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
            "blocks_over_budget": report.blocks_over_budget,
            "nodes": nodes,
            "peak_rss_bytes": report.memory.peak_rss_bytes,
            "memory": report.memory,
            "output": report.output,
        });
        println!("{out}");
        return Ok(());
    }
    let us = |ns: f64| ns / 1000.0;
    println!(
        "{}: {seconds} s of demo signal in {elapsed:.3} s, {realtime_factor:.0}x realtime ({} executor, {threads} thread{}, block {block})",
        graph_path.display(),
        report.executor,
        if threads == 1 { "" } else { "s" },
    );
    println!(
        "DSP load {:.2}%, blocks over budget {} of {}, block time mean {:.1} us, p99 {:.1} us, max {:.1} us",
        report.dsp_load * 100.0,
        report.blocks_over_budget,
        report.blocks,
        us(report.block_mean_ns),
        us(report.block_p99_ns as f64),
        us(report.block_max_ns as f64)
    );
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
    for n in &report.nodes {
        if let (Some(used), Some(cap)) = (n.memory_bytes, n.memory_cap_bytes) {
            println!("plugin {}: linear memory {} KiB of {} KiB, {} faults", n.name, used / 1024, cap / 1024, n.faults);
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
    Ok(())
}

fn cmd_check(graph_path: &Path) -> Result<(), Failure> {
    let graph = load(graph_path)?;
    let fmt = graph.format;
    let count = graph.nodes.len();
    let engine = start(graph, 512, 1)?;
    let plan = engine.plan();
    let world = engine.world();
    let kind_of = |i: usize| world.get::<NodeParams>(plan.order[i]).map_or("?", |p| p.0.kind());
    let latency_of = |i: usize| world.get::<fxgraph::engine::Latency>(plan.order[i]).map_or(0, |l| l.own);
    println!("{}: valid ({} Hz, {} channels, {count} nodes)", graph_path.display(), fmt.sample_rate, fmt.channels);
    println!("processing order:");
    let width = plan.names.iter().map(String::len).max().unwrap_or(0);
    for (i, name) in plan.names.iter().enumerate() {
        let lat = latency_of(i);
        let lat = if lat > 0 { format!("  latency {lat} frames") } else { String::new() };
        println!("  {:>2}. {name:<width$}  {}{lat}", i + 1, kind_of(i));
    }
    println!("parallel branch groups:");
    for (l, branches) in plan.levels.iter().enumerate() {
        let groups: Vec<String> = branches
            .iter()
            .map(|b| format!("[{}]", b.iter().map(|&i| plan.names[i].as_str()).collect::<Vec<_>>().join(" -> ")))
            .collect();
        println!("  level {}: {}", l + 1, groups.join("  "));
    }
    for (from, to, frames) in &plan.compensations {
        println!("latency compensation: {frames} frames on {from} -> {to}");
    }
    for name in &plan.pruned {
        println!("warning: node \"{name}\" does not reach the output and is not processed");
    }
    println!(
        "total latency: {} frames ({:.3} ms)",
        plan.latency,
        plan.latency as f64 * 1000.0 / f64::from(fmt.sample_rate)
    );
    Ok(())
}

#[cfg(feature = "wasm")]
fn cmd_plugin(path: &Path) -> Result<(), Failure> {
    use fxgraph::node::{BuildContext, GraphFormat, NodeSpec, ProcessConfig};
    use fxgraph::wasm::{ABI_VERSION, WasmSpec, inspect};
    let (manifest, module) = inspect(path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    // Set an instance up with the defaults, as a graph would: proves the exports and the buffers are sound.
    let spec = WasmSpec { path: path.display().to_string(), config: Default::default(), on_fault: Default::default() };
    let format = GraphFormat { sample_rate: 48000, channels: 2 };
    let ctx = BuildContext { format, base_dir: Path::new("") };
    let mut processor = spec.build(&ctx).map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
    processor
        .initialize(&ProcessConfig { sample_rate: 48000, channels: 2, max_block: 512 })
        .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
    processor.cleanup();
    println!("{}: {} {} ({})", path.display(), manifest.name, manifest.version, manifest.id);
    println!("ABI version {} (host implements {ABI_VERSION})", manifest.abi_version);
    println!(
        "limits: memory {} KiB (host cap {} KiB), {} us per block (deadline 10x)",
        manifest.memory_cap() / 1024,
        fxgraph::wasm::HOST_MEMORY_CAP / 1024,
        manifest.block_budget_us
    );
    println!("parameters:");
    for p in &manifest.parameters {
        let range = match (&p.choices, p.min, p.max) {
            (Some(c), ..) => format!("one of {}", c.join(", ")),
            (None, lo, hi) => format!(
                "{} to {}{}",
                lo.map_or("-inf".into(), |v| v.to_string()),
                hi.map_or("inf".into(), |v| v.to_string()),
                if p.unit.is_empty() { String::new() } else { format!(" {}", p.unit) }
            ),
        };
        let default = match &p.default {
            fxgraph::wasm::ConfigValue::Number(n) => n.to_string(),
            fxgraph::wasm::ConfigValue::Text(t) => format!("\"{t}\""),
        };
        println!("  {:>2}  {:<12} {:<16} {range}, default {default}", p.id, p.key, p.name);
    }
    let imports: Vec<String> = module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect();
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    println!("imports: {}", if imports.is_empty() { "none".into() } else { imports.join(", ") });
    println!("exports: {}", exports.join(", "));
    println!("setup: ok (initialized at 48000 Hz, 2 channels, 512 frames)");
    Ok(())
}

#[cfg(not(feature = "wasm"))]
fn cmd_plugin(_path: &Path) -> Result<(), Failure> {
    Err(Failure::Other(anyhow::anyhow!("this build of fxgraph has no WebAssembly support (feature `wasm`)")))
}
