//! Graph files: parsing, validation and precise errors.
//!
//! The file type is not the runtime type: a [`Graph`] is the validated description (nodes by index, edges
//! resolved), from which the engine ([`crate::control::Engine`]) builds the live ECS world.

pub mod eqapo;
pub(crate) mod locate;
pub mod preset;

use crate::node::{GraphFormat, Layout, MAX_CHANNELS, MAX_PORTS, NodeSpec, Ports, Registry};
use locate::{Spanned, Value, line_col};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The rate a graph without `sample_rate` is validated at until it is prepared at another.
pub const DEFAULT_RATE: u32 = 48_000;

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
    /// An edge joins ports of different widths (neither of them 1 channel), or a graph input or output
    /// is declared badly.
    Width,
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

/// Where an edge comes from: the graph's inputs, or a node by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The graph's inputs (which one is the edge's `from_port`).
    Input,
    /// A node, by its index in [`Graph::nodes`].
    Node(usize),
}

/// An edge into a node's input port (or into one of the graph's outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The node (or the graph input) it leaves.
    pub from: Source,
    /// The output port it leaves (for [`Source::Input`], which graph input).
    pub from_port: usize,
    /// The input port it enters (for the graph's outputs, which output).
    pub to_port: usize,
}

impl Link {
    /// An edge between the first ports.
    pub fn main(from: Source) -> Self {
        Self { from, from_port: 0, to_port: 0 }
    }
}

/// A validated node.
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// The node's name.
    pub name: String,
    /// Its kind's parameters, validated.
    pub spec: Box<dyn NodeSpec>,
    /// What feeds its input ports, in the order the edges are written; edges into one port are summed.
    pub inputs: Vec<Link>,
    /// Its ports, as its kind declares them for the graph's format.
    pub ports: Ports,
    /// The width of each port, resolved from the edges.
    pub layout: Layout,
}

/// A named graph input or output and its channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The name edges address it by (`"input.NAME"`, `"output.NAME"`).
    pub name: String,
    /// Its channels.
    pub channels: usize,
}

/// A validated graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The file as the user named it.
    pub file: String,
    /// The folder relative paths in node parameters resolve against.
    pub base_dir: PathBuf,
    /// The graph's sample rate and width (the channels of a port of [`Width::Graph`](crate::node::Width::Graph)).
    pub format: GraphFormat,
    /// Whether the file gives `sample_rate`. A graph without one is validated at 48 kHz; `render` runs it
    /// at its first input's rate, `play` at the device's, an application at any ([`at_rate`](Self::at_rate)).
    pub rate_given: bool,
    /// The text it was parsed from, to prepare it at another rate.
    text: std::sync::Arc<str>,
    /// The graph's inputs, in file order (one, `main`, for a graph that gives only `channels`).
    pub inputs: Vec<Endpoint>,
    /// The graph's outputs, likewise.
    pub outputs: Vec<Endpoint>,
    /// Nodes in file order.
    pub nodes: Vec<GraphNode>,
    /// What feeds the graph's outputs, in edge order.
    pub output: Vec<Link>,
    /// The node kinds the graph was parsed with.
    pub registry: Registry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTop {
    #[serde(default, deserialize_with = "present")]
    sample_rate: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    channels: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    inputs: Option<BTreeMap<String, u32>>,
    #[serde(default, deserialize_with = "present")]
    outputs: Option<BTreeMap<String, u32>>,
    #[allow(dead_code)]
    nodes: BTreeMap<String, IgnoredAny>,
    edges: Vec<(String, String)>,
}

