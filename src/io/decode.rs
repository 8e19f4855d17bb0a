//! Reading any audio file as a stream of planar blocks at the graph's format.
//!
//! - WAV (RIFF and RF64, 8- to 32-bit integer, 32- and 64-bit float) is read by fxgraph's own reader
//!   ([`crate::io::wav`]), which converts whole blocks at once; everything else (FLAC, MP3, Ogg Vorbis, AAC
//!   and ALAC in MP4, AIFF) is decoded by `symphonia`, packet by packet.
//! - A file at another sample rate is resampled with `rubato`'s synchronous FFT resampler (its
//!   highest-quality mode; a Blackman-Harris window, the start-up delay trimmed so the output lines up
//!   with the input, and exactly `round(frames * out_rate / in_rate)` frames out).
//! - Channels: a mono file feeds both channels of a stereo graph (the same signal on each); a stereo file
//!   feeds a mono graph as `(left + right) / 2`. Any other difference is an error.
//!
//! Everything streams: memory stays the same whatever the file's length.

use crate::error::{Error, Explain, Result};
use crate::io::stream::BlockSource;
use crate::io::wav::WavSource;
use crate::node::AudioOut;
use crate::node::GraphFormat;
use std::path::{Path, PathBuf};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// A decoded file: its rate and channels as stored.
pub struct Decoded {
    inner: Inner,
    rate: u32,
    channels: usize,
    frames: Option<u64>,
    gain_tags: GainTags,
}

/// A file's loudness tags: ReplayGain 2.0 (`REPLAYGAIN_TRACK_GAIN`, `..._PEAK`, the album's) and R128
/// (`R128_TRACK_GAIN`, `R128_ALBUM_GAIN`: Q7.8 dB relative to -23 LUFS), as the gain to ReplayGain's
/// -18 LUFS reference and the peak as a linear magnitude.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GainTags {
    /// The track's gain, dB.
    pub track_gain_db: Option<f64>,
    /// The track's peak (1.0 = full scale).
    pub track_peak: Option<f64>,
    /// The album's gain, dB.
    pub album_gain_db: Option<f64>,
    /// The album's peak.
    pub album_peak: Option<f64>,
}

impl GainTags {
    /// Takes one tag (key and value as stored; standard ReplayGain tags by the standard key symphonia
    /// maps them to, or the raw key).
    fn take(&mut self, key: &str, value: &str) {
        let key = key.to_ascii_uppercase();
        // Keys as stored: Vorbis comments plain, ID3v2 `TXXX:REPLAYGAIN_...`, MP4 `----:com.apple.iTunes:...`.
        let name = key.rsplit([':', '/']).next().unwrap_or(&key);
        let number = || {
            let v = value.trim();
            let v = v.strip_suffix("dB").or_else(|| v.strip_suffix("DB")).or_else(|| v.strip_suffix("db")).unwrap_or(v);
            v.trim().parse::<f64>().ok().filter(|x| x.is_finite())
        };
        match name {
            "REPLAYGAIN_TRACK_GAIN" => self.track_gain_db = number().or(self.track_gain_db),
            "REPLAYGAIN_TRACK_PEAK" => self.track_peak = number().filter(|p| *p > 0.0).or(self.track_peak),
            "REPLAYGAIN_ALBUM_GAIN" => self.album_gain_db = number().or(self.album_gain_db),
            "REPLAYGAIN_ALBUM_PEAK" => self.album_peak = number().filter(|p| *p > 0.0).or(self.album_peak),
            // R128 gains are to -23 LUFS; ReplayGain's reference is -18 LUFS, 5 dB louder.
            "R128_TRACK_GAIN" => self.track_gain_db = number().map(|q| q / 256.0 + 5.0).or(self.track_gain_db),
            "R128_ALBUM_GAIN" => self.album_gain_db = number().map(|q| q / 256.0 + 5.0).or(self.album_gain_db),
            _ => {}
        }
    }

