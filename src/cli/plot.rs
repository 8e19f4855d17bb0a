//! `fxgraph plot`: a graph's measured frequency response (magnitude and group delay), the cookbook curves of
//! its built-in filters, or its topology through Graphviz.

use crate::picture::{draw_response, response, write_picture};
use crate::{Failure, bad_input, load, write_atomically};
use std::path::{Path, PathBuf};

pub(crate) fn run(
    graph_path: &Path,
    output: Option<PathBuf>,
    nodes: &[String],
    data: Option<&Path>,
    target: Option<&Path>,
    level: Option<f64>,
    topology: bool,
) -> Result<(), Failure> {
    let stem = graph_path.file_stem().map_or("graph".into(), |s| s.to_string_lossy().into_owned());
    if topology {
        let output = output.unwrap_or_else(|| PathBuf::from(format!("{stem}-topology.svg")));
        return draw_topology(graph_path, &output);
    }
    if let Some(l) = level
        && !(l.is_finite() && (-160.0..=0.0).contains(&l))
    {
        return Err(bad_input(anyhow::anyhow!("--level is an impulse level from -160 to 0 dBFS (got {l})")));
    }
    let output = output.unwrap_or_else(|| PathBuf::from(format!("{stem}-response.svg")));
    for path in [Some(output.as_path()), data].into_iter().flatten() {
        if fxgraph::io::wav::same_file(path, graph_path) {
            return Err(bad_input(anyhow::anyhow!("refusing to overwrite the graph file {}", path.display())));
        }
    }
    let graph = load(graph_path)?;
    let mut r = response(&graph, nodes, level).map_err(bad_input)?;
    if let Some(target) = target {
        r.add_target(target).map_err(bad_input)?;
    }
    write_picture(&output, (1200, 860), |a| draw_response(a, &r), |a| draw_response(a, &r))?;
    eprintln!(
        "plotted {} curve{} of {} (impulse at {:.1} dBFS) -> {}",
        r.curves.len(),
        if r.curves.len() == 1 { "" } else { "s" },
        graph_path.display(),
        r.level_dbfs,
        output.display()
    );
    if let Some(data) = data {
        let text = if data.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            serde_json::to_string(&r).map_err(|e| Failure::Other(e.into()))?
        } else {
            r.to_csv()
        };
        write_atomically(data, &text)?;
        eprintln!("data -> {}", data.display());
    }
    Ok(())
}

/// The topology through Graphviz's `dot`; without it, the DOT file and a note.
fn draw_topology(graph_path: &Path, output: &Path) -> Result<(), Failure> {
    let dot_text = crate::check::to_dot(graph_path)?;
    let format = output.extension().and_then(|e| e.to_str()).unwrap_or("svg").to_ascii_lowercase();
    if format == "dot" || format == "gv" {
        write_atomically(output, &dot_text)?;
        eprintln!("topology -> {}", output.display());
        return Ok(());
    }
    let rendered = std::process::Command::new("dot")
        .arg(format!("-T{format}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().map(|mut s| s.write_all(dot_text.as_bytes())).transpose()?;
            child.wait_with_output()
        });
    match rendered {
        Ok(out) if out.status.success() => {
            let name = output.file_name().map_or_else(|| "topology".into(), |n| n.to_string_lossy().into_owned());
            let tmp = output.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
            std::fs::write(&tmp, &out.stdout).and_then(|()| std::fs::rename(&tmp, output)).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Failure::Other(anyhow::anyhow!("cannot write {}: {e}", output.display()))
            })?;
            eprintln!("topology -> {}", output.display());
            Ok(())
        }
        Ok(out) => Err(Failure::Other(anyhow::anyhow!(
            "Graphviz's dot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(_) => {
            let dot_path = output.with_extension("dot");
            write_atomically(&dot_path, &dot_text)?;
            eprintln!(
                "note: Graphviz's `dot` is not installed, so {} was not drawn; the DOT is in {} (render it with \
                 `dot -T{format} {} -o {}`, after `apt install graphviz`)",
                output.display(),
                dot_path.display(),
                dot_path.display(),
                output.display()
            );
            Ok(())
        }
    }
}
