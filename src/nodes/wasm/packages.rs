//! Plugin packages: folders of installed plugins found by id and version, and `.tar.gz` packages to install.
//!
//! A package is a folder (or a `.tar.gz` of one) holding `plugin.json` and the files it names:
//!
//! ```json
//! {
//!   "id": "org.fxgraph.biquad-filter", "name": "Biquad filter", "version": "1.0.0",
//!   "kind": "wasm", "abi_versions": [1], "min_fxgraph": "0.1.0",
//!   "host_functions": ["fxgraph.log"],
//!   "modules": [{"path": "biquad_filter.wasm", "language": "rust", "preferred": true},
//!               {"path": "biquad_filter_c.wasm", "language": "c"}],
//!   "docs": ["README.md"],
//!   "memory_limit_bytes": 2097152, "block_budget_us": 2000, "parameters": [...]
//! }
//! ```
//!
//! Everything but the package fields (`kind`, `abi_versions`, `min_fxgraph`, `host_functions`, `modules`,
//! `docs`) is the module manifest of the WebAssembly ABI (`plugins/ABI.md`). Installing validates all of
//! it (each module compiles, imports only declared host functions and sets up with the defaults) and then
//! moves the package, whole, to `ROOT/ID/VERSION/`, writing each module's `NAME.json` beside it.
//!
//! The plugin folders, searched in order: each folder of `$FXGRAPH_PLUGIN_PATH` (colon-separated), the
//! user's (`$XDG_DATA_HOME/fxgraph/plugins`, by default `~/.local/share/fxgraph/plugins`), and the
//! system's (`/usr/local/share/fxgraph/plugins`, `/usr/share/fxgraph/plugins`). `install` writes to the
//! first.

use crate::error::{Error, Result};
use crate::node::ProcessConfig;
use crate::nodes::wasm::{ABI_VERSION, Manifest, host};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Most bytes a package may unpack to, and most files it may hold (a gzip bomb stops here).
pub const MAX_UNPACKED_BYTES: u64 = 64 << 20;
/// The most files a package may hold.
pub const MAX_FILES: usize = 256;
/// The package manifest's file name.
pub const MANIFEST: &str = "plugin.json";

/// One module of a package.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleDecl {
    /// The file, relative to the package folder.
    pub path: String,
    /// The language it was written in (`rust`, `c`...), for listings.
    #[serde(default)]
    pub language: Option<String>,
    /// Whether it is the build to load (one module is).
    #[serde(default)]
    pub preferred: bool,
}

/// A package manifest, checked.
#[derive(Debug, Clone)]
pub struct PackageManifest {
    /// The plugin's id.
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// Its version.
    pub version: semver::Version,
    /// What kind of plugin it is (`wasm`).
    pub kind: String,
    /// The plugin ABI versions it supports.
    pub abi_versions: Vec<i32>,
    /// The oldest fxgraph it works with.
    pub min_fxgraph: Option<semver::Version>,
    /// Every host function its modules import (`fxgraph.log`...).
    pub host_functions: Vec<String>,
    /// The preferred module first.
    pub modules: Vec<ModuleDecl>,
    /// Documentation files in the package.
    pub docs: Vec<String>,
    /// How many parameters it declares.
    pub parameters: usize,
    /// The module manifest each module gets as `NAME.json` (JSON object).
    module_manifest: serde_json::Map<String, serde_json::Value>,
}

/// The package fields, read apart from the module manifest's.
#[derive(Deserialize)]
struct PackageFields {
    #[serde(default = "wasm_kind")]
    kind: String,
    abi_versions: Vec<i32>,
    #[serde(default)]
    min_fxgraph: Option<String>,
    host_functions: Vec<String>,
    modules: Vec<ModuleDecl>,
    #[serde(default)]
    docs: Vec<String>,
}

fn wasm_kind() -> String {
    "wasm".into()
}

