//! Frequency responses measured through the engine, their cookbook counterparts, and pictures of them.
//!
//! A response is measured, not computed: an impulse runs through the graph's own audio side, so every node
//! kind is covered (plugins, multiband splits, latency compensation). Its level is below every dynamics
//! node's threshold or ceiling (less headroom for boosts ahead of them), where compressors and limiters are
//! linear; the level is stated on the plot and in the data. The impulse feeds every channel and the first
//! output channel is measured. The magnitude and group delay are evaluated from the impulse response at
//! log-spaced frequencies from 20 Hz to just below Nyquist (a direct discrete-time Fourier transform in
//! `f64`, so no bin falls between grid points).

use fxgraph::dsp::biquad::{BandKind, Coeffs};
use fxgraph::graph::{Graph, GraphNode, Link, Source};
use fxgraph::node::{AudioIn, AudioOut};
use fxgraph::nodes::builtin::{BassBoostParams, CompressorParams, EqParams, LimiterParams, TrebleBoostParams};
use fxgraph::nodes::convolution::ConvolverParams;
use fxgraph::{Engine, EngineOptions};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// Whether a curve was measured through the engine or computed from the cookbook's formulas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CurveKind {
    Measured,
    Analytic,
    /// A target read from a file (`plot --target`).
    Target,
}

impl CurveKind {
    /// How the data and the legend name it.
    fn label(self) -> &'static str {
        match self {
            CurveKind::Measured => "measured",
            CurveKind::Analytic => "cookbook",
            CurveKind::Target => "target",
        }
    }
}

/// One curve: magnitude (and, for measured curves, group delay) on the frequency grid.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// `graph`, a node's name, or `node.bands[i]`.
    pub name: String,
    pub kind: CurveKind,
    pub magnitude_db: Vec<f64>,
    /// Group delay in milliseconds (`null` where the magnitude is below -120 dB and it means nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_delay_ms: Option<Vec<Option<f64>>>,
}

/// The curves of a graph on one frequency grid.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub graph: String,
    pub sample_rate: u32,
    /// The impulse's level, dBFS.
    pub level_dbfs: f64,
    pub freq_hz: Vec<f64>,
    pub curves: Vec<Curve>,
}

/// Points on the frequency grid.
pub const GRID_POINTS: usize = 480;

/// Log-spaced frequencies from 20 Hz to 0.995 of Nyquist.
pub fn frequency_grid(sample_rate: u32) -> Vec<f64> {
    let (lo, hi) = (20.0f64, 0.4975 * f64::from(sample_rate));
    (0..GRID_POINTS).map(|i| lo * (hi / lo).powf(i as f64 / (GRID_POINTS - 1) as f64)).collect()
}

/// The impulse level for a graph: 10 dB below the lowest compressor threshold (less half its knee) or
/// limiter ceiling, less 24 dB of headroom for boosts ahead of it; at most -30 dBFS, at least -140.
pub fn measurement_level(graph: &Graph) -> f64 {
    let mut lowest = 0.0f64;
    for node in &graph.nodes {
        let any = node.spec.as_any();
        if let Some(c) = any.downcast_ref::<CompressorParams>() {
            lowest = lowest.min(c.threshold_db - c.knee_db / 2.0);
        } else if let Some(l) = any.downcast_ref::<LimiterParams>() {
            lowest = lowest.min(l.ceiling_db);
        }
    }
    (lowest - 10.0 - 24.0).clamp(-140.0, -30.0)
}

/// The graph's impulse response (first output channel, per unit of input), `frames` long.
///
/// # Errors
/// If the graph cannot start.
pub fn impulse_response(graph: Graph, level_dbfs: f64, frames: usize) -> anyhow::Result<Vec<f64>> {
    let channels = graph.format.channels;
    let (_engine, mut audio) = Engine::new(
        graph,
        EngineOptions { max_block: 4096, threads: 1, monitor: false, realtime: false, ..Default::default() },
    )?;
    let amplitude = 10f64.powf(level_dbfs / 20.0);
    let block = 4096;
    let mut input = vec![0.0f32; channels * block];
    let mut output = vec![0.0f32; channels * block];
    let mut h = Vec::with_capacity(frames);
    while h.len() < frames {
        input.fill(0.0);
        if h.is_empty() {
            for c in 0..channels {
                input[c * block] = amplitude as f32;
            }
        }
        let n = block.min(frames - h.len());
        audio.process(&AudioIn::new(&input, block, channels, n), &mut AudioOut::new(&mut output, block, channels, n));
        // The f32 impulse is what the graph saw: divide by it exactly.
        h.extend(output[..n].iter().map(|v| f64::from(*v) / f64::from(amplitude as f32)));
    }
    Ok(h)
}