    /// Reads the tags of every metadata revision a format reader holds (the container's and any ID3
    /// tags found ahead of it).
    fn of(format: &mut dyn FormatReader) -> Self {
        use symphonia::core::meta::StandardTag;
        let mut tags = Self::default();
        let mut metadata = format.metadata();
        loop {
            if let Some(revision) = metadata.current() {
                let containers = std::iter::once(&revision.media).chain(revision.per_track.iter().map(|t| &t.metadata));
                for tag in containers.flat_map(|c| c.tags.iter()) {
                    let standard = match &tag.std {
                        Some(StandardTag::ReplayGainTrackGain(v)) => Some(("REPLAYGAIN_TRACK_GAIN", v)),
                        Some(StandardTag::ReplayGainTrackPeak(v)) => Some(("REPLAYGAIN_TRACK_PEAK", v)),
                        Some(StandardTag::ReplayGainAlbumGain(v)) => Some(("REPLAYGAIN_ALBUM_GAIN", v)),
                        Some(StandardTag::ReplayGainAlbumPeak(v)) => Some(("REPLAYGAIN_ALBUM_PEAK", v)),
                        _ => None,
                    };
                    match standard {
                        Some((key, value)) => tags.take(key, value),
                        None => tags.take(&tag.raw.key, &tag.raw.value.to_string()),
                    }
                }
            }
            if metadata.pop().is_none() {
                break;
            }
        }
        tags
    }
}

enum Inner {
    Wav(WavSource),
    Symphonia(Box<SymphoniaSource>),
}

impl Decoded {
    /// Opens `path`: WAV by fxgraph's reader, anything else by symphonia.
    ///
    /// # Errors
    /// A message naming the file if it cannot be read, or is not audio fxgraph can decode.
    pub fn open(path: &Path) -> Result<Self> {
        let mut head = [0u8; 4];
        let is_wav = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .map(|()| matches!(&head, b"RIFF" | b"RF64" | b"BW64"))
            .input(|| format!("{}: cannot read", path.display()))?;
        if is_wav {
            let wav = WavSource::open(path)?;
            let (rate, channels, frames) = (wav.sample_rate(), wav.channels(), wav.frames());
            let gain_tags = GainTags::default();
            return Ok(Self { inner: Inner::Wav(wav), rate, channels, frames: Some(frames), gain_tags });
        }
        let mut src = SymphoniaSource::open(path)?;
        let (rate, channels, frames) = (src.rate, src.channels, src.frames);
        let gain_tags = GainTags::of(src.format.as_mut());
        Ok(Self { inner: Inner::Symphonia(Box::new(src)), rate, channels, frames, gain_tags })
    }

    /// Its ReplayGain and R128 tags (none for WAV).
    pub fn gain_tags(&self) -> GainTags {
        self.gain_tags
    }

    /// The file's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// The file's channel count.
    pub fn channels(&self) -> usize {
        self.channels
    }
}

impl BlockSource for Decoded {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        match &mut self.inner {
            Inner::Wav(w) => w.read(out),
            Inner::Symphonia(s) => s.read(out),
        }
    }

    fn frames(&self) -> Option<u64> {
        match &self.inner {
            Inner::Wav(w) => Some(w.frames()),
            Inner::Symphonia(_) => self.frames,
        }
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        match &mut self.inner {
            Inner::Wav(w) => w.seek(frame),
            Inner::Symphonia(s) => s.seek(frame),
        }
    }
}

/// A file decoded by symphonia.
struct SymphoniaSource {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track: u32,
    rate: u32,
    channels: usize,
    frames: Option<u64>,
    /// Decoded frames not yet handed out (planar), from `fifo_at` on.
    fifo: Vec<Vec<f32>>,
    fifo_at: usize,
    planes: Vec<Vec<f32>>,
    /// Frames handed out so far (the position), and frames still to drop after a seek.
    position: u64,
    skip: u64,
    done: bool,
    /// Where the next packet should start, in the track's time base: a later start is a gap where damaged
    /// data was skipped.
    next_ts: Option<i64>,
    /// Frames decoded since the start (for comparing with what the stream declares), while no seek
    /// happened.
    decoded: u64,
    from_start: bool,
}

