//! The sandbox: the shared wasmtime engine and its epoch thread, compiled-module caches, the host's
//! imports, and creating a checked instance (control side only).

use super::manifest::{ABI_VERSION, Manifest};
use crate::clock::CpuMark;
use crate::node::{MessageKind, ProcessConfig};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{
    Config, Engine, Instance, InstancePre, Linker, Memory, Module, ResourceLimiter, Store, TypedFunc, UpdateDeadline,
};

/// Epoch ticks are this long. At each tick past a call's deadline the host checks how much CPU time the
/// plugin has used: once that reaches the deadline the call is interrupted, else it goes on (its thread was
/// preempted, which is not the plugin's doing).
pub const TICK: Duration = Duration::from_millis(5);
/// A block's hard deadline is this many times the manifest's budget (the watchdog handles mere
/// slowness)...
pub const DEADLINE_FACTOR: u64 = 10;
/// ...but never more than this many block periods of real-time audio, whatever the manifest says...
pub const DEADLINE_CAP_BLOCKS: f64 = 4.0;
/// ...and never less than two ticks (the epoch's resolution).
pub const MIN_DEADLINE_TICKS: u64 = 2;
/// Setting an instance up (instantiation, version, parameters, initialize, buffers, start: all of them
/// together) may take half a second; so may stopping and cleaning up.
pub const SETUP_DEADLINE_TICKS: u64 = 100;
/// The functions of module `fxgraph` a plugin may import.
pub const ALLOWED_IMPORTS: [&str; 2] = ["log", "emit_event"];
/// Messages a plugin may leave between two polls (one block); later ones are counted as dropped.
pub const MESSAGE_SLOTS: usize = 64;
/// Bytes kept of one message.
pub const MESSAGE_BYTES: usize = crate::node::MESSAGE_BYTES;

/// The hard deadline of one `fxg_process` call, in epoch ticks, for a plugin with this budget at this
/// block size and rate. The call is interrupted at the first tick at which the plugin has used more than
/// `ticks - 1` ticks of CPU time: on an idle machine a plugin that spins is stopped after `ticks - 1` to
/// `ticks` ticks of wall time, and on a busy one after as much of its own time.
pub fn deadline_ticks(budget_us: u64, config: &ProcessConfig) -> u64 {
    let tick_us = TICK.as_micros() as u64;
    let from_budget = (budget_us.saturating_mul(DEADLINE_FACTOR)).div_ceil(tick_us);
    let period_us = config.max_block as f64 * 1e6 / f64::from(config.sample_rate);
    let cap = ((DEADLINE_CAP_BLOCKS * period_us) / tick_us as f64).ceil() as u64;
    from_budget.min(cap).max(MIN_DEADLINE_TICKS)
}

/// Plugin processors alive; the epoch thread sleeps (parked) while there are none, so an application that
/// loaded a plugin once does not pay for a ticking thread forever.
static PROCESSORS: AtomicUsize = AtomicUsize::new(0);
static TICKER: OnceLock<std::thread::Thread> = OnceLock::new();

/// The shared engine: epoch interruption for deadlines, a bounded wasm stack, and the epoch thread.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(512 << 10);
        // For compute-bound plugins (wasmtime's defaults on 64-bit hosts, written out so that they stay):
        // Cranelift's full optimization, and each linear memory in a 4 GiB reservation behind a guard
        // region, so that a 32-bit plugin's loads and stores need no bounds check (an access out of bounds
        // faults in the guard and becomes a trap). Measured on the biquad plugin against its native build
        // (one run, block 512): 0.78 as here, 0.70 unoptimized, 0.79 `SpeedAndSize`, 0.60 with explicit
        // bounds checks.
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if cfg!(target_pointer_width = "64") {
            config.memory_reservation(4 << 30);
            config.memory_guard_size(32 << 20);
            config.signals_based_traps(true);
        }
        // No backtrace capture when a plugin traps: less work (and allocation) on the audio thread.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).expect("a default wasmtime configuration is valid");
        let ticking = engine.clone();
        let thread = std::thread::Builder::new()
            .name("fxgraph-wasm-epoch".into())
            .spawn(move || {
                loop {
                    while PROCESSORS.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                    }
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        let _ = TICKER.set(thread.thread().clone());
        engine
    })
}

/// Counts a live plugin processor, waking the epoch thread for the first.
pub struct Ticking;

impl Default for Ticking {
    fn default() -> Self {
        Self::new()
    }
}

