//! Loading a CLAP bundle (`clap_entry`, its plugin factory) and reading what one of its plugins declares:
//! audio ports, parameters, latency and extensions, from an instance made and destroyed for the purpose.
#![allow(unsafe_code)] // CLAP is a C ABI; see the SAFETY notes.

use super::host::Host;
use crate::nodes::native::ladspa::{key_of, unique_name};
use crate::nodes::native::library::NativeParam;
use clap_sys::entry::clap_plugin_entry;
use clap_sys::ext::audio_ports::{
    CLAP_AUDIO_PORT_IS_MAIN, CLAP_EXT_AUDIO_PORTS, clap_audio_port_info, clap_plugin_audio_ports,
};
use clap_sys::ext::params::{
    CLAP_EXT_PARAMS, CLAP_PARAM_IS_ENUM, CLAP_PARAM_IS_HIDDEN, CLAP_PARAM_IS_READONLY, CLAP_PARAM_IS_STEPPED,
    clap_param_info, clap_plugin_params,
};
use clap_sys::factory::plugin_factory::{CLAP_PLUGIN_FACTORY_ID, clap_plugin_factory};
use clap_sys::plugin::clap_plugin;
use clap_sys::version::clap_version_is_compatible;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A loaded CLAP bundle, initialized once and kept loaded for the life of the process (CLAP's `init` and
/// `deinit` come in one pair per process).
pub struct ClapLibrary {
    pub path: PathBuf,
    entry: *const clap_plugin_entry,
    factory: *const clap_plugin_factory,
    /// The plugins in it: (id, name).
    pub plugins: Vec<(String, String)>,
    _library: libloading::Library,
}

// SAFETY: the entry and factory are the bundle's statics, thread-safe by CLAP's rules.
unsafe impl Send for ClapLibrary {}
// SAFETY: as above: the factory may be called from any thread.
unsafe impl Sync for ClapLibrary {}

/// The bundle at `path`, loaded and initialized once per process.
///
/// # Errors
/// A message if it is not a CLAP bundle, its version is incompatible, or its `init` fails.
pub fn load(path: &Path) -> Result<Arc<ClapLibrary>, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<ClapLibrary>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(l) = cache.get(&key) {
        return Ok(l.clone());
    }
    let lib = Arc::new(ClapLibrary::open(&key)?);
    cache.insert(key, lib.clone());
    Ok(lib)
}

