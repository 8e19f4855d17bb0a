//! LADSPA libraries: found on `LADSPA_PATH`, opened once per process, their plugins and ports read and
//! checked before any plugin code beyond the descriptor function runs.
#![allow(unsafe_code)] // LADSPA is a C ABI; see the SAFETY notes.

use super::abi::*;
use crate::nodes::native::library::{Loaded, NativeParam, load_once};
use std::ffi::{CStr, c_char, c_int, c_ulong};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    AudioIn,
    AudioOut,
    ControlIn,
    ControlOut,
}

/// One port, with its hints.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub index: usize,
    pub kind: PortKind,
    pub name: String,
    /// Lower case, runs of other characters as one `_`: what `set` and presets use.
    pub key: String,
    pub hint: c_int,
    pub lower: f32,
    pub upper: f32,
}

impl Port {
    /// The range at `sample_rate` (bounds scaled where the hint says so; unbounded sides at ±1e9).
    pub fn range(&self, sample_rate: u32) -> (f64, f64) {
        let scale = if self.hint & HINT_SAMPLE_RATE != 0 { f64::from(sample_rate) } else { 1.0 };
        let lo = if self.hint & HINT_BOUNDED_BELOW != 0 { f64::from(self.lower) * scale } else { -1e9 };
        let hi = if self.hint & HINT_BOUNDED_ABOVE != 0 { f64::from(self.upper) * scale } else { 1e9 };
        if self.hint & HINT_TOGGLED != 0 { (0.0, 1.0) } else { (lo, hi.max(lo)) }
    }

    /// The default the hints give (LADSPA's rules), else the lower bound, else 0.
    pub fn default(&self, sample_rate: u32) -> f64 {
        let (lo, hi) = self.range(sample_rate);
        let log = self.hint & HINT_LOGARITHMIC != 0 && lo > 0.0 && hi > 0.0;
        let mix = |a: f64| if log { (lo.ln() * (1.0 - a) + hi.ln() * a).exp() } else { lo * (1.0 - a) + hi * a };
        let v = match self.hint & HINT_DEFAULT_MASK {
            0x40 => lo,
            0x80 => mix(0.25),
            0xC0 => mix(0.5),
            0x100 => mix(0.75),
            0x140 => hi,
            0x200 => 0.0,
            0x240 => 1.0,
            0x280 => 100.0,
            0x2C0 => 440.0,
            _ if self.hint & HINT_BOUNDED_BELOW != 0 => lo,
            _ => 0.0f64.clamp(lo, hi),
        };
        if self.hint & HINT_INTEGER != 0 { v.round() } else { v }
    }

    pub(super) fn stepped(&self) -> bool {
        self.hint & (HINT_TOGGLED | HINT_INTEGER) != 0
    }
}

/// `name`, or else `name_2`, `name_3` and so on: the first that is neither empty nor `taken` (a bus or
/// parameter name already given).
pub(crate) fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut unique = name.to_string();
    let mut k = 2;
    while unique.is_empty() || taken(&unique) {
        unique = format!("{name}_{k}");
        k += 1;
    }
    unique
}

/// A port name as a parameter key.
pub fn key_of(name: &str) -> String {
    let mut key = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.ends_with('_') && !key.is_empty() {
            key.push('_');
        }
    }
    key.trim_end_matches('_').to_string()
}

/// One plugin of a library, copied out of its descriptor.
#[derive(Debug, Clone)]
pub struct LadspaInfo {
    pub index: usize,
    pub unique_id: u64,
    pub label: String,
    pub name: String,
    pub maker: String,
    pub properties: c_int,
    pub ports: Vec<Port>,
}

impl LadspaInfo {
    pub fn ports(&self, kind: PortKind) -> impl Iterator<Item = &Port> {
        self.ports.iter().filter(move |p| p.kind == kind)
    }

    pub fn hard_rt(&self) -> bool {
        self.properties & PROPERTY_HARD_RT_CAPABLE != 0
    }

    /// The node's parameters (control inputs) as [`NativeParam`]s at `sample_rate`.
    pub fn params(&self, sample_rate: u32) -> Vec<NativeParam> {
        self.ports(PortKind::ControlIn)
            .map(|p| {
                let (toggled, integer) = (p.hint & HINT_TOGGLED != 0, p.hint & HINT_INTEGER != 0);
                NativeParam::control(
                    p.index,
                    &p.key,
                    &p.name,
                    p.range(sample_rate),
                    p.default(sample_rate),
                    toggled,
                    integer,
                )
            })
            .collect()
    }

    /// Whether the plugin has one audio input and one output: it then runs as one instance per channel of
    /// whatever feeds it.
    pub fn mono(&self) -> bool {
        self.ports(PortKind::AudioIn).count() == 1 && self.ports(PortKind::AudioOut).count() == 1
    }