/// Magnitude (dB) and group delay (samples, `None` where the magnitude is below -120 dB) of an impulse
/// response at each frequency.
pub fn evaluate(h: &[f64], freqs: &[f64], sample_rate: f64) -> (Vec<f64>, Vec<Option<f64>>) {
    // Only the part of the response above 1e-13 of its peak matters.
    let peak = h.iter().fold(0.0f64, |p, v| p.max(v.abs()));
    let len = h.iter().rposition(|v| v.abs() > peak * 1e-13).map_or(0, |i| i + 1);
    let h = &h[..len];
    let mut mags = Vec::with_capacity(freqs.len());
    let mut delays = Vec::with_capacity(freqs.len());
    for &f in freqs {
        let w = std::f64::consts::TAU * f / sample_rate;
        let (step_im, step_re) = (-w).sin_cos();
        // e^{-jwn} by rotation, renormalized every 1024 steps.
        let (mut re, mut im) = (1.0f64, 0.0f64);
        let (mut hr, mut hi, mut nr, mut ni) = (0.0, 0.0, 0.0, 0.0);
        for (n, &x) in h.iter().enumerate() {
            hr += x * re;
            hi += x * im;
            nr += n as f64 * x * re;
            ni += n as f64 * x * im;
            let r = re * step_re - im * step_im;
            im = re * step_im + im * step_re;
            re = r;
            if n % 1024 == 1023 {
                let norm = re.hypot(im);
                re /= norm;
                im /= norm;
            }
        }
        let power = hr * hr + hi * hi;
        let db = 10.0 * power.max(1e-300).log10();
        mags.push(db);
        // Group delay = Re{ DTFT(n h[n]) / DTFT(h[n]) }.
        delays.push((db > -120.0).then(|| (nr * hr + ni * hi) / power));
    }
    (mags, delays)
}

/// A graph holding one node, from the graph's input to its output.
fn alone(graph: &Graph, node: &GraphNode, spec: Box<dyn fxgraph::node::NodeSpec>) -> Graph {
    let main = || vec![fxgraph::graph::Endpoint { name: "main".into(), channels: graph.format.channels }];
    let mut alone = graph.clone();
    alone.inputs = main();
    alone.outputs = main();
    alone.nodes = vec![GraphNode {
        name: node.name.clone(),
        spec,
        inputs: vec![Link::main(Source::Input)],
        ports: node.ports.clone(),
        layout: node.layout,
    }];
    alone.output = vec![Link::main(Source::Node(0))];
    alone
}

/// The cookbook curve of a built-in filter node, and of each of its bands (empty for other kinds).
fn analytic(spec: &dyn fxgraph::node::NodeSpec, freqs: &[f64], sample_rate: f64) -> Vec<(Option<usize>, Vec<f64>)> {
    let any = spec.as_any();
    // An Eq's gain (an imported preamp) is part of its whole curve, not of its bands'.
    let gain_db = any.downcast_ref::<EqParams>().map_or(0.0, |eq| eq.gain_db);
    let bands: Vec<(BandKind, f64, f64, f64)> = if let Some(eq) = any.downcast_ref::<EqParams>() {
        eq.bands.iter().map(|b| (b.kind, b.freq_hz, b.gain_db, b.q)).collect()
    } else if let Some(b) = any.downcast_ref::<BassBoostParams>() {
        vec![(BandKind::LowShelf, b.freq_hz, b.gain_db, std::f64::consts::FRAC_1_SQRT_2)]
    } else if let Some(t) = any.downcast_ref::<TrebleBoostParams>() {
        vec![(BandKind::HighShelf, t.freq_hz, t.gain_db, std::f64::consts::FRAC_1_SQRT_2)]
    } else {
        return Vec::new();
    };
    let coeffs: Vec<Coeffs> = bands.iter().map(|&(k, f, g, q)| Coeffs::cookbook(k, f, g, q, sample_rate)).collect();
    let db = |cs: &[Coeffs], f: f64| 20.0 * cs.iter().map(|c| c.magnitude(f, sample_rate)).product::<f64>().log10();
    let mut out = vec![(None, freqs.iter().map(|&f| gain_db + db(&coeffs, f)).collect())];
    if coeffs.len() > 1 {
        for (i, c) in coeffs.iter().enumerate() {
            out.push((Some(i), freqs.iter().map(|&f| db(std::slice::from_ref(c), f)).collect()));
        }
    }
    out
}

