//! Watching a plugin that claims to be real-time safe for heap calls on the audio thread.
//!
//! fxgraph's counting allocator sees Rust's allocations only; a plugin's C or C++ calls `malloc`, `free`
//! and `operator new` through its own library's global offset table. [`watch`] points those entries of one
//! loaded plugin library at wrappers that count a call while the calling thread is inside one of the
//! plugin's audio functions ([`in_audio_call`]), then go on to the C library's functions. So a plugin that
//! says it is hard-real-time capable (LV2's `hardRTCapable`; every CLAP plugin, whose `process` must be)
//! and allocates or frees in `run`/`process` is seen and reported, in process and in a child process.
//!
//! What it sees: the calls the plugin's own library makes. Calls made inside other libraries it uses (a
//! convolution engine in a shared library of its own, libstdc++'s internals) go through those libraries'
//! tables and are not counted. ELF on x86-64 and AArch64 Linux; elsewhere [`watch`] does nothing.
#![allow(unsafe_code)] // Reads the dynamic linker's tables and rewrites a library's GOT entries; see the SAFETY notes.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;

thread_local! {
    /// Inside a watched plugin's audio function on this thread.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    /// Heap calls counted on this thread while `IN_CALL` was set.
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` (a plugin's audio function) with this thread's heap calls from watched libraries counted;
/// returns its result and how many there were.
pub(crate) fn in_audio_call<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = CALLS.with(Cell::get);
    let was = IN_CALL.with(|c| c.replace(true));
    let r = f();
    IN_CALL.with(|c| c.set(was));
    (r, CALLS.with(Cell::get) - before)
}

fn note() {
    if IN_CALL.with(Cell::get) {
        CALLS.with(|c| c.set(c.get() + 1));
    }
}

/// The real functions, found once with `dlsym` (the C library's, or libstdc++'s for `operator new`).
struct Real {
    malloc: unsafe extern "C" fn(usize) -> *mut c_void,
    calloc: unsafe extern "C" fn(usize, usize) -> *mut c_void,
    realloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void),
    posix_memalign: unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int,
    aligned_alloc: unsafe extern "C" fn(usize, usize) -> *mut c_void,
}

fn real() -> &'static Real {
    static R: std::sync::OnceLock<Real> = std::sync::OnceLock::new();
    R.get_or_init(|| Real {
        malloc: libc::malloc,
        calloc: libc::calloc,
        realloc: libc::realloc,
        free: libc::free,
        posix_memalign: libc::posix_memalign,
        aligned_alloc: libc::aligned_alloc,
    })
}

/// `operator new`/`delete` as libstdc++ has them, looked up when a library that calls them is watched.
static CXX: [std::sync::atomic::AtomicUsize; 4] = [const { std::sync::atomic::AtomicUsize::new(0) }; 4];

unsafe extern "C" fn w_malloc(n: usize) -> *mut c_void {
    note();
    // SAFETY: the C library's malloc.
    unsafe { (real().malloc)(n) }
}
unsafe extern "C" fn w_calloc(n: usize, size: usize) -> *mut c_void {
    note();
    // SAFETY: the C library's calloc.
    unsafe { (real().calloc)(n, size) }
}
unsafe extern "C" fn w_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    note();
    // SAFETY: the C library's realloc.
    unsafe { (real().realloc)(p, n) }
}
unsafe extern "C" fn w_free(p: *mut c_void) {
    if !p.is_null() {
        note();
    }
    // SAFETY: the C library's free.
    unsafe { (real().free)(p) }
}
unsafe extern "C" fn w_posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> c_int {
    note();
    // SAFETY: the C library's posix_memalign.
    unsafe { (real().posix_memalign)(out, align, n) }
}
unsafe extern "C" fn w_aligned_alloc(align: usize, n: usize) -> *mut c_void {
    note();
    // SAFETY: the C library's aligned_alloc.
    unsafe { (real().aligned_alloc)(align, n) }
}
unsafe extern "C" fn w_new(n: usize) -> *mut c_void {
    note();
    let f = CXX[0].load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: libstdc++'s operator new, found when the entry was rewritten (never 0 then).
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(usize) -> *mut c_void>(f)(n) }
}
unsafe extern "C" fn w_new_array(n: usize) -> *mut c_void {
    note();
    let f = CXX[1].load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: as above, operator new[].
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(usize) -> *mut c_void>(f)(n) }
}
unsafe extern "C" fn w_delete(p: *mut c_void) {
    if !p.is_null() {
        note();
    }
    let f = CXX[2].load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: as above, operator delete.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void)>(f)(p) }
}
unsafe extern "C" fn w_delete_array(p: *mut c_void) {
    if !p.is_null() {
        note();
    }
    let f = CXX[3].load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: as above, operator delete[].
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void)>(f)(p) }
}

/// The symbols rewritten, their wrappers, and for C++'s the slot of the real function in [`CXX`].
fn wrapper(name: &[u8]) -> Option<(usize, Option<usize>)> {
    Some(match name {
        b"malloc" => (w_malloc as *const () as usize, None),
        b"calloc" => (w_calloc as *const () as usize, None),
        b"realloc" => (w_realloc as *const () as usize, None),
        b"free" => (w_free as *const () as usize, None),
        b"posix_memalign" => (w_posix_memalign as *const () as usize, None),
        b"aligned_alloc" => (w_aligned_alloc as *const () as usize, None),
        b"_Znwm" => (w_new as *const () as usize, Some(0)),
        b"_Znam" => (w_new_array as *const () as usize, Some(1)),
        b"_ZdlPv" => (w_delete as *const () as usize, Some(2)),
        b"_ZdaPv" => (w_delete_array as *const () as usize, Some(3)),
        _ => return None,
    })
}

#[cfg(target_arch = "x86_64")]
const RELOCS: [u32; 2] = [6, 7]; // R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT
#[cfg(target_arch = "aarch64")]
const RELOCS: [u32; 2] = [1025, 1026]; // R_AARCH64_GLOB_DAT, R_AARCH64_JUMP_SLOT

/// Rewrites the heap entries of the loaded library at `path` (once per library and process). Returns how
/// many entries now point at the counting wrappers.
///
/// # Errors
/// A message if the library is not loaded in this process.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn watch(path: &Path) -> Result<usize, String> {
    static DONE: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut done = DONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if done.contains(&path) {
        return Ok(0);
    }
    real();
    let mut found = Found { path: &path, base: None, dynamic: std::ptr::null(), relro: (0, 0) };
    // SAFETY: dl_iterate_phdr calls back with each loaded object's header, valid during the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), std::ptr::from_mut(&mut found).cast()) };
    let (Some(base), false) = (found.base, found.dynamic.is_null()) else {
        return Err(format!("{} is not loaded", path.display()));
    };
    // SAFETY: the dynamic section of a loaded object, as the dynamic linker left it (addresses relocated).
    let n = unsafe { rewrite(base, found.dynamic, found.relro) };
    done.push(path);
    Ok(n)
}

/// Elsewhere: nothing is watched.
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
pub(crate) fn watch(_path: &Path) -> Result<usize, String> {
    Ok(0)
}

struct Found<'a> {
    path: &'a Path,
    base: Option<usize>,
    dynamic: *const Dyn,
    /// The part made read-only after relocation (`PT_GNU_RELRO`), as addresses.
    relro: (usize, usize),
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr's arguments: a valid info, and our Found.
    unsafe {
        let found = &mut *data.cast::<Found<'_>>();
        let info = &*info;
        if info.dlpi_name.is_null() {
            return 0;
        }
        let name = CStr::from_ptr(info.dlpi_name.cast::<c_char>());
        let same = std::fs::canonicalize(std::ffi::OsStr::from_encoded_bytes_unchecked(name.to_bytes()))
            .is_ok_and(|p| p == found.path);
        if !same {
            return 0;
        }
        let base = info.dlpi_addr as usize;
        for i in 0..usize::from(info.dlpi_phnum) {
            let ph = &*info.dlpi_phdr.add(i);
            if ph.p_type == libc::PT_DYNAMIC {
                found.base = Some(base);
                found.dynamic = (base + ph.p_vaddr as usize) as *const Dyn;
            }
            if ph.p_type == libc::PT_GNU_RELRO {
                found.relro = (base + ph.p_vaddr as usize, base + (ph.p_vaddr + ph.p_memsz) as usize);
            }
        }
        i32::from(found.base.is_some())
    }
}

/// ELF64's dynamic section entry.
#[repr(C)]
struct Dyn {
    d_tag: i64,
    d_un: u64,
}

/// ELF64's relocation with addend.
#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    _addend: i64,
}

/// # Safety
/// `dynamic` is the relocated dynamic section of the object loaded at `base`, `relro` its `PT_GNU_RELRO`.
unsafe fn rewrite(base: usize, dynamic: *const Dyn, relro: (usize, usize)) -> usize {
    const DT_NULL: i64 = 0;
    const DT_PLTRELSZ: i64 = 2;
    const DT_STRTAB: i64 = 5;
    const DT_SYMTAB: i64 = 6;
    const DT_RELA: i64 = 7;
    const DT_RELASZ: i64 = 8;
    const DT_JMPREL: i64 = 23;
    let (mut symtab, mut strtab, mut tables) = (0usize, 0usize, [(0usize, 0usize); 2]);
    // SAFETY: the caller's contract; the section ends with DT_NULL, and glibc has relocated the addresses.
    unsafe {
        let mut d = dynamic;
        while (*d).d_tag != DT_NULL {
            let v = (*d).d_un as usize;
            match (*d).d_tag {
                DT_SYMTAB => symtab = v,
                DT_STRTAB => strtab = v,
                DT_RELA => tables[0].0 = v,
                DT_RELASZ => tables[0].1 = v,
                DT_JMPREL => tables[1].0 = v,
                DT_PLTRELSZ => tables[1].1 = v,
                _ => {}
            }
            d = d.add(1);
        }
        if symtab == 0 || strtab == 0 {
            return 0;
        }
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let mut n = 0;
        for (at, bytes) in tables {
            if at == 0 {
                continue;
            }
            for i in 0..bytes / std::mem::size_of::<Rela>() {
                let r = &*(at as *const Rela).add(i);
                if !RELOCS.contains(&((r.info & 0xffff_ffff) as u32)) {
                    continue;
                }
                let sym = &*(symtab as *const libc::Elf64_Sym).add((r.info >> 32) as usize);
                let name = CStr::from_ptr((strtab + sym.st_name as usize) as *const c_char);
                let Some((to, cxx)) = wrapper(name.to_bytes()) else { continue };
                if let Some(k) = cxx {
                    let real = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
                    if real.is_null() {
                        continue;
                    }
                    CXX[k].store(real as usize, std::sync::atomic::Ordering::Relaxed);
                }
                let slot = (base + r.offset as usize) as *mut usize;
                // An entry in the pages the dynamic linker made read-only after relocation (RELRO: from
                // the page of its start to the page its end lies in, as glibc protects them) is made
                // writable for the write, then read-only again; any other is writable already.
                let start = (slot as usize) & !(page - 1);
                let protected = relro.0 & !(page - 1) <= start && start < relro.1 & !(page - 1);
                if protected {
                    if libc::mprotect(start as *mut c_void, page, libc::PROT_READ | libc::PROT_WRITE) != 0 {
                        continue;
                    }
                    slot.write_volatile(to);
                    libc::mprotect(start as *mut c_void, page, libc::PROT_READ);
                } else {
                    slot.write_volatile(to);
                }
                n += 1;
            }
        }
        n
    }
}
