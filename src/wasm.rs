//! WebAssembly plugin nodes: `Wasm(path: "...", config: {...})`, run in wasmtime's sandbox.
//!
//! The ABI is documented in `plugins/ABI.md`. In short: the module exports `memory` and the `fxg_*`
//! functions, may import only `fxgraph.log` and `fxgraph.emit_event`, and a JSON manifest beside it
//! (`NAME.json` for `NAME.wasm`) declares its id, version, ABI version, memory limit, per-block time budget
//! and parameters. Audio crosses as planar `f32` in the guest's memory, at offsets the guest reports once
//! and the host validates once and keeps.
//!
//! A plugin that traps (deadline, out-of-bounds access, `unreachable`, stack overflow, division by zero, a
//! bad indirect call...), returns an error, outputs non-finite or absurd samples, or overruns its time budget
//! for [`WATCHDOG_BLOCKS`] blocks in a row is faulted: that block's output is its dry input (or silence), the
//! fault is counted and reported, the instance is dropped and never re-entered, and a fresh instance is
//! created from the compiled module after a backoff of 2, 4, 8, 16 blocks; after [`MAX_FAULTS`] faults the
//! node stays bypassed. Other nodes and the host are not affected.
//!
//! Log lines and events the plugin sends through its imports are copied (bounds-checked, truncated to
//! [`MESSAGE_BYTES`]) into [`MESSAGE_SLOTS`] preallocated slots, so the audio path does not allocate;
//! [`crate::Engine::messages`] hands them to the application and to `tracing` on the control side.
//!
//! Compiled modules are shared within a process and cached on disk (see [`compile`]), so a second start
//! skips compilation.

use crate::buffer::{AudioIn, AudioOut};
use crate::node::{BuildContext, Message, MessageKind, NodeError, NodeSpec, ParamError, ProcessConfig, Processor};
use crate::registry::{NodeKind, Registry, parse_ron};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::{Config, Engine, Instance, InstancePre, Linker, Memory, Module, ResourceLimiter, Store, TypedFunc};

/// The ABI version this host implements.
pub const ABI_VERSION: i32 = 1;
/// The most linear memory any plugin may have, whatever its manifest says.
pub const HOST_MEMORY_CAP: usize = 64 << 20;
/// Faults after which a node stays bypassed.
pub const MAX_FAULTS: u32 = 5;
/// Consecutive over-budget blocks after which the watchdog bypasses a plugin.
pub const WATCHDOG_BLOCKS: u32 = 8;
/// Epoch ticks are this long; hard deadlines are whole ticks.
const TICK: Duration = Duration::from_millis(5);
/// A hard deadline is this many times the per-block budget (the watchdog handles mere slowness), and never
/// less than [`MIN_DEADLINE_TICKS`]: deadlines are wall-clock time, and a loaded machine may deschedule an
/// honest plugin for a few milliseconds.
const DEADLINE_FACTOR: u64 = 10;
const MIN_DEADLINE_TICKS: u64 = 10;
/// Setup calls (version, parameters, initialize, buffers, start) are not real-time: one second each.
const SETUP_DEADLINE_TICKS: u64 = 200;
/// Output magnitudes above this are absurd (about +60 dBFS).
const ABSURD: f32 = 1000.0;
/// Imports a module may have.
const ALLOWED_IMPORTS: [&str; 2] = ["log", "emit_event"];

pub(crate) fn register(registry: &mut Registry) {
    registry.register(NodeKind {
        name: "Wasm",
        summary: "a WebAssembly plugin, sandboxed",
        parse: parse_ron::<WasmSpec>,
    });
}

/// What a faulted plugin outputs for the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OnFault {
    /// Its input, unprocessed.
    #[default]
    Dry,
    Silence,
}

/// A config value as written in the graph file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Number(f64),
    Text(String),
}

/// `Wasm(path, config, on_fault)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmSpec {
    /// The module, relative to the graph file.
    pub path: String,
    /// Values for the plugin's parameters by key; the rest take their defaults.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    #[serde(default)]
    pub on_fault: OnFault,
}