/// A plugin id: letters, digits, `.`, `-` and `_`; no path separators, not `.` or `..`.
///
/// # Errors
/// A message saying what is wrong.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin id {:?} must be 1 to 128 letters, digits, `.`, `-` or `_`, not starting with `.` (no path separators)",
            id
        ))
    }
}

/// A relative path that stays inside its folder (no `..`, no root, no prefix).
fn plain_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

impl PackageManifest {
    /// Parses and checks `plugin.json` text (not the modules, which installing checks).
    ///
    /// # Errors
    /// A message for malformed JSON, a bad id or version, an ABI or fxgraph version this host cannot
    /// serve (naming both), no modules, or an unsafe file name.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_text(text).map_err(Error::Plugin)
    }

    /// [`parse`](Self::parse), with the error as text.
    pub(crate) fn parse_text(text: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{MANIFEST} is not valid JSON: {e}"))?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(format!("{MANIFEST} must hold a JSON object"));
        };
        let mut package = serde_json::Map::new();
        for key in ["kind", "abi_versions", "min_fxgraph", "host_functions", "modules", "docs"] {
            if let Some(v) = object.remove(key) {
                package.insert(key.into(), v);
            }
        }
        let fields: PackageFields =
            serde_json::from_value(serde_json::Value::Object(package)).map_err(|e| format!("{MANIFEST}: {e}"))?;
        let id = object.get("id").and_then(|v| v.as_str()).ok_or(format!("{MANIFEST} has no `id`"))?.to_owned();
        check_id(&id)?;
        let version_text = object.get("version").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let version = semver::Version::parse(&version_text)
            .map_err(|e| format!("{id}: `version` {version_text:?} is not a semantic version: {e}"))?;
        if fields.kind != "wasm" {
            return Err(format!("{id}: `kind` {:?} is not one this host installs (wasm)", fields.kind));
        }
        if !fields.abi_versions.contains(&ABI_VERSION) {
            return Err(format!(
                "{id} {version} supports plugin ABI version(s) {:?}; this fxgraph implements ABI version {ABI_VERSION}",
                fields.abi_versions
            ));
        }
        let ours = semver::Version::parse(env!("CARGO_PKG_VERSION")).expect("the crate's version is semver");
        let min_fxgraph = match &fields.min_fxgraph {
            Some(m) => {
                let m = semver::Version::parse(m).map_err(|e| format!("{id}: `min_fxgraph` {m:?}: {e}"))?;
                if m > ours {
                    return Err(format!("{id} {version} needs fxgraph {m} or newer; this is fxgraph {ours}"));
                }
                Some(m)
            }
            None => None,
        };
        if fields.modules.is_empty() {
            return Err(format!("{id}: `modules` is empty"));
        }
        if fields.modules.iter().filter(|m| m.preferred).count() > 1 {
            return Err(format!("{id}: more than one module is `preferred`"));
        }
        for f in fields.modules.iter().map(|m| &m.path).chain(&fields.docs) {
            if !plain_relative(f) || f == MANIFEST {
                return Err(format!("{id}: {f:?} must be a file inside the package (a relative path without `..`)"));
            }
        }
        for m in &fields.modules {
            if !m.path.ends_with(".wasm") {
                return Err(format!("{id}: module {:?} must be a `.wasm` file", m.path));
            }
        }
        let mut modules = fields.modules;
        modules.sort_by_key(|m| !m.preferred);
        // The module manifest: the rest, with the ABI this host speaks and the package's checks carried.
        object.insert("abi_version".into(), ABI_VERSION.into());
        object.insert("host_functions".into(), serde_json::to_value(&fields.host_functions).unwrap_or_default());
        if let Some(m) = &fields.min_fxgraph {
            object.insert("min_fxgraph".into(), m.clone().into());
        }
        object.insert("package_version".into(), version.to_string().into());
        let text = serde_json::Value::Object(object.clone()).to_string();
        let module_manifest = Manifest::parse_text(&text).map_err(|e| format!("{id} {version}: {e}"))?;
        Ok(Self {
            name: module_manifest.name.clone(),
            parameters: module_manifest.parameters.len(),
            id,
            version,
            kind: fields.kind,
            abi_versions: fields.abi_versions,
            min_fxgraph,
            host_functions: fields.host_functions,
            modules,
            docs: fields.docs,
            module_manifest: object,
        })
    }

    /// The manifest a module of this package gets beside it.
    pub fn module_manifest_text(&self) -> String {
        serde_json::to_string_pretty(&serde_json::Value::Object(self.module_manifest.clone())).unwrap_or_default()
    }
}

