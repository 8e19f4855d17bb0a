//! lilv, the LV2 reference host library, opened at run time (`liblilv-0.so.0`): fxgraph builds without
//! it, and LV2 nodes work wherever it is installed (Debian: `liblilv-0-0`). One lilv world per process,
//! loaded once (it reads `LV2_PATH`, or the standard folders), used by one thread at a time behind a lock,
//! on the control side only: the audio side calls the plugin's own functions.
#![allow(unsafe_code)] // lilv and LV2 are C ABIs; see the SAFETY notes.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Opaque lilv types.
#[repr(C)]
pub struct LilvWorld {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvPlugin {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvPlugins {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvPort {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvNode {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvNodes {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvIter {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvState {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvScalePoints {
    _p: [u8; 0],
}
#[repr(C)]
pub struct LilvScalePoint {
    _p: [u8; 0],
}

/// LV2's plugin descriptor (lv2/core/lv2.h).
#[repr(C)]
pub struct Lv2Descriptor {
    pub uri: *const c_char,
    pub instantiate: *const c_void,
    pub connect_port: Option<unsafe extern "C" fn(*mut c_void, u32, *mut c_void)>,
    pub activate: Option<unsafe extern "C" fn(*mut c_void)>,
    pub run: Option<unsafe extern "C" fn(*mut c_void, u32)>,
    pub deactivate: Option<unsafe extern "C" fn(*mut c_void)>,
    pub cleanup: Option<unsafe extern "C" fn(*mut c_void)>,
    pub extension_data: Option<unsafe extern "C" fn(*const c_char) -> *const c_void>,
}

/// lilv's instance (lilv.h: the struct its inline functions read).
#[repr(C)]
pub struct LilvInstance {
    pub descriptor: *const Lv2Descriptor,
    pub handle: *mut c_void,
    pub pimpl: *mut c_void,
}

/// An LV2 host feature (lv2/core/lv2.h).
#[repr(C)]
pub struct Lv2Feature {
    pub uri: *const c_char,
    pub data: *mut c_void,
}

macro_rules! lilv_fns {
    ($( $name:ident : fn($($arg:ty),*) $(-> $ret:ty)?; )*) => {
        /// The lilv functions fxgraph calls, looked up once.
        #[allow(non_snake_case, clippy::type_complexity)]
        pub struct Fns {
            $( pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
        }

        impl Fns {
            /// # Safety
            /// `lib` is lilv, whose functions have these C signatures.
            unsafe fn load(lib: &libloading::Library) -> Result<Self, String> {
                Ok(Self {
                    $( $name: {
                        let name = concat!(stringify!($name), "\0");
                        // SAFETY: the caller's contract: the symbol has this signature.
                        *unsafe { lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(name.as_bytes()) }
                            .map_err(|e| format!("lilv lacks {}: {e}", stringify!($name)))?
                    }, )*
                })
            }
        }
    };
}

lilv_fns! {
    lilv_world_new: fn() -> *mut LilvWorld;
    lilv_world_load_all: fn(*mut LilvWorld);
    lilv_world_get_all_plugins: fn(*const LilvWorld) -> *const LilvPlugins;
    lilv_plugins_begin: fn(*const LilvPlugins) -> *mut LilvIter;
    lilv_plugins_get: fn(*const LilvPlugins, *mut LilvIter) -> *const LilvPlugin;
    lilv_plugins_next: fn(*const LilvPlugins, *mut LilvIter) -> *mut LilvIter;
    lilv_plugins_is_end: fn(*const LilvPlugins, *mut LilvIter) -> bool;
    lilv_plugins_get_by_uri: fn(*const LilvPlugins, *const LilvNode) -> *const LilvPlugin;
    lilv_new_uri: fn(*mut LilvWorld, *const c_char) -> *mut LilvNode;
    lilv_node_free: fn(*mut LilvNode);
    lilv_node_as_string: fn(*const LilvNode) -> *const c_char;
    lilv_node_as_float: fn(*const LilvNode) -> f32;
    lilv_plugin_get_uri: fn(*const LilvPlugin) -> *const LilvNode;
    lilv_plugin_get_name: fn(*const LilvPlugin) -> *mut LilvNode;
    lilv_plugin_get_num_ports: fn(*const LilvPlugin) -> u32;
    lilv_plugin_get_port_by_index: fn(*const LilvPlugin, u32) -> *const LilvPort;
    lilv_plugin_get_port_ranges_float: fn(*const LilvPlugin, *mut f32, *mut f32, *mut f32);
    lilv_plugin_get_required_features: fn(*const LilvPlugin) -> *mut LilvNodes;
    lilv_plugin_has_latency: fn(*const LilvPlugin) -> bool;
    lilv_plugin_get_latency_port_index: fn(*const LilvPlugin) -> u32;
    lilv_plugin_instantiate: fn(*const LilvPlugin, f64, *const *const Lv2Feature) -> *mut LilvInstance;
    lilv_instance_free: fn(*mut LilvInstance);
    lilv_port_get_symbol: fn(*const LilvPlugin, *const LilvPort) -> *const LilvNode;
    lilv_port_get_name: fn(*const LilvPlugin, *const LilvPort) -> *mut LilvNode;
    lilv_port_is_a: fn(*const LilvPlugin, *const LilvPort, *const LilvNode) -> bool;
    lilv_port_has_property: fn(*const LilvPlugin, *const LilvPort, *const LilvNode) -> bool;
    lilv_port_get: fn(*const LilvPlugin, *const LilvPort, *const LilvNode) -> *mut LilvNode;
    lilv_port_get_scale_points: fn(*const LilvPlugin, *const LilvPort) -> *mut LilvScalePoints;
    lilv_scale_points_free: fn(*mut LilvScalePoints);
    lilv_scale_points_begin: fn(*const LilvScalePoints) -> *mut LilvIter;
    lilv_scale_points_get: fn(*const LilvScalePoints, *mut LilvIter) -> *const LilvScalePoint;
    lilv_scale_points_next: fn(*const LilvScalePoints, *mut LilvIter) -> *mut LilvIter;
    lilv_scale_points_is_end: fn(*const LilvScalePoints, *mut LilvIter) -> bool;
    lilv_scale_point_get_label: fn(*const LilvScalePoint) -> *const LilvNode;
    lilv_scale_point_get_value: fn(*const LilvScalePoint) -> *const LilvNode;
    lilv_nodes_free: fn(*mut LilvNodes);
    lilv_nodes_begin: fn(*const LilvNodes) -> *mut LilvIter;
    lilv_nodes_get: fn(*const LilvNodes, *mut LilvIter) -> *const LilvNode;
    lilv_nodes_next: fn(*const LilvNodes, *mut LilvIter) -> *mut LilvIter;
    lilv_nodes_is_end: fn(*const LilvNodes, *mut LilvIter) -> bool;
    lilv_plugin_get_related: fn(*const LilvPlugin, *const LilvNode) -> *mut LilvNodes;
    lilv_world_load_resource: fn(*mut LilvWorld, *const LilvNode) -> i32;
    lilv_state_new_from_world: fn(*mut LilvWorld, *const c_void, *const LilvNode) -> *mut LilvState;
    lilv_state_free: fn(*mut LilvState);
    lilv_state_get_label: fn(*const LilvState) -> *const c_char;
    lilv_state_get_num_properties: fn(*const LilvState) -> u32;
    lilv_state_emit_port_values: fn(*const LilvState, PortValueFn, *mut c_void);
    lilv_state_restore: fn(*const LilvState, *mut LilvInstance, Option<PortValueFn>, *mut c_void, u32, *const *const Lv2Feature);
    lilv_plugin_has_extension_data: fn(*const LilvPlugin, *const LilvNode) -> bool;
    lilv_new_file_uri: fn(*mut LilvWorld, *const c_char, *const c_char) -> *mut LilvNode;
    lilv_world_load_bundle: fn(*mut LilvWorld, *const LilvNode);
    lilv_plugin_has_feature: fn(*const LilvPlugin, *const LilvNode) -> bool;
    lilv_plugin_get_library_uri: fn(*const LilvPlugin) -> *const LilvNode;
    lilv_file_uri_parse: fn(*const c_char, *mut *mut c_char) -> *mut c_char;
    lilv_free: fn(*mut c_void);
}

/// lilv's `LilvSetPortValueFunc`: (port symbol, user data, value, size, type URID).
pub type PortValueFn = unsafe extern "C" fn(*const c_char, *mut c_void, *const c_void, u32, u32);

/// The process's lilv world, with every plugin found on `LV2_PATH` loaded.
pub struct World {
    pub f: Fns,
    pub world: *mut LilvWorld,
    _lib: libloading::Library,
}

// SAFETY: used only behind the lock in `world()`, one thread at a time.
unsafe impl Send for World {}

/// The lilv world, loaded on first use; an error says how to install lilv.
///
/// # Errors
/// A message when lilv cannot be opened.
pub fn world() -> Result<MutexGuard<'static, World>, String> {
    static WORLD: OnceLock<Result<Mutex<World>, String>> = OnceLock::new();
    let w = WORLD.get_or_init(|| {
        // SAFETY: loading lilv runs its initializers, those of a system library.
        let lib = unsafe { libloading::Library::new("liblilv-0.so.0") }.map_err(|e| {
            format!("LV2 plugins are found through lilv, which is not installed ({e}): apt install liblilv-0-0")
        })?;
        // SAFETY: the library is lilv 0.24's C API.
        let f = unsafe { Fns::load(&lib) }?;
        // SAFETY: lilv's documented set-up; the world lives as long as the process.
        let world = unsafe { (f.lilv_world_new)() };
        if world.is_null() {
            return Err("lilv could not make a world".into());
        }
        // SAFETY: as above.
        unsafe { (f.lilv_world_load_all)(world) };
        Ok(Mutex::new(World { f, world, _lib: lib }))
    });
    match w {
        Ok(m) => Ok(m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        Err(e) => Err(e.clone()),
    }
}

impl World {
    /// A URI node (freed when dropped).
    pub fn uri(&self, uri: &str) -> Node<'_> {
        let c = CString::new(uri).unwrap_or_default();
        // SAFETY: a live world and a NUL-terminated string.
        Node { w: self, p: unsafe { (self.f.lilv_new_uri)(self.world, c.as_ptr()) } }
    }

    /// A lilv string as Rust's, or empty for null; printable characters only, at most 512.
    ///
    /// # Safety
    /// `node` is null or a live lilv node.
    pub unsafe fn string(&self, node: *const LilvNode) -> String {
        if node.is_null() {
            return String::new();
        }
        // SAFETY: a live node; its string lives as long as it.
        let s = unsafe { (self.f.lilv_node_as_string)(node) };
        if s.is_null() {
            return String::new();
        }
        // SAFETY: a NUL-terminated string.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().chars().filter(|c| !c.is_control()).take(512).collect()
    }

    /// The string of a node the caller owns, which is freed.
    ///
    /// # Safety
    /// `node` is null or a live node the caller owns.
    pub unsafe fn take_string(&self, node: *mut LilvNode) -> Option<String> {
        if node.is_null() {
            return None;
        }
        // SAFETY: the caller's contract.
        let s = unsafe { self.string(node) };
        // SAFETY: the caller owns it.
        unsafe { (self.f.lilv_node_free)(node) };
        Some(s)
    }

    /// Every plugin of the world.
    pub fn plugins(&self) -> Vec<*const LilvPlugin> {
        let mut out = Vec::new();
        // SAFETY: lilv's iteration over the world's plugin collection, which lives as long as the world.
        unsafe {
            let all = (self.f.lilv_world_get_all_plugins)(self.world);
            let mut it = (self.f.lilv_plugins_begin)(all);
            while !(self.f.lilv_plugins_is_end)(all, it) {
                out.push((self.f.lilv_plugins_get)(all, it));
                it = (self.f.lilv_plugins_next)(all, it);
            }
        }
        out
    }

    /// The plugin with this URI.
    pub fn plugin(&self, uri: &str) -> Option<*const LilvPlugin> {
        let node = self.uri(uri);
        // SAFETY: the world's collection and a live URI node.
        let p = unsafe { (self.f.lilv_plugins_get_by_uri)((self.f.lilv_world_get_all_plugins)(self.world), node.p) };
        (!p.is_null()).then_some(p)
    }

    /// The strings of a node collection the caller owns, which is freed.
    ///
    /// # Safety
    /// `nodes` is null or a live collection the caller owns.
    pub unsafe fn take_strings(&self, nodes: *mut LilvNodes) -> Vec<String> {
        let mut out = Vec::new();
        if nodes.is_null() {
            return out;
        }
        // SAFETY: lilv's iteration over a live collection, freed once after.
        unsafe {
            let mut it = (self.f.lilv_nodes_begin)(nodes);
            while !(self.f.lilv_nodes_is_end)(nodes, it) {
                out.push(self.string((self.f.lilv_nodes_get)(nodes, it)));
                it = (self.f.lilv_nodes_next)(nodes, it);
            }
            (self.f.lilv_nodes_free)(nodes);
        }
        out
    }
}

/// A URI node, freed when dropped.
pub struct Node<'w> {
    w: &'w World,
    pub p: *mut LilvNode,
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        if !self.p.is_null() {
            // SAFETY: made by `lilv_new_uri`, freed once.
            unsafe { (self.w.f.lilv_node_free)(self.p) };
        }
    }
}
