//! `fxgraph check`: validates a graph and prints its processing order, branch groups and latency.

use crate::{Failure, load, start};
use fxgraph::ParamValue;
use std::path::Path;

pub(crate) fn run(graph_path: &Path, dot: bool) -> Result<(), Failure> {
    if dot {
        print!("{}", to_dot(graph_path)?);
        return Ok(());
    }
    let graph = load(graph_path)?;
    let fmt = graph.format;
    let count = graph.nodes.len();
    let base_dir = graph.base_dir.clone();
    let (graph_inputs, graph_outputs) = (graph.inputs.clone(), graph.outputs.clone());
    // Each node's ports with their widths, where it is more than one input and one output of the graph's.
    let ports: std::collections::HashMap<String, String> = graph
        .nodes
        .iter()
        .filter(|n| !(n.layout.is_effect() && n.layout.input(0) == fmt.channels))
        .map(|n| {
            let side = |ports: &[fxgraph::node::Port], widths: Vec<usize>| {
                let shown = ports.iter().zip(widths).filter(|(_, w)| *w > 0);
                shown.map(|(p, w)| format!("{} ({w})", p.name)).collect::<Vec<_>>().join(", ")
            };
            let text = format!(
                "{} -> {}",
                side(&n.ports.inputs, n.layout.inputs()),
                side(&n.ports.outputs, n.layout.outputs())
            );
            (n.name.clone(), text)
        })
        .collect();
    let (engine, _audio) = start(graph, 512, 1)?;
    let plan = engine.plan();
    let world = engine.world();
    let kind_of = |i: usize| {
        engine.spec(plan.order[i]).map_or_else(
            || "?".to_string(),
            |p| if p.source() == p.kind() { p.kind().to_string() } else { format!("{} ({})", p.kind(), p.source()) },
        )
    };
    let latency_of = |i: usize| world.get::<fxgraph::control::Latency>(plan.order[i]).map_or(0, |l| l.own);
    println!("{}: valid ({} Hz, {} channels, {count} nodes)", graph_path.display(), fmt.sample_rate, fmt.channels);
    let show = |e: &[fxgraph::graph::Endpoint]| {
        e.iter().map(|e| format!("{} ({} ch)", e.name, e.channels)).collect::<Vec<_>>().join(", ")
    };
    if graph_inputs.len() > 1 || graph_outputs.len() > 1 || graph_inputs[0].name != "main" {
        println!("inputs: {}; outputs: {}", show(&graph_inputs), show(&graph_outputs));
    }
    println!("processing order:");
    let width = plan.names.iter().map(String::len).max().unwrap_or(0);
    for (i, name) in plan.names.iter().enumerate() {
        let lat = latency_of(i);
        let lat = if lat > 0 { format!("  latency {lat} frames") } else { String::new() };
        println!("  {:>2}. {name:<width$}  {}{lat}", i + 1, kind_of(i));
        if let Some(p) = ports.get(name) {
            println!("      {:<width$}  ports {p}", "");
        }
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
    for (i, name) in plan.names.iter().enumerate() {
        let Some(code) = engine.spec(plan.order[i]).and_then(|p| p.native_code(&base_dir)) else { continue };
        if let Err(why) = fxgraph::trust::check(&code) {
            println!(
                "warning: node \"{name}\" loads native code from {}, which others can change: {why} \
                 (pin it with `sha256`, or move it where only you and root can write)",
                code.display()
            );
        }
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

/// Whether a label already lists an Eq's bands (its third line is a band).
fn eq_bands(lines: &[String]) -> bool {
    lines.get(1).is_some_and(|k| k == "Eq")
}

/// A DOT label of several lines (Graphviz's `\\n` line breaks between the escaped lines).
fn label(lines: &[String]) -> String {
    let escaped: Vec<String> = lines.iter().map(|l| l.replace('\\', "\\\\").replace('"', "\\\"")).collect();
    format!("\"{}\"", escaped.join("\\n"))
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The graph as Graphviz DOT: nodes with their kind, key parameters and latency; edges (with latency
/// compensation marked); parallel branch groups as clusters.
pub(crate) fn to_dot(graph_path: &Path) -> Result<String, Failure> {
    let graph = load(graph_path)?;
    let fmt = graph.format;
    // Each edge: its nodes (or `input`, `output`) and the ports it joins, where a side has several.
    let edges: Vec<(String, String, String)> = {
        use fxgraph::graph::{Link, Source};
        let from = |l: &Link| match l.from {
            Source::Input => {
                ("input".to_string(), (graph.inputs.len() > 1).then(|| graph.inputs[l.from_port].name.clone()))
            }
            Source::Node(i) => {
                let n = &graph.nodes[i];
                (n.name.clone(), (n.ports.outputs.len() > 1).then(|| n.ports.outputs[l.from_port].name.clone()))
            }
        };
        let label = |a: Option<String>, b: Option<String>| match (a, b) {
            (None, None) => String::new(),
            (Some(a), None) => a,
            (None, Some(b)) => format!("> {b}"),
            (Some(a), Some(b)) => format!("{a} > {b}"),
        };
        let mut out = Vec::new();
        for n in &graph.nodes {
            for l in &n.inputs {
                let (f, fp) = from(l);
                let tp = (l.to_port > 0).then(|| n.ports.inputs[l.to_port].name.clone());
                out.push((f, n.name.clone(), label(fp, tp)));
            }
        }
        for l in &graph.output {
            let (f, fp) = from(l);
            let tp = (l.to_port > 0).then(|| graph.outputs[l.to_port].name.clone());
            out.push((f, "output".to_string(), label(fp, tp)));
        }
        out
    };
    let (mut engine, _audio) = start(graph, 512, 1)?;
    let plan = engine.plan().clone();
    let mut out = String::new();
    out.push_str(&format!("digraph {} {{\n", quote(&graph_path.display().to_string())));
    out.push_str(&format!(
        "  label={}; labelloc=t; rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
        quote(&format!("{} ({} Hz, {} ch, latency {} frames)", graph_path.display(), fmt.sample_rate, fmt.channels, plan.latency))
    ));
    out.push_str("  \"input\" [shape=oval];\n  \"output\" [shape=oval];\n");
    for (i, name) in plan.names.iter().enumerate() {
        let e = plan.order[i];
        let kind = engine.spec(e).map_or("?", |p| p.kind()).to_string();
        let latency = engine.world().get::<fxgraph::control::Latency>(e).map_or(0, |l| l.own);
        let params = engine.params(name).unwrap_or_default();
        let mut lines = vec![name.clone(), kind];
        let eq = engine.spec(e).and_then(|s| s.as_any().downcast_ref::<fxgraph::nodes::builtin::EqParams>()).cloned();
        if let Some(eq) = eq {
            for b in &eq.bands {
                let gain = if b.kind.uses_gain() { format!(" {:+} dB", b.gain_db) } else { String::new() };
                lines.push(format!("{:?} {} Hz{gain} Q {}", b.kind, b.freq_hz, b.q));
            }
        }
        for p in params.iter().take(if eq_bands(&lines) { 0 } else { 4 }) {
            let value = match engine.get(name, &p.name) {
                Ok(ParamValue::Number(v)) => format!("{v}{}{}", if p.unit.is_empty() { "" } else { " " }, p.unit),
                Ok(ParamValue::Text(t)) => t,
                Err(_) => continue,
            };
            lines.push(format!("{} = {value}", p.name));
        }
        if params.len() > 4 && !eq_bands(&lines) {
            lines.push(format!("(+{} more)", params.len() - 4));
        }
        if latency > 0 {
            lines.push(format!("latency {latency} frames"));
        }
        out.push_str(&format!("  {} [label={}];\n", quote(name), label(&lines)));
    }
    for (l, branches) in plan.levels.iter().enumerate() {
        if branches.len() < 2 {
            continue;
        }
        for (b, branch) in branches.iter().enumerate() {
            out.push_str(&format!(
                "  subgraph \"cluster_{l}_{b}\" {{ label={}; style=dashed; color=gray50; ",
                quote(&format!("level {} branch {}", l + 1, b + 1))
            ));
            for &i in branch {
                out.push_str(&format!("{}; ", quote(&plan.names[i])));
            }
            out.push_str("}\n");
        }
    }
    for (from, to, ports) in edges {
        let comp = plan.compensations.iter().find(|(f, t, _)| *f == from && *t == to).map(|(_, _, n)| *n);
        let text: Vec<String> = [(!ports.is_empty()).then_some(ports), comp.map(|n| format!("+{n} frames"))]
            .into_iter()
            .flatten()
            .collect();
        if text.is_empty() {
            out.push_str(&format!("  {} -> {};\n", quote(&from), quote(&to)));
        } else {
            out.push_str(&format!("  {} -> {} [label={}];\n", quote(&from), quote(&to), quote(&text.join(", "))));
        }
    }
    out.push_str("}\n");
    Ok(out)
}