impl SymphoniaSource {
    fn open(path: &Path) -> Result<Self> {
        let bad = |e: String| Error::Input(format!("{}: not a readable audio file: {e}", path.display()));
        let file = std::fs::File::open(path).input(|| format!("{}: cannot open", path.display()))?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
            .map_err(|e| bad(e.to_string()))?;
        let track = format.default_track(TrackType::Audio).ok_or_else(|| bad("no audio track".into()))?;
        let params = track.codec_params.as_ref().and_then(|p| p.audio()).ok_or_else(|| bad("no audio codec".into()))?;
        let rate = params.sample_rate.ok_or_else(|| bad("no sample rate".into()))?;
        let channels = params.channels.as_ref().map(|c| c.count()).ok_or_else(|| bad("no channel layout".into()))?;
        if channels == 0 || rate == 0 {
            return Err(bad("no channels, or a rate of 0 Hz".into()));
        }
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| bad(format!("unsupported codec: {e}")))?;
        let (id, frames) = (track.id, track.num_frames);
        Ok(Self {
            path: path.to_path_buf(),
            format,
            decoder,
            track: id,
            rate,
            channels,
            frames,
            fifo: vec![Vec::new(); channels],
            fifo_at: 0,
            planes: Vec::new(),
            position: 0,
            skip: 0,
            done: false,
            next_ts: None,
            decoded: 0,
            from_start: true,
        })
    }

    fn available(&self) -> usize {
        self.fifo.first().map_or(0, |c| c.len() - self.fifo_at)
    }

    /// Decodes one more packet into the FIFO; false at the end.
    fn decode_packet(&mut self) -> Result<bool> {
        let position = self.position as f64 / f64::from(self.rate);
        let packet = match self.format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => return self.end(),
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return self.end(),
            Err(e) => {
                return Err(Error::Input(format!(
                    "{}: corrupt or unreadable data at {:.3} s: {e}",
                    self.path.display(),
                    position
                )));
            }
        };
        if packet.track_id != self.track {
            return Ok(true);
        }
        // The demuxer skips damaged data by looking for the next packet: a jump in time means audio lost.
        let (ts, dur) = (packet.pts.get(), packet.dur.get() as i64);
        // (Before the first decoded frame, codecs that prime their decoder, such as Vorbis, start late.)
        if let Some(expected) = self.next_ts
            && ts > expected
            && self.decoded > 0
        {
            return Err(Error::Input(format!(
                "{}: corrupt data at {:.3} s: {} frames are missing there",
                self.path.display(),
                position,
                ts - expected
            )));
        }
        self.next_ts = Some(ts + dur);
        let decoded = match self.decoder.decode(&packet) {
            Ok(d) => d,
            Err(e) => {
                return Err(Error::Input(format!("{}: corrupt data at {:.3} s: {e}", self.path.display(), position)));
            }
        };
        if decoded.num_planes() != self.channels {
            let planes = decoded.num_planes();
            return Err(Error::Input(format!(
                "{}: the channel count changes at {position:.3} s ({} to {planes})",
                self.path.display(),
                self.channels
            )));
        }
        decoded.copy_to_vecs_planar::<f32>(&mut self.planes);
        self.decoded += self.planes.first().map_or(0, Vec::len) as u64;
        // Drop what a seek asked to skip; compact the FIFO before it grows.
        let n = self.planes.first().map_or(0, Vec::len);
        let drop = (self.skip.min(n as u64)) as usize;
        self.skip -= drop as u64;
        if self.fifo_at > 0 {
            for c in &mut self.fifo {
                c.drain(..self.fifo_at);
            }
            self.fifo_at = 0;
        }
        for (f, p) in self.fifo.iter_mut().zip(&self.planes) {
            f.extend_from_slice(&p[drop..]);
        }
        Ok(true)
    }

    /// The end of the stream: an error if it is shorter than its header declares.
    fn end(&mut self) -> Result<bool> {
        if let Some(declared) = self.frames
            && self.from_start
            && self.decoded < declared
        {
            return Err(Error::Input(format!(
                "{}: corrupt or truncated data: it ends after {:.3} s, {} of its {declared} declared frames",
                self.path.display(),
                self.decoded as f64 / f64::from(self.rate),
                self.decoded
            )));
        }
        Ok(false)
    }

    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let want = out.frames();
        while self.available() < want && !self.done {
            if !self.decode_packet()? {
                self.done = true;
            }
        }
        let n = want.min(self.available());
        for c in 0..out.channels() {
            let dst = &mut out.channel_mut(c)[..n];
            match self.fifo.get(c) {
                Some(src) => dst.copy_from_slice(&src[self.fifo_at..self.fifo_at + n]),
                None => dst.fill(0.0),
            }
        }
        self.fifo_at += n;
        self.position += n as u64;
        Ok(n)
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        let secs = frame as f64 / f64::from(self.rate);
        let time = symphonia::core::units::Time::try_from_secs_f64(secs)
            .ok_or_else(|| Error::Input("seek position out of range".into()))?;
        let seeked = self
            .format
            .seek(SeekMode::Accurate, SeekTo::Time { time, track_id: Some(self.track) })
            .map_err(|e| Error::Input(format!("{}: cannot seek to {secs:.3} s: {e}", self.path.display())))?;
        self.decoder.reset();
        for c in &mut self.fifo {
            c.clear();
        }
        self.fifo_at = 0;
        // An accurate seek lands at or before the request: drop the frames in between.
        let (actual, required) = (seeked.actual_ts.get(), seeked.required_ts.get());
        self.skip = u64::try_from(required.saturating_sub(actual)).unwrap_or(0);
        self.position = frame;
        self.done = false;
        self.next_ts = None;
        self.from_start = false;
        Ok(())
    }
}

