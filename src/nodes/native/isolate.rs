//! The out-of-process tier: a native or LADSPA plugin run by a child process (`fxgraph` started again as a
//! plugin host), audio exchanged through shared memory with one wake-up each way per block.
//!
//! - The host creates a memory file (`memfd`) holding a header and the input and output planes, starts the
//!   child with it as file descriptor 3, and waits (on the control side) until the child has loaded and set
//!   the plugin up.
//! - Per block the host copies the input into the shared planes, bumps the header's `request` word and
//!   wakes the child with a futex; the child runs the plugin on private buffers (with a guard page after
//!   them, so writing past its output kills the child, not the host), copies the output back, sets `done`
//!   and wakes the host. The host spins briefly, then waits on `done` in slices of a millisecond, checking
//!   that the child still lives.
//! - The deadline is the block's real-time duration, at least 5 ms, of the child's own time: the CPU time
//!   it used on the block (the child notes its process CPU clock when it takes the request; the host
//!   reads the same clock) plus any time the host finds it asleep (blocked, stopped) after the deadline
//!   has passed in wall time. Time the child spends waiting for a CPU is not its own: on a busy machine a
//!   block may take longer, which is late, not a fault.
//! - A child that dies (segfault, abort, exit) or uses up its deadline is a fault like a trapped
//!   WebAssembly plugin: the node is bypassed, counted and reported, the child is killed and reaped on the
//!   control side, and a new one is started with backoff. Past the deadline in wall time the host waits
//!   only while the child is runnable and has not used its time.
//! - Parameter changes travel in the header (values and dirty flags) with the next block: no extra round
//!   trip. The child dies with its parent (`PR_SET_PDEATHSIG`).
//!
//! This is the one place the audio side waits: for the child, bounded by the deadline. Isolation trades
//! that wait and two copies per block (see BENCHMARKS.md for the round trip) for a host that survives the
//! plugin.
#![allow(unsafe_code)] // Shared memory, futexes and process set-up; see the SAFETY notes.

use crate::clock::CpuMark;
use crate::node::AudioOut;
use crate::node::{PollContext, ProcessConfig};
use crate::nodes::plugin::{Counts, Fault, Instance};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The hidden first argument that makes `fxgraph` a plugin host.
pub const HOST_ARG: &str = "__plugin-host";
pub(super) const MAGIC: u32 = 0x4678_4748; // "FxGH"
pub(super) const MAX_PARAMS: usize = 1024;
pub(super) const STATUS: usize = crate::node::STATUS_VALUES;
pub(super) const HEADER_BYTES: usize = 32768;

pub(super) const CMD_PROCESS: u32 = 1;
pub(super) const CMD_START: u32 = 2;
pub(super) const CMD_STOP: u32 = 3;
pub(super) const CMD_QUIT: u32 = 4;

/// The shared header. The host writes the command fields and bumps `request`; the child answers by
/// setting `done` to the same number. Each side only touches the other's fields between those two points.
#[repr(C)]
pub(super) struct Header {
    pub(super) magic: u32,
    /// The node's ports and their widths: the input planes, then the output planes, in port order.
    pub(super) in_ports: u32,
    pub(super) out_ports: u32,
    pub(super) in_widths: [u32; crate::node::MAX_PORTS],
    pub(super) out_widths: [u32; crate::node::MAX_PORTS],
    pub(super) max_block: u32,
    /// 0 while the child sets up, 1 ready, 2 failed (`error` says why).
    pub(super) ready: AtomicU32,
    pub(super) request: AtomicU32,
    pub(super) done: AtomicU32,
    pub(super) command: AtomicU32,
    pub(super) frames: AtomicU32,
    pub(super) result: AtomicI32,
    /// The last request the child took, and its process CPU clock (ns) when it took it.
    pub(super) picked: AtomicU32,
    pub(super) cpu_at_pick: AtomicU64,
    /// Non-finite output samples the child replaced, in all.
    pub(super) replaced: AtomicU64,
    /// Heap calls the plugin made in its audio functions, in all (where the child watches them).
    pub(super) heap_calls: AtomicU64,
    pub(super) latency: AtomicU32,
    pub(super) error_len: AtomicU32,
    pub(super) status: [AtomicU64; STATUS],
    /// Parameter values (`f64` bits) by slot, with a dirty flag each; `param_ids` maps slots to ids.
    pub(super) param_count: AtomicU32,
    pub(super) param_ids: [AtomicU32; MAX_PARAMS],
    pub(super) param_dirty: [AtomicU32; MAX_PARAMS],
    pub(super) param_values: [AtomicU64; MAX_PARAMS],
    /// Values the plugin set itself, by slot (the child writes them, the parent takes them); `plugin_any`
    /// says there are some, so the parent looks at the slots only then.
    pub(super) plugin_any: AtomicU32,
    pub(super) plugin_dirty: [AtomicU32; MAX_PARAMS],
    pub(super) plugin_values: [AtomicU64; MAX_PARAMS],
    pub(super) error: [u8; 512],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

impl Header {
    /// The widths of the node's input ports and of its output ports.
    pub(super) fn widths(&self) -> (Vec<usize>, Vec<usize>) {
        let list = |w: &[u32], n: u32| w[..(n as usize).min(w.len())].iter().map(|&x| x as usize).collect();
        (list(&self.in_widths, self.in_ports), list(&self.out_widths, self.out_ports))
    }

