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
    /// Answer each stdin command with one JSON object on one line (`{"ok": true, "command": ...}`), and
    /// write notices to stderr as JSON objects too: the protocol of docs/PROTOCOL.md for programs.
    #[arg(long)]
    pub json: bool,
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
                    loop on|off | status | version | help | quit";

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
                let (answer, quit) = command(&mut player, &mut state, line, args.json);
                println!("{answer}");
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
            if args.json {
                eprintln!("{}", serde_json::json!({ "event": event.to_string() }));
            } else {
                eprintln!("{event}");
            }
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

/// The protocol's version (docs/PROTOCOL.md): the `version` command's answer.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// A command's answer: the text after `ok` and the same as JSON fields.
struct Reply {
    text: String,
    data: serde_json::Value,
}

fn reply(text: impl Into<String>, data: serde_json::Value) -> Result<Reply, String> {
    Ok(Reply { text: text.into(), data })
}

fn value_json(value: &ParamValue) -> serde_json::Value {
    match value {
        ParamValue::Number(n) => serde_json::json!(n),
        ParamValue::Text(t) => serde_json::json!(t),
    }
}

/// Runs one command line; returns the answer line (plain, or one JSON object with `json`) and whether to quit.
fn command(player: &mut Player, state: &mut State, line: &str, json: bool) -> (String, bool) {
    let (verb, rest) = line.split_once(char::is_whitespace).map_or((line, ""), |(v, r)| (v, r.trim()));
    let quit = matches!(verb, "quit" | "exit");
    let result = run_command(player, state, verb, rest);
    let answer = match (result, json) {
        (Ok(r), false) if r.text.is_empty() => "ok".to_string(),
        (Ok(r), false) => format!("ok {}", r.text.replace(['\n', '\r'], " ")),
        (Err(e), false) => format!("error: {}", e.replace(['\n', '\r'], " ")),
        (Ok(r), true) => {
            let mut object = serde_json::json!({ "ok": true, "command": verb });
            if let (Some(o), serde_json::Value::Object(fields)) = (object.as_object_mut(), r.data) {
                o.extend(fields);
            }
            object.to_string()
        }
        (Err(e), true) => serde_json::json!({ "ok": false, "command": verb, "error": e }).to_string(),
    };
    (answer, quit)
}

/// Runs one command.
fn run_command(player: &mut Player, state: &mut State, verb: &str, rest: &str) -> Result<Reply, String> {
    use serde_json::json;
    let err = |e: fxgraph::Error| e.to_string();
    match verb {
        "help" => reply(HELP, json!({ "help": HELP })),
        "version" => reply(
            format!("fxgraph-play-protocol {PROTOCOL_VERSION} fxgraph {}", env!("CARGO_PKG_VERSION")),
            json!({ "protocol": PROTOCOL_VERSION, "fxgraph": env!("CARGO_PKG_VERSION") }),
        ),
        "quit" | "exit" => reply("quit", json!({})),
        "set" => {
            let (key, value) = rest.split_once(char::is_whitespace).ok_or("usage: set NODE.PARAM VALUE")?;
            let value = parse_value(value.trim());
            let engine = player.engine();
            let (node, param) = engine.split_key(key).map_err(err)?;
            engine.set(node, param, value.clone()).map_err(err)?;
            reply(
                format!("set {key} {}", show(&value)),
                json!({ "node": node, "param": param, "value": value_json(&value) }),
            )
        }
        "get" => {
            let engine = player.engine();
            let (node, param) = engine.split_key(rest).map_err(err)?;
            let value = engine.get(node, param).map_err(err)?;
            reply(
                format!("{rest} {}", show(&value)),
                json!({ "node": node, "param": param, "value": value_json(&value) }),
            )
        }
        "params" => {
            let engine = player.engine();
            let params = engine.params(rest).map_err(err)?;
            let (mut parts, mut list) = (Vec::new(), Vec::new());
            for p in params {
                let value = engine.get(rest, &p.name).ok();
                let range = match &p.choices {
                    Some(c) => c.join("|"),
                    None => format!("{} to {}{}", p.min, p.max, if p.unit.is_empty() { "" } else { " " }) + &p.unit,
                };
                parts.push(format!("{}={} ({range})", p.name, value.as_ref().map(show).unwrap_or_default()));
                list.push(json!({
                    "name": p.name, "value": value.as_ref().map(value_json), "unit": p.unit, "min": p.min, "max": p.max,
                    "choices": p.choices,
                }));
            }
            reply(format!("{rest}: {}", parts.join("; ")), json!({ "node": rest, "params": list }))
        }
        "nodes" => {
            let names = player.engine().node_names();
            reply(names.join(" "), json!({ "nodes": names }))
        }
        "load" => {
            let path = PathBuf::from(rest);
            player.engine().load(&path).map_err(err)?;
            state.graph = path;
            reply(format!("loaded {rest}"), json!({ "graph": rest }))
        }
        "presets" => {
            let names = Preset::list(&state.graph);
            reply(names.join(" "), json!({ "presets": names }))
        }
        "preset" => match rest.split_once(char::is_whitespace) {
            Some(("save", name)) => {
                let path = Preset::path_for(&state.graph, name.trim()).map_err(err)?;
                let mut preset = player.engine().snapshot().map_err(err)?;
                preset.file = path.display().to_string();
                preset.save(&path, false).map_err(err)?;
                reply(format!("saved {}", path.display()), json!({ "saved": path }))
            }
            _ => {
                let n = player.engine().apply_preset(rest).map_err(err)?;
                reply(format!("preset {rest} ({n} values)"), json!({ "preset": rest, "values": n }))
            }
        },
        "bypass" => {
            let (node, on) = rest.rsplit_once(char::is_whitespace).ok_or("usage: bypass NODE on|off")?;
            let on = match on {
                "on" => true,
                "off" => false,
                other => return Err(format!("bypass takes on or off (got \"{}\")", other.escape_debug())),
            };
            let node = node.trim();
            player.engine().bypass(node, on).map_err(err)?;
            reply(format!("bypass {node} {}", if on { "on" } else { "off" }), json!({ "node": node, "bypass": on }))
        }
        "seek" => {
            let seconds: f64 =
                rest.parse().map_err(|_| format!("seek takes seconds (got \"{}\")", rest.escape_debug()))?;
            player.seek(seconds).map_err(err)?;
            reply(format!("seek {seconds:.3}"), json!({ "position_s": seconds }))
        }
        "pause" => {
            player.pause();
            reply("paused", json!({ "state": "paused" }))
        }
        "resume" => {
            player.resume();
            reply("playing", json!({ "state": "playing" }))
        }
        "loop" => match rest {
            "on" | "off" => {
                player.set_looping(rest == "on");
                reply(format!("loop {rest}"), json!({ "loop": rest == "on" }))
            }
            _ => Err("usage: loop on|off".into()),
        },
        "status" => {
            let status = serde_json::to_value(player.status()).map_err(|e| e.to_string())?;
            reply(status.to_string(), json!({ "status": status }))
        }
        other => Err(format!("unknown command \"{}\"; {HELP}", other.escape_debug())),
    }
}
