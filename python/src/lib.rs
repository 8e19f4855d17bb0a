//! `fxgraph._fxgraph`: fxgraph's engine for Python. A [`Graph`] holds a graph's text and one engine
//! prepared at the rate it was last asked for; `process` runs NumPy arrays through it with the GIL
//! released, `render` runs files, and parameters, metrics and pickling go through the engine's control
//! side. The package around this module (python/fxgraph) adds pickling and the type hints.

use fxgraph::OfflineRenderer;
use fxgraph::io::decode::AudioFile;
use fxgraph::io::wav::{WavFormat, WavSink};
use fxgraph::node::{AudioIn, AudioOut, ParamValue};
use fxgraph::{AudioProcessor, Engine, EngineOptions, Error, Graph, MetricsReader};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyKeyError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pyo3::create_exception!(
    _fxgraph,
    FxgraphError,
    PyException,
    "Something fxgraph could not do: a node that cannot be built, audio that cannot be read or written."
);
pyo3::create_exception!(
    _fxgraph,
    GraphError,
    PyValueError,
    "A graph that is not valid. Its attributes `file`, `line`, `column` and `node` say where (each None \
     where not known), `message` what is wrong."
);
pyo3::create_exception!(
    _fxgraph,
    ParamError,
    PyValueError,
    "A parameter that does not exist, or a value it does not take."
);

/// A Python exception for an fxgraph error: a located `GraphError`, a `ParamError`, an `OSError` for
/// files, or an `FxgraphError`.
fn py_err(py: Python<'_>, e: Error) -> PyErr {
    match e {
        Error::Graph(g) | Error::Preset(g) => graph_err(py, &g),
        Error::NoSuchNode(_) | Error::NoSuchParam { .. } | Error::BadValue { .. } => ParamError::new_err(e.to_string()),
        Error::Input(_) | Error::Output(_) => PyOSError::new_err(e.to_string()),
        e => FxgraphError::new_err(e.to_string()),
    }
}

fn graph_err(py: Python<'_>, g: &fxgraph::GraphError) -> PyErr {
    let err = GraphError::new_err(g.to_string());
    let value = err.value(py);
    let (line, column) = g.position.map_or((None, None), |(l, c)| (Some(l), Some(c)));
    // Attributes of a fresh exception object: setting them cannot fail short of memory.
    let _ = value.setattr("file", &g.file);
    let _ = value.setattr("line", line);
    let _ = value.setattr("column", column);
    let _ = value.setattr("node", g.node.clone());
    let _ = value.setattr("message", &g.message);
    err
}

/// The engine a graph runs on now, prepared at `rate`.
struct Running {
    rate: u32,
    engine: Engine,
    audio: AudioProcessor,
}

/// What a `Graph` holds behind its lock.
struct Inner {
    graph: Graph,
    /// The text it was parsed from, its file name as given, and the folder relative paths in it are
    /// read from: what a pickle carries.
    text: String,
    file: String,
    threads: usize,
    block: usize,
    /// Parameters set so far, each at its latest value, in the order they were last set: set again on an
    /// engine prepared at another rate, and carried by a pickle.
    set: Vec<(String, String, ParamValue)>,
    running: Running,
}

impl Inner {
    fn start(graph: &Graph, rate: u32, threads: usize, block: usize) -> Result<Running, Error> {
        // As `fxgraph render` starts an engine: blocks batched for the workers, nothing due in real time.
        let options = EngineOptions { sample_rate: Some(rate), ..EngineOptions::offline(block, threads) };
        let (engine, audio) = Engine::new(graph.clone(), options)?;
        Ok(Running { rate, engine, audio })
    }

    /// The engine prepared at `rate` (a new one, with the parameters set so far, if it was at another).
    fn at_rate(&mut self, rate: u32) -> Result<&mut Running, Error> {
        if self.running.rate != rate {
            let mut running = Self::start(&self.graph, rate, self.threads, self.block)?;
            for (node, param, value) in &self.set {
                running.engine.set(node, param, value.clone())?;
            }
            self.running = running;
        }
        Ok(&mut self.running)
    }
}