    /// The block's input channels: every input port's, in order.
    fn in_channels(&self) -> usize {
        self.in_widths[..(self.in_ports as usize).min(self.in_widths.len())].iter().map(|&w| w as usize).sum()
    }
}

/// What the child loads.
#[derive(Debug, Clone)]
pub enum Target {
    Native(PathBuf),
    /// The library and the plugin's label.
    Ladspa(PathBuf, String),
    /// The plugin's URI, and the preset whose state it restores (empty for none).
    Lv2(String, String),
    /// The bundle, the plugin's id and the state it restores (hexadecimal; empty for none).
    Clap(PathBuf, String, String),
}

static HOST_PROGRAM: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Sets the plugin host program for this process (instead of `$FXGRAPH_PLUGIN_HOST`).
pub fn set_host_program(path: PathBuf) {
    *HOST_PROGRAM.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
}

/// The plugin host program: the one [`set_host_program`] gave, else `$FXGRAPH_PLUGIN_HOST`, else this
/// program (which must call [`run_if_plugin_host`](super::run_if_plugin_host) first thing in `main`, as `fxgraph` does).
pub fn host_program() -> crate::Result<PathBuf> {
    if let Some(p) = HOST_PROGRAM.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return Ok(p);
    }
    match std::env::var_os("FXGRAPH_PLUGIN_HOST") {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe()
            .map_err(|e| crate::Error::Io(format!("cannot find this program to start a plugin host: {e}"))),
    }
}

/// Checks that a plugin host can be started.
///
/// # Errors
/// A message if the host program is missing.
pub fn check_host() -> crate::Result<()> {
    let p = host_program()?;
    if p.is_file() {
        Ok(())
    } else {
        Err(crate::Error::Plugin(format!(
            "the plugin host {} does not exist (set FXGRAPH_PLUGIN_HOST to the fxgraph program)",
            p.display()
        )))
    }
}

/// The shared memory: a memory file mapped in this process.
pub(super) struct Shm {
    pub(super) fd: libc::c_int,
    pub(super) base: *mut u8,
    pub(super) len: usize,
}

impl Shm {
    fn create(len: usize) -> Result<Self, String> {
        // SAFETY: plain system calls with checked results.
        unsafe {
            let fd = libc::memfd_create(c"fxgraph-plugin".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
            }
            if libc::ftruncate(fd, len as libc::off_t) != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(format!("ftruncate: {e}"));
            }
            Self::map(fd, len)
        }
    }

    /// # Safety
    /// `fd` is a memory file of at least `len` bytes, owned by the returned value.
    pub(super) unsafe fn map(fd: libc::c_int, len: usize) -> Result<Self, String> {
        // SAFETY: per the caller's contract.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Self { fd, base: base.cast(), len })
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a zero-initialized or host-initialized Header; all shared fields
        // are atomics.
        unsafe { &*self.base.cast::<Header>() }
    }

    /// Plane `c` of the inputs (`out == false`) or outputs, `max_block` samples.
    pub(super) fn plane(&self, out: bool, c: usize) -> *mut f32 {
        let h = self.header();
        let (ins, mb) = (h.in_channels(), h.max_block as usize);
        let at = HEADER_BYTES + 4 * mb * (c + if out { ins } else { 0 });
        // SAFETY: within the mapping, whose size was computed from the same numbers.
        unsafe { self.base.add(at).cast::<f32>() }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmapping and closing what `create`/`map` made.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
            libc::close(self.fd);
        }
    }
}

