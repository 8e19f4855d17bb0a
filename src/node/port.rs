//! Ports: the named audio inputs and outputs of a node kind, each with a channel count.
//!
//! A kind declares its ports ([`NodeSpec::ports`](crate::node::NodeSpec::ports)); the graph's edges join
//! them, and the engine resolves every port's width before it prepares the node. The processor then sees
//! the resolved widths as a [`Layout`] in its [`ProcessConfig`](crate::node::ProcessConfig), and one
//! planar block per call: **input ports lie in the block's channels in declaration order on entry, output
//! ports in declaration order on return**. A node with one input and one output of equal width (every
//! effect) works in place as before; a mixer reads its inputs' channels and writes its outputs' over them.

use std::ops::Range;

/// The most ports a node may have on each side.
pub const MAX_PORTS: usize = 16;
/// The most channels a port (and a graph's width, and any one input or output of a graph) may carry.
pub const MAX_CHANNELS: usize = 32;

/// How many channels a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// Always this many.
    Fixed(usize),
    /// The graph's width (its `channels`).
    Graph,
    /// Inputs: as many as what feeds the port (the widest of its edges), the graph's width when nothing
    /// does. An effect's input, so that a mono path stays mono. (On an output: the graph's width.)
    Any,
    /// Inputs: as many as what feeds the port; 0 when nothing does, so an unconnected port is absent (a
    /// compressor's sidechain). (On an output: 0.)
    Optional,
    /// As wide as input port `i` (an effect's output follows its input). On an input, `i` must be an
    /// earlier port.
    Input(usize),
}

impl Width {
    /// A plugin's audio bus: `channels`, or the graph's for 0; [`Optional`](Self::Optional) for an
    /// optional input.
    pub fn of_bus(channels: u32, optional: bool) -> Self {
        match (optional, channels) {
            (true, _) => Self::Optional,
            (false, 0) => Self::Graph,
            (false, n) => Self::Fixed(n as usize),
        }
    }

    /// The channels for a graph `graph_width` wide, when the widest edge into the port is `widest` (`None`:
    /// nothing feeds it) and the node's earlier inputs are `inputs` wide.
    pub fn resolve(self, graph_width: usize, widest: Option<usize>, inputs: &[usize]) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::Graph => graph_width,
            Self::Any => widest.unwrap_or(graph_width),
            Self::Optional => widest.unwrap_or(0),
            Self::Input(i) => inputs.get(i).copied().unwrap_or(0),
        }
    }
}

/// One named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The name edges address it by (`"node.name"`).
    pub name: String,
    /// Its channel count.
    pub width: Width,
}

impl Port {
    /// A port called `name` of `width`.
    pub fn new(name: impl Into<String>, width: Width) -> Self {
        Self { name: name.into(), width }
    }
}

/// A node's ports: inputs and outputs, in order. The first of each is the one an edge naming only the
/// node addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// Input ports.
    pub inputs: Vec<Port>,
    /// Output ports.
    pub outputs: Vec<Port>,
}

impl Ports {
    /// One input `in` and one output `out`, both of the graph's width: the default, and every plugin.
    pub fn effect() -> Self {
        Self { inputs: vec![Port::new("in", Width::Graph)], outputs: vec![Port::new("out", Width::Graph)] }
    }

    /// One input `in` of any width and an output `out` as wide: a built-in effect, which works on
    /// whatever feeds it (the graph's width when nothing does).
    pub fn follow() -> Self {
        Self { inputs: vec![Port::new("in", Width::Any)], outputs: vec![Port::new("out", Width::Input(0))] }
    }

    /// The widths in a graph `graph_width` wide with nothing connected (a plugin set up alone).
    pub fn unconnected(&self, graph_width: usize) -> Layout {
        let mut ins = Vec::with_capacity(self.inputs.len());
        for p in &self.inputs {
            let w = p.width.resolve(graph_width, None, &ins);
            ins.push(w);
        }
        let outs: Vec<usize> = self.outputs.iter().map(|p| p.width.resolve(graph_width, None, &ins)).collect();
        Layout::new(&ins, &outs)
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|p| p.name == name)
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|p| p.name == name)
    }
}

