//! A built-in, deterministic, music-like demo signal: drums, bass and chords in stereo, peaking near full
//! scale, so a graph can be rendered with no input file.
//!
//! Every sample is a pure function of its index (noise comes from a hash of the hit and the sample), so the
//! signal is the same on every machine and for every block size. The pattern repeats every four bars
//! (8 s at 120 BPM); the level is normalized once over that period to a -0.2 dBFS peak.

use std::f64::consts::TAU;

const BEAT_S: f64 = 0.5;
const BAR_S: f64 = 4.0 * BEAT_S;
const PERIOD_S: f64 = 4.0 * BAR_S;
/// The peak the demo is normalized to.
pub const PEAK: f64 = 0.977_237; // -0.2 dBFS

/// Chord roots (bass) and triads, one per bar: Am, F, C, G.
const ROOTS_HZ: [f64; 4] = [55.0, 43.654, 65.406, 48.999];
const CHORDS_HZ: [[f64; 3]; 4] =
    [[220.0, 261.626, 329.628], [174.614, 220.0, 261.626], [261.626, 329.628, 391.995], [195.998, 246.942, 293.665]];

fn hash(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Uniform noise in [-1, 1) for sample `n` of hit `hit` of voice `voice`.
fn noise(voice: u64, hit: u64, n: u64) -> f64 {
    let h = hash(voice.wrapping_mul(0x1000_0000_0000) ^ hit.wrapping_mul(0x10_0000) ^ n);
    (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// A band-limited sawtooth-like tone: the first `harmonics` harmonics with 1/k amplitudes, by the
/// Chebyshev recurrence `sin(kθ) = 2cos(θ)·sin((k-1)θ) - sin((k-2)θ)`.
fn additive(phase: f64, harmonics: u32) -> f64 {
    let (s1, c1) = phase.sin_cos();
    let (mut prev, mut cur) = (0.0, s1);
    let mut sum = s1;
    for k in 2..=harmonics {
        let next = 2.0 * c1 * cur - prev;
        prev = cur;
        cur = next;
        sum += cur / f64::from(k);
    }
    sum * 0.6
}

/// The generator: one normalized period, computed once, played for the requested length.
#[derive(Debug, Clone)]
pub struct DemoSignal {
    channels: usize,
    /// Interleaved stereo, one period.
    period: std::sync::Arc<[f32]>,
    next: u64,
    total: u64,
}

impl DemoSignal {
    /// `seconds` of demo at `sample_rate`, on `channels` channels (mono gets the mid, more than two
    /// channels repeat the stereo pair).
    pub fn new(sample_rate: u32, channels: usize, seconds: f64) -> Self {
        let frames = (PERIOD_S * f64::from(sample_rate)) as u64;
        let raw: Vec<(f64, f64)> = (0..frames).map(|n| raw_frame(n, sample_rate)).collect();
        let peak = raw.iter().fold(0.0f64, |p, (l, r)| p.max(l.abs()).max(r.abs()).max(((l + r) * 0.5).abs()));
        let gain = PEAK / peak;
        let period = raw.iter().flat_map(|(l, r)| [(l * gain) as f32, (r * gain) as f32]).collect();
        Self { channels, period, next: 0, total: (seconds.max(0.0) * f64::from(sample_rate)).round() as u64 }
    }

    /// The signal's length in frames.
    pub fn total_frames(&self) -> u64 {
        self.total
    }

    /// Frames left to play.
    pub fn remaining(&self) -> u64 {
        self.total - self.next
    }

    /// Moves to frame `frame` (clamped to the length).
    pub fn set_position(&mut self, frame: u64) {
        self.next = frame.min(self.total);
    }

    /// Fills up to `frames` frames of planar `out` (channel `c` at `out[c * stride..]`); returns how many
    /// were written (0 at the end).
    pub fn fill(&mut self, out: &mut crate::AudioOut<'_>) -> usize {
        let n = (out.frames() as u64).min(self.total - self.next) as usize;
        let len = self.period.len() / 2;
        // Runs of the period without a wrap: one pass per channel each.
        let mut done = 0;
        while done < n {
            let k = ((self.next + done as u64) % len as u64) as usize;
            let run = (len - k).min(n - done);
            let frames = self.period[2 * k..2 * (k + run)].chunks_exact(2);
            if self.channels == 1 {
                for (y, lr) in out.channel_mut(0)[done..done + run].iter_mut().zip(frames) {
                    *y = 0.5 * (lr[0] + lr[1]);
                }
            } else {
                for c in 0..self.channels {
                    for (y, lr) in out.channel_mut(c)[done..done + run].iter_mut().zip(frames.clone()) {
                        *y = lr[c % 2];
                    }
                }
            }
            done += run;
        }
        self.next += n as u64;
        n
    }
}

/// The unnormalized stereo frame at sample index `n`.
fn raw_frame(n: u64, sample_rate: u32) -> (f64, f64) {
    let sr = f64::from(sample_rate);
    let period = (PERIOD_S * sr) as u64;
    let n = n % period;
    let t = n as f64 / sr;
    let beat = (t / BEAT_S) as u64;
    let bar = ((t / BAR_S) as usize) % 4;

    // Kick on every beat: a sine falling from 150 Hz to 50 Hz.
    let tk = t - beat as f64 * BEAT_S;
    let kick = (TAU * (50.0 * tk + 100.0 * 0.03 * (1.0 - (-tk / 0.03).exp()))).sin() * (-tk / 0.22).exp() * 0.9;

    // Snare on beats 2 and 4: noise and a 185 Hz body.
    let mut snare = 0.0;
    if beat % 2 == 1 {
        let ts = tk;
        let i = (ts * sr) as u64;
        snare = noise(1, beat, i) * (-ts / 0.11).exp() * 0.45 + (TAU * 185.0 * ts).sin() * (-ts / 0.05).exp() * 0.35;
    }

    // Closed hi-hat on eighths: differentiated noise, a little to the right.
    let eighth = (t / (BEAT_S / 2.0)) as u64;
    let th = t - eighth as f64 * BEAT_S / 2.0;
    let ih = (th * sr) as u64;
    let hat = (noise(2, eighth, ih + 1) - noise(2, eighth, ih)) * 0.5 * (-th / 0.025).exp() * 0.22;

    // Bass: eighth notes on the bar's root, with octave jumps.
    let pattern = [1.0, 1.0, 2.0, 1.0, 1.0, 1.5, 2.0, 1.0];
    let f_bass = ROOTS_HZ[bar] * pattern[(eighth % 8) as usize];
    let bass = additive(TAU * f_bass * th, 8) * (0.35 + 0.65 * (-th / 0.12).exp()) * 0.42;

    // Chords: three voices per bar, detuned left and right.
    let tb = t - (t / BAR_S).floor() * BAR_S;
    let env = (tb / 0.04).min(1.0) * (0.4 + 0.6 * (-tb / 0.9).exp());
    let (mut cl, mut cr) = (0.0, 0.0);
    for &f in &CHORDS_HZ[bar] {
        cl += additive(TAU * f * 1.003 * tb, 5);
        cr += additive(TAU * f * 0.997 * tb, 5);
    }
    let (cl, cr) = (cl * env * 0.11, cr * env * 0.11);

    let center = kick + snare + bass;
    (center + cl + hat * 0.7, center + cr + hat)
}