/// An effect graph, loaded from a RON file or text, with the engine that runs it.
///
/// `process` runs NumPy arrays through it, `graph["node.param"] = value` sets parameters as the engine
/// validates them, `metrics()` reads the monitor. A graph pickles as its text and the parameters set on
/// it. One graph is used by one thread at a time (calls on it wait for each other); different graphs run
/// in parallel, since processing releases the GIL.
#[pyclass(module = "fxgraph", name = "Graph")]
struct PyGraph {
    inner: Mutex<Inner>,
    /// The running engine's monitor, read without waiting for a call in progress.
    reader: Mutex<MetricsReader>,
}

fn split_key(key: &str) -> PyResult<(&str, &str)> {
    key.split_once('.').ok_or_else(|| {
        PyKeyError::new_err(format!("a parameter is named \"node.param\" (\"comp.threshold_db\"), not {key:?}"))
    })
}

fn value_of(v: &Bound<'_, PyAny>) -> PyResult<ParamValue> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(ParamValue::Text(s.to_str()?.to_owned()));
    }
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Ok(ParamValue::Number(if v.extract::<bool>()? { 1.0 } else { 0.0 }));
    }
    match v.extract::<f64>() {
        Ok(x) => Ok(ParamValue::Number(x)),
        Err(_) => Err(PyTypeError::new_err("a parameter's value is a number or a choice's name (str)")),
    }
}

fn value_to_py(py: Python<'_>, v: ParamValue) -> PyResult<Py<PyAny>> {
    Ok(match v {
        ParamValue::Number(x) => x.into_pyobject(py)?.into_any().unbind(),
        ParamValue::Text(t) => t.into_pyobject(py)?.into_any().unbind(),
    })
}

/// A JSON value as the Python object `json.loads` makes of it.
fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (value.to_string(),))?.unbind())
}

/// Samples of one input, as the engine takes them: planar `f32`.
enum Samples<'py> {
    /// A C-contiguous `float32` array, read where it is.
    Borrowed(PyReadonlyArray2<'py, f32>),
    /// A contiguous one-dimensional `float32` array (one channel), read where it is.
    Borrowed1(PyReadonlyArray1<'py, f32>),
    Owned(Vec<f32>),
}

impl Samples<'_> {
    fn as_slice(&self) -> &[f32] {
        match self {
            // Both checked contiguous when borrowed.
            Samples::Borrowed(a) => a.as_slice().unwrap_or(&[]),
            Samples::Borrowed1(a) => a.as_slice().unwrap_or(&[]),
            Samples::Owned(v) => v,
        }
    }
}

/// Whether the caller gave `float64` (the output is then `float64` too).
struct Input<'py> {
    samples: Samples<'py>,
    channels: usize,
    frames: usize,
    f64: bool,
}

/// One input array: `(channels, frames)`, or `(frames,)` for one channel; `float32` or `float64`.
fn input_array<'py>(a: &Bound<'py, PyAny>) -> PyResult<Input<'py>> {
    let np_err = || PyTypeError::new_err("audio is a NumPy array of float32 or float64, shaped (channels, frames)");
    let untyped = a.cast::<numpy::PyUntypedArray>().map_err(|_| np_err())?;
    let shape = untyped.shape().to_vec();
    let (channels, frames) = match shape[..] {
        [frames] => (1, frames),
        [channels, frames] => (channels, frames),
        _ => return Err(PyValueError::new_err(format!("audio is shaped (channels, frames); got shape {shape:?}"))),
    };
    if let Ok(x) = a.extract::<PyReadonlyArray2<'py, f32>>() {
        if x.is_c_contiguous() {
            return Ok(Input { samples: Samples::Borrowed(x), channels, frames, f64: false });
        }
        let v: Vec<f32> = x.as_array().iter().copied().collect();
        return Ok(Input { samples: Samples::Owned(v), channels, frames, f64: false });
    }
    if let Ok(x) = a.extract::<PyReadonlyArray2<'py, f64>>() {
        let v: Vec<f32> = x.as_array().iter().map(|&s| s as f32).collect();
        return Ok(Input { samples: Samples::Owned(v), channels, frames, f64: true });
    }
    if let Ok(x) = a.extract::<PyReadonlyArray1<'py, f32>>() {
        let samples = if x.is_contiguous() { Samples::Borrowed1(x) } else { Samples::Owned(x.as_array().to_vec()) };
        return Ok(Input { samples, channels, frames, f64: false });
    }
    if let Ok(x) = a.extract::<PyReadonlyArray1<'py, f64>>() {
        let v: Vec<f32> = x.as_array().iter().map(|&s| s as f32).collect();
        return Ok(Input { samples: Samples::Owned(v), channels, frames, f64: true });
    }
    Err(np_err())
}

