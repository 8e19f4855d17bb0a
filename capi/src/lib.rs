//! fxgraph's C API: an engine made from a graph file or RON text, driven from C, C++, Go or any language
//! that calls C. `include/fxgraph.h` is generated from this file by cbindgen (`capi/cbindgen.toml`); the
//! header's opening comment is the threading contract, and `capi/ABI.md` the versioning rules.
//!
//! Two handles, as in the Rust API: an [`FxgraphEngine`] for the control side (graph, parameters,
//! presets, metrics, messages) and an [`FxgraphAudio`] for the audio side (processing). Every function
//! returns an [`FxgraphStatus`]; no panic crosses the boundary. Handles carry a magic number and a busy
//! flag, so a freed handle, a handle of the other side, and two threads using one handle at once are
//! refused with a status rather than followed.
//!
//! Each destroyed handle leaves 24 bytes behind (its magic number, now "freed"), so that a call with it
//! afterwards is detected rather than undefined.

#![allow(clippy::missing_safety_doc)] // The safety contract of every function is in its header comment.

use fxgraph::node::{Message, ParamValue};
use fxgraph::{AudioProcessor, Engine, EngineOptions, Error, Graph, RawAudio};
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts allocations, so that a program can check that the audio side allocates nothing
/// ([`fxgraph_alloc_stats`]), as fxgraph's own tests do.
#[global_allocator]
static ALLOC: fxgraph::alloc::CountingAllocator = fxgraph::alloc::CountingAllocator;

/// The ABI's major version: changed by a change that breaks existing callers (see `capi/ABI.md`).
pub const FXGRAPH_ABI_MAJOR: u32 = 1;
/// The ABI's minor version: changed by additions that existing callers do not notice.
pub const FXGRAPH_ABI_MINOR: u32 = 0;

/// What a call did: `FXGRAPH_OK` (0) or one of the negative `FXGRAPH_ERR_*` codes.
pub type FxgraphStatus = i32;
/// Done.
pub const FXGRAPH_OK: FxgraphStatus = 0;
/// A pointer the call needs was NULL.
pub const FXGRAPH_ERR_NULL: FxgraphStatus = -1;
/// Not a handle, or one already freed.
pub const FXGRAPH_ERR_INVALID_HANDLE: FxgraphStatus = -2;
/// A handle of the other side: an audio handle given to a control call, or the reverse.
pub const FXGRAPH_ERR_WRONG_SIDE: FxgraphStatus = -3;
/// The handle is in use by another call right now (another thread, or a message callback calling back).
/// Nothing was done; each side's calls must come one at a time.
pub const FXGRAPH_ERR_BUSY: FxgraphStatus = -4;
/// An argument out of its range: a length, a channel count, overlapping buffers, text that is not UTF-8,
/// options out of range.
pub const FXGRAPH_ERR_ARGUMENT: FxgraphStatus = -5;
/// A graph file or text that is not valid; the message names the file, line, column and node.
pub const FXGRAPH_ERR_GRAPH: FxgraphStatus = -6;
/// No node of the graph has this name.
pub const FXGRAPH_ERR_NO_SUCH_NODE: FxgraphStatus = -7;
/// The node has no parameter of this name.
pub const FXGRAPH_ERR_NO_SUCH_PARAM: FxgraphStatus = -8;
/// A value the parameter does not take (out of range, of the wrong type, not one of its choices).
pub const FXGRAPH_ERR_BAD_VALUE: FxgraphStatus = -9;
/// A preset that cannot be read or does not fit the graph.
pub const FXGRAPH_ERR_PRESET: FxgraphStatus = -10;
/// A node that cannot be built or started (a plugin that refuses, a library that cannot be loaded).
pub const FXGRAPH_ERR_NODE: FxgraphStatus = -11;
/// The text does not fit the buffer given; `*needed` holds the bytes it needs (with the final NUL).
pub const FXGRAPH_ERR_BUFFER_TOO_SMALL: FxgraphStatus = -12;
/// fxgraph failed inside (a panic, caught at the boundary). The handle is unusable from then on, except
/// to be freed.
pub const FXGRAPH_ERR_PANIC: FxgraphStatus = -13;
/// Any other error (a file that cannot be read, a graph edit that cannot be compiled); see the message.
pub const FXGRAPH_ERR_OTHER: FxgraphStatus = -14;

/// The control side of an engine: the graph, its parameters and presets, metrics and messages.
/// Opaque; made by `fxgraph_engine_new_from_file` or `fxgraph_engine_new_from_ron`.
pub struct FxgraphEngine {
    _opaque: [u8; 0],
}

/// The audio side of an engine: processing. Opaque; made with its engine.
pub struct FxgraphAudio {
    _opaque: [u8; 0],
}

/// How an engine runs. Fill it with `fxgraph_options_default`, then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FxgraphOptions {
    /// `sizeof(FxgraphOptions)`, set by `fxgraph_options_default`: lets later versions add fields.
    pub struct_size: u32,
    /// The rate to prepare the graph at (the device's), or 0 for the graph's own.
    pub sample_rate: u32,
    /// The largest block nodes are called with (512); a call of more frames is cut into blocks.
    pub max_block: u32,
    /// Threads that process the graph's parallel branches (1: the calling thread alone).
    pub threads: u32,
    /// 1: plugins have a deadline in wall-clock time, as under a device; 0: offline, a plugin is charged
    /// only the CPU time it uses (for rendering files).
    pub realtime: u32,
    /// 1: the monitor measures per-node time and levels (the metrics); 0: off.
    pub monitor: u32,
    /// The cross-fade of a graph swap, in milliseconds (0 to 1000).
    pub crossfade_ms: f64,
}

/// What the counting allocator has seen in this process (every allocation made by fxgraph's library).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FxgraphAllocStats {
    /// Bytes ever allocated.
    pub allocated_total: u64,
    /// Bytes allocated and not yet freed.
    pub live: u64,
    /// Allocation calls.
    pub calls: u64,
    /// Allocations, reallocations and frees made by the audio side's work (inside the process calls and
    /// on the worker threads): 0 is the contract.
    pub audio_calls: u64,
}

