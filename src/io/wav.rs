//! WAV input and output: 8-, 16-, 24-, 32-bit integer and 32-, 64-bit float in, 16-, 24-, 32-bit integer
//! and 32-bit float out, in RIFF or (past 4 GiB) RF64 files.
//!
//! Samples move in whole blocks: one read or write call per block and a tight conversion loop per format
//! (32-bit float in and out is a plain copy per sample), never a call per sample.
//!
//! Output goes to a temporary file beside the destination and is renamed over it only once complete and
//! synced, so a failed or interrupted render never leaves a truncated file and never destroys an existing
//! one. Reducing to 16 or 24 bits applies TPDF dither.
//!
//! Files whose data would pass the 4 GiB that a RIFF header can count are written as RF64 (EBU Tech 3306),
//! as ffmpeg's `-rf64 auto` does: every file starts with a 28-byte `JUNK` chunk, which becomes the `ds64`
//! chunk holding the 64-bit sizes when the data outgrows 32 bits.

use crate::error::{Error, Explain, Result};
use crate::io::stream::{BlockSink, BlockSource};
use crate::node::{AudioIn, AudioOut};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// The tail of the KSDATAFORMAT_SUBTYPE GUIDs (the first two bytes are the format code).
const GUID_TAIL: [u8; 14] = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

/// A WAV sample format for output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// 32-bit float.
    F32,
    /// 16-bit integer, TPDF-dithered.
    I16,
    /// 24-bit integer, TPDF-dithered.
    I24,
    /// 32-bit integer.
    I32,
}

impl WavFormat {
    fn bytes(self) -> usize {
        match self {
            WavFormat::I16 => 2,
            WavFormat::I24 => 3,
            WavFormat::F32 | WavFormat::I32 => 4,
        }
    }
}

/// How samples are stored in a file being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
}

impl Encoding {
    fn bytes(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::I16 => 2,
            Encoding::I24 => 3,
            Encoding::I32 | Encoding::F32 => 4,
            Encoding::F64 => 8,
        }
    }
}

/// What a WAV file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame.
    pub channels: usize,
    /// Bits per sample.
    pub bits: u16,
    /// Whether the samples are floating point.
    pub float: bool,
    /// Frames in the data chunk.
    pub frames: u64,
    /// Byte offset of the first sample.
    pub data_offset: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
}

