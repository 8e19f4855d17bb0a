//! `fxgraph`: render, check, benchmark and inspect effect graphs.
//!
//! Exit codes: 0 success, 2 bad input of any kind (graph, audio file, arguments), 3 a render or benchmark
//! that finished but in which a plugin faulted (so its output differs from a clean run), 1 anything else.

mod analyze;
mod bench;
mod check;
mod import;
mod picture;
mod play;
mod plot;
mod plugin;
mod preset;
mod render;

use clap::{Parser, Subcommand, ValueEnum};
use fxgraph::{AudioProcessor, Engine, EngineOptions, Graph};
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
        /// Input audio file (WAV, FLAC, Ogg Vorbis, MP3), as `FILE` for the graph's first input or
        /// `NAME=FILE` for its input NAME; once per input. Without one, the built-in demo signal (drums,
        /// bass, chords) feeds the first input, and silence any other.
        #[arg(short, long)]
        input: Vec<String>,
        /// Output WAV file, holding the graph's outputs' channels in order [default: the graph's name with
        /// .wav, in the current directory].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Frames per processing block.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
        block: u32,
        /// Worker threads; 1 runs the single-threaded reference executor [default: the number of cores].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: Option<u32>,
        /// Seconds to render: the demo's length [default: 10], or at most this much of the input.
        #[arg(long, value_parser = positive_seconds, allow_negative_numbers = true)]
        seconds: Option<f64>,
        /// Output sample format; 16 and 24 bit are TPDF-dithered.
        #[arg(long, value_enum, default_value_t = Format::F32)]
        format: Format,
        /// Also write the monitor's metrics (timing, load, levels, memory) to this JSON file.
        #[arg(long)]
        metrics: Option<PathBuf>,
        /// Exit with 0 even when a plugin faulted during the render (the summary still says so).
        #[arg(long)]
        allow_faults: bool,
        /// Normalize the output to this integrated loudness (LUFS, BS.1770-4): the graph's output is
        /// measured, then a gain and a true-peak limiter bring it to the target under the --true-peak
        /// ceiling [default when given without a value: -14].
        #[arg(long, value_name = "LUFS", num_args = 0..=1, default_missing_value = "-14", allow_negative_numbers = true,
              value_parser = target_lufs)]
        normalize: Option<f64>,
        /// The true-peak ceiling of --normalize, dBTP.
        #[arg(long, value_name = "DBTP", default_value_t = -1.0, allow_negative_numbers = true, value_parser = ceiling_dbtp,
              requires = "normalize")]
        true_peak: f64,
    },
    /// Measure audio files: integrated loudness, loudness range, true and sample peak, the largest
    /// momentary and short-term loudness (BS.1770-4 / EBU R128), RMS, crest factor, dynamic range and a
    /// third-octave spectrum; with several files, the album's loudness and peaks too.
    Analyze {
        /// Audio files (WAV, FLAC, Ogg Vorbis, MP3, AAC, ALAC, AIFF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One JSON object per line for each file (keys `integrated_lufs`, `loudness_range_lu`,
        /// `true_peak_dbtp`, `sample_peak_dbfs`, `momentary_max_lufs`, `short_term_max_lufs`, ...), and one
        /// for the album.
        #[arg(long)]
        json: bool,
    },
    /// Render the demo signal through a graph with no file output and report speed, per-node timing, DSP
    /// load, levels and memory.
    Bench {
        /// The graph file (RON).
        graph: PathBuf,
        /// An audio file to render instead of the demo signal (decoded, resampled and remixed to the
        /// graph's format before timing starts): `FILE` for the graph's first input, `NAME=FILE` for its
        /// input NAME; once per input.
        #[arg(short, long)]
        input: Vec<String>,
        /// Seconds of demo signal to render (or at most this much of the input).
        #[arg(long, value_parser = positive_seconds, allow_negative_numbers = true)]
        seconds: Option<f64>,
        /// Frames per processing block.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
        block: u32,
        /// Worker threads; 1 runs the single-threaded reference executor [default: the number of cores].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: Option<u32>,
        /// Print one JSON object on stdout instead of the tables.
        #[arg(long)]
        json: bool,
        /// Also draw per-node timing and the output's level over time (.svg or .png).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Exit with 0 even when a plugin faulted during the run (the report still says so).
        #[arg(long)]
        allow_faults: bool,
        /// Also measure the output's loudness in the monitor (`true-peak`: and its true peak), to see what it
        /// costs; the JSON and the summary then show it.
        #[arg(long, value_enum, default_value_t = LoudnessArg::Off)]
        loudness: LoudnessArg,
    },
    /// Print a WebAssembly plugin's metadata, parameters, declared limits and ABI version, after checking that
    /// it loads and sets up.
    #[command(args_conflicts_with_subcommands = true)]
    Plugin {
        /// A WebAssembly module (`NAME.wasm`, with `NAME.json` beside it), a native plugin or a LADSPA
        /// library (`.so`).
        path: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<PluginCommand>,
    },
    /// Validate a graph and print its processing order, parallel branch groups and latency.
    Check {
        /// The graph file (RON).
        graph: PathBuf,
        /// Print the graph as Graphviz DOT instead: nodes with kind, key parameters and latency, edges,
        /// parallel branch groups as clusters.
        #[arg(long)]
        dot: bool,
    },
    /// Draw a graph's frequency response (magnitude and group delay, measured through the engine with an
    /// impulse below every dynamics threshold), or its topology with --topology.
    Plot {
        /// The graph file (RON).
        graph: PathBuf,
        /// The picture: .svg or .png [default: GRAPH-response.svg, GRAPH-topology.svg].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Also draw this node alone (and each band of an Eq, with the cookbook's curves); repeatable.
        #[arg(long)]
        node: Vec<String>,
        /// Also write the plotted data: .csv or .json.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also draw (and write with --data) a target response from this file: frequency (Hz) and level
        /// (dB) per line, as AutoEq's and REW's CSV and text exports hold them.
        #[arg(long)]
        target: Option<PathBuf>,
        /// The impulse's level in dBFS [default: below every compressor threshold and limiter ceiling].
        #[arg(long, allow_hyphen_values = true)]
        level: Option<f64>,
        /// Draw the topology with Graphviz's `dot` (or write the DOT when it is not installed).
        #[arg(long)]
        topology: bool,
    },
    /// Play a graph over an audio file (or the demo signal) in real time, controlled from stdin: one command
    /// per line (`help` lists them), each answered with one line, `ok ...` or `error: ...`.
    Play(play::Args),
    /// Presets: parameter values for a graph, in presets/NAME.ron beside it.
    #[command(subcommand)]
    Preset(PresetCommand),
    /// Write a graph from another tool's file.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// An EqualizerAPO / AutoEq parametric EQ profile (ParametricEQ.txt) as a graph: its filters as an Eq
    /// node's bands, its preamp as the node's gain_db. A line fxgraph does not read is an error (exit 2)
    /// naming its line and column.
    Eq {
        /// The profile.
        file: PathBuf,
        /// The graph file to write [default: stdout].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The graph's sample rate (bandwidths and slopes become the cookbook's Q at this rate).
        #[arg(long, default_value_t = 48000, value_parser = clap::value_parser!(u32).range(8000..=384000))]
        sample_rate: u32,
        /// The graph's channels.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
        channels: u32,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Install a package (.tar.gz or folder) into the first plugin folder, after validating everything.
    Install {
        package: PathBuf,
        /// Replace the same version if it is installed, and install into a folder that others can write.
        #[arg(long)]
        force: bool,
    },
    /// List the installed plugins: id, version, name, kind, parameters, modules (with their SHA-256), folder.
    List,
    /// Remove an installed plugin: ID (every version) or ID@VERSION.
    Remove { plugin: String },
    /// List the installed LV2 plugins (URI and name), or with a URI, print that plugin's features, buses and
    /// ports (found through lilv, on LV2_PATH or the standard folders).
    Lv2 { uri: Option<String> },
    /// Print the plugins of a CLAP bundle: their audio ports, parameters and the extensions fxgraph uses.
    Clap { path: PathBuf },
    /// Make a package from a plugin folder (its plugin.json and the files it names).
    Pack {
        dir: PathBuf,
        /// The package [default: ID-VERSION.tar.gz].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PresetCommand {
    /// Save the graph's values (with any --set applied) as preset NAME beside it.
    Save {
        graph: PathBuf,
        name: String,
        /// NODE.PARAM=VALUE, applied before saving (repeatable).
        #[arg(long)]
        set: Vec<String>,
        /// Overwrite an existing preset of that name.
        #[arg(long)]
        force: bool,
    },
    /// List the presets beside the graph, each checked against it.
    List { graph: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    F32,
    S16,
    S24,
    S32,
}

impl Format {
    /// The WAV sample format it names.
    pub(crate) fn wav(self) -> fxgraph::io::wav::WavFormat {
        use fxgraph::io::wav::WavFormat;
        match self {
            Format::F32 => WavFormat::F32,
            Format::S16 => WavFormat::I16,
            Format::S24 => WavFormat::I24,
            Format::S32 => WavFormat::I32,
        }
    }
}

/// An error and the exit code it maps to.
pub(crate) enum Failure {
    /// Bad input: exit code 2.
    Input(anyhow::Error),
    /// Anything else: exit code 1.
    Other(anyhow::Error),
    /// Stopped by a signal: exit code 128 + its number (130 for SIGINT, 143 for SIGTERM).
    Signal(i32),
    /// Stopped by a signal after finishing cleanly (what was played is kept): the same exit code, no
    /// message.
    Stopped(i32),
    /// Finished, but a plugin faulted (the summary is printed already): exit code 3.
    Faulted,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<fxgraph::Error> for Failure {
    fn from(e: fxgraph::Error) -> Self {
        if e.is_bad_input() { Failure::Input(e.into()) } else { Failure::Other(e.into()) }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.into())
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Other(e.into())
    }
}

pub(crate) fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Input(e.into())
}

/// Writing to a closed pipe (`fxgraph check g.ron | head`) ends the process quietly, as for other Unix
/// tools, instead of panicking in `println!`.
#[allow(unsafe_code)]
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    // Started again as an isolated plugin's host (`isolation: Process`): that is all this process does.
    #[cfg(target_os = "linux")]
    fxgraph::nodes::native::run_if_plugin_host();
    default_sigpipe();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "fxgraph=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render {
            graph,
            input,
            output,
            block,
            threads,
            seconds,
            format,
            metrics,
            allow_faults,
            normalize,
            true_peak,
        } => {
            let normalize = normalize.map(|lufs| render::Normalize { lufs, true_peak_db: true_peak });
            render::run(
                &graph,
                &input,
                output,
                block as usize,
                threads,
                seconds,
                format,
                metrics.as_deref(),
                allow_faults,
                normalize,
            )
        }
        Command::Analyze { files, json } => analyze::run(&files, json),
        Command::Bench { graph, input, seconds, block, threads, json, plot, allow_faults, loudness } => {
            let loudness = match loudness {
                LoudnessArg::Off => fxgraph::LoudnessMetering::Off,
                LoudnessArg::Loudness => fxgraph::LoudnessMetering::Loudness,
                LoudnessArg::TruePeak => fxgraph::LoudnessMetering::WithTruePeak,
            };
            bench::run(&graph, &input, seconds, block as usize, threads, json, plot.as_deref(), allow_faults, loudness)
        }
        Command::Check { graph, dot } => check::run(&graph, dot),
        Command::Plot { graph, output, node, data, target, level, topology } => {
            plot::run(&graph, output, &node, data.as_deref(), target.as_deref(), level, topology)
        }
        Command::Plugin { path, action } => match (path, action) {
            (Some(path), None) => plugin::info(&path),
            #[cfg(feature = "wasm")]
            (_, Some(PluginCommand::Install { package, force })) => plugin::packages::install(&package, force),
            #[cfg(feature = "wasm")]
            (_, Some(PluginCommand::List)) => plugin::packages::list(),
            #[cfg(feature = "wasm")]
            (_, Some(PluginCommand::Remove { plugin })) => plugin::packages::remove(&plugin),
            #[cfg(feature = "wasm")]
            (_, Some(PluginCommand::Pack { dir, output })) => plugin::packages::pack(&dir, output.as_deref()),
            #[cfg(target_os = "linux")]
            (_, Some(PluginCommand::Lv2 { uri })) => plugin::lv2(uri.as_deref()),
            #[cfg(target_os = "linux")]
            (_, Some(PluginCommand::Clap { path })) => plugin::clap(&path),
            #[cfg(not(feature = "wasm"))]
            (_, Some(_)) => {
                Err(bad_input(anyhow::anyhow!("this build of fxgraph has no WebAssembly support (feature `wasm`)")))
            }
            (None, None) => {
                Err(bad_input(anyhow::anyhow!("fxgraph plugin needs a module, or one of install, list, remove, pack")))
            }
        },
        Command::Play(args) => play::run(args),
        Command::Preset(PresetCommand::Save { graph, name, set, force }) => preset::save(&graph, &name, &set, force),
        Command::Preset(PresetCommand::List { graph }) => preset::list(&graph),
        Command::Import(ImportCommand::Eq { file, output, sample_rate, channels }) => {
            import::eq(&file, output.as_deref(), sample_rate, channels as usize)
        }
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
        Err(Failure::Signal(sig)) => {
            eprintln!("interrupted: nothing was written");
            ExitCode::from((128 + sig).clamp(0, 255) as u8)
        }
        Err(Failure::Stopped(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        Err(Failure::Faulted) => ExitCode::from(3),
    }
}

