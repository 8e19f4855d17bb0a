//! The registry of node kinds: every kind a graph file may name, built-in or plugin, is found here.
//!
//! A kind is a name plus a parse function that turns the kind's parameter text (the `( ... )` after the kind
//! name in the file) into a [`NodeSpec`]. The engine never matches on kinds, so registering a new kind
//! touches nothing else.

use crate::node::NodeSpec;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Parses a kind's parameter text, e.g. `(gain_db: -3.0)`. Positions in the error are relative to it.
pub type ParseFn = fn(&str) -> Result<Box<dyn NodeSpec>, ron::error::SpannedError>;

/// One registered node kind.
#[derive(Clone, Copy)]
pub struct NodeKind {
    /// The name written in graph files.
    pub name: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    pub parse: ParseFn,
}

impl std::fmt::Debug for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKind").field("name", &self.name).finish()
    }
}

/// A [`ParseFn`] for any spec type that deserializes from RON.
pub fn parse_ron<T: NodeSpec + DeserializeOwned>(text: &str) -> Result<Box<dyn NodeSpec>, ron::error::SpannedError> {
    ron::from_str::<T>(text).map(|spec| Box::new(spec) as Box<dyn NodeSpec>)
}

/// Node kinds by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, NodeKind>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding every built-in kind (and `Wasm` with the `wasm` feature).
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        crate::builtin::register(&mut registry);
        #[cfg(feature = "wasm")]
        crate::wasm::register(&mut registry);
        registry
    }

    /// Adds a kind, returning the one it replaces.
    pub fn register(&mut self, kind: NodeKind) -> Option<NodeKind> {
        self.kinds.insert(kind.name, kind)
    }

    pub fn get(&self, name: &str) -> Option<&NodeKind> {
        self.kinds.get(name)
    }

    /// Every kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &NodeKind> {
        self.kinds.values()
    }
}
