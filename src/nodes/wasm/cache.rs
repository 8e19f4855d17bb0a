//! The disk cache of compiled modules, and what it trusts.
//!
//! A compiled module is machine code: wasmtime's `Module::deserialize` runs whatever it is given, outside
//! the sandbox. So the cache takes only what this user wrote:
//! - **The folder** (and every folder above it) passes [`crate::trust::check`]: owned by this user or root,
//!   writable by no one else (a folder above may be, with the sticky bit, as `/tmp`). fxgraph creates the
//!   folders it needs with mode `0700`. A folder that fails is neither read nor written: modules are compiled
//!   from their `.wasm`, and a warning names the folder and the reason, once per process.
//! - **Each file** is a regular file (not a link) owned by this user, that no one else may write, and
//!   starts with an HMAC-SHA256 tag of its name (the module's SHA-256 and the engine's compatibility hash)
//!   and its compiled code, under a random key that only this user can read (`key`, mode `0600`, in the
//!   folder). The tag is checked on the bytes read, before wasmtime sees them, so a planted, renamed,
//!   tampered or truncated file is never run: it is removed (with a warning naming it), and the module is
//!   compiled again and stored anew.

use super::host::engine;
use crate::sha256::{hex, hmac, same};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use wasmtime::Module;

/// Bytes of the tag that starts each cache file, and of the key.
const TAG: usize = 32;

/// Where compiled modules are cached: `FXGRAPH_CACHE_DIR` (set but empty: no disk cache), else
/// `$XDG_CACHE_HOME/fxgraph/modules`, else `$HOME/.cache/fxgraph/modules`; none if no such variable is set.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FXGRAPH_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("fxgraph").join("modules"))
}

/// Logs a warning, once per process for the same text.
fn warn_once(text: String) {
    static SAID: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut said = SAID.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if said.insert(text.clone()) {
        tracing::warn!(target: "fxgraph::plugin", "{text}");
    }
}

/// The opened cache: a trusted folder and this user's key.
pub(super) struct DiskCache {
    dir: PathBuf,
    key: [u8; TAG],
}

/// One module's place in the cache.
pub(super) struct Entry<'a> {
    cache: &'a DiskCache,
    name: String,
}

impl DiskCache {
    /// The cache folder, created (`0700`) if needed, if it and its key can be trusted; else `None`, with a
    /// warning once per process naming the path and the reason. `None` too when there is no cache folder.
    pub fn open() -> Option<Self> {
        let dir = cache_dir()?;
        match Self::open_in(&dir) {
            Ok(cache) => Some(cache),
            Err(why) => {
                warn_once(format!(
                    "not using the compiled-module cache: {why}; WebAssembly modules are compiled from their .wasm"
                ));
                None
            }
        }
    }

    #[cfg(unix)]
    fn open_in(dir: &Path) -> Result<Self, String> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        if !dir.is_dir() {
            // Nothing is created under a folder that others can write.
            if let Some(existing) = dir.ancestors().skip(1).find(|a| a.is_dir()) {
                crate::trust::check(existing).map_err(|u| u.to_string())?;
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("{} cannot be created ({e})", dir.display()))?;
        }
        crate::trust::check(dir).map_err(|u| u.to_string())?;
        let path = dir.join("key");
        let mut key = [0u8; TAG];
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(mut file) => {
                let meta = file.metadata().map_err(|e| format!("{} is not readable ({e})", path.display()))?;
                private_file(&path, &meta, 0o077)?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(|e| format!("{} is not readable ({e})", path.display()))?;
                key = bytes.try_into().map_err(|_| format!("{} is not a key of {TAG} bytes", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut key))
                    .map_err(|e| format!("no random key for the cache ({e})"))?;
                // Another process may create it at the same moment: the first one's key stands.
                let tmp = dir.join(format!("key.tmp-{}", std::process::id()));
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .and_then(|mut f| f.write_all(&key));
                let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
                let _ = std::fs::remove_file(&tmp);
                if linked.is_err() {
                    return Self::open_in_existing(dir);
                }
            }
            Err(e) => return Err(format!("{} is not readable ({e})", path.display())),
        }
        Ok(Self { dir: dir.to_path_buf(), key })
    }

    /// After losing the race to create the key: the other process's key.
    #[cfg(unix)]
    fn open_in_existing(dir: &Path) -> Result<Self, String> {
        if dir.join("key").is_file() { Self::open_in(dir) } else { Err(format!("{} has no key", dir.display())) }
    }

    #[cfg(not(unix))]
    fn open_in(dir: &Path) -> Result<Self, String> {
        Err(crate::trust::check(dir).expect_err("nothing is trusted here").to_string())
    }

    /// The place of the module whose source bytes have this SHA-256.
    pub fn entry(&self, digest: &[u8; 32]) -> Entry<'_> {
        use std::hash::{Hash, Hasher};
        let hex = hex(digest);
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine().precompile_compatibility_hash().hash(&mut engine_hash);
        Entry { cache: self, name: format!("{hex}-{:016x}.cwasm", engine_hash.finish()) }
    }

    /// The tag of a file of this name with this compiled code.
    fn tag(&self, name: &str, code: &[u8]) -> [u8; TAG] {
        hmac(&self.key, &[name.as_bytes(), &[0], code])
    }
}