/// A source seen at another channel count: mono to stereo (both channels the same), or stereo to mono
/// (the mean of the two).
pub struct Remixed<S> {
    inner: S,
    from: usize,
    to: usize,
    buf: Vec<f32>,
}

impl<S: BlockSource> Remixed<S> {
    /// # Errors
    /// For any change but 1 to 2 or 2 to 1 channels (or none).
    pub fn new(inner: S, from: usize, to: usize) -> Result<Self> {
        if from != to && !matches!((from, to), (1, 2) | (2, 1)) {
            return Err(Error::Input(format!(
                "has {from} channels and the graph {to}: only mono and stereo convert into each other"
            )));
        }
        Ok(Self { inner, from, to, buf: Vec::new() })
    }
}

impl<S: BlockSource> BlockSource for Remixed<S> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        if self.from == self.to {
            return self.inner.read(out);
        }
        let frames = out.frames();
        self.buf.resize(self.from * frames, 0.0);
        let n = self.inner.read(&mut AudioOut::new(&mut self.buf, frames, self.from, frames))?;
        match (self.from, self.to) {
            (1, 2) => {
                let (l, r) = out.pair_mut(0, 1);
                l[..n].copy_from_slice(&self.buf[..n]);
                r[..n].copy_from_slice(&self.buf[..n]);
            }
            _ => {
                let (l, r) = self.buf.split_at(frames);
                for ((y, a), b) in out.channel_mut(0)[..n].iter_mut().zip(l).zip(r) {
                    *y = 0.5 * (a + b);
                }
            }
        }
        Ok(n)
    }

    fn frames(&self) -> Option<u64> {
        self.inner.frames()
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        self.inner.seek(frame)
    }
}

/// A source resampled to another rate (see the module documentation).
pub struct Resampled<S> {
    inner: S,
    resampler: rubato::Fft<f32>,
    channels: usize,
    rate_in: u32,
    rate_out: u32,
    /// Planar input chunk (`chunk` frames per channel) and output chunk.
    input: Vec<f32>,
    output: Vec<f32>,
    chunk: usize,
    out_max: usize,
    fifo: Vec<Vec<f32>>,
    fifo_at: usize,
    /// Output frames still to drop (the resampler's delay), input frames read, output frames handed out.
    delay: usize,
    frames_in: u64,
    frames_out: u64,
    inner_done: bool,
}