/// Says on stderr which nodes a fault changed during an offline run, when, and at what cost; then fails
/// with [`Failure::Faulted`] unless `allow` is set. A run without faults says nothing.
pub(crate) fn report_faults(report: &fxgraph::monitor::MetricsReport, allow: bool, what: &str) -> Result<(), Failure> {
    let faulted: Vec<_> = report.faulted_nodes().collect();
    if faulted.is_empty() {
        return Ok(());
    }
    eprintln!("warning: plugin faults changed this {what}; it differs from a run without them:");
    for n in faulted {
        let mut parts = Vec::new();
        if n.faults > 0 {
            let times: Vec<String> = n.fault_times_s.iter().map(|t| format!("{t:.3} s")).collect();
            let more = if (n.faults as usize) > times.len() { ", ..." } else { "" };
            parts.push(format!(
                "{} fault{} (at {}{more})",
                n.faults,
                if n.faults == 1 { "" } else { "s" },
                times.join(", ")
            ));
        }
        if n.bypassed_frames > 0 {
            parts.push(format!(
                "{} block{} bypassed ({:.3} s of audio)",
                n.bypassed_blocks,
                if n.bypassed_blocks == 1 { "" } else { "s" },
                n.bypassed_frames as f64 / f64::from(report.sample_rate)
            ));
        }
        if n.replaced_samples > 0 {
            parts.push(format!("{} non-finite output samples replaced with silence", n.replaced_samples));
        }
        eprintln!("  node \"{}\" ({}): {}", n.name, n.kind, parts.join("; "));
    }
    if allow {
        return Ok(());
    }
    eprintln!("exit code 3: pass --allow-faults to accept a {what} with faults");
    Err(Failure::Faulted)
}

