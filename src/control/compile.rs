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
use crate::node::Processor;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Where an edge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SrcRef {
    Input,
    Node(NodeId),
}

/// An edge into a node or the output: its source, compensating delay and crossfade role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GEdge {
    pub from: SrcRef,
    pub delay: usize,
    pub fade: Fade,
}

/// A node for [`arrange`]: its id, a tie-breaking key (file order), its inputs in summing order.
#[derive(Debug, Clone)]
pub(crate) struct GNode {
    pub id: NodeId,
    pub key: usize,
    pub inputs: Vec<GEdge>,
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
            _ => vec![GEdge { from: SrcRef::Node(self.nodes[pos - 1]), delay: 0, fade: Fade::Keep }],
        }
    }

    /// Where each delayed edge sits, by (destination, source, delay), `None` being the output: an edge keeps
    /// its delay line's contents from one plan to the next (whether it stays, fades in or fades out; one
    /// key is never both fading in and out, since an edge in both plans stays).
    fn delayed_edges(&self) -> HashMap<(Option<NodeId>, SrcRef, usize), EdgeAt> {
        let mut map = HashMap::new();
        for (b, branch) in self.branches.iter().enumerate() {
            let dst = self.nodes[branch.nodes.start];
            for (k, e) in branch.inputs.iter().enumerate() {
                if e.delay > 0 {
                    map.insert((Some(dst), e.from, e.delay), EdgeAt::Branch(b, k));
                }
            }
        }
        for (k, e) in self.output.iter().enumerate() {
            if e.delay > 0 {
                map.insert((None, e.from, e.delay), EdgeAt::Output(k));
            }
        }
        map
    }
}

/// A node of a steady graph: id, tie-breaking key, sources in summing order, own latency.
#[derive(Debug, Clone)]
pub(crate) struct SteadyNode {
    pub id: NodeId,
    pub key: usize,
    pub inputs: Vec<SrcRef>,
    pub latency: usize,
}

