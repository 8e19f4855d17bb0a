//! `fxgraph play`: a graph over an audio file (or the demo signal) on a sound device or the headless null
//! device, controlled line by line from stdin. Every command gets one line back on stdout, `ok ...` or
//! `error: ...`; notices (watched-file reloads, plugin messages) go to stderr.

use crate::{Failure, bad_input, default_threads, load, open_inputs, prepare_rate};
use fxgraph::graph::preset::Preset;

use fxgraph::play::{DeviceChoice, Player, PlayerOptions, list_devices};
use fxgraph::{Engine, EngineOptions, ParamValue};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The graph file (RON).
    #[arg(required_unless_present = "list_devices")]
    pub graph: Option<PathBuf>,
    /// An audio file (WAV, FLAC, MP3, Ogg Vorbis, AAC/ALAC, AIFF) for the graph's first input, converted
    /// to the graph's rate and the input's channels; without it, the built-in demo signal.
    pub input: Option<PathBuf>,
    /// A file for another of the graph's inputs, as `NAME=FILE`; once per input (silence feeds an input no
    /// file names).
    #[arg(short = 'i', long = "input")]
    pub inputs: Vec<String>,
    /// The output device: `null` (headless, real-time paced), `default`, or a name from --list-devices.
    #[arg(long)]
    pub device: Option<String>,
    /// List the output devices and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// Frames per device callback.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=65536))]
    pub buffer: u32,
    /// Also write what the device was given to this WAV file (32-bit float), when playback stops.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Start over at the end.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Follow edits to the graph file; a broken edit is reported and the last good graph plays on.
    #[arg(long)]
    pub watch: bool,
    /// Play at most this many seconds of the input [demo signal: 30].
    #[arg(long, value_parser = crate::positive_seconds, allow_negative_numbers = true)]
    pub seconds: Option<f64>,
    /// Worker threads for the graph [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Apply this preset (presets/NAME.ron beside the graph) before playing.
    #[arg(long)]
    pub preset: Option<String>,
    /// The sample rate to play at, and to prepare the graph at [default: the graph file's `sample_rate`;
    /// for a graph without one, the device's preferred rate (the null device: the input file's, or 48000)]. The input is
    /// resampled to it; no resampler sits between the graph and the device.
    #[arg(long, value_parser = clap::value_parser!(u32).range(8000..=768000))]
    pub rate: Option<u32>,
    /// ReplayGain on the input file: its ReplayGain 2.0 or R128 tags (FLAC, Vorbis, MP3, MP4), or, without
    /// tags, its loudness measured before it plays (to -18 LUFS).
    #[arg(long, value_enum, default_value_t = ReplayGainArg::Off)]
    pub replaygain: ReplayGainArg,
    /// Added to the ReplayGain gain, dB.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = gain_db, requires = "replaygain")]
    pub preamp: f64,
    /// The gain of a file without tags that cannot be measured, dB.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = gain_db, requires = "replaygain")]
    pub replaygain_fallback: f64,
    /// Let the ReplayGain gain push the file's peak over full scale.
    #[arg(long, requires = "replaygain")]
    pub allow_clipping: bool,
}

/// `play --replaygain`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReplayGainArg {
    Track,
    Album,
    Off,
}

/// A gain in dB: -48 to 48.
fn gain_db(text: &str) -> Result<f64, String> {
    crate::number_in(text, -48.0..=48.0, "a gain", "dB")
}

const HELP: &str = "commands: set NODE.PARAM VALUE | get NODE.PARAM | params NODE | nodes | load GRAPH.ron | \
                    preset NAME | preset save NAME | presets | bypass NODE on|off | seek SECONDS | pause | resume | \
                    loop on|off | status | quit";

