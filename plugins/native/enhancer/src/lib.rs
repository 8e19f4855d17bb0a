//! The original player's "enhancer" trio as one native fxgraph plugin: a bass boost (RBJ low shelf), a
//! treble boost (RBJ high shelf) and a stereo enhancer (mid/side width), in that order, with `f64` filter
//! math. A stage at its neutral setting (0 dB, width 1) is skipped, so "bass only" costs one shelf.
//!
//! Parameters: `bass_gain_db` and `treble_gain_db` (-24 to 24 dB), `bass_freq_hz` (20 to 500 Hz),
//! `treble_freq_hz` (1 to 20 kHz, below Nyquist), `width` (0 = mono to 4). Presets `flat`, `warm`,
//! `bright`, `wide`. Status: `peak_in_dbfs` and `peak_out_dbfs` since the last status call.

use fxgraph_plugin::{Channels, Config, ERR_CONFIG, ERR_PARAM, Info, Param, Plugin, Preset, export_plugin};

const BASS_GAIN: u32 = 0;
const BASS_FREQ: u32 = 1;
const TREBLE_GAIN: u32 = 2;
const TREBLE_FREQ: u32 = 3;
const WIDTH: u32 = 4;
const Q: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// An RBJ shelf, transposed direct form II, coefficients and state in `f64`.
#[derive(Clone, Copy, Default)]
struct Shelf {
    b: [f64; 3],
    a: [f64; 2],
}

impl Shelf {
    fn new(high: bool, freq: f64, gain_db: f64, rate: f64) -> Self {
        let a = 10f64.powf(gain_db / 40.0);
        let w0 = std::f64::consts::TAU * freq / rate;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * Q);
        let k = 2.0 * a.sqrt() * alpha;
        let s = if high { -1.0 } else { 1.0 };
        // The cookbook's low shelf; the high shelf is the same with the sign of cos flipped.
        let (b0, b1, b2) = (
            a * ((a + 1.0) - s * (a - 1.0) * cos + k),
            s * 2.0 * a * ((a - 1.0) - s * (a + 1.0) * cos),
            a * ((a + 1.0) - s * (a - 1.0) * cos - k),
        );
        let (a0, a1, a2) = (
            (a + 1.0) + s * (a - 1.0) * cos + k,
            -s * 2.0 * ((a - 1.0) + s * (a + 1.0) * cos),
            (a + 1.0) + s * (a - 1.0) * cos - k,
        );
        Self { b: [b0 / a0, b1 / a0, b2 / a0], a: [a1 / a0, a2 / a0] }
    }

    #[inline(always)]
    fn run(&self, x: &mut [f32], s: &mut [f64; 2]) {
        let [b0, b1, b2] = self.b;
        let [a1, a2] = self.a;
        let (mut s0, mut s1) = (s[0], s[1]);
        for v in x {
            let input = f64::from(*v);
            let y = b0 * input + s0;
            s0 = b1 * input - a1 * y + s1;
            s1 = b2 * input - a2 * y;
            *v = y as f32;
        }
        *s = [s0, s1];
    }

    /// [`run`](Self::run) on two channels at once, written lane by lane (the same operations, so the same
    /// bits) so that the two recursions overlap in the pipeline instead of each waiting on its own.
    #[inline(always)]
    fn run2(&self, l: &mut [f32], r: &mut [f32], sl: &mut [f64; 2], sr: &mut [f64; 2]) {
        let [b0, b1, b2] = self.b;
        let [a1, a2] = self.a;
        let (mut s0, mut s1) = ([sl[0], sr[0]], [sl[1], sr[1]]);
        for (a, b) in l.iter_mut().zip(r.iter_mut()) {
            let x = [f64::from(*a), f64::from(*b)];
            let y = [b0 * x[0] + s0[0], b0 * x[1] + s0[1]];
            s0 = [b1 * x[0] - a1 * y[0] + s1[0], b1 * x[1] - a1 * y[1] + s1[1]];
            s1 = [b2 * x[0] - a2 * y[0], b2 * x[1] - a2 * y[1]];
            *a = y[0] as f32;
            *b = y[1] as f32;
        }
        *sl = [s0[0], s1[0]];
        *sr = [s0[1], s1[1]];
    }
}

pub struct Enhancer {
    rate: f64,
    values: [f64; 5],
    bass: Shelf,
    treble: Shelf,
    /// Filter state per channel: bass, treble.
    state: Vec<[[f64; 2]; 2]>,
    peak_in: f32,
    peak_out: f32,
}

impl Enhancer {
    fn design(&mut self) {
        self.bass = Shelf::new(false, self.values[1], self.values[0], self.rate);
        self.treble = Shelf::new(true, self.values[3], self.values[2], self.rate);
    }
}

/// The largest magnitude in `audio`, in eight lanes the compiler vectorizes.
fn peak(audio: &mut Channels<'_>) -> f32 {
    let mut lanes = [0.0f32; 8];
    for c in 0..audio.channels() {
        let x = audio.channel(c);
        let chunks = x.chunks_exact(8);
        for v in chunks.remainder() {
            lanes[0] = if v.abs() > lanes[0] { v.abs() } else { lanes[0] };
        }
        for chunk in chunks {
            for (m, v) in lanes.iter_mut().zip(chunk) {
                *m = if v.abs() > *m { v.abs() } else { *m };
            }
        }
    }
    lanes.iter().fold(0.0f32, |p, &m| p.max(m))
}