/// A parameter a plugin declares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    pub id: i32,
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub unit: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// For enumerations: the allowed values; the guest receives the index.
    #[serde(rename = "enum")]
    pub choices: Option<Vec<String>>,
    pub default: ConfigValue,
}

/// The manifest beside a module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: String,
    pub abi_version: i32,
    pub memory_limit_bytes: usize,
    pub block_budget_us: u64,
    #[serde(default)]
    pub parameters: Vec<ParamDecl>,
}

impl Manifest {
    /// Reads `NAME.json` beside `NAME.wasm`.
    ///
    /// # Errors
    /// A message naming the file for a missing, unreadable or malformed manifest.
    pub fn for_module(module: &Path) -> Result<Self, String> {
        let path = module.with_extension("json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read the manifest {}: {e}", path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a valid plugin manifest: {e}", path.display()))?;
        if manifest.abi_version != ABI_VERSION {
            return Err(format!(
                "{}: declares ABI version {}, this host implements {ABI_VERSION}",
                path.display(),
                manifest.abi_version
            ));
        }
        for p in &manifest.parameters {
            p.value_of(&p.default).map_err(|e| format!("{}: parameter `{}`: default {e}", path.display(), p.key))?;
        }
        Ok(manifest)
    }

    /// The memory cap: the manifest's, bounded by the host's.
    pub fn memory_cap(&self) -> usize {
        self.memory_limit_bytes.min(HOST_MEMORY_CAP)
    }

    /// Every parameter's numeric value for the guest, from `config` over the defaults.
    ///
    /// # Errors
    /// A [`ParamError`] naming the config key (`config.KEY`) that is unknown, mistyped or out of range.
    pub fn resolve(&self, config: &BTreeMap<String, ConfigValue>) -> Result<Vec<(i32, f32)>, ParamError> {
        for key in config.keys() {
            if !self.parameters.iter().any(|p| &p.key == key) {
                let known: Vec<&str> = self.parameters.iter().map(|p| p.key.as_str()).collect();
                return Err(ParamError::new(
                    format!("config.{key}"),
                    format!("is not a parameter of {} (it has: {})", self.id, known.join(", ")),
                ));
            }
        }
        self.parameters
            .iter()
            .map(|p| {
                let value = config.get(&p.key).unwrap_or(&p.default);
                p.value_of(value).map(|v| (p.id, v)).map_err(|e| ParamError::new(format!("config.{}", p.key), e))
            })
            .collect()
    }
}

impl ParamDecl {
    /// The numeric value the guest receives for `value`.
    fn value_of(&self, value: &ConfigValue) -> Result<f32, String> {
        match (&self.choices, value) {
            (Some(choices), ConfigValue::Text(t)) => choices
                .iter()
                .position(|c| c == t)
                .map(|i| i as f32)
                .ok_or_else(|| format!("must be one of {} (got \"{t}\")", choices.join(", "))),
            (Some(choices), ConfigValue::Number(n)) => Err(format!("must be one of {} (got {n})", choices.join(", "))),
            (None, ConfigValue::Text(t)) => Err(format!("must be a number (got \"{t}\")")),
            (None, ConfigValue::Number(n)) => {
                let (lo, hi) = (self.min.unwrap_or(f64::MIN), self.max.unwrap_or(f64::MAX));
                if n.is_finite() && (lo..=hi).contains(n) {
                    Ok(*n as f32)
                } else {
                    Err(format!("must be between {lo} and {hi}{} (got {n})", unit_suffix(&self.unit)))
                }
            }
        }
    }
}

fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() { String::new() } else { format!(" {unit}") }
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
struct Ticking;

impl Ticking {
    fn new() -> Self {
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

/// Where compiled modules are cached: `FXGRAPH_CACHE_DIR`, else `$XDG_CACHE_HOME/fxgraph/modules`, else
/// `$HOME/.cache/fxgraph/modules`; none if no such variable is set.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FXGRAPH_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("fxgraph").join("modules"))
}

/// The cache file for a module's bytes: the SHA-256 of the bytes and a hash of the engine's compatibility
/// (wasmtime version and compilation settings), so a different module or engine never hits.
fn cache_file(bytes: &[u8]) -> Option<PathBuf> {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine().precompile_compatibility_hash().hash(&mut engine_hash);
    Some(cache_dir()?.join(format!("{hex}-{:016x}.cwasm", engine_hash.finish())))
}

/// Loads a module compiled earlier by this host from the disk cache.
#[allow(unsafe_code)] // Deserializing compiled code is unsafe in wasmtime; see the SAFETY note.
fn load_cached(path: &Path) -> Option<Module> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is in the user's own cache directory and was written by `store_cached` from
    // `Module::serialize` of this engine (its name carries the SHA-256 of the source module and the engine's
    // compatibility hash, and wasmtime checks the compatibility header again). Whoever can write there can
    // already run code as the user, so trusting it adds no capability.
    unsafe { Module::deserialize_file(engine(), path) }.ok()
}

/// Writes a compiled module to the disk cache, atomically (temporary file, then rename); failures only
/// cost the next start its speed.
fn store_cached(path: &Path, module: &Module) {
    let Ok(bytes) = module.serialize() else { return };
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_ok() {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
}

/// Compiles a module once per process (later calls share it) and once per machine (through the disk cache),
/// and checks its imports.
///
/// # Errors
/// A message for a file that cannot be read, is not WebAssembly, or imports anything but the ABI's
/// functions (naming the import).
pub fn compile(path: &Path) -> Result<Module, String> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let cache = MODULES.get_or_init(Default::default);
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(m.clone());
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !bytes.starts_with(b"\0asm") {
        return Err(format!("{} is not a WebAssembly module", path.display()));
    }
    let cached = cache_file(&bytes);
    let module = match cached.as_deref().and_then(load_cached) {
        Some(module) => module,
        None => {
            let module = Module::new(engine(), &bytes)
                .map_err(|e| format!("{} is not a valid WebAssembly module: {e:#}", path.display()))?;
            if let Some(file) = &cached {
                store_cached(file, &module);
            }
            module
        }
    };
    for import in module.imports() {
        if import.module() != "fxgraph" || !ALLOWED_IMPORTS.contains(&import.name()) {
            return Err(format!(
                "{} imports `{}.{}`, which the sandbox does not provide (allowed: fxgraph.log, fxgraph.emit_event)",
                path.display(),
                import.module(),
                import.name()
            ));
        }
    }
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, module.clone());
    Ok(module)
}