    /// The audio inputs and outputs grouped into buses, each a port of the node: ports whose names differ
    /// only in a channel mark (`Left`, `R`, `(Z)`, `2`) are one bus, in the order the plugin lists them.
    /// The first input bus is `in`, the first output bus `out`; a bus named for a sidechain is
    /// `sidechain`; any other is its name as a key (`input_external`).
    pub fn buses(&self) -> (Vec<Bus>, Vec<Bus>) {
        let group = |kind: PortKind, first: &str| {
            let mut buses: Vec<(String, Bus)> = Vec::new();
            for p in self.ports(kind) {
                let base = bus_base(&p.name);
                match buses.iter_mut().find(|(b, _)| *b == base) {
                    Some((_, bus)) => bus.ports.push(p.index),
                    None => {
                        let name = if buses.is_empty() {
                            first.to_string()
                        } else if base.contains("sidechain") {
                            "sidechain".to_string()
                        } else {
                            key_of(&base)
                        };
                        let unique = unique_name(&name, |n| buses.iter().any(|(_, b)| b.name == n));
                        buses.push((base, Bus { name: unique, ports: vec![p.index] }));
                    }
                }
            }
            buses.into_iter().map(|(_, b)| b).collect::<Vec<Bus>>()
        };
        (group(PortKind::AudioIn, "in"), group(PortKind::AudioOut, "out"))
    }
}

/// A plugin's audio ports that make one port of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bus {
    /// The node's name for it.
    pub name: String,
    /// The plugin's port indices, in channel order.
    pub ports: Vec<usize>,
}