/// An optional field written as its plain value (`channels: 2`, not `Some(2)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
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
        Self::parse_at(src, file, base_dir, registry, None)
    }

    /// The same graph prepared at `sample_rate`: every parameter whose range depends on the rate (a
    /// frequency below Nyquist) checked again at it, with the usual located error. For a file without
    /// `sample_rate` this is how it gets one (see [`rate_given`](Self::rate_given)); a file's own rate
    /// may be overridden too.
    ///
    /// # Errors
    /// A [`GraphError`] for a rate outside 8000..=768000 Hz, or a parameter out of range at it.
    pub fn at_rate(&self, sample_rate: u32) -> Result<Graph, GraphError> {
        if sample_rate == self.format.sample_rate {
            return Ok(self.clone());
        }
        let mut graph = Self::parse_at(&self.text, &self.file, &self.base_dir, &self.registry, Some(sample_rate))?;
        graph.rate_given = self.rate_given;
        Ok(graph)
    }

    /// Parses with `rate` in place of the file's `sample_rate` (or of the default).
    fn parse_at(
        src: &str,
        file: &str,
        base_dir: &Path,
        registry: &Registry,
        rate: Option<u32>,
    ) -> Result<Graph, GraphError> {
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

        let sample_rate = rate.or(top.sample_rate).unwrap_or(DEFAULT_RATE);
        if !(8000..=768_000).contains(&sample_rate) {
            let what = if rate.is_some() { "the graph is prepared at" } else { "`sample_rate` must be" };
            return Err(cx.err(
                GraphErrorKind::Format,
                field_at("sample_rate"),
                None,
                format!("{what} between 8000 and 768000 Hz (got {sample_rate})"),
            ));
        }
        let (inputs, outputs, width) = endpoints(&cx, &top, doc.as_ref())?;
        let format = GraphFormat { sample_rate, channels: width };
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
        let mut values: Vec<&Spanned> = Vec::new();
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
            let ports = spec.ports(&format);
            if ports.inputs.len() > MAX_PORTS || ports.outputs.len() > MAX_PORTS {
                return Err(cx.err(
                    GraphErrorKind::Param,
                    Some(value.start),
                    Some(name),
                    format!("{kind_name}: a node may have at most {MAX_PORTS} input and {MAX_PORTS} output ports"),
                ));
            }
            let layout = Layout::new(&[], &[]);
            nodes.push(GraphNode { name: name.clone(), spec, inputs: Vec::new(), ports, layout });
            values.push(value);
        }

        let edges_value = doc.as_ref().and_then(|d| d.field("edges")).map(|f| &f.value);
        let edge_at = |i: usize, end: usize| edges_value.and_then(|v| v.locate(&format!("[{i}][{end}]")));
        let mut output = Vec::new();
        // Each edge's index, by (source, its port, target (`None`: the graph output), its port).
        let mut edge_pos: BTreeMap<(Source, usize, Option<usize>, usize), usize> = BTreeMap::new();
        // One end of edge `i`: the node it names (`None`: the graph's input or output) and its port; `end`
        // 0 is where an edge comes from (an output port), 1 where it goes (an input port).
        let resolve = |i: usize, end: usize, text: &str| -> Result<(Option<usize>, usize), GraphError> {
            let (name, port) = split_end(text, &index);
            let at = edge_at(i, end);
            let (own, other, side, endpoints) =
                if end == 0 { ("input", "output", "output", &inputs) } else { ("output", "input", "input", &outputs) };
            if name == other {
                let message = if end == 0 {
                    "`output` is the graph's sink and cannot feed a node"
                } else {
                    "`input` is the graph's source and cannot be fed"
                };
                return Err(cx.err(GraphErrorKind::BadEdge, at, None, message.into()));
            }
            let list = |names: Vec<&str>| if names.is_empty() { "none".to_string() } else { names.join(", ") };
            if name == own {
                let found = port.map_or(Some(0), |p| endpoints.iter().position(|e| e.name == p));
                return found.map(|k| (None, k)).ok_or_else(|| {
                    let known = list(endpoints.iter().map(|e| e.name.as_str()).collect());
                    let message = format!("the graph has no {own} `{}` (its {own}s: {known})", port.unwrap_or(""));
                    cx.err(GraphErrorKind::UnknownEndpoint, at, None, message)
                });
            }
            let Some(&n) = index.get(name) else {
                let (dir, own) = if end == 0 { ("from", "input") } else { ("to", "output") };
                let message = format!("edge {dir} `{text}`, which is not a node (nor `{own}`)");
                return Err(cx.err(GraphErrorKind::UnknownEndpoint, at, None, message));
            };
            let ports = if end == 0 { &nodes[n].ports.outputs } else { &nodes[n].ports.inputs };
            let found = match port {
                None => (!ports.is_empty()).then_some(0),
                Some(p) => ports.iter().position(|q| q.name == p),
            };
            found.map(|k| (Some(n), k)).ok_or_else(|| {
                let known = list(ports.iter().map(|q| q.name.as_str()).collect());
                let message = format!("no {side} port `{}` (the node's {side}s: {known})", port.unwrap_or(""));
                cx.err(GraphErrorKind::UnknownEndpoint, at, Some(name), message)
            })
        };
        let mut links: Vec<(Option<usize>, Link)> = Vec::with_capacity(top.edges.len());
        for (i, (from, to)) in top.edges.iter().enumerate() {
            let (source, from_port) = match resolve(i, 0, from)? {
                (None, k) => (Source::Input, k),
                (Some(n), k) => (Source::Node(n), k),
            };
            let (target, to_port) = resolve(i, 1, to)?;
            if edge_pos.insert((source, from_port, target, to_port), i).is_some() {
                return Err(cx.err(
                    GraphErrorKind::BadEdge,
                    edge_at(i, 0),
                    None,
                    format!("the edge (\"{from}\", \"{to}\") is listed twice"),
                ));
            }
            links.push((target, Link { from: source, from_port, to_port }));
        }
        for (target, link) in links {
            match target {
                Some(n) => nodes[n].inputs.push(link),
                None => output.push(link),
            }
        }

        if let Some(mut cycle) = find_cycle(&nodes) {
            // Blame the cycle's edge written last in the file, and start the cycle at its target.
            let edge_index = |i: usize| {
                let (from, to) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                edge_pos
                    .iter()
                    .filter(|((s, _, t, _), _)| *s == Source::Node(from) && *t == Some(to))
                    .map(|(_, &i)| i)
                    .max()
                    .unwrap_or(0)
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

        // Port widths, in an order where every node comes after what feeds it.
        let input_widths: Vec<usize> = inputs.iter().map(|e| e.channels).collect();
        let wiring: Vec<(&Ports, &[Link])> = nodes.iter().map(|n| (&n.ports, n.inputs.as_slice())).collect();
        let output_widths: Vec<usize> = outputs.iter().map(|e| e.channels).collect();
        let layouts =
            resolve_widths(format.channels, &input_widths, &wiring, &output_widths, &output).map_err(|m| {
                let key = |l: &Link, t: Option<usize>| (l.from, l.from_port, t, l.to_port);
                let (link, target) = match m.node {
                    Some(n) => (nodes[n].inputs[m.edge], Some(n)),
                    None => (output[m.edge], None),
                };
                let at = edge_pos.get(&key(&link, target)).and_then(|&i| edge_at(i, 1));
                let (from, to) = edge_pos.get(&key(&link, target)).map(|&i| top.edges[i].clone()).unwrap_or_default();
                cx.err(
                GraphErrorKind::Width,
                at,
                target.map(|n| nodes[n].name.as_str()),
                format!(
                    "the edge (\"{from}\", \"{to}\") joins {} channels to a port of {}: an edge joins ports of equal \
                     width, or a 1-channel port to any; put a `Mixer` or `Channels` node between them",
                    m.from, m.to
                ),
            )
            })?;
        for ((node, layout), value) in nodes.iter_mut().zip(layouts).zip(&values) {
            node.spec.check_layout(&layout).map_err(|e| {
                let at = value.locate(&e.path).or(Some(value.start));
                cx.err(GraphErrorKind::Param, at, Some(&node.name), format!("{}: {e}", node.spec.kind()))
            })?;
            node.layout = layout;
        }

        let graph = Graph {
            file: file.to_string(),
            base_dir: base_dir.to_path_buf(),
            format,
            rate_given: top.sample_rate.is_some(),
            text: src.into(),
            inputs,
            outputs,
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
                let reached = node.inputs.iter().any(|l| match l.from {
                    Source::Input => true,
                    Source::Node(j) => from_input[j],
                });
                if reached && !from_input[i] {
                    from_input[i] = true;
                    changed = true;
                }
            }
        }
        self.output.iter().any(|l| match l.from {
            Source::Input => true,
            Source::Node(j) => from_input[j],
        })
    }

    /// The graph's inputs and outputs as a node's ports: where each lies among their channels together.
    pub fn endpoints(&self) -> Layout {
        endpoint_layout(&self.inputs, &self.outputs)
    }

    /// The node index by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// The graph's inputs and outputs and its width, from `channels`, `inputs` and `outputs`.