/// Called with each message from the graph's nodes, on the control side, during the control call that
/// received it (`fxgraph_update` and the calls that update). `kind` is "log" (`code`: the plugin's
/// level, 0 error to 4 trace), "event" (`code`: the plugin's event code), "fault" (the node faulted and is
/// bypassed) or "dropped" (`code`: messages the node could not keep). `text` is the plugin's text as it
/// gave it (untrusted: escape it before showing it). The strings are valid during the call only.
pub type FxgraphMessageCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        node: *const c_char,
        kind: *const c_char,
        code: i64,
        text: *const c_char,
    ),
>;

const ENGINE_MAGIC: u64 = 0x4658_4752_4150_4845; // "FXGRAPHE"
const AUDIO_MAGIC: u64 = 0x4658_4752_4150_4841; // "FXGRAPHA"
const FREED_MAGIC: u64 = 0x4658_4752_4150_4846; // "FXGRAPHF"

/// What a handle points to: its magic number first (read before anything else), a busy flag that keeps
/// calls one at a time, and the side's state (gone once freed; the shell stays).
#[repr(C)]
struct Handle<T> {
    magic: AtomicU64,
    busy: AtomicBool,
    poisoned: AtomicBool,
    inner: UnsafeCell<Option<Box<T>>>,
}

/// A handle's type: its magic number and the other side's.
trait Side: Sized {
    const MAGIC: u64;
    const OTHER: u64;
}

/// The control side's state.
struct Control {
    engine: Engine,
    /// The last failed call's message.
    last_error: String,
    /// Messages not yet handed over (no callback is registered).
    pending: Vec<Message>,
    callback: FxgraphMessageCallback,
    user_data: *mut c_void,
}

impl Side for Control {
    const MAGIC: u64 = ENGINE_MAGIC;
    const OTHER: u64 = AUDIO_MAGIC;
}

impl Side for AudioProcessor {
    const MAGIC: u64 = AUDIO_MAGIC;
    const OTHER: u64 = ENGINE_MAGIC;
}

// The engine moves between the threads a program calls from (Go moves goroutines between threads).
const _: () = {
    const fn send<T: Send>() {}
    send::<Engine>();
    send::<AudioProcessor>();
};

/// Clears the busy flag when a call ends, however it ends.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs `f` with the state behind handle `p`, after checking the handle: not NULL, of this side, not
/// freed, not in use; and catches a panic.
///
/// # Safety
/// `p` is NULL, or points to at least 8 readable bytes (a handle this library made, freed or not, is).
unsafe fn with<T: Side>(p: *const c_void, f: impl FnOnce(&mut T) -> FxgraphStatus) -> FxgraphStatus {
    if p.is_null() {
        return FXGRAPH_ERR_NULL;
    }
    if !p.cast::<AtomicU64>().is_aligned() {
        return FXGRAPH_ERR_INVALID_HANDLE;
    }
    // SAFETY: the contract: eight readable bytes (aligned, checked above), which in a handle are its magic
    // number.
    let magic = unsafe { &*p.cast::<AtomicU64>() }.load(Ordering::Acquire);
    if magic != T::MAGIC {
        return if magic == T::OTHER { FXGRAPH_ERR_WRONG_SIDE } else { FXGRAPH_ERR_INVALID_HANDLE };
    }
    // SAFETY: the magic number says this is a live handle of this side, which this library made.
    let h = unsafe { &*p.cast::<Handle<T>>() };
    if h.busy.swap(true, Ordering::Acquire) {
        return FXGRAPH_ERR_BUSY;
    }
    let _release = Release(&h.busy);
    if h.poisoned.load(Ordering::Relaxed) {
        return FXGRAPH_ERR_PANIC;
    }
    // SAFETY: the busy flag is ours: no other call reaches the state until it is released.
    let Some(state) = (unsafe { &mut *h.inner.get() }).as_deref_mut() else {
        return FXGRAPH_ERR_INVALID_HANDLE;
    };
    match catch_unwind(AssertUnwindSafe(|| f(state))) {
        Ok(status) => status,
        Err(_) => {
            h.poisoned.store(true, Ordering::Relaxed);
            FXGRAPH_ERR_PANIC
        }
    }
}

/// Frees the state behind handle `p` and marks the handle freed.
///
/// # Safety
/// As [`with`].
unsafe fn free<T: Side>(p: *const c_void) -> FxgraphStatus {
    if p.is_null() {
        return FXGRAPH_OK;
    }
    if !p.cast::<AtomicU64>().is_aligned() {
        return FXGRAPH_ERR_INVALID_HANDLE;
    }
    // SAFETY: as in `with`.
    let magic = unsafe { &*p.cast::<AtomicU64>() }.load(Ordering::Acquire);
    if magic != T::MAGIC {
        return if magic == T::OTHER { FXGRAPH_ERR_WRONG_SIDE } else { FXGRAPH_ERR_INVALID_HANDLE };
    }
    // SAFETY: as in `with`.
    let h = unsafe { &*p.cast::<Handle<T>>() };
    if h.busy.swap(true, Ordering::Acquire) {
        return FXGRAPH_ERR_BUSY;
    }
    // Freed for good: the flag stays set, and the magic number now says so.
    h.magic.store(FREED_MAGIC, Ordering::Release);
    // SAFETY: the busy flag is ours, for good.
    let state = unsafe { &mut *h.inner.get() }.take();
    match catch_unwind(AssertUnwindSafe(move || drop(state))) {
        Ok(()) => FXGRAPH_OK,
        Err(_) => FXGRAPH_ERR_PANIC,
    }
}

