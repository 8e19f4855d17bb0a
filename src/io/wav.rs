//! WAV input and output: 16-, 24-, 32-bit integer and 32-bit float.
//!
//! Output goes to a temporary file beside the destination and is renamed over it only once complete and
//! synced, so a failed or interrupted render never leaves a truncated file and never destroys an existing
//! one. Reducing to 16 or 24 bits applies TPDF dither.

use crate::buffer::{AudioIn, AudioOut};
use crate::render::{BlockSink, BlockSource};
use anyhow::{Context, bail};
use dasp::sample::{I24, Sample};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// A WAV sample format for output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    F32,
    I16,
    I24,
    I32,
}

impl WavFormat {
    fn spec(self, channels: usize, sample_rate: u32) -> hound::WavSpec {
        let (bits_per_sample, sample_format) = match self {
            WavFormat::F32 => (32, hound::SampleFormat::Float),
            WavFormat::I16 => (16, hound::SampleFormat::Int),
            WavFormat::I24 => (24, hound::SampleFormat::Int),
            WavFormat::I32 => (32, hound::SampleFormat::Int),
        };
        hound::WavSpec { channels: channels as u16, sample_rate, bits_per_sample, sample_format }
    }
}

/// Reads a WAV file block by block into planar `f32`.
pub struct WavSource {
    reader: hound::WavReader<BufReader<File>>,
    spec: hound::WavSpec,
    remaining: u64,
    interleaved: Vec<f32>,
}

impl WavSource {
    /// Opens `path`.
    ///
    /// # Errors
    /// If the file cannot be opened or is not a WAV file in a supported format.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reader =
            hound::WavReader::open(path).with_context(|| format!("{}: not a readable WAV file", path.display()))?;
        let spec = reader.spec();
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {}
            (f, b) => bail!("{}: unsupported WAV sample format ({b}-bit {f:?})", path.display()),
        }
        if spec.channels == 0 {
            bail!("{}: WAV file declares zero channels", path.display());
        }
        let remaining = u64::from(reader.duration());
        Ok(Self { reader, spec, remaining, interleaved: Vec::new() })
    }

    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }

    pub fn channels(&self) -> usize {
        usize::from(self.spec.channels)
    }

    /// Frames left to read.
    pub fn frames(&self) -> u64 {
        self.remaining
    }

    /// Reads at most `frames` more frames in all.
    pub fn limit(&mut self, frames: u64) {
        self.remaining = self.remaining.min(frames);
    }
}

impl BlockSource for WavSource {
    fn read(&mut self, out: &mut AudioOut<'_>) -> anyhow::Result<usize> {
        let ch = self.channels();
        let want = (out.frames() as u64).min(self.remaining) as usize;
        self.interleaved.clear();
        let bits = self.spec.bits_per_sample;
        match self.spec.sample_format {
            hound::SampleFormat::Float => {
                for s in self.reader.samples::<f32>().take(want * ch) {
                    self.interleaved.push(s.context("corrupt or truncated WAV data")?);
                }
            }
            hound::SampleFormat::Int => {
                for s in self.reader.samples::<i32>().take(want * ch) {
                    let s = s.context("corrupt or truncated WAV data")?;
                    self.interleaved.push(match bits {
                        8 => (s as i8).to_sample::<f32>(),
                        16 => (s as i16).to_sample::<f32>(),
                        24 => I24::new_unchecked(s).to_sample::<f32>(),
                        _ => s.to_sample::<f32>(),
                    });
                }
            }
        }
        let got = self.interleaved.len() / ch;
        if got < want {
            bail!(
                "WAV data ends after {} of its declared frames",
                u64::from(self.reader.duration()) - self.remaining + got as u64
            );
        }
        for c in 0..ch {
            let dst = out.channel_mut(c);
            for (i, frame) in self.interleaved.chunks_exact(ch).enumerate() {
                dst[i] = frame[c];
            }
        }
        self.remaining -= got as u64;
        Ok(got)
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

/// Writes planar blocks to a WAV file atomically.
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    format: WavFormat,
    tmp: PathBuf,
    dest: PathBuf,
    dither: Tpdf,
    interleaved: Vec<f32>,
    /// Samples that had to be clamped to the format's range.
    pub clipped: u64,
}

impl WavSink {
    /// Starts writing to a temporary file beside `dest`.
    ///
    /// # Errors
    /// If the temporary file cannot be created.
    pub fn create(dest: &Path, format: WavFormat, channels: usize, sample_rate: u32) -> anyhow::Result<Self> {
        let name = dest.file_name().context("output path has no file name")?.to_string_lossy();
        let tmp = dest.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let writer = hound::WavWriter::new(BufWriter::new(file), format.spec(channels, sample_rate))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(Self {
            writer: Some(writer),
            format,
            tmp,
            dest: dest.to_path_buf(),
            dither: Tpdf(0x9e37_79b9_7f4a_7c15),
            interleaved: Vec::new(),
            clipped: 0,
        })
    }

    /// Quantizes to `bits` with TPDF dither when `dither`, counting clipped samples.
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

    /// Completes the file and renames it into place.
    ///
    /// # Errors
    /// If finishing, syncing or renaming fails; the temporary file is then removed.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        let writer = self.writer.take().context("sink already finished")?;
        writer.finalize().context("cannot finish the WAV file")?;
        File::open(&self.tmp).and_then(|f| f.sync_all()).context("cannot sync the output")?;
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("cannot move the output into place at {}", self.dest.display()))?;
        Ok(self.dest.clone())
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if self.writer.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl BlockSink for WavSink {
    fn write(&mut self, block: &AudioIn<'_>) -> anyhow::Result<()> {
        let ch = block.channels();
        let mut interleaved = std::mem::take(&mut self.interleaved);
        interleaved.clear();
        for i in 0..block.frames() {
            for c in 0..ch {
                interleaved.push(block.channel(c)[i]);
            }
        }
        let format = self.format;
        let mut quantized = Vec::with_capacity(if format == WavFormat::F32 { 0 } else { interleaved.len() });
        if format != WavFormat::F32 {
            for &x in &interleaved {
                quantized.push(match format {
                    WavFormat::I16 => self.quantize(x, 16, true),
                    WavFormat::I24 => self.quantize(x, 24, true),
                    _ => self.quantize(x, 32, false),
                });
            }
        }
        let writer = self.writer.as_mut().context("sink already finished")?;
        let result: Result<(), hound::Error> = (|| {
            if format == WavFormat::F32 {
                for &x in &interleaved {
                    writer.write_sample(x)?;
                }
            } else {
                for &q in &quantized {
                    writer.write_sample(q)?;
                }
            }
            Ok(())
        })();
        self.interleaved = interleaved;
        result.context("cannot write the output")
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
