//! A plugin's manifest (`NAME.json` beside `NAME.wasm`): identity, limits and parameters, checked
//! completely when it is read.

use crate::node::{ParamInfo, ParamValue, Smoothing};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// The ABI version this host implements.
pub const ABI_VERSION: i32 = 1;
/// The minor version this host implements: 1 adds audio buses (`buses` in the manifest).
pub const ABI_MINOR: u32 = 1;

/// One audio bus a plugin declares (ABI 1.1): a port of the node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BusDecl {
    /// The port's name in graph files (`"in"`, `"sidechain"`, `"out"`).
    pub name: String,
    /// Its channels; 0 (the default): the graph's. An optional input takes whatever feeds it.
    #[serde(default)]
    pub channels: u32,
    /// An input that may be left unconnected (a sidechain): then it has 0 channels.
    #[serde(default)]
    pub optional: bool,
}

/// A plugin's audio buses (ABI 1.1).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Buses {
    /// Input buses, in the order their buffers come in the buffer table.
    #[serde(default)]
    pub inputs: Vec<BusDecl>,
    /// Output buses, after the inputs in the table.
    pub outputs: Vec<BusDecl>,
}
/// The most linear memory any plugin may have, whatever its manifest says.
pub const HOST_MEMORY_CAP: usize = 64 << 20;
/// The largest per-block budget a manifest may declare (1 s): anything more is refused at load.
pub const MAX_BLOCK_BUDGET_US: u64 = 1_000_000;

/// A config value as written in the graph file.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A number.
    Number(f64),
    /// An enumeration's value, by name.
    Text(String),
}

impl From<&ConfigValue> for ParamValue {
    fn from(v: &ConfigValue) -> Self {
        match v {
            ConfigValue::Number(n) => ParamValue::Number(*n),
            ConfigValue::Text(t) => ParamValue::Text(t.clone()),
        }
    }
}

/// A parameter a plugin declares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    /// The id the plugin's `fxg_set_param` takes.
    pub id: i32,
    /// The key graphs and presets name it by.
    pub key: String,
    /// A name for people.
    pub name: String,
    /// Its unit, or empty.
    #[serde(default)]
    pub unit: String,
    /// The lowest value of a number.
    pub min: Option<f64>,
    /// The highest value of a number.
    pub max: Option<f64>,
    /// A maximum that depends on the sample rate: this fraction of the Nyquist frequency (for example
    /// 0.95 for a filter's cutoff). The effective maximum is the smaller of this and `max`.
    pub max_nyquist_fraction: Option<f64>,
    /// For enumerations: the allowed values; the guest receives the index.
    #[serde(rename = "enum")]
    pub choices: Option<Vec<String>>,
    /// The value it has when a graph gives none.
    pub default: ConfigValue,
}

impl ParamDecl {
    /// The parameter's range at `sample_rate`.
    pub fn range(&self, sample_rate: u32) -> (f64, f64) {
        let lo = self.min.unwrap_or(f64::from(f32::MIN));
        let mut hi = self.max.unwrap_or(f64::from(f32::MAX));
        if let Some(f) = self.max_nyquist_fraction {
            hi = hi.min(f * f64::from(sample_rate) / 2.0);
        }
        (lo, hi)
    }

    /// How the engine describes it at `sample_rate`.
    pub fn info(&self, sample_rate: u32) -> ParamInfo {
        match &self.choices {
            Some(c) => ParamInfo {
                name: self.key.clone(),
                unit: self.unit.clone(),
                min: 0.0,
                max: c.len().saturating_sub(1) as f64,
                choices: Some(c.clone()),
                // A mode switch: a new instance, cross-faded in.
                smoothing: Smoothing::Rebuild,
            },
            None => {
                let (lo, hi) = self.range(sample_rate);
                ParamInfo::number(self.key.clone(), &self.unit, lo, hi, Smoothing::Ramp)
            }
        }
    }

    /// The number the guest receives for `value` at `sample_rate`.
    ///
    /// # Errors
    /// A message for a value of the wrong type, outside the range, or not among the choices.
    pub fn value_of(&self, value: &ConfigValue, sample_rate: u32) -> Result<f32, String> {
        let v = self.info(sample_rate).resolve(&value.into()).map_err(|e| e.message)?;
        // Every accepted number is finite as the guest's f32 too (the range is within f32's).
        Ok(v as f32)
    }
}