/// Reads a WAV header from `r` (positioned at the start), leaving it at the first sample.
///
/// # Errors
/// A message for anything that is not a readable RIFF/RF64 WAVE file in a supported sample format.
fn read_header(r: &mut impl Read) -> Result<(WavInfo, Encoding), String> {
    let mut head = [0u8; 12];
    r.read_exact(&mut head).map_err(|_| "too short to be a WAV file".to_string())?;
    let rf64 = match &head[0..4] {
        b"RIFF" => false,
        b"RF64" | b"BW64" => true,
        _ => return Err("not a WAV file (no RIFF header)".into()),
    };
    if &head[8..12] != b"WAVE" {
        return Err("a RIFF file, but not WAVE audio".into());
    }
    let mut offset = 12u64;
    let mut ds64_data: Option<u64> = None;
    let mut fmt: Option<(u16, usize, u32, u16, u16)> = None;
    loop {
        let mut ch = [0u8; 8];
        r.read_exact(&mut ch).map_err(|_| "no data chunk".to_string())?;
        offset += 8;
        let size32 = le32(&ch, 4);
        let id = &ch[0..4];
        if id == b"data" {
            let (format, channels, sample_rate, bits, block_align) = fmt.ok_or("the data chunk comes before fmt")?;
            let size = if rf64 && size32 == u32::MAX {
                ds64_data.ok_or("RF64 without a ds64 chunk")?
            } else {
                u64::from(size32)
            };
            let encoding = match (format, bits) {
                (FORMAT_PCM, 8) => Encoding::U8,
                (FORMAT_PCM, 16) => Encoding::I16,
                (FORMAT_PCM, 24) => Encoding::I24,
                (FORMAT_PCM, 32) => Encoding::I32,
                (FORMAT_FLOAT, 32) => Encoding::F32,
                (FORMAT_FLOAT, 64) => Encoding::F64,
                (f, b) => {
                    let kind = if f == FORMAT_FLOAT {
                        "float"
                    } else if f == FORMAT_PCM {
                        "integer"
                    } else {
                        "compressed"
                    };
                    return Err(format!("unsupported WAV sample format ({b}-bit {kind}, format code {f})"));
                }
            };
            if usize::from(block_align) != encoding.bytes() * channels {
                return Err(format!(
                    "inconsistent WAV header: block align {block_align} for {channels} channels of {bits} bits"
                ));
            }
            let info = WavInfo {
                sample_rate,
                channels,
                bits,
                float: format == FORMAT_FLOAT,
                frames: size / u64::from(block_align),
                data_offset: offset,
            };
            return Ok((info, encoding));
        }
        // A chunk's size is 32 bits; RF64 keeps larger sizes in ds64 (only the data chunk's matters here).
        let size = u64::from(size32) + u64::from(size32 & 1);
        match id {
            b"fmt " | b"ds64" => {
                if size > 4096 {
                    return Err(format!("a {} chunk of {size} bytes is not plausible", String::from_utf8_lossy(id)));
                }
                let mut body = vec![0u8; size as usize];
                r.read_exact(&mut body).map_err(|_| "truncated header".to_string())?;
                if id == b"ds64" {
                    if body.len() < 24 {
                        return Err("ds64 chunk too short".into());
                    }
                    ds64_data = Some(le64(&body, 8));
                } else {
                    if body.len() < 16 {
                        return Err("fmt chunk too short".into());
                    }
                    let mut format = le16(&body, 0);
                    let channels = le16(&body, 2);
                    let sample_rate = le32(&body, 4);
                    let block_align = le16(&body, 12);
                    let bits = le16(&body, 14);
                    if format == FORMAT_EXTENSIBLE {
                        if body.len() < 40 || body[26..40] != GUID_TAIL {
                            return Err("WAVE_FORMAT_EXTENSIBLE with an unknown sub-format".into());
                        }
                        format = le16(&body, 24);
                    }
                    if channels == 0 {
                        return Err("the WAV file declares zero channels".into());
                    }
                    if sample_rate == 0 {
                        return Err("the WAV file declares a sample rate of 0 Hz".into());
                    }
                    fmt = Some((format, usize::from(channels), sample_rate, bits, block_align));
                }
            }
            _ => {
                // Skip any other chunk (LIST, fact, bext, JUNK...).
                let skipped = std::io::copy(&mut r.by_ref().take(size), &mut std::io::sink())
                    .map_err(|e| format!("cannot read: {e}"))?;
                if skipped < size {
                    return Err("no data chunk".into());
                }
            }
        }
        offset += size;
    }
}

/// Reads a WAV file block by block into planar `f32`.
pub struct WavSource {
    file: File,
    path: PathBuf,
    info: WavInfo,
    encoding: Encoding,
    remaining: u64,
    read: u64,
    bytes: Vec<u8>,
}

impl WavSource {
    /// Opens `path` and reads its header.
    ///
    /// # Errors
    /// If the file cannot be opened or is not a WAV file in a supported format (the message names the file).
    pub fn open(path: &Path) -> Result<Self> {
        let unreadable = || format!("{}: not a readable WAV file", path.display());
        let file = File::open(path).input(unreadable)?;
        let mut reader = std::io::BufReader::new(file);
        let (info, encoding) = read_header(&mut reader).input(unreadable)?;
        let mut file = reader.into_inner();
        file.seek(SeekFrom::Start(info.data_offset)).input(unreadable)?;
        Ok(Self { file, path: path.to_path_buf(), info, encoding, remaining: info.frames, read: 0, bytes: Vec::new() })
    }

    /// What the header says.
    pub fn info(&self) -> &WavInfo {
        &self.info
    }

    /// The file's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.info.sample_rate
    }

    /// The file's channel count.
    pub fn channels(&self) -> usize {
        self.info.channels
    }

    /// Frames left to read.
    pub fn frames(&self) -> u64 {
        self.remaining
    }

    /// Reads at most `frames` more frames in all.
    pub fn limit(&mut self, frames: u64) {
        self.remaining = self.remaining.min(frames);
    }

    /// Moves to frame `frame` of the data (clamped to its end).
    ///
    /// # Errors
    /// If the file cannot seek.
    pub fn seek(&mut self, frame: u64) -> Result<()> {
        let frame = frame.min(self.info.frames);
        let bytes = (self.encoding.bytes() * self.info.channels) as u64;
        let path = &self.path;
        self.file
            .seek(SeekFrom::Start(self.info.data_offset + frame * bytes))
            .input(|| format!("{}: cannot seek", path.display()))?;
        self.remaining = self.info.frames - frame;
        self.read = frame;
        Ok(())
    }
}

