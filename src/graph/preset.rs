//! Presets: a small RON file of parameter values for a graph, keyed `node.param`, applied to a running
//! graph as one smoothed change ([`crate::Engine::apply_preset`]).
//!
//! ```ron
//! // graphs/presets/night.ron
//! (
//!     graph: "enhancer.ron",          // optional: the graph it is for (checked when given)
//!     values: {
//!         "compressor.threshold_db": -30.0,
//!         "compressor.ratio": 4.0,
//!         "eq.bands[1].gain_db": -3.0,
//!     },
//! )
//! ```
//!
//! Presets live beside their graph, in `presets/NAME.ron` next to the graph file. A key names a node and
//! one of its automatable parameters as `fxgraph play`'s `set` does; a value is a number, or the name of an
//! enumeration's choice. An unknown node or parameter, or a value out of range, is an error with the
//! preset file's line and column, and nothing is applied.

use super::locate::{self, Value};
use super::{GraphError, GraphErrorKind};
use crate::error::{Error, Explain, Result};
use crate::node::ParamValue;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A preset file that cannot be read or applied, with where the problem is: a [`GraphError`] of kind
/// [`GraphErrorKind::Preset`].
pub type PresetError = GraphError;

/// A preset error at `position` of `file`, about `node`.
pub(crate) fn preset_error(
    file: &str,
    position: Option<(usize, usize)>,
    node: Option<&str>,
    message: String,
) -> PresetError {
    GraphError { kind: GraphErrorKind::Preset, file: file.to_owned(), position, node: node.map(str::to_owned), message }
}

/// One value of a preset.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetEntry {
    /// The key as written: `node.param`.
    pub key: String,
    /// The value.
    pub value: ParamValue,
    /// Where the key is in the file (1-based line and column), for errors.
    pub position: Option<(usize, usize)>,
}

/// A parsed preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// The file it came from (or will be saved to), for errors.
    pub file: String,
    /// The graph file name it is for, if it says.
    pub graph: Option<String>,
    /// Where `graph` is in the file (1-based line and column), for errors.
    pub graph_position: Option<(usize, usize)>,
    /// The values, in file order.
    pub entries: Vec<PresetEntry>,
    /// Plugins' own states (beyond their parameters), by node: hex, as the plugin saved it.
    pub states: Vec<PresetState>,
}

/// One plugin's state in a preset.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetState {
    /// The node's name.
    pub node: String,
    /// The state, hex-encoded.
    pub data: String,
    /// Where the node's name is in the file (1-based line and column), for errors.
    pub position: Option<(usize, usize)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    /// The graph's file name; empty when not given (RON would want `Some("...")` for an `Option`).
    #[serde(default)]
    graph: String,
    values: BTreeMap<String, FileValue>,
    /// Plugins' states by node, hex.
    #[serde(default)]
    states: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileValue {
    Number(f64),
    Text(String),
}

/// Largest preset file read, and most values in one preset.
pub const MAX_PRESET_BYTES: u64 = 1 << 20;
/// The most values a preset may hold.
pub const MAX_PRESET_VALUES: usize = 65_536;

