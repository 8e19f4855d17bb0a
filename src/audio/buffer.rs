//! Planar audio views: one contiguous `f32` allocation holds every channel, `stride` samples apart.
//!
//! Views borrow storage that the engine allocated once when the graph was prepared, so handing audio to a
//! node costs no allocation. Nodes process in place: an [`AudioOut`] holds a node's input when
//! [`Processor::process`](crate::node::Processor::process) is called and its output when it returns.

/// Samples a planar view of this shape covers.
fn span(stride: usize, channels: usize, frames: usize) -> usize {
    if channels == 0 { 0 } else { (channels - 1) * stride + frames }
}

/// A read-only planar block: `channels` channels of `frames` samples each.
#[derive(Clone, Copy)]
pub struct AudioIn<'a> {
    data: &'a [f32],
    stride: usize,
    channels: usize,
    frames: usize,
}

impl<'a> AudioIn<'a> {
    /// Views `data` as `channels` planes `stride` samples apart, of which the first `frames` are used.
    ///
    /// # Panics
    /// If `frames > stride` or `data` is too short to hold the last channel.
    pub fn new(data: &'a [f32], stride: usize, channels: usize, frames: usize) -> Self {
        assert!(frames <= stride && data.len() >= span(stride, channels, frames), "planar view out of bounds");
        Self { data, stride, channels, frames }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The samples of channel `c`.
    pub fn channel(&self, c: usize) -> &'a [f32] {
        let start = c * self.stride;
        &self.data[start..start + self.frames]
    }

    /// Frames `start..start + frames` of every channel.
    pub fn slice(&self, start: usize, frames: usize) -> AudioIn<'a> {
        assert!(start + frames <= self.frames);
        let end = span(self.stride, self.channels, start + frames);
        AudioIn { data: &self.data[start..end.max(start)], stride: self.stride, channels: self.channels, frames }
    }
}

/// A writable planar block with the same layout as [`AudioIn`].
pub struct AudioOut<'a> {
    data: &'a mut [f32],
    stride: usize,
    channels: usize,
    frames: usize,
}

impl<'a> AudioOut<'a> {
    /// # Panics
    /// If `frames > stride` or `data` is too short to hold the last channel.
    pub fn new(data: &'a mut [f32], stride: usize, channels: usize, frames: usize) -> Self {
        assert!(frames <= stride && data.len() >= span(stride, channels, frames), "planar view out of bounds");
        Self { data, stride, channels, frames }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The samples of channel `c`.
    pub fn channel(&self, c: usize) -> &[f32] {
        let start = c * self.stride;
        &self.data[start..start + self.frames]
    }

    /// A read-only view of the same block.
    pub fn as_in(&self) -> AudioIn<'_> {
        AudioIn { data: self.data, stride: self.stride, channels: self.channels, frames: self.frames }
    }

    /// The first `frames` frames only.
    pub fn prefix(&mut self, frames: usize) -> AudioOut<'_> {
        assert!(frames <= self.frames);
        AudioOut { data: self.data, stride: self.stride, channels: self.channels, frames }
    }

    /// Frames `start..start + frames` of every channel.
    pub fn slice_mut(&mut self, start: usize, frames: usize) -> AudioOut<'_> {
        assert!(start + frames <= self.frames);
        let end = span(self.stride, self.channels, start + frames);
        AudioOut { data: &mut self.data[start..end.max(start)], stride: self.stride, channels: self.channels, frames }
    }

    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let start = c * self.stride;
        &mut self.data[start..start + self.frames]
    }

    /// Channels `a` and `b` (`a < b`) at once, for stereo processing.
    pub fn pair_mut(&mut self, a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
        assert!(a < b && b < self.channels);
        let (lo, hi) = self.data.split_at_mut(b * self.stride);
        let frames = self.frames;
        (&mut lo[a * self.stride..a * self.stride + frames], &mut hi[..frames])
    }

    /// Copies `input` into this block (same channel count and length).
    pub fn copy_from(&mut self, input: &AudioIn<'_>) {
        for c in 0..self.channels {
            self.channel_mut(c).copy_from_slice(input.channel(c));
        }
    }

    /// Writes silence to every channel.
    pub fn fill_zero(&mut self) {
        for c in 0..self.channels {
            self.channel_mut(c).fill(0.0);
        }
    }
}