/// Measures the whole graph's response, and each named node's alone (with each Eq band's, and the cookbook
/// curves of the built-in filters beside the measured ones).
///
/// # Errors
/// A node name the graph does not have, or a graph that cannot start.
pub fn response(graph: &Graph, nodes: &[String], level_dbfs: Option<f64>) -> anyhow::Result<Response> {
    let sr = graph.format.sample_rate;
    let freqs = frequency_grid(sr);
    let level = level_dbfs.unwrap_or_else(|| measurement_level(graph));
    // Long enough for a 20 Hz resonance to ring out (a second and a half), and for the longest impulse
    // response a convolver holds to end, with a second for the graph's latency.
    let longest_ir = graph
        .nodes
        .iter()
        .filter_map(|n| n.spec.as_any().downcast_ref::<ConvolverParams>())
        .filter_map(ConvolverParams::ir_frames)
        .max()
        .unwrap_or(0);
    let frames = ((f64::from(sr) * 1.5) as usize).max(longest_ir + sr as usize);
    let mut curves = Vec::new();
    let measured = |g: Graph, name: String, curves: &mut Vec<Curve>| -> anyhow::Result<()> {
        let h = impulse_response(g, level, frames)?;
        let (mag, gd) = evaluate(&h, &freqs, f64::from(sr));
        let ms = gd.into_iter().map(|d| d.map(|s| s * 1e3 / f64::from(sr))).collect();
        curves.push(Curve { name, kind: CurveKind::Measured, magnitude_db: mag, group_delay_ms: Some(ms) });
        Ok(())
    };
    let whole = graph.clone();
    measured(whole, "graph".into(), &mut curves)?;
    for name in nodes {
        let node = graph.nodes.iter().find(|n| n.name == *name).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no node is named \"{name}\" (nodes: {})",
                graph.file,
                graph.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        if !(node.layout.is_effect() && node.layout.input(0) == graph.format.channels) {
            anyhow::bail!(
                "{}: node \"{name}\" is not a one-input, one-output node of the graph's width; plot measures only such nodes alone",
                graph.file
            );
        }
        measured(alone(graph, node, node.spec.clone_spec()), name.clone(), &mut curves)?;
        if let Some(eq) = node.spec.as_any().downcast_ref::<EqParams>()
            && eq.bands.len() > 1
        {
            for (i, band) in eq.bands.iter().enumerate() {
                let spec = Box::new(EqParams::with_bands(vec![band.clone()]));
                measured(alone(graph, node, spec), format!("{name}.bands[{i}]"), &mut curves)?;
            }
        }
        for (band, mag) in analytic(node.spec.as_ref(), &freqs, f64::from(sr)) {
            let name = match band {
                Some(i) => format!("{name}.bands[{i}]"),
                None => name.clone(),
            };
            curves.push(Curve { name, kind: CurveKind::Analytic, magnitude_db: mag, group_delay_ms: None });
        }
    }
    Ok(Response { graph: graph.file.clone(), sample_rate: sr, level_dbfs: level, freq_hz: freqs, curves })
}

