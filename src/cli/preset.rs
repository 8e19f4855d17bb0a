//! `fxgraph preset`: save a graph's values as a preset, list (and check) the presets beside a graph.

use crate::{Failure, bad_input, load, start};
use fxgraph::graph::preset::Preset;
use std::path::Path;

/// Saves the graph's values, with `sets` (`node.param=value`) applied, as preset `name` beside it.
pub(crate) fn save(graph_path: &Path, name: &str, sets: &[String], force: bool) -> Result<(), Failure> {
    let path = Preset::path_for(graph_path, name)?;
    let graph = load(graph_path)?;
    let (mut engine, _audio) = start(graph, 512, 1)?;
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| bad_input(anyhow::anyhow!("--set takes NODE.PARAM=VALUE (got \"{set}\")")))?;
        let (node, param) = engine.split_key(key.trim()).map_err(bad_input)?;
        let value = match value.trim().parse::<f64>() {
            Ok(v) => fxgraph::ParamValue::Number(v),
            Err(_) => fxgraph::ParamValue::Text(value.trim().trim_matches('"').to_owned()),
        };
        engine.set(node, param, value).map_err(bad_input)?;
    }
    let mut preset = engine.snapshot().map_err(bad_input)?;
    preset.file = path.display().to_string();
    preset.save(&path, force).map_err(bad_input)?;
    println!("saved {} ({} values)", path.display(), preset.entries.len());
    Ok(())
}

/// Lists the presets beside the graph, each checked against it.
pub(crate) fn list(graph_path: &Path) -> Result<(), Failure> {
    let graph = load(graph_path)?;
    let (mut engine, _audio) = start(graph, 512, 1)?;
    let names = Preset::list(graph_path);
    if names.is_empty() {
        println!("no presets beside {}", graph_path.display());
    }
    let mut bad = 0;
    for name in names {
        let path = Preset::path_for(graph_path, &name)?;
        match Preset::load(&path).map_err(fxgraph::Error::Preset).and_then(|p| engine.apply_preset_values(&p)) {
            Ok(n) => println!("{name}: {n} values"),
            Err(e) => {
                bad += 1;
                println!("{name}: error: {e}");
            }
        }
    }
    if bad > 0 {
        return Err(bad_input(anyhow::anyhow!("{bad} preset(s) do not fit {}", graph_path.display())));
    }
    Ok(())
}