impl WasmSpec {
    fn module_path(&self, base_dir: &Path) -> PathBuf {
        base_dir.join(&self.path)
    }
}

impl NodeSpec for WasmSpec {
    fn kind(&self) -> &'static str {
        "Wasm"
    }

    fn validate(&self, ctx: &BuildContext<'_>) -> Result<(), ParamError> {
        let path = self.module_path(ctx.base_dir);
        let manifest = Manifest::for_module(&path).map_err(|e| ParamError::new("path", e))?;
        manifest.resolve(&self.config)?;
        compile(&path).map_err(|e| ParamError::new("path", e))?;
        Ok(())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, NodeError> {
        let path = self.module_path(ctx.base_dir);
        let manifest = Manifest::for_module(&path).map_err(NodeError)?;
        let params = manifest.resolve(&self.config).map_err(|e| NodeError(e.to_string()))?;
        let module = compile(&path).map_err(NodeError)?;
        let pre = prelink(&module).map_err(NodeError)?;
        Ok(Box::new(WasmProcessor::new(pre, manifest, params, self.on_fault)))
    }
}

/// Messages a plugin may leave between two drains; later ones are counted as dropped.
pub const MESSAGE_SLOTS: usize = 64;
/// Bytes kept of one message.
pub const MESSAGE_BYTES: usize = 240;

/// One preallocated message slot.
#[derive(Clone, Copy)]
struct Slot {
    kind: MessageKind,
    len: usize,
    bytes: [u8; MESSAGE_BYTES],
}

impl Slot {
    /// The message, with invalid UTF-8 replaced.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.len]).into_owned()
    }
}

