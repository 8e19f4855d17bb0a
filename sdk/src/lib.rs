//! Write fxgraph native plugins in Rust: implement [`Plugin`] and call [`export_plugin!`] once.
//!
//! ```ignore
//! use fxgraph_plugin::{Channels, Config, Info, Param, Plugin, export_plugin};
//!
//! struct Gain { gain: f32 }
//!
//! impl Plugin for Gain {
//!     const INFO: Info = Info {
//!         id: c"org.example.gain", name: c"Gain", version: c"1.0.0", vendor: c"Example",
//!         params: &[Param::new(0, c"gain_db", c"Gain", c"dB", -24.0, 24.0, 0.0)],
//!         presets: &[], status: &[],
//!     };
//!     fn new(config: &Config) -> Result<Self, i32> {
//!         Ok(Gain { gain: db(config.param(0).unwrap_or(0.0)) })
//!     }
//!     fn set_param(&mut self, id: u32, value: f64) -> Result<(), i32> {
//!         if id == 0 { self.gain = db(value); Ok(()) } else { Err(fxgraph_plugin::ERR_PARAM) }
//!     }
//!     fn process(&mut self, audio: &mut Channels<'_>) {
//!         for c in 0..audio.channels() {
//!             for x in audio.channel(c) { *x *= self.gain; }
//!         }
//!     }
//! }
//! fn db(v: f64) -> f32 { 10f64.powf(v / 20.0) as f32 }
//!
//! export_plugin!(Gain);
//! ```
//!
//! Build the crate as a `cdylib`. Every call from the host runs inside `catch_unwind`: a panic becomes
//! [`ERR_PANIC`] (the host bypasses the node and replaces the instance) instead of unwinding into C, which
//! would abort the host. An instance that panicked refuses every later call.