impl<S: BlockSource> Resampled<S> {
    /// # Errors
    /// If rubato cannot build a resampler for these rates.
    pub fn new(inner: S, channels: usize, rate_in: u32, rate_out: u32) -> Result<Self> {
        use rubato::Resampler;
        let chunk = 1024;
        let resampler =
            rubato::Fft::<f32>::new(rate_in as usize, rate_out as usize, chunk, channels, rubato::FixedSync::Input)
                .map_err(|e| Error::Input(format!("cannot resample {rate_in} Hz to {rate_out} Hz: {e}")))?;
        let out_max = resampler.output_frames_max();
        let chunk = resampler.input_frames_next();
        // Rates with no common factor make rubato's FFTs long; past this the memory is not worth it.
        if chunk > 1 << 18 || out_max > 1 << 18 {
            return Err(Error::Input(format!(
                "cannot resample {rate_in} Hz to {rate_out} Hz: the two rates share too small a common factor"
            )));
        }
        Ok(Self {
            delay: resampler.output_delay(),
            resampler,
            channels,
            rate_in,
            rate_out,
            input: vec![0.0; channels * chunk],
            output: vec![0.0; channels * out_max],
            chunk,
            out_max,
            fifo: vec![Vec::new(); channels],
            fifo_at: 0,
            inner,
            frames_in: 0,
            frames_out: 0,
            inner_done: false,
        })
    }

    /// Output frames the input read so far becomes: `round(frames_in * out / in)`.
    fn target(&self) -> u64 {
        (self.frames_in as u128 * u128::from(self.rate_out) * 2 + u128::from(self.rate_in)) as u64
            / (2 * u64::from(self.rate_in))
    }

    fn available(&self) -> usize {
        self.fifo[0].len() - self.fifo_at
    }

    /// Resamples one more chunk into the FIFO; false when everything is out.
    fn step(&mut self) -> Result<bool> {
        use audioadapter_buffers::direct::SequentialSlice;
        use rubato::{Indexing, Resampler};
        let ch = self.channels;
        let mut got = 0;
        if !self.inner_done {
            got = self.inner.read(&mut AudioOut::new(&mut self.input, self.chunk, ch, self.chunk))?;
            self.frames_in += got as u64;
            self.inner_done = got < self.chunk;
        }
        let produced = self.frames_out + self.available() as u64;
        if self.inner_done && got == 0 && produced >= self.target() {
            return Ok(false);
        }
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: (got < self.chunk).then_some(got),
            active_channels_mask: None,
        };
        let input = SequentialSlice::new(&self.input[..], ch, self.chunk).map_err(|e| Error::Input(format!("{e}")))?;
        let mut output = SequentialSlice::new_mut(&mut self.output[..], ch, self.out_max)
            .map_err(|e| Error::Input(format!("{e}")))?;
        let (_, n) = self
            .resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| Error::Input(format!("resampling failed: {e}")))?;
        let drop = self.delay.min(n);
        self.delay -= drop;
        // Never more than the input's length makes.
        let room = self.target().saturating_sub(produced) as usize;
        let keep = (n - drop).min(if self.inner_done { room } else { usize::MAX });
        if self.fifo_at > 0 {
            for c in &mut self.fifo {
                c.drain(..self.fifo_at);
            }
            self.fifo_at = 0;
        }
        for (c, f) in self.fifo.iter_mut().enumerate() {
            let plane = &self.output[c * self.out_max..c * self.out_max + n];
            f.extend_from_slice(&plane[drop..drop + keep]);
        }
        Ok(true)
    }
}

impl<S: BlockSource> BlockSource for Resampled<S> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let want = out.frames();
        while self.available() < want {
            if !self.step()? {
                break;
            }
        }
        let n = want.min(self.available());
        for c in 0..out.channels().min(self.channels) {
            out.channel_mut(c)[..n].copy_from_slice(&self.fifo[c][self.fifo_at..self.fifo_at + n]);
        }
        self.fifo_at += n;
        self.frames_out += n as u64;
        Ok(n)
    }

    fn frames(&self) -> Option<u64> {
        self.inner.frames().map(|f| (f as u128 * u128::from(self.rate_out) / u128::from(self.rate_in)) as u64)
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        use rubato::Resampler;
        let at_in = (frame as u128 * u128::from(self.rate_in) / u128::from(self.rate_out)) as u64;
        self.inner.seek(at_in)?;
        self.resampler.reset();
        self.delay = self.resampler.output_delay();
        for c in &mut self.fifo {
            c.clear();
        }
        self.fifo_at = 0;
        self.frames_in = at_in;
        self.frames_out = self.target();
        self.inner_done = false;
        Ok(())
    }
}

/// The sample rates an input file may have (the graphs' range, and down to 1 kHz for old recordings).
pub const INPUT_RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;

