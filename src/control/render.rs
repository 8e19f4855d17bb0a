//! Rendering a whole signal through a graph's audio side block by block, with latency compensation: the
//! same path a device callback drives. [`OfflineRenderer`] needs only the audio side, so the engine may
//! live on another thread (a player's UI); [`render`] also keeps an engine on this thread up to date.

use super::Engine;
use crate::audio::AudioProcessor;
use crate::error::{Error, Result};
use crate::io::stream::{BlockSink, BlockSource};
use crate::node::{AudioIn, AudioOut};

/// What a render did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Frames read from the source (and written to the sink).
    pub frames: u64,
    /// Blocks processed, including those that flush the latency.
    pub blocks: u64,
}

/// Renders a source through a graph's audio side into a sink, aligned: the sink gets exactly the frames the
/// source gave, the graph's latency compensated (its first `latency` output frames dropped, as many frames
/// of silence fed after the input ends). The caller counts no frames.
///
/// ```no_run
/// use fxgraph::prelude::*;
///
/// let graph = Graph::load("graphs/enhancer.ron".as_ref())?;
/// let (mut engine, mut audio) = Engine::new(graph, EngineOptions::default())?;
/// let mut input = AudioFile::open("music.flac".as_ref(), engine.format())?;
/// let format = engine.format();
/// let mut output = WavSink::create("out.wav".as_ref(), WavFormat::F32, format.channels, format.sample_rate)?;
/// OfflineRenderer::new(&mut audio).with_engine(&mut engine).run(&mut input, &mut output)?;
/// output.finish()?;
/// # Ok::<(), fxgraph::Error>(())
/// ```
///
/// Reading the next block and writing the last one is a side job of each block's processing
/// ([`AudioProcessor::process_overlapping`]): with worker threads, a worker does it while the graph leaves
/// it idle; without, it runs after the processing. The output is the same either way.
pub struct OfflineRenderer<'a> {
    audio: &'a mut AudioProcessor,
    engine: Option<&'a mut Engine>,
    block: usize,
}

impl<'a> OfflineRenderer<'a> {
    /// A renderer driving `audio`, reading as many frames at a time as one call to it may hold (its
    /// largest block times the engine's [batch](crate::EngineOptions::batch)).
    pub fn new(audio: &'a mut AudioProcessor) -> Self {
        let block = audio.capacity();
        Self { audio, engine: None, block }
    }

    /// Reads `frames` at a time instead (the audio side still cuts them into its blocks).
    pub fn block(mut self, frames: usize) -> Self {
        self.block = frames.max(1);
        self
    }

    /// Keeps `engine` (the audio side's control side, on this thread) up to date while rendering: updated
    /// every 64 reads, so plugin messages are delivered, and after any block in which a plugin asked for a
    /// replacement, which is then built at once. Without it, whoever holds the engine calls
    /// [`Engine::update`] now and then.
    pub fn with_engine(mut self, engine: &'a mut Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Renders all of `source` into `sink`.
    ///
    /// # Errors
    /// Whatever the source or sink returns.
    pub fn run(self, source: &mut dyn BlockSource, sink: &mut dyn BlockSink) -> Result<RenderStats> {
        self.run_with_progress(source, sink, &mut |_| true)
    }

    /// Renders all of `source` into `sink`, telling `progress` the input frames consumed after each read;
    /// `progress` returning `false` stops the render with [`Error::Interrupted`].
    ///
    /// # Errors
    /// Whatever the source or sink returns, or [`Error::Interrupted`].
    pub fn run_with_progress(
        mut self,
        source: &mut dyn BlockSource,
        sink: &mut dyn BlockSink,
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> Result<RenderStats> {
        let (block, in_ch, out_ch) = (self.block, self.audio.input_channels(), self.audio.output_channels());
        // The plan the control side sent is taken now, so that its latency is known before the first block.
        self.audio.take_messages();
        let latency = self.audio.latency_frames();
        let span = tracing::info_span!("render", block, in_ch, out_ch, latency);
        let _entered = span.enter();
        // Two buffers each way: this block's, and the next input or the last output, which the side job
        // reads into or writes from while this block is processed.
        let [mut input, mut next_input] = std::array::from_fn(|_| vec![0.0f32; in_ch * block]);
        let [mut output, mut last_output] = std::array::from_fn(|_| vec![0.0f32; out_ch * block]);
        // The frames of `last_output` still to write: (first, count).
        let mut unwritten: Option<(usize, usize)> = None;
        let (mut skip, mut tail) = (latency, latency);
        let mut stats = RenderStats::default();
        let mut requests = self.audio.replacement_requests();
        let mut got = source.read(&mut AudioOut::new(&mut input, block, in_ch, block))?;
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
                for c in 0..in_ch {
                    input[c * block + got..c * block + got + pad].fill(0.0);
                }
            }
            let frames = got + if source_done { pad } else { 0 };
            if frames == 0 {
                break;
            }
            // Two side jobs, which may run at the same time: write what the last block left, and read the
            // next block.
            let (mut wrote, mut read): (Result<()>, Result<usize>) = (Ok(()), Ok(0));
            let mut write = || {
                if let Some(part) = unwritten.take() {
                    wrote = write_part(sink, &last_output, block, out_ch, part);
                }
            };
            let mut read_next = || {
                if !source_done {
                    read = source.read(&mut AudioOut::new(&mut next_input, block, in_ch, block));
                }
            };
            self.audio.process_overlapping(
                &AudioIn::new(&input, block, in_ch, frames),
                &mut AudioOut::new(&mut output, block, out_ch, frames),
                &mut [&mut write, &mut read_next],
            );
            wrote?;
            got = read?;
            stats.blocks += 1;
            if let Some(engine) = self.engine.as_deref_mut()
                && (stats.blocks % 64 == 0 || self.audio.replacement_requests() != requests)
            {
                // Control-side work between blocks: plugin messages go to `tracing`, and a faulted plugin's
                // replacement is built at once, to take over when its backoff ends.
                requests = self.audio.replacement_requests();
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
                return Err(Error::Interrupted);
            }
        }
        if let Some(part) = unwritten {
            write_part(sink, &last_output, block, out_ch, part)?;
        }
        self.audio.publish_spectra();
        if let Some(engine) = self.engine {
            engine.update();
        }
        Ok(stats)
    }
}

/// Renders `source` through the audio side `audio` into `sink`, reading `block` frames at a time, with
/// `engine` (its control side) kept up to date; `progress` is told the input frames consumed after each
/// block, and returning `false` stops the render with [`Error::Interrupted`]. An [`OfflineRenderer`] in one
/// call.
///
/// # Errors
/// Whatever the source or sink returns, or [`Error::Interrupted`].
pub fn render(
    engine: &mut Engine,
    audio: &mut AudioProcessor,
    source: &mut dyn BlockSource,
    sink: &mut dyn BlockSink,
    block: usize,
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<RenderStats> {
    OfflineRenderer::new(audio).block(block).with_engine(engine).run_with_progress(source, sink, progress)
}

/// Writes frames `first..first + count` of a planar buffer (`block` frames a channel) to `sink`.
fn write_part(
    sink: &mut dyn BlockSink,
    buf: &[f32],
    block: usize,
    channels: usize,
    (first, count): (usize, usize),
) -> Result<()> {
    sink.write(&AudioIn::new(buf, block, channels, first + count).slice(first, count))
}