/// Checks a package folder completely: the manifest, then each module (compiles, imports only declared
/// host functions, sets up with its defaults at 48 kHz stereo). Returns the manifest.
///
/// # Errors
/// A message naming the package and what failed.
pub(crate) fn validate_dir(dir: &Path) -> Result<PackageManifest, String> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pkg = PackageManifest::parse_text(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest = Manifest::parse_text(&pkg.module_manifest_text()).map_err(|e| format!("{}: {e}", path.display()))?;
    for doc in &pkg.docs {
        if !dir.join(doc).is_file() {
            return Err(format!("{}: the doc {doc:?} is missing", path.display()));
        }
    }
    for m in &pkg.modules {
        let module_path = dir.join(&m.path);
        let meta = std::fs::symlink_metadata(&module_path)
            .map_err(|e| format!("{}: module {:?}: {e}", path.display(), m.path))?;
        if !meta.is_file() {
            return Err(format!("{}: module {:?} is not a regular file", path.display(), m.path));
        }
        let bytes = std::fs::read(&module_path).map_err(|e| format!("{}: {e}", module_path.display()))?;
        let module = host::compile_bytes(&bytes, &module_path)?;
        host::check_declared(&module, &manifest, &module_path)?;
        let pre = host::prelink(&module)?;
        let params = manifest
            .resolve(&BTreeMap::new(), 48000)
            .map_err(|e| format!("{}: defaults: {e}", module_path.display()))?;
        let config = ProcessConfig::effect(48000, 2, 512);
        drop(
            host::instantiate(&pre, &manifest, &params, &config)
                .map_err(|e| format!("{}: setting an instance up failed: {e}", module_path.display()))?,
        );
    }
    Ok(pkg)
}

/// The plugin folders, in search order.
pub fn search_path() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::var_os("FXGRAPH_PLUGIN_PATH")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data {
        roots.push(d.join("fxgraph/plugins"));
    }
    roots.push(PathBuf::from("/usr/local/share/fxgraph/plugins"));
    roots.push(PathBuf::from("/usr/share/fxgraph/plugins"));
    roots
}

/// An installed plugin version.
#[derive(Debug, Clone)]
pub struct Installed {
    /// What its `plugin.json` says.
    pub manifest: PackageManifest,
    /// `ROOT/ID/VERSION`.
    pub dir: PathBuf,
}

impl Installed {
    /// The module to load: the preferred one.
    pub fn module(&self) -> PathBuf {
        self.dir.join(&self.manifest.modules[0].path)
    }
}

/// Every installed plugin version in the search path (a version found in an earlier folder hides the same
/// version in later ones), sorted by id and version.
pub fn installed() -> Vec<Installed> {
    let mut found: BTreeMap<(String, semver::Version), Installed> = BTreeMap::new();
    for root in search_path() {
        let Ok(ids) = std::fs::read_dir(&root) else { continue };
        for id_dir in ids.flatten() {
            let Ok(versions) = std::fs::read_dir(id_dir.path()) else { continue };
            for v in versions.flatten() {
                let dir = v.path();
                let Ok(text) = std::fs::read_to_string(dir.join(MANIFEST)) else { continue };
                let Ok(manifest) = PackageManifest::parse_text(&text) else { continue };
                if Some(manifest.id.as_str()) != id_dir.file_name().to_str()
                    || Some(manifest.version.to_string().as_str()) != v.file_name().to_str()
                {
                    continue;
                }
                found.entry((manifest.id.clone(), manifest.version.clone())).or_insert(Installed { manifest, dir });
            }
        }
    }
    found.into_values().collect()
}