/// The resolved channel count of each of a node's ports: what its processor is prepared for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    ins: [u8; MAX_PORTS],
    outs: [u8; MAX_PORTS],
    n_in: u8,
    n_out: u8,
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout").field("inputs", &self.inputs()).field("outputs", &self.outputs()).finish()
    }
}

impl Layout {
    /// Ports of these widths.
    ///
    /// # Panics
    /// With more than [`MAX_PORTS`] ports on a side, or a port wider than 255 channels.
    pub fn new(inputs: &[usize], outputs: &[usize]) -> Self {
        assert!(inputs.len() <= MAX_PORTS && outputs.len() <= MAX_PORTS, "at most {MAX_PORTS} ports a side");
        let mut l = Self { ins: [0; MAX_PORTS], outs: [0; MAX_PORTS], n_in: inputs.len() as u8, n_out: 0 };
        l.n_out = outputs.len() as u8;
        for (d, &w) in l.ins.iter_mut().zip(inputs) {
            *d = u8::try_from(w).expect("a port has at most 255 channels");
        }
        for (d, &w) in l.outs.iter_mut().zip(outputs) {
            *d = u8::try_from(w).expect("a port has at most 255 channels");
        }
        l
    }

    /// One input and one output of `channels`: an effect's layout.
    pub fn effect(channels: usize) -> Self {
        Self::new(&[channels], &[channels])
    }

    /// Input widths, in port order.
    pub fn inputs(&self) -> Vec<usize> {
        self.ins[..self.n_in as usize].iter().map(|&w| usize::from(w)).collect()
    }

    /// Output widths, in port order.
    pub fn outputs(&self) -> Vec<usize> {
        self.outs[..self.n_out as usize].iter().map(|&w| usize::from(w)).collect()
    }

    /// Width of input `i` (0 if there is no such port).
    pub fn input(&self, i: usize) -> usize {
        if i < self.n_in as usize { usize::from(self.ins[i]) } else { 0 }
    }

    /// Width of output `i` (0 if there is no such port).
    pub fn output(&self, i: usize) -> usize {
        if i < self.n_out as usize { usize::from(self.outs[i]) } else { 0 }
    }

    /// The block channels input `i` occupies on entry.
    pub fn input_at(&self, i: usize) -> Range<usize> {
        let start: usize = (0..i).map(|k| self.input(k)).sum();
        start..start + self.input(i)
    }

    /// The block channels output `i` occupies on return.
    pub fn output_at(&self, i: usize) -> Range<usize> {
        let start: usize = (0..i).map(|k| self.output(k)).sum();
        start..start + self.output(i)
    }

    /// Channels of all inputs together.
    pub fn input_channels(&self) -> usize {
        (0..self.n_in as usize).map(|i| self.input(i)).sum()
    }

    /// Channels of all outputs together.
    pub fn output_channels(&self) -> usize {
        (0..self.n_out as usize).map(|i| self.output(i)).sum()
    }

    /// Channels of the block the node is called with: room for its inputs and for its outputs.
    pub fn block_channels(&self) -> usize {
        self.input_channels().max(self.output_channels())
    }

    /// Whether the node is an effect: one output, as wide as its first input, and no other input
    /// connected (a compressor whose sidechain nothing feeds is one).
    pub fn is_effect(&self) -> bool {
        self.n_in >= 1 && self.n_out == 1 && self.ins[0] == self.outs[0] && self.input_channels() == self.input(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_lie_in_the_block_in_declaration_order() {
        let l = Layout::new(&[2, 0, 1], &[2, 2, 2]);
        assert_eq!(l.input_at(0), 0..2);
        assert_eq!(l.input_at(1), 2..2);
        assert_eq!(l.input_at(2), 2..3);
        assert_eq!(l.output_at(2), 4..6);
        assert_eq!((l.input_channels(), l.output_channels(), l.block_channels()), (3, 6, 6));
        assert!(!l.is_effect() && Layout::effect(2).is_effect());
        assert_eq!(l.input(7), 0);
    }
}