/// Runs `frames` frames of planar `x` (`in_ch` channels) through `audio` into planar `y` (`out_ch`
/// channels), both with a stride of `frames`. With `align`, as `fxgraph render` does: the output's first
/// `latency` frames dropped and as many frames of silence fed after the input, so `y[i]` answers `x[i]`.
fn run(audio: &mut AudioProcessor, x: &[f32], in_ch: usize, y: &mut [f32], out_ch: usize, frames: usize, align: bool) {
    // The plan the control side sent last, and so its latency, before the first frame.
    audio.take_messages();
    let latency = if align { audio.latency_frames() } else { 0 };
    let mut call = |x: &[f32], xs: usize, y: &mut [f32], ys: usize, n: usize| {
        audio.process(&AudioIn::new(x, xs, in_ch, n), &mut AudioOut::new(y, ys, out_ch, n));
    };
    if latency == 0 {
        call(x, frames, y, frames, frames);
        return;
    }
    // The first `latency` frames of output (or all there are) are dropped; the silence fed after the input
    // gives the output's last `edge` frames.
    let edge = latency.min(frames);
    let mut dropped = vec![0.0f32; out_ch * latency];
    let silence = vec![0.0f32; in_ch * latency];
    call(x, frames, &mut dropped, latency, edge);
    if frames > latency {
        call(&x[latency..], frames, y, frames, frames - latency);
    } else {
        // A signal shorter than the latency: the rest of the latency is silence in, dropped too.
        call(&silence, latency, &mut dropped, latency, latency - frames);
    }
    call(&silence, latency, &mut y[frames - edge..], frames, edge);
}

#[pymethods]
impl PyGraph {
    /// Reads a graph file (RON). Relative paths in it (plugins, impulse responses) are read from its
    /// folder. `threads`: 1 runs the single-threaded executor (the default: run several graphs in
    /// parallel instead); `block`: the largest block nodes are called with.
    ///
    /// Raises GraphError (with `file`, `line`, `column`, `node`) for a graph that is not valid.
    #[staticmethod]
    #[pyo3(signature = (path, *, threads = 1, block = 512))]
    fn load(py: Python<'_>, path: PathBuf, threads: usize, block: usize) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PyOSError::new_err(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        Self::make(py, text, path.display().to_string(), base, threads, block)
    }

    /// A graph from RON text. `file` names it in error messages; `base_dir` is the folder relative paths
    /// in it are read from.
    ///
    /// Raises GraphError (with `file`, `line`, `column`, `node`) for a graph that is not valid.
    #[staticmethod]
    #[pyo3(signature = (text, *, file = "<text>".to_string(), base_dir = PathBuf::from("."), threads = 1, block = 512))]
    fn from_ron(
        py: Python<'_>,
        text: String,
        file: String,
        base_dir: PathBuf,
        threads: usize,
        block: usize,
    ) -> PyResult<Self> {
        Self::make(py, text, file, base_dir, threads, block)
    }

    /// The RON text the graph was made from.
    #[getter]
    fn ron(&self) -> String {
        self.lock().text.clone()
    }

    /// The folder relative paths in the graph are read from.
    #[getter]
    fn base_dir(&self) -> PathBuf {
        self.lock().graph.base_dir.clone()
    }

    /// The file name the graph was loaded from (as given), or the name given to `from_ron`.
    #[getter]
    fn file(&self) -> String {
        self.lock().file.clone()
    }

    /// The sample rate the graph's file gives, or None (a graph for any rate).
    #[getter]
    fn sample_rate(&self) -> Option<u32> {
        let inner = self.lock();
        inner.graph.rate_given.then_some(inner.graph.format.sample_rate)
    }

    /// The graph's inputs: their names and channel counts, in order.
    #[getter]
    fn inputs(&self) -> Vec<(String, usize)> {
        self.lock().graph.inputs.iter().map(|e| (e.name.clone(), e.channels)).collect()
    }

    /// The graph's outputs: their names and channel counts, in order.
    #[getter]
    fn outputs(&self) -> Vec<(String, usize)> {
        self.lock().graph.outputs.iter().map(|e| (e.name.clone(), e.channels)).collect()
    }