impl Preset {
    /// Where preset `name` of the graph file `graph` lives: `presets/NAME.ron` beside the graph.
    ///
    /// # Errors
    /// A message for a name that is not a plain file name (letters, digits, `-`, `_`, `.`, not starting
    /// with `.`).
    pub fn path_for(graph: &Path, name: &str) -> Result<PathBuf> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(Error::Options(format!(
                "a preset name is a plain name of letters, digits, `-`, `_` and `.` (got \"{}\")",
                name.escape_debug()
            )));
        }
        let name = name.strip_suffix(".ron").unwrap_or(name);
        let dir = graph.parent().unwrap_or(Path::new(""));
        Ok(dir.join("presets").join(format!("{name}.ron")))
    }

    /// The names of the presets beside graph file `graph`, sorted.
    pub fn list(graph: &Path) -> Vec<String> {
        let dir = graph.parent().unwrap_or(Path::new("")).join("presets");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".ron").filter(|n| !n.starts_with('.')).map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// Reads and parses a preset file.
    ///
    /// # Errors
    /// A [`PresetError`] naming the file (and line and column for bad content).
    pub fn load(path: &Path) -> Result<Preset, PresetError> {
        let file = path.display().to_string();
        let err = |message: String| preset_error(&file, None, None, message);
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read preset: {e}")))?;
        if meta.len() > MAX_PRESET_BYTES {
            return Err(err(format!(
                "a preset file is at most {MAX_PRESET_BYTES} bytes (this one has {})",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read preset: {e}")))?;
        Self::parse(&text, &file)
    }

    /// Parses preset text; `file` names it in errors.
    ///
    /// # Errors
    /// A [`PresetError`] with the line and column of the problem.
    pub fn parse(src: &str, file: &str) -> Result<Preset, PresetError> {
        let at = |offset: usize| Some(locate::line_col(src, locate::floor_boundary(src, offset)));
        let err = |position: Option<(usize, usize)>, message: String| preset_error(file, position, None, message);
        let parsed: PresetFile = ron::from_str(src).map_err(|e| {
            let offset = locate::offset_of(src, e.span.start.line, e.span.start.col);
            err(at(offset), e.code.to_string())
        })?;
        let doc = locate::walk(src);
        let graph_position = doc.as_ref().and_then(|d| d.field("graph")).and_then(|f| at(f.key_start));
        // The keys of a map field, with where each starts.
        let keys_at = |field: &str| -> Vec<(String, usize)> {
            match doc.as_ref().and_then(|d| d.field(field)).map(|f| &f.value.value) {
                Some(Value::Map(entries)) => entries
                    .iter()
                    .filter_map(|(k, _)| match &k.value {
                        Value::Str(s) => Some((s.clone(), k.start)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let entries_at = keys_at("values");
        if parsed.values.len() > MAX_PRESET_VALUES {
            return Err(err(None, format!("a preset holds at most {MAX_PRESET_VALUES} values")));
        }
        // File order, positions and duplicates come from the walker, when it read the same keys as ron (it
        // does not decode escapes; on text it cannot follow, ron's order is kept, without positions).
        let same_keys = entries_at.iter().all(|(k, _)| parsed.values.contains_key(k))
            && parsed.values.keys().all(|k| entries_at.iter().any(|(w, _)| w == k));
        let mut entries = Vec::with_capacity(parsed.values.len());
        let ordered: Vec<(&String, Option<usize>)> = if same_keys {
            let mut seen = std::collections::HashSet::new();
            for (key, offset) in &entries_at {
                if !seen.insert(key.as_str()) {
                    return Err(err(at(*offset), format!("\"{}\" is given twice", key.escape_debug())));
                }
            }
            entries_at.iter().map(|(k, o)| (k, Some(*o))).collect()
        } else {
            parsed.values.keys().map(|k| (k, None)).collect()
        };
        for (key, offset) in ordered {
            let position = offset.and_then(at);
            if !key.contains('.') {
                return Err(err(
                    position,
                    format!("\"{}\" is not `node.param` (e.g. \"compressor.threshold_db\")", key.escape_debug()),
                ));
            }
            let value = match &parsed.values[key] {
                FileValue::Number(n) => ParamValue::Number(*n),
                FileValue::Text(t) => ParamValue::Text(t.clone()),
            };
            entries.push(PresetEntry { key: key.clone(), value, position });
        }
        let states_at = keys_at("states");
        let mut states = Vec::with_capacity(parsed.states.len());
        for (node, data) in parsed.states {
            let position = states_at.iter().find(|(k, _)| *k == node).and_then(|(_, o)| at(*o));
            if crate::sha256::unhex(&data).is_none() {
                return Err(err(position, format!("the state of \"{}\" is not hexadecimal", node.escape_debug())));
            }
            states.push(PresetState { node, data, position });
        }
        let graph = (!parsed.graph.is_empty()).then_some(parsed.graph);
        Ok(Preset { file: file.to_owned(), graph, graph_position, entries, states })
    }

    /// The preset as RON text, one value per line, ready to save.
    pub fn to_ron(&self) -> String {
        let mut s = String::new();
        s.push_str("// An fxgraph preset: parameter values keyed `node.param`.\n(\n");
        if let Some(g) = &self.graph {
            s.push_str(&format!("    graph: {},\n", ron_string(g)));
        }
        s.push_str("    values: {\n");
        for e in &self.entries {
            let value = match &e.value {
                ParamValue::Number(n) => format!("{n:?}"),
                ParamValue::Text(t) => ron_string(t),
            };
            s.push_str(&format!("        {}: {value},\n", ron_string(&e.key)));
        }
        s.push_str("    },\n");
        if !self.states.is_empty() {
            s.push_str("    // Plugins' own states, as they saved them (hexadecimal).\n    states: {\n");
            for st in &self.states {
                s.push_str(&format!("        {}: \"{}\",\n", ron_string(&st.node), st.data));
            }
            s.push_str("    },\n");
        }
        s.push_str(")\n");
        s
    }

    /// Writes the preset to `path` through a temporary file and a rename, creating the folder. An
    /// existing file is kept unless `overwrite`.
    ///
    /// # Errors
    /// A message naming the path.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        if !overwrite && path.exists() {
            return Err(Error::Options(format!(
                "{} exists; choose another name (or overwrite it on purpose)",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).io(|| format!("cannot create {}", dir.display()))?;
        }
        let name = path.file_name().map_or_else(|| "preset".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
        std::fs::write(&tmp, self.to_ron()).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io(format!("cannot write {}: {e}", path.display()))
        })
    }
}

/// A RON string literal.
fn ron_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_file_order_with_positions() {
        let src = "(\n  graph: \"g.ron\",\n  values: {\n    \"b.x\": 1,\n    \"a.mode\": \"peak\",\n  },\n)\n";
        let p = Preset::parse(src, "p.ron").expect("valid");
        assert_eq!(p.graph.as_deref(), Some("g.ron"));
        assert_eq!(p.graph_position, Some((2, 3)));
        let keys: Vec<&str> = p.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["b.x", "a.mode"]);
        assert_eq!(p.entries[0].value, ParamValue::Number(1.0));
        assert_eq!(p.entries[0].position, Some((4, 5)));
        assert_eq!(p.entries[1].value, ParamValue::Text("peak".into()));
    }

    #[test]
    fn located_errors() {
        let e = Preset::parse("(values: {\n \"a.x\": 1.0,\n \"a.x\": 2.0 })", "p.ron").expect_err("duplicate");
        assert_eq!(e.to_string(), "p.ron:3:2: \"a.x\" is given twice");
        let e = Preset::parse("(values: {\n \"ax\": 1.0 })", "p.ron").expect_err("no dot");
        assert!(e.to_string().starts_with("p.ron:2:2: \"ax\" is not `node.param`"), "{e}");
        let e = Preset::parse("(values: {\n \"a.x\": [1] })", "p.ron").expect_err("type");
        assert!(e.to_string().starts_with("p.ron:2:"), "{e}");
        let e = Preset::parse("(values: {}, extra: 1)", "p.ron").expect_err("unknown field");
        assert!(e.to_string().starts_with("p.ron:1:"), "{e}");
    }

    #[test]
    fn escaped_keys_do_not_fool_the_duplicate_check() {
        // Found by fuzzing: the span walker does not decode escapes, so "gai\n_db" read as "gain_db".
        let src = "(values: {\"eq.gai\\n_db\": 1.0, \"eq.gain_db\": 2.0})";
        let p = Preset::parse(src, "p.ron").expect("two different keys");
        assert_eq!(p.entries.len(), 2);
        let again = Preset::parse(&p.to_ron(), "q.ron").expect("its own output parses");
        assert_eq!(again.entries.len(), 2);
    }

    #[test]
    fn round_trips_through_text() {
        let p = Preset {
            file: "x.ron".into(),
            graph: Some("g \"1\".ron".into()),
            graph_position: None,
            entries: vec![
                PresetEntry { key: "eq.bands[0].gain_db".into(), value: ParamValue::Number(-2.5), position: None },
                PresetEntry { key: "c.mode".into(), value: ParamValue::Text("rms".into()), position: None },
                PresetEntry { key: "c.x".into(), value: ParamValue::Number(1e-7), position: None },
            ],
            states: vec![PresetState { node: "clap \"1\"".into(), data: "00ff7a".into(), position: None }],
        };
        let back = Preset::parse(&p.to_ron(), "x.ron").expect("own output parses");
        assert_eq!(back.graph, p.graph);
        let strip = |p: &Preset| p.entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect::<Vec<_>>();
        assert_eq!(strip(&back), strip(&p));
        assert_eq!(back.states[0].node, p.states[0].node);
        assert_eq!(back.states[0].data, p.states[0].data);
        assert_eq!(back.states[0].position, Some((11, 9)), "{}", p.to_ron());
        let e = Preset::parse("(values: {},\n states: {\"c\": \"0g\"})", "p.ron").expect_err("not hex");
        assert_eq!(e.to_string(), "p.ron:2:11: the state of \"c\" is not hexadecimal");
    }

    #[test]
    fn names_stay_beside_the_graph() {
        let g = Path::new("graphs/enhancer.ron");
        assert_eq!(Preset::path_for(g, "warm").unwrap(), Path::new("graphs/presets/warm.ron"));
        assert_eq!(Preset::path_for(g, "warm.ron").unwrap(), Path::new("graphs/presets/warm.ron"));
        for bad in ["../x", "a/b", ".hidden", "", "a b"] {
            assert!(Preset::path_for(g, bad).is_err(), "{bad}");
        }
    }
}