/// Per-instance host state: the memory cap, whether a block is being processed, and message slots filled
/// by the `log` and `emit_event` imports without allocating.
struct HostState {
    memory_cap: usize,
    in_block: bool,
    slots: Vec<Slot>,
    used: usize,
    dropped: u64,
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
        // No growth while processing a block, and never past the cap.
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
struct Live {
    store: Store<HostState>,
    memory: Memory,
    process: TypedFunc<i32, i32>,
    set_param: TypedFunc<(i32, f32), i32>,
    stop: TypedFunc<(), ()>,
    cleanup: TypedFunc<(), ()>,
    /// Byte offsets of the input and output planes, validated once.
    input: usize,
    output: usize,
    /// Memory size when the buffers were validated.
    memory_size: usize,
}

/// Why a plugin was faulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Trap(String),
    ErrorReturn(i32),
    BadOutput,
    OverBudget,
    MemoryGrew,
}

/// Links a module against the ABI's imports once; each instance (the first, and each re-creation after a
/// fault) is then instantiated from it without resolving imports again.
fn prelink(module: &Module) -> Result<InstancePre<HostState>, String> {
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

/// The audio side of a `Wasm` node.
pub struct WasmProcessor {
    pre: InstancePre<HostState>,
    manifest: Manifest,
    params: Vec<(i32, f32)>,
    on_fault: OnFault,
    config: Option<ProcessConfig>,
    live: Option<Live>,
    faults: u32,
    /// Messages not yet handed to the control side that could not stay in an instance's slots: faults, and
    /// what a faulted instance said before it was dropped.
    pending: Vec<(MessageKind, String)>,
    block: u64,
    retry_at: u64,
    slow_blocks: u32,
    budget: Duration,
    deadline_ticks: u64,
    _ticking: Ticking,
}

impl WasmProcessor {
    fn new(pre: InstancePre<HostState>, manifest: Manifest, params: Vec<(i32, f32)>, on_fault: OnFault) -> Self {
        let budget = Duration::from_micros(manifest.block_budget_us.max(1));
        let deadline_ticks =
            (budget.as_micros() as u64 * DEADLINE_FACTOR).div_ceil(TICK.as_micros() as u64).max(MIN_DEADLINE_TICKS);
        Self {
            pre,
            manifest,
            params,
            on_fault,
            config: None,
            live: None,
            faults: 0,
            pending: Vec::new(),
            block: 0,
            retry_at: 0,
            slow_blocks: 0,
            budget,
            deadline_ticks,
            _ticking: Ticking::new(),
        }
    }

    /// Creates, checks and prepares an instance: ABI version, parameters, `fxg_initialize`, buffer table.
    fn instantiate(&self, config: &ProcessConfig) -> Result<Live, String> {
        let empty = Slot { kind: MessageKind::Log(0), len: 0, bytes: [0; MESSAGE_BYTES] };
        let state = HostState {
            memory_cap: self.manifest.memory_cap(),
            in_block: false,
            slots: vec![empty; MESSAGE_SLOTS],
            used: 0,
            dropped: 0,
        };
        let mut store = Store::new(engine(), state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(SETUP_DEADLINE_TICKS);
        let instance: Instance = self.pre.instantiate(&mut store).map_err(|e| format!("cannot instantiate: {e:#}"))?;
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
        for &(id, value) in &self.params {
            store.set_epoch_deadline(SETUP_DEADLINE_TICKS);
            let code = set_param.call(&mut store, (id, value)).map_err(|e| call_err("fxg_set_param", e))?;
            if code != 0 {
                return Err(format!("fxg_set_param({id}, {value}) returned error {code}"));
            }
        }
        store.set_epoch_deadline(SETUP_DEADLINE_TICKS);
        let (ch, max_block) = (config.channels, config.max_block);
        let code = initialize
            .call(&mut store, (config.sample_rate as i32, ch as i32, max_block as i32))
            .map_err(|e| call_err("fxg_initialize", e))?;
        if code != 0 {
            return Err(format!("fxg_initialize returned error {code}"));
        }
        store.set_epoch_deadline(SETUP_DEADLINE_TICKS);
        let table = buffers.call(&mut store, ()).map_err(|e| call_err("fxg_buffers", e))? as u32 as usize;
        let (input, output) = read_table(memory.data(&store), table)?;
        let memory_size = memory.data_size(&store);
        let plane = ch.checked_mul(max_block).and_then(|n| n.checked_mul(4)).ok_or("buffer size overflows")?;
        for (name, offset) in [("input", input), ("output", output)] {
            let end = offset.checked_add(plane).ok_or("buffer range overflows")?;
            if offset % 4 != 0 {
                return Err(format!("the {name} buffer at {offset} is not aligned to 4 bytes"));
            }
            if end > memory_size {
                return Err(format!(
                    "the {name} buffer ({plane} bytes at {offset}) ends past the module's memory ({memory_size} bytes)"
                ));
            }
        }
        if input < output + plane && output < input + plane {
            return Err(format!("the input ({input}) and output ({output}) buffers overlap"));
        }
        store.set_epoch_deadline(SETUP_DEADLINE_TICKS);
        start.call(&mut store, ()).map_err(|e| call_err("fxg_start", e))?;
        Ok(Live { store, memory, process, set_param, stop, cleanup, input, output, memory_size })
    }

    fn fault(&mut self, fault: Fault) {
        self.faults += 1;
        // The fault path may allocate: it leaves the real-time contract anyway (the instance is rebuilt).
        let permanent = if self.faults >= MAX_FAULTS { "; bypassed for good" } else { "" };
        if let Some(live) = &mut self.live {
            // What the plugin said before it faulted goes out with the fault.
            let state = live.store.data_mut();
            for slot in &state.slots[..state.used] {
                self.pending.push((slot.kind, slot.text()));
            }
        }
        self.pending.push((MessageKind::Fault, format!("fault {} of {MAX_FAULTS}: {fault:?}{permanent}", self.faults)));
        // Dropped, never re-entered. A fresh instance follows after 2, 4, 8, 16 blocks.
        self.live = None;
        self.retry_at = self.block + (1u64 << self.faults.min(16));
    }
}

/// A trap's kind, or the error's text.
fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => format!("{e:#}"),
    }
}