/// A new handle holding `state`.
fn handle<T: Side>(state: T) -> *mut c_void {
    let h = Box::new(Handle {
        magic: AtomicU64::new(T::MAGIC),
        busy: AtomicBool::new(false),
        poisoned: AtomicBool::new(false),
        inner: UnsafeCell::new(Some(Box::new(state))),
    });
    Box::into_raw(h).cast()
}

/// The status for an error of fxgraph's.
fn status_of(e: &Error) -> FxgraphStatus {
    match e {
        Error::Graph(_) => FXGRAPH_ERR_GRAPH,
        Error::Preset(_) => FXGRAPH_ERR_PRESET,
        Error::NoSuchNode(_) => FXGRAPH_ERR_NO_SUCH_NODE,
        Error::NoSuchParam { .. } => FXGRAPH_ERR_NO_SUCH_PARAM,
        Error::BadValue { .. } => FXGRAPH_ERR_BAD_VALUE,
        Error::Node { .. } | Error::Plugin(_) => FXGRAPH_ERR_NODE,
        Error::Options(_) => FXGRAPH_ERR_ARGUMENT,
        _ => FXGRAPH_ERR_OTHER,
    }
}

/// Copies `text` and a final NUL into `buf` (`len` bytes) if it fits, and its size with the NUL into
/// `*needed` (if not NULL). NUL bytes inside the text become spaces.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes; `needed` is NULL or valid for a write.
unsafe fn write_text(text: &str, buf: *mut c_char, len: usize, needed: *mut usize) -> FxgraphStatus {
    let size = text.len() + 1;
    if !needed.is_null() {
        // SAFETY: the contract.
        unsafe { needed.write(size) };
    }
    if buf.is_null() || len < size {
        return if buf.is_null() && len > 0 { FXGRAPH_ERR_NULL } else { FXGRAPH_ERR_BUFFER_TOO_SMALL };
    }
    // SAFETY: the contract, and `size <= len`.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), size) };
    for (o, &b) in out.iter_mut().zip(text.as_bytes()) {
        *o = if b == 0 { b' ' } else { b };
    }
    out[size - 1] = 0;
    FXGRAPH_OK
}

/// The UTF-8 text of a C string argument.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char) -> Result<&'a str, FxgraphStatus> {
    if s.is_null() {
        return Err(FXGRAPH_ERR_NULL);
    }
    // SAFETY: the contract.
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| FXGRAPH_ERR_ARGUMENT)
}

/// Runs a control call that may fail with fxgraph's error: keeps the message for
/// `fxgraph_last_error`.
fn control(
    engine: *mut FxgraphEngine,
    f: impl FnOnce(&mut Control) -> Result<FxgraphStatus, (FxgraphStatus, String)>,
) -> FxgraphStatus {
    // SAFETY: a handle argument is a handle or NULL (the functions' contract).
    unsafe {
        with::<Control>(engine.cast(), |c| match f(c) {
            Ok(status) => {
                c.last_error.clear();
                status
            }
            Err((status, message)) => {
                c.last_error = message;
                status
            }
        })
    }
}

/// The node and parameter name arguments of a parameter call.
///
/// # Safety
/// Each is NULL or a NUL-terminated string.
unsafe fn node_param<'a>(
    node: *const c_char,
    param: *const c_char,
) -> Result<(&'a str, &'a str), (FxgraphStatus, String)> {
    // SAFETY: the contract.
    let node = unsafe { text(node) }.map_err(|s| bad_arg(s, "node"))?;
    // SAFETY: the contract.
    let param = unsafe { text(param) }.map_err(|s| bad_arg(s, "param"))?;
    Ok((node, param))
}

/// An error of fxgraph's as a status and its message.
fn failed(e: Error) -> (FxgraphStatus, String) {
    (status_of(&e), e.to_string())
}

/// An argument's error as a status and a message.
fn bad_arg(status: FxgraphStatus, what: &str) -> (FxgraphStatus, String) {
    let why = match status {
        FXGRAPH_ERR_NULL => "is NULL",
        _ => "is not UTF-8 text",
    };
    (status, format!("argument `{what}` {why}"))
}

impl Control {
    /// Updates the engine and hands its new messages to the callback, or keeps them.
    fn update(&mut self) {
        let messages = self.engine.messages();
        match self.callback {
            Some(cb) => deliver(cb, self.user_data, messages),
            None => {
                self.pending.extend(messages);
                let extra = self.pending.len().saturating_sub(1024);
                self.pending.drain(..extra);
            }
        }
    }
}

/// Calls a message callback with each of `messages`.
fn deliver(
    cb: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, i64, *const c_char),
    user_data: *mut c_void,
    messages: Vec<Message>,
) {
    use fxgraph::node::MessageKind;
    for m in messages {
        let cstr = |s: &str| std::ffi::CString::new(s.replace('\0', " ")).unwrap_or_default();
        let (kind, code) = match m.kind {
            MessageKind::Log(level) => ("log\0", i64::from(level)),
            MessageKind::Event(code) => ("event\0", i64::from(code)),
            MessageKind::Fault => ("fault\0", 0),
            MessageKind::Dropped(n) => ("dropped\0", n as i64),
        };
        let (node, text) = (cstr(&m.node), cstr(m.text.raw()));
        // SAFETY: the caller registered the callback for this; the strings (`kind` with its NUL) live for
        // the call.
        unsafe { cb(user_data, node.as_ptr(), kind.as_ptr().cast(), code, text.as_ptr()) };
    }
}

// --- Versions and options ---------------------------------------------------------------------------

/// The ABI's version: `FXGRAPH_ABI_MAJOR << 16 | FXGRAPH_ABI_MINOR` of the library actually loaded. A
/// program built against major version M works with a library whose major version is M and whose minor
/// version is at least the one it was built against. Any thread.
#[no_mangle]
pub extern "C" fn fxgraph_abi_version() -> u32 {
    (FXGRAPH_ABI_MAJOR << 16) | FXGRAPH_ABI_MINOR
}

