//! Rendering a whole signal through a graph's audio side block by block, with latency compensation: the
//! same path a device callback drives.

use super::Engine;
use crate::audio::AudioProcessor;
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
