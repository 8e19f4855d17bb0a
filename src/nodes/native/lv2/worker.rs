//! LV2's worker extension (`worker#schedule`): work a plugin schedules from `run` runs off the audio
//! thread, and its responses come back to the plugin after the next `run`.
//!
//! - Offline (`render`, `bench`, an isolated plugin's child), the work runs at once, inside
//!   `schedule_work`, and its responses are delivered after that same `run`: the same bits whatever the
//!   machine, as LV2 allows a host that is not running in real time.
//! - In real time, requests go through a lock-free ring to a worker thread of the instance's own (woken,
//!   never waited for); responses come back through another and are delivered after the first `run` that
//!   finds them. The audio side allocates nothing: both rings and the response buffer are made up front.
//! - While the instance is set up (state restored from a preset), the work runs at once too, and its
//!   responses are delivered before the instance is activated.
#![allow(unsafe_code)] // LV2 is a C ABI; see the SAFETY notes.

use super::lilv::Lv2Feature;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub const SCHEDULE: &str = "http://lv2plug.in/ns/ext/worker#schedule";

const SUCCESS: u32 = 0;
const ERR_NO_SPACE: u32 = 2;
/// Bytes of each ring and of the response buffer.
const RING: usize = 1 << 16;

type Respond = unsafe extern "C" fn(*mut c_void, u32, *const c_void) -> u32;

#[repr(C)]
struct Schedule {
    handle: *mut c_void,
    schedule_work: unsafe extern "C" fn(*mut c_void, u32, *const c_void) -> u32,
}

/// LV2_Worker_Interface.
#[repr(C)]
pub struct Interface {
    work: unsafe extern "C" fn(*mut c_void, Respond, *mut c_void, u32, *const c_void) -> u32,
    work_response: unsafe extern "C" fn(*mut c_void, u32, *const c_void) -> u32,
    end_run: Option<unsafe extern "C" fn(*mut c_void) -> u32>,
}

/// The plugin's side, as the worker thread needs it.
#[derive(Clone, Copy)]
struct Target {
    iface: *const Interface,
    handle: *mut c_void,
}

// SAFETY: LV2's work() may be called from another thread than run(), which is what the thread does.
unsafe impl Send for Target {}

/// Records are a `u32` size and that many bytes.
fn push(ring: &mut rtrb::Producer<u8>, data: &[u8]) -> bool {
    let n = 4 + data.len();
    let Ok(chunk) = ring.write_chunk_uninit(n) else { return false };
    let bytes = (data.len() as u32).to_ne_bytes().into_iter().chain(data.iter().copied());
    chunk.fill_from_iter(bytes);
    true
}

/// Pops one record into `buf` (cleared first); false when the ring is empty.
fn pop(ring: &mut rtrb::Consumer<u8>, buf: &mut Vec<u8>) -> bool {
    let Ok(head) = ring.read_chunk(4) else { return false };
    let (a, b) = head.as_slices();
    let mut size = [0u8; 4];
    for (d, s) in size.iter_mut().zip(a.iter().chain(b)) {
        *d = *s;
    }
    head.commit_all();
    let n = u32::from_ne_bytes(size) as usize;
    buf.clear();
    // A record is pushed whole, so its body is there.
    if let Ok(body) = ring.read_chunk(n) {
        let (a, b) = body.as_slices();
        buf.extend_from_slice(a);
        buf.extend_from_slice(b);
        body.commit_all();
    }
    true
}

struct Threaded {
    requests: rtrb::Producer<u8>,
    responses: rtrb::Consumer<u8>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// One plugin instance's worker, at an address that stays put while the instance lives.
pub struct Worker {
    schedule: Schedule,
    pub feature: Lv2Feature,
    target: Option<Target>,
    /// Run at once (offline, or while setting up) rather than on the thread.
    pub at_once: bool,
    /// Responses not yet delivered, in the run-at-once mode; records as in the rings.
    pending: Vec<u8>,
    /// The responses being delivered (swapped with `pending` first: a plugin may schedule more work from
    /// `work_response`, whose responses then wait for the next run).
    delivering: Vec<u8>,
    /// A response being delivered from the thread's ring.
    scratch: Vec<u8>,
    threaded: Option<Threaded>,
    /// Requests refused for want of room.
    pub refused: u64,
}

impl Worker {
    /// A worker whose feature can be given to `instantiate` (its plugin is set with [`Worker::bind`]).
    pub fn new() -> Box<Self> {
        let mut w = Box::new(Self {
            schedule: Schedule { handle: std::ptr::null_mut(), schedule_work },
            feature: Lv2Feature {
                uri: c"http://lv2plug.in/ns/ext/worker#schedule".as_ptr(),
                data: std::ptr::null_mut(),
            },
            target: None,
            at_once: true,
            pending: Vec::with_capacity(RING),
            delivering: Vec::with_capacity(RING),
            scratch: Vec::with_capacity(RING),
            threaded: None,
            refused: 0,
        });
        let me: *mut Worker = &mut *w;
        w.schedule.handle = me.cast();
        w.feature.data = std::ptr::from_mut(&mut w.schedule).cast();
        w
    }

