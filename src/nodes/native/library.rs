//! Loading a native plugin library and checking its descriptor before any of its functions but the entry
//! point runs.
#![allow(unsafe_code)] // Loading a shared library and calling into it is unsafe by nature; see the SAFETY notes.

use fxgraph_plugin::abi;
use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One parameter as the plugin declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeParam {
    pub id: u32,
    pub flags: u32,
    pub key: String,
    pub name: String,
    pub unit: String,
    pub min: f64,
    pub max: f64,
    pub default: f64,
}

impl NativeParam {
    /// A control input port of a LADSPA or LV2 plugin as a parameter: its index the id, no unit, the
    /// default kept within the range, a toggle or an integer as its port says.
    pub fn control(
        index: usize,
        key: &str,
        name: &str,
        (min, max): (f64, f64),
        default: f64,
        toggled: bool,
        integer: bool,
    ) -> Self {
        let flags = if toggled {
            abi::PARAM_TOGGLE
        } else if integer {
            abi::PARAM_INTEGER
        } else {
            0
        };
        let (key, name, unit) = (key.to_string(), name.to_string(), String::new());
        Self { id: index as u32, flags, key, name, unit, min, max, default: default.clamp(min, max) }
    }

    /// Taken at once rather than ramped: integer, toggle and stepped parameters.
    pub fn stepped(&self) -> bool {
        self.flags & (abi::PARAM_INTEGER | abi::PARAM_TOGGLE | abi::PARAM_STEPPED) != 0
    }
}

/// What a plugin declares, copied out of its descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub vendor: String,
    pub abi_minor: u32,
    pub in_place: bool,
    pub params: Vec<NativeParam>,
    pub presets: Vec<(String, Vec<(u32, f64)>)>,
    pub status_names: Vec<String>,
    /// Audio buses (ABI 1.1), inputs and outputs: none for an effect.
    pub inputs: Vec<NativeBus>,
    pub outputs: Vec<NativeBus>,
}

/// One audio bus a plugin declares: a port of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeBus {
    pub name: String,
    /// 0: the graph's.
    pub channels: u32,
    /// An input that may be unconnected.
    pub optional: bool,
}

/// The descriptor's functions, all checked non-null.
#[derive(Clone, Copy)]
pub struct Fns {
    pub create: abi::CreateFn,
    pub destroy: abi::DestroyFn,
    pub initialize: abi::InitializeFn,
    pub start: abi::CallFn,
    pub stop: abi::CallFn,
    pub set_param: abi::SetParamFn,
    pub process: abi::ProcessFn,
    pub reset: abi::CallFn,
    pub status: abi::StatusFn,
    pub health_check: abi::CallFn,
    pub latency: abi::LatencyFn,
}

/// A loaded, checked native plugin library. Libraries stay loaded for the life of the process: a symbol
/// from one is never left dangling (and a Rust plugin's thread-local destructors never outlive its code).
pub struct NativeLibrary {
    pub path: PathBuf,
    pub info: NativeInfo,
    pub fns: Fns,
    _library: libloading::Library,
}

impl std::fmt::Debug for NativeLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeLibrary").field("path", &self.path).field("id", &self.info.id).finish()
    }
}

/// Loads `path` (once per process: later calls share it) and checks it.
///
/// # Errors
/// A message naming the file and the reason: not a shared library, wrong architecture, no entry symbol,
/// another ABI major version, a descriptor or parameter struct shorter than ABI 1.0's, a null function
/// pointer, malformed metadata.
pub fn load(path: &Path) -> Result<Arc<NativeLibrary>, String> {
    static LOADED: Loaded<NativeLibrary> = OnceLock::new();
    load_once(&LOADED, path, open)
}

/// Libraries of one kind loaded so far, by canonical path.
pub(crate) type Loaded<T> = OnceLock<Mutex<HashMap<PathBuf, Arc<T>>>>;

/// Opens the library at `path` once per process with `open`, and never unloads it: later calls (from any
/// graph, under any path that resolves to the same file) share it.
pub(crate) fn load_once<T>(
    loaded: &'static Loaded<T>,
    path: &Path,
    open: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<Arc<T>, String> {
    let key = path.canonicalize().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cache = loaded.get_or_init(Default::default);
    if let Some(lib) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(lib.clone());
    }
    let lib = Arc::new(open(&key).map_err(|e| format!("{}: {e}", path.display()))?);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, lib.clone());
    Ok(lib)
}

