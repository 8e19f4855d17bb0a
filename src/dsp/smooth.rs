//! Parameter smoothing: linear ramps of a fixed length, positioned in frames so that the result does not
//! depend on how the signal is cut into blocks.

/// A linear ramp from the value it had when its target last changed to that target, over `len` frames.
///
/// The value after `pos` frames is `start + (target - start) * pos / len`, computed from the frame count
/// alone, so it is the same whatever the block boundaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    start: f64,
    target: f64,
    pos: u32,
    len: u32,
}

impl Ramp {
    /// A ramp resting at `value`.
    pub fn new(value: f64) -> Self {
        Self { start: value, target: value, pos: 0, len: 0 }
    }

    /// The value now.
    #[inline]
    pub fn value(&self) -> f64 {
        self.value_after(0)
    }

    /// The value `ahead` frames from now.
    #[inline]
    pub fn value_after(&self, ahead: u32) -> f64 {
        let pos = self.pos.saturating_add(ahead);
        if pos >= self.len {
            self.target
        } else {
            self.start + (self.target - self.start) * (pos as f64 / self.len as f64)
        }
    }

    /// The value the ramp moves to.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// Ramps from the current value to `target` over `len` frames (at once if `len` is 0).
    pub fn set(&mut self, target: f64, len: u32) {
        self.start = self.value();
        self.target = target;
        self.pos = 0;
        self.len = len;
    }

    /// Restarts the ramp from the current value towards the same target over `len` frames, so that
    /// several ramps of one node stay in step after any of them is retargeted.
    pub fn restart(&mut self, len: u32) {
        self.set(self.target, len);
    }

    /// Jumps to `value`.
    pub fn jump(&mut self, value: f64) {
        *self = Self::new(value);
    }

    /// Whether the value is still moving.
    #[inline]
    pub fn active(&self) -> bool {
        self.pos < self.len
    }

    /// Frames until the ramp ends.
    pub fn remaining(&self) -> u32 {
        self.len.saturating_sub(self.pos)
    }

    /// Moves `frames` frames on.
    #[inline]
    pub fn advance(&mut self, frames: usize) {
        self.pos = self.pos.saturating_add(frames.min(u32::MAX as usize) as u32).min(self.len);
    }
}

/// The ramp length for `ms` milliseconds at `sample_rate`, in frames (at least 1).
pub fn ramp_frames(ms: f64, sample_rate: u32) -> u32 {
    ((ms * 1e-3 * f64::from(sample_rate)).round() as u32).max(1)
}

/// A gain ramped sample by sample: writes the gain for each of the next `out.len()` frames into `out`
/// (the gain after each frame's step, so a ramp of `len` frames reaches its target on its last frame) and
/// moves the ramp on. Returns `None` if the gain is constant over the span (then `out` is untouched),
/// with the constant.
pub fn ramp_gains(ramp: &mut Ramp, out: &mut [f32]) -> Result<(), f32> {
    if !ramp.active() {
        return Err(ramp.value() as f32);
    }
    for (i, g) in out.iter_mut().enumerate() {
        *g = ramp.value_after(i as u32 + 1) as f32;
    }
    ramp.advance(out.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_is_linear_and_independent_of_how_it_is_advanced() {
        let mut a = Ramp::new(1.0);
        a.set(3.0, 100);
        let mut b = a;
        for _ in 0..10 {
            a.advance(5);
        }
        b.advance(50);
        assert_eq!(a.value(), b.value());
        assert!((a.value() - 2.0).abs() < 1e-12);
        a.advance(1000);
        assert_eq!(a.value(), 3.0);
        assert!(!a.active());
        // Retargeting mid-ramp starts from where the value is.
        b.set(0.0, 10);
        assert!((b.value() - 2.0).abs() < 1e-12);
        b.advance(5);
        assert!((b.value() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn gains_reach_the_target_on_the_last_frame() {
        let mut r = Ramp::new(0.0);
        r.set(1.0, 4);
        let mut g = [0.0f32; 6];
        assert!(ramp_gains(&mut r, &mut g).is_ok());
        assert_eq!(g, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        assert_eq!(ramp_gains(&mut r, &mut g[..2]), Err(1.0));
    }
}
