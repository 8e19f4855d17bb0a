//! Node kinds: the built-in DSP, and WebAssembly plugins (with the `wasm` feature). Each implements the
//! node contract of [`crate::node`] and registers in the [`crate::registry::Registry`].

pub mod builtin;
#[cfg(target_os = "linux")]
pub mod native;
pub mod plugin;
#[cfg(feature = "wasm")]
pub mod wasm;

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