/// The newest installed version of `id` that `requirement` (semver syntax, e.g. `^1.0`) accepts.
///
/// # Errors
/// A message listing what is installed (or where it looked).
pub(crate) fn resolve(id: &str, requirement: &str) -> Result<Installed, String> {
    let req = semver::VersionReq::parse(requirement)
        .map_err(|e| format!("{requirement:?} is not a version requirement (e.g. \"^1.0\"): {e}"))?;
    let all = installed();
    let versions: Vec<&Installed> = all.iter().filter(|i| i.manifest.id == id).collect();
    if let Some(best) = versions.iter().rev().find(|i| req.matches(&i.manifest.version)) {
        return Ok((*best).clone());
    }
    if versions.is_empty() {
        let roots: Vec<String> = search_path().iter().map(|p| p.display().to_string()).collect();
        let others: Vec<String> = all.iter().map(|i| format!("{}@{}", i.manifest.id, i.manifest.version)).collect();
        Err(format!(
            "no plugin {id:?} is installed (looked in {}; installed: {})",
            roots.join(":"),
            if others.is_empty() { "none".into() } else { others.join(", ") }
        ))
    } else {
        let have: Vec<String> = versions.iter().map(|i| i.manifest.version.to_string()).collect();
        Err(format!("no installed version of {id:?} matches {requirement:?} (installed: {})", have.join(", ")))
    }
}

/// A temporary folder removed on drop unless kept.
struct Staging(Option<PathBuf>);

impl Staging {
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Unpacks a `.tar.gz` into `into` (which must exist and be empty), refusing anything that could write
/// outside it or exhaust the disk: absolute paths, `..`, links of any kind, devices, more than
/// [`MAX_FILES`] entries or [`MAX_UNPACKED_BYTES`] bytes, a truncated or corrupt archive.
///
/// # Errors
/// A message naming the archive and the offending entry.
pub fn unpack(archive: &Path, into: &Path) -> Result<()> {
    unpack_text(archive, into).map_err(Error::Plugin)
}

/// [`unpack`], with the error as text.
fn unpack_text(archive: &Path, into: &Path) -> Result<(), String> {
    let mut file = std::fs::File::open(archive).map_err(|e| format!("cannot read {}: {e}", archive.display()))?;
    let name = archive.display();
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Err(format!("{name} is not a .tar.gz package (it does not start with a gzip header)"));
    }
    std::io::Seek::rewind(&mut file).map_err(|e| format!("cannot read {name}: {e}"))?;
    // The decompressed stream is capped: reading past the cap is an error, not a full disk.
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut tar = tar::Archive::new(gz.take(MAX_UNPACKED_BYTES + 64 * 1024 * 4));
    let mut total = 0u64;
    let mut count = 0usize;
    let entries = tar.entries().map_err(|e| format!("{name} is not a .tar.gz package: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{name} is truncated or corrupt: {e}"))?;
        count += 1;
        if count > MAX_FILES {
            return Err(format!("{name} holds more than {MAX_FILES} files"));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = std::str::from_utf8(&raw).map_err(|_| format!("{name}: an entry's name is not UTF-8"))?;
        let path = path.trim_end_matches('/');
        if path.is_empty() || path == "." {
            continue;
        }
        if !plain_relative(path.strip_prefix("./").unwrap_or(path)) {
            return Err(format!("{name}: entry {shown:?} would be written outside the package folder"));
        }
        let target = into.join(path.strip_prefix("./").unwrap_or(path));
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(|e| format!("{name}: entry {shown:?}: {e}"))?;
                total = total.saturating_add(size);
                if total > MAX_UNPACKED_BYTES {
                    return Err(format!("{name} unpacks to more than {} MiB", MAX_UNPACKED_BYTES >> 20));
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| format!("{name}: entry {shown:?}: {e}"))?;
                let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| format!("{name} is truncated or corrupt (at {shown:?}): {e}"))?;
                if copied != size {
                    return Err(format!("{name} is truncated (at {shown:?})"));
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(format!("{name}: entry {shown:?} is a link; packages may hold only files and folders"));
            }
            // pax and GNU extension headers are metadata the tar crate applies itself.
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader | tar::EntryType::GNULongName => {}
            other => {
                return Err(format!(
                    "{name}: entry {shown:?} is a {other:?}; packages may hold only files and folders"
                ));
            }
        }
    }
    Ok(())
}