/// The manifest beside a module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's id, reverse-DNS (`org.fxgraph.biquad-filter`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The ABI version it implements.
    pub abi_version: i32,
    /// The minor version (1 for `buses`; 0, the default, for a plugin of ABI 1.0).
    #[serde(default)]
    pub abi_minor: u32,
    /// Its audio buses (ABI 1.1): the node's ports. Without them: one input and one output of the
    /// graph's channels.
    #[serde(default)]
    pub buses: Option<Buses>,
    /// The most linear memory it may use (capped by the host's limit).
    pub memory_limit_bytes: usize,
    /// The time one `fxg_process` call may take (µs).
    pub block_budget_us: u64,
    /// Its parameters, in index order.
    #[serde(default)]
    pub parameters: Vec<ParamDecl>,
    /// The host functions the module imports, as `module.name` (from an installed package's
    /// `plugin.json`); when given, an import not listed, or a listed function the host does not offer, is
    /// refused.
    #[serde(default)]
    pub host_functions: Option<Vec<String>>,
    /// The oldest fxgraph the plugin works with (a semantic version).
    #[serde(default)]
    pub min_fxgraph: Option<String>,
    /// Set for a module of an installed package: its version (`source` names `id@version`).
    #[serde(default)]
    pub package_version: Option<String>,
}

