//! Playing a source through a graph in real time: the player side of fxgraph.
//!
//! Three threads besides the application's:
//!
//! - **the renderer** reads the source (decoding, resampling), drives the graph's [`AudioProcessor`] and
//!   writes interleaved samples ahead into a lock-free ring (`rtrb`) of [`PlayerOptions::ahead_frames`];
//! - **the device callback** (cpal's, or the headless `null` device's thread) only copies from that ring:
//!   no decoding, allocation, lock, log or wait. When the ring runs dry before the source has ended, it
//!   plays silence and counts an underrun;
//! - **the recorder** (with [`PlayerOptions::record`]) writes what the callback gave the device, from a
//!   second ring, to a WAV file that appears (atomically) when playback stops.
//!
//! The application keeps the control side ([`Engine`]) and calls [`Player::update`] regularly (every 10
//! to 50 ms): parameter changes, graph edits and presets then reach the renderer through the engine's
//! queues, and are heard after the audio already in the ring (at most `ahead_frames`).
//!
//! Pause, resume and seek are declicked: the callback fades out over [`DECLICK_FRAMES`] before it goes
//! quiet (or drops what a seek made stale), and fades in after; the recording holds the silence of a
//! pause, exactly as the device got it.

pub mod device;

pub use device::{DeviceChoice, DeviceInfo, list_devices, preferred_rate};

use crate::alloc::AudioContext;
use crate::audio::AudioProcessor;
use crate::control::Engine;
use crate::error::{Error, Result};
use crate::io::stream::BlockSource;
use crate::io::wav::{WavFormat, WavSink};
use crate::node::{AudioIn, AudioOut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Frames over which pause, resume and seek fade (a linear ramp): 5.3 ms at 48 kHz.
pub const DECLICK_FRAMES: usize = 256;

/// How to play.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    /// The output: [`DeviceChoice::default`] is the system's default device, or the null device in a
    /// build without the `device` feature.
    pub device: DeviceChoice,
    /// Frames the device asks for per callback (a request: a sound device may choose another size).
    pub buffer_frames: usize,
    /// Frames the renderer keeps ready ahead of the device [default: 4 buffers, at least 2048]. More
    /// survives longer stalls of the renderer; less makes edits heard sooner.
    pub ahead_frames: Option<usize>,
    /// Start again at the beginning when the source ends.
    pub looping: bool,
    /// Also write what the device was given to this WAV file (32-bit float).
    pub record: Option<PathBuf>,
}

impl Default for PlayerOptions {
    fn default() -> Self {
        Self { device: DeviceChoice::default(), buffer_frames: 512, ahead_frames: None, looping: false, record: None }
    }
}

/// State the control thread, the renderer and the callback share, all atomics but the two error slots
/// (which only the renderer and the device's error handler write, never the data callback).
pub(crate) struct Shared {
    paused: AtomicBool,
    /// A seek is under way: the callback plays silence (no underruns counted) until the renderer has
    /// filled the ring from the new position.
    seeking: AtomicBool,
    /// The renderer asks the callback to drop what the ring holds by bumping `flush_request`; the
    /// callback answers by copying it into `flush_done` once it has faded out and dropped it.
    flush_request: AtomicU32,
    flush_done: AtomicU32,
    /// The source has ended and everything is in the ring; the ring has run empty after that.
    ended: AtomicBool,
    drained: AtomicBool,
    /// Frames the callback has taken from the ring since the last seek, which went to frame `base`.
    played: AtomicU64,
    base: AtomicU64,
    callbacks: AtomicU64,
    underruns: AtomicU64,
    pub(crate) device_xruns: AtomicU64,
    /// The callback thread's own count of allocations and frees during callbacks (`u64::MAX`: not counted,
    /// the counting allocator is not installed).
    callback_allocations: AtomicU64,
    record_dropped: AtomicU64,
    stop: AtomicBool,
    pub(crate) device_error: Mutex<Option<String>>,
    render_error: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            paused: AtomicBool::new(false),
            seeking: AtomicBool::new(false),
            flush_request: AtomicU32::new(0),
            flush_done: AtomicU32::new(0),
            ended: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            played: AtomicU64::new(0),
            base: AtomicU64::new(0),
            callbacks: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            device_xruns: AtomicU64::new(0),
            callback_allocations: AtomicU64::new(u64::MAX),
            record_dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            device_error: Mutex::new(None),
            render_error: Mutex::new(None),
        }
    }
}

