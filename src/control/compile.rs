//! The graph compiler: from nodes and edges to a processing plan, in passes over a small IR of node ids.
//!
//! 1. [`steady`]: orders the graph, gives each node its latency from the input, and puts a compensating
//!    delay on every edge that arrives earlier than its siblings.
//! 2. [`arrange`] (used by both): cuts the nodes into branches (chains that work in place in one buffer)
//!    and the branches into levels (branches that only read earlier levels, so may run concurrently).
//! 3. [`union`]: for a graph edit, the transitional plan that holds both the running plan's nodes and the
//!    new plan's, each edge at full level or fading (see the crossfade rule in [`crate::control`]).
//! 4. [`build`]: the audio side's [`Plan`](crate::audio::plan::Plan) for a description, with buffers,
//!    delay lines, the processors that are new to the audio side, and what to take from the plan before.

use crate::audio::NodeId;
use crate::audio::plan::{self, Branch, Crossfade, Edge, EdgeAt, Fade, Level, OutputFrom, Slot, Src};
use crate::monitor::shared::{MeterWriter, NodeStats, SharedMeter};
use crate::node::{Layout, Processor};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Where an edge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SrcRef {
    Input,
    Node(NodeId),
}

/// Which channels an edge carries: `width` channels from channel `from_ch` of its source's buffer into
/// channels `to_ch..to_ch + width` of its destination's. A 1-channel source (`mono`) is copied to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Wiring {
    pub from_ch: usize,
    pub to_ch: usize,
    pub width: usize,
    pub mono: bool,
}

impl Wiring {
    /// All of a `width`-channel source into all of a `width`-channel destination.
    pub fn whole(width: usize) -> Self {
        Self { from_ch: 0, to_ch: 0, width, mono: false }
    }

    /// Whether the edge is a whole `width`-channel buffer, as it is, into a node that takes exactly that.
    fn in_place(&self, width: usize) -> bool {
        self.from_ch == 0 && self.to_ch == 0 && !self.mono && self.width == width
    }
}

/// An edge into a node or the output: its source and channels, compensating delay and crossfade role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GEdge {
    pub from: SrcRef,
    pub wiring: Wiring,
    pub delay: usize,
    pub fade: Fade,
}

impl GEdge {
    /// Whether two edges are the same connection (whatever their fade).
    fn same(&self, other: &GEdge) -> bool {
        self.from == other.from && self.wiring == other.wiring && self.delay == other.delay
    }
}

/// A node for [`arrange`]: its id, a tie-breaking key (file order), its inputs in summing order, and the
/// channels of all its input ports together.
#[derive(Debug, Clone)]
pub(crate) struct GNode {
    pub id: NodeId,
    pub key: usize,
    pub inputs: Vec<GEdge>,
    pub in_width: usize,
}

/// A branch of a plan: node positions, and its first node's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BranchDesc {
    pub nodes: Range<usize>,
    pub inputs: Vec<GEdge>,
    pub takes_input: bool,
}

/// A compiled plan, as ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PlanDesc {
    /// Node ids in execution order.
    pub nodes: Vec<NodeId>,
    pub branches: Vec<BranchDesc>,
    /// Levels as ranges of branches.
    pub levels: Vec<Range<usize>>,
    pub output: Vec<GEdge>,
    /// Frames from input to output.
    pub latency: usize,
    /// Frames from the input to each node's output, by execution position (steady plans only).
    pub at_output: Vec<usize>,
    /// The channels of each node's input ports together, by execution position.
    pub in_width: Vec<usize>,
    /// The channels of the graph's inputs together.
    pub input_channels: usize,
}

/// A cycle among node ids (each feeds the next, the last the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cycle(pub Vec<NodeId>);

impl PlanDesc {
    /// Position of each node id.
    pub fn positions(&self) -> HashMap<NodeId, usize> {
        self.nodes.iter().enumerate().map(|(i, &id)| (id, i)).collect()
    }

    /// The inputs of the node at `pos`: its branch's inputs if it heads one, else the node before it.
    pub fn inputs_of(&self, pos: usize) -> Vec<GEdge> {
        match self.branches.iter().find(|b| b.nodes.contains(&pos)) {
            Some(b) if b.nodes.start == pos => b.inputs.clone(),
            _ => vec![GEdge {
                from: SrcRef::Node(self.nodes[pos - 1]),
                wiring: Wiring::whole(self.in_width[pos]),
                delay: 0,
                fade: Fade::Keep,
            }],
        }
    }