    /// Frames the graph has processed since its engine started (at this rate): readable from another
    /// thread while a call processes, to follow its progress.
    #[getter]
    fn position(&self) -> u64 {
        self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner).frames()
    }

    /// Frames by which the output lags the input (lookahead), which `process` compensates.
    #[getter]
    fn latency_frames(&self) -> usize {
        self.lock().running.engine.latency_frames()
    }

    /// Runs audio through the graph at `sample_rate` (default: the graph's own, else 48000) and returns
    /// the output.
    ///
    /// `audio`: a NumPy array shaped (channels, frames), float32 or float64 (a 1-D array is one
    /// channel); for a graph with several inputs, a dict of them by input name. The output has the
    /// input's dtype, shaped (channels, frames); for a graph with several outputs, a dict by output name.
    ///
    /// `reset=True` (the default) starts from silence and compensates the graph's latency, as
    /// `fxgraph render` does: the output is as long as the input and aligned with it, bit for bit what
    /// `fxgraph render` writes for the same samples. `reset=False` streams: the state carries on from the
    /// last call and the output comes as the engine gives it (lagging by `latency_frames`), so calls on
    /// consecutive chunks give the bits of one call on the whole.
    ///
    /// `out`: a C-contiguous float32 array shaped (channels, frames) to write the output into and return,
    /// instead of a new one (for a graph with one output): a pipeline that reuses its buffers saves the
    /// fresh memory's page faults, which cost about a tenth of the reference chain's time here.
    ///
    /// The GIL is released while the audio is processed.
    #[pyo3(signature = (audio, sample_rate = None, *, reset = true, out = None))]
    fn process<'py>(
        &self,
        py: Python<'py>,
        audio: &Bound<'py, PyAny>,
        sample_rate: Option<u32>,
        reset: bool,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let mut inner = self.lock();
        let rate = sample_rate.unwrap_or(inner.graph.format.sample_rate);
        if !(8000..=768_000).contains(&rate) {
            return Err(PyValueError::new_err(format!("sample_rate must be 8000 to 768000 Hz (got {rate})")));
        }
        let endpoints: Vec<(String, usize)> = inner.graph.inputs.iter().map(|e| (e.name.clone(), e.channels)).collect();
        let outputs: Vec<(String, usize)> = inner.graph.outputs.iter().map(|e| (e.name.clone(), e.channels)).collect();
        let in_ch: usize = endpoints.iter().map(|e| e.1).sum();
        let out_ch: usize = outputs.iter().map(|e| e.1).sum();
        // The inputs, as one planar buffer of every input's channels in order (or the one array as it is).
        let (input, frames, as_f64) = if let Ok(dict) = audio.cast::<PyDict>() {
            let mut arrays = Vec::new();
            for (name, channels) in &endpoints {
                let a = dict.get_item(name)?.ok_or_else(|| {
                    let names: Vec<&str> = endpoints.iter().map(|e| e.0.as_str()).collect();
                    PyKeyError::new_err(format!("no array for input {name:?} (the graph's inputs: {names:?})"))
                })?;
                let a = input_array(&a)?;
                if a.channels != *channels {
                    return Err(PyValueError::new_err(format!(
                        "input {name:?} has {channels} channels; the array has {}",
                        a.channels
                    )));
                }
                arrays.push(a);
            }
            for key in dict.keys() {
                let key: String = key.extract()?;
                if !endpoints.iter().any(|e| e.0 == key) {
                    return Err(PyKeyError::new_err(format!("the graph has no input {key:?}")));
                }
            }
            let frames = arrays.first().map_or(0, |a| a.frames);
            if arrays.iter().any(|a| a.frames != frames) {
                return Err(PyValueError::new_err("every input's array must have the same number of frames"));
            }
            let as_f64 = arrays.first().is_some_and(|a| a.f64);
            let mut planar = Vec::with_capacity(in_ch * frames);
            for a in &arrays {
                planar.extend_from_slice(a.samples.as_slice());
            }
            (Samples::Owned(planar), frames, as_f64)
        } else {
            if endpoints.len() > 1 {
                let names: Vec<&str> = endpoints.iter().map(|e| e.0.as_str()).collect();
                return Err(PyTypeError::new_err(format!(
                    "this graph has several inputs ({names:?}): pass a dict of arrays by input name"
                )));
            }
            let a = input_array(audio)?;
            if a.channels != in_ch {
                return Err(PyValueError::new_err(format!(
                    "the graph takes {in_ch} channels; the array has {} (shape it (channels, frames))",
                    a.channels
                )));
            }
            (a.samples, a.frames, a.f64)
        };
        // The caller's output array, checked before anything runs.
        let mut given: Option<PyReadwriteArray2<'py, f32>> = match &out {
            None => None,
            Some(o) => {
                let o = o.extract::<PyReadwriteArray2<'py, f32>>().map_err(|_| {
                    PyTypeError::new_err(
                        "out is a writable float32 NumPy array shaped (channels, frames), other than the input",
                    )
                })?;
                if outputs.len() != 1 || o.shape() != [out_ch, frames] || !o.is_c_contiguous() {
                    return Err(PyValueError::new_err(format!(
                        "out must be C-contiguous, shaped ({out_ch}, {frames}), for a graph with one output"
                    )));
                }
                Some(o)
            }
        };
        let running = self.at_rate(&mut inner, rate).map_err(|e| py_err(py, e))?;
        let audio_side = &mut running.audio;
        let x = input.as_slice();
        let mut fresh = Vec::new();
        let y: &mut [f32] = match &mut given {
            Some(o) => o.as_slice_mut().map_err(|e| PyValueError::new_err(e.to_string()))?,
            None => {
                fresh = vec![0.0f32; out_ch * frames];
                &mut fresh
            }
        };
        py.detach(|| {
            if reset {
                // Parameters set since the last call first, so that the reset settles their ramps: a reset
                // call's output depends on the parameters' values, not on when they were set.
                audio_side.take_messages();
                audio_side.reset();
            }
            run(audio_side, x, in_ch, y, out_ch, frames, reset);
        });
        running.engine.update();
        drop(inner);
        if let Some(o) = out {
            drop(given);
            return Ok(o.unbind());
        }
        let y = fresh;
        // Each output's channels, as an array of the input's dtype.
        let array = |py: Python<'py>, part: &[f32], channels: usize| -> PyResult<Py<PyAny>> {
            Ok(if as_f64 {
                let v: Vec<f64> = part.iter().map(|&s| f64::from(s)).collect();
                PyArray1::from_vec(py, v).reshape([channels, frames])?.into_any().unbind()
            } else {
                PyArray1::from_slice(py, part).reshape([channels, frames])?.into_any().unbind()
            })
        };
        if outputs.len() == 1 {
            if as_f64 {
                return array(py, &y, out_ch);
            }
            // The output buffer becomes the array's memory: no copy.
            return Ok(PyArray1::from_vec(py, y).reshape([out_ch, frames])?.into_any().unbind());
        }
        let dict = PyDict::new(py);
        let mut at = 0;
        for (name, channels) in &outputs {
            dict.set_item(name, array(py, &y[at * frames..(at + channels) * frames], *channels)?)?;
            at += channels;
        }
        Ok(dict.into_any().unbind())
    }

    /// Clears the graph's state (filters, envelopes, delay lines), as for a new signal, with the
    /// parameters set so far settled.
    fn reset(&self) {
        let audio = &mut self.lock().running.audio;
        audio.take_messages();
        audio.reset();
    }

    /// Sets a parameter, `graph["node.param"] = value`, as the engine validates it; a value outside the
    /// parameter's range or a name that does not exist raises ParamError (a ValueError).
    fn __setitem__(&self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (node, param) = split_key(key)?;
        let value = value_of(value)?;
        let mut inner = self.lock();
        inner.running.engine.set(node, param, value.clone()).map_err(|e| py_err(py, e))?;
        inner.running.engine.update();
        inner.set.retain(|(n, p, _)| (n.as_str(), p.as_str()) != (node, param));
        inner.set.push((node.to_owned(), param.to_owned(), value));
        Ok(())
    }

    /// A parameter's current value: a number, or a choice's name.
    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        let (node, param) = split_key(key)?;
        let v = self.lock().running.engine.get(node, param).map_err(|e| py_err(py, e))?;
        value_to_py(py, v)
    }

    /// Every parameter's current value, by "node.param", in file order.
    fn params(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let dict = PyDict::new(py);
        self.each_param(py, |key, _, value| dict.set_item(key, value))?;
        Ok(dict.unbind())
    }

    /// Every parameter's description: its unit, range, choices and current value, by "node.param".
    fn param_info(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let dict = PyDict::new(py);
        self.each_param(py, |key, p, value| {
            let info = PyDict::new(py);
            info.set_item("unit", &p.unit)?;
            info.set_item("min", p.min)?;
            info.set_item("max", p.max)?;
            info.set_item("choices", p.choices.clone())?;
            info.set_item("value", value)?;
            dict.set_item(key, info)
        })?;
        Ok(dict.unbind())
    }

    /// The monitor's report (per-node timing, DSP load, levels, plugin faults) as a dict, as
    /// `fxgraph bench --json` writes it.
    fn metrics(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut inner = self.lock();
        inner.running.engine.update();
        let report = inner.running.engine.metrics();
        drop(inner);
        let value = serde_json::to_value(report).map_err(|e| FxgraphError::new_err(e.to_string()))?;
        json_to_py(py, &value)
    }

    /// The node messages since the last call (plugin log lines, faults, bypasses), as dicts with `node`,
    /// `source`, `kind` and `text`.
    fn messages(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut inner = self.lock();
        inner.running.engine.update();
        let messages = inner.running.engine.messages();
        drop(inner);
        let value = serde_json::to_value(messages).map_err(|e| FxgraphError::new_err(e.to_string()))?;
        json_to_py(py, &value)
    }

    /// Pickling: a graph crosses process boundaries as its text, the folder its relative paths are read
    /// from, its options and the parameters set on it, in order (`fxgraph._restore` builds it again, with
    /// an engine of its own).
    fn __reduce__(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let restore = py.import("fxgraph")?.getattr("_restore")?.unbind();
        Ok((restore, self.state(py)?))
    }

    fn __repr__(&self) -> String {
        let inner = self.lock();
        let g = &inner.graph;
        format!(
            "<fxgraph.Graph {:?}: {} nodes, {} in, {} out, {} Hz>",
            inner.file,
            g.nodes.len(),
            g.endpoints().input_channels(),
            g.endpoints().output_channels(),
            inner.running.rate
        )
    }
}