/// Reads the guest's buffer table (two little-endian u32 offsets) with checked bounds.
fn read_table(memory: &[u8], at: usize) -> Result<(usize, usize), String> {
    let bytes = at
        .checked_add(8)
        .and_then(|end| memory.get(at..end))
        .ok_or(format!("the buffer table at {at} lies outside the module's memory ({} bytes)", memory.len()))?;
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
    Ok((word(0), word(4)))
}

impl Processor for WasmProcessor {
    fn initialize(&mut self, config: &ProcessConfig) -> Result<(), NodeError> {
        self.live = Some(self.instantiate(config).map_err(|e| NodeError(format!("{}: {e}", self.manifest.id)))?);
        self.config = Some(*config);
        Ok(())
    }

    fn process(&mut self, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
        self.block += 1;
        let (Some(config), n) = (self.config, input.frames()) else { return };
        if self.live.is_none() && self.faults < MAX_FAULTS && self.block >= self.retry_at {
            // Recovery: a fresh instance from the compiled module (this allocates, after a fault only).
            match self.instantiate(&config) {
                Ok(live) => self.live = Some(live),
                Err(e) => self.fault(Fault::Trap(e)),
            }
        }
        let Some(live) = &mut self.live else {
            bypass(self.on_fault, input, output);
            return;
        };
        let plane = 4 * config.max_block;
        {
            let mem = live.memory.data_mut(&mut live.store);
            for c in 0..input.channels() {
                let at = live.input + c * plane;
                for (dst, s) in mem[at..at + 4 * n].chunks_exact_mut(4).zip(input.channel(c)) {
                    dst.copy_from_slice(&s.to_le_bytes());
                }
            }
        }
        live.store.data_mut().in_block = true;
        live.store.set_epoch_deadline(self.deadline_ticks);
        let started = Instant::now();
        let result = live.process.call(&mut live.store, n as i32);
        let elapsed = started.elapsed();
        live.store.data_mut().in_block = false;
        let fault = match result {
            Err(e) => Some(Fault::Trap(describe(&e))),
            Ok(0) if live.memory.data_size(&live.store) != live.memory_size => Some(Fault::MemoryGrew),
            Ok(0) => {
                let mem = live.memory.data(&live.store);
                let mut bad = false;
                for c in 0..output.channels() {
                    let at = live.output + c * plane;
                    for (y, src) in output.channel_mut(c).iter_mut().zip(mem[at..at + 4 * n].chunks_exact(4)) {
                        let v = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
                        // NaN fails `is_finite`, and infinity too.
                        bad |= !v.is_finite() || v.abs() > ABSURD;
                        *y = v;
                    }
                }
                bad.then_some(Fault::BadOutput)
            }
            Ok(code) => Some(Fault::ErrorReturn(code)),
        };
        self.slow_blocks = if elapsed > self.budget { self.slow_blocks + 1 } else { 0 };
        let fault = fault.or((self.slow_blocks >= WATCHDOG_BLOCKS).then_some(Fault::OverBudget));
        if let Some(fault) = fault {
            self.slow_blocks = 0;
            self.fault(fault);
            bypass(self.on_fault, input, output);
        }
    }

