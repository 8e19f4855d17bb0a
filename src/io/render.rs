//! Rendering a whole signal through a graph's audio side block by block, with latency compensation: the
//! same path a device callback drives.

use crate::audio::AudioProcessor;
use crate::buffer::{AudioIn, AudioOut};
use crate::control::Engine;

/// Where blocks come from. `read` fills up to `out.frames()` frames and returns how many: fewer only at
/// the end (0 once it is reached).
pub trait BlockSource: Send {
    fn read(&mut self, out: &mut AudioOut<'_>) -> anyhow::Result<usize>;

    /// Frames left to read, when known.
    fn frames(&self) -> Option<u64> {
        None
    }

    /// Moves to frame `frame` (from the start).
    ///
    /// # Errors
    /// If the source cannot seek.
    fn seek(&mut self, frame: u64) -> anyhow::Result<()> {
        let _ = frame;
        anyhow::bail!("this source cannot seek")
    }
}

/// Where blocks go.
pub trait BlockSink: Send {
    fn write(&mut self, block: &AudioIn<'_>) -> anyhow::Result<()>;
}

impl BlockSource for crate::demo::DemoSignal {
    fn read(&mut self, out: &mut AudioOut<'_>) -> anyhow::Result<usize> {
        Ok(self.fill(out))
    }

    fn frames(&self) -> Option<u64> {
        Some(self.remaining())
    }

    fn seek(&mut self, frame: u64) -> anyhow::Result<()> {
        self.set_position(frame);
        Ok(())
    }
}

/// Plays planar vectors (for tests, benchmarks and embedding).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    pub channels: Vec<Vec<f32>>,
    pub position: usize,
}

impl MemorySource {
    pub fn new(channels: Vec<Vec<f32>>) -> Self {
        Self { channels, position: 0 }
    }
}

impl BlockSource for MemorySource {
    fn read(&mut self, out: &mut AudioOut<'_>) -> anyhow::Result<usize> {
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

    fn seek(&mut self, frame: u64) -> anyhow::Result<()> {
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
    pub fn new(inner: S, frames: u64) -> Self {
        Self { inner, limit: frames, left: frames }
    }
}

impl<S: BlockSource> BlockSource for Limited<S> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> anyhow::Result<usize> {
        let want = (out.frames() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut out.prefix(want))?;
        self.left -= n as u64;
        Ok(n)
    }

    fn frames(&self) -> Option<u64> {
        self.inner.frames().map(|f| f.min(self.left))
    }

    fn seek(&mut self, frame: u64) -> anyhow::Result<()> {
        self.inner.seek(frame.min(self.limit))?;
        self.left = self.limit.saturating_sub(frame);
        Ok(())
    }
}

impl BlockSource for Box<dyn BlockSource> {
    fn read(&mut self, out: &mut AudioOut<'_>) -> anyhow::Result<usize> {
        (**self).read(out)
    }

    fn frames(&self) -> Option<u64> {
        (**self).frames()
    }