fn endpoints(
    cx: &Ctx<'_>,
    top: &FileTop,
    doc: Option<&Spanned>,
) -> Result<(Vec<Endpoint>, Vec<Endpoint>, usize), GraphError> {
    let field_at = |key: &str| doc.and_then(|d| d.field(key)).map(|f| f.key_start);
    let check = |n: u32, at: Option<usize>, what: &str| -> Result<usize, GraphError> {
        if (1..=MAX_CHANNELS as u32).contains(&n) {
            Ok(n as usize)
        } else {
            Err(cx.err(
                GraphErrorKind::Format,
                at,
                None,
                format!("{what} must be between 1 and {MAX_CHANNELS} (got {n})"),
            ))
        }
    };
    // Declared endpoints in file order (the map type sorts them), each checked where it is written.
    let declared = |key: &str, map: &Option<BTreeMap<String, u32>>| -> Result<Option<Vec<Endpoint>>, GraphError> {
        let Some(map) = map else { return Ok(None) };
        let entries: Vec<(String, usize)> = match doc.and_then(|d| d.field(key)).map(|f| &f.value.value) {
            Some(Value::Map(entries)) => entries
                .iter()
                .filter_map(|(k, _)| match &k.value {
                    Value::Str(name) => Some((name.clone(), k.start)),
                    _ => None,
                })
                .collect(),
            _ => map.keys().map(|k| (k.clone(), 0)).collect(),
        };
        if entries.is_empty() || entries.len() > MAX_PORTS {
            return Err(cx.err(
                GraphErrorKind::Width,
                field_at(key),
                None,
                format!("`{key}` must name 1 to {MAX_PORTS} {key} (got {})", entries.len()),
            ));
        }
        let mut out = Vec::new();
        for (name, at) in entries {
            let at = Some(at).filter(|&a| a > 0);
            if name.is_empty() || name.contains('.') {
                return Err(cx.err(
                    GraphErrorKind::Width,
                    at,
                    None,
                    format!("`{name}` cannot name one of the graph's {key}: use a name without dots"),
                ));
            }
            let channels = check(map[&name], at, &format!("`{key}.{name}`"))?;
            out.push(Endpoint { name, channels });
        }
        Ok(Some(out))
    };
    let channels = top.channels.map(|n| check(n, field_at("channels"), "`channels`")).transpose()?;
    let inputs = declared("inputs", &top.inputs)?;
    let outputs = declared("outputs", &top.outputs)?;
    let width = match (channels, &outputs) {
        (Some(n), _) => n,
        (None, Some(o)) => o[0].channels,
        (None, None) => {
            return Err(cx.err(
                GraphErrorKind::Format,
                None,
                None,
                "the graph needs `channels` (or `outputs`): how many channels its nodes carry".into(),
            ));
        }
    };
    let main = || vec![Endpoint { name: "main".into(), channels: width }];
    Ok((inputs.unwrap_or_else(main), outputs.unwrap_or_else(main), width))
}