    fn faults(&self) -> u64 {
        u64::from(self.faults)
    }

    fn memory(&self) -> Option<(usize, usize)> {
        let live = self.live.as_ref()?;
        Some((live.memory.data_size(&live.store), self.manifest.memory_cap()))
    }

    fn drain_messages(&mut self, sink: &mut dyn FnMut(Message)) {
        let source = &self.manifest.id;
        let message = |kind, text: String| Message { node: String::new(), source: source.clone(), kind, text };
        for (kind, text) in self.pending.drain(..) {
            sink(message(kind, text));
        }
        if let Some(live) = &mut self.live {
            let state = live.store.data_mut();
            for slot in &state.slots[..state.used] {
                sink(message(slot.kind, slot.text()));
            }
            if state.dropped > 0 {
                sink(message(MessageKind::Dropped(state.dropped), format!("{} messages dropped", state.dropped)));
            }
            state.used = 0;
            state.dropped = 0;
        }
    }

    /// Sets a parameter between blocks (for automation), by id.
    ///
    /// # Errors
    /// If the plugin declares no such parameter, the value is out of its range, or the plugin refuses it.
    fn set_param(&mut self, id: i32, value: f32) -> Result<(), String> {
        let decl = self.manifest.parameters.iter().find(|p| p.id == id).ok_or(format!("no parameter {id}"))?;
        decl.value_of(&ConfigValue::Number(f64::from(value)))?;
        if let Some(slot) = self.params.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = value;
        }
        if let Some(live) = &mut self.live {
            live.store.set_epoch_deadline(self.deadline_ticks);
            match live.set_param.call(&mut live.store, (id, value)) {
                Ok(0) => {}
                Ok(code) => return Err(format!("the plugin refused: error {code}")),
                Err(e) => {
                    let reason = describe(&e);
                    self.fault(Fault::Trap(reason.clone()));
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(live) = &mut self.live {
            live.store.set_epoch_deadline(self.deadline_ticks);
            if live.stop.call(&mut live.store, ()).is_err() {
                self.live = None;
            }
        }
    }

    fn cleanup(&mut self) {
        if let Some(mut live) = self.live.take() {
            live.store.set_epoch_deadline(self.deadline_ticks);
            let _ = live.cleanup.call(&mut live.store, ());
        }
    }
}

fn bypass(on_fault: OnFault, input: &AudioIn<'_>, output: &mut AudioOut<'_>) {
    match on_fault {
        OnFault::Dry => output.copy_from(input),
        OnFault::Silence => output.fill_zero(),
    }
}

/// The plugin's manifest and the module's check, for `fxgraph plugin` and tools.
///
/// # Errors
/// As [`Manifest::for_module`] and [`compile`].
pub fn inspect(path: &Path) -> Result<(Manifest, Module), String> {
    let manifest = Manifest::for_module(path)?;
    let module = compile(path)?;
    Ok((manifest, module))
}