    /// Where each delayed edge sits, by (destination, source, delay), `None` being the output: an edge keeps
    /// its delay line's contents from one plan to the next (whether it stays, fades in or fades out; one
    /// key is never both fading in and out, since an edge in both plans stays).
    fn delayed_edges(&self) -> HashMap<(Option<NodeId>, SrcRef, Wiring, usize), EdgeAt> {
        let mut map = HashMap::new();
        for (b, branch) in self.branches.iter().enumerate() {
            let dst = self.nodes[branch.nodes.start];
            for (k, e) in branch.inputs.iter().enumerate() {
                if e.delay > 0 {
                    map.insert((Some(dst), e.from, e.wiring, e.delay), EdgeAt::Branch(b, k));
                }
            }
        }
        for (k, e) in self.output.iter().enumerate() {
            if e.delay > 0 {
                map.insert((None, e.from, e.wiring, e.delay), EdgeAt::Output(k));
            }
        }
        map
    }
}

/// A node of a steady graph: id, tie-breaking key, sources (and their channels) in summing order, own
/// latency, and the channels of its input ports together.
#[derive(Debug, Clone)]
pub(crate) struct SteadyNode {
    pub id: NodeId,
    pub key: usize,
    pub inputs: Vec<(SrcRef, Wiring)>,
    pub latency: usize,
    pub in_width: usize,
}

/// Compiles a graph: latencies, compensating delays, branches and levels. Every node given is processed
/// (prune before calling). Sources that name no given node are ignored. `input_channels` is the width of
/// the graph's inputs together.
pub(crate) fn steady(
    nodes: &[SteadyNode],
    output: &[(SrcRef, Wiring)],
    input_channels: usize,
) -> Result<PlanDesc, Cycle> {
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let valid = |s: &SrcRef| match s {
        SrcRef::Input => true,
        SrcRef::Node(id) => index.contains_key(id),
    };
    // Latency at each node's output, by a depth-first walk (which also finds cycles).
    let mut at_output: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut on_path = vec![false; nodes.len()];
    fn visit(
        i: usize,
        nodes: &[SteadyNode],
        index: &HashMap<NodeId, usize>,
        at: &mut Vec<Option<usize>>,
        on_path: &mut Vec<bool>,
        path: &mut Vec<usize>,
    ) -> Result<usize, Cycle> {
        if let Some(l) = at[i] {
            return Ok(l);
        }
        if on_path[i] {
            let start = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut cycle: Vec<NodeId> = path[start..].iter().map(|&p| nodes[p].id).collect();
            cycle.reverse();
            return Err(Cycle(cycle));
        }
        on_path[i] = true;
        path.push(i);
        let mut arrival = 0;
        for (s, _) in &nodes[i].inputs {
            if let SrcRef::Node(id) = s
                && let Some(&j) = index.get(id)
            {
                arrival = arrival.max(visit(j, nodes, index, at, on_path, path)?);
            }
        }
        path.pop();
        on_path[i] = false;
        let l = arrival + nodes[i].latency;
        at[i] = Some(l);
        Ok(l)
    }
    let mut path = Vec::new();
    for i in 0..nodes.len() {
        visit(i, nodes, &index, &mut at_output, &mut on_path, &mut path)?;
    }
    let lat = |s: &SrcRef| match s {
        SrcRef::Input => 0,
        SrcRef::Node(id) => at_output[index[id]].unwrap_or(0),
    };
    // Every edge into a node (whichever port, sidechains too) arrives with the latest.
    let edges = |sources: &[(SrcRef, Wiring)]| -> Vec<GEdge> {
        let sources: Vec<(SrcRef, Wiring)> = sources.iter().copied().filter(|(s, _)| valid(s)).collect();
        let arrival = sources.iter().map(|(s, _)| lat(s)).max().unwrap_or(0);
        sources
            .iter()
            .map(|&(s, wiring)| GEdge { from: s, wiring, delay: arrival - lat(&s), fade: Fade::Keep })
            .collect()
    };
    let gnodes: Vec<GNode> =
        nodes.iter().map(|n| GNode { id: n.id, key: n.key, inputs: edges(&n.inputs), in_width: n.in_width }).collect();
    let out_edges = edges(output);
    let latency = output.iter().filter(|(s, _)| valid(s)).map(|(s, _)| lat(s)).max().unwrap_or(0);
    let mut desc = arrange(gnodes, out_edges, input_channels)?;
    desc.latency = latency;
    desc.at_output = desc.nodes.iter().map(|id| at_output[index[id]].unwrap_or(0)).collect();
    Ok(desc)
}

