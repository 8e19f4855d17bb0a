//! Node kinds: every kind a graph file may name, built-in or plugin, is a [`NodeKind`] in a [`Registry`].
//!
//! A kind is a name, a parse function that turns the kind's parameter text (the `( ... )` after the kind
//! name in the file) into its typed parameter component, and the typed access the engine needs to reach
//! that component on an entity as a [`NodeSpec`] and to find the entities where it changed. The engine
//! never matches on kinds, so registering a new kind touches nothing else. The built-in kinds are
//! gathered by `fxgraph::nodes::registry()`.

use super::NodeSpec;
use bevy_ecs::component::{Component, Mutable};
use bevy_ecs::prelude::*;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Parses a kind's parameter text, e.g. `(gain_db: -3.0)`. Positions in the error are relative to it.
pub type ParseFn = fn(&str) -> Result<Box<dyn NodeSpec>, ron::error::SpannedError>;

/// A kind's typed parameter component, as the engine reaches it.
pub trait SpecComponent: NodeSpec + Component<Mutability = Mutable> + Clone {}

impl<T: NodeSpec + Component<Mutability = Mutable> + Clone> SpecComponent for T {}

/// One registered node kind.
#[derive(Clone, Copy)]
pub struct NodeKind {
    /// The name written in graph files.
    pub name: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    /// Parses the kind's parameter text into its component.
    pub parse: ParseFn,
    /// Inserts a parsed description on an entity as the kind's component (false if it is another kind).
    pub(crate) insert: fn(Box<dyn NodeSpec>, &mut EntityWorldMut<'_>) -> bool,
    pub(crate) get: for<'w> fn(&'w World, Entity) -> Option<&'w dyn NodeSpec>,
    /// Replaces the component's value (false if `spec` is another kind).
    pub(crate) set: fn(&mut World, Entity, Box<dyn NodeSpec>) -> bool,
    /// The entities that hold the kind's component.
    pub(crate) holders: fn(&mut World) -> Vec<Entity>,
    /// The entities whose component was added or changed since the exclusive system that asks last ran.
    pub(crate) changed: fn(&mut World) -> Vec<Entity>,
}

impl std::fmt::Debug for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKind").field("name", &self.name).finish()
    }
}

impl NodeKind {
    /// The kind whose parameters are `T`, parsed from RON.
    pub fn new<T: SpecComponent + DeserializeOwned>(name: &'static str, summary: &'static str) -> Self {
        Self::with_parser::<T>(name, summary, parse_ron::<T>)
    }

    /// The kind whose parameters are `T`, parsed by `parse`.
    pub fn with_parser<T: SpecComponent>(name: &'static str, summary: &'static str, parse: ParseFn) -> Self {
        fn insert<T: SpecComponent>(spec: Box<dyn NodeSpec>, e: &mut EntityWorldMut<'_>) -> bool {
            match spec.into_any().downcast::<T>() {
                Ok(t) => {
                    e.insert(*t);
                    true
                }
                Err(_) => false,
            }
        }
        fn get<T: SpecComponent>(world: &World, e: Entity) -> Option<&dyn NodeSpec> {
            world.get::<T>(e).map(|t| t as &dyn NodeSpec)
        }
        fn set<T: SpecComponent>(world: &mut World, e: Entity, spec: Box<dyn NodeSpec>) -> bool {
            match (spec.into_any().downcast::<T>(), world.get_mut::<T>(e)) {
                (Ok(t), Some(mut c)) => {
                    *c = *t;
                    true
                }
                _ => false,
            }
        }
        fn holders<T: SpecComponent>(world: &mut World) -> Vec<Entity> {
            world.query_filtered::<Entity, With<T>>().iter(world).collect()
        }
        fn changed<T: SpecComponent>(world: &mut World) -> Vec<Entity> {
            // A query made here compares against `World::last_change_tick`: inside an exclusive system,
            // the system's last run.
            world.query_filtered::<Entity, Changed<T>>().iter(world).collect()
        }
        Self {
            name,
            summary,
            parse,
            insert: insert::<T>,
            get: get::<T>,
            set: set::<T>,
            holders: holders::<T>,
            changed: changed::<T>,
        }
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

    /// Adds a kind, returning the one it replaces.
    pub fn register(&mut self, kind: NodeKind) -> Option<NodeKind> {
        self.kinds.insert(kind.name, kind)
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<&NodeKind> {
        self.kinds.get(name)
    }

    /// Every kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &NodeKind> {
        self.kinds.values()
    }
}