impl Manifest {
    /// Reads `NAME.json` beside `NAME.wasm`, once per process for each file version (reads are shared).
    ///
    /// # Errors
    /// A message naming the file for a missing, unreadable, malformed or inconsistent manifest.
    pub(crate) fn for_module(module: &Path) -> Result<Arc<Self>, String> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        use std::time::SystemTime;
        type Cache = HashMap<std::path::PathBuf, (Option<SystemTime>, u64, Arc<Manifest>)>;
        static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
        let path = module.with_extension("json");
        let meta = std::fs::metadata(&path).ok();
        let stamp = (meta.as_ref().and_then(|m| m.modified().ok()), meta.as_ref().map_or(0, |m| m.len()));
        let cache = CACHE.get_or_init(Default::default);
        if let Some((t, len, m)) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&path)
            && (*t, *len) == stamp
            && t.is_some()
        {
            return Ok(m.clone());
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read the manifest {}: {e}", path.display()))?;
        let manifest = Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest = Arc::new(manifest);
        cache.lock().unwrap_or_else(|e| e.into_inner()).insert(path, (stamp.0, stamp.1, manifest.clone()));
        Ok(manifest)
    }

    /// Parses and checks manifest text.
    ///
    /// # Errors
    /// A message for malformed JSON or any inconsistency: another ABI version, an absurd budget or memory
    /// limit, duplicate parameter ids or keys, a numeric parameter without finite bounds within `f32`, an
    /// enumeration without values, a default outside its range.
    pub fn parse(text: &str) -> crate::Result<Self> {
        Self::parse_text(text).map_err(crate::Error::Plugin)
    }

    /// [`parse`](Self::parse), with the error as text.
    pub(crate) fn parse_text(text: &str) -> Result<Self, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| format!("not a valid plugin manifest: {e}"))?;
        if m.abi_version != ABI_VERSION {
            return Err(format!("declares ABI version {}, this host implements {ABI_VERSION}", m.abi_version));
        }
        if m.abi_minor > ABI_MINOR {
            return Err(format!("declares ABI version 1.{}, this host implements 1.{ABI_MINOR}", m.abi_minor));
        }
        if let Some(b) = &m.buses {
            if m.abi_minor < 1 {
                return Err("declares `buses`, which needs `abi_minor` 1".into());
            }
            if b.outputs.is_empty() {
                return Err("`buses` must declare at least one output".into());
            }
            fn spec(b: &BusDecl) -> crate::nodes::plugin::BusSpec<'_> {
                (b.name.as_str(), b.channels, b.optional)
            }
            let (ins, outs): (Vec<_>, Vec<_>) =
                (b.inputs.iter().map(spec).collect(), b.outputs.iter().map(spec).collect());
            crate::nodes::plugin::check_buses(&ins, &outs, |output, i| {
                format!("`buses.{}[{i}]`", if output { "outputs" } else { "inputs" })
            })?;
        }
        if let Some(min) = &m.min_fxgraph {
            let min =
                semver::Version::parse(min).map_err(|e| format!("`min_fxgraph` {min:?} is not a version: {e}"))?;
            let ours = semver::Version::parse(env!("CARGO_PKG_VERSION")).expect("the crate's version is semver");
            if min > ours {
                return Err(format!("needs fxgraph {min} or newer; this is fxgraph {ours}"));
            }
        }
        for f in m.host_functions.iter().flatten() {
            if !crate::nodes::wasm::host::ALLOWED_IMPORTS.iter().any(|a| f.strip_prefix("fxgraph.") == Some(*a)) {
                return Err(format!(
                    "declares the host function {:?}, which this host does not offer (it offers: fxgraph.log, fxgraph.emit_event)",
                    f
                ));
            }
        }
        if m.id.is_empty() || m.id.len() > 128 || m.id.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(format!(
                "`id` must be 1 to 128 characters with no control characters or slashes (got {:?})",
                m.id
            ));
        }
        // Text a manifest gives is printed by `fxgraph plugin` and in errors: no control characters.
        let printable = |what: &str, t: &str| {
            if t.len() > 256 || t.chars().any(|c| c.is_control()) {
                Err(format!("`{what}` must be at most 256 characters without control characters (got {:?})", t))
            } else {
                Ok(())
            }
        };
        printable("name", &m.name)?;
        printable("version", &m.version)?;
        for p in &m.parameters {
            printable("parameters.name", &p.name)?;
            printable("parameters.unit", &p.unit)?;
            for c in p.choices.iter().flatten() {
                printable("parameters.enum", c)?;
            }
            if let Some(c) = &p.choices
                && c.iter().collect::<HashSet<_>>().len() != c.len()
            {
                return Err(format!("parameter `{}`: `enum` lists a value twice", p.key));
            }
        }
        if !(1..=MAX_BLOCK_BUDGET_US).contains(&m.block_budget_us) {
            return Err(format!(
                "`block_budget_us` must be 1 to {MAX_BLOCK_BUDGET_US} (got {}): a plugin may not hold the audio thread longer",
                m.block_budget_us
            ));
        }
        if m.memory_limit_bytes == 0 {
            return Err("`memory_limit_bytes` must be above 0".into());
        }
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for p in &m.parameters {
            if !ids.insert(p.id) {
                return Err(format!("parameter id {} is declared twice", p.id));
            }
            if !keys.insert(p.key.as_str()) {
                return Err(format!("parameter key `{}` is declared twice", p.key));
            }
            if p.key.is_empty() || p.key.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!(
                    "parameter key {:?} must be non-empty, without spaces or control characters",
                    p.key
                ));
            }
            match &p.choices {
                Some(c) if c.is_empty() => return Err(format!("parameter `{}`: `enum` is empty", p.key)),
                Some(_) if p.min.is_some() || p.max.is_some() || p.max_nyquist_fraction.is_some() => {
                    return Err(format!("parameter `{}`: an enumeration has no `min` or `max`", p.key));
                }
                Some(_) => {}
                None => {
                    let limit = f64::from(f32::MAX);
                    let bound = |b: Option<f64>, what: &str| match b {
                        Some(v) if v.is_finite() && v.abs() <= limit => Ok(v),
                        Some(v) => {
                            Err(format!("parameter `{}`: `{what}` must be a finite 32-bit number (got {v})", p.key))
                        }
                        None => Err(format!("parameter `{}`: a numeric parameter needs `{what}`", p.key)),
                    };
                    let (lo, hi) = (bound(p.min, "min")?, bound(p.max, "max")?);
                    if lo > hi {
                        return Err(format!("parameter `{}`: `min` {lo} is above `max` {hi}", p.key));
                    }
                    if let Some(f) = p.max_nyquist_fraction
                        && !(f.is_finite() && f > 0.0 && f <= 1.0)
                    {
                        return Err(format!(
                            "parameter `{}`: `max_nyquist_fraction` must be above 0 and at most 1 (got {f})",
                            p.key
                        ));
                    }
                }
            }
            // The default must be valid at every rate where the range is not empty; check it against the
            // declared bounds (the rate-dependent maximum is checked when a graph uses it).
            let unbounded = ParamDecl { max_nyquist_fraction: None, ..p.clone() };
            unbounded.value_of(&p.default, 48000).map_err(|e| format!("parameter `{}`: default {e}", p.key))?;
        }
        Ok(m)
    }

    /// The memory cap: the manifest's, bounded by the host's.
    pub fn memory_cap(&self) -> usize {
        self.memory_limit_bytes.min(HOST_MEMORY_CAP)
    }

    /// Every parameter's numeric value for the guest at `sample_rate`, from `config` over the defaults.
    ///
    /// # Errors
    /// A [`crate::node::ParamError`] naming the config key (`config.KEY`) that is unknown, mistyped or out
    /// of range.
    pub fn resolve(
        &self,
        config: &BTreeMap<String, ConfigValue>,
        sample_rate: u32,
    ) -> Result<Vec<(i32, f32)>, crate::node::ParamError> {
        use crate::node::ParamError;
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
                p.value_of(value, sample_rate)
                    .map(|v| (p.id, v))
                    .map_err(|e| ParamError::new(format!("config.{}", p.key), e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(params: &str) -> String {
        format!(
            r#"{{"id": "t", "name": "T", "version": "1", "abi_version": 1, "memory_limit_bytes": 65536,
                "block_budget_us": 100, "parameters": [{params}]}}"#
        )
    }

    #[test]
    fn inconsistent_manifests_are_refused_with_the_reason() {
        for (params, needle) in [
            (
                r#"{"id": 0, "key": "a", "name": "A", "min": 0, "max": 1, "default": 0}, {"id": 0, "key": "b", "name": "B", "min": 0, "max": 1, "default": 0}"#,
                "id 0 is declared twice",
            ),
            (
                r#"{"id": 0, "key": "a", "name": "A", "min": 0, "max": 1, "default": 0}, {"id": 1, "key": "a", "name": "B", "min": 0, "max": 1, "default": 0}"#,
                "key `a` is declared twice",
            ),
            (r#"{"id": 0, "key": "a", "name": "A", "default": 0}"#, "needs `min`"),
            (r#"{"id": 0, "key": "a", "name": "A", "min": 0, "max": 1e300, "default": 0}"#, "finite 32-bit"),
            (r#"{"id": 0, "key": "a", "name": "A", "min": 2, "max": 1, "default": 0}"#, "above `max`"),
            (r#"{"id": 0, "key": "a", "name": "A", "min": 0, "max": 1, "default": 5}"#, "default must be between"),
            (r#"{"id": 0, "key": "a", "name": "A", "enum": [], "default": "x"}"#, "`enum` is empty"),
            (r#"{"id": 0, "key": "a", "name": "A", "enum": ["x", "x"], "default": "x"}"#, "lists a value twice"),
            (
                r#"{"id": 0, "key": "a", "name": "A\nerror: forged", "min": 0, "max": 1, "default": 0}"#,
                "control characters",
            ),
            (
                r#"{"id": 0, "key": "a", "name": "A", "min": 0, "max": 10, "max_nyquist_fraction": 2.0, "default": 1}"#,
                "max_nyquist_fraction",
            ),
        ] {
            let err = Manifest::parse_text(&manifest(params)).expect_err(params);
            assert!(err.contains(needle), "{params}: {err}");
        }
        let slow = manifest("").replace("\"block_budget_us\": 100", "\"block_budget_us\": 5000000");
        assert!(Manifest::parse_text(&slow).expect_err("absurd budget").contains("block_budget_us"));
    }

    #[test]
    fn a_maximum_may_follow_the_sample_rate() {
        let m = Manifest::parse_text(&manifest(
            r#"{"id": 1, "key": "cutoff_hz", "name": "Cutoff", "min": 10, "max": 40000, "max_nyquist_fraction": 0.9, "default": 1000}"#,
        ))
        .expect("valid");
        let p = &m.parameters[0];
        assert_eq!(p.range(48000), (10.0, 21600.0));
        assert_eq!(p.range(96000), (10.0, 40000.0));
        assert!(p.value_of(&ConfigValue::Number(30000.0), 48000).is_err());
        assert!(p.value_of(&ConfigValue::Number(30000.0), 96000).is_ok());
    }
}