fn play_error(e: fxgraph::Error) -> Failure {
    Failure::from(e)
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    if args.list_devices {
        for d in list_devices().map_err(play_error)? {
            println!("{}{}\t{}", d.id, if d.is_default { " (default)" } else { "" }, d.name);
        }
        if !cfg!(feature = "device") {
            eprintln!("note: this fxgraph was built without sound-device support (cargo feature `device`)");
        }
        return Ok(());
    }
    let graph_path = args.graph.ok_or_else(|| bad_input(anyhow::anyhow!("play needs a graph file")))?;
    let mut inputs: Vec<String> = args.input.iter().map(|p| p.display().to_string()).collect();
    inputs.extend(args.inputs.iter().cloned());
    if let Some(rec) = &args.record {
        let named: Vec<PathBuf> =
            inputs.iter().map(|i| PathBuf::from(i.split_once('=').map_or(i.as_str(), |(_, f)| f))).collect();
        let files = named.iter().map(|p| ("input", Some(p.as_path())));
        for (what, path) in std::iter::once(("graph file", Some(graph_path.as_path()))).chain(files) {
            if let Some(path) = path
                && fxgraph::io::wav::same_file(path, rec)
            {
                return Err(bad_input(anyhow::anyhow!(
                    "refusing to overwrite the {what} {} with the recording",
                    path.display()
                )));
            }
        }
    }
    let device = match args.device.as_deref() {
        Some(name) => name.parse::<DeviceChoice>(),
        None if cfg!(feature = "device") => Ok(DeviceChoice::default()),
        None => "default".parse::<DeviceChoice>(),
    }
    .map_err(|e| {
        bad_input(anyhow::anyhow!(
            "{e}: rebuild with `--features device` for sound devices, or play headlessly with `--device null`"
        ))
    })?;
    let graph = load(&graph_path)?;
    // A graph without a rate of its own is prepared at the device's (the null device's: the input's, or
    // 48 kHz), unless --rate says.
    let device_rate = if args.rate.is_none() && !graph.rate_given {
        fxgraph::play::preferred_rate(&device).map_err(play_error)?
    } else {
        None
    };
    let graph = prepare_rate(graph, &inputs, args.rate.or(device_rate), fxgraph::graph::DEFAULT_RATE)?;
    // ReplayGain: the first input's file at the gain its tags (or a measurement) give.
    let replaygain = fxgraph::replaygain::ReplayGain {
        mode: match args.replaygain {
            ReplayGainArg::Track => fxgraph::replaygain::ReplayGainMode::Track,
            ReplayGainArg::Album => fxgraph::replaygain::ReplayGainMode::Album,
            ReplayGainArg::Off => fxgraph::replaygain::ReplayGainMode::Off,
        },
        preamp_db: args.preamp,
        fallback_db: args.replaygain_fallback,
        measure: true,
        prevent_clipping: !args.allow_clipping,
    };
    let first_file = crate::assign_inputs(&graph, &inputs)?.into_iter().next().flatten();
    let applied = match &first_file {
        Some(path) => replaygain.decide(path).map_err(bad_input)?,
        None => None,
    };
    if let Some(a) = &applied {
        eprintln!(
            "replaygain: {:+.2} dB from {}{}",
            a.gain_db,
            a.source,
            if a.limited { " (lowered to keep the peak under full scale)" } else { "" }
        );
    }
    let source = open_inputs(&graph, &inputs, args.seconds, 30.0, applied.map(|a| a.gain_db))?.source;
    let out_channels = graph.endpoints().output_channels();
    let buffer = args.buffer as usize;
    let options = EngineOptions {
        max_block: buffer.clamp(16, 4096),
        threads: default_threads(args.threads),
        // `status` reports the output's loudness and true peak.
        loudness: fxgraph::LoudnessMetering::WithTruePeak,
        ..EngineOptions::default()
    };
    let (mut engine, audio) = Engine::new(graph, options)?;
    if let Some(name) = &args.preset {
        engine.apply_preset(name).map_err(bad_input)?;
        engine.update();
    }
    if args.watch {
        engine.watch(&graph_path).map_err(|e| Failure::Other(e.into()))?;
    }
    let mut player = Player::start(
        engine,
        audio,
        source,
        PlayerOptions { device, buffer_frames: buffer, ahead_frames: None, looping: args.looping, record: args.record },
    )
    .map_err(play_error)?;
    player.set_replaygain(applied);
    let status = player.status();
    eprintln!(
        "playing {} through {} on {} ({} Hz, {} ch, buffer {} frames, {} ahead); `help` lists the commands",
        args.input.as_ref().map_or("the demo signal".into(), |p| p.display().to_string()),
        graph_path.display(),
        status.device,
        status.sample_rate,
        out_channels,
        status.buffer_frames,
        status.ahead_frames
    );

    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot handle signals: {e}")))?;
    }
    // Stdin lines arrive through a channel, so the control loop keeps running between them.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("fxgraph-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Failure::Other(e.into()))?;

    let mut state = State { graph: graph_path.clone() };
    let mut failure = None;
    loop {
        match lines.recv_timeout(Duration::from_millis(10)) {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (answer, quit) = command(&mut player, &mut state, line);
                println!("{}", answer.replace(['\n', '\r'], " "));
                if quit {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // Stdin closed: play on to the end.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(10)),
        }
        if let Err(e) = player.update() {
            failure = Some(e);
            break;
        }
        for event in player.engine().events() {
            eprintln!("{event}");
        }
        if player.is_finished() {
            break;
        }
        let sig = signal.load(Ordering::Relaxed);
        if sig != 0 {
            eprintln!("stopping (signal {sig})");
            let (status, recorded) = player.finish().map_err(play_error)?;
            summary(&status, recorded.as_deref());
            return Err(Failure::Stopped(sig as i32));
        }
    }
    let (status, recorded) = player.finish().map_err(play_error)?;
    summary(&status, recorded.as_deref());
    match failure {
        Some(e) => Err(play_error(e)),
        None => Ok(()),
    }
}

fn summary(status: &fxgraph::play::PlayStatus, recorded: Option<&Path>) {
    eprintln!(
        "played to {:.2} s: {} underruns, {} device xruns, DSP load {:.1}%{}",
        status.position_s,
        status.underruns,
        status.device_xruns,
        status.dsp_load * 100.0,
        status.callback_allocations.map_or(String::new(), |a| format!(", {a} allocations in the callback"))
    );
    if let Some(path) = recorded {
        eprintln!("recorded -> {}", path.display());
    }
}

