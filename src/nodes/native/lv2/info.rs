//! What an LV2 plugin declares, read through lilv on the control side: its ports (audio, control, atom,
//! CV), their ranges and properties, their groups, the features it requires and its latency port.
#![allow(unsafe_code)] // lilv is a C ABI; see the SAFETY notes.

use super::lilv::{LilvPlugin, World};
use crate::nodes::native::library::NativeParam;
use std::ffi::{CStr, c_char, c_void};

pub const LV2: &str = "http://lv2plug.in/ns/lv2core#";
const PG_GROUP: &str = "http://lv2plug.in/ns/ext/port-groups#group";
const ATOM_PORT: &str = "http://lv2plug.in/ns/ext/atom#AtomPort";
const CV_PORT: &str = "http://lv2plug.in/ns/lv2core#CVPort";
const LOGARITHMIC: &str = "http://lv2plug.in/ns/ext/port-props#logarithmic";

/// What a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    AudioIn,
    AudioOut,
    ControlIn,
    ControlOut,
    /// Event ports (a plugin's UI link, MIDI): given an empty sequence in, room for one out.
    AtomIn,
    AtomOut,
    /// Control-voltage ports: given silence in, a buffer out.
    CvIn,
    CvOut,
    /// Any other kind (the old event ports): left unconnected where the plugin allows it, else refused.
    Other,
}

/// One port and what it says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub index: usize,
    pub kind: PortKind,
    /// The plugin's symbol: a C identifier, what `controls`, `set` and presets name it by.
    pub symbol: String,
    pub name: String,
    /// The port group (a URI) it belongs to.
    pub group: Option<String>,
    pub sidechain: bool,
    pub min: f32,
    pub max: f32,
    pub default: f32,
    pub toggled: bool,
    pub integer: bool,
    pub enumeration: bool,
    pub logarithmic: bool,
    /// Bounds given as fractions of the sample rate.
    pub sample_rate: bool,
    /// The plugin runs with the port unconnected.
    pub optional: bool,
    /// Named values (value, label), for enumerations.
    pub scale_points: Vec<(f32, String)>,
}

impl Port {
    /// The range at `sample_rate` (unbounded sides at ±1e9).
    pub fn range(&self, sample_rate: u32) -> (f64, f64) {
        let scale = if self.sample_rate { f64::from(sample_rate) } else { 1.0 };
        let lo = if self.min.is_finite() { f64::from(self.min) * scale } else { -1e9 };
        let hi = if self.max.is_finite() { f64::from(self.max) * scale } else { 1e9 };
        if self.toggled { (0.0, 1.0) } else { (lo, hi.max(lo)) }
    }

    /// The declared default, else the lower bound, else 0; within the range.
    pub fn default_at(&self, sample_rate: u32) -> f64 {
        let (lo, hi) = self.range(sample_rate);
        let scale = if self.sample_rate { f64::from(sample_rate) } else { 1.0 };
        let v = if self.default.is_finite() {
            f64::from(self.default) * scale
        } else if self.min.is_finite() {
            lo
        } else {
            0.0
        };
        v.clamp(lo, hi)
    }

    /// Taken at once rather than ramped.
    pub fn stepped(&self) -> bool {
        self.toggled || self.integer || self.enumeration
    }
}

/// A plugin as lilv describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lv2Info {
    pub uri: String,
    pub name: String,
    pub ports: Vec<Port>,
    pub required_features: Vec<String>,
    pub latency_port: Option<usize>,
    /// The plugin's own presets (LV2 preset files in its bundle or the user's), by label.
    pub presets: Vec<Preset>,
    /// It has LV2's state interface (restores a preset's state).
    pub state: bool,
    /// It says it is hard-real-time capable: its heap calls in `run` are watched.
    pub hard_rt: bool,
    /// Its shared library.
    pub library: Option<std::path::PathBuf>,
    /// lilv's plugin (the world keeps it for the life of the process).
    pub(super) plugin: usize,
}

/// One of a plugin's presets.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub label: String,
    pub uri: String,
    /// Control input values by port symbol.
    pub values: Vec<(String, f64)>,
    /// Values of state the preset holds beyond port values (restored through the plugin's state
    /// interface).
    pub properties: u32,
}

/// Collects a preset's port values (lilv's `LilvSetPortValueFunc`).
unsafe extern "C" fn port_value(symbol: *const c_char, user: *mut c_void, value: *const c_void, size: u32, ty: u32) {
    use super::instance::urid;
    if symbol.is_null() || value.is_null() {
        return;
    }
    // SAFETY: `user` is the Vec `Lv2Info::read` passed; `value` holds `size` bytes of type `ty`.
    unsafe {
        let values = &mut *user.cast::<Vec<(String, f64)>>();
        let v = match size {
            4 if ty == urid("http://lv2plug.in/ns/ext/atom#Float") => f64::from(value.cast::<f32>().read_unaligned()),
            8 if ty == urid("http://lv2plug.in/ns/ext/atom#Double") => value.cast::<f64>().read_unaligned(),
            4 if ty == urid("http://lv2plug.in/ns/ext/atom#Int")
                || ty == urid("http://lv2plug.in/ns/ext/atom#Bool") =>
            {
                f64::from(value.cast::<i32>().read_unaligned())
            }
            _ => return,
        };
        values.push((CStr::from_ptr(symbol).to_string_lossy().into_owned(), v));
    }
}