    fn seek(&mut self, frame: u64) -> anyhow::Result<()> {
        (**self).seek(frame)
    }
}

/// Collects everything into planar vectors (for tests and benchmarks).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    pub channels: Vec<Vec<f32>>,
}

impl BlockSink for MemorySink {
    fn write(&mut self, block: &AudioIn<'_>) -> anyhow::Result<()> {
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
    fn write(&mut self, _block: &AudioIn<'_>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a render did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Frames read from the source (and written to the sink).
    pub frames: u64,
    /// Blocks processed, including those that flush the latency.
    pub blocks: u64,
}

/// A render stopped before its end by its caller (see [`render`]'s `progress`).
#[derive(Debug, thiserror::Error)]
#[error("the render was interrupted")]
pub struct Interrupted;

/// Renders `source` through the audio side `audio` into `sink`, reading `block` frames at a time, with
/// `engine` (its control side) updated every 64 blocks, so plugin messages are delivered while it runs, and
/// after any block in which a plugin asked for a replacement.
/// `progress` is told the input frames consumed after each block; returning `false` stops the render with
/// [`Interrupted`].
///
/// The output is aligned with the input: the graph's latency is compensated by dropping its first
/// `latency` output frames and feeding as many frames of silence after the input ends, so the sink gets
/// exactly as many frames as the source gave. The audio side cuts each read into blocks of at most its
/// `max_block` frames.
///
/// Reading the next block and writing the last one is a side job of each block's processing
/// ([`AudioProcessor::process_overlapping`]): with worker threads, a worker does it while the graph leaves
/// it idle; without, it runs after the processing. The output is the same either way.
///
/// # Errors
/// Whatever the source or sink returns.
pub fn render(
    engine: &mut Engine,
    audio: &mut AudioProcessor,
    source: &mut dyn BlockSource,
    sink: &mut dyn BlockSink,
    block: usize,
    progress: &mut dyn FnMut(u64) -> bool,
) -> anyhow::Result<RenderStats> {
    let block = block.max(1);
    let channels = engine.format().channels;
    let span = tracing::info_span!("render", block, channels, latency = engine.latency_frames());
    let _entered = span.enter();
    // Two buffers each way: this block's, and the next input or the last output, which the side job reads
    // into or writes from while this block is processed.
    let [mut input, mut next_input, mut output, mut last_output] =
        std::array::from_fn(|_| vec![0.0f32; channels * block]);
    // The frames of `last_output` still to write: (first, count).
    let mut unwritten: Option<(usize, usize)> = None;
    let mut skip = engine.latency_frames();
    let mut tail = skip;
    let mut stats = RenderStats::default();
    let mut requests = audio.replacement_requests();
    let mut got = source.read(&mut AudioOut::new(&mut input, block, channels, block))?;
    let mut source_done = false;
    loop {
        let consumed = got;
        if !source_done {
            source_done = got < block;
            stats.frames += got as u64;
        }
        let pad = (block - got).min(tail);
        if source_done {
            tail -= pad;
            for c in 0..channels {
                input[c * block + got..c * block + got + pad].fill(0.0);
            }
        }
        let frames = got + if source_done { pad } else { 0 };
        if frames == 0 {
            break;
        }
        // Two side jobs, which may run at the same time: write what the last block left, and read the next
        // block.
        let (mut wrote, mut read): (anyhow::Result<()>, anyhow::Result<usize>) = (Ok(()), Ok(0));
        let mut write = || {
            if let Some(part) = unwritten.take() {
                wrote = write_part(sink, &last_output, block, channels, part);
            }
        };
        let mut read_next = || {
            if !source_done {
                read = source.read(&mut AudioOut::new(&mut next_input, block, channels, block));
            }
        };
        audio.process_overlapping(
            &AudioIn::new(&input, block, channels, frames),
            &mut AudioOut::new(&mut output, block, channels, frames),
            &mut [&mut write, &mut read_next],
        );
        wrote?;
        got = read?;
        stats.blocks += 1;
        if stats.blocks % 64 == 0 || audio.replacement_requests() != requests {
            // Control-side work between blocks: plugin messages go to `tracing`, and a faulted plugin's
            // replacement is built at once, to take over when its backoff ends.
            requests = audio.replacement_requests();
            engine.update();
        }
        let first = skip.min(frames);
        skip -= first;
        if first < frames {
            unwritten = Some((first, frames - first));
        }
        std::mem::swap(&mut output, &mut last_output);
        std::mem::swap(&mut input, &mut next_input);
        if !progress(consumed as u64) {
            return Err(Interrupted.into());
        }
    }
    if let Some(part) = unwritten {
        write_part(sink, &last_output, block, channels, part)?;
    }
    audio.publish_spectra();
    engine.update();
    Ok(stats)
}

/// Writes frames `first..first + count` of a planar buffer (`block` frames a channel) to `sink`.
fn write_part(
    sink: &mut dyn BlockSink,
    buf: &[f32],
    block: usize,
    channels: usize,
    (first, count): (usize, usize),
) -> anyhow::Result<()> {
    sink.write(&AudioIn::new(buf, block, channels, first + count).slice(first, count))
}
