//! EqualizerAPO's parametric filter text, as AutoEq publishes headphone profiles (`ParametricEQ.txt`):
//! `Preamp: -6.2 dB` and `Filter 1: ON PK Fc 105 Hz Gain -3.2 dB Q 0.70` lines, read into cookbook bands
//! (Q form) and a gain.
//!
//! Read: `Preamp` (summed, as EqualizerAPO does), and `Filter` lines of the types `PK`, `LSC`, `HSC` (with
//! `Q`, with a slope `LSC 12 dB` (`S` = slope / 12), or with neither (`S` = 0.9, EqualizerAPO's default)),
//! `LP`, `HP`, `BP` (`Q`, default 1/√2), `NO` (`Q`, default 30) and `AP` (`Q` or `BW Oct`, required);
//! `PK`, `BP`, `NO` and `AP` also take `BW Oct`. A filter that is `OFF` is skipped. Everything else (another
//! command, another filter type, a parameter a type does not take, a number that is not one) is an error
//! naming the line and column, never skipped. EqualizerAPO's bandwidth and slope forms are turned into the
//! cookbook's Q at the graph's rate, with the same formulas, so the bands' responses are EqualizerAPO's.

use crate::dsp::biquad::BandKind;
use crate::graph::{GraphError, GraphErrorKind};

/// One filter, as the cookbook's band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// The shape.
    pub kind: BandKind,
    /// Centre or corner frequency, Hz.
    pub freq_hz: f64,
    /// Gain of peaks and shelves, dB (0 for the other kinds).
    pub gain_db: f64,
    /// The cookbook's Q.
    pub q: f64,
}

/// A parametric EQ file: its bands in order, and its preamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ParametricEq {
    /// The sum of the file's `Preamp` lines, dB.
    pub preamp_db: f64,
    /// The `ON` filters, in file order.
    pub bands: Vec<Band>,
}

/// How a filter's width is given.
#[derive(Clone, Copy)]
enum Width {
    Q(f64),
    Octaves(f64),
    /// A shelf's slope in dB per octave (12 is the cookbook's S = 1).
    Slope(f64),
}

/// Reads `text` (the file `file`, for messages) for a graph at `sample_rate`.
///
/// # Errors
/// A [`GraphError`] of kind `Param` at the line and column of the first thing it cannot read.
pub fn parse(text: &str, file: &str, sample_rate: f64) -> Result<ParametricEq, GraphError> {
    let mut eq = ParametricEq { preamp_db: 0.0, bands: Vec::new() };
    for (index, line) in text.lines().enumerate() {
        let err = |col: usize, message: String| GraphError {
            kind: GraphErrorKind::Param,
            file: file.to_owned(),
            position: Some((index + 1, col)),
            node: None,
            message,
        };
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let trimmed = trimmed.trim_end();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((command, params)) = trimmed.split_once(':') else {
            return Err(err(
                indent + 1,
                format!("expected `Command: parameters`, found \"{}\"", trimmed.escape_debug()),
            ));
        };
        let params_at = indent + command.len() + 2;
        let words = Words::new(params, params_at);
        let command = command.trim();
        if command == "Preamp" {
            let mut words = words;
            let gain = words.number("a gain in dB").map_err(|(c, m)| err(c, m))?;
            words.unit("dB").map_err(|(c, m)| err(c, m))?;
            words.end().map_err(|(c, m)| err(c, m))?;
            eq.preamp_db += gain;
        } else if command == "Filter" || command.strip_prefix("Filter").is_some_and(|n| n.trim().parse::<u32>().is_ok())
        {
            if let Some(band) = filter(words, sample_rate).map_err(|(c, m)| err(c, m))? {
                eq.bands.push(band);
            }
        } else {
            return Err(err(
                indent + 1,
                format!("`{command}:` is not supported (only Preamp and Filter lines of a parametric EQ are read)"),
            ));
        }
    }
    Ok(eq)
}