impl Response {
    /// Adds a target curve read from `path` (a frequency response as AutoEq and REW write them: lines of
    /// frequency in Hz and level in dB, separated by a comma, semicolon, tab or spaces; a header line and
    /// `#` comments are skipped), interpolated onto the grid linearly in log frequency and held at its ends.
    ///
    /// # Errors
    /// A message naming the file and line for a line that is not two numbers after the header, frequencies
    /// that do not rise, or fewer than two points.
    pub fn add_target(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mut points: Vec<(f64, f64)> = Vec::new();
        let mut header_seen = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter(|f| !f.is_empty());
            let numbers: Option<(f64, f64)> = (|| Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?)))();
            match numbers {
                Some((f, db)) if f > 0.0 && f.is_finite() && db.is_finite() => {
                    if points.last().is_some_and(|&(last, _)| f <= last) {
                        anyhow::bail!(
                            "{}:{}: the frequencies must rise ({f} Hz after {} Hz)",
                            path.display(),
                            i + 1,
                            points.last().map_or(0.0, |p| p.0)
                        );
                    }
                    points.push((f, db));
                }
                None if !header_seen && points.is_empty() => header_seen = true,
                _ => anyhow::bail!(
                    "{}:{}: expected a frequency in Hz and a level in dB, got `{line}`",
                    path.display(),
                    i + 1
                ),
            }
        }
        if points.len() < 2 {
            anyhow::bail!("{}: a target needs at least two points", path.display());
        }
        let magnitude_db = self
            .freq_hz
            .iter()
            .map(|&f| {
                let k = points.partition_point(|&(p, _)| p <= f);
                match k {
                    0 => points[0].1,
                    k if k == points.len() => points[k - 1].1,
                    k => {
                        let ((f0, d0), (f1, d1)) = (points[k - 1], points[k]);
                        d0 + (d1 - d0) * (f / f0).ln() / (f1 / f0).ln()
                    }
                }
            })
            .collect();
        let name = path.file_stem().map_or_else(|| "target".into(), |n| n.to_string_lossy().into_owned());
        self.curves.push(Curve { name, kind: CurveKind::Target, magnitude_db, group_delay_ms: None });
        Ok(())
    }

    /// The data as CSV: `freq_hz`, then one column per curve (`NAME magnitude_db`, measured curves also
    /// `NAME group_delay_ms`), `measured` or `analytic` in the header.
    pub fn to_csv(&self) -> String {
        let mut s =
            format!("# {} at {} Hz, impulse at {:.1} dBFS\nfreq_hz", self.graph, self.sample_rate, self.level_dbfs);
        for c in &self.curves {
            let kind = match c.kind {
                CurveKind::Analytic => "analytic",
                k => k.label(),
            };
            s.push_str(&format!(",{} {kind} magnitude_db", c.name));
            if c.group_delay_ms.is_some() {
                s.push_str(&format!(",{} {kind} group_delay_ms", c.name));
            }
        }
        s.push('\n');
        for (i, f) in self.freq_hz.iter().enumerate() {
            s.push_str(&format!("{f:.4}"));
            for c in &self.curves {
                s.push_str(&format!(",{:.6}", c.magnitude_db[i]));
                if let Some(gd) = &c.group_delay_ms {
                    match gd[i] {
                        Some(d) => s.push_str(&format!(",{d:.6}")),
                        None => s.push(','),
                    }
                }
            }
            s.push('\n');
        }
        s
    }
}

/// The font the pictures use: DejaVu Sans, embedded (no system fonts needed).
fn font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Colors for curves, in order.
const PALETTE: [plotters::style::RGBColor; 8] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(23, 190, 207),
    plotters::style::RGBColor(140, 86, 75),
    plotters::style::RGBColor(227, 119, 194),
];

