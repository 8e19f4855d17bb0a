//! `fxgraph render`: a graph over a WAV file or the demo signal, into a WAV file, atomically.

use crate::{
    Failure, Format, bad_input, default_threads, load, open_inputs, prepare_rate, report_faults, start,
    write_atomically,
};
use fxgraph::control::render::render;
use fxgraph::io::wav::{WavFormat, WavSink, same_file};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    graph_path: &Path,
    inputs: &[String],
    output: Option<PathBuf>,
    block: usize,
    threads: Option<u32>,
    seconds: Option<f64>,
    format: Format,
    metrics: Option<&Path>,
    allow_faults: bool,
) -> Result<(), Failure> {
    let graph = prepare_rate(load(graph_path)?, inputs, None, fxgraph::graph::DEFAULT_RATE)?;
    let fmt = graph.format;
    let output = match output {
        Some(o) => o,
        None => PathBuf::from(format!("{}.wav", graph_path.file_stem().map_or("out".into(), |s| s.to_string_lossy()))),
    };
    // The source, and how many frames it will give (for the progress bar).
    let crate::GraphInputs { mut source, files, frames: total } = open_inputs(&graph, inputs, seconds, 10.0)?;
    for (what, path) in std::iter::once(("graph file", graph_path)).chain(files.iter().map(|f| ("input", f.as_path())))
    {
        if same_file(path, &output) {
            return Err(bad_input(anyhow::anyhow!(
                "refusing to overwrite the {what} {}: choose another output with -o",
                path.display()
            )));
        }
    }
    let total = total.unwrap_or(0);
    let out_channels = graph.endpoints().output_channels();

    let threads = default_threads(threads);
    let (mut engine, mut audio) = start(graph, block, threads)?;
    if metrics.is_some() {
        // The report at the end has the output's spectrum.
        engine.metrics_reader().keep_spectrum();
    }
    let wav_format = match format {
        Format::F32 => WavFormat::F32,
        Format::S16 => WavFormat::I16,
        Format::S24 => WavFormat::I24,
        Format::S32 => WavFormat::I32,
    };
    let mut sink = WavSink::create(&output, wav_format, out_channels, fmt.sample_rate)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} rendering [{bar:40}] {percent:>3}% {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    // Ctrl-C or SIGTERM stop the render between blocks; the temporary output is removed on the way out.
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot handle signals: {e}")))?;
    }
    let progress_bar = bar.clone();
    let stop = signal.clone();
    let mut progress = move |frames: u64| {
        if let Some(bar) = &progress_bar {
            bar.inc(frames);
        }
        stop.load(Ordering::Relaxed) == 0
    };
    let started = std::time::Instant::now();
    let stats = render(
        &mut engine,
        &mut audio,
        source.as_mut(),
        &mut sink,
        block * crate::offline_batch(block, threads),
        &mut progress,
    )
    .map_err(|e| match e {
        fxgraph::Error::Interrupted => {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            Failure::Signal(signal.load(Ordering::Relaxed) as i32)
        }
        e => Failure::from(e),
    });
    let stats = match stats {
        Ok(s) => s,
        Err(failure) => {
            // Remove the temporary output before leaving, whatever the reason.
            drop(sink);
            return Err(failure);
        }
    };
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
        if files.is_empty() {
            "the demo signal".to_string()
        } else {
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" + ")
        },
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
    let report = engine.metrics();
    if let Some(metrics_path) = metrics {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Failure::Other(e.into()))?;
        write_atomically(metrics_path, &text)?;
    }
    report_faults(&report, allow_faults, "render")
}