/// The folder of an unpacked package: `into` itself if it holds `plugin.json`, or its one sub-folder.
fn package_root(into: &Path) -> Result<PathBuf, String> {
    if into.join(MANIFEST).is_file() {
        return Ok(into.to_path_buf());
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(into)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] if one.join(MANIFEST).is_file() => Ok(one.clone()),
        _ => Err(format!("the package has no {MANIFEST} at its top (or in its one top folder)")),
    }
}

/// Installs a package (a `.tar.gz` or a folder) into plugin folder `root`: unpacks (for an archive) and
/// validates everything in a staging folder inside `root`, then renames it to `root/ID/VERSION`. An
/// installed version is kept unless `force`, and a `root` that others can write (see [`crate::trust`]) is
/// refused unless `force`. Nothing is left behind on failure.
///
/// # Errors
/// [`Error::Plugin`] for anything wrong with the package; [`Error::Io`] for the folders.
pub fn install(source: &Path, root: &Path, force: bool) -> Result<Installed> {
    let refused = Error::Plugin;
    std::fs::create_dir_all(root).map_err(|e| Error::Io(format!("cannot create {}: {e}", root.display())))?;
    if !force && let Err(why) = crate::trust::check(root) {
        return Err(refused(format!(
            "refusing to install into {}: {why}, so others could replace what fxgraph would run (use --force to \
             install there all the same)",
            root.display()
        )));
    }
    let staging = root.join(format!(".install-{}-{}", std::process::id(), unique()));
    std::fs::create_dir(&staging).map_err(|e| Error::Io(format!("cannot create {}: {e}", staging.display())))?;
    let staging = Staging(Some(staging));
    let stage = staging.0.clone().unwrap_or_default();
    let pkg_dir = if source.is_dir() {
        // A folder: copy what the manifest names (and only that).
        let text = std::fs::read_to_string(source.join(MANIFEST))
            .map_err(|e| refused(format!("cannot read {}: {e}", source.join(MANIFEST).display())))?;
        let pkg = PackageManifest::parse_text(&text).map_err(|e| refused(format!("{}: {e}", source.display())))?;
        copy_named(source, &stage, &pkg).map_err(refused)?;
        stage.clone()
    } else {
        unpack_text(source, &stage).map_err(refused)?;
        package_root(&stage).map_err(|e| refused(format!("{}: {e}", source.display())))?
    };
    let pkg = validate_dir(&pkg_dir).map_err(refused)?;
    for m in &pkg.modules {
        let json = pkg_dir.join(&m.path).with_extension("json");
        std::fs::write(&json, pkg.module_manifest_text())
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", json.display())))?;
    }
    let id_dir = root.join(&pkg.id);
    let dest = id_dir.join(pkg.version.to_string());
    std::fs::create_dir_all(&id_dir).map_err(|e| Error::Io(format!("cannot create {}: {e}", id_dir.display())))?;
    let mut old = None;
    if dest.exists() {
        if !force {
            return Err(refused(format!(
                "{} {} is already installed in {}; use --force to replace it",
                pkg.id,
                pkg.version,
                dest.display()
            )));
        }
        let aside = root.join(format!(".replaced-{}-{}", std::process::id(), unique()));
        std::fs::rename(&dest, &aside).map_err(|e| Error::Io(format!("cannot move {}: {e}", dest.display())))?;
        old = Some(Staging(Some(aside)));
    }
    if let Err(e) = std::fs::rename(&pkg_dir, &dest) {
        if let Some(old) = old {
            let _ = std::fs::rename(old.keep(), &dest);
        }
        return Err(Error::Io(format!("cannot move the package to {}: {e}", dest.display())));
    }
    drop(old);
    drop(staging);
    Ok(Installed { manifest: pkg, dir: dest })
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Copies the manifest, the modules and the docs of a package folder (refusing links).
fn copy_named(from: &Path, to: &Path, pkg: &PackageManifest) -> Result<(), String> {
    let files =
        std::iter::once(MANIFEST.to_string()).chain(pkg.modules.iter().map(|m| m.path.clone())).chain(pkg.docs.clone());
    for f in files {
        let src = from.join(&f);
        let meta = std::fs::symlink_metadata(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", src.display()));
        }
        let dst = to.join(&f);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::copy(&src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    }
    Ok(())
}

/// Removes `id` (one version, or all) from the plugin folders; returns the folders removed.
///
/// # Errors
/// A message if nothing matches, or a folder cannot be removed.
pub fn remove(id: &str, version: Option<&str>) -> Result<Vec<PathBuf>, Error> {
    check_id(id).map_err(Error::Plugin)?;
    let version = version
        .map(|v| semver::Version::parse(v).map_err(|e| Error::Plugin(format!("{v:?} is not a version: {e}"))))
        .transpose()?;
    let targets: Vec<Installed> = installed()
        .into_iter()
        .filter(|i| i.manifest.id == id && version.as_ref().is_none_or(|v| *v == i.manifest.version))
        .collect();
    if targets.is_empty() {
        return Err(Error::Plugin(match &version {
            Some(v) => format!("{id} {v} is not installed"),
            None => format!("{id} is not installed"),
        }));
    }
    let mut removed = Vec::new();
    for t in targets {
        // Aside first, so a failure halfway leaves no half-removed version where it would be found.
        let aside = t.dir.with_file_name(format!(".removing-{}-{}", std::process::id(), unique()));
        std::fs::rename(&t.dir, &aside).map_err(|e| Error::Io(format!("cannot remove {}: {e}", t.dir.display())))?;
        std::fs::remove_dir_all(&aside).map_err(|e| Error::Io(format!("cannot remove {}: {e}", aside.display())))?;
        if let Some(id_dir) = t.dir.parent() {
            let _ = std::fs::remove_dir(id_dir); // only if now empty
        }
        removed.push(t.dir);
    }
    Ok(removed)
}

/// Makes `out` (a `.tar.gz`) from a package folder after validating it; the archive holds
/// `ID-VERSION/` with the manifest, the modules and the docs. Written atomically.
///
/// # Errors
/// A message for an invalid package or an unwritable output.
pub fn pack(dir: &Path, out: &Path) -> Result<PackageManifest, Error> {
    let pkg = validate_dir(dir).map_err(Error::Plugin)?;
    let name = out.file_name().map_or_else(|| "package".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.fxgraph-{}.tmp", std::process::id()));
    let top = format!("{}-{}", pkg.id, pkg.version);
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        let mut builder = tar::Builder::new(gz);
        builder.mode(tar::HeaderMode::Deterministic);
        let files = std::iter::once(MANIFEST.to_string())
            .chain(pkg.modules.iter().map(|m| m.path.clone()))
            .chain(pkg.docs.clone());
        for f in files {
            builder.append_path_with_name(dir.join(&f), format!("{top}/{f}"))?;
        }
        builder.into_inner()?.finish()?.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Io(format!("cannot write {}: {e}", out.display())));
    }
    Ok(pkg)
}
