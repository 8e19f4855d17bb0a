//! `fxgraph analyze`: loudness, peaks, levels and spectrum of audio files, and of an album of them.

use crate::{Failure, bad_input};
use fxgraph::analyze::{Album, Analysis, analyze_file};
use std::path::PathBuf;

fn db(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} {unit}"))
}

fn print_human(file: &std::path::Path, a: &Analysis) {
    let l = &a.loudness;
    let (m, s) = ((a.seconds / 60.0).floor(), a.seconds % 60.0);
    println!(
        "{}: {m:.0}:{s:04.1}, {} Hz, {} channel{}",
        file.display(),
        a.sample_rate,
        a.channels,
        if a.channels == 1 { "" } else { "s" }
    );
    println!(
        "  integrated {}, loudness range {}, true peak {}, sample peak {}",
        db(l.integrated_lufs, "LUFS"),
        db(l.loudness_range_lu, "LU"),
        db(l.true_peak_dbtp, "dBTP"),
        db(l.sample_peak_dbfs, "dBFS")
    );
    println!(
        "  momentary max {}, short-term max {}",
        db(l.momentary_max_lufs, "LUFS"),
        db(l.short_term_max_lufs, "LUFS")
    );
    println!(
        "  RMS {:.1} dBFS, crest factor {:.1} dB, dynamic range {:.1} dB{}",
        a.rms_dbfs,
        a.crest_factor_db,
        a.dynamic_range_db,
        if a.clipped_samples > 0 { format!(", {} samples over full scale", a.clipped_samples) } else { String::new() }
    );
    if !a.spectrum.is_empty() {
        let bands: Vec<String> = a
            .spectrum
            .iter()
            .map(|b| {
                let hz = if b.center_hz >= 1000.0 {
                    format!("{:.1}k", b.center_hz / 1000.0)
                } else {
                    format!("{:.0}", b.center_hz)
                };
                format!("{hz} {:.0}", b.level_db)
            })
            .collect();
        println!("  third octaves (Hz dB): {}", bands.join(", "));
    }
}

pub(crate) fn run(files: &[PathBuf], json: bool) -> Result<(), Failure> {
    let mut meters = Vec::new();
    let mut failed = 0;
    for file in files {
        match analyze_file(file) {
            Ok((analysis, meter)) => {
                if json {
                    let mut v = serde_json::to_value(&analysis).map_err(|e| Failure::Other(e.into()))?;
                    if let Some(o) = v.as_object_mut() {
                        o.insert("file".into(), file.display().to_string().into());
                    }
                    println!("{v}");
                } else {
                    print_human(file, &analysis);
                }
                meters.push(meter);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if meters.len() > 1 {
        let album = Album::of(&meters);
        if json {
            println!("{}", serde_json::json!({ "album": album, "files": meters.len() }));
        } else {
            println!(
                "album of {}: integrated {}, true peak {}, sample peak {}",
                meters.len(),
                db(album.integrated_lufs, "LUFS"),
                db(album.true_peak_dbtp, "dBTP"),
                db(album.sample_peak_dbfs, "dBFS")
            );
        }
    }
    if failed > 0 {
        return Err(bad_input(anyhow::anyhow!("{failed} of {} files could not be analyzed", files.len())));
    }
    Ok(())
}