/// Cuts nodes into branches and levels, and orders them: by level, then within a level by the key of each
/// branch's first node.
pub(crate) fn arrange(nodes: Vec<GNode>, output: Vec<GEdge>, input_channels: usize) -> Result<PlanDesc, Cycle> {
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    // Readers of each source (node index, or None for the graph input).
    let mut readers: HashMap<Option<usize>, usize> = HashMap::new();
    let source = |s: &SrcRef| match s {
        SrcRef::Input => Some(None),
        SrcRef::Node(id) => index.get(id).map(|&i| Some(i)),
    };
    for e in nodes.iter().flat_map(|n| &n.inputs).chain(&output) {
        if let Some(s) = source(&e.from) {
            *readers.entry(s).or_default() += 1;
        }
    }
    // A node continues its only input's branch if that input is a node read by nothing else, undelayed, at
    // full level, and is all the node's input, channel for channel (the node then works in place).
    let continues = |n: &GNode| -> Option<usize> {
        match n.inputs.as_slice() {
            [GEdge { from: SrcRef::Node(p), wiring, delay: 0, fade: Fade::Keep }] if wiring.in_place(n.in_width) => {
                let p = *index.get(p)?;
                (readers.get(&Some(p)) == Some(&1)).then_some(p)
            }
            _ => None,
        }
    };
    let mut next_in_branch: HashMap<usize, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(p) = continues(n) {
            next_in_branch.insert(p, i);
        }
    }
    let mut branch_of: Vec<usize> = vec![usize::MAX; nodes.len()];
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if continues(n).is_some() {
            continue;
        }
        let mut chain = vec![i];
        while let Some(&next) = next_in_branch.get(chain.last().unwrap_or(&i)) {
            if chain.contains(&next) {
                break;
            }
            chain.push(next);
        }
        for &k in &chain {
            branch_of[k] = chains.len();
        }
        chains.push(chain);
    }
    // A node left without a branch is on a cycle of continuations.
    if let Some(i) = branch_of.iter().position(|&b| b == usize::MAX) {
        let mut cycle = vec![nodes[i].id];
        let mut k = i;
        while let Some(&n) = next_in_branch.get(&k) {
            if n == i {
                break;
            }
            cycle.push(nodes[n].id);
            k = n;
        }
        return Err(Cycle(cycle));
    }
    // Level of a branch: one more than the deepest branch feeding its head.
    let mut level: Vec<Option<usize>> = vec![None; chains.len()];
    let mut on_path = vec![false; chains.len()];
    fn level_of(
        b: usize,
        chains: &[Vec<usize>],
        nodes: &[GNode],
        index: &HashMap<NodeId, usize>,
        branch_of: &[usize],
        level: &mut Vec<Option<usize>>,
        on_path: &mut Vec<bool>,
    ) -> Result<usize, Cycle> {
        if let Some(l) = level[b] {
            return Ok(l);
        }
        if on_path[b] {
            return Err(Cycle(chains[b].iter().map(|&i| nodes[i].id).collect()));
        }
        on_path[b] = true;
        let mut l = 0;
        for e in &nodes[chains[b][0]].inputs {
            if let SrcRef::Node(id) = e.from
                && let Some(&j) = index.get(&id)
            {
                l = l.max(level_of(branch_of[j], chains, nodes, index, branch_of, level, on_path)? + 1);
            }
        }
        on_path[b] = false;
        level[b] = Some(l);
        Ok(l)
    }
    for b in 0..chains.len() {
        level_of(b, &chains, &nodes, &index, &branch_of, &mut level, &mut on_path)?;
    }
    let depth = level.iter().flatten().max().map_or(0, |l| l + 1);
    let input_readers = readers.get(&None).copied().unwrap_or(0);
    let mut desc = PlanDesc { input_channels, ..PlanDesc::default() };
    let mut branch_pos: Vec<usize> = vec![0; chains.len()];
    let mut order: Vec<usize> = (0..chains.len()).collect();
    order.sort_by_key(|&b| (level[b], nodes[chains[b][0]].key));
    for l in 0..depth {
        let start = desc.branches.len();
        for &b in order.iter().filter(|&&b| level[b] == Some(l)) {
            branch_pos[b] = desc.branches.len();
            let first = desc.nodes.len();
            desc.nodes.extend(chains[b].iter().map(|&i| nodes[i].id));
            desc.in_width.extend(chains[b].iter().map(|&i| nodes[i].in_width));
            let head = &nodes[chains[b][0]];
            let inputs = head.inputs.clone();
            let takes_input = input_readers == 1
                && head.in_width == input_channels
                && matches!(inputs.as_slice(),
                    [GEdge { from: SrcRef::Input, wiring, delay: 0, fade: Fade::Keep }] if wiring.in_place(input_channels));
            desc.branches.push(BranchDesc { nodes: first..desc.nodes.len(), inputs, takes_input });
        }
        desc.levels.push(start..desc.branches.len());
    }
    // Edges whose source is not a node of this plan are dropped.
    for b in &mut desc.branches {
        b.inputs.retain(|e| !matches!(e.from, SrcRef::Node(id) if !index.contains_key(&id)));
    }
    desc.output =
        output.into_iter().filter(|e| !matches!(e.from, SrcRef::Node(id) if !index.contains_key(&id))).collect();
    Ok(desc)
}