impl PyGraph {
    /// Calls `f` with each parameter's "node.param", description and current value, in file order.
    fn each_param(
        &self,
        py: Python<'_>,
        mut f: impl FnMut(String, &fxgraph::ParamInfo, Py<PyAny>) -> PyResult<()>,
    ) -> PyResult<()> {
        let mut inner = self.lock();
        let engine = &mut inner.running.engine;
        for node in engine.node_names() {
            for p in engine.params(&node).map_err(|e| py_err(py, e))? {
                let v = engine.get(&node, &p.name).map_err(|e| py_err(py, e))?;
                f(format!("{node}.{}", p.name), &p, value_to_py(py, v)?)?;
            }
        }
        Ok(())
    }

    /// What a pickle holds: the text, file name, folder, options and the parameters set, in order.
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = self.lock();
        let set: Vec<(String, String, Py<PyAny>)> = inner
            .set
            .iter()
            .map(|(n, p, v)| Ok((n.clone(), p.clone(), value_to_py(py, v.clone())?)))
            .collect::<PyResult<_>>()?;
        let state =
            (inner.text.clone(), inner.file.clone(), inner.graph.base_dir.clone(), inner.threads, inner.block, set);
        Ok(state.into_pyobject(py)?.into_any().unbind())
    }

    fn make(py: Python<'_>, text: String, file: String, base: PathBuf, threads: usize, block: usize) -> PyResult<Self> {
        if threads == 0 || !(1..=65536).contains(&block) {
            return Err(PyValueError::new_err("threads must be at least 1 and block 1 to 65536"));
        }
        let graph = Graph::parse(&text, &file, &base).map_err(|e| graph_err(py, &e))?;
        let running = Inner::start(&graph, graph.format.sample_rate, threads, block).map_err(|e| py_err(py, e))?;
        let reader = Mutex::new(running.engine.metrics_reader());
        Ok(Self { inner: Mutex::new(Inner { graph, text, file, threads, block, set: Vec::new(), running }), reader })
    }

    /// `inner`'s engine prepared at `rate`, and this graph's monitor reader following it.
    fn at_rate<'a>(&self, inner: &'a mut Inner, rate: u32) -> Result<&'a mut Running, Error> {
        let changed = inner.running.rate != rate;
        let running = inner.at_rate(rate)?;
        if changed {
            *self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = running.engine.metrics_reader();
        }
        Ok(running)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while the lock was held left the engine as it was: go on with it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Renders an audio file through a graph into a WAV file, as `fxgraph render` does: the input decoded