/// Compiles a graph: latencies, compensating delays, branches and levels. Every node given is processed
/// (prune before calling). Sources that name no given node are ignored.
pub(crate) fn steady(nodes: &[SteadyNode], output: &[SrcRef]) -> Result<PlanDesc, Cycle> {
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
        for s in &nodes[i].inputs {
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
    let edges = |sources: &[SrcRef]| -> Vec<GEdge> {
        let sources: Vec<SrcRef> = sources.iter().copied().filter(valid).collect();
        let arrival = sources.iter().map(lat).max().unwrap_or(0);
        sources.iter().map(|s| GEdge { from: *s, delay: arrival - lat(s), fade: Fade::Keep }).collect()
    };
    let gnodes: Vec<GNode> = nodes.iter().map(|n| GNode { id: n.id, key: n.key, inputs: edges(&n.inputs) }).collect();
    let out_edges = edges(output);
    let latency = output.iter().filter(|s| valid(s)).map(lat).max().unwrap_or(0);
    let mut desc = arrange(gnodes, out_edges)?;
    desc.latency = latency;
    desc.at_output = desc.nodes.iter().map(|id| at_output[index[id]].unwrap_or(0)).collect();
    Ok(desc)
}

/// Cuts nodes into branches and levels, and orders them: by level, then within a level by the key of each
/// branch's first node.
pub(crate) fn arrange(nodes: Vec<GNode>, output: Vec<GEdge>) -> Result<PlanDesc, Cycle> {
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
    // A node continues its only input's branch if that input is a node read by nothing else, undelayed and
    // at full level.
    let continues = |n: &GNode| -> Option<usize> {
        match n.inputs.as_slice() {
            [GEdge { from: SrcRef::Node(p), delay: 0, fade: Fade::Keep }] => {
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
    let mut desc = PlanDesc::default();
    let mut branch_pos: Vec<usize> = vec![0; chains.len()];
    let mut order: Vec<usize> = (0..chains.len()).collect();
    order.sort_by_key(|&b| (level[b], nodes[chains[b][0]].key));
    for l in 0..depth {
        let start = desc.branches.len();
        for &b in order.iter().filter(|&&b| level[b] == Some(l)) {
            branch_pos[b] = desc.branches.len();
            let first = desc.nodes.len();
            desc.nodes.extend(chains[b].iter().map(|&i| nodes[i].id));
            let inputs = nodes[chains[b][0]].inputs.clone();
            let takes_input = input_readers == 1
                && matches!(inputs.as_slice(), [GEdge { from: SrcRef::Input, delay: 0, fade: Fade::Keep }]);
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
            let same = |a: &GEdge, b: &GEdge| a.from == b.from && a.delay == b.delay;
            for e in &mut inputs {
                e.fade = if before.iter().any(|b| same(b, e)) { Fade::Keep } else { Fade::In };
            }
            for b in before {
                if !inputs.iter().any(|e| same(e, &b)) {
                    inputs.push(GEdge { fade: Fade::Out, ..b });
                }
            }
        }
        nodes.push(GNode { id, key: pos, inputs });
    }
    for (pos, &id) in old.nodes.iter().enumerate() {
        if !new_pos.contains_key(&id) {
            nodes.push(GNode { id, key: 1_000_000 + pos, inputs: old.inputs_of(pos) });
        }
    }
    let same = |a: &GEdge, b: &GEdge| a.from == b.from && a.delay == b.delay;
    let mut output: Vec<GEdge> = new
        .output
        .iter()
        .map(|e| GEdge { fade: if old.output.iter().any(|b| same(b, e)) { Fade::Keep } else { Fade::In }, ..*e })
        .collect();
    for b in &old.output {
        if !new.output.iter().any(|e| same(e, b)) {
            output.push(GEdge { fade: Fade::Out, ..*b });
        }
    }
    let mut desc = arrange(nodes, output)?;
    desc.latency = new.latency;
    Ok(desc)
}

/// What [`build`] needs to know about each node of a plan.
pub(crate) struct NodeRuntime {
    pub stats: Arc<NodeStats>,
    pub meter: Option<Arc<SharedMeter>>,
    pub polls: bool,
}

/// The buffer shape of a plan: channels, the largest block a node gets, and the frames one run may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub channels: usize,
    pub max_block: usize,
    pub stride: usize,
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
    let Shape { channels, max_block, stride } = shape;
    let len = channels * stride;
    let pos = desc.positions();
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
    let edge = |e: &GEdge| Edge::new(src(e.from), e.delay, e.fade, channels);
    let slots: Vec<Slot> = desc
        .nodes
        .iter()
        .map(|&id| {
            let rt = runtime.get(&id);
            Slot {
                id,
                processor: fresh.remove(&id),
                stats: rt.map_or_else(|| Arc::new(NodeStats::new()), |r| r.stats.clone()),
                meter: rt.and_then(|r| r.meter.clone()).map(MeterWriter::new),
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
        .map(|b| Branch {
            nodes: b.nodes.clone(),
            inputs: b.inputs.iter().map(edge).collect(),
            buf: vec![0.0; len].into_boxed_slice(),
            takes_input: b.takes_input,
        })
        .collect();
    let output_from = match desc.output.as_slice() {
        [GEdge { from: SrcRef::Node(id), delay: 0, fade: Fade::Keep }] => OutputFrom::Branch(branch_of_pos[pos[id]]),
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
    let output: Vec<Edge> = desc.output.iter().map(edge).collect();
    let flow = plan::Flow::new(&branches, &output, output_from);
    plan::Plan {
        flow,
        slots,
        branches,
        levels: desc.levels.iter().map(|l| Level::new(l.clone())).collect(),
        output,
        output_buf: vec![0.0; if output_from == OutputFrom::Mix { len } else { 0 }].into_boxed_slice(),
        output_from,
        pos_of,
        polling,
        latency: desc.latency,
        crossfade: crossfade.map(|len| Crossfade { len: len.max(1), pos: 0 }),
        next: None,
        moves_in,
        edge_moves_in,
        channels,
        stride,
        max_block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, inputs: &[SrcRef], latency: usize) -> SteadyNode {
        SteadyNode { id, key: id as usize, inputs: inputs.to_vec(), latency }
    }

    #[test]
    fn a_chain_is_one_branch_that_takes_the_input_in_place() {
        use SrcRef::*;
        let d = steady(&[node(0, &[Input], 0), node(1, &[Node(0)], 10), node(2, &[Node(1)], 0)], &[Node(2)])
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
        let d = steady(&[node(0, &[Input], 240), node(1, &[Input], 0), node(2, &[Node(0), Node(1)], 0)], &[Node(2)])
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
        let err = steady(&[node(0, &[Input, Node(1)], 0), node(1, &[Node(0)], 0)], &[Node(1)]).expect_err("cycle");
        assert_eq!(err.0.len(), 2);
    }

    #[test]
    fn a_union_fades_changed_inputs_and_keeps_the_rest() {
        use SrcRef::*;
        // Insert node 3 between 0 and 1.
        let old = steady(&[node(0, &[Input], 0), node(1, &[Node(0)], 0)], &[Node(1)]).expect("old");
        let new =
            steady(&[node(0, &[Input], 0), node(3, &[Node(0)], 0), node(1, &[Node(3)], 0)], &[Node(1)]).expect("new");
        let u = union(&old, &new).expect("union");
        let pos = u.positions();
        let into_1 = u.inputs_of(pos[&1]);
        assert!(into_1.contains(&GEdge { from: Node(3), delay: 0, fade: Fade::In }));
        assert!(into_1.contains(&GEdge { from: Node(0), delay: 0, fade: Fade::Out }));
        assert_eq!(u.inputs_of(pos[&3]), [GEdge { from: Node(0), delay: 0, fade: Fade::Keep }]);
        assert_eq!(u.output, [GEdge { from: Node(1), delay: 0, fade: Fade::Keep }]);
        // Swapping two kept nodes' order makes the union cyclic.
        let swapped = steady(&[node(1, &[Input], 0), node(0, &[Node(1)], 0)], &[Node(0)]).expect("swapped");
        assert!(union(&old, &swapped).is_err());
    }
}