/// fxgraph's version, as text ("0.1.0"); a static string. Any thread.
#[no_mangle]
pub extern "C" fn fxgraph_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The name of a status code ("FXGRAPH_ERR_BUSY"), a static string; "unknown" for any other number.
/// Any thread.
#[no_mangle]
pub extern "C" fn fxgraph_status_name(status: FxgraphStatus) -> *const c_char {
    let name: &'static str = match status {
        FXGRAPH_OK => "FXGRAPH_OK\0",
        FXGRAPH_ERR_NULL => "FXGRAPH_ERR_NULL\0",
        FXGRAPH_ERR_INVALID_HANDLE => "FXGRAPH_ERR_INVALID_HANDLE\0",
        FXGRAPH_ERR_WRONG_SIDE => "FXGRAPH_ERR_WRONG_SIDE\0",
        FXGRAPH_ERR_BUSY => "FXGRAPH_ERR_BUSY\0",
        FXGRAPH_ERR_ARGUMENT => "FXGRAPH_ERR_ARGUMENT\0",
        FXGRAPH_ERR_GRAPH => "FXGRAPH_ERR_GRAPH\0",
        FXGRAPH_ERR_NO_SUCH_NODE => "FXGRAPH_ERR_NO_SUCH_NODE\0",
        FXGRAPH_ERR_NO_SUCH_PARAM => "FXGRAPH_ERR_NO_SUCH_PARAM\0",
        FXGRAPH_ERR_BAD_VALUE => "FXGRAPH_ERR_BAD_VALUE\0",
        FXGRAPH_ERR_PRESET => "FXGRAPH_ERR_PRESET\0",
        FXGRAPH_ERR_NODE => "FXGRAPH_ERR_NODE\0",
        FXGRAPH_ERR_BUFFER_TOO_SMALL => "FXGRAPH_ERR_BUFFER_TOO_SMALL\0",
        FXGRAPH_ERR_PANIC => "FXGRAPH_ERR_PANIC\0",
        FXGRAPH_ERR_OTHER => "FXGRAPH_ERR_OTHER\0",
        _ => "unknown\0",
    };
    name.as_ptr().cast()
}

/// Fills `*options` with the defaults: the graph's rate, blocks of 512, one thread, realtime, monitor
/// on, a 20 ms cross-fade. Any thread.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_options_default(options: *mut FxgraphOptions) -> FxgraphStatus {
    if options.is_null() {
        return FXGRAPH_ERR_NULL;
    }
    let d = EngineOptions::default();
    let o = FxgraphOptions {
        struct_size: std::mem::size_of::<FxgraphOptions>() as u32,
        sample_rate: 0,
        max_block: d.max_block as u32,
        threads: d.threads as u32,
        realtime: u32::from(d.realtime),
        monitor: u32::from(d.monitor),
        crossfade_ms: d.crossfade_ms,
    };
    // SAFETY: the contract: a pointer to an `FxgraphOptions`.
    unsafe { options.write(o) };
    FXGRAPH_OK
}

/// The counting allocator's figures now. Any thread.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_alloc_stats(stats: *mut FxgraphAllocStats) -> FxgraphStatus {
    if stats.is_null() {
        return FXGRAPH_ERR_NULL;
    }
    let s = fxgraph::alloc::CountingAllocator::stats().unwrap_or(fxgraph::alloc::AllocStats {
        allocated_total: 0,
        live: 0,
        calls: 0,
        audio_calls: 0,
    });
    let out = FxgraphAllocStats {
        allocated_total: s.allocated_total,
        live: s.live,
        calls: s.calls,
        audio_calls: s.audio_calls,
    };
    // SAFETY: the contract.
    unsafe { stats.write(out) };
    FXGRAPH_OK
}

// --- Creating and freeing ----------------------------------------------------------------------------

/// Builds an engine from `graph` and hands out its two handles, or writes the error.
///
/// # Safety
/// As the `fxgraph_engine_new_*` functions.
unsafe fn create(
    graph: impl FnOnce() -> Result<Graph, Error>,
    options: *const FxgraphOptions,
    engine: *mut *mut FxgraphEngine,
    audio: *mut *mut FxgraphAudio,
    error: *mut c_char,
    error_len: usize,
) -> FxgraphStatus {
    let fail = |status: FxgraphStatus, message: &str| {
        // SAFETY: the contract of the calling function.
        unsafe { write_text(message, error, error_len, std::ptr::null_mut()) };
        status
    };
    if engine.is_null() || audio.is_null() {
        return fail(FXGRAPH_ERR_NULL, "the engine and audio handle pointers must not be NULL");
    }
    let mut opts = EngineOptions::default();
    if !options.is_null() {
        // SAFETY: the contract: NULL or an `FxgraphOptions` filled by `fxgraph_options_default` first,
        // whose first field is its size.
        let size = unsafe { options.cast::<u32>().read() } as usize;
        if size < std::mem::size_of::<FxgraphOptions>() {
            return fail(
                FXGRAPH_ERR_ARGUMENT,
                "options.struct_size is too small: fill the options with fxgraph_options_default",
            );
        }
        // SAFETY: as above, and at least this version's size.
        let o = unsafe { options.read() };
        opts.sample_rate = (o.sample_rate != 0).then_some(o.sample_rate);
        opts.max_block = o.max_block as usize;
        opts.threads = o.threads as usize;
        opts.realtime = o.realtime != 0;
        opts.monitor = o.monitor != 0;
        opts.crossfade_ms = o.crossfade_ms;
    }
    let made = catch_unwind(AssertUnwindSafe(|| {
        let graph = graph()?;
        Engine::new(graph, opts)
    }));
    match made {
        Ok(Ok((e, a))) => {
            let control = Control {
                engine: e,
                last_error: String::new(),
                pending: Vec::new(),
                callback: None,
                user_data: std::ptr::null_mut(),
            };
            // SAFETY: the contract: both are valid for a write.
            unsafe {
                engine.write(handle(control).cast());
                audio.write(handle(a).cast());
            }
            // No error: an empty message.
            fail(FXGRAPH_OK, "")
        }
        Ok(Err(e)) => fail(status_of(&e), &e.to_string()),
        Err(_) => fail(FXGRAPH_ERR_PANIC, "fxgraph failed inside (a panic) while building the engine"),
    }
}