impl ClapLibrary {
    fn open(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        // SAFETY: loading a shared library runs its constructors; that is what loading a plugin means.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load {shown}: {e}"))?;
        // SAFETY: `clap_entry` is a data symbol of type `clap_plugin_entry` in every CLAP bundle.
        let entry: *const clap_plugin_entry = unsafe {
            *library
                .get::<*const clap_plugin_entry>(b"clap_entry\0")
                .map_err(|_| format!("{shown} is not a CLAP plugin (no clap_entry symbol)"))?
        };
        // SAFETY: the symbol's address, checked non-null before it is read.
        let e = unsafe { entry.as_ref() }.ok_or_else(|| format!("{shown}: clap_entry is null"))?;
        if !clap_version_is_compatible(e.clap_version) {
            let v = e.clap_version;
            return Err(format!(
                "{shown} is CLAP {}.{}.{}, which fxgraph (CLAP 1.x) cannot host",
                v.major, v.minor, v.revision
            ));
        }
        let (Some(init), Some(get_factory)) = (e.init, e.get_factory) else {
            return Err(format!("{shown}: clap_entry lacks init or get_factory"));
        };
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| format!("{shown}: bad path"))?;
        // SAFETY: CLAP's entry init with the bundle's path, once per process (this cache).
        if !unsafe { init(c_path.as_ptr()) } {
            return Err(format!("{shown}: the plugin's init failed"));
        }
        // SAFETY: after init, the factory by its id.
        let factory = unsafe { get_factory(CLAP_PLUGIN_FACTORY_ID.as_ptr()) }.cast::<clap_plugin_factory>();
        // SAFETY: null or the bundle's factory.
        let f = unsafe { factory.as_ref() }.ok_or_else(|| format!("{shown} has no plugin factory"))?;
        let (Some(count), Some(get), Some(_)) = (f.get_plugin_count, f.get_plugin_descriptor, f.create_plugin) else {
            return Err(format!("{shown}: its plugin factory lacks a function"));
        };
        let mut plugins = Vec::new();
        // SAFETY: the factory's functions on its own indices; descriptors are the bundle's statics.
        unsafe {
            for i in 0..count(factory) {
                if let Some(d) = get(factory, i).as_ref() {
                    plugins.push((cstr(d.id), cstr(d.name)));
                }
            }
        }
        // CLAP's `process` must be real-time safe: the bundle's heap calls in it are counted.
        if let Err(e) = crate::nodes::native::rtwatch::watch(path) {
            tracing::warn!("{shown}: its heap calls cannot be watched: {e}");
        }
        Ok(Self { path: path.to_path_buf(), entry, factory, plugins, _library: library })
    }

    /// Creates and initializes plugin `id` for `host` (the control side, which is its main thread).
    ///
    /// # Errors
    /// A message if the factory makes none or `init` fails.
    pub(super) fn create(&self, id: &str, host: &Host) -> Result<*const clap_plugin, String> {
        let _ = self.entry;
        let c_id = CString::new(id).map_err(|_| format!("bad plugin id {id:?}"))?;
        // SAFETY: checked non-null at load.
        let f = unsafe { &*self.factory };
        let create = f.create_plugin.ok_or("no create_plugin")?;
        // SAFETY: the factory's create with a host that outlives the plugin (the caller keeps it).
        let plugin = unsafe { create(self.factory, host.as_clap(), c_id.as_ptr()) };
        // SAFETY: null or the plugin's struct, valid until destroy.
        let Some(p) = (unsafe { plugin.as_ref() }) else {
            return Err(format!("{}: the factory made no plugin {id:?}", self.path.display()));
        };
        host.plugin.store(plugin.cast_mut(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: CLAP's init, once, on the main thread; a plugin that fails it is destroyed.
        let ok = unsafe { p.init.is_some_and(|init| init(plugin)) };
        if !ok {
            // SAFETY: destroy after a failed init is allowed.
            unsafe { destroy(plugin) };
            return Err(format!("{id}: the plugin's init failed"));
        }
        if let Some(pool) = extension::<clap_sys::ext::thread_pool::clap_plugin_thread_pool>(
            plugin,
            clap_sys::ext::thread_pool::CLAP_EXT_THREAD_POOL,
        ) {
            host.pool.store(pool.cast_mut(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(plugin)
    }
}

/// Destroys a plugin.
///
/// # Safety
/// `plugin` is a live plugin (deactivated), not used after this.
pub(super) unsafe fn destroy(plugin: *const clap_plugin) {
    // SAFETY: per the contract.
    unsafe {
        if let Some(d) = (*plugin).destroy {
            d(plugin);
        }
    }
}

/// The plugin's extension `id`, if it has it.
pub(super) fn extension<T>(plugin: *const clap_plugin, id: &CStr) -> Option<*const T> {
    // SAFETY: a live plugin; `get_extension` may be called from any thread.
    unsafe {
        let get = (*plugin).get_extension?;
        let e = get(plugin, id.as_ptr());
        (!e.is_null()).then_some(e.cast::<T>())
    }
}

/// A C string the plugin owns, copied (empty for null).
fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: CLAP's strings are NUL-terminated.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A fixed-size CLAP name field, copied.
fn name_of(field: &[c_char]) -> String {
    let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One audio port: a bus of the node.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioPort {
    /// The node's name for it: `in`/`out` for the main ports, `sidechain`, else the port's name as a key.
    pub name: String,
    /// The plugin's name for it.
    pub label: String,
    pub channels: usize,
    pub main: bool,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub id: u32,
    /// Its name as a key (`set NODE.KEY`, presets).
    pub key: String,
    pub name: String,
    pub module: String,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub flags: u32,
}

impl Param {
    pub fn readonly(&self) -> bool {
        self.flags & CLAP_PARAM_IS_READONLY != 0
    }
}

/// What a CLAP plugin declares.
#[derive(Debug, Clone)]
pub struct ClapInfo {
    pub library: Arc<ClapLibrary>,
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub version: String,
    pub inputs: Vec<AudioPort>,
    pub outputs: Vec<AudioPort>,
    /// Every parameter the plugin lists but hidden ones; read-only ones are status numbers.
    pub params: Vec<Param>,
    /// The extensions it has, of those fxgraph uses.
    pub extensions: Vec<String>,
}

impl std::fmt::Debug for ClapLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClapLibrary").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ClapInfo {
    /// Reads plugin `id` of `library` from an instance made for the purpose (control side).
    ///
    /// # Errors
    /// A message if the plugin cannot be made or declares no audio output.
    pub fn read(library: Arc<ClapLibrary>, id: &str) -> Result<Self, String> {
        if !library.plugins.iter().any(|(i, _)| i == id) {
            let known: Vec<&str> = library.plugins.iter().map(|(i, _)| i.as_str()).collect();
            return Err(format!(
                "{} has no CLAP plugin {id:?} (it has: {})",
                library.path.display(),
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ));
        }
        let host = Host::new();
        let plugin = library.create(id, &host)?;
        // SAFETY: a live plugin; its descriptor lives as long as the bundle.
        let d = unsafe { &*(*plugin).desc };
        let mut info = Self {
            library: library.clone(),
            id: id.to_string(),
            name: cstr(d.name),
            vendor: cstr(d.vendor),
            version: cstr(d.version),
            inputs: Vec::new(),
            outputs: Vec::new(),
            params: Vec::new(),
            extensions: Vec::new(),
        };
        for ext in [
            CLAP_EXT_AUDIO_PORTS,
            CLAP_EXT_PARAMS,
            clap_sys::ext::latency::CLAP_EXT_LATENCY,
            clap_sys::ext::state::CLAP_EXT_STATE,
            clap_sys::ext::thread_pool::CLAP_EXT_THREAD_POOL,
        ] {
            if extension::<u8>(plugin, ext).is_some() {
                info.extensions.push(ext.to_string_lossy().into_owned());
            }
        }
        if let Some(ports) = extension::<clap_plugin_audio_ports>(plugin, CLAP_EXT_AUDIO_PORTS) {
            for input in [true, false] {
                let mut list: Vec<AudioPort> = Vec::new();
                // SAFETY: the plugin's audio-ports extension on its main thread, on its own indices.
                unsafe {
                    let (Some(count), Some(get)) = ((*ports).count, (*ports).get) else { continue };
                    for i in 0..count(plugin, input) {
                        let mut p: clap_audio_port_info = std::mem::zeroed();
                        if !get(plugin, i, input, &mut p) {
                            continue;
                        }
                        let label = name_of(&p.name);
                        let main = p.flags & CLAP_AUDIO_PORT_IS_MAIN != 0;
                        let name = if main && list.iter().all(|q| !q.main) {
                            (if input { "in" } else { "out" }).to_string()
                        } else if input && label.to_ascii_lowercase().contains("side") {
                            "sidechain".to_string()
                        } else {
                            key_of(&label)
                        };
                        let unique = unique_name(&name, |n| list.iter().any(|q| q.name == n));
                        list.push(AudioPort { name: unique, label, channels: p.channel_count as usize, main });
                    }
                }
                if input { info.inputs = list } else { info.outputs = list }
            }
        }
        if let Some(params) = extension::<clap_plugin_params>(plugin, CLAP_EXT_PARAMS) {
            // SAFETY: the plugin's params extension on its main thread, on its own indices.
            unsafe {
                if let (Some(count), Some(get)) = ((*params).count, (*params).get_info) {
                    for i in 0..count(plugin) {
                        let mut p: clap_param_info = std::mem::zeroed();
                        if !get(plugin, i, &mut p) || p.flags & CLAP_PARAM_IS_HIDDEN != 0 {
                            continue;
                        }
                        let name = name_of(&p.name);
                        let base = key_of(&name);
                        let base = if base.is_empty() { format!("param_{}", p.id) } else { base };
                        let key = unique_name(&base, |k| info.params.iter().any(|q| q.key == k));
                        info.params.push(Param {
                            id: p.id,
                            key,
                            name,
                            module: name_of(&p.module),
                            min: p.min_value,
                            max: p.max_value,
                            default: p.default_value,
                            flags: p.flags,
                        });
                    }
                }
            }
        }
        // SAFETY: made above, never activated.
        unsafe { destroy(plugin) };
        if info.outputs.iter().all(|p| p.channels == 0) {
            return Err(format!("{id} has no audio output"));
        }
        Ok(info)
    }

    /// The parameters the node sets (not read-only ones), as native parameters: id the CLAP id.
    pub fn settable(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| !p.readonly())
    }

    /// The read-only parameters: the node's status numbers (the first eight).
    pub fn readouts(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.readonly()).take(crate::node::STATUS_VALUES)
    }

    pub fn native_params(&self) -> Vec<NativeParam> {
        self.settable()
            .map(|p| {
                let stepped = p.flags & (CLAP_PARAM_IS_STEPPED | CLAP_PARAM_IS_ENUM) != 0;
                let toggle = stepped && p.min == 0.0 && p.max == 1.0;
                let mut n =
                    NativeParam::control(0, &p.key, &p.name, (p.min, p.max), p.default, toggle, stepped && !toggle);
                n.id = p.id;
                n
            })
            .collect()
    }

    /// Input and output channels, all ports together.
    pub fn channels(&self) -> (usize, usize) {
        (self.inputs.iter().map(|p| p.channels).sum(), self.outputs.iter().map(|p| p.channels).sum())
    }
}
