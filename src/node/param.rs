//! Automatable parameters: how a node describes them ([`ParamInfo`]), how values are written
//! ([`ParamValue`]), how a change is smoothed ([`Smoothing`]), and what a bad value is ([`ParamError`]).

use std::fmt;

/// A parameter that fails validation. `path` names it as written in the file, e.g. `bands[1].freq_hz`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The parameter as written in the file.
    pub path: String,
    /// What is wrong with its value.
    pub message: String,
}

impl ParamError {
    /// The parameter at `path` with a value that is wrong as `message` says.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.path, self.message)
    }
}

impl std::error::Error for ParamError {}

/// How the audio side takes a new value of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoothing {
    /// Ramped over [`RAMP_MS`]: gains sample by sample, filter settings by recomputing coefficients every
    /// [`RAMP_STEP`] frames.
    Ramp,
    /// Taken at once (time constants, enumerations): a jump in them does not click.
    Step,
    /// The node is rebuilt and crossfaded in (a limiter's lookahead changes its latency).
    Rebuild,
}

/// Parameter ramps last this long (see [`Smoothing::Ramp`]).
pub const RAMP_MS: f64 = 20.0;
/// Ramped plugin parameters are sent, and a compressor's threshold, ratio and knee move, every this many
/// frames (built-in filters recompute their coefficients more often: `dsp::biquad::COEFF_STEP`).
pub const RAMP_STEP: usize = 32;

/// One automatable parameter of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// The parameter as written in the file: `threshold_db`, `bands[1].gain_db`, a plugin's manifest key.
    pub name: String,
    /// `dB`, `Hz`, `ms`... or empty.
    pub unit: String,
    /// Inclusive range (for enumerations: 0 to the last index).
    pub min: f64,
    /// Inclusive upper bound (for enumerations: the last index).
    pub max: f64,
    /// For enumerations: the values, in index order.
    pub choices: Option<Vec<String>>,
    /// How a change is taken.
    pub smoothing: Smoothing,
}

impl ParamInfo {
    /// A numeric parameter.
    pub fn number(name: impl Into<String>, unit: &str, min: f64, max: f64, smoothing: Smoothing) -> Self {
        Self { name: name.into(), unit: unit.into(), min, max, choices: None, smoothing }
    }

    /// Turns a value as a user writes it into the number the audio side receives.
    ///
    /// # Errors
    /// A [`ParamError`] naming the parameter, for a value of the wrong type, out of range or not among the
    /// choices.
    pub fn resolve(&self, value: &ParamValue) -> Result<f64, ParamError> {
        self.resolve_text(value).map_err(|message| ParamError::new(self.name.clone(), message))
    }

    fn resolve_text(&self, value: &ParamValue) -> Result<f64, String> {
        let unit = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        match (&self.choices, value) {
            (Some(choices), ParamValue::Text(t)) => choices
                .iter()
                .position(|c| c == t)
                .map(|i| i as f64)
                .ok_or_else(|| format!("must be one of {} (got \"{t}\")", choices.join(", "))),
            (Some(choices), ParamValue::Number(n)) => Err(format!("must be one of {} (got {n})", choices.join(", "))),
            (None, ParamValue::Text(t)) => Err(format!("must be a number (got \"{t}\")")),
            (None, ParamValue::Number(n)) => {
                if n.is_finite() && (self.min..=self.max).contains(n) {
                    Ok(*n)
                } else {
                    Err(format!("must be between {} and {}{unit} (got {n})", self.min, self.max))
                }
            }
        }
    }
}

/// A parameter value as an application or a script writes it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A number.
    Number(f64),
    /// An enumeration's value, by name.
    Text(String),
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Number(v)
    }
}

impl From<f32> for ParamValue {
    fn from(v: f32) -> Self {
        ParamValue::Number(f64::from(v))
    }
}

impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::Number(f64::from(v))
    }
}

impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_string())
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Number(n) => write!(f, "{n}"),
            ParamValue::Text(t) => write!(f, "{t}"),
        }
    }
}