impl Plugin for Enhancer {
    const INFO: Info = Info {
        id: c"org.fxgraph.enhancer",
        name: c"Enhancer (bass, treble, width)",
        version: c"1.0.0",
        vendor: c"fxgraph",
        params: &[
            Param::new(BASS_GAIN, c"bass_gain_db", c"Bass boost", c"dB", -24.0, 24.0, 3.0),
            Param::new(BASS_FREQ, c"bass_freq_hz", c"Bass frequency", c"Hz", 20.0, 500.0, 100.0),
            Param::new(TREBLE_GAIN, c"treble_gain_db", c"Treble boost", c"dB", -24.0, 24.0, 2.0),
            Param::new(TREBLE_FREQ, c"treble_freq_hz", c"Treble frequency", c"Hz", 1000.0, 20000.0, 8000.0),
            Param::new(WIDTH, c"width", c"Stereo width", c"", 0.0, 4.0, 1.25),
        ],
        presets: &[
            Preset { name: c"flat", values: &[(BASS_GAIN, 0.0), (TREBLE_GAIN, 0.0), (WIDTH, 1.0)] },
            Preset {
                name: c"warm",
                values: &[
                    (BASS_GAIN, 5.0),
                    (BASS_FREQ, 110.0),
                    (TREBLE_GAIN, -2.0),
                    (TREBLE_FREQ, 7000.0),
                    (WIDTH, 1.1),
                ],
            },
            Preset {
                name: c"bright",
                values: &[(BASS_GAIN, 1.0), (BASS_FREQ, 80.0), (TREBLE_GAIN, 4.5), (TREBLE_FREQ, 9000.0), (WIDTH, 1.4)],
            },
            Preset { name: c"wide", values: &[(BASS_GAIN, 2.0), (TREBLE_GAIN, 2.0), (WIDTH, 1.8)] },
        ],
        status: &[c"peak_in_dbfs", c"peak_out_dbfs"],
    };

    fn new(config: &Config) -> Result<Self, i32> {
        let rate = f64::from(config.sample_rate);
        let mut values = [3.0, 100.0, 2.0, 8000.0, 1.25];
        for (id, v) in &config.params {
            *values.get_mut(*id as usize).ok_or(ERR_PARAM)? = *v;
        }
        if values[3] >= rate / 2.0 || values[1] >= rate / 2.0 {
            return Err(ERR_CONFIG);
        }
        let mut e = Enhancer {
            rate,
            values,
            bass: Shelf::default(),
            treble: Shelf::default(),
            state: vec![[[0.0; 2]; 2]; config.channels],
            peak_in: 0.0,
            peak_out: 0.0,
        };
        e.design();
        Ok(e)
    }

    fn set_param(&mut self, id: u32, value: f64) -> Result<(), i32> {
        let slot = self.values.get_mut(id as usize).ok_or(ERR_PARAM)?;
        if (id == TREBLE_FREQ || id == BASS_FREQ) && value >= self.rate / 2.0 {
            return Err(ERR_PARAM);
        }
        *slot = value;
        if id != WIDTH {
            self.design();
        }
        Ok(())
    }

    fn process(&mut self, audio: &mut Channels<'_>) {
        self.peak_in = self.peak_in.max(peak(audio));
        let stages = [(self.values[BASS_GAIN as usize] != 0.0, 0), (self.values[TREBLE_GAIN as usize] != 0.0, 1)];
        // Channels in pairs, both recursions of a pair in one loop.
        let mut c = 0;
        while c < audio.channels() {
            let pair = c + 1 < audio.channels();
            for (on, stage) in stages {
                if !on {
                    continue;
                }
                let shelf = if stage == 0 { &self.bass } else { &self.treble };
                if pair {
                    let (l, r) = audio.pair(c, c + 1);
                    let (sl, sr) = self.state.split_at_mut(c + 1);
                    shelf.run2(l, r, &mut sl[c][stage], &mut sr[0][stage]);
                } else {
                    shelf.run(audio.channel(c), &mut self.state[c][stage]);
                }
            }
            c += if pair { 2 } else { 1 };
        }
        let width = self.values[WIDTH as usize];
        if audio.channels() == 2 && width != 1.0 {
            let w = width as f32;
            let (l, r) = audio.pair(0, 1);
            for (a, b) in l.iter_mut().zip(r.iter_mut()) {
                let (mid, side) = ((*a + *b) * 0.5, (*a - *b) * 0.5 * w);
                *a = mid + side;
                *b = mid - side;
            }
        }
        self.peak_out = self.peak_out.max(peak(audio));
    }

    fn reset(&mut self) {
        for s in &mut self.state {
            *s = [[0.0; 2]; 2];
        }
    }

    fn status(&mut self, values: &mut [f64]) {
        let db = |p: f32| 20.0 * f64::from(p).max(1e-10).log10();
        if let Some(v) = values.get_mut(0) {
            *v = db(self.peak_in);
        }
        if let Some(v) = values.get_mut(1) {
            *v = db(self.peak_out);
        }
        self.peak_in = 0.0;
        self.peak_out = 0.0;
    }
}

export_plugin!(Enhancer);