/// An audio file opened for a graph: decoded (WAV by fxgraph's own reader, FLAC, MP3, Ogg Vorbis, AAC,
/// ALAC and AIFF by symphonia), its channels mixed (mono to stereo, stereo to mono) and its rate resampled
/// to the graph's format, streaming: a [`BlockSource`] whose memory stays flat whatever the file's length.
pub struct AudioFile {
    source: Box<dyn BlockSource>,
    conversion: String,
}

impl AudioFile {
    /// Opens `path` for a graph of `format`.
    ///
    /// # Errors
    /// [`Error::Input`] naming the file, for a file that cannot be read or decoded, a sample rate outside
    /// [`INPUT_RATES`], or a channel count that does not convert to the graph's.
    pub fn open(path: &Path, format: GraphFormat) -> Result<Self> {
        let (source, conversion) = open_input(path, format)?;
        Ok(Self { source, conversion })
    }

    /// What was converted to fit the graph (`resampled from 44100 Hz to 48000 Hz`...): empty if nothing.
    pub fn conversion(&self) -> &str {
        &self.conversion
    }
}

impl BlockSource for AudioFile {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        self.source.read(out)
    }

    fn frames(&self) -> Option<u64> {
        self.source.frames()
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        self.source.seek(frame)
    }
}

/// Checks that `path`'s sample rate `rate` is one fxgraph reads ([`INPUT_RATES`]).
///
/// # Errors
/// [`Error::Input`] naming the file and the rates it may have.
pub fn check_input_rate(path: &Path, rate: u32) -> Result<()> {
    if INPUT_RATES.contains(&rate) {
        return Ok(());
    }
    Err(Error::Input(format!(
        "{}: a sample rate of {rate} Hz is not audio fxgraph plays (inputs are {} to {} Hz)",
        path.display(),
        INPUT_RATES.start(),
        INPUT_RATES.end()
    )))
}

/// Opens an audio file as a source at the graph's rate and channel count: decoded, remixed and resampled
/// as the module documentation says. Returns it with a note on what was converted (empty if nothing).
///
/// # Errors
/// A message naming the file for a file that cannot be decoded or a channel count that cannot convert.
fn open_input(path: &Path, format: GraphFormat) -> Result<(Box<dyn BlockSource>, String)> {
    let decoded = Decoded::open(path)?;
    let (rate, channels) = (decoded.sample_rate(), decoded.channels());
    check_input_rate(path, rate)?;
    let mut notes = Vec::new();
    let remixed = Remixed::new(decoded, channels, format.channels)
        .map_err(|e| Error::Input(format!("{} {e}", path.display())))?;
    if channels != format.channels {
        notes.push(format!("{channels} channel(s) mixed to {}", format.channels));
    }
    if rate == format.sample_rate {
        return Ok((Box::new(remixed), notes.join(", ")));
    }
    notes.push(format!("resampled from {rate} Hz to {} Hz", format.sample_rate));
    let resampled = Resampled::new(remixed, format.channels, rate, format.sample_rate)?;
    Ok((Box::new(resampled), notes.join(", ")))
}

#[cfg(test)]
mod gain_tag_tests {
    use super::GainTags;

    #[test]
    fn gain_tags_parse_as_taggers_write_them() {
        let mut t = GainTags::default();
        t.take("replaygain_track_gain", "-6.48 dB");
        t.take("TXXX:REPLAYGAIN_TRACK_PEAK", "0.988");
        t.take("----:com.apple.iTunes:replaygain_album_gain", "+1.20 dB");
        t.take("REPLAYGAIN_ALBUM_PEAK", "not a number");
        t.take("COMMENT", "-3 dB");
        assert_eq!(
            t,
            GainTags {
                track_gain_db: Some(-6.48),
                track_peak: Some(0.988),
                album_gain_db: Some(1.2),
                album_peak: None
            }
        );
        // R128 (Opus): Q7.8 dB to -23 LUFS; -512 is -2 dB there, +3 dB to ReplayGain's -18 LUFS.
        let mut r = GainTags::default();
        r.take("R128_TRACK_GAIN", "-512");
        r.take("R128_ALBUM_GAIN", "256");
        assert_eq!((r.track_gain_db, r.album_gain_db), (Some(3.0), Some(6.0)));
    }
}
