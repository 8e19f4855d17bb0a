//! Helpers shared by the integration tests (a folder, so it is not a test binary of its own).

/// The largest click in interleaved `x` of `channels` channels: how far a sample-to-sample step exceeds what
/// the steps around it explain (twice the largest of the 8 before it and the 8 after the next: a spike's way
/// back is a step of its own), and at which frame. A click is a discontinuity, so it stands out from its
/// neighbours whatever the signal's own slope; steady dynamics, ramps and cross-fades change the steps
/// gradually and score zero or less.
#[allow(dead_code)] // Not every test binary uses every helper.
pub fn largest_click(x: &[f32], channels: usize) -> (f32, usize) {
    let frames = x.len() / channels;
    let mut worst = (f32::NEG_INFINITY, 0);
    for c in 0..channels {
        let step = |i: usize| (x[channels * i + c] - x[channels * (i - 1) + c]).abs();
        for i in 10..frames - 10 {
            let around = (i - 8..i).chain(i + 2..i + 10).map(step).fold(0.0f32, f32::max);
            let excess = step(i) - 2.0 * around;
            if excess > worst.0 {
                worst = (excess, i);
            }
        }
    }
    worst
}

/// Renders planar `input` through `graph` offline (blocks of 256 frames, one thread), with its metrics.
#[allow(dead_code)] // Not every test binary uses every helper.
pub fn render_planar(graph: fxgraph::Graph, input: Vec<Vec<f32>>) -> (Vec<Vec<f32>>, fxgraph::monitor::MetricsReport) {
    let options = fxgraph::EngineOptions { max_block: 256, threads: 1, realtime: false, ..Default::default() };
    let (mut engine, mut audio) = fxgraph::Engine::new(graph, options).expect("engine starts");
    let mut sink = fxgraph::io::stream::MemorySink::default();
    fxgraph::control::render::render(
        &mut engine,
        &mut audio,
        &mut fxgraph::io::stream::MemorySource::new(input),
        &mut sink,
        256,
        &mut |_| true,
    )
    .expect("render");
    (sink.channels, engine.metrics())
}

/// Writes planar `channels` (all as long; `f32` or `f64` values, written as `f32`) as a 32-bit float WAV at
/// `rate`.
#[allow(dead_code)] // Not every test binary uses every helper.
pub fn write_float_wav<T: Copy + Into<f64>>(path: &std::path::Path, rate: u32, channels: &[Vec<T>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create WAV");
    for t in 0..channels.first().map_or(0, Vec::len) {
        for c in channels {
            w.write_sample(c[t].into() as f32).expect("write");
        }
    }
    w.finalize().expect("finalize");
}

/// The shipped WebAssembly plugins: `FXGRAPH_PLUGIN_DIR` when set (CI points it at modules rebuilt from
/// source), otherwise `plugins/wasm`.
#[allow(dead_code)] // Not every test binary uses every helper.
pub fn plugin_dir() -> std::path::PathBuf {
    std::env::var_os("FXGRAPH_PLUGIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/wasm"))
}
