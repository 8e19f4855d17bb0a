//! The C API's cost per call: the reference chain driven one 512-frame block per call through
//! `fxgraph_process_interleaved_f32` (and `_f64`) against the same processing through the Rust API's
//! `AudioProcessor::process_interleaved`, in interleaved ABBA rounds in this process.
//!
//! Each call gets one of eight blocks (a device callback's buffers stay in cache), 10 s of audio a run.
//!
//! `cargo bench -p fxgraph-capi --bench overhead`

use fxgraph::{Engine, EngineOptions, Graph};
use fxgraph_c::*;
use std::ffi::CString;
use std::hint::black_box;
use std::path::Path;
use std::ptr::{null, null_mut};
use std::time::Instant;

const BLOCK: usize = 512;
const SECONDS: usize = 10;

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let graph = repo.join("benches/reference.ron");
    let frames = 48_000 * SECONDS;
    let calls = frames / BLOCK;
    let mut seed = 1u32;
    let input: Vec<f32> = (0..8 * BLOCK * 2)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            0.5 * (i as f32 * 0.01).sin() + 0.1 * ((seed >> 8) as f32 / (1 << 24) as f32 - 0.5)
        })
        .collect();
    let input64: Vec<f64> = input.iter().map(|&s| f64::from(s)).collect();
    let (mut out, mut out_c) = (vec![0.0f32; 2 * BLOCK], vec![0.0f32; 2 * BLOCK]);
    let mut out64 = vec![0.0f64; 2 * BLOCK];

    let options = EngineOptions { max_block: BLOCK, threads: 1, ..Default::default() };
    let (_engine, mut rust) = Engine::new(Graph::load(&graph).unwrap(), options).unwrap();
    let path = CString::new(graph.to_str().unwrap()).unwrap();
    let (mut engine, mut audio) = (null_mut(), null_mut());
    // SAFETY: valid arguments; the defaults (NULL options) are the Rust side's: blocks of 512, one thread.
    let status = unsafe { fxgraph_engine_new_from_file(path.as_ptr(), null(), &mut engine, &mut audio, null_mut(), 0) };
    assert_eq!(status, FXGRAPH_OK);

    let mut by_rust = || {
        for i in input.chunks(BLOCK * 2).cycle().take(calls) {
            rust.process_interleaved(black_box(i), &mut out, 2);
        }
    };
    let mut by_c = || {
        for i in input.chunks(BLOCK * 2).cycle().take(calls) {
            // SAFETY: a live handle and buffers of the frames given.
            let s =
                unsafe { fxgraph_process_interleaved_f32(audio, black_box(i.as_ptr()), out_c.as_mut_ptr(), BLOCK, 2) };
            debug_assert_eq!(s, FXGRAPH_OK);
        }
    };
    let mut by_c64 = || {
        for i in input64.chunks(BLOCK * 2).cycle().take(calls) {
            // SAFETY: as above.
            let s =
                unsafe { fxgraph_process_interleaved_f64(audio, black_box(i.as_ptr()), out64.as_mut_ptr(), BLOCK, 2) };
            debug_assert_eq!(s, FXGRAPH_OK);
        }
    };
    let rounds = 41;
    println!("the reference chain, one {BLOCK}-frame block a call, {SECONDS} s of audio a run, {rounds} ABBA rounds:");
    let (r, lo, hi, t) = paired(rounds, &mut by_rust, &mut by_c);
    let per_block = t / calls as f64 * 1e9;
    println!(
        "  C API f32 interleaved / Rust API: time ratio {r:.4} [{lo:.4}, {hi:.4}] (Rust API {per_block:.0} ns a block)"
    );
    let (r, lo, hi, _) = paired(rounds, &mut by_rust, &mut by_c64);
    println!("  C API f64 interleaved / Rust API: time ratio {r:.4} [{lo:.4}, {hi:.4}]");
    // SAFETY: handles made above, freed once.
    unsafe {
        fxgraph_audio_free(audio);
        fxgraph_engine_free(engine);
    }
}

/// Times `a` and `b` in ABBA rounds: the median over rounds of time(b) / time(a), its 25th and 75th
/// percentiles, and the median time of `a`.
fn paired(rounds: usize, a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> (f64, f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        a();
        b();
    }
    let (mut ratios, mut a_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (a1, b1, b2, a2) = (time(a), time(b), time(b), time(a));
        ratios.push((b1 + b2) / (a1 + a2));
        a_times.push((a1 + a2) / 2.0);
    }
    let pick = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    (pick(&mut ratios, 0.5), pick(&mut ratios, 0.25), pick(&mut ratios, 0.75), pick(&mut a_times, 0.5))
}
