//! The graph loader: RON text (any bytes) to a validated graph, including `Wasm` nodes whose modules and
//! manifests resolve against the shipped plugins. It must answer every input with a graph or an error; a
//! small graph it accepts (ports, widths, sidechains and all) must then start and run a few blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn plugins() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wasm")))
}

fn registry() -> &'static fxgraph::node::Registry {
    static R: OnceLock<fxgraph::node::Registry> = OnceLock::new();
    R.get_or_init(fxgraph::nodes::registry)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = fxgraph::Graph::parse_with(&text, "fuzz.ron", plugins(), registry());
    if let Ok(graph) = parsed {
        if graph.nodes.len() <= 32 {
            let options = fxgraph::EngineOptions { max_block: 64, threads: 1, ..Default::default() };
            if let Ok((_engine, mut audio)) = fxgraph::Engine::new(graph, options) {
                let (ins, outs) = (audio.input_channels(), audio.output_channels());
                let input = vec![0.25f32; ins * 200];
                let mut output = vec![0.0f32; outs * 200];
                audio.process(
                    &fxgraph::AudioIn::new(&input, 200, ins, 200),
                    &mut fxgraph::AudioOut::new(&mut output, 200, outs, 200),
                );
            }
        }
        return;
    }
    if let Err(e) = parsed {
        // The error renders, and its position lies inside the text.
        let _ = e.to_string();
        if let Some((line, col)) = e.position {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(line >= 1 && line <= lines.len());
            assert!(col >= 1 && col <= lines[line - 1].chars().count() + 1);
        }
    }
});