/// (WAV, FLAC, MP3, Ogg Vorbis, AAC, ALAC, AIFF), its channels and rate converted to the graph's, the
/// latency compensated. `format`: "f32" (the default), "s16" or "s24" (TPDF-dithered), or "s32". The output is written to a
/// temporary file and renamed into place. Returns the frames written. The GIL is released meanwhile.
#[pyfunction]
#[pyo3(signature = (graph, input_path, output_path, *, format = "f32"))]
fn render(py: Python<'_>, graph: &PyGraph, input_path: PathBuf, output_path: PathBuf, format: &str) -> PyResult<u64> {
    let format = match format {
        "f32" => WavFormat::F32,
        "s16" => WavFormat::I16,
        "s24" => WavFormat::I24,
        "s32" => WavFormat::I32,
        other => {
            return Err(PyValueError::new_err(format!(
                "format is \"f32\", \"s16\", \"s24\" or \"s32\" (got {other:?})"
            )));
        }
    };
    let mut inner = graph.lock();
    if inner.graph.inputs.len() != 1 {
        return Err(PyValueError::new_err(
            "render reads one file, for a graph with one input: give a graph of several inputs their arrays \
             with process()",
        ));
    }
    let rate = inner.graph.format.sample_rate;
    let running = graph.at_rate(&mut inner, rate).map_err(|e| py_err(py, e))?;
    let result = py.detach(|| -> Result<u64, Error> {
        let fmt = running.engine.format();
        let mut source = AudioFile::open(&input_path, fmt)?;
        let out_ch = running.audio.output_channels();
        let mut sink = WavSink::create(&output_path, format, out_ch, fmt.sample_rate)?;
        // From silence, with the parameters set so far settled (as `process` with `reset=True`).
        running.audio.take_messages();
        running.audio.reset();
        let stats =
            OfflineRenderer::new(&mut running.audio).with_engine(&mut running.engine).run(&mut source, &mut sink)?;
        sink.finish()?;
        Ok(stats.frames)
    });
    result.map_err(|e| py_err(py, e))
}