/// Makes an engine from the graph file at `path` (relative paths in it are relative to its folder).
/// On success, `*engine` and `*audio` hold the two handles (free each with its free function) and
/// `error` an empty string; on failure, `error` holds the message, as the `fxgraph` command prints it
/// (for a bad graph: file, line, column, node and what is wrong), cut to `error_len` bytes with its NUL.
/// `options` may be NULL for the defaults; `error` may be NULL. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_engine_new_from_file(
    path: *const c_char,
    options: *const FxgraphOptions,
    engine: *mut *mut FxgraphEngine,
    audio: *mut *mut FxgraphAudio,
    error: *mut c_char,
    error_len: usize,
) -> FxgraphStatus {
    // SAFETY: the contract.
    let path = match unsafe { text(path) } {
        Ok(p) => p,
        Err(status) => {
            // SAFETY: the contract.
            unsafe { write_text("argument `path` is NULL or not UTF-8", error, error_len, std::ptr::null_mut()) };
            return status;
        }
    };
    // SAFETY: the contract, passed on.
    unsafe { create(|| Ok(Graph::load(Path::new(path))?), options, engine, audio, error, error_len) }
}

/// Makes an engine from graph text in RON. `name` is the file name messages give (NULL: `"<text>"`);
/// relative paths in the graph are relative to `base_dir` (NULL: the current folder). Otherwise as
/// `fxgraph_engine_new_from_file`. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_engine_new_from_ron(
    ron: *const c_char,
    name: *const c_char,
    base_dir: *const c_char,
    options: *const FxgraphOptions,
    engine: *mut *mut FxgraphEngine,
    audio: *mut *mut FxgraphAudio,
    error: *mut c_char,
    error_len: usize,
) -> FxgraphStatus {
    // SAFETY: the contract: three strings or NULL.
    let args = unsafe {
        (
            text(ron),
            if name.is_null() { Ok("<text>") } else { text(name) },
            if base_dir.is_null() { Ok(".") } else { text(base_dir) },
        )
    };
    let (Ok(ron), Ok(name), Ok(base_dir)) = args else {
        // SAFETY: the contract.
        unsafe {
            write_text("argument `ron` is NULL, or an argument is not UTF-8", error, error_len, std::ptr::null_mut())
        };
        return if args.0.is_err() { FXGRAPH_ERR_NULL } else { FXGRAPH_ERR_ARGUMENT };
    };
    let graph = || Ok(Graph::parse(ron, name, Path::new(base_dir))?);
    // SAFETY: the contract, passed on.
    unsafe { create(graph, options, engine, audio, error, error_len) }
}

/// Frees the control side. NULL is ignored. Afterwards the handle is refused
/// (`FXGRAPH_ERR_INVALID_HANDLE`), by this function too. The audio handle stays usable (it then plays the
/// last graph it was given, and parameters no longer change). Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_engine_free(engine: *mut FxgraphEngine) -> FxgraphStatus {
    // SAFETY: a handle or NULL (the contract).
    unsafe { free::<Control>(engine.cast()) }
}

/// Frees the audio side, with the graph it holds. NULL is ignored. Call it once no thread processes with
/// it; it frees memory, so it is not an audio-side call. Any thread.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_audio_free(audio: *mut FxgraphAudio) -> FxgraphStatus {
    // SAFETY: a handle or NULL (the contract).
    unsafe { free::<AudioProcessor>(audio.cast()) }
}

// --- The audio side ----------------------------------------------------------------------------------

/// Whether two buffers of `a_len` and `b_len` bytes overlap without being the same buffer.
fn overlap(a: *const u8, a_len: usize, b: *const u8, b_len: usize) -> bool {
    let (a, b) = (a as usize, b as usize);
    a != b && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

/// Checks an interleaved call's arguments and processes it.
///
/// # Safety
/// As the `fxgraph_process_interleaved_*` functions.
unsafe fn interleaved<T>(
    audio: *mut FxgraphAudio,
    input: *const T,
    output: *mut T,
    frames: usize,
    channels: u32,
    raw: fn(*mut T, usize) -> RawAudio,
) -> FxgraphStatus {
    let channels = channels as usize;
    let Some(bytes) = frames.checked_mul(channels).and_then(|n| n.checked_mul(std::mem::size_of::<T>())) else {
        return FXGRAPH_ERR_ARGUMENT;
    };
    if channels == 0 || bytes > isize::MAX as usize {
        return FXGRAPH_ERR_ARGUMENT;
    }
    if frames > 0 && (input.is_null() || output.is_null()) {
        return FXGRAPH_ERR_NULL;
    }
    if overlap(input.cast(), bytes, output.cast(), bytes) {
        return FXGRAPH_ERR_ARGUMENT;
    }
    // SAFETY: a handle or NULL (the contract).
    unsafe {
        with::<AudioProcessor>(audio.cast(), |a| {
            if frames > 0 {
                // SAFETY: the contract: `frames` frames of `channels` samples at each, and the two are the
                // same buffer or apart (checked above).
                a.process_raw(raw(input.cast_mut(), channels), raw(output, channels), frames);
            }
            FXGRAPH_OK
        })
    }
}

/// Processes `frames` frames of interleaved `float` audio, `channels` samples a frame, from `input` to
/// `output`. `input == output` processes in place; any other overlap is `FXGRAPH_ERR_ARGUMENT`.
/// Channels beyond the graph's are ignored on input and silent on output; missing ones are silence.
/// Any frame count: a call is cut into blocks as needed. Non-finite input samples become silence (and
/// are counted in the metrics). Audio side: allocates, frees, locks and waits for nothing.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_process_interleaved_f32(
    audio: *mut FxgraphAudio,
    input: *const f32,
    output: *mut f32,
    frames: usize,
    channels: u32,
) -> FxgraphStatus {
    // SAFETY: the contract, passed on.
    unsafe {
        interleaved(audio, input, output, frames, channels, |ptr, channels| RawAudio::Interleaved { ptr, channels })
    }
}

