//! Planar audio views: one contiguous `f32` allocation holds every channel, `stride` samples apart.
//!
//! Views borrow storage that the engine allocated once when the graph was prepared, so handing audio to a
//! node costs no allocation. Nodes process in place: an [`AudioOut`] holds a node's input when
//! [`Processor::process`](crate::node::Processor::process) is called and its output when it returns.

#![allow(unsafe_code)] // Views hold pointers, so that they borrow only their own samples; see `AudioOut::from_raw`.

use std::marker::PhantomData;

/// Samples a planar view of this shape covers.
fn span(stride: usize, channels: usize, frames: usize) -> usize {
    if channels == 0 { 0 } else { (channels - 1) * stride + frames }
}

/// A read-only planar block: `channels` channels of `frames` samples each.
///
/// It holds a pointer rather than a slice of the whole span: the parallel executor hands a node a view of
/// a few frames of a buffer whose other frames another thread reads at the same time, so a view must
/// never claim (borrow) more than the samples it covers.
#[derive(Clone, Copy)]
pub struct AudioIn<'a> {
    data: *const f32,
    stride: usize,
    channels: usize,
    frames: usize,
    _borrow: PhantomData<&'a [f32]>,
}

// SAFETY: an `AudioIn` is a shared borrow of `f32`s, like `&[f32]`.
unsafe impl Send for AudioIn<'_> {}
// SAFETY: as above.
unsafe impl Sync for AudioIn<'_> {}

impl<'a> AudioIn<'a> {
    /// Views `data` as `channels` planes `stride` samples apart, of which the first `frames` are used.
    ///
    /// # Panics
    /// If `frames > stride` or `data` is too short to hold the last channel.
    pub fn new(data: &'a [f32], stride: usize, channels: usize, frames: usize) -> Self {
        assert!(frames <= stride && data.len() >= span(stride, channels, frames), "planar view out of bounds");
        Self { data: data.as_ptr(), stride, channels, frames, _borrow: PhantomData }
    }

    /// A view of `channels` planes `stride` samples apart starting at `data`, `frames` samples each.
    ///
    /// # Safety
    /// `frames <= stride`, and for `'a` the view's samples (`frames` from `data + c * stride` for each
    /// channel `c`) must be valid for reads and written by nothing. Samples between the channels are not
    /// part of the view: other threads may write them meanwhile.
    pub(crate) unsafe fn from_raw(data: *const f32, stride: usize, channels: usize, frames: usize) -> Self {
        debug_assert!(frames <= stride);
        Self { data, stride, channels, frames, _borrow: PhantomData }
    }

    /// Channels in the view.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The view as the audio side's description of a caller's buffer.
    pub(crate) fn raw(&self) -> crate::RawAudio {
        crate::RawAudio::Strided { ptr: self.data.cast_mut(), stride: self.stride, channels: self.channels }
    }

    /// Frames of each channel in the view.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The samples of channel `c`.
    ///
    /// # Panics
    /// If `c` is not a channel of the view.
    pub fn channel(&self, c: usize) -> &'a [f32] {
        assert!(c < self.channels, "channel {c} of {}", self.channels);
        // SAFETY: the constructor checked that every channel's `frames` samples lie in the borrowed data.
        unsafe { std::slice::from_raw_parts(self.data.add(c * self.stride), self.frames) }
    }

    /// Frames `start..start + frames` of every channel.
    pub fn slice(&self, start: usize, frames: usize) -> AudioIn<'a> {
        assert!(start + frames <= self.frames);
        // SAFETY: a part of the view's own frames.
        let data = unsafe { self.data.add(start) };
        AudioIn { data, stride: self.stride, channels: self.channels, frames, _borrow: PhantomData }
    }

    /// The first `channels` channels.
    pub fn first_channels(&self, channels: usize) -> AudioIn<'a> {
        assert!(channels <= self.channels);
        AudioIn { channels, ..*self }
    }
}

/// A writable planar block with the same layout as [`AudioIn`].
pub struct AudioOut<'a> {
    data: *mut f32,
    stride: usize,
    channels: usize,
    frames: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: an `AudioOut` is an exclusive borrow of `f32`s, like `&mut [f32]`.
unsafe impl Send for AudioOut<'_> {}
// SAFETY: as above.
unsafe impl Sync for AudioOut<'_> {}

impl<'a> AudioOut<'a> {
    /// # Panics
    /// If `frames > stride` or `data` is too short to hold the last channel.
    pub fn new(data: &'a mut [f32], stride: usize, channels: usize, frames: usize) -> Self {
        assert!(frames <= stride && data.len() >= span(stride, channels, frames), "planar view out of bounds");
        Self { data: data.as_mut_ptr(), stride, channels, frames, _borrow: PhantomData }
    }