/// The transitional plan from `old` (running) to `new`: every node of both, each edge at full level or
/// fading. An edge fades only where its destination is in both plans (a kept node or the output) and the
/// edge is in one of them: out if only in `old`, in if only in `new`. Nodes only in `old` keep their inputs
/// at full level (their outputs fade), nodes only in `new` likewise.
pub(crate) fn union(old: &PlanDesc, new: &PlanDesc) -> Result<PlanDesc, Cycle> {
    let old_pos = old.positions();
    let new_pos = new.positions();
    let mut nodes: Vec<GNode> = Vec::new();
    for (pos, &id) in new.nodes.iter().enumerate() {
        let mut inputs = new.inputs_of(pos);
        if let Some(&op) = old_pos.get(&id) {
            let before = old.inputs_of(op);
            for e in &mut inputs {
                e.fade = if before.iter().any(|b| b.same(e)) { Fade::Keep } else { Fade::In };
            }
            for b in before {
                if !inputs.iter().any(|e| e.same(&b)) {
                    inputs.push(GEdge { fade: Fade::Out, ..b });
                }
            }
        }
        nodes.push(GNode { id, key: pos, inputs, in_width: new.in_width[pos] });
    }
    for (pos, &id) in old.nodes.iter().enumerate() {
        if !new_pos.contains_key(&id) {
            nodes.push(GNode { id, key: 1_000_000 + pos, inputs: old.inputs_of(pos), in_width: old.in_width[pos] });
        }
    }
    let mut output: Vec<GEdge> = new
        .output
        .iter()
        .map(|e| GEdge { fade: if old.output.iter().any(|b| b.same(e)) { Fade::Keep } else { Fade::In }, ..*e })
        .collect();
    for b in &old.output {
        if !new.output.iter().any(|e| e.same(b)) {
            output.push(GEdge { fade: Fade::Out, ..*b });
        }
    }
    let mut desc = arrange(nodes, output, new.input_channels)?;
    desc.latency = new.latency;
    Ok(desc)
}

/// What [`build`] needs to know about each node of a plan.
pub(crate) struct NodeRuntime {
    pub stats: Arc<NodeStats>,
    pub meter: Option<Arc<SharedMeter>>,
    pub polls: bool,
    /// The port widths its processor was prepared for.
    pub layout: Layout,
}

/// The buffer shape of a plan: the channels of the graph's inputs and of its outputs, the largest block a
/// node gets, and the frames one run may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub max_block: usize,
    pub stride: usize,
    /// For metered nodes' loudness meters.
    pub sample_rate: u32,
    pub loudness: crate::LoudnessMetering,
}

/// The channels of `0..width` that no edge writes (ports nothing feeds): they are zeroed.
fn uncovered(width: usize, edges: &[GEdge]) -> Vec<Range<usize>> {
    let mut covered = vec![false; width];
    for e in edges {
        let end = (e.wiring.to_ch + e.wiring.width).min(width);
        covered[e.wiring.to_ch.min(end)..end].fill(true);
    }
    let mut out: Vec<Range<usize>> = Vec::new();
    for c in (0..width).filter(|&c| !covered[c]) {
        match out.last_mut() {
            Some(r) if r.end == c => r.end = c + 1,
            _ => out.push(c..c + 1),
        }
    }
    out
}

