//! `fxgraph render`: a graph over a WAV file or the demo signal, into a WAV file, atomically.

use crate::{
    Failure, Format, bad_input, default_threads, load, open_inputs, prepare_rate, report_faults, start,
    write_atomically,
};
use fxgraph::control::render::render;
use fxgraph::io::wav::{WavSink, same_file};
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
    normalize: Option<Normalize>,
) -> Result<(), Failure> {
    let graph = prepare_rate(load(graph_path)?, inputs, None, fxgraph::graph::DEFAULT_RATE)?;
    let fmt = graph.format;
    let output = match output {
        Some(o) => o,
        None => PathBuf::from(format!("{}.wav", graph_path.file_stem().map_or("out".into(), |s| s.to_string_lossy()))),
    };
    // Normalizing, the graph renders into a temporary 32-bit float file first: the first pass.
    let (final_output, final_format) = (output.clone(), format);
    let pass1 = normalize.map(|_| {
        let name = output.file_name().map_or_else(|| "out.wav".into(), |n| n.to_string_lossy().into_owned());
        output.with_file_name(format!(".{name}.fxgraph-{}.pass1.wav", std::process::id()))
    });
    let _remove_pass1 = pass1.as_ref().map(|p| RemoveOnDrop(p.clone()));
    let (output, format) = match &pass1 {
        Some(p) => (p.clone(), Format::F32),
        None => (output, format),
    };
    // The source, and how many frames it will give (for the progress bar).
    let crate::GraphInputs { mut source, files, frames: total } = open_inputs(&graph, inputs, seconds, 10.0, None)?;
    for (what, path) in std::iter::once(("graph file", graph_path)).chain(files.iter().map(|f| ("input", f.as_path())))
    {
        if same_file(path, &output) || same_file(path, &final_output) {
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
    let mut sink = WavSink::create(&output, format.wav(), out_channels, fmt.sample_rate)?;
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
        block * fxgraph::EngineOptions::offline_batch(block, threads),
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
    if let (Some(n), Some(pass1)) = (normalize, &pass1) {
        // A plugin fault is reported before the file is normalized (or not, without --allow-faults).
        report_faults(&report, allow_faults, "render")?;
        return normalize_file(pass1, &final_output, final_format, n, block, threads);
    }
    report_faults(&report, allow_faults, "render")
}

/// What `render --normalize` aims at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normalize {
    /// Integrated loudness, LUFS.
    pub lufs: f64,
    /// True-peak ceiling, dBTP.
    pub true_peak_db: f64,
}

/// Removes a file when dropped (the first pass's temporary output, whatever happens).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn reading_line(r: &fxgraph::dsp::loudness::LoudnessReading) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
    format!(
        "integrated {} LUFS, loudness range {} LU, true peak {} dBTP, sample peak {} dBFS",
        f(r.integrated_lufs),
        f(r.loudness_range_lu),
        f(r.true_peak_dbtp),
        f(r.sample_peak_dbfs)
    )
}

/// The second pass of `render --normalize`: the first pass's output (`pass1`) measured, then through a
/// gain to the target and a true-peak limiter at the ceiling into `output`, measured again; while the
/// limiter's work leaves the loudness off the target by more than 0.05 LU, the gain is corrected (by the
/// secant through the last two passes) and the pass run again, at most six times.
fn normalize_file(
    pass1: &Path,
    output: &Path,
    format: Format,
    n: Normalize,
    block: usize,
    threads: usize,
) -> Result<(), Failure> {
    let (first, _) = fxgraph::analyze::analyze_file(pass1).map_err(Failure::from)?;
    eprintln!("pass 1 (the graph's output): {}", reading_line(&first.loudness));
    let Some(measured) = first.loudness.integrated_lufs else {
        return Err(bad_input(anyhow::anyhow!(
            "the graph's output is silent (below the -70 LUFS gate): nothing to normalize"
        )));
    };
    let (rate, channels) = (first.sample_rate, first.channels);
    let mut gain_db = n.lufs - measured;
    // The previous pass's gain and loudness: the first pass's, at no gain.
    let mut last = (0.0, measured);
    for attempt in 1..=6 {
        if !(-96.0..=48.0).contains(&gain_db) {
            return Err(bad_input(anyhow::anyhow!(
                "normalizing to {} LUFS needs {gain_db:.1} dB of gain: more than the -96..=48 dB a gain takes",
                n.lufs
            )));
        }
        let ron = format!(
            "(sample_rate: {rate}, channels: {channels}, nodes: {{ \"gain\": Gain(gain_db: {gain_db}), \
             \"limiter\": Limiter(ceiling_db: {}, lookahead_ms: 5.0, release_ms: 100.0, true_peak: true) }}, \
             edges: [(\"input\", \"gain\"), (\"gain\", \"limiter\"), (\"limiter\", \"output\")])",
            n.true_peak_db
        );
        let graph = fxgraph::Graph::parse(&ron, "normalize", ".".as_ref()).map_err(|e| Failure::Other(e.into()))?;
        let (mut engine, mut audio) = start(graph, block, threads)?;
        let format_of = fxgraph::node::GraphFormat { sample_rate: rate, channels };
        let mut source = fxgraph::io::decode::AudioFile::open(pass1, format_of).map_err(Failure::from)?;
        let mut sink = WavSink::create(output, format.wav(), channels, rate)?;
        render(
            &mut engine,
            &mut audio,
            &mut source,
            &mut sink,
            block * fxgraph::EngineOptions::offline_batch(block, threads),
            &mut |_| true,
        )
        .map_err(Failure::from)?;
        let path = sink.finish()?;
        let (second, _) = fxgraph::analyze::analyze_file(&path).map_err(Failure::from)?;
        let got = second.loudness.integrated_lufs.unwrap_or(f64::NEG_INFINITY);
        eprintln!(
            "pass 2 (gain {gain_db:+.2} dB, true-peak limiter at {} dBTP): {}",
            n.true_peak_db,
            reading_line(&second.loudness)
        );
        if (got - n.lufs).abs() <= 0.05 || !got.is_finite() || attempt == 6 {
            if (got - n.lufs).abs() > 0.2 {
                eprintln!(
                    "warning: {} reads {got:.2} LUFS, not {} LUFS: the true-peak ceiling takes more than the gain gives",
                    path.display(),
                    n.lufs
                );
            }
            eprintln!("normalized -> {}", path.display());
            return Ok(());
        }
        // Loudness rises by less than the gain where the limiter works: the slope of the last two passes.
        let slope = ((got - last.1) / (gain_db - last.0)).clamp(0.05, 1.0);
        last = (gain_db, got);
        gain_db += (n.lufs - got) / slope;
    }
    Ok(())
}