/// Writes a picture to `path`: SVG, or PNG for a `.png` path, drawn by `svg` or `png` (the same drawing for
/// either backend). The file is written whole or not at all.
///
/// # Errors
/// A message naming the file if it cannot be drawn or written.
pub fn write_picture(
    path: &Path,
    size: (u32, u32),
    svg: impl FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()>,
    png: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    font();
    let name = path.file_name().map_or_else(|| "plot".into(), |n| n.to_string_lossy().into_owned());
    let is_png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let tmp =
        path.with_file_name(format!(".{name}.fxgraph-{}.tmp{}", std::process::id(), if is_png { ".png" } else { "" }));
    let result = (|| -> anyhow::Result<()> {
        if is_png {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            png(root.clone())?;
            root.present().map_err(plot_err)?;
        } else {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
                root.fill(&WHITE).map_err(plot_err)?;
                svg(root.clone())?;
                root.present().map_err(plot_err)?;
            }
            std::fs::write(&tmp, text)?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| anyhow::anyhow!("cannot write {}: {e:#}", path.display()))
}

/// A plotters error as an `anyhow` one.
pub fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Draws a response: magnitude above, group delay below, on a log frequency axis; measured curves solid,
/// analytic ones dashed.
///
/// # Errors
/// A drawing error.
pub fn draw_response<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &Response) -> anyhow::Result<()> {
    let (top, bottom) = root.split_vertically((root.dim_in_pixel().1 as f64 * 0.62) as u32);
    let (lo, hi) = (r.freq_hz[0], *r.freq_hz.last().unwrap_or(&20000.0));
    let finite = |v: f64| v.is_finite();
    let (mut ymin, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in &r.curves {
        for &v in c.magnitude_db.iter().filter(|v| finite(**v)) {
            ymin = ymin.min(v.max(-60.0));
            ymax = ymax.max(v);
        }
    }
    let (ymin, ymax) = ((ymin - 3.0).floor().min(-6.0), (ymax + 3.0).ceil().max(6.0));
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}: magnitude (impulse at {:.0} dBFS, {} Hz)", r.graph, r.level_dbfs, r.sample_rate),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), ymin..ymax)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("frequency (Hz)")
        .y_desc("dB")
        .x_label_formatter(&|f| if *f >= 1000.0 { format!("{}k", f / 1000.0) } else { format!("{f}") })
        .draw()
        .map_err(plot_err)?;
    let mut color_of = std::collections::HashMap::new();
    for c in &r.curves {
        let n = color_of.len();
        let color = *color_of.entry(c.name.clone()).or_insert(PALETTE[n % PALETTE.len()]);
        let points = r.freq_hz.iter().copied().zip(c.magnitude_db.iter().map(|v| v.clamp(ymin, ymax)));
        let label = format!("{} ({})", c.name, c.kind.label());
        match c.kind {
            CurveKind::Measured => chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))),
            CurveKind::Analytic | CurveKind::Target => chart
                .draw_series(DashedLineSeries::new(points, 6, 4, color.stroke_width(1)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1))),
        };
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;

    let delays: Vec<f64> = r
        .curves
        .iter()
        .filter_map(|c| c.group_delay_ms.as_ref())
        .flat_map(|d| d.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    let dmax = delays.iter().fold(1.0f64, |m, v| m.max(*v)).min(1000.0) * 1.1;
    let dmin = delays.iter().fold(0.0f64, |m, v| m.min(*v)).max(-1000.0) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("group delay", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), dmin..dmax)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("frequency (Hz)")
        .y_desc("ms")
        .x_label_formatter(&|f| if *f >= 1000.0 { format!("{}k", f / 1000.0) } else { format!("{f}") })
        .draw()
        .map_err(plot_err)?;
    for c in &r.curves {
        let Some(gd) = &c.group_delay_ms else { continue };
        let color = color_of[&c.name];
        // Gaps where the group delay means nothing split the curve.
        let mut run = Vec::new();
        for (f, d) in r.freq_hz.iter().zip(gd) {
            match d {
                Some(d) => run.push((*f, d.clamp(dmin, dmax))),
                None if !run.is_empty() => {
                    chart
                        .draw_series(LineSeries::new(std::mem::take(&mut run), color.stroke_width(2)))
                        .map_err(plot_err)?;
                }
                None => {}
            }
        }
        if !run.is_empty() {
            chart.draw_series(LineSeries::new(run, color.stroke_width(2))).map_err(plot_err)?;
        }
    }
    Ok(())
}

/// Levels over time: window start (seconds), peak and RMS (dBFS) over all channels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LevelTrack {
    pub window_s: f64,
    pub points: Vec<(f64, f64, f64)>,
}

/// A [`BlockSink`](fxgraph::io::stream::BlockSink) that keeps peak and RMS per window of `window` frames.
pub struct LevelSink {
    window: usize,
    sample_rate: f64,
    frames: usize,
    in_window: usize,
    peak: f32,
    sum_sq: f64,
    pub track: LevelTrack,
}

impl LevelSink {
    pub fn new(sample_rate: u32, window_s: f64) -> Self {
        let window = ((f64::from(sample_rate) * window_s) as usize).max(1);
        Self {
            window,
            sample_rate: f64::from(sample_rate),
            frames: 0,
            in_window: 0,
            peak: 0.0,
            sum_sq: 0.0,
            track: LevelTrack { window_s, points: Vec::new() },
        }
    }

