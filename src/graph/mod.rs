//! Graph files: parsing, validation and precise errors.
//!
//! The file type is not the runtime type: a [`Graph`] is the validated description (nodes by index, edges
//! resolved), from which the engine ([`crate::control::Engine`]) builds the live ECS world.

pub(crate) mod locate;
pub mod preset;

use crate::node::{GraphFormat, NodeSpec, Registry};
use locate::{Spanned, Value, line_col};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The most nodes a graph may have (far more than any effect chain; it bounds the work of validating).
pub const MAX_NODES: usize = 1024;
/// The most edges a graph may have.
pub const MAX_EDGES: usize = 8192;

/// What went wrong, for code that wants to react to a kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid RON, or a top-level field missing, unknown or of the wrong type.
    Syntax,
    /// `sample_rate` or `channels` out of range.
    Format,
    /// A node kind the registry does not know.
    UnknownKind,
    /// A node's parameter is unknown, missing, of the wrong type or out of range.
    Param,
    /// Two nodes with the same name.
    DuplicateNode,
    /// A node named `input` or `output`, or an empty name.
    ReservedName,
    /// An edge names a node that does not exist.
    UnknownEndpoint,
    /// An edge into `input`, out of `output`, or the same edge twice.
    BadEdge,
    /// The edges make a cycle.
    Cycle,
    /// No path leads from `input` to `output`.
    OutputUnreachable,
    /// A preset that cannot be read, or that does not fit the running graph.
    Preset,
}

/// An invalid graph file, with where the problem is.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub struct GraphError {
    /// What kind of problem it is.
    pub kind: GraphErrorKind,
    /// The file as the user named it.
    pub file: String,
    /// 1-based line and column, where the file has them.
    pub position: Option<(usize, usize)>,
    /// The node concerned, if any.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(node) = &self.node {
            write!(f, "node \"{node}\": ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// One end of an edge: the graph's input, or a node by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The graph's input.
    Input,
    /// A node, by its index in [`Graph::nodes`].
    Node(usize),
}

/// A validated node.
#[derive(Debug)]
pub struct GraphNode {
    /// The node's name.
    pub name: String,
    /// Its kind's parameters, validated.
    pub spec: Box<dyn NodeSpec>,
    /// Where the node feeds from, in the order the edges are written; several inputs are summed.
    pub inputs: Vec<Source>,
}

/// A validated graph.
#[derive(Debug)]
pub struct Graph {
    /// The file as the user named it.
    pub file: String,
    /// The folder relative paths in node parameters resolve against.
    pub base_dir: PathBuf,
    /// The graph's sample rate and channel count.
    pub format: GraphFormat,
    /// Nodes in file order.
    pub nodes: Vec<GraphNode>,
    /// What feeds `output`, in edge order.
    pub output: Vec<Source>,
    /// The node kinds the graph was parsed with.
    pub registry: Registry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTop {
    sample_rate: u32,
    channels: u32,
    #[allow(dead_code)]
    nodes: BTreeMap<String, IgnoredAny>,
    edges: Vec<(String, String)>,
}

struct Ctx<'a> {
    src: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, kind: GraphErrorKind, at: Option<usize>, node: Option<&str>, message: String) -> GraphError {
        GraphError {
            kind,
            file: self.file.to_string(),
            position: at.map(|o| line_col(self.src, o)),
            node: node.map(str::to_string),
            message,
        }
    }
}

impl Graph {
    /// Reads and validates a graph file, with the built-in node kinds ([`crate::nodes::registry`]).
    ///
    /// # Errors
    /// A [`GraphError`] naming the file, and where possible the line, column and node.
    pub fn load(path: &Path) -> Result<Graph, GraphError> {
        Self::load_with(path, &crate::nodes::registry())
    }

    /// Reads and validates a graph file whose node kinds are found in `registry` (the built-in kinds and
    /// an application's own).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with(path: &Path, registry: &Registry) -> Result<Graph, GraphError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| GraphError {
            kind: GraphErrorKind::Io,
            file: file.clone(),
            position: None,
            node: None,
            message: format!("cannot read graph file: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse_with(&src, &file, &base_dir, registry)
    }

    /// Validates graph text, with the built-in node kinds. `file` names it in errors; `base_dir` resolves
    /// relative paths in parameters.
    ///
    /// # Errors
    /// A [`GraphError`] naming the file, and where possible the line, column and node.
    pub fn parse(src: &str, file: &str, base_dir: &Path) -> Result<Graph, GraphError> {
        Self::parse_with(src, file, base_dir, &crate::nodes::registry())
    }