/// The audio side's edges for `edges`: each knows whether it is the first into its channels (it writes
/// them; later ones add).
fn plan_edges(edges: &[GEdge], src: impl Fn(SrcRef) -> Src) -> Vec<Edge> {
    edges
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let first = !edges[..k].iter().any(|b| b.wiring.to_ch == e.wiring.to_ch);
            let w = e.wiring;
            let wiring = plan::Wiring { from_ch: w.from_ch, to_ch: w.to_ch, width: w.width, mono: w.mono, first };
            Edge::new(src(e.from), wiring, e.delay, e.fade)
        })
        .collect()
}

/// Builds the audio side's plan for `desc`. `fresh` holds the processors that are new to the audio side
/// (taken from it); every other node's processor is taken from `prev` (the plan the audio side runs when
/// this one arrives) by the moves recorded here.
pub(crate) fn build(
    desc: &PlanDesc,
    prev: Option<&PlanDesc>,
    fresh: &mut HashMap<NodeId, Box<dyn Processor>>,
    runtime: &HashMap<NodeId, NodeRuntime>,
    shape: Shape,
    crossfade: Option<usize>,
) -> plan::Plan {
    let Shape { in_channels, out_channels, max_block, stride, .. } = shape;
    let pos = desc.positions();
    let layout_of = |id: &NodeId| runtime.get(id).map_or(Layout::effect(0), |r| r.layout);
    let mut branch_of_pos = vec![0usize; desc.nodes.len()];
    for (b, branch) in desc.branches.iter().enumerate() {
        for p in branch.nodes.clone() {
            branch_of_pos[p] = b;
        }
    }
    let src = |s: SrcRef| match s {
        SrcRef::Input => Src::Input,
        SrcRef::Node(id) => Src::Branch(branch_of_pos[pos[&id]]),
    };
    let slots: Vec<Slot> = desc
        .nodes
        .iter()
        .map(|&id| {
            let rt = runtime.get(&id);
            let layout = layout_of(&id);
            Slot {
                id,
                processor: fresh.remove(&id),
                stats: rt.map_or_else(|| Arc::new(NodeStats::new()), |r| r.stats.clone()),
                meter: rt
                    .and_then(|r| r.meter.clone())
                    .map(|m| MeterWriter::new(m, shape.loudness.meter(shape.sample_rate, layout.output_channels()))),
                channels: layout.block_channels(),
                out_channels: layout.output_channels(),
            }
        })
        .collect();
    let polling = desc
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, id)| runtime.get(id).is_some_and(|r| r.polls))
        .map(|(p, _)| p)
        .collect();
    let branches: Vec<Branch> = desc
        .branches
        .iter()
        .map(|b| {
            // Room for every node's block, and for the graph input when the branch takes it in place.
            let width = desc.nodes[b.nodes.clone()]
                .iter()
                .map(|id| layout_of(id).block_channels())
                .max()
                .unwrap_or(0)
                .max(if b.takes_input { in_channels } else { 0 });
            let head_in = desc.in_width[b.nodes.start];
            Branch {
                nodes: b.nodes.clone(),
                inputs: plan_edges(&b.inputs, src),
                zero: if b.takes_input { Vec::new() } else { uncovered(head_in, &b.inputs) },
                buf: vec![0.0; width * stride].into_boxed_slice(),
                takes_input: b.takes_input,
            }
        })
        .collect();
    let output_from = match desc.output.as_slice() {
        [GEdge { from: SrcRef::Node(id), wiring, delay: 0, fade: Fade::Keep }] if wiring.in_place(out_channels) => {
            OutputFrom::Branch(branch_of_pos[pos[id]])
        }
        _ => OutputFrom::Mix,
    };
    let max_id = desc.nodes.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut pos_of = vec![u32::MAX; max_id].into_boxed_slice();
    for (p, &id) in desc.nodes.iter().enumerate() {
        pos_of[id as usize] = p as u32;
    }
    let (moves_in, edge_moves_in) = match prev {
        Some(prev) => {
            let prev_pos = prev.positions();
            let moves =
                desc.nodes.iter().enumerate().filter_map(|(p, id)| prev_pos.get(id).map(|&from| (from, p))).collect();
            let before = prev.delayed_edges();
            let edges = desc
                .delayed_edges()
                .into_iter()
                .filter_map(|(key, to)| before.get(&key).map(|&from| (from, to)))
                .collect();
            (moves, edges)
        }
        None => (Vec::new(), Vec::new()),
    };
    let output: Vec<Edge> = plan_edges(&desc.output, src);
    let flow = plan::Flow::new(&branches, &output, output_from);
    plan::Plan {
        flow,
        slots,
        branches,
        levels: desc.levels.iter().map(|l| Level::new(l.clone())).collect(),
        output,
        output_buf: vec![0.0; if output_from == OutputFrom::Mix { out_channels * stride } else { 0 }]
            .into_boxed_slice(),
        output_zero: uncovered(out_channels, &desc.output),
        output_from,
        pos_of,
        polling,
        latency: desc.latency,
        crossfade: crossfade.map(|len| Crossfade { len: len.max(1), pos: 0, delay: desc.latency }),
        next: None,
        moves_in,
        edge_moves_in,
        in_channels,
        out_channels,
        stride,
        max_block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, inputs: &[SrcRef], latency: usize) -> SteadyNode {
        SteadyNode { id, key: id as usize, inputs: stereo(inputs), latency, in_width: 2 }
    }

    fn stereo(sources: &[SrcRef]) -> Vec<(SrcRef, Wiring)> {
        sources.iter().map(|&s| (s, Wiring::whole(2))).collect()
    }

    fn edge(from: SrcRef, fade: Fade) -> GEdge {
        GEdge { from, wiring: Wiring::whole(2), delay: 0, fade }
    }

    #[test]
    fn a_chain_is_one_branch_that_takes_the_input_in_place() {
        use SrcRef::*;
        let d =
            steady(&[node(0, &[Input], 0), node(1, &[Node(0)], 10), node(2, &[Node(1)], 0)], &stereo(&[Node(2)]), 2)
                .expect("acyclic");
        assert_eq!(d.nodes, [0, 1, 2]);
        assert_eq!(d.branches.len(), 1);
        assert!(d.branches[0].takes_input);
        assert_eq!(d.latency, 10);
        assert_eq!(d.at_output, [0, 10, 10]);
    }

    #[test]
    fn parallel_branches_share_a_level_and_earlier_arrivals_are_delayed() {
        use SrcRef::*;
        let d = steady(
            &[node(0, &[Input], 240), node(1, &[Input], 0), node(2, &[Node(0), Node(1)], 0)],
            &stereo(&[Node(2)]),
            2,
        )
        .expect("acyclic");
        assert_eq!(d.levels, [0..2, 2..3]);
        assert!(!d.branches[0].takes_input, "the input has two readers");
        let head = &d.branches[2].inputs;
        assert_eq!(head[0].delay, 0);
        assert_eq!(head[1].delay, 240);
        assert_eq!(d.latency, 240);
    }

    #[test]
    fn cycles_are_found() {
        use SrcRef::*;
        let err = steady(&[node(0, &[Input, Node(1)], 0), node(1, &[Node(0)], 0)], &stereo(&[Node(1)]), 2)
            .expect_err("cycle");
        assert_eq!(err.0.len(), 2);
    }

    #[test]
    fn a_union_fades_changed_inputs_and_keeps_the_rest() {
        use SrcRef::*;
        // Insert node 3 between 0 and 1.
        let old = steady(&[node(0, &[Input], 0), node(1, &[Node(0)], 0)], &stereo(&[Node(1)]), 2).expect("old");
        let new =
            steady(&[node(0, &[Input], 0), node(3, &[Node(0)], 0), node(1, &[Node(3)], 0)], &stereo(&[Node(1)]), 2)
                .expect("new");
        let u = union(&old, &new).expect("union");
        let pos = u.positions();
        let into_1 = u.inputs_of(pos[&1]);
        assert!(into_1.contains(&edge(Node(3), Fade::In)));
        assert!(into_1.contains(&edge(Node(0), Fade::Out)));
        assert_eq!(u.inputs_of(pos[&3]), [edge(Node(0), Fade::Keep)]);
        assert_eq!(u.output, [edge(Node(1), Fade::Keep)]);
        // Swapping two kept nodes' order makes the union cyclic.
        let swapped = steady(&[node(1, &[Input], 0), node(0, &[Node(1)], 0)], &stereo(&[Node(0)]), 2).expect("swapped");
        assert!(union(&old, &swapped).is_err());
    }
}