/// A port name without its channel mark: lower case, the words that name a channel (`left`, `right`, a
/// single letter, a number) left out.
pub(crate) fn bus_base(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .filter(|w| !(w == "left" || w == "right" || w.len() == 1 || w.chars().all(|c| c.is_ascii_digit())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A loaded LADSPA library. Kept loaded for the life of the process.
pub struct LadspaLibrary {
    pub path: PathBuf,
    pub plugins: Vec<LadspaInfo>,
    descriptors: Vec<usize>,
    _library: libloading::Library,
}

impl std::fmt::Debug for LadspaLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LadspaLibrary").field("path", &self.path).field("plugins", &self.plugins.len()).finish()
    }
}

// SAFETY: the descriptors are immutable data of a library that stays loaded.
unsafe impl Send for LadspaLibrary {}
// SAFETY: as above.
unsafe impl Sync for LadspaLibrary {}

impl LadspaLibrary {
    pub(super) fn descriptor(&self, index: usize) -> *const Descriptor {
        self.descriptors[index] as *const Descriptor
    }

    /// The plugin with `label`.
    ///
    /// # Errors
    /// A message listing the labels the library has.
    pub fn find(&self, label: &str) -> Result<&LadspaInfo, String> {
        self.plugins.iter().find(|p| p.label == label).ok_or_else(|| {
            let labels: Vec<&str> = self.plugins.iter().map(|p| p.label.as_str()).collect();
            format!("{} has no plugin labelled \"{label}\" (it has: {})", self.path.display(), labels.join(", "))
        })
    }
}

/// Where a bare file name is looked for: `LADSPA_PATH`, by default `/usr/lib/ladspa:/usr/local/lib/ladspa`.
pub fn search(name: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let p = Path::new(name);
    if p.components().count() > 1 || p.is_absolute() {
        return Ok(base_dir.join(p));
    }
    let dirs = std::env::var("LADSPA_PATH").unwrap_or_else(|_| "/usr/lib/ladspa:/usr/local/lib/ladspa".into());
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let local = base_dir.join(name);
    if local.is_file() {
        return Ok(local);
    }
    Err(format!("no LADSPA library {name:?} in {dirs} (LADSPA_PATH) or beside the graph"))
}

/// Loads a LADSPA library (once per process) and reads every plugin's descriptor.
///
/// # Errors
/// A message naming the file: not a library, no `ladspa_descriptor`, a malformed descriptor.
pub fn load(path: &Path) -> Result<Arc<LadspaLibrary>, String> {
    static LOADED: Loaded<LadspaLibrary> = OnceLock::new();
    load_once(&LOADED, path, open)
}

/// # Safety
/// `p` is null or a NUL-terminated string that lives as long as the library.
unsafe fn string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

fn open(path: &Path) -> Result<LadspaLibrary, String> {
    // SAFETY: loading runs the library's initializers: the trust a native plugin asks for.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load the library: {e}"))?;
    // SAFETY: the symbol's type is LADSPA's.
    let entry: DescriptorFn = unsafe {
        *library
            .get::<DescriptorFn>(b"ladspa_descriptor")
            .map_err(|_| "exports no `ladspa_descriptor`: not a LADSPA library".to_string())?
    };
    let mut plugins = Vec::new();
    let mut descriptors = Vec::new();
    for index in 0..4096 {
        // SAFETY: LADSPA's entry point: a descriptor or null past the last.
        let d = unsafe { entry(index as c_ulong) };
        if d.is_null() {
            break;
        }
        // SAFETY: a LADSPA descriptor, valid while the library is loaded.
        let desc = unsafe { &*d };
        // SAFETY (the reads below): arrays of `port_count` entries, strings of the library.
        // SAFETY: as above.
        let info = unsafe {
            let label = string(desc.label);
            if desc.instantiate.is_none() || desc.connect_port.is_none() || desc.run.is_none() || desc.cleanup.is_none()
            {
                return Err(format!("plugin {index} (\"{label}\") has a null required function"));
            }
            let count = desc.port_count as usize;
            if count > 4096 || (count > 0 && (desc.port_descriptors.is_null() || desc.port_range_hints.is_null())) {
                return Err(format!("plugin \"{label}\" has malformed ports"));
            }
            let mut ports = Vec::with_capacity(count);
            for i in 0..count {
                let pd = *desc.port_descriptors.add(i);
                let kind = match (pd & PORT_AUDIO != 0, pd & PORT_INPUT != 0, pd & PORT_OUTPUT != 0) {
                    (true, true, false) => PortKind::AudioIn,
                    (true, false, true) => PortKind::AudioOut,
                    (false, true, false) if pd & PORT_CONTROL != 0 => PortKind::ControlIn,
                    (false, false, true) if pd & PORT_CONTROL != 0 => PortKind::ControlOut,
                    _ => return Err(format!("plugin \"{label}\": port {i} has an invalid descriptor {pd:#x}")),
                };
                let name =
                    if desc.port_names.is_null() { format!("port {i}") } else { string(*desc.port_names.add(i)) };
                let h = *desc.port_range_hints.add(i);
                let mut key = key_of(&name);
                if key.is_empty() {
                    key = format!("port{i}");
                }
                ports.push(Port { index: i, kind, key, name, hint: h.hint, lower: h.lower, upper: h.upper });
            }
            LadspaInfo {
                index,
                unique_id: desc.unique_id as u64,
                label,
                name: string(desc.name),
                maker: string(desc.maker),
                properties: desc.properties,
                ports,
            }
        };
        plugins.push(info);
        descriptors.push(d as usize);
    }
    if plugins.is_empty() {
        return Err("`ladspa_descriptor(0)` returned no plugin".into());
    }
    Ok(LadspaLibrary { path: path.to_path_buf(), plugins, descriptors, _library: library })
}

#[cfg(test)]
mod bus_tests {
    use super::bus_base;

    #[test]
    fn channel_marks_are_left_out_of_bus_names() {
        for (name, base) in [
            ("Input L", "input"),
            ("Sidechain input Right", "sidechain input"),
            ("Left output", "output"),
            ("Input (Z)", "input"),
            ("Output_R", "output"),
            ("Input external 1", "input external"),
            ("Output 7", "output"),
        ] {
            assert_eq!(bus_base(name), base, "{name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_become_keys() {
        assert_eq!(key_of("Gain (dB)"), "gain_db");
        assert_eq!(key_of("Cutoff frequency (Hz)"), "cutoff_frequency_hz");
        assert_eq!(key_of("  Amps  "), "amps");
        assert_eq!(key_of("Attack (ms)"), "attack_ms");
    }

    #[test]
    fn defaults_follow_the_ladspa_rules() {
        let port = |hint: c_int, lower: f32, upper: f32| Port {
            index: 0,
            kind: PortKind::ControlIn,
            name: "x".into(),
            key: "x".into(),
            hint,
            lower,
            upper,
        };
        let bounded = HINT_BOUNDED_BELOW | HINT_BOUNDED_ABOVE;
        assert_eq!(port(bounded | 0x40, 1.0, 9.0).default(48000), 1.0);
        assert_eq!(port(bounded | 0xC0, 1.0, 9.0).default(48000), 5.0);
        assert_eq!(port(bounded | 0x80, 1.0, 9.0).default(48000), 3.0);
        assert!((port(bounded | HINT_LOGARITHMIC | 0xC0, 1.0, 100.0).default(48000) - 10.0).abs() < 1e-9);
        assert_eq!(port(bounded | HINT_SAMPLE_RATE | 0x140, 0.0, 0.5).default(44100), 22050.0);
        assert_eq!(port(bounded | HINT_INTEGER | 0xC0, 0.0, 3.0).default(48000), 2.0);
        assert_eq!(port(0x2C0, 0.0, 0.0).default(48000), 440.0);
        assert_eq!(port(HINT_TOGGLED | 0x240, 0.0, 0.0).range(48000), (0.0, 1.0));
    }
}