struct State {
    /// The graph file playing (presets are found beside it).
    graph: PathBuf,
}

/// A value as typed: a number, or a word (an enumeration's choice), quotes optional.
fn parse_value(text: &str) -> ParamValue {
    match text.parse::<f64>() {
        Ok(v) => ParamValue::Number(v),
        Err(_) => ParamValue::Text(text.trim_matches('"').to_owned()),
    }
}

fn show(value: &ParamValue) -> String {
    match value {
        ParamValue::Number(n) => format!("{n}"),
        ParamValue::Text(t) => t.clone(),
    }
}

/// Runs one command line; returns the answer and whether to quit.
fn command(player: &mut Player, state: &mut State, line: &str) -> (String, bool) {
    let (verb, rest) = line.split_once(char::is_whitespace).map_or((line, ""), |(v, r)| (v, r.trim()));
    let result: Result<String, String> = match verb {
        "help" => Ok(HELP.into()),
        "quit" | "exit" => return ("ok quit".into(), true),
        "set" => (|| {
            let (key, value) = rest.split_once(char::is_whitespace).ok_or("usage: set NODE.PARAM VALUE")?;
            let value = parse_value(value.trim());
            let engine = player.engine();
            let (node, param) = engine.split_key(key).map_err(|e| e.to_string())?;
            engine.set(node, param, value.clone()).map_err(|e| e.to_string())?;
            Ok(format!("set {key} {}", show(&value)))
        })(),
        "get" => (|| {
            let engine = player.engine();
            let (node, param) = engine.split_key(rest).map_err(|e| e.to_string())?;
            let value = engine.get(node, param).map_err(|e| e.to_string())?;
            Ok(format!("{rest} {}", show(&value)))
        })(),
        "params" => (|| {
            let engine = player.engine();
            let params = engine.params(rest).map_err(|e| e.to_string())?;
            let mut parts = Vec::new();
            for p in params {
                let value = engine.get(rest, &p.name).map(|v| show(&v)).unwrap_or_default();
                let range = match &p.choices {
                    Some(c) => c.join("|"),
                    None => format!("{} to {}{}", p.min, p.max, if p.unit.is_empty() { "" } else { " " }) + &p.unit,
                };
                parts.push(format!("{}={value} ({range})", p.name));
            }
            Ok(format!("{rest}: {}", parts.join("; ")))
        })(),
        "nodes" => Ok(player.engine().node_names().join(" ")),
        "load" => (|| {
            let path = PathBuf::from(rest);
            player.engine().load(&path).map_err(|e| e.to_string())?;
            state.graph = path;
            Ok(format!("loaded {rest}"))
        })(),
        "presets" => Ok(Preset::list(&state.graph).join(" ")),
        "preset" => match rest.split_once(char::is_whitespace) {
            Some(("save", name)) => (|| {
                let path = Preset::path_for(&state.graph, name.trim()).map_err(|e| e.to_string())?;
                let mut preset = player.engine().snapshot();
                preset.file = path.display().to_string();
                preset.save(&path, false).map_err(|e| e.to_string())?;
                Ok(format!("saved {}", path.display()))
            })(),
            _ => player
                .engine()
                .apply_preset(rest)
                .map(|n| format!("preset {rest} ({n} values)"))
                .map_err(|e| e.to_string()),
        },
        "bypass" => (|| {
            let (node, on) = rest.rsplit_once(char::is_whitespace).ok_or("usage: bypass NODE on|off")?;
            let on = match on {
                "on" => true,
                "off" => false,
                other => return Err(format!("bypass takes on or off (got \"{}\")", other.escape_debug())),
            };
            player.engine().bypass(node.trim(), on).map_err(|e| e.to_string())?;
            Ok(format!("bypass {} {}", node.trim(), if on { "on" } else { "off" }))
        })(),
        "seek" => (|| {
            let seconds: f64 =
                rest.parse().map_err(|_| format!("seek takes seconds (got \"{}\")", rest.escape_debug()))?;
            player.seek(seconds).map_err(|e| e.to_string())?;
            Ok(format!("seek {seconds:.3}"))
        })(),
        "pause" => {
            player.pause();
            Ok("paused".into())
        }
        "resume" => {
            player.resume();
            Ok("playing".into())
        }
        "loop" => match rest {
            "on" | "off" => {
                player.set_looping(rest == "on");
                Ok(format!("loop {rest}"))
            }
            _ => Err("usage: loop on|off".into()),
        },
        "status" => serde_json::to_string(&player.status()).map_err(|e| e.to_string()),
        other => Err(format!("unknown command \"{}\"; {HELP}", other.escape_debug())),
    };
    match result {
        Ok(text) if text.is_empty() => ("ok".into(), false),
        Ok(text) => (format!("ok {text}"), false),
        Err(e) => (format!("error: {e}"), false),
    }
}