/// `--seconds`: a positive, finite number of seconds (clap reports anything else as a usage error, exit 2).
pub(crate) fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        Ok(s) => Err(format!("must be a positive number of seconds (got {s})")),
        Err(e) => Err(format!("must be a positive number of seconds: {e}")),
    }
}

/// What `bench --loudness` measures.
#[derive(Clone, Copy, ValueEnum)]
enum LoudnessArg {
    Off,
    Loudness,
    TruePeak,
}

/// A number `what` in `unit` from `range`, for argument parsers.
pub(crate) fn number_in(
    text: &str,
    range: std::ops::RangeInclusive<f64>,
    what: &str,
    unit: &str,
) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be {what} from {} to {} {unit} (got {v})", range.start(), range.end())),
        Err(e) => Err(format!("must be {what} in {unit}: {e}")),
    }
}

/// A loudness target: -70 to 0 LUFS.
fn target_lufs(text: &str) -> Result<f64, String> {
    number_in(text, -70.0..=0.0, "a loudness", "LUFS")
}

/// A true-peak ceiling: -60 to 0 dBTP, as a limiter's ceiling.
fn ceiling_dbtp(text: &str) -> Result<f64, String> {
    number_in(text, -60.0..=0.0, "a ceiling", "dBTP")
}

pub(crate) fn load(path: &Path) -> Result<Graph, Failure> {
    Graph::load(path).map_err(bad_input)
}