/// A file that only this user can have written: a regular file (not a link), owned by this user, with none
/// of the permission bits in `denied` (`0o022`: writable by no one else; `0o077`: nor readable).
#[cfg(unix)]
fn private_file(path: &Path, meta: &std::fs::Metadata, denied: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.uid() != crate::trust::current_user() {
        return Err(format!("{} is owned by user {}, not by this user", path.display(), meta.uid()));
    }
    if meta.mode() & denied != 0 {
        let what = if denied & 0o044 != 0 { "readable or writable" } else { "writable" };
        return Err(format!("{} is {what} by others (mode {:o})", path.display(), meta.mode() & 0o7777));
    }
    Ok(())
}

impl Entry<'_> {
    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.cache.dir.join(&self.name)
    }

    /// The compiled module, if the file is there and passes every check; a file that fails is removed,
    /// with a warning naming it.
    #[cfg(unix)]
    #[allow(unsafe_code)] // Deserializing compiled code is unsafe in wasmtime; see the SAFETY note.
    pub fn load(&self) -> Option<Module> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.path();
        let mut file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return self.reject(&format!("cannot be opened ({e})")),
        };
        let checked = file
            .metadata()
            .map_err(|e| format!("{} is not readable ({e})", path.display()))
            .and_then(|meta| private_file(&path, &meta, 0o022));
        if let Err(why) = checked {
            return self.reject(&why);
        }
        let mut bytes = Vec::new();
        if let Err(e) = file.read_to_end(&mut bytes) {
            return self.reject(&format!("cannot be read ({e})"));
        }
        if bytes.len() < TAG {
            return self.reject("is truncated");
        }
        let (tag, code) = bytes.split_at(TAG);
        if !same(tag, &self.cache.tag(&self.name, code)) {
            return self.reject("does not carry this user's tag (planted, renamed, tampered with or truncated)");
        }
        // SAFETY: these bytes are the ones just authenticated: this user's key (readable by this user only)
        // tagged them, with this file's name (the module's SHA-256 and the engine's compatibility hash),
        // when `store` wrote what `Module::serialize` of this engine gave for that module. wasmtime checks
        // the compatibility header again.
        match unsafe { Module::deserialize(engine(), code) } {
            Ok(module) => Some(module),
            Err(e) => self.reject(&format!("is not a module this engine can load ({e})")),
        }
    }

    #[cfg(not(unix))]
    pub fn load(&self) -> Option<Module> {
        None
    }

    fn reject(&self, why: &str) -> Option<Module> {
        let path = self.path();
        let why = if why.starts_with(&*path.to_string_lossy()) {
            why.to_string()
        } else {
            format!("{} {why}", path.display())
        };
        warn_once(format!("compiled-module cache: {why}; removed, the module is compiled again"));
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Writes the compiled module with its tag, atomically (a private temporary file, then a rename);
    /// failures only cost the next start its speed.
    #[cfg(unix)]
    pub fn store(&self, module: &Module) {
        use std::os::unix::fs::OpenOptionsExt as _;
        let Ok(code) = module.serialize() else { return };
        let tag = self.cache.tag(&self.name, &code);
        let path = self.path();
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&tag).and_then(|()| f.write_all(&code)));
        if written.is_ok() && std::fs::rename(&tmp, &path).is_ok() {
            return;
        }
        let _ = std::fs::remove_file(&tmp);
    }

    #[cfg(not(unix))]
    pub fn store(&self, _module: &Module) {}
}
