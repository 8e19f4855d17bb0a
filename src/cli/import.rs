//! `fxgraph import eq`: an EqualizerAPO / AutoEq parametric EQ profile written out as a graph, its filters as
//! an `Eq` node's bands (the cookbook's Q form at the graph's rate) and its preamp as the node's gain.

use crate::{Failure, bad_input};
use anyhow::Context as _;
use fxgraph::graph::eqapo;
use std::fmt::Write as _;
use std::path::Path;

/// Reads `profile` and writes the graph to `output` (stdout without one), after checking that it loads.
pub(crate) fn eq(profile: &Path, output: Option<&Path>, sample_rate: u32, channels: usize) -> Result<(), Failure> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("cannot read {}", profile.display()))
        .map_err(bad_input)?;
    let eq = eqapo::parse(&text, &profile.display().to_string(), f64::from(sample_rate)).map_err(bad_input)?;
    if eq.bands.is_empty() {
        return Err(bad_input(anyhow::anyhow!("{}: no filter is ON", profile.display())));
    }
    let graph = write(&eq, profile, sample_rate, channels);
    // What is written must load as it is.
    let base = output.and_then(Path::parent).unwrap_or(Path::new("."));
    fxgraph::Graph::parse(&graph, "imported.ron", base)
        .map_err(|e| Failure::Other(anyhow::anyhow!("the imported graph does not load: {e}")))?;
    match output {
        Some(path) => std::fs::write(path, graph).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{graph}"),
    }
    Ok(())
}

/// The graph's text: input → `Eq` → output.
fn write(eq: &eqapo::ParametricEq, profile: &Path, sample_rate: u32, channels: usize) -> String {
    let name = profile.file_name().map_or_else(|| profile.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// {name} (EqualizerAPO / AutoEq), written out by `fxgraph import eq`: a preamp of {} dB and {} filter(s).",
        eq.preamp_db,
        eq.bands.len()
    );
    let _ = writeln!(out, "(\n    sample_rate: {sample_rate},\n    channels: {channels},\n    nodes: {{");
    let _ = writeln!(out, "        \"eq\": Eq(\n            gain_db: {:?},\n            bands: [", eq.preamp_db);
    for b in &eq.bands {
        let kind = ron::to_string(&b.kind).unwrap_or_default();
        let _ = writeln!(
            out,
            "                (kind: {kind}, freq_hz: {:?}, gain_db: {:?}, q: {:?}),",
            b.freq_hz, b.gain_db, b.q
        );
    }
    let _ = writeln!(out, "            ],\n        ),\n    }},");
    let _ = writeln!(out, "    edges: [(\"input\", \"eq\"), (\"eq\", \"output\")],\n)");
    out
}