use std::ffi::{CStr, c_char, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The C ABI, exactly as `plugins/include/fxgraph_plugin.h` declares it.
pub mod abi {
    use std::ffi::{c_char, c_void};

    pub const ABI_MAJOR: u32 = 1;
    /// 1: the descriptor may declare audio buses (ports), and the configuration gives their widths.
    pub const ABI_MINOR: u32 = 1;
    /// The exported function's name.
    pub const ENTRY_SYMBOL: &str = "fxgraph_plugin_v1";
    pub const PARAM_INTEGER: u32 = 1;
    pub const PARAM_TOGGLE: u32 = 2;
    pub const PARAM_STEPPED: u32 = 4;
    pub const FLAG_IN_PLACE: u32 = 1;
    /// An input bus that may be left unconnected (a sidechain): then it has 0 channels.
    pub const BUS_OPTIONAL: u32 = 1;

    /// One audio bus: a port of the node (ABI 1.1).
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Bus {
        /// The port's name in graph files (`"in"`, `"sidechain"`, `"out"`).
        pub name: *const c_char,
        /// Its channels; 0: the graph's. An optional input takes whatever feeds it.
        pub channels: u32,
        /// `BUS_*` flags.
        pub flags: u32,
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Param {
        pub id: u32,
        pub flags: u32,
        pub key: *const c_char,
        pub name: *const c_char,
        pub unit: *const c_char,
        pub min: f64,
        pub max: f64,
        pub default_value: f64,
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct PresetValue {
        pub param_id: u32,
        pub value: f64,
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Preset {
        pub name: *const c_char,
        pub count: u32,
        pub values: *const PresetValue,
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Config {
        pub struct_size: u32,
        pub sample_rate: u32,
        pub channels: u32,
        pub max_block: u32,
        pub param_count: u32,
        pub param_ids: *const u32,
        pub param_values: *const f64,
        /// ABI 1.1: the width of each input bus and each output bus as the graph connects them (a plugin
        /// that declares no buses gets one of each, of `channels`). A 1.0 plugin reads only the fields above.
        pub input_count: u32,
        pub input_channels: *const u32,
        pub output_count: u32,
        pub output_channels: *const u32,
    }

    pub type CreateFn = unsafe extern "C" fn() -> *mut c_void;
    pub type DestroyFn = unsafe extern "C" fn(*mut c_void);
    pub type InitializeFn = unsafe extern "C" fn(*mut c_void, *const Config) -> i32;
    pub type CallFn = unsafe extern "C" fn(*mut c_void) -> i32;
    pub type SetParamFn = unsafe extern "C" fn(*mut c_void, u32, f64) -> i32;
    pub type ProcessFn = unsafe extern "C" fn(*mut c_void, *const *const f32, *const *mut f32, u32, u32) -> i32;
    pub type StatusFn = unsafe extern "C" fn(*mut c_void, *mut f64, u32) -> i32;
    pub type LatencyFn = unsafe extern "C" fn(*mut c_void) -> u32;

    /// Function pointers are `Option`s: a null one is seen (and refused by the host) instead of being
    /// undefined behaviour.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct Descriptor {
        pub abi_major: u32,
        pub abi_minor: u32,
        pub struct_size: u32,
        pub param_size: u32,
        pub flags: u32,
        pub id: *const c_char,
        pub name: *const c_char,
        pub version: *const c_char,
        pub vendor: *const c_char,
        pub param_count: u32,
        pub params: *const Param,
        pub preset_count: u32,
        pub presets: *const Preset,
        pub status_count: u32,
        pub status_names: *const *const c_char,
        pub create: Option<CreateFn>,
        pub destroy: Option<DestroyFn>,
        pub initialize: Option<InitializeFn>,
        pub start: Option<CallFn>,
        pub stop: Option<CallFn>,
        pub set_param: Option<SetParamFn>,
        pub process: Option<ProcessFn>,
        pub reset: Option<CallFn>,
        pub status: Option<StatusFn>,
        pub health_check: Option<CallFn>,
        pub latency: Option<LatencyFn>,
        /// ABI 1.1: audio buses. None (counts 0): one input and one output of the graph's channels, as in
        /// 1.0; `process` then gets `channels` of each. With buses, `process` gets every input bus's
        /// channels in order (`channels` is their total) and writes every output bus's.
        pub input_bus_count: u32,
        pub input_buses: *const Bus,
        pub output_bus_count: u32,
        pub output_buses: *const Bus,
    }

    /// The size of an ABI 1.0 descriptor: everything before the buses.
    pub const DESCRIPTOR_1_0_SIZE: usize = std::mem::offset_of!(Descriptor, input_bus_count);

    pub type EntryFn = unsafe extern "C" fn() -> *const Descriptor;
}

pub const OK: i32 = 0;
pub const ERR_FAILED: i32 = -1;
pub const ERR_CONFIG: i32 = -2;
pub const ERR_PARAM: i32 = -3;
pub const ERR_PANIC: i32 = -100;
/// The most channels a graph has.
pub const MAX_CHANNELS: usize = 32;

/// One parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub id: u32,
    pub key: &'static CStr,
    pub name: &'static CStr,
    pub unit: &'static CStr,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub flags: u32,
}

impl Param {
    /// A smoothed numeric parameter.
    pub const fn new(
        id: u32,
        key: &'static CStr,
        name: &'static CStr,
        unit: &'static CStr,
        min: f64,
        max: f64,
        default: f64,
    ) -> Self {
        Self { id, key, name, unit, min, max, default, flags: 0 }
    }

    /// The same, with [`abi`] flags (`PARAM_INTEGER`, `PARAM_TOGGLE`, `PARAM_STEPPED`).
    pub const fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

/// A named set of parameter values.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static CStr,
    pub values: &'static [(u32, f64)],
}

/// What the plugin declares.
#[derive(Debug, Clone, Copy)]
pub struct Info {
    pub id: &'static CStr,
    pub name: &'static CStr,
    pub version: &'static CStr,
    pub vendor: &'static CStr,
    pub params: &'static [Param],
    pub presets: &'static [Preset],
    /// Names of the numbers [`Plugin::status`] reports.
    pub status: &'static [&'static CStr],
}

/// The processing configuration, with every parameter's initial value.
#[derive(Debug, Clone)]
pub struct Config {
    pub sample_rate: u32,
    pub channels: usize,
    pub max_block: usize,
    pub params: Vec<(u32, f64)>,
}

impl Config {
    /// The initial value of parameter `id`.
    pub fn param(&self, id: u32) -> Option<f64> {
        self.params.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }
}

/// The planar block a plugin processes in place.
pub struct Channels<'a> {
    ptrs: [*mut f32; MAX_CHANNELS],
    count: usize,
    frames: usize,
    _life: PhantomData<&'a mut [f32]>,
}

impl Channels<'_> {
    pub fn channels(&self) -> usize {
        self.count
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Channel `c`'s samples.
    ///
    /// # Panics
    /// If `c` is not a channel.
    pub fn channel(&mut self, c: usize) -> &mut [f32] {
        assert!(c < self.count, "channel {c} of {}", self.count);
        // SAFETY: the host gave `count` distinct buffers of `frames` samples each, valid for this call.
        unsafe { std::slice::from_raw_parts_mut(self.ptrs[c], self.frames) }
    }

    /// Two different channels at once (a stereo pair).
    ///
    /// # Panics
    /// If `a == b` or either is not a channel.
    pub fn pair(&mut self, a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
        assert!(a != b && a < self.count && b < self.count, "channels {a} and {b} of {}", self.count);
        // SAFETY: distinct buffers, as in `channel`.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.ptrs[a], self.frames),
                std::slice::from_raw_parts_mut(self.ptrs[b], self.frames),
            )
        }
    }
}