    /// The plugin instance (`handle`) and its worker interface, if it has one.
    pub fn bind(&mut self, iface: *const Interface, handle: *mut c_void) {
        if !iface.is_null() {
            self.target = Some(Target { iface, handle });
        }
    }

    /// From now on, work runs on a thread of its own (real time).
    pub fn start_thread(&mut self) -> Result<(), String> {
        let Some(target) = self.target else { return Ok(()) };
        let (requests, mut inbox) = rtrb::RingBuffer::<u8>::new(RING);
        let (mut outbox, responses) = rtrb::RingBuffer::<u8>::new(RING);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fxgraph-lv2-worker".into())
            .spawn(move || {
                let target = target;
                let mut buf = Vec::new();
                while !stopped.load(Ordering::Acquire) {
                    if pop(&mut inbox, &mut buf) {
                        // SAFETY: the plugin's work(), on this (non-real-time) thread, with a respond
                        // function that writes into the response ring.
                        unsafe {
                            ((*target.iface).work)(
                                target.handle,
                                respond_to_ring,
                                std::ptr::from_mut(&mut outbox).cast(),
                                buf.len() as u32,
                                buf.as_ptr().cast(),
                            );
                        }
                    } else {
                        std::thread::park_timeout(std::time::Duration::from_millis(50));
                    }
                }
            })
            .map_err(|e| format!("cannot start an LV2 worker thread: {e}"))?;
        self.threaded = Some(Threaded { requests, responses, thread: Some(thread), stop });
        self.at_once = false;
        Ok(())
    }

    /// Delivers the responses that have come back, then tells the plugin the run has ended (after each
    /// `run`, on the audio thread; or while setting up).
    pub fn after_run(&mut self) {
        let Some(t) = self.target else { return };
        // SAFETY: the plugin's work_response and end_run, in its audio class, with records it sent.
        unsafe {
            if !self.pending.is_empty() {
                std::mem::swap(&mut self.pending, &mut self.delivering);
                let mut at = 0;
                while at + 4 <= self.delivering.len() {
                    let mut size = [0u8; 4];
                    size.copy_from_slice(&self.delivering[at..at + 4]);
                    let n = u32::from_ne_bytes(size) as usize;
                    let body = &self.delivering[at + 4..at + 4 + n];
                    ((*t.iface).work_response)(t.handle, n as u32, body.as_ptr().cast());
                    at += 4 + n;
                }
                self.delivering.clear();
            }
            if let Some(th) = &mut self.threaded {
                while pop(&mut th.responses, &mut self.scratch) {
                    ((*t.iface).work_response)(t.handle, self.scratch.len() as u32, self.scratch.as_ptr().cast());
                }
            }
            if let Some(end) = (*t.iface).end_run {
                end(t.handle);
            }
        }
    }
}

impl Worker {
    /// Stops the thread, if it runs (control side): no work runs after this returns.
    pub fn stop_thread(&mut self) {
        if let Some(t) = &mut self.threaded {
            t.stop.store(true, Ordering::Release);
            if let Some(h) = t.thread.take() {
                h.thread().unpark();
                let _ = h.join();
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

unsafe extern "C" fn schedule_work(handle: *mut c_void, size: u32, data: *const c_void) -> u32 {
    // SAFETY: `handle` is the Worker that made this schedule; `data` holds `size` bytes.
    unsafe {
        let w = &mut *handle.cast::<Worker>();
        let Some(t) = w.target else { return ERR_NO_SPACE };
        let bytes = if size == 0 { &[][..] } else { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
        if w.at_once {
            let pending: *mut Vec<u8> = &mut w.pending;
            return ((*t.iface).work)(t.handle, respond_at_once, pending.cast(), size, data);
        }
        let Some(th) = &mut w.threaded else { return ERR_NO_SPACE };
        if !push(&mut th.requests, bytes) {
            w.refused += 1;
            return ERR_NO_SPACE;
        }
        if let Some(h) = &th.thread {
            h.thread().unpark();
        }
        SUCCESS
    }
}

unsafe extern "C" fn respond_at_once(handle: *mut c_void, size: u32, data: *const c_void) -> u32 {
    // SAFETY: `handle` is the worker's pending buffer; `data` holds `size` bytes.
    unsafe {
        let pending = &mut *handle.cast::<Vec<u8>>();
        if pending.len() + 4 + size as usize > pending.capacity() {
            return ERR_NO_SPACE;
        }
        pending.extend_from_slice(&size.to_ne_bytes());
        if size > 0 {
            pending.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), size as usize));
        }
    }
    SUCCESS
}

unsafe extern "C" fn respond_to_ring(handle: *mut c_void, size: u32, data: *const c_void) -> u32 {
    // SAFETY: `handle` is the thread's response producer; `data` holds `size` bytes.
    unsafe {
        let ring = &mut *handle.cast::<rtrb::Producer<u8>>();
        let bytes = if size == 0 { &[][..] } else { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
        if push(ring, bytes) { SUCCESS } else { ERR_NO_SPACE }
    }
}