/// A `Filter` line's parameters: the band, or `None` for a filter that is off.
fn filter(mut words: Words<'_>, sample_rate: f64) -> Result<Option<Band>, (usize, String)> {
    let (state, at) = words.next().ok_or((words.end_col, "expected ON or OFF".to_string()))?;
    match state {
        "ON" => {}
        "OFF" => return Ok(None),
        other => return Err((at, format!("expected ON or OFF, found \"{}\"", other.escape_debug()))),
    }
    let (name, type_at) = words.next().ok_or((words.end_col, "expected a filter type".to_string()))?;
    let (kind, shelf) = match name {
        "PK" => (BandKind::Peak, false),
        "LSC" => (BandKind::LowShelf, true),
        "HSC" => (BandKind::HighShelf, true),
        "LP" | "LPQ" => (BandKind::LowPass, false),
        "HP" | "HPQ" => (BandKind::HighPass, false),
        "BP" => (BandKind::BandPass, false),
        "NO" => (BandKind::Notch, false),
        "AP" => (BandKind::AllPass, false),
        "LS" | "HS" => {
            return Err((
                type_at,
                format!(
                    "{name} (a shelf at its mid-point frequency) is not supported: use {name}C (its corner frequency)"
                ),
            ));
        }
        other => {
            return Err((
                type_at,
                format!("filter type \"{}\" is not supported (PK, LSC, HSC, LP, HP, BP, NO, AP)", other.escape_debug()),
            ));
        }
    };
    let (mut freq, mut gain, mut width) = (None, None, None);
    // A shelf's slope comes right after its type: `LSC 12 dB`.
    if shelf && words.peek().is_some_and(|(w, _)| w.parse::<f64>().is_ok()) {
        let slope = words.number("a slope in dB")?;
        words.unit("dB")?;
        width = Some(Width::Slope(slope));
    }
    while let Some((key, at)) = words.next() {
        let duplicate = |what: &str| Err((at, format!("{what} is given twice")));
        match key {
            "Fc" => {
                if freq.is_some() {
                    return duplicate("Fc");
                }
                freq = Some(words.number("a frequency in Hz")?);
                words.unit("Hz")?;
            }
            "Gain" if kind.uses_gain() => {
                if gain.is_some() {
                    return duplicate("Gain");
                }
                gain = Some(words.number("a gain in dB")?);
                words.unit("dB")?;
            }
            "Q" => {
                if width.is_some() {
                    return duplicate("the width (Q, BW or slope)");
                }
                width = Some(Width::Q(words.number("a Q")?));
            }
            "BW" if !shelf => {
                if width.is_some() {
                    return duplicate("the width (Q or BW)");
                }
                words.unit("Oct")?;
                width = Some(Width::Octaves(words.number("a bandwidth in octaves")?));
            }
            other => {
                return Err((at, format!("{name} filters take no \"{}\"", other.escape_debug())));
            }
        }
    }
    let freq = freq.ok_or((words.end_col, format!("{name} needs Fc")))?;
    let nyquist = sample_rate / 2.0;
    if !(freq > 0.0 && freq < nyquist) {
        return Err((type_at, format!("Fc {freq} Hz is outside 0 to {nyquist} Hz (the graph's Nyquist frequency)")));
    }
    let gain_db = match (kind.uses_gain(), gain) {
        (true, Some(g)) => g,
        (true, None) => return Err((words.end_col, format!("{name} needs Gain"))),
        (false, _) => 0.0,
    };
    let width = match (width, kind) {
        (Some(w), _) => w,
        (None, BandKind::LowShelf | BandKind::HighShelf) => Width::Slope(0.9 * 12.0),
        (None, BandKind::LowPass | BandKind::HighPass | BandKind::BandPass) => {
            Width::Q(std::f64::consts::FRAC_1_SQRT_2)
        }
        (None, BandKind::Notch) => Width::Q(30.0),
        (None, _) => return Err((words.end_col, format!("{name} needs Q or BW Oct"))),
    };
    let q = match width {
        Width::Q(q) => q,
        Width::Octaves(bw) => {
            // The cookbook's bandwidth form: alpha = sin(w0) sinh(ln 2 / 2 · BW · w0 / sin(w0)), Q = sin(w0) / (2 alpha).
            let w0 = std::f64::consts::TAU * freq / sample_rate;
            1.0 / (2.0 * (std::f64::consts::LN_2 / 2.0 * bw * w0 / w0.sin()).sinh())
        }
        Width::Slope(db) => {
            // The cookbook's shelf slope: alpha = sin(w0) / 2 · sqrt((A + 1/A)(1/S - 1) + 2), S = slope / 12.
            let s = db / 12.0;
            let a = 10f64.powf(gain_db / 40.0);
            let k = (a + 1.0 / a) * (1.0 / s - 1.0) + 2.0;
            if !(s > 0.0 && k > 0.0) {
                return Err((type_at, format!("a slope of {db} dB is too steep for a gain of {gain_db} dB")));
            }
            1.0 / k.sqrt()
        }
    };
    if !(q.is_finite() && q > 0.0 && q <= 100.0) {
        return Err((type_at, format!("the filter's width comes to Q {q}, outside 0 to 100")));
    }
    if !(-48.0..=48.0).contains(&gain_db) {
        return Err((type_at, format!("Gain {gain_db} dB is outside -48 to 48 dB")));
    }
    Ok(Some(Band { kind, freq_hz: freq, gain_db, q }))
}

/// The words of a line's parameters, with their 1-based columns.
struct Words<'a> {
    words: std::iter::Peekable<std::vec::IntoIter<(&'a str, usize)>>,
    /// The column just past the line's end.
    end_col: usize,
}