/// A native fxgraph plugin.
pub trait Plugin: Sized + Send + 'static {
    const INFO: Info;

    /// The instance for `config` (the host's `initialize`); an error code refuses the configuration.
    fn new(config: &Config) -> Result<Self, i32>;
    /// A parameter's new value (already within its declared range). Audio thread.
    fn set_param(&mut self, id: u32, value: f64) -> Result<(), i32>;
    /// Processes a block in place. Audio thread: no allocation, locks or I/O.
    fn process(&mut self, audio: &mut Channels<'_>);
    /// Clears state (delay lines, envelopes), as for a seek.
    fn reset(&mut self) {}
    /// Before the first block after `new` or `stop`; clears state by default.
    fn start(&mut self) {
        self.reset();
    }
    fn stop(&mut self) {}
    /// Fills `values` with the numbers [`Info::status`] names.
    fn status(&mut self, values: &mut [f64]) {
        let _ = values;
    }
    /// `Err(code)` when the instance is in a bad state (the host replaces it).
    fn health(&self) -> Result<(), i32> {
        Ok(())
    }
    /// Frames by which the output lags the input.
    fn latency(&self) -> u32 {
        0
    }
}

struct Instance<P> {
    plugin: Option<P>,
    poisoned: bool,
}

/// Runs `f` on the instance behind `inst`, turning a panic into [`ERR_PANIC`] (and poisoning it).
fn guard<P: Plugin>(inst: *mut c_void, f: impl FnOnce(&mut Instance<P>) -> i32) -> i32 {
    if inst.is_null() {
        return ERR_FAILED;
    }
    let inst = inst.cast::<Instance<P>>();
    // SAFETY: the host passes back the pointer `create` returned, one call at a time.
    if unsafe { (*inst).poisoned } {
        return ERR_PANIC;
    }
    // SAFETY: as above; the borrow ends with the closure.
    match catch_unwind(AssertUnwindSafe(|| f(unsafe { &mut *inst }))) {
        Ok(code) => code,
        Err(_) => {
            // SAFETY: as above.
            unsafe { (*inst).poisoned = true };
            ERR_PANIC
        }
    }
}

unsafe extern "C" fn create<P: Plugin>() -> *mut c_void {
    catch_unwind(|| Box::into_raw(Box::new(Instance::<P> { plugin: None, poisoned: false })).cast::<c_void>())
        .unwrap_or(std::ptr::null_mut())
}

unsafe extern "C" fn destroy<P: Plugin>(inst: *mut c_void) {
    if !inst.is_null() {
        // SAFETY: the pointer `create` returned, given back once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(inst.cast::<Instance<P>>()) })));
    }
}

