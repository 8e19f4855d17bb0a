//! An opt-in counting allocator, so the monitor can report heap use and tests can prove that the audio side
//! allocates nothing, and the mark of a thread doing the audio side's work ([`in_audio_context`]).
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: fxgraph::alloc::CountingAllocator = fxgraph::alloc::CountingAllocator;
//! ```
#![allow(unsafe_code)] // Implementing `GlobalAlloc` is unsafe by definition; every call defers to `System`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The system allocator, counting bytes and calls with relaxed atomics.
pub struct CountingAllocator;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
/// Allocations, reallocations and frees made while a thread was doing the audio side's work.
static AUDIO_CALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's share of `AUDIO_CALLS`. Const-initialized without a destructor: reading or writing it
    /// never allocates.
    static THREAD_AUDIO_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What the counting allocator has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes ever allocated.
    pub allocated_total: u64,
    /// Bytes allocated and not yet freed.
    pub live: u64,
    /// Allocation calls (including reallocations).
    pub calls: u64,
    /// Allocations, reallocations and frees made by the audio side's work (inside
    /// [`crate::AudioProcessor::process`], on the parallel executor's workers, in a player's device
    /// callback): 0 is the contract.
    pub audio_calls: u64,
}

impl CountingAllocator {
    /// The counts, or `None` if this allocator is not the global allocator.
    pub fn stats() -> Option<AllocStats> {
        INSTALLED.load(Ordering::Relaxed).then(|| {
            let allocated = ALLOCATED.load(Ordering::Relaxed);
            AllocStats {
                allocated_total: allocated,
                live: allocated.saturating_sub(FREED.load(Ordering::Relaxed)),
                calls: CALLS.load(Ordering::Relaxed),
                audio_calls: AUDIO_CALLS.load(Ordering::Relaxed),
            }
        })
    }

    /// Allocations, reallocations and frees the calling thread made while doing audio work, or `None` if
    /// this allocator is not the global allocator.
    pub fn thread_audio_calls() -> Option<u64> {
        INSTALLED.load(Ordering::Relaxed).then(|| THREAD_AUDIO_CALLS.with(std::cell::Cell::get))
    }
}

thread_local! {
    /// Whether this thread is doing the audio side's work now. Const-initialized without a destructor, so
    /// reading it never allocates (it may be read from a global allocator).
    static AUDIO_CONTEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is running the audio side's work right now: inside
/// `AudioProcessor::process` (or `process_interleaved`), or a worker thread of the parallel executor.
/// An application (or a test) can install a global allocator that checks it, to prove that the audio side
/// allocates nothing, as nih-plug's `assert_process_allocs` does.
pub fn in_audio_context() -> bool {
    AUDIO_CONTEXT.with(|c| c.get())
}

/// Marks the current thread as doing audio work until the guard is dropped (restoring what it was).
pub(crate) struct AudioContext(bool);

impl AudioContext {
    pub(crate) fn enter() -> Self {
        Self(AUDIO_CONTEXT.with(|c| c.replace(true)))
    }

    /// Marks the current thread as doing other work (a side job) until the guard is dropped.
    pub(crate) fn leave() -> Self {
        Self(AUDIO_CONTEXT.with(|c| c.replace(false)))
    }
}

impl Drop for AudioContext {
    fn drop(&mut self) {
        let was = self.0;
        AUDIO_CONTEXT.with(|c| c.set(was));
    }
}

/// Counts a call made while the thread does audio work.
fn audio_check() {
    if in_audio_context() {
        AUDIO_CALLS.fetch_add(1, Ordering::Relaxed);
        THREAD_AUDIO_CALLS.with(|c| c.set(c.get() + 1));
    }
}

fn count(bytes: usize) {
    INSTALLED.store(true, Ordering::Relaxed);
    audio_check();
    ALLOCATED.fetch_add(bytes as u64, Ordering::Relaxed);
    CALLS.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s guarantees
// hold; the counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as this method's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as this method's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        audio_check();
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as this method's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        count(new_size);
        // SAFETY: same contract as this method's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