impl<'a> Words<'a> {
    fn new(text: &'a str, at: usize) -> Self {
        let mut words = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    words.push((&text[s..i], at + text[..s].chars().count()));
                    start = None;
                }
                _ => {}
            }
        }
        Self { words: words.into_iter().peekable(), end_col: at + text.chars().count() }
    }

    fn next(&mut self) -> Option<(&'a str, usize)> {
        self.words.next()
    }

    fn peek(&mut self) -> Option<&(&'a str, usize)> {
        self.words.peek()
    }

    /// A finite number (a decimal comma taken as a point, as EqualizerAPO does).
    fn number(&mut self, what: &str) -> Result<f64, (usize, String)> {
        let (word, at) = self.next().ok_or((self.end_col, format!("expected {what}")))?;
        match word.replace(',', ".").parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err((at, format!("expected {what}, found \"{}\"", word.escape_debug()))),
        }
    }

    /// The unit word `unit` (any case).
    fn unit(&mut self, unit: &str) -> Result<(), (usize, String)> {
        match self.next() {
            Some((w, _)) if w.eq_ignore_ascii_case(unit) => Ok(()),
            Some((w, at)) => Err((at, format!("expected {unit}, found \"{}\"", w.escape_debug()))),
            None => Err((self.end_col, format!("expected {unit}"))),
        }
    }

    fn end(&mut self) -> Result<(), (usize, String)> {
        match self.next() {
            None => Ok(()),
            Some((w, at)) => Err((at, format!("unexpected \"{}\"", w.escape_debug()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::biquad::Coeffs;

    /// EqualizerAPO's documented formulas (the cookbook with its width forms), evaluated directly: the
    /// magnitude in dB at `f`.
    fn eqapo_db(kind: BandKind, fc: f64, gain: f64, width: Width, fs: f64, f: f64) -> f64 {
        let a = if kind.uses_gain() { 10f64.powf(gain / 40.0) } else { 1.0 };
        let w0 = std::f64::consts::TAU * fc / fs;
        let (sn, cs) = w0.sin_cos();
        let alpha = match width {
            Width::Q(q) => sn / (2.0 * q),
            Width::Slope(s) => sn / 2.0 * ((a + 1.0 / a) * (1.0 / (s / 12.0) - 1.0) + 2.0).sqrt(),
            Width::Octaves(bw) => sn * (std::f64::consts::LN_2 / 2.0 * bw * w0 / sn).sinh(),
        };
        let beta = 2.0 * a.sqrt() * alpha;
        let (b0, b1, b2, a0, a1, a2) = match kind {
            BandKind::Peak => {
                (1.0 + alpha * a, -2.0 * cs, 1.0 - alpha * a, 1.0 + alpha / a, -2.0 * cs, 1.0 - alpha / a)
            }
            BandKind::LowShelf => (
                a * ((a + 1.0) - (a - 1.0) * cs + beta),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cs),
                a * ((a + 1.0) - (a - 1.0) * cs - beta),
                (a + 1.0) + (a - 1.0) * cs + beta,
                -2.0 * ((a - 1.0) + (a + 1.0) * cs),
                (a + 1.0) + (a - 1.0) * cs - beta,
            ),
            BandKind::HighShelf => (
                a * ((a + 1.0) + (a - 1.0) * cs + beta),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cs),
                a * ((a + 1.0) + (a - 1.0) * cs - beta),
                (a + 1.0) - (a - 1.0) * cs + beta,
                2.0 * ((a - 1.0) - (a + 1.0) * cs),
                (a + 1.0) - (a - 1.0) * cs - beta,
            ),
            BandKind::LowPass => ((1.0 - cs) / 2.0, 1.0 - cs, (1.0 - cs) / 2.0, 1.0 + alpha, -2.0 * cs, 1.0 - alpha),
            BandKind::HighPass => {
                ((1.0 + cs) / 2.0, -(1.0 + cs), (1.0 + cs) / 2.0, 1.0 + alpha, -2.0 * cs, 1.0 - alpha)
            }
            BandKind::BandPass => (alpha, 0.0, -alpha, 1.0 + alpha, -2.0 * cs, 1.0 - alpha),
            BandKind::Notch => (1.0, -2.0 * cs, 1.0, 1.0 + alpha, -2.0 * cs, 1.0 - alpha),
            BandKind::AllPass => (1.0 - alpha, -2.0 * cs, 1.0 + alpha, 1.0 + alpha, -2.0 * cs, 1.0 - alpha),
        };
        // |H| from the unnormalized coefficients, by complex arithmetic at e^{jw}.
        let w = std::f64::consts::TAU * f / fs;
        let h = |c0: f64, c1: f64, c2: f64| {
            let re = c0 + c1 * w.cos() + c2 * (2.0 * w).cos();
            let im = -(c1 * w.sin() + c2 * (2.0 * w).sin());
            re.hypot(im)
        };
        20.0 * (h(b0, b1, b2) / h(a0, a1, a2)).log10()
    }

    const PROFILE: &str = "\
# A profile written for these tests (not from a database)
Preamp: -6.2 dB
Filter 1: ON LSC Fc 105 Hz Gain 5.5 dB Q 0.70
Filter 2: ON PK Fc 180 Hz Gain -3.2 dB Q 0.90
Filter 3: ON PK Fc 2300 Hz Gain 2.1 dB BW Oct 1.5
Filter 4: OFF PK Fc 4000 Hz Gain 9.0 dB Q 2.00
Filter 5: ON HSC 6 dB Fc 8000 Hz Gain -4.0 dB
Filter 6: ON HSC Fc 10000 Hz Gain 2.0 dB
Filter 7: ON HP Fc 20 Hz
Filter 8: ON LP Fc 18000 Hz Q 0.5
Filter 9: ON NO Fc 50 Hz
Filter 10: ON AP Fc 1000 Hz Q 0.7
Filter: ON BP Fc 3000 Hz BW Oct 2
";

    #[test]
    fn every_filter_matches_equalizer_apo_s_formulas() {
        let widths = [
            Width::Q(0.7),
            Width::Q(0.9),
            Width::Octaves(1.5),
            Width::Slope(6.0),
            Width::Slope(0.9 * 12.0),
            Width::Q(std::f64::consts::FRAC_1_SQRT_2),
            Width::Q(0.5),
            Width::Q(30.0),
            Width::Q(0.7),
            Width::Octaves(2.0),
        ];
        for fs in [44_100.0, 48_000.0, 96_000.0] {
            let eq = parse(PROFILE, "profile.txt", fs).unwrap();
            assert_eq!(eq.preamp_db, -6.2);
            assert_eq!(eq.bands.len(), 10, "the OFF filter is skipped");
            for (band, width) in eq.bands.iter().zip(widths) {
                let ours = Coeffs::cookbook(band.kind, band.freq_hz, band.gain_db, band.q, fs);
                let mut f = 10.0;
                while f < fs / 2.0 * 0.99 {
                    let want = eqapo_db(band.kind, band.freq_hz, band.gain_db, width, fs, f);
                    let got = 20.0 * ours.magnitude(f, fs).log10();
                    // Within 1e-9 of the linear magnitude (about 1e-8 dB at unity; more dB only deep in a notch).
                    let (g, w) = (10f64.powf(got / 20.0), 10f64.powf(want / 20.0));
                    assert!(
                        (g - w).abs() < 1e-9 * w.max(1.0),
                        "{band:?} at {fs} Hz, {f} Hz: {got} dB, EqualizerAPO {want} dB"
                    );
                    f *= 1.05;
                }
            }
        }
    }

    #[test]
    fn what_is_not_read_is_a_located_error() {
        let cases = [
            ("Channel: L\n", (1, 1), "`Channel:` is not supported"),
            ("Preamp: -3 dB\nFilter 1: ON XX Fc 100 Hz\n", (2, 14), "filter type \"XX\""),
            ("Filter 1: ON LS Fc 100 Hz Gain 3 dB\n", (1, 14), "use LSC"),
            ("Filter 1: ON PK Fc 100 Hz Gain 3 dB\n", (1, 36), "PK needs Q or BW Oct"),
            ("Filter 1: ON PK Fc abc Hz Gain 3 dB Q 1\n", (1, 20), "expected a frequency in Hz, found \"abc\""),
            ("Filter 1: ON PK Fc 100 kHz Gain 3 dB Q 1\n", (1, 24), "expected Hz"),
            ("  Filter 1: ON HP Fc 100 Hz Gain 3 dB\n", (1, 29), "HP filters take no \"Gain\""),
            ("Filter 1: ON PK Fc 30000 Hz Gain 3 dB Q 1\n", (1, 14), "outside 0 to 24000 Hz"),
            ("Filter 1: ON PK Fc 100 Hz Gain 3 dB Q 1 Q 2\n", (1, 41), "given twice"),
            ("Filter 1: MAYBE PK\n", (1, 11), "expected ON or OFF"),
            ("Filter 1: ON LSC 30 dB Fc 100 Hz Gain 24 dB\n", (1, 14), "too steep"),
            ("Preamp: -3\n", (1, 11), "expected dB"),
            ("just words\n", (1, 1), "expected `Command: parameters`"),
        ];
        for (text, position, needle) in cases {
            let e = parse(text, "p.txt", 48_000.0).expect_err(text);
            assert_eq!(e.position, Some(position), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("p.txt:{}:{}: ", position.0, position.1)), "{e}");
        }
    }
}