unsafe extern "C" fn initialize<P: Plugin>(inst: *mut c_void, config: *const abi::Config) -> i32 {
    guard::<P>(inst, |i| {
        if config.is_null() {
            return ERR_CONFIG;
        }
        // SAFETY: the host passes a valid config for the duration of the call.
        let c = unsafe { &*config };
        let n = c.param_count as usize;
        let params = if n == 0 || c.param_ids.is_null() || c.param_values.is_null() {
            Vec::new()
        } else {
            // SAFETY: `param_count` ids and values, per the ABI.
            let (ids, values) =
                unsafe { (std::slice::from_raw_parts(c.param_ids, n), std::slice::from_raw_parts(c.param_values, n)) };
            ids.iter().copied().zip(values.iter().copied()).collect()
        };
        let config = Config {
            sample_rate: c.sample_rate,
            channels: c.channels as usize,
            max_block: c.max_block as usize,
            params,
        };
        if config.channels == 0 || config.channels > MAX_CHANNELS {
            return ERR_CONFIG;
        }
        match P::new(&config) {
            Ok(p) => {
                i.plugin = Some(p);
                OK
            }
            Err(code) => code,
        }
    })
}

fn with_plugin<P: Plugin>(inst: *mut c_void, f: impl FnOnce(&mut P) -> i32) -> i32 {
    guard::<P>(inst, |i| match &mut i.plugin {
        Some(p) => f(p),
        None => ERR_FAILED,
    })
}

unsafe extern "C" fn start<P: Plugin>(inst: *mut c_void) -> i32 {
    with_plugin::<P>(inst, |p| {
        p.start();
        OK
    })
}

unsafe extern "C" fn stop<P: Plugin>(inst: *mut c_void) -> i32 {
    with_plugin::<P>(inst, |p| {
        p.stop();
        OK
    })
}

unsafe extern "C" fn reset<P: Plugin>(inst: *mut c_void) -> i32 {
    with_plugin::<P>(inst, |p| {
        p.reset();
        OK
    })
}

unsafe extern "C" fn set_param<P: Plugin>(inst: *mut c_void, id: u32, value: f64) -> i32 {
    with_plugin::<P>(inst, |p| match p.set_param(id, value) {
        Ok(()) => OK,
        Err(code) => code,
    })
}

unsafe extern "C" fn process<P: Plugin>(
    inst: *mut c_void,
    inputs: *const *const f32,
    outputs: *const *mut f32,
    channels: u32,
    frames: u32,
) -> i32 {
    with_plugin::<P>(inst, |p| {
        let count = channels as usize;
        if count == 0 || count > MAX_CHANNELS || inputs.is_null() || outputs.is_null() {
            return ERR_FAILED;
        }
        let mut ptrs = [std::ptr::null_mut(); MAX_CHANNELS];
        for (c, slot) in ptrs.iter_mut().enumerate().take(count) {
            // SAFETY: `channels` input and output pointers to `frames` samples, per the ABI.
            unsafe {
                let (src, dst) = (*inputs.add(c), *outputs.add(c));
                if src.is_null() || dst.is_null() {
                    return ERR_FAILED;
                }
                if !std::ptr::eq(src, dst) {
                    std::ptr::copy(src, dst, frames as usize);
                }
                *slot = dst;
            }
        }
        p.process(&mut Channels { ptrs, count, frames: frames as usize, _life: PhantomData });
        OK
    })
}

unsafe extern "C" fn status<P: Plugin>(inst: *mut c_void, values: *mut f64, count: u32) -> i32 {
    with_plugin::<P>(inst, |p| {
        if values.is_null() {
            return ERR_FAILED;
        }
        // SAFETY: `count` doubles, per the ABI.
        p.status(unsafe { std::slice::from_raw_parts_mut(values, count as usize) });
        OK
    })
}

unsafe extern "C" fn health_check<P: Plugin>(inst: *mut c_void) -> i32 {
    with_plugin::<P>(inst, |p| match p.health() {
        Ok(()) => OK,
        Err(code) => code,
    })
}

