//! The plugin manifest parser, and the resolution of a config against a parsed manifest.
#![no_main]

use fxgraph::nodes::wasm::{ConfigValue, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Manifest::parse(text) {
        // Every declared parameter's range and default make sense at every rate a graph may have.
        for rate in [8000, 44100, 48000, 768000] {
            for p in &m.parameters {
                let (lo, hi) = p.range(rate);
                assert!(lo.is_finite() && hi.is_finite());
                let _ = p.value_of(&p.default, rate);
                let _ = p.value_of(&ConfigValue::Number(hi), rate);
            }
            let _ = m.resolve(&Default::default(), rate);
        }
    }
});