impl Ticking {
    pub fn new() -> Self {
        engine();
        if PROCESSORS.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(t) = TICKER.get()
        {
            t.unpark();
        }
        Ticking
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        PROCESSORS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Checks a module's imports against the sandbox's.
///
/// # Errors
/// A message naming the first import the sandbox does not provide.
pub fn check_imports(module: &Module, path: &Path) -> Result<(), String> {
    for import in module.imports() {
        if import.module() != "fxgraph" || !ALLOWED_IMPORTS.contains(&import.name()) {
            // The names are the module's: escaped, so they cannot forge output.
            return Err(format!(
                "{} imports `{}.{}`, which the sandbox does not provide (allowed: fxgraph.log, fxgraph.emit_event)",
                path.display(),
                crate::node::Untrusted::new(import.module()),
                crate::node::Untrusted::new(import.name())
            ));
        }
    }
    Ok(())
}

/// Checks a module's imports against the host functions its manifest declares, when it declares them.
///
/// # Errors
/// A message naming an import that is not declared.
pub fn check_declared(module: &Module, manifest: &crate::nodes::wasm::Manifest, path: &Path) -> Result<(), String> {
    let Some(declared) = &manifest.host_functions else { return Ok(()) };
    for import in module.imports() {
        let name = format!("{}.{}", import.module(), import.name());
        if !declared.contains(&name) {
            return Err(format!(
                "{} imports `{}`, which its manifest does not declare in `host_functions` (declared: {})",
                path.display(),
                crate::node::Untrusted::new(&name),
                declared.join(", ")
            ));
        }
    }
    Ok(())
}

/// Compiles a module once per process (later calls with the same bytes share it) and once per machine
/// (through the disk cache), and checks its imports.
///
/// # Errors
/// A message for a file that cannot be read, is not WebAssembly, or imports anything but the ABI's
/// functions (naming the import).
pub fn compile(path: &Path) -> Result<Module, String> {
    compile_pinned(path, None)
}

/// [`compile`], refusing a file whose SHA-256 is not `pin` (when there is one) before compiling anything.
///
/// # Errors
/// As [`compile`], and a message naming both digests for a file that does not match.
pub fn compile_pinned(path: &Path, pin: Option<&crate::nodes::plugin::Sha256Pin>) -> Result<Module, String> {
    static MODULES: OnceLock<Mutex<HashMap<[u8; 32], Module>>> = OnceLock::new();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let digest = crate::sha256::sha256(&bytes);
    if let Some(pin) = pin {
        pin.check(&digest, path)?;
    }
    let cache = MODULES.get_or_init(Default::default);
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&digest) {
        return Ok(m.clone());
    }
    let module = compile_digested(&bytes, &digest, path)?;
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, module.clone());
    Ok(module)
}

/// Validates and compiles module bytes (through the disk cache) and checks the imports. `path` names the
/// module in errors.
///
/// # Errors
/// As [`compile`].
pub fn compile_bytes(bytes: &[u8], path: &Path) -> Result<Module, String> {
    compile_digested(bytes, &crate::sha256::sha256(bytes), path)
}

/// [`compile_bytes`] for bytes whose SHA-256 is `digest`.
fn compile_digested(bytes: &[u8], digest: &[u8; 32], path: &Path) -> Result<Module, String> {
    if !bytes.starts_with(b"\0asm") {
        return Err(format!("{} is not a WebAssembly module", path.display()));
    }
    let cache = super::cache::DiskCache::open();
    let entry = cache.as_ref().map(|c| c.entry(digest));
    let module = match entry.as_ref().and_then(|e| e.load()) {
        Some(module) => module,
        None => {
            let module = Module::new(engine(), bytes)
                .map_err(|e| format!("{} is not a valid WebAssembly module: {e:#}", path.display()))?;
            if let Some(entry) = &entry {
                entry.store(&module);
            }
            module
        }
    };
    check_imports(&module, path)?;
    Ok(module)
}

/// One preallocated message slot.
#[derive(Clone, Copy)]
pub struct Slot {
    pub kind: MessageKind,
    pub len: usize,
    pub bytes: [u8; MESSAGE_BYTES],
}

/// Per-instance host state: the memory cap, whether the host is inside a real-time call (a block, or a
/// parameter change between blocks), the current call's start and CPU-time deadline, and message slots
/// filled by the `log` and `emit_event` imports without allocating.
pub struct HostState {
    memory_cap: usize,
    pub in_block: bool,
    /// The current call's start, and the CPU time it may use before it is interrupted (ns).
    mark: CpuMark,
    deadline_ns: u64,
    /// Whether the current call has passed a tick deadline without being interrupted, and how many calls
    /// did since the last count was taken.
    extended: bool,
    pub preempted: u64,
    pub slots: Vec<Slot>,
    pub used: usize,
    pub dropped: u64,
}

