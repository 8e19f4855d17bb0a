//! The preset loader: any bytes as a preset file, parsed and applied to the running enhancer graph. It must
//! answer with the values applied or an error located inside the text, never a panic.
#![no_main]

use fxgraph::graph::preset::Preset;
use fxgraph::{Engine, EngineOptions, Error, Graph};
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

fn engine() -> &'static Mutex<Engine> {
    static E: OnceLock<Mutex<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../graphs/enhancer.ron");
        let graph = Graph::load(path.as_ref()).expect("enhancer.ron");
        let (engine, audio) = Engine::new(graph, EngineOptions { threads: 1, ..Default::default() }).expect("engine");
        std::mem::forget(audio); // no audio runs; the engine only checks and applies values
        Mutex::new(engine)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let check = |e: &fxgraph::graph::preset::PresetError| {
        let _ = e.to_string();
        if let Some((line, col)) = e.position {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(line >= 1 && line <= lines.len());
            assert!(col >= 1 && col <= lines[line - 1].chars().count() + 1);
        }
    };
    match Preset::parse(&text, "fuzz.ron") {
        Err(e) => check(&e),
        Ok(preset) => {
            // What parses also renders back to text that parses to the same values.
            let again = Preset::parse(&preset.to_ron(), "again.ron").expect("own output parses");
            assert_eq!(again.entries.len(), preset.entries.len());
            let mut engine = engine().lock().expect("engine");
            match engine.apply_preset_values(&preset) {
                Ok(_) => {}
                Err(Error::Preset(e)) => check(&e),
                Err(e) => panic!("a preset's values are refused as a preset error, not {e:?}"),
            }
        }
    }
});