/// Reads a C string the plugin declares: required, UTF-8, at most 256 bytes, no control characters.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that lives as long as the library.
unsafe fn text(p: *const c_char, what: &str) -> Result<String, String> {
    if p.is_null() {
        return Err(format!("the descriptor's {what} is null"));
    }
    // SAFETY: per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    let s = s.to_str().map_err(|_| format!("the descriptor's {what} is not UTF-8"))?;
    if s.len() > 256 || s.chars().any(char::is_control) {
        return Err(format!("the descriptor's {what} must be at most 256 bytes without control characters"));
    }
    Ok(s.to_owned())
}

fn open(path: &Path) -> Result<NativeLibrary, String> {
    // SAFETY: loading runs the library's initializers; that is the trust a native plugin asks for, and the
    // reason `isolation: Process` exists.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load the library: {e}"))?;
    // SAFETY: the symbol's type is the ABI's entry function.
    let entry: abi::EntryFn = unsafe {
        *library.get::<abi::EntryFn>(abi::ENTRY_SYMBOL.as_bytes()).map_err(|_| {
            format!(
                "exports no `{}`: not an fxgraph native plugin (a LADSPA plugin goes in a `Ladspa` node)",
                abi::ENTRY_SYMBOL
            )
        })?
    };
    // SAFETY: the entry function takes nothing and returns a pointer, per the ABI.
    let d = unsafe { entry() };
    if d.is_null() {
        return Err(format!("`{}` returned no descriptor", abi::ENTRY_SYMBOL));
    }
    // The versions and sizes first, read field by field: a descriptor of another layout may be shorter.
    let head = d.cast::<u32>();
    // SAFETY: every ABI version starts with these four u32 fields.
    let (major, minor, size, param_size) = unsafe {
        (
            head.read_unaligned(),
            head.add(1).read_unaligned(),
            head.add(2).read_unaligned(),
            head.add(3).read_unaligned(),
        )
    };
    if major != abi::ABI_MAJOR {
        return Err(format!(
            "implements native plugin ABI {major}.{minor}; this fxgraph implements ABI {}.{}",
            abi::ABI_MAJOR,
            abi::ABI_MINOR
        ));
    }
    // A 1.0 descriptor ends before the buses; a 1.1 one that declares them must be whole.
    let (need, full) = (abi::DESCRIPTOR_1_0_SIZE, std::mem::size_of::<abi::Descriptor>());
    if (size as usize) < need || (minor >= 1 && (size as usize) < full) {
        let need = if minor >= 1 { full } else { need };
        return Err(format!("its descriptor is {size} bytes; ABI {major}.{minor} needs at least {need}"));
    }
    let need_param = std::mem::size_of::<abi::Param>();
    if (param_size as usize) < need_param {
        return Err(format!("its parameter struct is {param_size} bytes; ABI {major}.0 needs at least {need_param}"));
    }
    // SAFETY: the descriptor has at least `size.min(full)` bytes (checked above); only those are read, over a
    // zeroed descriptor (all its fields are integers, pointers and optional functions: zero is valid), so a
    // 1.0 descriptor reads as one without buses.
    let desc: abi::Descriptor = unsafe {
        let mut desc: abi::Descriptor = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(
            d.cast::<u8>(),
            std::ptr::from_mut(&mut desc).cast::<u8>(),
            (size as usize).min(full),
        );
        desc
    };
    macro_rules! func {
        ($name:ident) => {
            desc.$name.ok_or_else(|| format!("the descriptor's `{}` function is null", stringify!($name)))?
        };
    }
    let fns = Fns {
        create: func!(create),
        destroy: func!(destroy),
        initialize: func!(initialize),
        start: func!(start),
        stop: func!(stop),
        set_param: func!(set_param),
        process: func!(process),
        reset: func!(reset),
        status: func!(status),
        health_check: func!(health_check),
        latency: func!(latency),
    };
    // SAFETY (all the reads below): the descriptor's strings and arrays live as long as the library, with
    // the counts it gives; arrays are read with the strides it declares.
    // SAFETY: as above.
    let info = unsafe {
        let mut params = Vec::new();
        if desc.param_count > 1024 {
            return Err(format!("declares {} parameters (at most 1024)", desc.param_count));
        }
        if desc.param_count > 0 && desc.params.is_null() {
            return Err("the descriptor's params are null".into());
        }
        for i in 0..desc.param_count as usize {
            let p: abi::Param =
                desc.params.cast::<u8>().add(i * param_size as usize).cast::<abi::Param>().read_unaligned();
            let key = text(p.key, &format!("params[{i}].key"))?;
            let param = NativeParam {
                id: p.id,
                flags: p.flags,
                name: text(p.name, &format!("params[{i}].name"))?,
                unit: text(p.unit, &format!("params[{i}].unit"))?,
                min: p.min,
                max: p.max,
                default: p.default_value,
                key,
            };
            check_param(&param, &params)?;
            params.push(param);
        }
        let mut presets = Vec::new();
        if desc.preset_count > 256 || (desc.preset_count > 0 && desc.presets.is_null()) {
            return Err("the descriptor's presets are malformed (null, or more than 256)".into());
        }
        for i in 0..desc.preset_count as usize {
            let p = desc.presets.add(i).read_unaligned();
            let name = text(p.name, &format!("presets[{i}].name"))?;
            if p.count > 1024 || (p.count > 0 && p.values.is_null()) {
                return Err(format!("preset \"{name}\" is malformed"));
            }
            let mut values = Vec::new();
            for j in 0..p.count as usize {
                let v = p.values.add(j).read_unaligned();
                let param = params
                    .iter()
                    .find(|x: &&NativeParam| x.id == v.param_id)
                    .ok_or(format!("preset \"{name}\" sets parameter id {}, which is not declared", v.param_id))?;
                if !(v.value.is_finite() && (param.min..=param.max).contains(&v.value)) {
                    return Err(format!("preset \"{name}\" sets {} to {}, outside its range", param.key, v.value));
                }
                values.push((v.param_id, v.value));
            }
            presets.push((name, values));
        }
        let mut status_names = Vec::new();
        if desc.status_count as usize > crate::node::STATUS_VALUES
            || (desc.status_count > 0 && desc.status_names.is_null())
        {
            return Err(format!(
                "declares {} status values (at most {})",
                desc.status_count,
                crate::node::STATUS_VALUES
            ));
        }
        for i in 0..desc.status_count as usize {
            status_names.push(text(desc.status_names.add(i).read_unaligned(), &format!("status_names[{i}]"))?);
        }
        let buses = |count: u32, at: *const abi::Bus, what: &str| -> Result<Vec<NativeBus>, String> {
            if count as usize > crate::node::MAX_PORTS || (count > 0 && at.is_null()) {
                return Err(format!(
                    "the descriptor's {what} are malformed (null, or more than {})",
                    crate::node::MAX_PORTS
                ));
            }
            let mut out: Vec<NativeBus> = Vec::new();
            for i in 0..count as usize {
                let b = at.add(i).read_unaligned();
                let name = text(b.name, &format!("{what}[{i}].name"))?;
                out.push(NativeBus { name, channels: b.channels, optional: b.flags & abi::BUS_OPTIONAL != 0 });
            }
            Ok(out)
        };
        let inputs = buses(desc.input_bus_count, desc.input_buses, "input_buses")?;
        let outputs = buses(desc.output_bus_count, desc.output_buses, "output_buses")?;
        fn spec(b: &NativeBus) -> crate::nodes::plugin::BusSpec<'_> {
            (b.name.as_str(), b.channels, b.optional)
        }
        let (ins, outs): (Vec<_>, Vec<_>) = (inputs.iter().map(spec).collect(), outputs.iter().map(spec).collect());
        crate::nodes::plugin::check_buses(&ins, &outs, |output, i| {
            format!("{}[{i}]", if output { "output_buses" } else { "input_buses" })
        })?;
        NativeInfo {
            inputs,
            outputs,
            id: text(desc.id, "id")?,
            name: text(desc.name, "name")?,
            version: text(desc.version, "version")?,
            vendor: text(desc.vendor, "vendor")?,
            abi_minor: minor,
            in_place: desc.flags & abi::FLAG_IN_PLACE != 0,
            params,
            presets,
            status_names,
        }
    };
    Ok(NativeLibrary { path: path.to_path_buf(), info, fns, _library: library })
}

fn check_param(p: &NativeParam, before: &[NativeParam]) -> Result<(), String> {
    if p.key.is_empty() || p.key.chars().any(char::is_whitespace) {
        return Err(format!("parameter key {:?} must be non-empty, without spaces", p.key));
    }
    if before.iter().any(|q| q.id == p.id) {
        return Err(format!("parameter id {} is declared twice", p.id));
    }
    if before.iter().any(|q| q.key == p.key) {
        return Err(format!("parameter key `{}` is declared twice", p.key));
    }
    if !(p.min.is_finite() && p.max.is_finite() && p.min <= p.max) {
        return Err(format!("parameter `{}`: its range {} to {} is not a finite interval", p.key, p.min, p.max));
    }
    if !(p.min..=p.max).contains(&p.default) {
        return Err(format!("parameter `{}`: its default {} is outside {} to {}", p.key, p.default, p.min, p.max));
    }
    Ok(())
}
