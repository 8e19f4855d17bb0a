//! A minimal player embedding fxgraph: decode a file, play it through a graph on the default sound device,
//! and turn the compressor's threshold down from the main thread while it plays.
//!
//! ```sh
//! cargo run --release --features device --example player -- graphs/enhancer.ron music.flac
//! ```
//! (Without a sound card, pass `null` as a third argument: the headless device keeps real-time pace.)

use fxgraph::prelude::*;
use std::time::{Duration, Instant};

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
    let [_, graph, input, rest @ ..] = args.as_slice() else {
        return Err(Error::Options("usage: player GRAPH.ron AUDIO_FILE [DEVICE]".into()));
    };

    // The graph's two halves: the control side (an ECS world) and the audio side.
    let graph = Graph::load(graph.as_ref())?;
    let (engine, audio) = Engine::new(graph, EngineOptions::default())?;
    // Any audio file, decoded and converted to the graph's rate and channels as it streams.
    let source = AudioFile::open(input.as_ref(), engine.format())?;

    let device = rest.first().map_or(Ok(DeviceChoice::default()), |d| d.parse())?;
    let mut player = Player::start(engine, audio, Box::new(source), PlayerOptions { device, ..Default::default() })?;
    println!("latency {} frames", player.engine().latency_frames());

    // The control loop: edits go in from here, lock-free; the device callback only copies audio.
    let started = Instant::now();
    let mut lowered = false;
    while !player.is_finished() {
        if !lowered && started.elapsed() > Duration::from_secs(5) {
            player.engine().set("compressor", "threshold_db", -30.0)?; // smoothed, no click
            lowered = true;
            println!("compressor threshold now -30 dB");
        }
        player.update()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = player.finish()?;
    println!("played {:.1} s with {} underruns", status.position_s, status.underruns);
    Ok(())
}