/// As `fxgraph_process_interleaved_f32`, for interleaved `double` audio: Go's `[][2]float64` with
/// `channels` 2, processed in place with no copy. The graph runs in `float`: input samples are rounded
/// to `float`, and output samples are `float` values exactly, so the result is bit for bit what the `f32`
/// call gives for the rounded input. Audio side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_process_interleaved_f64(
    audio: *mut FxgraphAudio,
    input: *const f64,
    output: *mut f64,
    frames: usize,
    channels: u32,
) -> FxgraphStatus {
    // SAFETY: the contract, passed on.
    unsafe {
        interleaved(audio, input, output, frames, channels, |ptr, channels| RawAudio::InterleavedF64 { ptr, channels })
    }
}

/// Processes `frames` frames of planar `float` audio: `input[c]` for each of `input_channels` channels,
/// `output[c]` for each of `output_channels`. Processing in place (`input[c] == output[c]`) is allowed;
/// any other overlap between an input and an output channel is `FXGRAPH_ERR_ARGUMENT`. Otherwise as
/// `fxgraph_process_interleaved_f32`. Audio side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_process_planar_f32(
    audio: *mut FxgraphAudio,
    input: *const *const f32,
    input_channels: u32,
    output: *const *mut f32,
    output_channels: u32,
    frames: usize,
) -> FxgraphStatus {
    let (ic, oc) = (input_channels as usize, output_channels as usize);
    let Some(bytes) = frames.checked_mul(4).filter(|&b| b <= isize::MAX as usize) else {
        return FXGRAPH_ERR_ARGUMENT;
    };
    if frames > 0 {
        if (ic > 0 && input.is_null()) || (oc > 0 && output.is_null()) {
            return FXGRAPH_ERR_NULL;
        }
        // SAFETY: the contract: `input_channels` and `output_channels` pointers.
        let (ins, outs) = unsafe {
            (
                if ic > 0 { std::slice::from_raw_parts(input, ic) } else { &[] },
                if oc > 0 { std::slice::from_raw_parts(output, oc) } else { &[] },
            )
        };
        if ins.iter().any(|p| p.is_null()) || outs.iter().any(|p| p.is_null()) {
            return FXGRAPH_ERR_NULL;
        }
        // In place means channel for channel; outputs must also be apart from each other.
        for (j, &o) in outs.iter().enumerate() {
            let clash_in = ins.iter().enumerate().any(|(i, &p)| {
                (i != j || p != o.cast_const()) && (p == o.cast_const() || overlap(p.cast(), bytes, o.cast(), bytes))
            });
            let clash_out = outs[..j].iter().any(|&p| p == o || overlap(p.cast(), bytes, o.cast(), bytes));
            if clash_in || clash_out {
                return FXGRAPH_ERR_ARGUMENT;
            }
        }
    }
    // SAFETY: a handle or NULL (the contract).
    unsafe {
        with::<AudioProcessor>(audio.cast(), |a| {
            if frames > 0 {
                let input = RawAudio::Planes { planes: input.cast(), channels: ic };
                let output = RawAudio::Planes { planes: output.cast(), channels: oc };
                // SAFETY: the contract: `frames` samples at each pointer, checked apart above (or the same
                // channel in place). In place, the plan reads a run's input before it writes its output.
                a.process_raw(input, output, frames);
            }
            FXGRAPH_OK
        })
    }
}

/// The graph's input and output channels (all its inputs' together, and all its outputs'), and the
/// largest block. Any of the pointers may be NULL. Audio side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_audio_channels(
    audio: *mut FxgraphAudio,
    input_channels: *mut u32,
    output_channels: *mut u32,
    max_block: *mut u32,
) -> FxgraphStatus {
    // SAFETY: a handle or NULL (the contract).
    unsafe {
        with::<AudioProcessor>(audio.cast(), |a| {
            for (p, v) in [
                (input_channels, a.input_channels()),
                (output_channels, a.output_channels()),
                (max_block, a.max_block()),
            ] {
                if !p.is_null() {
                    // SAFETY: the contract: NULL or valid for a write.
                    p.write(v as u32);
                }
            }
            FXGRAPH_OK
        })
    }
}

/// The latency of the graph playing now, in frames (the output lags the input by this much), and the
/// frames processed so far (the clock `fxgraph_set_at` schedules against). Either may be NULL. Audio side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_audio_position(
    audio: *mut FxgraphAudio,
    latency_frames: *mut u64,
    frames_processed: *mut u64,
) -> FxgraphStatus {
    // SAFETY: a handle or NULL (the contract).
    unsafe {
        with::<AudioProcessor>(audio.cast(), |a| {
            a.take_messages();
            if !latency_frames.is_null() {
                // SAFETY: the contract: NULL or valid for a write.
                latency_frames.write(a.latency_frames() as u64);
            }
            if !frames_processed.is_null() {
                // SAFETY: as above.
                frames_processed.write(a.frame());
            }
            FXGRAPH_OK
        })
    }
}

/// Clears every node's state (delay lines, envelopes, filter memories), for a seek. Audio side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_audio_reset(audio: *mut FxgraphAudio) -> FxgraphStatus {
    // SAFETY: a handle or NULL (the contract).
    unsafe {
        with::<AudioProcessor>(audio.cast(), |a| {
            a.reset();
            FXGRAPH_OK
        })
    }
}

// --- The control side --------------------------------------------------------------------------------