impl BlockSource for WavSource {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let ch = self.info.channels;
        let want = (out.frames() as u64).min(self.remaining) as usize;
        let frame_bytes = self.encoding.bytes() * ch;
        self.bytes.resize(want * frame_bytes, 0);
        let mut got = 0;
        while got < self.bytes.len() {
            match self.file.read(&mut self.bytes[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Input(format!("{}: cannot read: {e}", self.path.display()))),
            }
        }
        let frames = got / frame_bytes;
        if frames < want {
            return Err(Error::Input(format!(
                "{}: corrupt or truncated WAV data: it ends after {} of its {} declared frames ({:.3} s)",
                self.path.display(),
                self.read + frames as u64,
                self.info.frames,
                (self.read + frames as u64) as f64 / f64::from(self.info.sample_rate)
            )));
        }
        let used = ch.min(out.channels());
        if self.encoding == Encoding::F32 && ch == 2 && used == 2 {
            // Stereo float, the common case: both channels in one pass.
            let (l, r) = out.pair_mut(0, 1);
            for ((l, r), f) in l[..frames].iter_mut().zip(&mut r[..frames]).zip(self.bytes.chunks_exact(8)) {
                *l = f32::from_le_bytes([f[0], f[1], f[2], f[3]]);
                *r = f32::from_le_bytes([f[4], f[5], f[6], f[7]]);
            }
        } else {
            for c in 0..used {
                decode(self.encoding, &self.bytes, ch, c, &mut out.channel_mut(c)[..frames]);
            }
        }
        for c in used..out.channels() {
            out.channel_mut(c)[..frames].fill(0.0);
        }
        self.remaining -= frames as u64;
        self.read += frames as u64;
        Ok(frames)
    }

    fn frames(&self) -> Option<u64> {
        Some(self.remaining)
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        WavSource::seek(self, frame)
    }
}

/// Channel `c` of interleaved `bytes` (frames of `ch` samples) into `dst`.
fn decode(encoding: Encoding, bytes: &[u8], ch: usize, c: usize, dst: &mut [f32]) {
    let w = encoding.bytes();
    let stride = w * ch;
    let frames = bytes.chunks_exact(stride).map(|f| &f[c * w..c * w + w]);
    match encoding {
        Encoding::U8 => {
            for (d, s) in dst.iter_mut().zip(frames) {
                *d = (f32::from(s[0]) - 128.0) * (1.0 / 128.0);
            }
        }
        Encoding::I16 => {
            for (d, s) in dst.iter_mut().zip(frames) {
                *d = f32::from(i16::from_le_bytes([s[0], s[1]])) * (1.0 / 32768.0);
            }
        }
        Encoding::I24 => {
            for (d, s) in dst.iter_mut().zip(frames) {
                let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
                *d = v as f32 * (1.0 / 8_388_608.0);
            }
        }
        Encoding::I32 => {
            for (d, s) in dst.iter_mut().zip(frames) {
                *d = (f64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])) * (1.0 / 2_147_483_648.0)) as f32;
            }
        }
        Encoding::F32 => {
            for (d, s) in dst.iter_mut().zip(frames) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        Encoding::F64 => {
            for (d, s) in dst.iter_mut().zip(frames) {
                *d = f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as f32;
            }
        }
    }
}

/// Triangular-PDF dither of ±1 LSB from a deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
struct Tpdf(u64);

impl Tpdf {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        self.uniform() - self.uniform()
    }
}

/// The data size past which a file is written as RF64: what a RIFF header can count, less the header.
/// `FXGRAPH_WAV_RF64_ABOVE` (bytes) lowers it, so tests can exercise RF64 without writing 4 GiB.
fn rf64_threshold(header: u64) -> u64 {
    let riff_max = u64::from(u32::MAX) - header;
    std::env::var("FXGRAPH_WAV_RF64_ABOVE").ok().and_then(|v| v.parse().ok()).map_or(riff_max, |v: u64| v.min(riff_max))
}