fn shm_len(in_channels: usize, out_channels: usize, max_block: usize) -> usize {
    let len = HEADER_BYTES + 4 * (in_channels + out_channels) * max_block;
    len.div_ceil(4096) * 4096
}

pub(super) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT on a shared 32-bit word; returns on change, wake, timeout or signal.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &ts as *const libc::timespec, 0, 0);
    }
}

pub(super) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a shared 32-bit word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
    }
}

/// The calling process's CPU time (ns), all threads.
pub(super) fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given (and fails cleanly for a bad clock).
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// How the host sees the child's time: its process CPU clock, and its state in `/proc` (both opened on
/// the control side; read on the audio side only once a block is past its deadline in wall time).
struct ChildClock {
    cpu: Option<libc::clockid_t>,
    stat: Option<std::fs::File>,
}

impl ChildClock {
    fn open(pid: u32) -> Self {
        let mut id: libc::clockid_t = 0;
        // SAFETY: writes the clock id of a process we started (and have not reaped).
        let cpu = (unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut id) } == 0).then_some(id);
        Self { cpu, stat: std::fs::File::open(format!("/proc/{pid}/stat")).ok() }
    }

    /// The child's CPU time (ns), if the clock can be read.
    fn cpu_ns(&self) -> Option<u64> {
        self.cpu.map(clock_ns).filter(|&t| t > 0)
    }

    /// Whether the child is runnable or running (`R` in `/proc/PID/stat`); unknown counts as not.
    fn runnable(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 512];
        let Some(n) = self.stat.as_ref().and_then(|f| f.read_at(&mut buf, 0).ok()) else { return false };
        // `PID (COMM) STATE ...`: the command may hold anything, so the state follows the last ')'.
        let text = &buf[..n];
        text.iter().rposition(|&b| b == b')').and_then(|i| text.get(i + 2)) == Some(&b'R')
    }
}

/// A plugin running in a child process (host side).
pub struct Isolated {
    shm: Shm,
    child: std::process::Child,
    clock: ChildClock,
    in_channels: usize,
    out_channels: usize,
    deadline: Duration,
    slots: Vec<u32>,
    status: Vec<f64>,
    /// Non-finite output samples replaced since the last [`Instance::take_counts`].
    replaced: u64,
    latency: usize,
    blocks: u64,
    gone: bool,
    /// Calls let run past the deadline in wall time because the child had not used its time.
    preempted: u64,
    /// The child's count of replaced samples at the last [`Instance::take_counts`].
    child_replaced: u64,
    /// The child's count of heap calls at the last [`Instance::take_counts`].
    child_heap_calls: u64,
}

// SAFETY: the mapping is used by one thread at a time (the engine moves instances, never shares them).
unsafe impl Send for Isolated {}