/// An audio bus: ports that carry one signal's channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bus {
    /// The node's name for it: `in`, `out`, `sidechain`, or its group's name.
    pub name: String,
    /// The plugin's port indices, in channel order.
    pub ports: Vec<usize>,
}

impl Lv2Info {
    /// Reads plugin `p` of `w`.
    pub(super) fn read(w: &World, p: *const LilvPlugin) -> Self {
        let f = &w.f;
        let (input, audio, control) =
            (w.uri(&format!("{LV2}InputPort")), w.uri(&format!("{LV2}AudioPort")), w.uri(&format!("{LV2}ControlPort")));
        let (atom, cv, group) = (w.uri(ATOM_PORT), w.uri(CV_PORT), w.uri(PG_GROUP));
        let props = [
            w.uri(&format!("{LV2}toggled")),
            w.uri(&format!("{LV2}integer")),
            w.uri(&format!("{LV2}enumeration")),
            w.uri(LOGARITHMIC),
            w.uri(&format!("{LV2}sampleRate")),
            w.uri(&format!("{LV2}isSideChain")),
            w.uri(&format!("{LV2}connectionOptional")),
        ];
        // SAFETY: lilv's queries on a plugin of the live world; every node the caller owns is freed.
        unsafe {
            let n = (f.lilv_plugin_get_num_ports)(p) as usize;
            let (mut min, mut max, mut def) = (vec![f32::NAN; n], vec![f32::NAN; n], vec![f32::NAN; n]);
            (f.lilv_plugin_get_port_ranges_float)(p, min.as_mut_ptr(), max.as_mut_ptr(), def.as_mut_ptr());
            let mut ports = Vec::with_capacity(n);
            for i in 0..n {
                let port = (f.lilv_plugin_get_port_by_index)(p, i as u32);
                let is = |class: &super::lilv::Node<'_>| (f.lilv_port_is_a)(p, port, class.p);
                let has = |k: usize| (f.lilv_port_has_property)(p, port, props[k].p);
                let is_in = is(&input);
                let kind = match (is(&audio), is(&control), is(&atom), is(&cv), is_in) {
                    (true, _, _, _, true) => PortKind::AudioIn,
                    (true, _, _, _, false) => PortKind::AudioOut,
                    (_, true, _, _, true) => PortKind::ControlIn,
                    (_, true, _, _, false) => PortKind::ControlOut,
                    (_, _, true, _, true) => PortKind::AtomIn,
                    (_, _, true, _, false) => PortKind::AtomOut,
                    (_, _, _, true, true) => PortKind::CvIn,
                    (_, _, _, true, false) => PortKind::CvOut,
                    _ => PortKind::Other,
                };
                let mut scale_points = Vec::new();
                let points = (f.lilv_port_get_scale_points)(p, port);
                if !points.is_null() {
                    let mut it = (f.lilv_scale_points_begin)(points);
                    while !(f.lilv_scale_points_is_end)(points, it) {
                        let sp = (f.lilv_scale_points_get)(points, it);
                        let value = (f.lilv_node_as_float)((f.lilv_scale_point_get_value)(sp));
                        scale_points.push((value, w.string((f.lilv_scale_point_get_label)(sp))));
                        it = (f.lilv_scale_points_next)(points, it);
                    }
                    (f.lilv_scale_points_free)(points);
                    scale_points.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
                ports.push(Port {
                    index: i,
                    kind,
                    symbol: w.string((f.lilv_port_get_symbol)(p, port)),
                    name: w.take_string((f.lilv_port_get_name)(p, port)).unwrap_or_default(),
                    group: w.take_string((f.lilv_port_get)(p, port, group.p)),
                    sidechain: has(5),
                    min: min[i],
                    max: max[i],
                    default: def[i],
                    toggled: has(0),
                    integer: has(1),
                    enumeration: has(2),
                    logarithmic: has(3),
                    sample_rate: has(4),
                    optional: has(6),
                    scale_points,
                });
            }
            let latency_port =
                (f.lilv_plugin_has_latency)(p).then(|| (f.lilv_plugin_get_latency_port_index)(p) as usize);
            let mut presets = Vec::new();
            let class = w.uri("http://lv2plug.in/ns/ext/presets#Preset");
            for uri in w.take_strings((f.lilv_plugin_get_related)(p, class.p)) {
                let node = w.uri(&uri);
                (f.lilv_world_load_resource)(w.world, node.p);
                let state = (f.lilv_state_new_from_world)(w.world, super::instance::urid_map(), node.p);
                if state.is_null() {
                    continue;
                }
                let label = (f.lilv_state_get_label)(state);
                let label = if label.is_null() {
                    uri.rsplit(['#', '/']).next().unwrap_or(&uri).to_string()
                } else {
                    CStr::from_ptr(label).to_string_lossy().into_owned()
                };
                let mut values: Vec<(String, f64)> = Vec::new();
                (f.lilv_state_emit_port_values)(state, port_value, std::ptr::from_mut(&mut values).cast());
                let properties = (f.lilv_state_get_num_properties)(state);
                (f.lilv_state_free)(state);
                presets.push(Preset { label, uri, values, properties });
            }
            presets.sort_by(|a, b| a.label.cmp(&b.label));
            Self {
                uri: w.string((f.lilv_plugin_get_uri)(p)),
                name: w.take_string((f.lilv_plugin_get_name)(p)).unwrap_or_default(),
                ports,
                required_features: w.take_strings((f.lilv_plugin_get_required_features)(p)),
                latency_port,
                presets,
                state: (f.lilv_plugin_has_extension_data)(p, w.uri("http://lv2plug.in/ns/ext/state#interface").p),
                hard_rt: (f.lilv_plugin_has_feature)(p, w.uri(&format!("{LV2}hardRTCapable")).p),
                library: {
                    let uri = (f.lilv_node_as_string)((f.lilv_plugin_get_library_uri)(p));
                    let path = if uri.is_null() {
                        std::ptr::null_mut()
                    } else {
                        (f.lilv_file_uri_parse)(uri, std::ptr::null_mut())
                    };
                    if path.is_null() {
                        None
                    } else {
                        let p = std::path::PathBuf::from(CStr::from_ptr(path).to_string_lossy().into_owned());
                        (f.lilv_free)(path.cast());
                        Some(p)
                    }
                },
                plugin: p as usize,
            }
        }
    }

    /// One of its presets, by label or URI.
    pub fn preset(&self, name: &str) -> Option<&Preset> {
        self.presets.iter().find(|p| p.label == name || p.uri == name)
    }

    pub fn ports(&self, kind: PortKind) -> impl Iterator<Item = &Port> {
        self.ports.iter().filter(move |p| p.kind == kind)
    }

    /// One audio input and one output: run as one instance per channel of whatever feeds the node.
    pub fn mono(&self) -> bool {
        self.ports(PortKind::AudioIn).count() == 1 && self.ports(PortKind::AudioOut).count() == 1
    }

    /// The audio buses, inputs and outputs: ports of one port group are one bus (in port order), and so are
    /// ungrouped ports whose names differ only in a channel's mark ("In Left", "In Right"). The first input
    /// bus is `in`, the first output bus `out`; a sidechain (a port that says so, or a group named for it)
    /// is `sidechain`; any other bus is named by its group (the part after `#` or the last `/`) or its
    /// ports' common name.
    pub fn buses(&self) -> (Vec<Bus>, Vec<Bus>) {
        use crate::nodes::native::ladspa::{bus_base, key_of, unique_name};
        let group = |kind: PortKind, first: &str| {
            let mut buses: Vec<(String, bool, Bus)> = Vec::new();
            for p in self.ports(kind) {
                let side =
                    p.sidechain || p.group.as_deref().is_some_and(|g| g.to_ascii_lowercase().contains("sidechain"));
                let (key, label) = match &p.group {
                    Some(g) => (g.clone(), g.rsplit(['#', '/']).next().unwrap_or(g).to_string()),
                    None => {
                        let base = bus_base(&p.name);
                        (format!(" {base}"), key_of(&base))
                    }
                };
                match buses.iter_mut().find(|(k, s, _)| *k == key && *s == side) {
                    Some((_, _, bus)) => bus.ports.push(p.index),
                    None => {
                        let name = if side {
                            "sidechain".to_string()
                        } else if buses.iter().all(|(_, s, _)| *s) {
                            first.to_string()
                        } else {
                            label
                        };
                        let unique = unique_name(&name, |n| buses.iter().any(|(_, _, b)| b.name == n));
                        buses.push((key, side, Bus { name: unique, ports: vec![p.index] }));
                    }
                }
            }
            buses.into_iter().map(|(_, _, b)| b).collect::<Vec<Bus>>()
        };
        (group(PortKind::AudioIn, "in"), group(PortKind::AudioOut, "out"))
    }

    /// The control inputs as parameters at `sample_rate`: id the port index, key its symbol.
    pub fn params(&self, sample_rate: u32) -> Vec<NativeParam> {
        self.ports(PortKind::ControlIn)
            .map(|p| {
                let (range, default) = (p.range(sample_rate), p.default_at(sample_rate));
                NativeParam::control(p.index, &p.symbol, &p.name, range, default, p.toggled, p.integer || p.enumeration)
            })
            .collect()
    }
}