/// Writes planar blocks to a WAV file atomically.
pub struct WavSink {
    file: Option<std::io::BufWriter<File>>,
    format: WavFormat,
    channels: usize,
    header_len: u64,
    data_bytes: u64,
    tmp: PathBuf,
    dest: PathBuf,
    dither: Tpdf,
    bytes: Vec<u8>,
    /// Bytes of the file (from its start) handed to the kernel's writeback already.
    written_back: u64,
    /// Samples that had to be clamped to the format's range.
    pub clipped: u64,
}

/// How much data the sink lets the kernel hold before it asks for it to be written out (see
/// [`start_writeback`]).
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Asks the kernel to start writing bytes `from..to` of `file` to the disk, without waiting for it (Linux's
/// `sync_file_range` with `SYNC_FILE_RANGE_WRITE`). The sink does this as it goes, so the sync in
/// [`WavSink::finish`] waits only for the last few megabytes instead of the whole file (115 MB: about 50 ms
/// in the CI VM). Advisory: errors are left to that sync to report. Elsewhere the sync does it all.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // One system call on a file descriptor this sink owns.
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from))) else { return };
    // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor is open for the call's
    // duration (borrowed from `file`).
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// The header of a file this module writes: RIFF, a JUNK chunk reserving room for ds64, fmt, and the data
/// chunk's header. Sizes are filled in by [`WavSink::finish`].
fn header(format: WavFormat, channels: usize, sample_rate: u32) -> Vec<u8> {
    let bits = (format.bytes() * 8) as u16;
    let code = if format == WavFormat::F32 { FORMAT_FLOAT } else { FORMAT_PCM };
    let block_align = (format.bytes() * channels) as u16;
    // WAVE_FORMAT_EXTENSIBLE where the format needs it: more than two channels or more than 16 bits.
    let extensible = channels > 2 || (bits > 16 && code == FORMAT_PCM);
    let mut h = Vec::with_capacity(80);
    h.extend_from_slice(b"RIFF\0\0\0\0WAVE");
    h.extend_from_slice(b"JUNK");
    h.extend_from_slice(&28u32.to_le_bytes());
    h.extend_from_slice(&[0u8; 28]);
    // fmt: 16 bytes for integer PCM, 18 (with an empty extension) for float, 40 for the extensible form.
    let float = code == FORMAT_FLOAT;
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(
        &(if extensible {
            40u32
        } else if float {
            18
        } else {
            16
        })
        .to_le_bytes(),
    );
    h.extend_from_slice(&(if extensible { FORMAT_EXTENSIBLE } else { code }).to_le_bytes());
    h.extend_from_slice(&(channels as u16).to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    if extensible {
        let mask: u32 = match channels {
            1 => 0x4,
            2 => 0x3,
            _ => 0,
        };
        h.extend_from_slice(&22u16.to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(&mask.to_le_bytes());
        h.extend_from_slice(&code.to_le_bytes());
        h.extend_from_slice(&GUID_TAIL);
    } else if float {
        h.extend_from_slice(&0u16.to_le_bytes());
    }
    if float {
        // Non-PCM data carries a fact chunk: the frame count (filled in by `finish`).
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
    }
    h.extend_from_slice(b"data\0\0\0\0");
    h
}

impl WavSink {
    /// Starts writing to a temporary file beside `dest`.
    ///
    /// # Errors
    /// If the temporary file cannot be created.
    pub fn create(dest: &Path, format: WavFormat, channels: usize, sample_rate: u32) -> Result<Self> {
        let name =
            dest.file_name().ok_or_else(|| Error::Output("output path has no file name".into()))?.to_string_lossy();
        let tmp = dest.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
        let file = File::create(&tmp).output(|| format!("cannot create {}", tmp.display()))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 16, file);
        let h = header(format, channels, sample_rate);
        file.write_all(&h).output(|| format!("cannot write {}", tmp.display()))?;
        Ok(Self {
            file: Some(file),
            format,
            channels,
            header_len: h.len() as u64,
            data_bytes: 0,
            tmp,
            dest: dest.to_path_buf(),
            dither: Tpdf(0x9e37_79b9_7f4a_7c15),
            bytes: Vec::new(),
            written_back: 0,
            clipped: 0,
        })
    }

    /// The temporary file being written (removed if the sink is dropped unfinished).
    pub fn temporary_path(&self) -> &Path {
        &self.tmp
    }

    /// Completes the header (RIFF, or RF64 past 4 GiB), syncs, and renames the file into place.
    ///
    /// # Errors
    /// If finishing, syncing or renaming fails; the temporary file is then removed.
    pub fn finish(mut self) -> Result<PathBuf> {
        let file = self.file.take().ok_or_else(|| Error::Output("sink already finished".into()))?;
        let file = self.complete(file).output(|| "cannot write the output".into())?;
        file.sync_all().output(|| "cannot sync the output".into())?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest)
            .output(|| format!("cannot move the output into place at {}", self.dest.display()))?;
        Ok(self.dest.clone())
    }

    /// Pads the data to an even length and writes the sizes into the header.
    fn complete(&self, mut file: std::io::BufWriter<File>) -> std::io::Result<File> {
        let pad = self.data_bytes & 1;
        if pad == 1 {
            file.write_all(&[0])?;
        }
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        let riff_size = self.header_len - 8 + self.data_bytes + pad;
        let frames = self.data_bytes / (self.format.bytes() * self.channels) as u64;
        let data_size_at = self.header_len - 4;
        // The fact chunk, when there is one, sits just before the data chunk.
        let fact_at = (self.format == WavFormat::F32).then_some(self.header_len - 8 - 4);
        if self.data_bytes > rf64_threshold(self.header_len) {
            // RF64: the 32-bit sizes say "see ds64", which takes the JUNK chunk's place.
            file.seek(SeekFrom::Start(0))?;
            file.write_all(b"RF64")?;
            file.write_all(&u32::MAX.to_le_bytes())?;
            file.seek(SeekFrom::Start(12))?;
            let mut ds64 = Vec::with_capacity(36);
            ds64.extend_from_slice(b"ds64");
            ds64.extend_from_slice(&28u32.to_le_bytes());
            ds64.extend_from_slice(&riff_size.to_le_bytes());
            ds64.extend_from_slice(&self.data_bytes.to_le_bytes());
            ds64.extend_from_slice(&frames.to_le_bytes());
            ds64.extend_from_slice(&0u32.to_le_bytes());
            file.write_all(&ds64)?;
            file.seek(SeekFrom::Start(data_size_at))?;
            file.write_all(&u32::MAX.to_le_bytes())?;
            if let Some(at) = fact_at {
                file.seek(SeekFrom::Start(at))?;
                file.write_all(&u32::MAX.to_le_bytes())?;
            }
        } else {
            file.seek(SeekFrom::Start(4))?;
            file.write_all(&(riff_size as u32).to_le_bytes())?;
            file.seek(SeekFrom::Start(data_size_at))?;
            file.write_all(&(self.data_bytes as u32).to_le_bytes())?;
            if let Some(at) = fact_at {
                file.seek(SeekFrom::Start(at))?;
                file.write_all(&(frames as u32).to_le_bytes())?;
            }
        }
        Ok(file)
    }

    /// Quantizes `x` to `bits` with TPDF dither when `dither`, counting clipped samples.
    #[inline]
    fn quantize(&mut self, x: f32, bits: u32, dither: bool) -> i32 {
        let scale = f64::from(1u32 << (bits - 1));
        let d = if dither { self.dither.next() } else { 0.0 };
        let q = (f64::from(x) * scale + d).round();
        let (lo, hi) = (-scale, scale - 1.0);
        if q < lo || q > hi {
            self.clipped += 1;
        }
        q.clamp(lo, hi) as i32
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl BlockSink for WavSink {
    fn write(&mut self, block: &AudioIn<'_>) -> Result<()> {
        let ch = block.channels();
        let n = block.frames();
        let w = self.format.bytes();
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.resize(n * ch * w, 0);
        match self.format {
            WavFormat::F32 => {
                // Float keeps what exceeds full scale: nothing is clipped.
                if ch == 2 {
                    let (l, r) = (block.channel(0), block.channel(1));
                    for ((frame, l), r) in bytes.chunks_exact_mut(8).zip(l).zip(r) {
                        frame[..4].copy_from_slice(&l.to_le_bytes());
                        frame[4..].copy_from_slice(&r.to_le_bytes());
                    }
                } else {
                    for c in 0..ch {
                        for (frame, x) in bytes.chunks_exact_mut(ch * 4).zip(block.channel(c)) {
                            frame[c * 4..c * 4 + 4].copy_from_slice(&x.to_le_bytes());
                        }
                    }
                }
            }
            format => {
                let (bits, dither) = match format {
                    WavFormat::I16 => (16, true),
                    WavFormat::I24 => (24, true),
                    _ => (32, false),
                };
                // Frame by frame, channel by channel: the dither sequence follows the file's sample order.
                for i in 0..n {
                    for c in 0..ch {
                        let q = self.quantize(block.channel(c)[i], bits, dither).to_le_bytes();
                        let at = (i * ch + c) * w;
                        bytes[at..at + w].copy_from_slice(&q[..w]);
                    }
                }
            }
        }
        let file = self.file.as_mut().ok_or_else(|| Error::Output("sink already finished".into()))?;
        let result = file.write_all(&bytes);
        self.data_bytes += bytes.len() as u64;
        self.bytes = bytes;
        // What the kernel has of the file: all but what the buffer still holds.
        let in_kernel = self.header_len + self.data_bytes - file.buffer().len() as u64;
        if result.is_ok() && in_kernel - self.written_back >= WRITEBACK_EVERY {
            start_writeback(file.get_ref(), self.written_back, in_kernel);
            self.written_back = in_kernel;
        }
        result.output(|| "cannot write the output".into())
    }
}

/// Whether `a` and `b` name the same existing file (same device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Parses the header of WAV bytes (for tools and fuzzing).
///
/// # Errors
/// As [`WavSource::open`].
pub fn parse_header(bytes: &[u8]) -> Result<WavInfo> {
    read_header(&mut std::io::Cursor::new(bytes)).map(|(info, _)| info).map_err(Error::Input)
}

/// Decodes all the samples of in-memory WAV bytes into planar `f32` channels (for tools and fuzzing).
///
/// # Errors
/// As [`WavSource::open`], or for data shorter than declared.
pub fn decode_bytes(bytes: &[u8]) -> Result<Vec<Vec<f32>>> {
    let mut cursor = std::io::Cursor::new(bytes);
    let (info, encoding) = read_header(&mut cursor).map_err(Error::Input)?;
    let start = info.data_offset as usize;
    let frame = encoding.bytes() * info.channels;
    let available = (bytes.len().saturating_sub(start) / frame) as u64;
    if available < info.frames {
        return Err(Error::Input(format!(
            "corrupt or truncated WAV data: it ends after {available} of its {} declared frames",
            info.frames
        )));
    }
    let n = info.frames as usize;
    let data = &bytes[start..start + n * frame];
    Ok((0..info.channels)
        .map(|c| {
            let mut out = vec![0.0f32; n];
            decode(encoding, data, info.channels, c, &mut out);
            out
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_output_is_handed_to_writeback_as_it_goes_and_reads_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("long.wav");
        let mut sink = WavSink::create(&dest, WavFormat::F32, 2, 48000).expect("create");
        // 20 MiB of stereo float in blocks of 4096 frames, each sample its own index.
        let (block, blocks) = (4096, 640);
        let mut planar = vec![0.0f32; 2 * block];
        let mut marks = Vec::new();
        for b in 0..blocks {
            for (k, v) in planar.iter_mut().enumerate() {
                *v = ((b * block + k % block) * 2 + k / block) as f32;
            }
            sink.write(&AudioIn::new(&planar, block, 2, block)).expect("write");
            marks.push(sink.written_back);
        }
        // Handed over every 8 MiB or so, never past what had been written.
        let total = sink.header_len + sink.data_bytes;
        assert!(marks.windows(2).all(|w| w[0] <= w[1]));
        let handed: Vec<u64> = marks.iter().copied().filter(|&m| m > 0).collect();
        assert!(handed.first().is_some_and(|&m| m >= WRITEBACK_EVERY));
        assert!(*marks.last().expect("marks") > total - WRITEBACK_EVERY - (1 << 16) && marks.last() < Some(&total));
        sink.finish().expect("finish");
        let channels = decode_bytes(&std::fs::read(&dest).expect("read")).expect("decode");
        for (c, samples) in channels.iter().enumerate() {
            assert_eq!(samples.len(), block * blocks);
            assert!(samples.iter().enumerate().all(|(i, &v)| v == (i * 2 + c) as f32), "channel {c}");
        }
    }
}
