//! The graph loader: RON text (any bytes) to a validated graph, including `Wasm` nodes whose modules and
//! manifests resolve against the shipped plugins. It must answer every input with a graph or an error.
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
    if let Err(e) = fxgraph::Graph::parse_with(&text, "fuzz.ron", plugins(), registry()) {
        // The error renders, and its position lies inside the text.
        let _ = e.to_string();
        if let Some((line, col)) = e.position {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(line >= 1 && line <= lines.len());
            assert!(col >= 1 && col <= lines[line - 1].chars().count() + 1);
        }
    }
});