/// Graph inputs and outputs (at most [`MAX_PORTS`] each, as parsing checks) as a [`Layout`].
pub(crate) fn endpoint_layout(inputs: &[Endpoint], outputs: &[Endpoint]) -> Layout {
    let widths = |e: &[Endpoint]| e.iter().map(|e| e.channels).collect::<Vec<_>>();
    Layout::new(&widths(inputs), &widths(outputs))
}

/// Splits an edge's end into a node name (or `input`/`output`) and a port: `"NODE"` or `"NODE.PORT"`. A
/// name that is a node's whole name is that node, dots and all.
fn split_end<'a>(end: &'a str, nodes: &BTreeMap<String, usize>) -> (&'a str, Option<&'a str>) {
    if nodes.contains_key(end) {
        return (end, None);
    }
    match end.rsplit_once('.') {
        Some((node, port)) => (node, Some(port)),
        None => (end, None),
    }
}

/// An edge whose ends have different widths: into `node` (`None`: the graph's outputs), its `edge`-th
/// input, `from` channels to a port of `to`.
#[derive(Debug)]
pub(crate) struct WidthMismatch {
    pub node: Option<usize>,
    pub edge: usize,
    pub from: usize,
    pub to: usize,
}

/// Resolves the width of every port of an acyclic graph: `nodes` are each node's ports and input edges,
/// `graph_width` is what [`Width::Graph`] means, `inputs` and `outputs` the graph's endpoints' widths
/// and `output` the edges into them. An edge joins ports of equal width, or a 1-channel source to any.
pub(crate) fn resolve_widths(
    graph_width: usize,
    inputs: &[usize],
    nodes: &[(&Ports, &[Link])],
    outputs: &[usize],
    output: &[Link],
) -> Result<Vec<Layout>, WidthMismatch> {
    let mut layouts: Vec<Option<Layout>> = vec![None; nodes.len()];
    fn visit(
        n: usize,
        graph_width: usize,
        inputs: &[usize],
        nodes: &[(&Ports, &[Link])],
        layouts: &mut Vec<Option<Layout>>,
        depth: usize,
    ) -> Result<Layout, WidthMismatch> {
        if let Some(l) = layouts[n] {
            return Ok(l);
        }
        let (ports, links) = nodes[n];
        // Guards against a cycle (the callers check for them first).
        let mut sources = Vec::with_capacity(links.len());
        for l in links {
            let w = match l.from {
                Source::Input => inputs.get(l.from_port).copied().unwrap_or(0),
                Source::Node(m) if depth <= nodes.len() => {
                    visit(m, graph_width, inputs, nodes, layouts, depth + 1)?.output(l.from_port)
                }
                Source::Node(_) => 0,
            };
            sources.push(w);
        }
        let mut ins = Vec::with_capacity(ports.inputs.len());
        for (p, port) in ports.inputs.iter().enumerate() {
            let widest = links.iter().zip(&sources).filter(|(l, _)| l.to_port == p).map(|(_, &w)| w).max();
            let w = port.width.resolve(graph_width, widest, &ins);
            for (k, (l, &s)) in links.iter().zip(&sources).enumerate() {
                if l.to_port == p && s != w && s != 1 {
                    return Err(WidthMismatch { node: Some(n), edge: k, from: s, to: w });
                }
            }
            ins.push(w);
        }
        let outs: Vec<usize> = ports.outputs.iter().map(|p| p.width.resolve(graph_width, None, &ins)).collect();
        let layout = Layout::new(&ins, &outs);
        layouts[n] = Some(layout);
        Ok(layout)
    }
    for n in 0..nodes.len() {
        visit(n, graph_width, inputs, nodes, &mut layouts, 0)?;
    }
    for (k, l) in output.iter().enumerate() {
        let s = match l.from {
            Source::Input => inputs.get(l.from_port).copied().unwrap_or(0),
            Source::Node(m) => layouts[m].map_or(0, |x| x.output(l.from_port)),
        };
        let w = outputs.get(l.to_port).copied().unwrap_or(0);
        if s != w && s != 1 {
            return Err(WidthMismatch { node: None, edge: k, from: s, to: w });
        }
    }
    Ok(layouts.into_iter().map(|l| l.unwrap_or(Layout::new(&[], &[]))).collect())
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
        for l in &nodes[n].inputs {
            if let Source::Node(m) = l.from {
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