/// Measures an audio file as `fxgraph analyze` does: integrated loudness, loudness range, true and sample
/// peak (EBU R128 / BS.1770-4), RMS, crest factor, dynamic range, clipped samples and a third-octave
/// spectrum, as a dict. The GIL is released meanwhile.
#[pyfunction]
fn analyze(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let analysis = py.detach(|| fxgraph::analyze::analyze_file(&path).map(|(a, _)| a)).map_err(|e| py_err(py, e))?;
    let value = serde_json::to_value(analysis).map_err(|e| FxgraphError::new_err(e.to_string()))?;
    json_to_py(py, &value)
}

/// Names the program that hosts native plugins run with `isolation: Process`: the `fxgraph` command
/// (`target/release/fxgraph` in a build of the repository). Until it is given (here, or by the
/// environment variable FXGRAPH_PLUGIN_HOST, or found as `fxgraph` on PATH when the package is
/// imported), a graph with an isolated plugin fails to start, saying so.
#[pyfunction]
fn set_plugin_host(path: PathBuf) -> PyResult<()> {
    if !path.is_file() {
        return Err(PyOSError::new_err(format!("no program at {}", path.display())));
    }
    #[cfg(target_os = "linux")]
    fxgraph::nodes::native::set_host_program(path);
    Ok(())
}

#[pymodule]
fn _fxgraph(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The default host of isolated plugins is the running program, which here is Python, not fxgraph.
    #[cfg(target_os = "linux")]
    if std::env::var_os("FXGRAPH_PLUGIN_HOST").is_none() {
        fxgraph::nodes::native::set_host_program(PathBuf::from(
            "the fxgraph command (give it with fxgraph.set_plugin_host(path))",
        ));
    }
    m.add_class::<PyGraph>()?;
    m.add_function(wrap_pyfunction!(set_plugin_host, m)?)?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_function(wrap_pyfunction!(analyze, m)?)?;
    m.add("FxgraphError", m.py().get_type::<FxgraphError>())?;
    m.add("GraphError", m.py().get_type::<GraphError>())?;
    m.add("ParamError", m.py().get_type::<ParamError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
