//! Audio as a stream of blocks: where blocks come from ([`BlockSource`]: files, the demo signal, memory) and
//! where they go ([`BlockSink`]).

use crate::error::{Error, Result};
use crate::node::{AudioIn, AudioOut};

/// Where blocks come from. `read` fills up to `out.frames()` frames and returns how many: fewer only at
/// the end (0 once it is reached).
pub trait BlockSource: Send {
    /// Fills up to `out.frames()` frames of `out` and returns how many: fewer only at the end, 0 once it is
    /// reached.
    ///
    /// # Errors
    /// [`Error::Input`] for a source that fails (a damaged file), naming it.
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize>;

    /// Frames left to read, when known.
    fn frames(&self) -> Option<u64> {
        None
    }

    /// Moves to frame `frame` (from the start).
    ///
    /// # Errors
    /// If the source cannot seek.
    fn seek(&mut self, frame: u64) -> Result<()> {
        let _ = frame;
        Err(Error::Input("this source cannot seek".into()))
    }
}

/// Where blocks go.
pub trait BlockSink: Send {
    /// Takes `block`, the next frames of audio.
    ///
    /// # Errors
    /// [`Error::Output`] for a sink that cannot write them.
    fn write(&mut self, block: &AudioIn<'_>) -> Result<()>;
}

impl BlockSource for super::demo::DemoSignal {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        Ok(self.fill(out))
    }

    fn frames(&self) -> Option<u64> {
        Some(self.remaining())
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        self.set_position(frame);
        Ok(())
    }
}

/// Several sources side by side, for a graph with several inputs: each fills its own channels of a block
/// (in order), the first one sets the length, and the others are padded with silence or cut to it.
pub struct Merge {
    parts: Vec<(Box<dyn BlockSource>, usize)>,
}

impl Merge {
    /// Sources and their channels, in the order of the block's channels.
    pub fn new(parts: Vec<(Box<dyn BlockSource>, usize)>) -> Self {
        Self { parts }
    }
}

impl BlockSource for Merge {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let mut at = 0;
        let mut got = out.frames();
        for (k, (source, width)) in self.parts.iter_mut().enumerate() {
            let mut part = out.channels_mut(at..at + *width);
            if k == 0 {
                got = source.read(&mut part)?;
                for c in 0..*width {
                    part.channel_mut(c)[got..].fill(0.0);
                }
            } else {
                // Read until the first source's frames are filled or this one ends.
                let mut filled = 0;
                while filled < got {
                    let n = source.read(&mut part.slice_mut(filled, got - filled))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                for c in 0..*width {
                    part.channel_mut(c)[filled..].fill(0.0);
                }
            }
            at += *width;
        }
        Ok(got)
    }

    fn frames(&self) -> Option<u64> {
        self.parts.first().and_then(|(s, _)| s.frames())
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        for (source, _) in &mut self.parts {
            source.seek(frame)?;
        }
        Ok(())
    }
}

/// Silence, for as long as it is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silence;

impl BlockSource for Silence {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        out.fill_zero();
        Ok(out.frames())
    }

    fn seek(&mut self, _frame: u64) -> Result<()> {
        Ok(())
    }
}

/// Plays planar vectors (for tests, benchmarks and embedding).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    /// The samples, a vector per channel.
    pub channels: Vec<Vec<f32>>,
    /// The next frame to read.
    pub position: usize,
}

impl MemorySource {
    /// Plays `channels` from the start.
    pub fn new(channels: Vec<Vec<f32>>) -> Self {
        Self { channels, position: 0 }
    }
}

impl BlockSource for MemorySource {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let len = self.channels.first().map_or(0, Vec::len);
        let n = out.frames().min(len - self.position);
        for (c, src) in self.channels.iter().enumerate().take(out.channels()) {
            out.channel_mut(c)[..n].copy_from_slice(&src[self.position..self.position + n]);
        }
        self.position += n;
        Ok(n)
    }

    fn frames(&self) -> Option<u64> {
        Some((self.channels.first().map_or(0, Vec::len) - self.position) as u64)
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        self.position = (frame as usize).min(self.channels.first().map_or(0, Vec::len));
        Ok(())
    }
}

/// A source cut after a number of frames.
pub struct Limited<S> {
    inner: S,
    limit: u64,
    left: u64,
}

impl<S> Limited<S> {
    /// `inner`, cut after `frames` frames.
    pub fn new(inner: S, frames: u64) -> Self {
        Self { inner, limit: frames, left: frames }
    }
}

impl<S: BlockSource> BlockSource for Limited<S> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        let want = (out.frames() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut out.prefix(want))?;
        self.left -= n as u64;
        Ok(n)
    }

    fn frames(&self) -> Option<u64> {
        self.inner.frames().map(|f| f.min(self.left))
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        self.inner.seek(frame.min(self.limit))?;
        self.left = self.limit.saturating_sub(frame);
        Ok(())
    }
}

impl BlockSource for Box<dyn BlockSource> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> Result<usize> {
        (**self).read(out)
    }

    fn frames(&self) -> Option<u64> {
        (**self).frames()
    }

    fn seek(&mut self, frame: u64) -> Result<()> {
        (**self).seek(frame)
    }
}

/// Collects everything into planar vectors (for tests and benchmarks).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// The samples, a vector per channel.
    pub channels: Vec<Vec<f32>>,
}

impl BlockSink for MemorySink {
    fn write(&mut self, block: &AudioIn<'_>) -> Result<()> {
        self.channels.resize(block.channels(), Vec::new());
        for (c, dst) in self.channels.iter_mut().enumerate() {
            dst.extend_from_slice(block.channel(c));
        }
        Ok(())
    }
}

/// Discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl BlockSink for NullSink {
    fn write(&mut self, _block: &AudioIn<'_>) -> Result<()> {
        Ok(())
    }
}
