//! The shipped biquad filter as a native fxgraph plugin (the SDK): the DSP is the WebAssembly plugin's
//! own source (`plugins/src/biquad_rust/dsp.rs`), compiled for this machine. So the two builds give the
//! same bits, and timing them side by side (`cargo bench -p fxgraph-benches --bench engine -- plugins`)
//! measures the sandbox against native code, nothing else.
//!
//! Parameters as the WebAssembly plugin's manifest declares them: `type` (0 low-pass, 1 high-pass, 2
//! band-pass), `cutoff_hz` (10 to 40000 Hz, below Nyquist) and `resonance` (Q, 0.1 to 20).

use fxgraph_plugin::{abi, export_plugin, Channels, Config, Info, Param, Plugin, ERR_CONFIG, ERR_PARAM};

#[path = "../../../src/biquad_rust/dsp.rs"]
mod dsp;

const TYPE: u32 = 0;
const CUTOFF: u32 = 1;
const RESONANCE: u32 = 2;

pub struct Biquad {
    rate: f64,
    /// `type`, `cutoff_hz`, `resonance`.
    values: [f64; 3],
    k: [f64; 5],
    /// Per pair of channels (an odd last channel: lane 0 of the last).
    state: Vec<dsp::State>,
}

impl Biquad {
    fn design(&mut self) {
        self.k = dsp::design(self.values[0] as i32, self.values[1], self.values[2], self.rate);
    }
}

impl Plugin for Biquad {
    const INFO: Info = Info {
        id: c"org.fxgraph.biquad-filter.native",
        name: c"Biquad filter (native build)",
        version: c"1.0.0",
        vendor: c"fxgraph",
        params: &[
            Param::new(TYPE, c"type", c"Filter type (0 low-pass, 1 high-pass, 2 band-pass)", c"", 0.0, 2.0, 0.0)
                .flags(abi::PARAM_INTEGER | abi::PARAM_STEPPED),
            Param::new(CUTOFF, c"cutoff_hz", c"Cutoff", c"Hz", 10.0, 40000.0, 1000.0),
            Param::new(RESONANCE, c"resonance", c"Resonance (Q)", c"", 0.1, 20.0, 0.707),
        ],
        presets: &[],
        status: &[],
    };

    fn new(config: &Config) -> Result<Self, i32> {
        let rate = f64::from(config.sample_rate);
        let mut values = [0.0, 1000.0, 0.707];
        for (id, v) in &config.params {
            *values.get_mut(*id as usize).ok_or(ERR_PARAM)? = *v;
        }
        if values[1] >= rate / 2.0 {
            return Err(ERR_CONFIG);
        }
        let mut b = Biquad { rate, values, k: [0.0; 5], state: vec![[[0.0; 2]; 4]; config.channels.div_ceil(2)] };
        b.design();
        Ok(b)
    }

    fn set_param(&mut self, id: u32, value: f64) -> Result<(), i32> {
        let slot = self.values.get_mut(id as usize).ok_or(ERR_PARAM)?;
        if id == CUTOFF && value >= self.rate / 2.0 {
            return Err(ERR_PARAM);
        }
        *slot = value;
        self.design();
        Ok(())
    }

    fn process(&mut self, audio: &mut Channels<'_>) {
        let n = audio.frames();
        let mut c = 0;
        while c + 1 < audio.channels() {
            let (l, r) = audio.pair(c, c + 1);
            let (l, r) = (l.as_mut_ptr(), r.as_mut_ptr());
            // SAFETY: two distinct channels of `n` samples; `run_pair` reads a frame before writing it.
            unsafe { dsp::run_pair(&self.k, &mut self.state[c / 2], l, r, l, r, n) };
            c += 2;
        }
        if c < audio.channels() {
            let x = audio.channel(c).as_mut_ptr();
            // SAFETY: one channel of `n` samples, read before written.
            unsafe { dsp::run_one(&self.k, &mut self.state[c / 2], x, x, n) };
        }
    }

    fn reset(&mut self) {
        self.state.fill([[0.0; 2]; 4]);
    }
}

export_plugin!(Biquad);