impl HostState {
    /// Arms the deadline for a call starting at `mark`: `ticks` epoch ticks of wall time, after which the
    /// plugin's own CPU time is checked at every tick (see [`deadline_ticks`]).
    pub fn arm(store: &mut Store<HostState>, mark: CpuMark, ticks: u64) {
        let state = store.data_mut();
        state.mark = mark;
        state.deadline_ns = ticks.saturating_sub(1).max(1).saturating_mul(TICK.as_nanos() as u64);
        state.extended = false;
        store.set_epoch_deadline(ticks);
    }

    /// At a tick past the deadline: interrupts a call whose plugin has used its CPU time, lets one whose
    /// thread was preempted go on until it has.
    fn on_deadline(&mut self) -> UpdateDeadline {
        // At most: time the thread spent just before the call (less than the mark's age, far below a
        // deadline) counts against the plugin, so a spinning plugin is stopped at the same tick as ever.
        let used = self.mark.used_at_most();
        if used >= self.deadline_ns {
            return UpdateDeadline::Interrupt;
        }
        if !self.extended {
            self.extended = true;
            self.preempted += 1;
        }
        let tick = TICK.as_nanos() as u64;
        UpdateDeadline::Continue((self.deadline_ns - used).div_ceil(tick).max(1))
    }
}

impl HostState {
    /// Copies a guest message (bounds-checked, truncated, never trusted) into the next free slot.
    fn record(caller: &mut wasmtime::Caller<'_, HostState>, kind: MessageKind, ptr: i32, len: i32) {
        let memory = match caller.get_export("memory") {
            Some(wasmtime::Extern::Memory(m)) => m,
            _ => return,
        };
        let (data, state) = memory.data_and_store_mut(caller);
        if state.used == state.slots.len() {
            state.dropped += 1;
            return;
        }
        let slot = &mut state.slots[state.used];
        slot.kind = kind;
        let (start, len) = (ptr as u32 as usize, (len as u32 as usize).min(MESSAGE_BYTES));
        match start.checked_add(len).and_then(|end| data.get(start..end)) {
            Some(text) => {
                slot.bytes[..len].copy_from_slice(text);
                slot.len = len;
            }
            None => {
                const BAD: &[u8] = b"<message outside the plugin's memory>";
                slot.bytes[..BAD.len()].copy_from_slice(BAD);
                slot.len = BAD.len();
            }
        }
        state.used += 1;
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // No growth in a real-time call (the ABI forbids it there), and never past the cap.
        Ok(!self.in_block && desired <= self.memory_cap)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(!self.in_block && desired <= 65536)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// A live instance and the exports the host calls on the audio path.
pub struct Live {
    pub store: Store<HostState>,
    pub memory: Memory,
    pub process: TypedFunc<i32, i32>,
    pub set_param: TypedFunc<(i32, f32), i32>,
    pub start: TypedFunc<(), ()>,
    pub stop: TypedFunc<(), ()>,
    pub cleanup: TypedFunc<(), ()>,
    /// Each input bus's and output bus's buffer: byte offset and channels, validated once (one of each, of
    /// the graph's channels, for a plugin of ABI 1.0).
    pub inputs: Vec<(usize, usize)>,
    pub outputs: Vec<(usize, usize)>,
    /// The output buses' channels together.
    pub out_channels: usize,
    /// Memory size after setup: the buffers were validated against it and it cannot change in a block.
    pub memory_size: usize,
    /// The memory cap, the block deadline in epoch ticks, and the largest block (a buffer plane's frames).
    pub memory_cap: usize,
    pub deadline_ticks: u64,
    /// The age (in clock ticks, 1 ms) a CPU-time reading may have for the mark of a call that is not a
    /// block (parameter changes, a reset's start).
    pub mark_age: u64,
    pub max_block: usize,
}

/// Links a module against the ABI's imports once; each instance (the first, and each replacement after a
/// fault) is then instantiated from it without resolving imports again.
///
/// # Errors
/// A message if the module cannot be linked.
pub fn prelink(module: &Module) -> Result<InstancePre<HostState>, String> {
    let mut linker: Linker<HostState> = Linker::new(engine());
    linker
        .func_wrap("fxgraph", "log", |mut caller: wasmtime::Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            HostState::record(&mut caller, MessageKind::Log(level), ptr, len);
        })
        .map_err(|e| e.to_string())?;
    linker
        .func_wrap(
            "fxgraph",
            "emit_event",
            |mut caller: wasmtime::Caller<'_, HostState>, code: i32, ptr: i32, len: i32| {
                HostState::record(&mut caller, MessageKind::Event(code), ptr, len);
            },
        )
        .map_err(|e| e.to_string())?;
    linker.instantiate_pre(module).map_err(|e| format!("cannot link: {e:#}"))
}