/// The device callback's side: copies from the ring into the device's buffer, with the declick ramp.
pub(crate) struct Feed {
    ring: rtrb::Consumer<f32>,
    record: Option<rtrb::Producer<f32>>,
    shared: Arc<Shared>,
    channels: usize,
    seen_flush: u32,
    /// The declick gain, 0 to 1, moving by `1 / DECLICK_FRAMES` per frame.
    gain: f32,
}

impl Feed {
    /// Fills `out` (interleaved, whole frames). Allocation-free, lock-free, wait-free.
    pub(crate) fn fill(&mut self, out: &mut [f32]) {
        let _audio = AudioContext::enter();
        let s = &*self.shared;
        s.callbacks.fetch_add(1, Ordering::Relaxed);
        let ch = self.channels;
        let frames = out.len() / ch;
        let flush = s.flush_request.load(Ordering::Acquire);
        let quiet = s.paused.load(Ordering::Relaxed) || s.seeking.load(Ordering::Acquire) || flush != self.seen_flush;
        let ended = s.ended.load(Ordering::Acquire);
        let step = 1.0 / DECLICK_FRAMES as f32;
        let mut n = 0;
        if !(quiet && self.gain == 0.0) {
            n = (self.ring.slots() / ch).min(frames);
            if quiet {
                // Fading out: only as many frames as the ramp needs.
                n = n.min((self.gain / step).ceil() as usize);
            }
            if let Ok(chunk) = self.ring.read_chunk(n * ch) {
                let (a, b) = chunk.as_slices();
                out[..a.len()].copy_from_slice(a);
                out[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
            }
            let target = if quiet { 0.0 } else { 1.0 };
            if self.gain != target {
                for frame in out[..n * ch].chunks_exact_mut(ch) {
                    self.gain = if quiet { (self.gain - step).max(0.0) } else { (self.gain + step).min(1.0) };
                    for v in frame {
                        *v *= self.gain;
                    }
                }
            }
            if quiet && n * ch < out.len() {
                self.gain = 0.0;
            }
            s.played.fetch_add(n as u64, Ordering::Relaxed);
            if n < frames && !quiet {
                if ended {
                    if self.ring.is_empty() {
                        s.drained.store(true, Ordering::Release);
                    }
                } else {
                    s.underruns.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out[n * ch..].fill(0.0);
        if quiet && self.gain == 0.0 && flush != self.seen_flush {
            let stale = self.ring.slots();
            if let Ok(chunk) = self.ring.read_chunk(stale) {
                chunk.commit_all();
            }
            self.seen_flush = flush;
            s.flush_done.store(flush, Ordering::Release);
        }
        if let Some(rec) = &mut self.record {
            match rec.write_chunk(out.len()) {
                Ok(mut chunk) => {
                    let (a, b) = chunk.as_mut_slices();
                    let split = a.len();
                    a.copy_from_slice(&out[..split]);
                    b.copy_from_slice(&out[split..]);
                    chunk.commit_all();
                }
                Err(_) => {
                    s.record_dropped.fetch_add(frames as u64, Ordering::Relaxed);
                }
            }
        }
        if let Some(calls) = crate::alloc::CountingAllocator::thread_audio_calls() {
            s.callback_allocations.store(calls, Ordering::Relaxed);
        }
    }
}

enum RenderCommand {
    Seek(u64, mpsc::Sender<Result<(), String>>),
    Looping(bool),
}

/// The render-ahead thread's state.
struct Renderer {
    audio: AudioProcessor,
    source: Box<dyn BlockSource>,
    ring: rtrb::Producer<f32>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<RenderCommand>,
    /// The graph's output channels (the ring's frames), and its input channels.
    channels: usize,
    in_channels: usize,
    block: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    latency: usize,
    /// Output frames still to drop (the graph's latency, after a start or seek), and silent input frames
    /// still to feed after the source ends (to flush that latency out).
    skip: usize,
    tail: usize,
    looping: bool,
    /// The source was just moved to its start by a loop: an empty read now means an empty source.
    wrapped: bool,
    /// After a seek: the callback stays quiet until the ring holds this many samples again.
    refill: Option<usize>,
    period: Duration,
}

impl Renderer {
    fn run(mut self) {
        while !self.shared.stop.load(Ordering::Acquire) {
            while let Ok(command) = self.commands.try_recv() {
                match command {
                    RenderCommand::Seek(frame, reply) => {
                        let r = self.seek(frame);
                        let _ = reply.send(r);
                    }
                    RenderCommand::Looping(on) => self.looping = on,
                }
            }
            if self.shared.ended.load(Ordering::Relaxed) || self.ring.slots() < self.block * self.channels {
                self.release_refill();
                std::thread::sleep(self.period / 4);
                continue;
            }
            if let Err(e) = self.render_block() {
                if let Ok(mut slot) = self.shared.render_error.lock() {
                    slot.get_or_insert(format!("{e:#}"));
                }
                self.shared.ended.store(true, Ordering::Release);
            }
            self.release_refill();
        }
    }

    fn release_refill(&mut self) {
        if let Some(level) = self.refill {
            let filled = self.ring.buffer().capacity() - self.ring.slots();
            if filled >= level || self.shared.ended.load(Ordering::Relaxed) {
                self.refill = None;
                self.shared.seeking.store(false, Ordering::Release);
            }
        }
    }

    fn render_block(&mut self) -> Result<()> {
        let (ch, in_ch, block) = (self.channels, self.in_channels, self.block);
        let got = self.source.read(&mut AudioOut::new(&mut self.input, block, in_ch, block))?;
        if got > 0 {
            self.wrapped = false;
        }
        let mut frames = got;
        if got < block {
            if self.looping && !self.wrapped {
                // Seamless: the rest of this block comes from the start on the next read.
                self.source.seek(0)?;
                self.wrapped = true;
                if got == 0 {
                    return Ok(());
                }
            } else {
                let pad = (block - got).min(self.tail);
                for c in 0..in_ch {
                    self.input[c * block + got..c * block + got + pad].fill(0.0);
                }
                self.tail -= pad;
                frames += pad;
                if frames == 0 {
                    self.shared.ended.store(true, Ordering::Release);
                    return Ok(());
                }
            }
        }
        self.audio.process(
            &AudioIn::new(&self.input, block, in_ch, frames),
            &mut AudioOut::new(&mut self.output, block, ch, frames),
        );
        let drop = self.skip.min(frames);
        self.skip -= drop;
        let keep = frames - drop;
        if keep > 0 {
            let mut chunk = self.ring.write_chunk(keep * ch).map_err(|e| Error::Output(format!("ring: {e}")))?;
            let (a, b) = chunk.as_mut_slices();
            let output = &self.output;
            let sample = |i: usize| output[(i % ch) * block + drop + i / ch];
            for (i, v) in a.iter_mut().enumerate() {
                *v = sample(i);
            }
            let offset = a.len();
            for (i, v) in b.iter_mut().enumerate() {
                *v = sample(offset + i);
            }
            chunk.commit_all();
        }
        Ok(())
    }

    fn seek(&mut self, frame: u64) -> Result<(), String> {
        let s = &self.shared;
        s.seeking.store(true, Ordering::Release);
        let request = s.flush_request.load(Ordering::Relaxed).wrapping_add(1);
        s.flush_request.store(request, Ordering::Release);
        // The callback fades out, drops the stale audio and answers; a device that stopped calling is
        // given a second.
        let deadline = Instant::now() + Duration::from_secs(1);
        while s.flush_done.load(Ordering::Acquire) != request && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let result = self.source.seek(frame).map_err(|e| format!("{e:#}"));
        self.audio.reset();
        self.skip = self.latency;
        self.tail = self.latency;
        self.wrapped = false;
        s.base.store(frame, Ordering::Relaxed);
        s.played.store(0, Ordering::Relaxed);
        s.drained.store(false, Ordering::Relaxed);
        s.ended.store(false, Ordering::Release);
        self.refill = Some((self.ring.buffer().capacity() / 2).min(4 * self.block * self.channels));
        result
    }
}

/// The recorder thread: what the callback gave the device, into a WAV file.
struct Recorder {
    /// 0 while recording; [`Recorder::FINISH`] to write out what is left and keep the file;
    /// [`Recorder::DISCARD`] to stop and remove it.
    stop: Arc<AtomicU32>,
    thread: std::thread::JoinHandle<Result<PathBuf>>,
}

impl Recorder {
    const FINISH: u32 = 1;
    const DISCARD: u32 = 2;

    fn start(path: &Path, channels: usize, sample_rate: u32, mut ring: rtrb::Consumer<f32>) -> Result<Self> {
        let mut sink = WavSink::create(path, WavFormat::F32, channels, sample_rate)?;
        let stop = Arc::new(AtomicU32::new(0));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("fxgraph-recorder".into()).spawn(move || {
            use crate::io::stream::BlockSink;
            const FRAMES: usize = 4096;
            let mut planar = vec![0.0f32; FRAMES * channels];
            loop {
                let stopping = flag.load(Ordering::Acquire);
                if stopping == Self::DISCARD {
                    return Err(Error::Output("recording discarded".into()));
                }
                let frames = (ring.slots() / channels).min(FRAMES);
                if frames == 0 {
                    if stopping == Self::FINISH {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let chunk = ring.read_chunk(frames * channels).map_err(|e| Error::Output(e.to_string()))?;
                let (a, b) = chunk.as_slices();
                for (i, v) in a.iter().chain(b).enumerate() {
                    planar[(i % channels) * FRAMES + i / channels] = *v;
                }
                chunk.commit_all();
                sink.write(&AudioIn::new(&planar, FRAMES, channels, frames))?;
            }
            sink.finish()
        });
        let thread = thread.map_err(|e| Error::Output(format!("recording: cannot start the writer thread: {e}")))?;
        Ok(Self { stop, thread })
    }

    fn discard(self) {
        self.stop.store(Self::DISCARD, Ordering::Release);
        let _ = self.thread.join();
    }

    fn finish(self) -> Result<PathBuf> {
        self.stop.store(Self::FINISH, Ordering::Release);
        match self.thread.join() {
            Ok(r) => r.map_err(|e| Error::Output(format!("recording: {e}"))),
            Err(_) => Err(Error::Output("recording: the recorder thread panicked".into())),
        }
    }
}

/// Where playback is and how it went, as `status` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlayStatus {
    /// `playing`, `paused` or `ended`.
    pub state: &'static str,
    /// Seconds into the source of what the device has played.
    pub position_s: f64,
    /// The source's length, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// The device playing.
    pub device: String,
    /// Its sample rate (the graph's).
    pub sample_rate: u32,
    /// Frames per callback.
    pub buffer_frames: usize,
    /// Frames the renderer keeps ready ahead of the device.
    pub ahead_frames: usize,
    /// Processing time over the real-time duration of the audio processed.
    pub dsp_load: f64,
    /// The graph's block: the most frames its nodes are called with at once.
    pub block_frames: usize,
    /// Blocks processed while the monitor was on.
    pub blocks: u64,
    /// Blocks that took longer than their real-time duration.
    pub blocks_over_budget: u64,
    /// Callbacks that found the ring short before the source had ended.
    pub underruns: u64,
    /// Over- and underruns the sound device itself reported (the `null` device: stalls longer than the
    /// two callbacks a card would buffer).
    pub device_xruns: u64,
    /// Device callbacks so far.
    pub callbacks: u64,
    /// Allocations and frees on the callback thread during callbacks, if the counting allocator is
    /// installed (it should be 0).
    pub callback_allocations: Option<u64>,
    /// Allocations and frees anywhere during audio-side work (callback, graph processing, workers).
    pub audio_allocations: Option<u64>,
    /// Frames the recording lost because its writer fell behind.
    pub record_dropped_frames: u64,
    /// The output's loudness (latest 400 ms), LUFS, when the engine measures it
    /// ([`crate::EngineOptions::loudness`]).
    pub momentary_lufs: Option<f64>,
    /// The output's loudness over the latest 3 s, LUFS.
    pub short_term_lufs: Option<f64>,
    /// The output's gated loudness since playback began, LUFS.
    pub integrated_lufs: Option<f64>,
    /// The output's largest true peak since playback began, dBTP.
    pub true_peak_dbtp: Option<f64>,
    /// The ReplayGain gain the input plays at, and where it came from (see [`Player::set_replaygain`]).
    pub replaygain: Option<crate::replaygain::AppliedGain>,
    /// Per node, in processing order.
    pub nodes: Vec<NodeStatus>,
}

/// One node's timing in a [`PlayStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Mean processing time per block (µs).
    pub mean_us: f64,
    /// 99th percentile of the processing time per block (µs).
    pub p99_us: f64,
    /// Longest processing time of a block (µs).
    pub max_us: f64,
    /// Mean time per call over a block's real-time duration.
    pub budget_share: f64,
    /// Faults (plugins).
    pub faults: u64,
    /// Blocks whose output was the node's bypass (a faulted plugin).
    pub bypassed_blocks: u64,
    /// Plugin calls that passed their deadline because the thread was preempted (late, not faulted).
    pub preempted_calls: u64,
}

/// A graph playing on a device. See the [module documentation](self).
pub struct Player {
    engine: Engine,
    shared: Arc<Shared>,
    commands: mpsc::Sender<RenderCommand>,
    renderer: Option<std::thread::JoinHandle<()>>,
    output: Option<device::Output>,
    recorder: Option<Recorder>,
    device_name: String,
    sample_rate: u32,
    buffer_frames: usize,
    ahead_frames: usize,
    duration: Option<u64>,
    looping: bool,
    /// The ReplayGain the source was given, for `status`.
    replaygain: Option<crate::replaygain::AppliedGain>,
}

impl Player {
    /// Starts playing `source` through the graph whose halves are `engine` and `audio` (from
    /// [`Engine::new`]); the source must have the graph's rate and its inputs' channels (see
    /// [`AudioFile`](crate::io::decode::AudioFile) and [`Merge`](crate::io::stream::Merge)); the device
    /// plays the graph's outputs' channels. Returns once the ring is filled and the device runs.
    ///
    /// # Errors
    /// [`Error::NoDevice`] for a device that does not exist or cannot play the graph's format,
    /// [`Error::Output`] if the recording cannot be created.
    pub fn start(
        engine: Engine,
        audio: AudioProcessor,
        source: Box<dyn BlockSource>,
        options: PlayerOptions,
    ) -> Result<Player> {
        let format = engine.format();
        let (channels, in_channels) = (audio.output_channels(), audio.input_channels());
        if !(16..=65_536).contains(&options.buffer_frames) {
            return Err(Error::Options(format!(
                "the buffer must be 16 to 65536 frames (got {})",
                options.buffer_frames
            )));
        }
        let block = options.buffer_frames;
        let ahead = options.ahead_frames.unwrap_or((4 * block).max(2048)).max(2 * block);
        let shared = Arc::new(Shared::new());
        let (producer, consumer) = rtrb::RingBuffer::new(ahead * channels);
        let (record, recorder) = match &options.record {
            Some(path) => {
                // Two seconds of slack for the writer.
                let (p, c) = rtrb::RingBuffer::new((format.sample_rate as usize * 2).max(4 * block) * channels);
                let r = Recorder::start(path, channels, format.sample_rate, c)
                    .map_err(|e| Error::Output(format!("recording: {e}")))?;
                (Some(p), Some(r))
            }
            None => (None, None),
        };
        let latency = engine.latency_frames();
        let duration = source.frames();
        let (commands, receiver) = mpsc::channel();
        let renderer = Renderer {
            audio,
            source,
            ring: producer,
            shared: shared.clone(),
            commands: receiver,
            channels,
            in_channels,
            block,
            input: vec![0.0; block * in_channels],
            output: vec![0.0; block * channels],
            latency,
            skip: latency,
            tail: latency,
            looping: options.looping,
            wrapped: false,
            refill: None,
            period: Duration::from_secs_f64(block as f64 / f64::from(format.sample_rate)),
        };
        let renderer = std::thread::Builder::new()
            .name("fxgraph-renderer".into())
            .spawn(move || renderer.run())
            .map_err(|e| Error::Options(format!("cannot start the renderer thread: {e}")))?;
        let mut player = Player {
            engine,
            shared: shared.clone(),
            commands,
            renderer: Some(renderer),
            output: None,
            recorder,
            device_name: String::new(),
            sample_rate: format.sample_rate,
            buffer_frames: block,
            ahead_frames: ahead,
            duration,
            looping: options.looping,
            replaygain: None,
        };
        // Let the renderer fill the ring before the device starts asking (up to a second).
        let deadline = Instant::now() + Duration::from_secs(1);
        while consumer.slots() + block * channels <= ahead * channels
            && !shared.ended.load(Ordering::Acquire)
            && Instant::now() < deadline
        {
            player.engine.update();
            std::thread::sleep(Duration::from_millis(1));
        }
        let feed = Feed { ring: consumer, record, shared: shared.clone(), channels, seen_flush: 0, gain: 0.0 };
        match device::open(&options.device, format.sample_rate, channels, block, feed, &shared) {
            Ok((output, name)) => {
                player.output = Some(output);
                player.device_name = name;
                Ok(player)
            }
            Err(e) => {
                // Stop the threads; the recording (empty) is not kept.
                player.shared.stop.store(true, Ordering::Release);
                if let Some(r) = player.renderer.take() {
                    let _ = r.join();
                }
                if let Some(r) = player.recorder.take() {
                    r.discard();
                }
                Err(e)
            }
        }
    }

    /// The control side: set parameters, apply presets, load graphs, read metrics.
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Control-side work: delivers edits to the audio side, collects metrics and messages. Call it every
    /// 10 to 50 ms.
    ///
    /// # Errors
    /// [`Error::Device`] once the device has failed (it was lost), [`Error::Input`] once the
    /// source failed; playback has stopped then, and [`finish`](Self::finish) ends it.
    pub fn update(&mut self) -> Result<()> {
        self.engine.update();
        if let Some(e) = self.shared.device_error.lock().ok().and_then(|mut e| e.take()) {
            return Err(Error::Device(e));
        }
        if let Some(e) = self.shared.render_error.lock().ok().and_then(|mut e| e.take()) {
            return Err(Error::Input(e));
        }
        Ok(())
    }

    /// Fades out and plays silence until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Relaxed);
    }

    /// Fades back in from a pause.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Relaxed);
    }

    /// Whether playback is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// Plays from `seconds` into the source: what is buffered is faded out and dropped, node state is
    /// cleared, and the new position fades in.
    ///
    /// # Errors
    /// [`Error::Options`] for a position outside the source, [`Error::Input`] if it cannot seek.
    pub fn seek(&mut self, seconds: f64) -> Result<()> {
        let frame = seconds * f64::from(self.sample_rate);
        let end = self.duration.map_or(f64::INFINITY, |d| d as f64);
        if !(frame.is_finite() && frame >= 0.0 && frame <= end) {
            return Err(Error::Options(match self.duration {
                Some(d) => {
                    format!("seek to 0 to {:.3} seconds (got {seconds})", d as f64 / f64::from(self.sample_rate))
                }
                None => format!("seek to a position of 0 seconds or more (got {seconds})"),
            }));
        }
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(RenderCommand::Seek(frame as u64, reply))
            .map_err(|_| Error::Input("the renderer has stopped".into()))?;
        match answer.recv_timeout(Duration::from_secs(5)) {
            Ok(r) => r.map_err(Error::Input),
            Err(_) => Err(Error::Input("the renderer did not answer the seek".into())),
        }
    }

    /// Whether playback starts over at the end.
    pub fn set_looping(&mut self, on: bool) {
        self.looping = on;
        let _ = self.commands.send(RenderCommand::Looping(on));
    }

    /// Seconds into the source of what the device has played.
    pub fn position(&self) -> f64 {
        let frames = self.shared.base.load(Ordering::Relaxed) + self.shared.played.load(Ordering::Relaxed);
        frames as f64 / f64::from(self.sample_rate)
    }

    /// The source has ended (without looping) and the device has played all of it.
    pub fn is_finished(&self) -> bool {
        self.shared.drained.load(Ordering::Acquire)
    }

    /// Underruns so far (see [`PlayStatus::underruns`]).
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    /// Records the ReplayGain gain the source plays at (applied by whoever built the source, as with
    /// [`crate::replaygain::Gained`]), for [`status`](Self::status) to report.
    pub fn set_replaygain(&mut self, gain: Option<crate::replaygain::AppliedGain>) {
        self.replaygain = gain;
    }

    /// Where playback is, with the monitor's figures.
    pub fn status(&mut self) -> PlayStatus {
        let report = self.engine.metrics();
        let s = &self.shared;
        let counted = |v: u64| (v != u64::MAX).then_some(v);
        PlayStatus {
            state: if self.is_finished() {
                "ended"
            } else if self.is_paused() {
                "paused"
            } else {
                "playing"
            },
            position_s: self.position(),
            duration_s: self.duration.map(|d| d as f64 / f64::from(self.sample_rate)),
            device: self.device_name.clone(),
            sample_rate: self.sample_rate,
            buffer_frames: self.buffer_frames,
            ahead_frames: self.ahead_frames,
            dsp_load: report.dsp_load,
            block_frames: report.block_frames,
            blocks: report.blocks,
            blocks_over_budget: report.blocks_over_budget,
            underruns: s.underruns.load(Ordering::Relaxed),
            device_xruns: s.device_xruns.load(Ordering::Relaxed),
            callbacks: s.callbacks.load(Ordering::Relaxed),
            callback_allocations: counted(s.callback_allocations.load(Ordering::Relaxed)),
            audio_allocations: crate::alloc::CountingAllocator::stats().map(|a| a.audio_calls),
            record_dropped_frames: s.record_dropped.load(Ordering::Relaxed),
            momentary_lufs: report.output.loudness.and_then(|l| l.momentary_lufs),
            short_term_lufs: report.output.loudness.and_then(|l| l.short_term_lufs),
            integrated_lufs: report.output.loudness.and_then(|l| l.integrated_lufs),
            true_peak_dbtp: report.output.loudness.and_then(|l| l.true_peak_dbtp),
            replaygain: self.replaygain,
            nodes: report
                .nodes
                .iter()
                .map(|n| NodeStatus {
                    name: n.name.clone(),
                    mean_us: n.mean_ns / 1e3,
                    p99_us: n.p99_ns as f64 / 1e3,
                    max_us: n.max_ns as f64 / 1e3,
                    budget_share: n.budget_share,
                    faults: n.faults,
                    bypassed_blocks: n.bypassed_blocks,
                    preempted_calls: n.preempted_calls,
                })
                .collect(),
        }
    }

    /// Stops the device and the renderer, and finishes the recording. Returns the last status and the
    /// recording's path.
    ///
    /// # Errors
    /// [`Error::Output`] if the recording could not be completed (its temporary file is removed), or
    /// lost frames because its writer fell behind.
    pub fn finish(mut self) -> Result<(PlayStatus, Option<PathBuf>)> {
        self.output = None; // the callbacks stop here
        let status = self.status();
        self.shared.stop.store(true, Ordering::Release);
        if let Some(r) = self.renderer.take() {
            let _ = r.join();
        }
        let recorded = match self.recorder.take() {
            Some(r) => Some(r.finish()?),
            None => None,
        };
        if status.record_dropped_frames > 0 {
            return Err(Error::Output(format!(
                "recording: {} frames were lost because the writer fell behind; the file is incomplete",
                status.record_dropped_frames
            )));
        }
        Ok((status, recorded))
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.output = None;
        self.shared.stop.store(true, Ordering::Release);
        if let Some(r) = self.renderer.take() {
            let _ = r.join();
        }
        // Dropped without `finish`: the recording is still completed (nothing played is lost).
        if let Some(r) = self.recorder.take() {
            let _ = r.finish();
        }
    }
}
