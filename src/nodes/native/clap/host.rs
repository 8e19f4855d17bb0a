//! The host a CLAP plugin sees: `clap_host` and the extensions fxgraph gives it (thread-check, thread-pool,
//! log, params, latency, state), one per plugin instance, at an address that stays put while it lives.
#![allow(unsafe_code)] // CLAP is a C ABI; see the SAFETY notes.

use clap_sys::ext::latency::{CLAP_EXT_LATENCY, clap_host_latency};
use clap_sys::ext::log::{CLAP_EXT_LOG, CLAP_LOG_ERROR, clap_host_log, clap_log_severity};
use clap_sys::ext::params::{CLAP_EXT_PARAMS, clap_host_params, clap_param_clear_flags, clap_param_rescan_flags};
use clap_sys::ext::state::{CLAP_EXT_STATE, clap_host_state};
use clap_sys::ext::thread_check::{CLAP_EXT_THREAD_CHECK, clap_host_thread_check};
use clap_sys::ext::thread_pool::{CLAP_EXT_THREAD_POOL, clap_host_thread_pool, clap_plugin_thread_pool};
use clap_sys::host::clap_host;
use clap_sys::plugin::clap_plugin;
use clap_sys::version::CLAP_VERSION;
use std::cell::Cell;
use std::ffi::{CStr, c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

thread_local! {
    /// Set while this thread runs one of a plugin's audio-thread functions (`start_processing`,
    /// `process`, `reset`, `stop_processing`): what `is_audio_thread` answers, and when `request_exec` may
    /// run the plugin's tasks.
    static AUDIO: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as the plugin's audio thread.
pub(super) fn as_audio<R>(f: impl FnOnce() -> R) -> R {
    let was = AUDIO.with(|a| a.replace(true));
    let r = f();
    AUDIO.with(|a| a.set(was));
    r
}

/// What a plugin asked of the host, counted for the node to report.
#[derive(Debug, Default)]
pub(super) struct Requests {
    pub restart: AtomicBool,
    pub callback: AtomicBool,
    pub latency_changed: AtomicBool,
    pub rescan: AtomicBool,
    /// Log messages at error severity or worse.
    pub errors: AtomicU32,
    /// Log messages sent from the audio thread (counted, not printed: printing is I/O).
    pub audio_logs: AtomicU32,
}

/// One plugin instance's host. `host` comes first: CLAP hands the plugin `&host`, and the callbacks turn
/// it back into `&Host`.
#[repr(C)]
pub(super) struct Host {
    host: clap_host,
    /// The thread that made the plugin: CLAP's main thread for it.
    main: libc::pthread_t,
    /// The plugin, once created (the thread-pool runs its tasks).
    pub plugin: AtomicPtr<clap_plugin>,
    /// Its thread-pool extension, looked up after `init`.
    pub pool: AtomicPtr<clap_plugin_thread_pool>,
    pub requests: Requests,
}

// SAFETY: the raw pointers are the host's own statics and the plugin's, used as CLAP's thread rules say.
unsafe impl Send for Host {}
// SAFETY: what a plugin may call from any thread touches atomics only.
unsafe impl Sync for Host {}

impl Host {
    /// A host for a plugin made on this thread.
    pub(super) fn new() -> Box<Self> {
        let mut h = Box::new(Self {
            host: clap_host {
                clap_version: CLAP_VERSION,
                host_data: std::ptr::null_mut(),
                name: c"fxgraph".as_ptr(),
                vendor: c"fxgraph".as_ptr(),
                url: c"https://github.com/fxgraph/fxgraph".as_ptr(),
                version: c"0.1.0".as_ptr(),
                get_extension: Some(get_extension),
                request_restart: Some(request_restart),
                request_process: Some(request_process),
                request_callback: Some(request_callback),
            },
            // SAFETY: pthread_self has no preconditions.
            main: unsafe { libc::pthread_self() },
            plugin: AtomicPtr::new(std::ptr::null_mut()),
            pool: AtomicPtr::new(std::ptr::null_mut()),
            requests: Requests::default(),
        });
        h.host.host_data = std::ptr::from_mut(&mut *h).cast();
        h
    }

    /// What the plugin is given.
    pub(super) fn as_clap(&self) -> *const clap_host {
        &self.host
    }
}

/// # Safety
/// `host` is a `clap_host` fxgraph made (the first field of a live [`Host`]).
unsafe fn host_of<'a>(host: *const clap_host) -> Option<&'a Host> {
    if host.is_null() {
        return None;
    }
    // SAFETY: per the contract, `host_data` points at the `Host` that holds it.
    unsafe { (*host).host_data.cast::<Host>().as_ref() }
}

static THREAD_CHECK: clap_host_thread_check =
    clap_host_thread_check { is_main_thread: Some(is_main_thread), is_audio_thread: Some(is_audio_thread) };
static THREAD_POOL: clap_host_thread_pool = clap_host_thread_pool { request_exec: Some(request_exec) };
static LOG: clap_host_log = clap_host_log { log: Some(log) };
static PARAMS: clap_host_params =
    clap_host_params { rescan: Some(params_rescan), clear: Some(params_clear), request_flush: Some(request_process) };
static LATENCY: clap_host_latency = clap_host_latency { changed: Some(latency_changed) };
static STATE: clap_host_state = clap_host_state { mark_dirty: Some(request_process) };

unsafe extern "C" fn get_extension(_host: *const clap_host, id: *const c_char) -> *const c_void {
    if id.is_null() {
        return std::ptr::null();
    }
    // SAFETY: CLAP passes a NUL-terminated id.
    let id = unsafe { CStr::from_ptr(id) };
    let ext: *const c_void = if id == CLAP_EXT_THREAD_CHECK {
        std::ptr::from_ref(&THREAD_CHECK).cast()
    } else if id == CLAP_EXT_THREAD_POOL {
        std::ptr::from_ref(&THREAD_POOL).cast()
    } else if id == CLAP_EXT_LOG {
        std::ptr::from_ref(&LOG).cast()
    } else if id == CLAP_EXT_PARAMS {
        std::ptr::from_ref(&PARAMS).cast()
    } else if id == CLAP_EXT_LATENCY {
        std::ptr::from_ref(&LATENCY).cast()
    } else if id == CLAP_EXT_STATE {
        std::ptr::from_ref(&STATE).cast()
    } else {
        std::ptr::null()
    };
    ext
}

unsafe extern "C" fn request_restart(host: *const clap_host) {
    // SAFETY: a host fxgraph made.
    if let Some(h) = unsafe { host_of(host) } {
        h.requests.restart.store(true, Ordering::Relaxed);
    }
}

/// fxgraph processes every block whatever the plugin asks: nothing to do.
unsafe extern "C" fn request_process(_host: *const clap_host) {}

unsafe extern "C" fn request_callback(host: *const clap_host) {
    // SAFETY: a host fxgraph made.
    if let Some(h) = unsafe { host_of(host) } {
        h.requests.callback.store(true, Ordering::Relaxed);
    }
}

unsafe extern "C" fn is_main_thread(host: *const clap_host) -> bool {
    // SAFETY: a host fxgraph made; pthread calls without preconditions.
    unsafe { host_of(host) }
        .is_some_and(|h| !AUDIO.with(Cell::get) && unsafe { libc::pthread_equal(h.main, libc::pthread_self()) } != 0)
}

unsafe extern "C" fn is_audio_thread(_host: *const clap_host) -> bool {
    AUDIO.with(Cell::get)
}

/// Runs the plugin's tasks one after another on the calling audio thread: the same bits whatever the
/// machine, no thread woken, nothing allocated. Refused off the audio thread, as CLAP says.
unsafe extern "C" fn request_exec(host: *const clap_host, num_tasks: u32) -> bool {
    // SAFETY: a host fxgraph made.
    let Some(h) = (unsafe { host_of(host) }) else { return false };
    if !AUDIO.with(Cell::get) {
        return false;
    }
    let (plugin, pool) = (h.plugin.load(Ordering::Relaxed), h.pool.load(Ordering::Relaxed));
    // SAFETY: the plugin's own thread-pool extension, called from inside its `process`.
    let Some(exec) = (unsafe { pool.as_ref() }).and_then(|p| p.exec) else { return false };
    for task in 0..num_tasks {
        // SAFETY: as above.
        unsafe { exec(plugin, task) };
    }
    true
}

unsafe extern "C" fn log(host: *const clap_host, severity: clap_log_severity, msg: *const c_char) {
    // SAFETY: a host fxgraph made.
    let Some(h) = (unsafe { host_of(host) }) else { return };
    if severity >= CLAP_LOG_ERROR {
        h.requests.errors.fetch_add(1, Ordering::Relaxed);
    }
    if AUDIO.with(Cell::get) {
        h.requests.audio_logs.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !msg.is_null() {
        // SAFETY: CLAP passes a NUL-terminated message.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        tracing::warn!(target: "fxgraph::clap", severity, "{text}");
    }
}

unsafe extern "C" fn params_rescan(host: *const clap_host, _flags: clap_param_rescan_flags) {
    // SAFETY: a host fxgraph made.
    if let Some(h) = unsafe { host_of(host) } {
        h.requests.rescan.store(true, Ordering::Relaxed);
    }
}

unsafe extern "C" fn params_clear(_host: *const clap_host, _id: u32, _flags: clap_param_clear_flags) {}

unsafe extern "C" fn latency_changed(host: *const clap_host) {
    // SAFETY: a host fxgraph made.
    if let Some(h) = unsafe { host_of(host) } {
        h.requests.latency_changed.store(true, Ordering::Relaxed);
    }
}
