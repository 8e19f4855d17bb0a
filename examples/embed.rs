//! Embedding fxgraph in a tool: a graph rendered offline over an audio file, with the `night` preset, the
//! compressor's threshold changed halfway through (sample-accurately), and the monitor's figures at the
//! end. Everything comes from the prelude.
//!
//! ```sh
//! cargo run --release --example embed -- graphs/enhancer.ron music.flac out.wav
//! ```

use fxgraph::prelude::*;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, graph, input, output] = args.as_slice() else {
        return Err(Error::Options("usage: embed GRAPH.ron INPUT OUTPUT.wav".into()));
    };

    // Offline: nothing is late, and plugins are charged only the CPU time they use.
    let graph = Graph::load(graph.as_ref())?;
    let (mut engine, mut audio) = Engine::new(graph, EngineOptions { realtime: false, ..Default::default() })?;
    let format = engine.format();
    let mut source = AudioFile::open(input.as_ref(), format)?;
    if !source.conversion().is_empty() {
        println!("{input}: {}", source.conversion());
    }
    let mut sink = WavSink::create(output.as_ref(), WavFormat::F32, format.channels, format.sample_rate)?;

    // A preset beside the graph (graphs/presets/night.ron), and a change scheduled for the middle.
    let values = engine.apply_preset("night")?;
    let halfway = source.frames().unwrap_or(0) / 2;
    engine.set_at("compressor", "threshold_db", -20.0, halfway)?;

    // The renderer compensates the graph's latency: the output is aligned with the input, frame for frame.
    let stats = OfflineRenderer::new(&mut audio).with_engine(&mut engine).run(&mut source, &mut sink)?;
    let written = sink.finish()?;

    let report: MetricsReport = engine.metrics();
    println!(
        "{} frames -> {} (preset: {values} values; latency {} frames compensated)",
        stats.frames,
        written.display(),
        engine.latency_frames()
    );
    println!(
        "output peak {:.2} dBFS, RMS {:.2} dBFS; DSP load {:.2}%",
        report.output.peak_dbfs,
        report.output.rms_dbfs,
        report.dsp_load * 100.0
    );
    for node in &report.nodes {
        println!("  {:<12} {:>8.2} us a block, {} faults", node.name, node.mean_ns / 1e3, node.faults);
    }
    Ok(())
}