impl Isolated {
    /// Starts a child running `target` and waits (up to five seconds) until it is set up (control side).
    ///
    /// # Errors
    /// A message if the child cannot start, or says why the plugin cannot be set up, or dies.
    pub fn spawn(
        target: Target,
        config: &ProcessConfig,
        params: &[(u32, f64)],
        status_count: usize,
    ) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        if params.len() > MAX_PARAMS {
            return Err(format!("an isolated plugin may have at most {MAX_PARAMS} parameters"));
        }
        let (ins, outs) = (config.layout.input_channels(), config.layout.output_channels());
        let shm = Shm::create(shm_len(ins, outs, config.max_block))?;
        {
            // SAFETY: freshly mapped and zeroed; nobody else sees it yet.
            let h = unsafe { &mut *shm.base.cast::<Header>() };
            h.magic = MAGIC;
            let (iw, ow) = (config.layout.inputs(), config.layout.outputs());
            h.in_ports = iw.len().min(crate::node::MAX_PORTS) as u32;
            h.out_ports = ow.len().min(crate::node::MAX_PORTS) as u32;
            for (d, w) in h.in_widths.iter_mut().zip(&iw) {
                *d = *w as u32;
            }
            for (d, w) in h.out_widths.iter_mut().zip(&ow) {
                *d = *w as u32;
            }
            h.max_block = config.max_block as u32;
            h.param_count.store(params.len() as u32, Ordering::Relaxed);
            for (i, &(id, v)) in params.iter().enumerate() {
                h.param_ids[i].store(id, Ordering::Relaxed);
                h.param_values[i].store(v.to_bits(), Ordering::Relaxed);
            }
        }
        let program = host_program().map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new(&program);
        cmd.arg(HOST_ARG).arg(config.sample_rate.to_string());
        match &target {
            Target::Native(p) => cmd.arg("native").arg(p).arg(""),
            Target::Ladspa(p, label) => cmd.arg("ladspa").arg(p).arg(label),
            Target::Lv2(uri, preset) => cmd.arg("lv2").arg(uri).arg(preset),
            Target::Clap(p, id, state) => cmd.arg("clap").arg(p).arg(id).arg(state),
        };
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let fd = shm.fd;
        // SAFETY: between fork and exec only async-signal-safe calls: dup2 or fcntl, and prctl.
        unsafe {
            cmd.pre_exec(move || {
                // The memory file becomes fd 3, open across exec (dup2 clears close-on-exec; when it is
                // fd 3 already, the flag is cleared directly).
                let r = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start the plugin host {}: {e}", program.display()))?;
        let started = Instant::now();
        loop {
            match shm.header().ready.load(Ordering::Acquire) {
                1 => break,
                2 => {
                    let h = shm.header();
                    let n = (h.error_len.load(Ordering::Relaxed) as usize).min(h.error.len());
                    let msg = String::from_utf8_lossy(&h.error[..n]).into_owned();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(msg);
                }
                _ => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the plugin host exited while setting the plugin up ({status})"));
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the plugin host did not set the plugin up within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let block = Duration::from_secs_f64(config.max_block as f64 / f64::from(config.sample_rate));
        let latency = shm.header().latency.load(Ordering::Relaxed) as usize;
        Ok(Self {
            clock: ChildClock::open(child.id()),
            deadline: block.max(Duration::from_millis(5)),
            slots: params.iter().map(|p| p.0).collect(),
            status: vec![0.0; status_count.min(STATUS)],
            shm,
            child,
            in_channels: ins,
            out_channels: outs,
            replaced: 0,
            latency,
            blocks: 0,
            gone: false,
            preempted: 0,
            child_replaced: 0,
            child_heap_calls: 0,
        })
    }

    /// One round trip: `command`, then wait for the answer until the child has used its deadline.
    fn call(&mut self, command: u32, frames: usize) -> Result<i32, Fault> {
        if self.gone {
            return Err(Fault::Crashed(0));
        }
        let request = {
            let h = self.shm.header();
            h.command.store(command, Ordering::Relaxed);
            h.frames.store(frames as u32, Ordering::Relaxed);
            let request = h.request.load(Ordering::Relaxed).wrapping_add(1);
            h.request.store(request, Ordering::Release);
            futex_wake(&h.request);
            request
        };
        let mut check_at = Instant::now() + self.deadline;
        // Past the deadline: when the child was last checked, the time it was seen asleep since, and
        // whether this call has been let run on.
        let mut checked: Option<Instant> = None;
        let mut asleep = Duration::ZERO;
        let mut extended = false;
        let mut spins = 0u32;
        loop {
            let done = self.shm.header().done.load(Ordering::Acquire);
            if done == request {
                return Ok(self.shm.header().result.load(Ordering::Relaxed));
            }
            if spins < 4000 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now >= check_at {
                // The deadline has passed in wall time: the child is charged its CPU time on this request,
                // and the time it spent asleep (blocked or stopped) rather than waiting for a CPU.
                let runnable = self.clock.runnable();
                if let Some(prev) = checked
                    && !runnable
                {
                    asleep += now - prev;
                }
                checked = Some(now);
                let used = Duration::from_nanos(self.used_on(request).unwrap_or(u64::MAX)) + asleep;
                if used >= self.deadline {
                    self.gone = true;
                    return Err(self.why_gone().unwrap_or(Fault::TimedOut));
                }
                if !extended {
                    extended = true;
                    self.preempted += 1;
                }
                check_at = now + Duration::from_millis(1);
            }
            futex_wait(&self.shm.header().done, done, (check_at - now).min(Duration::from_millis(1)));
            if self.shm.header().done.load(Ordering::Acquire) != request
                && let Some(f) = self.why_gone()
            {
                self.gone = true;
                return Err(f);
            }
        }
    }

    /// The child's CPU time on `request` so far (ns): 0 before it took it, `None` if its clock cannot be
    /// read (then the wall time is charged, as a plain deadline would).
    fn used_on(&self, request: u32) -> Option<u64> {
        let h = self.shm.header();
        if h.picked.load(Ordering::Acquire) != request {
            return Some(0);
        }
        let now = self.clock.cpu_ns()?;
        Some(now.saturating_sub(h.cpu_at_pick.load(Ordering::Relaxed)))
    }

    /// The child's end, if it has ended.
    fn why_gone(&mut self) -> Option<Fault> {
        use std::os::unix::process::ExitStatusExt;
        match self.child.try_wait() {
            Ok(Some(status)) => Some(Fault::Crashed(status.signal().unwrap_or(-status.code().unwrap_or(0)))),
            _ => None,
        }
    }
}

impl Instance for Isolated {
    fn set_param(&mut self, id: u32, value: f64) -> Result<i32, Fault> {
        if let Some(slot) = self.slots.iter().position(|&s| s == id) {
            let h = self.shm.header();
            h.param_values[slot].store(value.to_bits(), Ordering::Relaxed);
            h.param_dirty[slot].store(1, Ordering::Relaxed);
        }
        Ok(0)
    }

    fn process(&mut self, audio: &mut AudioOut<'_>, _mark: &CpuMark) -> Result<(), Fault> {
        let n = audio.frames();
        for c in 0..self.in_channels.min(audio.channels()) {
            // SAFETY: `n` (at most max_block) samples of plane `c`; the child does not touch them now.
            unsafe { std::ptr::copy_nonoverlapping(audio.channel(c).as_ptr(), self.shm.plane(false, c), n) };
        }
        match self.call(CMD_PROCESS, n)? {
            0 => {}
            fxgraph_plugin::ERR_PANIC => return Err(Fault::Panicked),
            code => return Err(Fault::ErrorReturn(code)),
        }
        for c in 0..self.out_channels.min(audio.channels()) {
            let out = audio.channel_mut(c);
            // SAFETY: as above, the output plane, written by the child before it answered.
            unsafe { std::ptr::copy_nonoverlapping(self.shm.plane(true, c), out.as_mut_ptr(), n) };
            self.replaced += super::sanitize(out);
        }
        self.blocks += 1;
        Ok(())
    }

    fn start(&mut self) -> Result<(), Fault> {
        self.call(CMD_START, 0).map(|_| ())
    }

    fn stop(&mut self) -> Result<(), Fault> {
        self.call(CMD_STOP, 0).map(|_| ())
    }

    fn cleanup(&mut self) {}

    fn drain(&mut self, ctx: &mut dyn PollContext) {
        let h = self.shm.header();
        if h.plugin_any.swap(0, Ordering::Acquire) != 0 {
            for i in 0..self.slots.len() {
                if h.plugin_dirty[i].swap(0, Ordering::Acquire) != 0 {
                    ctx.param_from_plugin(i, f64::from_bits(h.plugin_values[i].load(Ordering::Relaxed)));
                }
            }
        }
        if !self.status.is_empty() {
            let h = self.shm.header();
            for (v, s) in self.status.iter_mut().zip(&h.status) {
                *v = f64::from_bits(s.load(Ordering::Relaxed));
            }
            ctx.status_values(&self.status);
        }
    }

    fn latency(&self) -> usize {
        self.latency
    }

    fn own_time_ns(&mut self, _mark: &CpuMark) -> u64 {
        // The child waits for the next request now, so its clock stands where the block ended.
        let request = self.shm.header().request.load(Ordering::Relaxed);
        self.used_on(request).unwrap_or(u64::MAX)
    }

    fn take_counts(&mut self) -> Counts {
        // What the child replaced, and anything non-finite that reached the shared planes all the same.
        let child = self.shm.header().replaced.load(Ordering::Relaxed);
        let replaced = std::mem::take(&mut self.replaced) + child.saturating_sub(self.child_replaced);
        self.child_replaced = child;
        let heap = self.shm.header().heap_calls.load(Ordering::Relaxed);
        let heap_calls = heap.saturating_sub(self.child_heap_calls);
        self.child_heap_calls = heap;
        Counts { preempted_calls: std::mem::take(&mut self.preempted), replaced_samples: replaced, heap_calls }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        // Control side: ask politely, then make sure.
        if !self.gone {
            let h = self.shm.header();
            h.command.store(CMD_QUIT, Ordering::Relaxed);
            h.request.fetch_add(1, Ordering::Release);
            futex_wake(&h.request);
            let until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