/// The audio a graph's inputs take: from `-i` arguments (`NAME=FILE` for a named input, a bare `FILE` for
/// the first), each decoded and resampled to its input's format and cut to `limit_seconds`; the demo
/// signal (`demo_seconds` long) on a first input no argument names, silence on any other.
pub(crate) fn open_inputs(
    graph: &Graph,
    inputs: &[String],
    limit_seconds: Option<f64>,
    demo_seconds: f64,
    first_file_gain_db: Option<f64>,
) -> Result<GraphInputs, Failure> {
    use fxgraph::io::stream::{BlockSource, Limited, Merge, Silence};
    let rate = graph.format.sample_rate;
    let files = assign_inputs(graph, inputs)?;
    let limit = limit_seconds.map_or(u64::MAX, |s| (s * f64::from(rate)) as u64);
    let mut parts: Vec<(Box<dyn BlockSource>, usize)> = Vec::new();
    let mut total = None;
    for (k, (endpoint, file)) in graph.inputs.iter().zip(&files).enumerate() {
        let format = fxgraph::node::GraphFormat { sample_rate: rate, channels: endpoint.channels };
        let source: Box<dyn BlockSource> = match file {
            Some(path) => {
                let source = fxgraph::io::decode::AudioFile::open(path, format).map_err(bad_input)?;
                let note = source.conversion().to_owned();
                if !note.is_empty() {
                    eprintln!("note: {}: {note}", path.display());
                }
                match first_file_gain_db.filter(|_| k == 0) {
                    Some(db) => Box::new(fxgraph::replaygain::Gained::new(Limited::new(source, limit), db)),
                    None => Box::new(Limited::new(source, limit)),
                }
            }
            None if k == 0 => {
                let seconds = limit_seconds.unwrap_or(demo_seconds);
                Box::new(fxgraph::io::demo::DemoSignal::new(rate, endpoint.channels, seconds))
            }
            None => Box::new(Silence),
        };
        if k == 0 {
            total = source.frames().map(|f| f.min(limit));
        }
        parts.push((source, endpoint.channels));
    }
    let source: Box<dyn BlockSource> = if parts.len() == 1 {
        parts.pop().map(|(s, _)| s).ok_or_else(|| bad_input(anyhow::anyhow!("the graph has no input")))?
    } else {
        Box::new(Merge::new(parts))
    };
    Ok(GraphInputs { source, files: files.into_iter().flatten().collect(), frames: total })
}