/// The message of the last control call on this engine that failed (empty after one that succeeded),
/// as `fxgraph_engine_new_from_file` writes it. `buf` may be NULL with `len` 0 to learn the size into
/// `*needed` (which may be NULL). Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_last_error(
    engine: *mut FxgraphEngine,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> FxgraphStatus {
    // SAFETY: a handle or NULL (the contract); then the buffers' contract.
    unsafe { with::<Control>(engine.cast(), |c| write_text(&c.last_error, buf, len, needed)) }
}

/// Runs the control systems once: sends edits to the audio side, takes what it sent back (messages,
/// retired objects, requests for replacement plugin instances), finishes graph swaps, and calls the
/// message callback. Call it regularly (every 10 to 100 ms while audio plays). Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_update(engine: *mut FxgraphEngine) -> FxgraphStatus {
    control(engine, |c| {
        c.update();
        Ok(FXGRAPH_OK)
    })
}

/// Sets parameter `param` of node `node` (`"threshold_db"`, `"bands[1].gain_db"`) to a number, with the
/// validation and smoothing of the Rust API's `Engine::set`: sent to the audio side at once.
/// `FXGRAPH_ERR_NO_SUCH_NODE`, `FXGRAPH_ERR_NO_SUCH_PARAM` or `FXGRAPH_ERR_BAD_VALUE` change nothing.
/// Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_set(
    engine: *mut FxgraphEngine,
    node: *const c_char,
    param: *const c_char,
    value: f64,
) -> FxgraphStatus {
    // SAFETY: the contract: strings or NULL.
    let names = unsafe { node_param(node, param) };
    control(engine, |c| {
        let (node, param) = names?;
        c.engine.set(node, param, value).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// As `fxgraph_set`, for a parameter that takes one of a list of names (a filter's `"type"`), or a
/// number written as text. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_set_text(
    engine: *mut FxgraphEngine,
    node: *const c_char,
    param: *const c_char,
    value: *const c_char,
) -> FxgraphStatus {
    // SAFETY: the contract: strings or NULL.
    let (names, value) = unsafe { (node_param(node, param), text(value)) };
    control(engine, |c| {
        let (node, param) = names?;
        let value = value.map_err(|s| bad_arg(s, "value"))?;
        let value = match value.trim().parse::<f64>() {
            Ok(v) => ParamValue::Number(v),
            Err(_) => ParamValue::Text(value.to_owned()),
        };
        c.engine.set(node, param, value).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// As `fxgraph_set`, taking effect at frame `frame` of the audio side's clock (sample-accurately; at
/// once if that frame has passed). Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_set_at(
    engine: *mut FxgraphEngine,
    node: *const c_char,
    param: *const c_char,
    value: f64,
    frame: u64,
) -> FxgraphStatus {
    // SAFETY: the contract: strings or NULL.
    let names = unsafe { node_param(node, param) };
    control(engine, |c| {
        let (node, param) = names?;
        c.engine.set_at(node, param, value, frame).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// The current value of a parameter: a number, or for a parameter with named choices the index of the
/// current one (see `fxgraph_get_text` for its name). Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_get(
    engine: *mut FxgraphEngine,
    node: *const c_char,
    param: *const c_char,
    value: *mut f64,
) -> FxgraphStatus {
    // SAFETY: the contract: strings or NULL.
    let names = unsafe { node_param(node, param) };
    control(engine, |c| {
        let (node, param) = names?;
        if value.is_null() {
            return Err(bad_arg(FXGRAPH_ERR_NULL, "value"));
        }
        let v = match c.engine.get(node, param).map_err(failed)? {
            ParamValue::Number(v) => v,
            ParamValue::Text(t) => {
                let params = c.engine.params(node).map_err(failed)?;
                let choices = params.iter().find(|p| p.name == param).and_then(|p| p.choices.as_ref());
                choices.and_then(|ch| ch.iter().position(|x| *x == t)).map_or(f64::NAN, |i| i as f64)
            }
        };
        // SAFETY: the contract: valid for a write.
        unsafe { value.write(v) };
        Ok(FXGRAPH_OK)
    })
}

/// The current value of a parameter as text (a number as Rust prints it, or a choice's name), into
/// `buf` as `fxgraph_last_error` writes. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_get_text(
    engine: *mut FxgraphEngine,
    node: *const c_char,
    param: *const c_char,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> FxgraphStatus {
    // SAFETY: the contract: strings or NULL.
    let names = unsafe { node_param(node, param) };
    control(engine, |c| {
        let (node, param) = names?;
        let text = match c.engine.get(node, param).map_err(failed)? {
            ParamValue::Number(v) => v.to_string(),
            ParamValue::Text(t) => t,
        };
        // SAFETY: the buffers' contract.
        Ok(unsafe { write_text(&text, buf, len, needed) })
    })
}

/// A JSON text into `buf`, as `fxgraph_last_error` writes.
fn json_out(
    engine: *mut FxgraphEngine,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
    f: impl FnOnce(&mut Control) -> Result<serde_json::Value, (FxgraphStatus, String)>,
) -> FxgraphStatus {
    control(engine, |c| {
        let value = f(c)?;
        // SAFETY: the buffers' contract (of the calling function).
        Ok(unsafe { write_text(&value.to_string(), buf, len, needed) })
    })
}

/// The graph's nodes, in file order, and each one's parameters, as JSON:
/// `[{"node": "comp", "params": [{"name": "threshold_db", "unit": "dB", "min": -60, "max": 0,
/// "value": -18, "choices": null}, ...]}, ...]`, written as `fxgraph_last_error` writes. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_params_json(
    engine: *mut FxgraphEngine,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> FxgraphStatus {
    json_out(engine, buf, len, needed, |c| {
        let mut nodes = Vec::new();
        for node in c.engine.node_names() {
            let mut params = Vec::new();
            for p in c.engine.params(&node).map_err(failed)? {
                let value = match c.engine.get(&node, &p.name).map_err(failed)? {
                    ParamValue::Number(v) => serde_json::json!(v),
                    ParamValue::Text(t) => serde_json::json!(t),
                };
                params.push(serde_json::json!({
                    "name": p.name, "unit": p.unit, "min": p.min, "max": p.max, "value": value, "choices": p.choices,
                }));
            }
            nodes.push(serde_json::json!({ "node": node, "params": params }));
        }
        Ok(serde_json::Value::Array(nodes))
    })
}

/// Applies preset `name` (a file `presets/NAME.ron` beside the graph): its values are set as
/// `fxgraph_set` sets them. `FXGRAPH_ERR_PRESET` for a preset that is missing or does not fit; nothing
/// changes then. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_apply_preset(engine: *mut FxgraphEngine, name: *const c_char) -> FxgraphStatus {
    // SAFETY: the contract: a string or NULL.
    let name = unsafe { text(name) };
    control(engine, |c| {
        let name = name.map_err(|s| bad_arg(s, "name"))?;
        c.engine.apply_preset(name).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// Loads the graph file at `path` in place of the one playing: the nodes that stay keep their state, and
/// the audio side cross-fades from the old graph to the new one while it plays (finished by the following
/// `fxgraph_update` calls). The new graph must have the same channels in and out. A bad graph is
/// `FXGRAPH_ERR_GRAPH` and the old one plays on. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_load_file(engine: *mut FxgraphEngine, path: *const c_char) -> FxgraphStatus {
    // SAFETY: the contract: a string or NULL.
    let path = unsafe { text(path) };
    control(engine, |c| {
        let path = path.map_err(|s| bad_arg(s, "path"))?;
        c.engine.load(Path::new(path)).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// As `fxgraph_load_file`, for graph text in RON (`name` and `base_dir` as for
/// `fxgraph_engine_new_from_ron`). Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_load_ron(
    engine: *mut FxgraphEngine,
    ron: *const c_char,
    name: *const c_char,
    base_dir: *const c_char,
) -> FxgraphStatus {
    // SAFETY: the contract: strings or NULL.
    let args = unsafe {
        (
            text(ron),
            if name.is_null() { Ok("<text>") } else { text(name) },
            if base_dir.is_null() { Ok(".") } else { text(base_dir) },
        )
    };
    control(engine, |c| {
        let ron = args.0.map_err(|s| bad_arg(s, "ron"))?;
        let name = args.1.map_err(|s| bad_arg(s, "name"))?;
        let base_dir = args.2.map_err(|s| bad_arg(s, "base_dir"))?;
        c.engine.apply_str(ron, name, Path::new(base_dir)).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// Bypasses node `node` (`on` non-zero: its input passes through, delayed by its latency so the graph's
/// stays the same) or brings it back (`on` 0), cross-faded. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_bypass(engine: *mut FxgraphEngine, node: *const c_char, on: i32) -> FxgraphStatus {
    // SAFETY: the contract: a string or NULL.
    let node = unsafe { text(node) };
    control(engine, |c| {
        let node = node.map_err(|s| bad_arg(s, "node"))?;
        c.engine.bypass(node, on != 0).map_err(failed)?;
        Ok(FXGRAPH_OK)
    })
}

/// The graph's format and latency: its sample rate, its output channels, and the frames by which its
/// output lags its input (as compiled on the control side; the audio side's figure follows once it
/// has taken the new graph). Any pointer may be NULL. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_format(
    engine: *mut FxgraphEngine,
    sample_rate: *mut u32,
    channels: *mut u32,
    latency_frames: *mut u64,
) -> FxgraphStatus {
    control(engine, |c| {
        let format = c.engine.format();
        // SAFETY: the contract: each NULL or valid for a write.
        unsafe {
            if !sample_rate.is_null() {
                sample_rate.write(format.sample_rate);
            }
            if !channels.is_null() {
                channels.write(format.channels as u32);
            }
            if !latency_frames.is_null() {
                latency_frames.write(c.engine.latency_frames() as u64);
            }
        }
        Ok(FXGRAPH_OK)
    })
}

/// The monitor's report as JSON (the fields of `fxgraph render --json`'s `metrics`: per-node timing and
/// faults, DSP load, levels, memory), written as `fxgraph_last_error` writes. Updates first. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_metrics_json(
    engine: *mut FxgraphEngine,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> FxgraphStatus {
    json_out(engine, buf, len, needed, |c| {
        c.update();
        serde_json::to_value(c.engine.metrics()).map_err(|e| (FXGRAPH_ERR_OTHER, e.to_string()))
    })
}

/// The node messages received since the last call (plugin log lines and events, faults) as a JSON array
/// of `{"node", "source", "kind", "text"}`, written as `fxgraph_last_error` writes; updates first. When
/// the buffer is too small, the messages are kept for the next call. With a message callback registered,
/// messages go to it instead and this gives `[]`. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_messages_json(
    engine: *mut FxgraphEngine,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> FxgraphStatus {
    control(engine, |c| {
        c.update();
        let json = serde_json::to_string(&c.pending).map_err(|e| (FXGRAPH_ERR_OTHER, e.to_string()))?;
        // SAFETY: the buffers' contract.
        let status = unsafe { write_text(&json, buf, len, needed) };
        if status == FXGRAPH_OK {
            c.pending.clear();
        }
        Ok(status)
    })
}

/// Registers `callback` (NULL: none) to be called with each node message, with `user_data`, on the
/// thread of the control call that receives it (`fxgraph_update`, `fxgraph_metrics_json`). A callback
/// that calls this engine's functions gets `FXGRAPH_ERR_BUSY`. Messages kept before it was registered
/// are handed to it at the next update. Control side.
#[no_mangle]
pub unsafe extern "C" fn fxgraph_set_message_callback(
    engine: *mut FxgraphEngine,
    callback: FxgraphMessageCallback,
    user_data: *mut c_void,
) -> FxgraphStatus {
    control(engine, |c| {
        c.callback = callback;
        c.user_data = user_data;
        if let Some(cb) = callback {
            deliver(cb, user_data, std::mem::take(&mut c.pending));
        }
        Ok(FXGRAPH_OK)
    })
}
