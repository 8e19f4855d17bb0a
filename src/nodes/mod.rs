//! Node kinds: the built-in DSP, WebAssembly plugins (with the `wasm` feature) and native plugins (Linux).
//! Each implements the node contract of [`crate::node`]; [`registry`] gathers them.

use crate::node::Registry;

pub mod builtin;
pub mod convolution;
#[cfg(target_os = "linux")]
pub mod native;
pub mod plugin;
pub mod routing;
#[cfg(feature = "wasm")]
pub mod wasm;

/// A registry holding every built-in kind: the DSP nodes, `Wasm` with the `wasm` feature, and `Native`
/// and `Ladspa` on Linux. [`Graph::load`](crate::graph::Graph::load) parses with it.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    routing::register(&mut registry);
    convolution::register(&mut registry);
    #[cfg(feature = "wasm")]
    wasm::register(&mut registry);
    #[cfg(target_os = "linux")]
    native::register(&mut registry);
    registry
}

/// Implements the boilerplate of [`crate::node::NodeSpec`] for a `Clone` type.
macro_rules! spec_boilerplate {
    () => {
        fn clone_spec(&self) -> Box<dyn $crate::node::NodeSpec> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
            self
        }
    };
}
pub(crate) use spec_boilerplate;