/// The file for each of the graph's inputs, from `-i` arguments (`NAME=FILE`, or a bare `FILE` for the
/// first input).
pub(crate) fn assign_inputs(graph: &Graph, inputs: &[String]) -> Result<Vec<Option<PathBuf>>, Failure> {
    let mut files: Vec<Option<PathBuf>> = vec![None; graph.inputs.len()];
    for arg in inputs {
        let (at, path) = match arg.split_once('=') {
            Some((name, path)) if graph.inputs.iter().any(|e| e.name == name) => {
                (graph.inputs.iter().position(|e| e.name == name).unwrap_or(0), PathBuf::from(path))
            }
            _ => (0, PathBuf::from(arg)),
        };
        if files[at].is_some() {
            return Err(bad_input(anyhow::anyhow!(
                "the graph's input `{}` is given twice (-i NAME=FILE names one of: {})",
                graph.inputs[at].name,
                graph.inputs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        files[at] = Some(path);
    }
    Ok(files)
}

/// The graph at the rate it runs at: its file's `sample_rate`, else its first input file's rate, else
/// `fallback` (48 kHz for the demo signal, a device's rate); `rate` overrides all of them.
pub(crate) fn prepare_rate(
    graph: Graph,
    inputs: &[String],
    rate: Option<u32>,
    fallback: u32,
) -> Result<Graph, Failure> {
    let rate = match rate {
        Some(r) => r,
        None if graph.rate_given => return Ok(graph),
        None => match assign_inputs(&graph, inputs)?.first().cloned().flatten() {
            Some(path) => fxgraph::io::decode::Decoded::open(&path).map_err(bad_input)?.sample_rate(),
            None => fallback,
        },
    };
    graph.at_rate(rate).map_err(bad_input)
}

/// What [`open_inputs`] opened.
pub(crate) struct GraphInputs {
    /// Every input's audio, side by side.
    pub source: Box<dyn fxgraph::io::stream::BlockSource>,
    /// The files named.
    pub files: Vec<PathBuf>,
    /// The frames the source will give, when known.
    pub frames: Option<u64>,
}

/// Starts a graph for offline work: the control side and the audio side, with blocks of `max_block`
/// frames batched for the workers, and nothing due in real time.
pub(crate) fn start(graph: Graph, max_block: usize, threads: usize) -> Result<(Engine, AudioProcessor), Failure> {
    start_metering(graph, max_block, threads, fxgraph::LoudnessMetering::Off)
}

/// [`start`], with the monitor measuring loudness as `loudness` says.
pub(crate) fn start_metering(
    graph: Graph,
    max_block: usize,
    threads: usize,
    loudness: fxgraph::LoudnessMetering,
) -> Result<(Engine, AudioProcessor), Failure> {
    Engine::new(graph, EngineOptions { loudness, ..EngineOptions::offline(max_block, threads) }).map_err(Failure::from)
}

pub(crate) fn default_threads(threads: Option<u32>) -> usize {
    threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |t| t as usize)
}

/// Writes `text` to `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), Failure> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "metrics".into());
    let tmp = path.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::Other(anyhow::anyhow!("cannot write {}: {e}", path.display()))
    })
}