    /// Validates graph text whose node kinds are found in `registry`.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn parse_with(src: &str, file: &str, base_dir: &Path, registry: &Registry) -> Result<Graph, GraphError> {
        let cx = Ctx { src, file };
        let doc = locate::walk(src);
        let node_entries: &[(Spanned, Spanned)] = match doc.as_ref().and_then(|d| d.field("nodes")) {
            Some(f) => match &f.value.value {
                Value::Map(entries) => entries,
                _ => &[],
            },
            None => &[],
        };
        let node_at = |offset: usize| -> Option<&str> {
            // Inside a node's value only: an error at a key is between entries (e.g. a missing comma).
            node_entries.iter().find(|(_, v)| v.start <= offset && offset < v.end).and_then(|(k, _)| match &k.value {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
        };

        let top: FileTop = ron::from_str(src).map_err(|e| {
            let at = skip_space(src, locate::offset_of(src, e.span.start.line, e.span.start.col));
            cx.err(GraphErrorKind::Syntax, Some(at), node_at(at), e.code.to_string())
        })?;
        let field_at = |key: &str| doc.as_ref().and_then(|d| d.field(key)).map(|f| f.key_start);

        if !(8000..=768_000).contains(&top.sample_rate) {
            return Err(cx.err(
                GraphErrorKind::Format,
                field_at("sample_rate"),
                None,
                format!("`sample_rate` must be between 8000 and 768000 Hz (got {})", top.sample_rate),
            ));
        }
        if !(1..=32).contains(&top.channels) {
            return Err(cx.err(
                GraphErrorKind::Format,
                field_at("channels"),
                None,
                format!("`channels` must be between 1 and 32 (got {})", top.channels),
            ));
        }
        let format = GraphFormat { sample_rate: top.sample_rate, channels: top.channels as usize };
        if node_entries.len() > MAX_NODES || top.edges.len() > MAX_EDGES {
            return Err(cx.err(
                GraphErrorKind::Format,
                field_at(if node_entries.len() > MAX_NODES { "nodes" } else { "edges" }),
                None,
                format!(
                    "a graph may have at most {MAX_NODES} nodes and {MAX_EDGES} edges (got {} and {})",
                    node_entries.len(),
                    top.edges.len()
                ),
            ));
        }

        let mut nodes: Vec<GraphNode> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for (key, value) in node_entries {
            let Value::Str(name) = &key.value else {
                continue;
            };
            let here = Some(key.start);
            if name == "input" || name == "output" {
                return Err(cx.err(
                    GraphErrorKind::ReservedName,
                    here,
                    Some(name),
                    format!("`{name}` is reserved for the graph's endpoint; choose another node name"),
                ));
            }
            if name.trim().is_empty() {
                return Err(cx.err(GraphErrorKind::ReservedName, here, None, "a node name is empty".into()));
            }
            if index.contains_key(name) {
                return Err(cx.err(
                    GraphErrorKind::DuplicateNode,
                    here,
                    Some(name),
                    "a node with this name is already defined".into(),
                ));
            }
            let (kind_name, params_at) = match &value.value {
                Value::Struct { name: Some(kind), paren, .. } | Value::Tuple { name: Some(kind), paren, .. } => {
                    (kind.clone(), Some(*paren))
                }
                _ => (src.get(value.start..value.end).unwrap_or("").trim().to_string(), None),
            };
            let Some(kind) = registry.get(&kind_name) else {
                let known: Vec<&str> = registry.kinds().map(|k| k.name).collect();
                return Err(cx.err(
                    GraphErrorKind::UnknownKind,
                    Some(value.start),
                    Some(name),
                    format!("unknown node kind `{kind_name}` (known kinds: {})", known.join(", ")),
                ));
            };
            let Some(params_at) = params_at else {
                return Err(cx.err(
                    GraphErrorKind::Param,
                    Some(value.end),
                    Some(name),
                    format!("`{kind_name}` needs its parameters in parentheses, e.g. `{kind_name}(...)`"),
                ));
            };
            let Some(text) = src.get(params_at..value.end) else {
                return Err(cx.err(GraphErrorKind::Syntax, Some(value.start), Some(name), "unreadable node".into()));
            };
            let mut spec = (kind.parse)(text).map_err(|e| {
                let (l0, c0) = line_col(src, params_at);
                let (l, c) = (e.span.start.line, e.span.start.col);
                let (line, col) = if l <= 1 { (l0, c0 + c.saturating_sub(1)) } else { (l0 + l - 1, c) };
                let at = skip_space(src, locate::offset_of(src, line, col));
                cx.err(GraphErrorKind::Param, Some(at), Some(name), format!("{kind_name}: {}", e.code))
            })?;
            let ctx = crate::node::BuildContext { format, base_dir };
            spec.bind(&ctx);
            spec.validate(&ctx).map_err(|e| {
                let at = value.locate(&e.path).or(Some(value.start));
                cx.err(GraphErrorKind::Param, at, Some(name), format!("{kind_name}: {e}"))
            })?;
            index.insert(name.clone(), nodes.len());
            nodes.push(GraphNode { name: name.clone(), spec, inputs: Vec::new() });
        }

        let edges_value = doc.as_ref().and_then(|d| d.field("edges")).map(|f| &f.value);
        let edge_at = |i: usize, end: usize| edges_value.and_then(|v| v.locate(&format!("[{i}][{end}]")));
        let mut output = Vec::new();
        let mut edge_pos: BTreeMap<(Source, Option<usize>), usize> = BTreeMap::new();
        for (i, (from, to)) in top.edges.iter().enumerate() {
            let source = match from.as_str() {
                "input" => Source::Input,
                "output" => {
                    return Err(cx.err(
                        GraphErrorKind::BadEdge,
                        edge_at(i, 0),
                        None,
                        "`output` is the graph's sink and cannot feed a node".into(),
                    ));
                }
                name => match index.get(name) {
                    Some(&n) => Source::Node(n),
                    None => {
                        return Err(cx.err(
                            GraphErrorKind::UnknownEndpoint,
                            edge_at(i, 0),
                            None,
                            format!("edge from `{name}`, which is not a node (nor `input`)"),
                        ));
                    }
                },
            };
            let target = match to.as_str() {
                "output" => None,
                "input" => {
                    return Err(cx.err(
                        GraphErrorKind::BadEdge,
                        edge_at(i, 1),
                        None,
                        "`input` is the graph's source and cannot be fed".into(),
                    ));
                }
                name => match index.get(name) {
                    Some(&n) => Some(n),
                    None => {
                        return Err(cx.err(
                            GraphErrorKind::UnknownEndpoint,
                            edge_at(i, 1),
                            None,
                            format!("edge to `{name}`, which is not a node (nor `output`)"),
                        ));
                    }
                },
            };
            if edge_pos.insert((source, target), i).is_some() {
                return Err(cx.err(
                    GraphErrorKind::BadEdge,
                    edge_at(i, 0),
                    None,
                    format!("the edge (\"{from}\", \"{to}\") is listed twice"),
                ));
            }
            match target {
                Some(n) => nodes[n].inputs.push(source),
                None => output.push(source),
            }
        }

        if let Some(mut cycle) = find_cycle(&nodes) {
            // Blame the cycle's edge written last in the file, and start the cycle at its target.
            let edge_index = |i: usize| {
                let (from, to) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                edge_pos.get(&(Source::Node(from), Some(to))).copied().unwrap_or(0)
            };
            let last = (0..cycle.len()).max_by_key(|&i| edge_index(i)).unwrap_or(0);
            let closing = edge_index(last);
            let len = cycle.len();
            cycle.rotate_left((last + 1) % len);
            let names: Vec<&str> = cycle.iter().map(|&n| nodes[n].name.as_str()).collect();
            return Err(cx.err(
                GraphErrorKind::Cycle,
                edge_at(closing, 0),
                Some(names[0]),
                format!(
                    "the edge (\"{}\", \"{}\") closes a cycle: {} -> {}",
                    names[names.len() - 1],
                    names[0],
                    names.join(" -> "),
                    names[0]
                ),
            ));
        }

        let graph = Graph {
            file: file.to_string(),
            base_dir: base_dir.to_path_buf(),
            format,
            nodes,
            output,
            registry: registry.clone(),
        };
        if !graph.output_reachable() {
            let message = if graph.output.is_empty() {
                "nothing reaches `output`: add an edge (\"...\", \"output\")"
            } else {
                "`output` is not reached from `input`: no chain of edges leads from one to the other"
            };
            return Err(cx.err(GraphErrorKind::OutputUnreachable, field_at("edges"), None, message.into()));
        }
        Ok(graph)
    }

    /// Whether some path of edges leads from `input` to `output`.
    fn output_reachable(&self) -> bool {
        let mut from_input = vec![false; self.nodes.len()];
        // Nodes are acyclic here, so a fixed point over "some input is reached" settles in at most n rounds.
        let mut changed = true;
        while changed {
            changed = false;
            for (i, node) in self.nodes.iter().enumerate() {
                let reached = node.inputs.iter().any(|s| match s {
                    Source::Input => true,
                    Source::Node(j) => from_input[*j],
                });
                if reached && !from_input[i] {
                    from_input[i] = true;
                    changed = true;
                }
            }
        }
        self.output.iter().any(|s| match s {
            Source::Input => true,
            Source::Node(j) => from_input[*j],
        })
    }

    /// The node index by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// Moves an error position off whitespace onto the token that follows (ron reports some errors at the
/// space before the offending value).
fn skip_space(src: &str, offset: usize) -> usize {
    let offset = locate::floor_boundary(src, offset);
    offset + src[offset..].len() - src[offset..].trim_start().len()
}

/// A cycle among the nodes' edges, if there is one: node indices, each feeding the next and the last
/// feeding the first.
fn find_cycle(nodes: &[GraphNode]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the current path, 2 = done. Walks input edges backwards, then reverses.
    fn visit(n: usize, nodes: &[GraphNode], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[n] = 1;
        path.push(n);
        for s in &nodes[n].inputs {
            if let Source::Node(m) = *s {
                if state[m] == 1 {
                    let start = path.iter().position(|&p| p == m).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.reverse();
                    return Some(cycle);
                }
                if state[m] == 0
                    && let Some(c) = visit(m, nodes, state, path)
                {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; nodes.len()];
    let mut path = Vec::new();
    (0..nodes.len()).find_map(|n| if state[n] == 0 { visit(n, nodes, &mut state, &mut path) } else { None })
}
