//! Stateless per-sample processors: gain and mid/side stereo width.

use crate::buffer::{AudioIn, AudioOut};

/// Multiplies every sample by a constant.
pub fn apply_gain(gain: f32, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
    for c in 0..input.channels() {
        for (y, x) in output.channel_mut(c).iter_mut().zip(input.channel(c)) {
            *y = x * gain;
        }
    }
}

/// Mid/side width on channels 0 and 1: `mid = (l + r) / 2`, `side = (l - r) / 2 * width`,
/// `l' = mid + side`, `r' = mid - side`. Width 0 gives mono, 1 leaves the image as it is.
pub fn apply_width(width: f32, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
    let (xl, xr) = (input.channel(0), input.channel(1));
    let (yl, yr) = output.pair_mut(0, 1);
    let side_gain = 0.5 * width;
    for i in 0..xl.len() {
        let (l, r) = (xl[i], xr[i]);
        let mid = 0.5 * (l + r);
        let side = side_gain * (l - r);
        yl[i] = mid + side;
        yr[i] = mid - side;
    }
}