/// A trap's kind, or the error's text.
pub fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => format!("{e:#}"),
    }
}

/// Creates, checks and prepares an instance (control side): ABI version, parameters, `fxg_initialize`,
/// the buffer table, `fxg_start`.
///
/// # Errors
/// A message for any failed step; a plugin that refuses its configuration in `fxg_initialize` may say why
/// through its `log` import, and the message includes what it said.
pub fn instantiate(
    pre: &InstancePre<HostState>,
    manifest: &Manifest,
    params: &[(i32, f32)],
    config: &ProcessConfig,
) -> Result<Live, String> {
    let empty = Slot { kind: MessageKind::Log(0), len: 0, bytes: [0; MESSAGE_BYTES] };
    let state = HostState {
        memory_cap: manifest.memory_cap(),
        in_block: false,
        mark: CpuMark::default(),
        deadline_ns: 0,
        extended: false,
        preempted: 0,
        slots: vec![empty; MESSAGE_SLOTS],
        used: 0,
        dropped: 0,
    };
    let mut store = Store::new(engine(), state);
    store.limiter(|s| s as &mut dyn ResourceLimiter);
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().on_deadline()));
    // One deadline for the whole setup, so a module cannot stretch it call by call.
    HostState::arm(&mut store, CpuMark::start(0, true), SETUP_DEADLINE_TICKS);
    let instance: Instance = pre.instantiate(&mut store).map_err(|e| format!("cannot instantiate: {e:#}"))?;
    let memory = instance.get_memory(&mut store, "memory").ok_or("the module exports no `memory`")?;
    macro_rules! export {
        ($name:literal, $params:ty, $results:ty) => {
            instance
                .get_typed_func::<$params, $results>(&mut store, $name)
                .map_err(|e| format!("export `{}`: {e:#}", $name))?
        };
    }
    let abi_version = export!("fxg_abi_version", (), i32);
    let set_param = export!("fxg_set_param", (i32, f32), i32);
    let initialize = export!("fxg_initialize", (i32, i32, i32), i32);
    let buffers = export!("fxg_buffers", (), i32);
    let start = export!("fxg_start", (), ());
    let process = export!("fxg_process", i32, i32);
    let stop = export!("fxg_stop", (), ());
    let cleanup = export!("fxg_cleanup", (), ());

    let call_err = |what: &str, e: wasmtime::Error| format!("{what} failed: {}", describe(&e));
    let version = abi_version.call(&mut store, ()).map_err(|e| call_err("fxg_abi_version", e))?;
    if version != ABI_VERSION {
        return Err(format!("the module implements ABI version {version}, this host {ABI_VERSION}"));
    }
    for &(id, value) in params {
        let code = set_param.call(&mut store, (id, value)).map_err(|e| call_err("fxg_set_param", e))?;
        if code != 0 {
            return Err(format!("fxg_set_param({id}, {value}) returned error {code}{}", said(&mut store)));
        }
    }
    let (ch, max_block) = (config.channels, config.max_block);
    // Each bus's channels as the graph connects it (ABI 1.1), told before `fxg_initialize`.
    let (in_widths, out_widths) = match &manifest.buses {
        Some(b) => {
            let (ins, outs) = (config.layout.inputs(), config.layout.outputs());
            if ins.len() != b.inputs.len() || outs.len() != b.outputs.len() {
                return Err(format!(
                    "prepared for {} inputs and {} outputs; the plugin declares {} and {}",
                    ins.len(),
                    outs.len(),
                    b.inputs.len(),
                    b.outputs.len()
                ));
            }
            (ins, outs)
        }
        None => (vec![ch], vec![ch]),
    };
    if manifest.buses.is_some() {
        let bus_channels = export!("fxg_bus_channels", (i32, i32), i32);
        for (index, &width) in in_widths.iter().chain(&out_widths).enumerate() {
            let code = bus_channels
                .call(&mut store, (index as i32, width as i32))
                .map_err(|e| call_err("fxg_bus_channels", e))?;
            if code != 0 {
                return Err(format!(
                    "the plugin refused {width} channels on bus {index} (fxg_bus_channels returned {code}){}",
                    said(&mut store)
                ));
            }
        }
    }
    let code = initialize
        .call(&mut store, (config.sample_rate as i32, ch as i32, max_block as i32))
        .map_err(|e| call_err("fxg_initialize", e))?;
    if code != 0 {
        return Err(format!(
            "the plugin refused this configuration (fxg_initialize returned {code}){}",
            said(&mut store)
        ));
    }
    let table = buffers.call(&mut store, ()).map_err(|e| call_err("fxg_buffers", e))? as u32 as usize;
    let offsets = read_table(memory.data(&store), table, in_widths.len() + out_widths.len())?;
    start.call(&mut store, ()).map_err(|e| call_err("fxg_start", e))?;
    // The ABI allows growth until here; the buffers are checked against the memory as it now is.
    let memory_size = memory.data_size(&store);
    let named = |k: usize| match (manifest.buses.as_ref(), k.checked_sub(in_widths.len())) {
        (None, None) => "input".to_string(),
        (None, Some(_)) => "output".to_string(),
        (Some(b), None) => format!("input bus `{}`", b.inputs[k].name),
        (Some(b), Some(o)) => format!("output bus `{}`", b.outputs[o].name),
    };
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    for (k, (&offset, &width)) in offsets.iter().zip(in_widths.iter().chain(&out_widths)).enumerate() {
        if width == 0 {
            continue;
        }
        let name = format!("the {} buffer", named(k));
        let plane = width.checked_mul(max_block).and_then(|n| n.checked_mul(4)).ok_or("buffer size overflows")?;
        let end = offset.checked_add(plane).ok_or("buffer range overflows")?;
        if offset % 4 != 0 {
            return Err(format!("{name} at {offset} is not aligned to 4 bytes"));
        }
        if end > memory_size {
            return Err(format!(
                "{name} ({plane} bytes at {offset}) ends past the module's memory ({memory_size} bytes)"
            ));
        }
        if let Some((_, _, other)) = spans.iter().find(|(a, b, _)| offset < *b && *a < end) {
            return Err(format!("{name} ({offset}) and {other} overlap"));
        }
        spans.push((offset, end, name));
    }
    let inputs: Vec<(usize, usize)> = offsets.iter().copied().zip(in_widths.iter().copied()).collect();
    let outputs: Vec<(usize, usize)> =
        offsets[in_widths.len()..].iter().copied().zip(out_widths.iter().copied()).collect();
    // What the plugin logged during setup stays for the first poll; setup's pace is not audio's.
    store.data_mut().preempted = 0;
    Ok(Live {
        store,
        memory,
        process,
        set_param,
        start,
        stop,
        cleanup,
        out_channels: out_widths.iter().sum(),
        inputs,
        outputs,
        memory_size,
        memory_cap: manifest.memory_cap(),
        deadline_ticks: deadline_ticks(manifest.block_budget_us, config),
        mark_age: (1e6 / crate::clock::ns_per_tick()) as u64,
        max_block,
    })
}

