//! A test plugin written with the SDK: passes audio through, and panics in `process` on the block that its
//! `panic_at` parameter names (counting from 1; 0 never panics), or in `set_param` when `panic_on_set` is 1.
use fxgraph_plugin::{Channels, Config, ERR_PARAM, Info, Param, Plugin, abi, export_plugin};

pub struct Panicky {
    panic_at: u64,
    blocks: u64,
}

impl Plugin for Panicky {
    const INFO: Info = Info {
        id: c"org.fxgraph.test-panic",
        name: c"Panics on purpose",
        version: c"0.0.0",
        vendor: c"fxgraph tests",
        params: &[
            Param::new(0, c"panic_at", c"Panic at block", c"", 0.0, 1e9, 0.0).flags(abi::PARAM_INTEGER),
            Param::new(1, c"panic_on_set", c"Panic on set", c"", 0.0, 1.0, 0.0).flags(abi::PARAM_TOGGLE),
        ],
        presets: &[],
        status: &[c"blocks"],
    };

    fn new(config: &Config) -> Result<Self, i32> {
        Ok(Self { panic_at: config.param(0).unwrap_or(0.0) as u64, blocks: 0 })
    }

    fn set_param(&mut self, id: u32, value: f64) -> Result<(), i32> {
        match id {
            0 => self.panic_at = value as u64,
            1 if value >= 0.5 => panic!("set_param was told to panic"),
            1 => {}
            _ => return Err(ERR_PARAM),
        }
        Ok(())
    }

    fn process(&mut self, _audio: &mut Channels<'_>) {
        self.blocks += 1;
        if self.blocks == self.panic_at {
            panic!("process was told to panic at block {}", self.blocks);
        }
    }

    fn status(&mut self, values: &mut [f64]) {
        values[0] = self.blocks as f64;
    }
}

export_plugin!(Panicky);