unsafe extern "C" fn latency<P: Plugin>(inst: *mut c_void) -> u32 {
    let mut frames = 0;
    let _ = with_plugin::<P>(inst, |p| {
        frames = p.latency();
        OK
    });
    frames
}

/// The descriptor and the arrays it points into, built once per library.
pub struct Exported {
    descriptor: abi::Descriptor,
    _params: Vec<abi::Param>,
    _presets: Vec<abi::Preset>,
    _preset_values: Vec<Vec<abi::PresetValue>>,
    _status: Vec<*const c_char>,
}

// SAFETY: built once, never written after; the pointers point into itself and into `'static` data.
unsafe impl Send for Exported {}
// SAFETY: as above.
unsafe impl Sync for Exported {}

impl Exported {
    /// The descriptor for `P`. Used by [`export_plugin!`].
    pub fn new<P: Plugin>() -> Self {
        let info = P::INFO;
        let params: Vec<abi::Param> = info
            .params
            .iter()
            .map(|p| abi::Param {
                id: p.id,
                flags: p.flags,
                key: p.key.as_ptr(),
                name: p.name.as_ptr(),
                unit: p.unit.as_ptr(),
                min: p.min,
                max: p.max,
                default_value: p.default,
            })
            .collect();
        let preset_values: Vec<Vec<abi::PresetValue>> = info
            .presets
            .iter()
            .map(|p| p.values.iter().map(|&(param_id, value)| abi::PresetValue { param_id, value }).collect())
            .collect();
        let presets: Vec<abi::Preset> = info
            .presets
            .iter()
            .zip(&preset_values)
            .map(|(p, v)| abi::Preset { name: p.name.as_ptr(), count: v.len() as u32, values: v.as_ptr() })
            .collect();
        let status_names: Vec<*const c_char> = info.status.iter().map(|s| s.as_ptr()).collect();
        let descriptor = abi::Descriptor {
            abi_major: abi::ABI_MAJOR,
            abi_minor: abi::ABI_MINOR,
            struct_size: std::mem::size_of::<abi::Descriptor>() as u32,
            param_size: std::mem::size_of::<abi::Param>() as u32,
            flags: abi::FLAG_IN_PLACE,
            id: info.id.as_ptr(),
            name: info.name.as_ptr(),
            version: info.version.as_ptr(),
            vendor: info.vendor.as_ptr(),
            param_count: params.len() as u32,
            params: params.as_ptr(),
            preset_count: presets.len() as u32,
            presets: presets.as_ptr(),
            status_count: status_names.len() as u32,
            status_names: status_names.as_ptr(),
            create: Some(create::<P>),
            destroy: Some(destroy::<P>),
            initialize: Some(initialize::<P>),
            start: Some(start::<P>),
            stop: Some(stop::<P>),
            set_param: Some(set_param::<P>),
            process: Some(process::<P>),
            reset: Some(reset::<P>),
            status: Some(status::<P>),
            health_check: Some(health_check::<P>),
            latency: Some(latency::<P>),
            // An SDK plugin is an effect: one input and one output of the graph's channels.
            input_bus_count: 0,
            input_buses: std::ptr::null(),
            output_bus_count: 0,
            output_buses: std::ptr::null(),
        };
        Self { descriptor, _params: params, _presets: presets, _preset_values: preset_values, _status: status_names }
    }

    pub fn descriptor(&self) -> *const abi::Descriptor {
        &self.descriptor
    }
}

/// Exports `$plugin` (a [`Plugin`]) as this library's fxgraph plugin: defines the entry symbol
/// `fxgraph_plugin_v1`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The fxgraph native plugin entry point.
        #[unsafe(no_mangle)]
        pub extern "C" fn fxgraph_plugin_v1() -> *const $crate::abi::Descriptor {
            static EXPORTED: ::std::sync::OnceLock<$crate::Exported> = ::std::sync::OnceLock::new();
            match ::std::panic::catch_unwind(|| EXPORTED.get_or_init($crate::Exported::new::<$plugin>).descriptor()) {
                Ok(d) => d,
                Err(_) => ::std::ptr::null(),
            }
        }
    };
}