    fn close(&mut self, channels: usize) {
        if self.in_window > 0 {
            let db = |x: f64| 20.0 * x.max(1e-10).log10();
            let rms = (self.sum_sq / (self.in_window * channels.max(1)) as f64).sqrt();
            let start = (self.frames - self.in_window) as f64 / self.sample_rate;
            self.track.points.push((start, db(f64::from(self.peak)), db(rms)));
        }
        self.in_window = 0;
        self.peak = 0.0;
        self.sum_sq = 0.0;
    }

    /// Closes the last, partial window.
    pub fn finish(mut self, channels: usize) -> LevelTrack {
        self.close(channels);
        self.track
    }
}

impl fxgraph::io::stream::BlockSink for LevelSink {
    fn write(&mut self, block: &AudioIn<'_>) -> fxgraph::Result<()> {
        let channels = block.channels();
        let mut at = 0;
        while at < block.frames() {
            let n = (self.window - self.in_window).min(block.frames() - at);
            for c in 0..channels {
                for &v in &block.channel(c)[at..at + n] {
                    self.peak = self.peak.max(v.abs());
                    self.sum_sq += f64::from(v) * f64::from(v);
                }
            }
            self.in_window += n;
            self.frames += n;
            at += n;
            if self.in_window == self.window {
                self.close(channels);
            }
        }
        Ok(())
    }
}

/// Draws a benchmark: each node's mean, p99 and max time per block as a share of the block's real-time
/// budget (bars), and the output's peak and RMS level over time.
///
/// # Errors
/// A drawing error.
pub fn draw_bench<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    report: &fxgraph::monitor::MetricsReport,
    levels: &LevelTrack,
) -> anyhow::Result<()> {
    let (top, bottom) = root.split_vertically((root.dim_in_pixel().1 as f64 * 0.55) as u32);
    let budget_ns = if report.blocks > 0 {
        report.frames as f64 / report.blocks as f64 / f64::from(report.sample_rate) * 1e9
    } else {
        1.0
    };
    let share = |ns: f64| ns / budget_ns * 100.0;
    let n = report.nodes.len().max(1);
    // A log axis: a slow first block must not flatten everything else.
    let shares = report.nodes.iter().flat_map(|x| [share(x.mean_ns), share(x.max_ns as f64)]);
    let (smin, smax) = shares.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v.max(1e-6)), hi.max(v)));
    let (ymin, ymax) = ((smin / 2.0).min(0.01), (smax * 2.0).max(0.1));
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{title}: time per block as % of the block's real-time budget ({:.0} us)", budget_ns / 1e3),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (ymin..ymax).log_scale())
        .map_err(plot_err)?;
    let names: Vec<String> = report.nodes.iter().map(|x| x.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("% of budget (log)")
        .draw()
        .map_err(plot_err)?;
    type Stat = fn(&fxgraph::monitor::NodeReport) -> f64;
    let stats: [(&str, RGBColor, Stat); 3] = [
        ("mean", PALETTE[0], |x| x.mean_ns),
        ("p99", PALETTE[4], |x| x.p99_ns as f64),
        ("max", PALETTE[1], |x| x.max_ns as f64),
    ];
    for (k, (label, color, stat)) in stats.iter().enumerate() {
        let color = *color;
        chart
            .draw_series(report.nodes.iter().enumerate().map(|(i, node)| {
                let x0 = i as f64 - 0.39 + 0.26 * k as f64;
                Rectangle::new([(x0, ymin), (x0 + 0.24, share(stat(node)).max(ymin))], color.filled())
            }))
            .map_err(plot_err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;

    let end = levels.points.last().map_or(1.0, |p| p.0 + levels.window_s);
    let lo = levels.points.iter().map(|p| p.2).fold(0.0f64, f64::min).max(-90.0) - 6.0;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(format!("output level per {:.0} ms", levels.window_s * 1e3), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..end, lo..3f64)
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc("seconds").y_desc("dBFS").draw().map_err(plot_err)?;
    for (label, color, pick) in [("peak", PALETTE[1], 1usize), ("RMS", PALETTE[0], 2usize)] {
        chart
            .draw_series(LineSeries::new(
                levels.points.iter().map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }.max(lo))),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}
