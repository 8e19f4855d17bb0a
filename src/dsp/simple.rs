//! Per-sample processors without memory: gain and mid/side stereo width, each with a ramped setting.

use super::smooth::{Ramp, ramp_gains};
use crate::node::AudioOut;

/// A gain whose changes ramp sample by sample.
#[derive(Debug, Clone)]
pub struct RampedGain {
    gain: Ramp,
    scratch: Vec<f32>,
    len: u32,
}

impl RampedGain {
    /// `gain` as a linear factor; changes ramp over `ramp_len` frames.
    pub fn new(gain: f64, ramp_len: u32) -> Self {
        Self { gain: Ramp::new(gain), scratch: Vec::new(), len: ramp_len }
    }

    /// Allocates for blocks of up to `max_block` frames (control side).
    pub fn prepare(&mut self, max_block: usize) {
        self.scratch = vec![0.0; max_block];
    }

    /// Ramps to `gain` (linear) over the ramp length.
    pub fn set(&mut self, gain: f64) {
        self.gain.set(gain, self.len);
    }

    /// Whether the gain is 1 and not moving: processing would change nothing.
    pub fn is_unity(&self) -> bool {
        !self.gain.active() && self.gain.target() == 1.0
    }

    /// Ends any ramp at its target.
    pub fn settle(&mut self) {
        let t = self.gain.target();
        self.gain.jump(t);
    }

    /// The gain for each frame of the next `n` (a constant, or `scratch` filled), moving the ramp on.
    fn gains(&mut self, n: usize) -> Result<&[f32], f32> {
        let scratch = &mut self.scratch[..n];
        ramp_gains(&mut self.gain, scratch).map(|()| &*scratch)
    }

    /// Multiplies every sample by the gain.
    pub fn process(&mut self, audio: &mut AudioOut<'_>) {
        let channels = audio.channels();
        match self.gains(audio.frames()) {
            Err(gain) => {
                for c in 0..channels {
                    for y in audio.channel_mut(c) {
                        *y *= gain;
                    }
                }
            }
            Ok(gains) => {
                for c in 0..channels {
                    for (y, g) in audio.channel_mut(c).iter_mut().zip(gains) {
                        *y *= g;
                    }
                }
            }
        }
    }

    /// Mid/side width on channels 0 and 1, the gain being the width: `mid = (l + r) / 2`,
    /// `side = (l - r) / 2 * width`, `l' = mid + side`, `r' = mid - side`. Width 0 gives mono, 1 leaves
    /// the image as it is.
    pub fn process_width(&mut self, audio: &mut AudioOut<'_>) {
        let n = audio.frames();
        let gains = self.gains(n);
        let (l, r) = audio.pair_mut(0, 1);
        let width = |l: &mut f32, r: &mut f32, w: f32| {
            let mid = 0.5 * (*l + *r);
            let side = 0.5 * w * (*l - *r);
            *l = mid + side;
            *r = mid - side;
        };
        match gains {
            Err(w) => {
                for (l, r) in l.iter_mut().zip(r.iter_mut()) {
                    width(l, r, w);
                }
            }
            Ok(ws) => {
                for ((l, r), &w) in l.iter_mut().zip(r.iter_mut()).zip(ws) {
                    width(l, r, w);
                }
            }
        }
    }
}
