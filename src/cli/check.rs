//! `fxgraph check`: validates a graph and prints its processing order, branch groups and latency.

use crate::{Failure, load, start};
use std::path::Path;

pub(crate) fn run(graph_path: &Path) -> Result<(), Failure> {
    let graph = load(graph_path)?;
    let fmt = graph.format;
    let count = graph.nodes.len();
    let (engine, _audio) = start(graph, 512, 1)?;
    let plan = engine.plan();
    let world = engine.world();
    let kind_of = |i: usize| engine.spec(plan.order[i]).map_or("?", |p| p.kind());
    let latency_of = |i: usize| world.get::<fxgraph::control::Latency>(plan.order[i]).map_or(0, |l| l.own);
    println!("{}: valid ({} Hz, {} channels, {count} nodes)", graph_path.display(), fmt.sample_rate, fmt.channels);
    println!("processing order:");
    let width = plan.names.iter().map(String::len).max().unwrap_or(0);
    for (i, name) in plan.names.iter().enumerate() {
        let lat = latency_of(i);
        let lat = if lat > 0 { format!("  latency {lat} frames") } else { String::new() };
        println!("  {:>2}. {name:<width$}  {}{lat}", i + 1, kind_of(i));
    }
    println!("parallel branch groups:");
    for (l, branches) in plan.levels.iter().enumerate() {
        let groups: Vec<String> = branches
            .iter()
            .map(|b| format!("[{}]", b.iter().map(|&i| plan.names[i].as_str()).collect::<Vec<_>>().join(" -> ")))
            .collect();
        println!("  level {}: {}", l + 1, groups.join("  "));
    }
    for (from, to, frames) in &plan.compensations {
        println!("latency compensation: {frames} frames on {from} -> {to}");
    }
    for name in &plan.pruned {
        println!("warning: node \"{name}\" does not reach the output and is not processed");
    }
    println!(
        "total latency: {} frames ({:.3} ms)",
        plan.latency,
        plan.latency as f64 * 1000.0 / f64::from(fmt.sample_rate)
    );
    Ok(())
}