    /// A view of `channels` planes `stride` samples apart starting at `data`, `frames` samples each.
    ///
    /// # Safety
    /// `frames <= stride`, and for `'a` the view's samples (`frames` from `data + c * stride` for each
    /// channel `c`) must be valid for reads and writes and accessed by nothing else. Samples between the
    /// channels are not part of the view: other threads may use them meanwhile.
    pub(crate) unsafe fn from_raw(data: *mut f32, stride: usize, channels: usize, frames: usize) -> Self {
        debug_assert!(frames <= stride);
        Self { data, stride, channels, frames, _borrow: PhantomData }
    }

    /// Channels in the view.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The view as the audio side's description of a caller's buffer.
    pub(crate) fn raw(&mut self) -> crate::RawAudio {
        crate::RawAudio::Strided { ptr: self.data, stride: self.stride, channels: self.channels }
    }

    /// Frames of each channel in the view.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The samples of channel `c`.
    ///
    /// # Panics
    /// If `c` is not a channel of the view.
    pub fn channel(&self, c: usize) -> &[f32] {
        assert!(c < self.channels, "channel {c} of {}", self.channels);
        // SAFETY: the view's samples of channel `c`, borrowed as long as `self` is.
        unsafe { std::slice::from_raw_parts(self.data.add(c * self.stride), self.frames) }
    }

    /// A read-only view of the same block.
    pub fn as_in(&self) -> AudioIn<'_> {
        AudioIn {
            data: self.data,
            stride: self.stride,
            channels: self.channels,
            frames: self.frames,
            _borrow: PhantomData,
        }
    }

    /// The first `frames` frames only.
    pub fn prefix(&mut self, frames: usize) -> AudioOut<'_> {
        assert!(frames <= self.frames);
        AudioOut { data: self.data, stride: self.stride, channels: self.channels, frames, _borrow: PhantomData }
    }

    /// Frames `start..start + frames` of every channel.
    pub fn slice_mut(&mut self, start: usize, frames: usize) -> AudioOut<'_> {
        assert!(start + frames <= self.frames);
        // SAFETY: a part of the view's own frames.
        let data = unsafe { self.data.add(start) };
        AudioOut { data, stride: self.stride, channels: self.channels, frames, _borrow: PhantomData }
    }

    /// The samples of channel `c`, to write.
    ///
    /// # Panics
    /// If `c` is not a channel of the view.
    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        assert!(c < self.channels, "channel {c} of {}", self.channels);
        // SAFETY: the view's samples of channel `c`, borrowed exclusively as long as `self` is.
        unsafe { std::slice::from_raw_parts_mut(self.data.add(c * self.stride), self.frames) }
    }

    /// Channels `a` and `b` (`a < b`) at once, for stereo processing.
    pub fn pair_mut(&mut self, a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
        assert!(a < b && b < self.channels);
        let frames = self.frames;
        // SAFETY: two different channels of the view: disjoint (`frames <= stride`), and borrowed
        // exclusively as long as `self` is.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.data.add(a * self.stride), frames),
                std::slice::from_raw_parts_mut(self.data.add(b * self.stride), frames),
            )
        }
    }

    /// Channels `range` only: a port's channels in a node's block.
    ///
    /// # Panics
    /// If `range` is not within the view's channels.
    pub fn channels_mut(&mut self, range: std::ops::Range<usize>) -> AudioOut<'_> {
        assert!(range.start <= range.end && range.end <= self.channels, "channels {range:?} of {}", self.channels);
        // SAFETY: the view's own channels `range`, borrowed exclusively as long as `self` is.
        let data = unsafe { self.data.add(range.start * self.stride) };
        AudioOut { data, stride: self.stride, channels: range.len(), frames: self.frames, _borrow: PhantomData }
    }

    /// Channels `start..start + N` at once, each to write.
    ///
    /// # Panics
    /// If they are not all channels of the view.
    pub fn channel_array_mut<const N: usize>(&mut self, start: usize) -> [&mut [f32]; N] {
        assert!(start + N <= self.channels, "channels {start}..{} of {}", start + N, self.channels);
        let (data, stride, frames) = (self.data, self.stride, self.frames);
        // SAFETY: `N` different channels of the view: disjoint (`frames <= stride`), and borrowed
        // exclusively as long as `self` is.
        std::array::from_fn(|i| unsafe { std::slice::from_raw_parts_mut(data.add((start + i) * stride), frames) })
    }

    /// Copies channel `from` over channel `to` (a no-op when they are the same).
    ///
    /// # Panics
    /// If either is not a channel of the view.
    pub fn copy_channel(&mut self, from: usize, to: usize) {
        assert!(from < self.channels && to < self.channels, "channels {from}, {to} of {}", self.channels);
        if from != to {
            // SAFETY: two different channels of the view: disjoint (`frames <= stride`), both borrowed
            // exclusively through `self`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.add(from * self.stride),
                    self.data.add(to * self.stride),
                    self.frames,
                );
            }
        }
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