/// What the plugin logged so far, for an error message: `: "..."` (escaped), or nothing.
fn said(store: &mut Store<HostState>) -> String {
    let state = store.data();
    let text: Vec<String> = state.slots[..state.used]
        .iter()
        .map(|s| crate::node::Untrusted::from_bytes(&s.bytes[..s.len]).escaped())
        .collect();
    if text.is_empty() { String::new() } else { format!(": the plugin says \"{}\"", text.join("; ")) }
}

/// Reads the guest's buffer table (`entries` little-endian u32 offsets: the inputs', then the outputs')
/// with checked bounds.
fn read_table(memory: &[u8], at: usize, entries: usize) -> Result<Vec<usize>, String> {
    let bytes = at
        .checked_add(4 * entries)
        .and_then(|end| memory.get(at..end))
        .ok_or(format!("the buffer table at {at} lies outside the module's memory ({} bytes)", memory.len()))?;
    Ok(bytes.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_capped_by_the_block_period_whatever_the_budget() {
        let cfg = ProcessConfig::effect(48000, 2, 512);
        // 512 frames at 48 kHz: 10.7 ms; four periods: 42.7 ms, 9 ticks.
        assert_eq!(deadline_ticks(1_000_000, &cfg), 9);
        // Ten budgets of 2 ms: 20 ms, 4 ticks.
        assert_eq!(deadline_ticks(2000, &cfg), 4);
        // Never under two ticks.
        assert_eq!(deadline_ticks(1, &cfg), 2);
    }
}
