//! Engine throughput against a hand-fused loop of the same DSP, and the parallel executor against the
//! serial one. Figures and the command that reproduces them are in BENCHMARKS.md.
//!
//! `cargo build --release && cargo bench -p fxgraph-benches --bench engine` (the native-plugin figures start
//! the release `fxgraph` binary as the isolation tier's plugin host).
#![allow(unsafe_code)] // Calls a LADSPA plugin straight through its descriptor, as the reference for the node.

use criterion::{BenchmarkId, Criterion, Throughput};
use fxgraph::dsp::biquad::Coeffs;
use fxgraph::dsp::compressor::Compressor;
use fxgraph::dsp::limiter::{Limiter, LimiterSettings};
use fxgraph::io::demo::DemoSignal;
use fxgraph::node::{AudioIn, AudioOut};
use fxgraph::{AudioProcessor, Engine, EngineOptions, Graph, Parallelism};
use std::hint::black_box;

#[cfg(target_os = "linux")]
#[path = "formats.rs"]
mod formats;

const SECONDS: f64 = 1.0;

/// The repository (this crate is its `benches` folder).
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The release `fxgraph` binary, which the isolation tier starts as a plugin host.
#[cfg(target_os = "linux")]
fn fxgraph_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), Into::into);
    let exe = target.join("release/fxgraph");
    assert!(exe.is_file(), "{} not found: run `cargo build --release` first", exe.display());
    exe
}

fn graph(name: &str) -> Graph {
    let path = repo().join("graphs").join(name);
    Graph::load(path.as_ref()).expect("valid graph")
}

/// One second of the demo signal, planar stereo.
fn demo(sample_rate: u32) -> Vec<f32> {
    let mut d = DemoSignal::new(sample_rate, 2, SECONDS);
    let n = d.total_frames() as usize;
    let mut buf = vec![0.0; 2 * n];
    d.fill(&mut AudioOut::new(&mut buf, n, 2, n));
    buf
}

/// A started graph: both halves.
type Rig = (Engine, AudioProcessor);

fn start(graph: Graph, options: EngineOptions) -> Rig {
    Engine::new(graph, options).expect("engine")
}

/// Runs all of `input` (planar, `n` frames per channel) through the audio side in calls of `block`
/// frames, as a device callback would.
fn run_engine(rig: &mut Rig, input: &[f32], output: &mut [f32], block: usize) {
    let n = input.len() / 2;
    let mut at = 0;
    while at < n {
        let frames = block.min(n - at);
        rig.1.process(&AudioIn::new(&input[at..], n, 2, frames), &mut AudioOut::new(&mut output[at..], n, 2, frames));
        at += frames;
    }
}

/// A chain of this shape written out by hand as one function: an input gain, `N` biquads, a compressor,
/// `M` biquads, a limiter, using the library's own primitives, with no graph and no buffers between the
/// stages beyond the limiter's delay line. The biquads run with both channels in one `f64x2` lane pair and
/// their state in registers for a whole block (no per-sample branch or call); the compressor's gain is
/// computed for every frame, in vectorizable passes per block (level and gain computer, the envelope
/// recursion, the gain), and applied in the same pass that runs the post-compressor biquads and feeds the
/// limiter. The benchmark checks that it computes exactly the engine's output, bit for bit.
///
/// `chain.ron` is `Fused<3, 0>` (no input gain); the precision/speed issue's reference chain is
/// `Fused<5, 1>` (gain -6 dB, five peaks, compressor, 12 kHz low-pass, limiter).
struct Fused<const N: usize, const M: usize> {
    gain: Option<f32>,
    pre: [Coeffs; N],
    pre_state: [[[f64; 2]; 2]; N],
    comp: Compressor,
    post: [Coeffs; M],
    post_state: [[[f64; 2]; 2]; M],
    lim: Limiter,
    /// Per channel: `d` frames of history, then the block.
    delay: [Vec<f32>; 2],
    d: usize,
    gains: Vec<f32>,
    required: Vec<f32>,
    ceiling: f32,
    /// The engine's choice of kernels ([`fxgraph::dsp::fma_kernels`]): the loop computes the same bits.
    fma: bool,
}

const FUSED_BLOCK: usize = 512;

/// The typed parameters of a graph's node `i`.
fn params<T: 'static>(graph: &Graph, i: usize) -> &T {
    graph.nodes[i].spec.as_any().downcast_ref::<T>().expect("the node kind the fused loop expects")
}

impl<const N: usize, const M: usize> Fused<N, M> {
    /// Builds the loop from a graph of the shape [Gain], Eq (N bands), Compressor, [Eq (M bands)], Limiter,
    /// reading its parameters from the graph.
    fn new(graph: &Graph) -> Self {
        use fxgraph::nodes::builtin::{CompressorParams, EqParams, GainParams, LimiterParams};
        let sr = graph.format.sample_rate;
        let mut i = 0;
        let gain = graph.nodes[0].spec.as_any().downcast_ref::<GainParams>().map(|g| {
            i = 1;
            fxgraph::dsp::db_to_gain(g.gain_db) as f32
        });
        let coeffs =
            |eq: &EqParams| -> Vec<Coeffs> { eq.bands.iter().map(|b| b.settings().coeffs(f64::from(sr))).collect() };
        let pre: [Coeffs; N] = coeffs(params::<EqParams>(graph, i)).try_into().expect("N bands");
        let mut comp = Compressor::new(&params::<CompressorParams>(graph, i + 1).settings(), sr);
        comp.prepare(FUSED_BLOCK);
        let post: [Coeffs; M] = if M > 0 {
            coeffs(params::<EqParams>(graph, i + 2)).try_into().expect("M bands")
        } else {
            [Coeffs::IDENTITY; M]
        };
        let l = params::<LimiterParams>(graph, i + 2 + usize::from(M > 0));
        let mut lim = Limiter::new(
            &LimiterSettings {
                ceiling_db: l.ceiling_db as f32,
                lookahead_ms: l.lookahead_ms as f32,
                release_ms: l.release_ms as f32,
                true_peak: l.true_peak,
            },
            sr,
        );
        lim.prepare(2, 1);
        let d = lim.latency();
        Self {
            gain,
            pre,
            pre_state: [[[0.0; 2]; 2]; N],
            comp,
            post,
            post_state: [[[0.0; 2]; 2]; M],
            ceiling: lim.ceiling(),
            lim,
            delay: [vec![0.0; d + FUSED_BLOCK], vec![0.0; d + FUSED_BLOCK]],
            d,
            gains: vec![0.0; FUSED_BLOCK],
            required: vec![0.0; FUSED_BLOCK],
            fma: fxgraph::dsp::fma_kernels(),
        }
    }

    /// Processes planar stereo `input` into `output`, whatever its length.
    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        let n = input.len() / 2;
        let (xl, xr) = input.split_at(n);
        let (yl, yr) = output.split_at_mut(n);
        let mut at = 0;
        while at < n {
            let m = FUSED_BLOCK.min(n - at);
            let (xl, xr, yl, yr) = (&xl[at..at + m], &xr[at..at + m], &mut yl[at..at + m], &mut yr[at..at + m]);
            #[cfg(target_arch = "x86_64")]
            if self.fma {
                // SAFETY: `fma_kernels()` found AVX2 and FMA on this CPU.
                unsafe { self.block_fma(xl, xr, yl, yr) };
                at += m;
                continue;
            }
            self.block::<false>(xl, xr, yl, yr);
            at += m;
        }
    }

    /// The block with the FMA kernels: a multiply and the add after it fused, as the engine does.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_fma(&mut self, xl: &[f32], xr: &[f32], yl: &mut [f32], yr: &mut [f32]) {
        self.block::<true>(xl, xr, yl, yr);
    }

    #[inline(always)]
    fn block<const FMA: bool>(&mut self, xl: &[f32], xr: &[f32], yl: &mut [f32], yr: &mut [f32]) {
        let (m, d) = (xl.len(), self.d);
        let [dl, dr] = &mut self.delay;
        let g = &mut self.gains[..m];
        // Input gain and the pre-compressor biquads, state in registers; the compressor's detector.
        let (k, mut st) = (self.pre, self.pre_state);
        let trim = self.gain;
        for i in 0..m {
            let (l, r) = match trim {
                Some(t) => (xl[i] * t, xr[i] * t),
                None => (xl[i], xr[i]),
            };
            let mut v = [f64::from(l), f64::from(r)];
            for b in 0..N {
                v = tick2::<FMA>(&k[b], v, &mut st[b]);
            }
            let (l, r) = (v[0] as f32, v[1] as f32);
            dl[d + i] = l;
            dr[d + i] = r;
            g[i] = 0f32.max(l.abs()).max(r.abs());
        }
        self.pre_state = st;
        self.comp.peaks_to_gains(g);
        // The compressor's gain, the post-compressor biquads, into the limiter's delay line; its detector.
        let required = &mut self.required[..m];
        let (k, mut st) = (self.post, self.post_state);
        for i in 0..m {
            let (mut l, mut r) = (dl[d + i] * g[i], dr[d + i] * g[i]);
            if M > 0 {
                let mut v = [f64::from(l), f64::from(r)];
                for b in 0..M {
                    v = tick2::<FMA>(&k[b], v, &mut st[b]);
                }
                (l, r) = (v[0] as f32, v[1] as f32);
            }
            dl[d + i] = l;
            dr[d + i] = r;
            required[i] = self.lim.required_gain(0f32.max(l.abs()).max(r.abs()));
        }
        self.post_state = st;
        self.lim.required_to_gains(required);
        let c = self.ceiling;
        for i in 0..m {
            yl[i] = (dl[i] * required[i]).clamp(-c, c);
            yr[i] = (dr[i] * required[i]).clamp(-c, c);
        }
        dl.copy_within(m..m + d, 0);
        dr.copy_within(m..m + d, 0);
    }
}

/// [`Coeffs::tick2`], with the FMA version in explicit `f64x2` registers as the engine's cascade has it
/// (written with plain arithmetic, the compiler packs the two state updates into one 256-bit operation and
/// puts a shuffle into the recursion, which would make this reference slower than it needs to be).
#[inline(always)]
fn tick2<const FMA: bool>(k: &Coeffs, x: [f64; 2], s: &mut [[f64; 2]; 2]) -> [f64; 2] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is true only in `block_fma`, which runs where `fma_kernels()` found AVX2 and FMA.
        return unsafe { tick2_fma(k, x, s) };
    }
    k.tick2::<FMA>(x, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tick2_fma(k: &Coeffs, x: [f64; 2], s: &mut [[f64; 2]; 2]) -> [f64; 2] {
    use std::arch::x86_64::*;
    // SAFETY (loads and stores): each pointer is to two `f64`s; no alignment is required.
    let (x, s0, s1) = unsafe { (_mm_loadu_pd(x.as_ptr()), _mm_loadu_pd(s[0].as_ptr()), _mm_loadu_pd(s[1].as_ptr())) };
    let y = _mm_fmadd_pd(_mm_set1_pd(k.b0), x, s0);
    let s0 = _mm_fmadd_pd(_mm_set1_pd(-k.a1), y, _mm_fmadd_pd(_mm_set1_pd(k.b1), x, s1));
    let s1 = _mm_fmadd_pd(_mm_set1_pd(-k.a2), y, _mm_mul_pd(_mm_set1_pd(k.b2), x));
    let mut out = [0.0; 2];
    unsafe {
        _mm_storeu_pd(s[0].as_mut_ptr(), s0);
        _mm_storeu_pd(s[1].as_mut_ptr(), s1);
        _mm_storeu_pd(out.as_mut_ptr(), y);
    }
    out
}

type FusedChain = Fused<3, 0>;
type FusedReference = Fused<5, 1>;

fn reference_graph() -> Graph {
    let path = repo().join("benches/reference.ron");
    Graph::load(path.as_ref()).expect("valid graph")
}

/// Times `a` and `b` in interleaved ABBA rounds and returns the median over rounds of time(b) / time(a),
/// with the 25th and 75th percentiles. Slow drift of the machine's speed (other tenants, frequency) hits
/// both sides of a round alike, so the ratio is far steadier than separately timed runs.
fn paired(rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        a();
        b();
    }
    let mut ratios = Vec::with_capacity(rounds);
    let mut a_times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (a1, b1, b2, a2) = (time(&mut a), time(&mut b), time(&mut b), time(&mut a));
        ratios.push((b1 + b2) / (a1 + a2));
        a_times.push((a1 + a2) / 2.0);
    }
    let pick = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    (pick(&mut ratios, 0.5), pick(&mut ratios, 0.25), pick(&mut ratios, 0.75), pick(&mut a_times, 0.5))
}

/// The closest equivalent of `chain.ron` in FunDSP. Its bells and shelves are state-variable filters (Andrew
/// Simper's) at the same frequencies, Q and gains; FunDSP has no compressor, so one is assembled from its
/// parts: a stereo-linked peak detector (`map`), the same soft-knee gain computer in dB (`map`, with `log10`
/// and `powf` as a FunDSP user would write it), its asymmetric follower (`afollow`, 10 ms attack, 100 ms
/// release) on the gain reduction, and a `map` applying the gain to both channels; then its stereo lookahead
/// limiter (5 ms attack, 50 ms release). FunDSP processes at most 64 frames per call.
fn fundsp_chain() -> Box<dyn fundsp::prelude32::AudioUnit> {
    use fundsp::prelude32::*;
    let eq = || {
        lowshelf_hz(120.0, 0.707, db_amp(2.0))
            >> bell_hz(1000.0, 1.0, db_amp(-1.5))
            >> highshelf_hz(8000.0, 0.707, db_amp(1.5))
    };
    let gain = map(|f: &Frame<f32, U2>| f[0].abs().max(f[1].abs()))
        >> map(|f: &Frame<f32, U1>| {
            let (t, slope, w) = (-18.0f32, 1.0 - 1.0 / 4.0f32, 6.0f32);
            let over = 20.0 * f[0].max(1e-10).log10() - t;
            if over <= -w / 2.0 {
                0.0
            } else if over >= w / 2.0 {
                slope * over
            } else {
                slope * (over + w / 2.0).powi(2) / (2.0 * w)
            }
        })
        >> afollow(0.010, 0.100)
        >> map(|f: &Frame<f32, U1>| 10f32.powf((2.0 - f[0]) / 20.0));
    let comp = (multipass::<U2>() ^ gain) >> map(|f: &Frame<f32, U3>| (f[0] * f[2], f[1] * f[2]));
    let mut unit: Box<dyn AudioUnit> = Box::new((eq() | eq()) >> comp >> limiter_stereo(0.005, 0.050));
    unit.set_sample_rate(48000.0);
    unit.allocate();
    unit
}

/// Runs planar stereo `input` through a FunDSP unit, 64 frames per call.
fn run_fundsp(peer: &mut dyn fundsp::prelude32::AudioUnit, input: &[f32], output: &mut [f32]) {
    use fundsp::prelude32::{BufferArray, U2};
    let n = input.len() / 2;
    let mut inb = BufferArray::<U2>::new();
    let mut outb = BufferArray::<U2>::new();
    let mut at = 0;
    while at < n {
        let m = fundsp::MAX_BUFFER_SIZE.min(n - at);
        for c in 0..2 {
            inb.channel_f32_mut(c)[..m].copy_from_slice(&input[c * n + at..c * n + at + m]);
        }
        peer.process(m, &inb.buffer_ref(), &mut outb.buffer_mut());
        for c in 0..2 {
            output[c * n + at..c * n + at + m].copy_from_slice(&outb.channel_f32(c)[..m]);
        }
        at += m;
    }
}

/// The monitor's cost: `chain.ron` at block 512 with the monitor on against off, and with the samples
/// for a spectrum kept as well (as while someone reads reports). One engine, the monitor switched between
/// runs ([`Engine::set_monitor`]): two engines built alike differ by about 1% in speed (where their
/// processors and buffers landed in memory), which is a third of what is measured here. `chain.ron` is
/// the lightest of the chains (the monitor's work per block is about the same whatever the nodes do);
/// `with_reference` adds the reference chain, which does more per block.
fn monitor_cost(rounds: usize, with_reference: bool) {
    let input = demo(48000);
    let out = std::cell::RefCell::new(vec![0.0f32; input.len()]);
    let graphs = [("chain.ron", graph("chain.ron")), ("reference chain", reference_graph())];
    for (name, g) in graphs.into_iter().take(if with_reference { 2 } else { 1 }) {
        let engine =
            std::cell::RefCell::new(start(g, EngineOptions { max_block: 512, threads: 1, ..Default::default() }));
        for spectrum in [false, true] {
            if spectrum {
                engine.borrow_mut().0.metrics_reader().keep_spectrum();
            }
            let run = |on: bool| {
                let mut e = engine.borrow_mut();
                e.0.set_monitor(on);
                run_engine(&mut e, black_box(&input), &mut out.borrow_mut(), 512);
            };
            let (r, lo, hi, _) = paired(rounds, || run(true), || run(false));
            let what = if spectrum { "on, spectrum kept" } else { "on" };
            println!("  {name}, block 512: throughput with the monitor {what} / off = {r:.3} [{lo:.3}, {hi:.3}]");
        }
    }
}

/// The ratios BENCHMARKS.md records, each measured in pairs in this process.
fn ratios() {
    let input = demo(48000);
    let audio_s = SECONDS;
    let mut out = vec![0.0f32; input.len()];
    let mut out2 = vec![0.0f32; input.len()];
    let rounds = 41;
    println!("paired ratios ({rounds} ABBA rounds of {audio_s} s of audio each; median [p25, p75]):");
    println!(
        "  kernels: {} (FXGRAPH_KERNELS=baseline for the baseline x86-64 ones)",
        if fxgraph::dsp::fma_kernels() { "AVX2 + FMA" } else { "baseline" }
    );
    // Each fused loop computes exactly the engine's DSP: same bits out.
    for reference in [false, true] {
        let g = || if reference { reference_graph() } else { graph("chain.ron") };
        let mut engine = start(g(), EngineOptions { max_block: 512, threads: 1, ..Default::default() });
        run_engine(&mut engine, &input, &mut out, 512);
        if reference {
            FusedReference::new(&g()).process(&input, &mut out2);
        } else {
            FusedChain::new(&g()).process(&input, &mut out2);
        }
        assert!(out.iter().zip(&out2).all(|(a, b)| a.to_bits() == b.to_bits()), "fused loop differs from the engine");
    }

    let mut fused = FusedChain::new(&graph("chain.ron"));
    for block in [512, 64] {
        let mut engine =
            start(graph("chain.ron"), EngineOptions { max_block: block, threads: 1, ..Default::default() });
        let (r, lo, hi, t) = paired(
            rounds,
            || run_engine(&mut engine, black_box(&input), &mut out, block),
            || fused.process(black_box(&input), &mut out2),
        );
        println!(
            "  chain.ron, block {block:>3}: engine throughput / fused loop = {r:.3} [{lo:.3}, {hi:.3}]; engine {:.0}x realtime, {:.1} ns/frame",
            audio_s / t,
            t * 1e9 / (audio_s * 48000.0)
        );
    }
    let mut fused = FusedReference::new(&reference_graph());
    for block in [512, 64] {
        let mut engine = start(reference_graph(), EngineOptions { max_block: block, threads: 1, ..Default::default() });
        let (r, lo, hi, t) = paired(
            rounds,
            || run_engine(&mut engine, black_box(&input), &mut out, block),
            || fused.process(black_box(&input), &mut out2),
        );
        println!(
            "  reference chain, block {block:>3}: engine throughput / fused loop = {r:.3} [{lo:.3}, {hi:.3}]; engine {:.0}x realtime, {:.1} ns/frame",
            audio_s / t,
            t * 1e9 / (audio_s * 48000.0)
        );
    }
    let mut peer = fundsp_chain();
    for block in [512, 64] {
        let mut engine =
            start(graph("chain.ron"), EngineOptions { max_block: block, threads: 1, ..Default::default() });
        let (r, lo, hi, _) = paired(
            rounds,
            || run_engine(&mut engine, black_box(&input), &mut out, block),
            || run_fundsp(peer.as_mut(), black_box(&input), &mut out2),
        );
        println!("  chain.ron, block {block:>3}: engine throughput / FunDSP equivalent = {r:.3} [{lo:.3}, {hi:.3}]");
    }
    monitor_cost(rounds, false);
    for monitor in [false, true] {
        // Engine overhead: 32 unity-gain nodes against the same 32 passes over a buffer, per node per block.
        let nodes: String = (0..32).map(|i| format!("\"g{i}\": Gain(gain_db: 0.0),")).collect();
        let edges: String = (0..32)
            .map(|i| if i == 0 { "(\"input\", \"g0\"),".to_string() } else { format!("(\"g{}\", \"g{i}\"),", i - 1) })
            .collect();
        let text =
            format!("(sample_rate: 48000, channels: 2, nodes: {{ {nodes} }}, edges: [{edges} (\"g31\", \"output\")])");
        let g = Graph::parse(&text, "unity32.ron", ".".as_ref()).expect("valid");
        let block = 512;
        let mut engine = start(g, EngineOptions { max_block: block, threads: 1, monitor, ..Default::default() });
        let mut work = input.clone();
        let mut t_engine = 0.0;
        let mut t_ref = 0.0;
        let (r, _, _, _) = paired(
            rounds,
            || {
                let t = std::time::Instant::now();
                run_engine(&mut engine, black_box(&input), &mut out, block);
                t_engine += t.elapsed().as_secs_f64();
            },
            || {
                let t = std::time::Instant::now();
                let n = work.len() / 2;
                let g = black_box(1.0f32);
                for chunk_start in (0..n).step_by(block) {
                    let m = block.min(n - chunk_start);
                    for _ in 0..32 {
                        for c in 0..2 {
                            for v in &mut work[c * n + chunk_start..c * n + chunk_start + m] {
                                *v *= g;
                            }
                        }
                    }
                }
                t_ref += t.elapsed().as_secs_f64();
            },
        );
        let blocks = (input.len() / 2).div_ceil(block) as f64;
        let runs = (rounds * 2 + 3) as f64;
        let per_node_block_ns = (t_engine - t_ref) / runs / blocks / 32.0 * 1e9;
        println!(
            "  32 unity-gain nodes, block 512, monitor {}: engine overhead {per_node_block_ns:.0} ns per node per block (reference / engine time = {r:.3})",
            if monitor { "on" } else { "off" }
        );
    }
    #[cfg(target_os = "linux")]
    plugin_ratios(rounds);
    let plugins = repo().join("plugins/wasm").display().to_string();
    {
        // Cold start: a module never seen, in this process or in the disk cache (a custom section with a
        // unique name makes its bytes unique); cached: the same module under a new path, so the process has
        // not seen it but the disk cache has.
        let dir = std::env::temp_dir().join(format!("fxgraph-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for i in 0..5 {
            let mut bytes = std::fs::read(format!("{plugins}/biquad_filter.wasm")).expect("module");
            let name = format!(
                "fxgraph-bench-{}-{}-{i}",
                std::process::id(),
                std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos())
            );
            bytes.push(0); // custom section
            bytes.push((name.len() + 1) as u8); // its size (name length byte + name), under 128
            bytes.push(name.len() as u8);
            bytes.extend_from_slice(name.as_bytes());
            for (j, times) in [&mut cold, &mut warm].into_iter().enumerate() {
                std::fs::write(dir.join(format!("p{i}-{j}.wasm")), &bytes).expect("write");
                std::fs::copy(format!("{plugins}/biquad_filter.json"), dir.join(format!("p{i}-{j}.json")))
                    .expect("copy");
                let t = std::time::Instant::now();
                let g = single_node_in(&format!("Wasm(path: \"p{i}-{j}.wasm\")"), &dir);
                drop(Engine::new(g, EngineOptions::default()).expect("engine"));
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        cold.sort_by(f64::total_cmp);
        warm.sort_by(f64::total_cmp);
        println!(
            "  graph with the WebAssembly node, load and start: cold {:.2} ms, from the disk cache {:.2} ms (cold / cached = {:.1})",
            cold[2],
            warm[2],
            cold[2] / warm[2]
        );
    }
    {
        // Parameter event latency: a change set on the control side between two callbacks, on a steady
        // DC input through a Gain node. Where does the output first move, in the next callback?
        let text = "(sample_rate: 48000, channels: 2, nodes: { \"g\": Gain(gain_db: 0.0) }, \
                    edges: [(\"input\", \"g\"), (\"g\", \"output\")])";
        let g = Graph::parse(text, "gain.ron", ".".as_ref()).expect("valid");
        let block = 256;
        let mut rig = start(g, EngineOptions { max_block: block, threads: 1, ..Default::default() });
        let dc = vec![0.5f32; 2 * block];
        let mut out = vec![0.0f32; 2 * block];
        let mut first = Vec::new();
        for trial in 0..200 {
            // Settle (longer than the 20 ms ramp), then change between callbacks.
            for _ in 0..8 {
                rig.1.process(&AudioIn::new(&dc, block, 2, block), &mut AudioOut::new(&mut out, block, 2, block));
            }
            let before = out[block - 1];
            let db = if trial % 2 == 0 { -6.0 } else { 0.0 };
            rig.0.set("g", "gain_db", db).expect("valid");
            rig.0.update();
            rig.1.process(&AudioIn::new(&dc, block, 2, block), &mut AudioOut::new(&mut out, block, 2, block));
            first.push(out[..block].iter().position(|v| *v != before).unwrap_or(usize::MAX));
        }
        let in_first_frame = first.iter().filter(|&&f| f == 0).count();
        println!(
            "  parameter event latency: the output moved at frame 0 of the next {block}-frame callback in {in_first_frame} of {} changes (latest frame: {})",
            first.len(),
            first.iter().max().copied().unwrap_or(0)
        );
    }
    parallel_speedups(rounds);
}

/// `parallel.ron` driven like a device callback (one block per call), two threads against one.
fn parallel_speedups(rounds: usize) {
    let input = demo(48000);
    let audio_s = SECONDS;
    let (mut out, mut out2) = (vec![0.0f32; input.len()], vec![0.0f32; input.len()]);
    for block in [512, 64] {
        let one = EngineOptions { max_block: block, threads: 1, ..Default::default() };
        let mut serial = start(graph("parallel.ron"), one);
        for (parallelism, label) in [(Parallelism::Adaptive, "adaptive"), (Parallelism::Always, "always parallel")] {
            let two = EngineOptions { max_block: block, threads: 2, parallelism, ..Default::default() };
            let mut parallel = start(graph("parallel.ron"), two);
            let (r, lo, hi, t) = paired(
                rounds,
                || run_engine(&mut parallel, black_box(&input), &mut out, block),
                || run_engine(&mut serial, black_box(&input), &mut out2, block),
            );
            println!(
                "  parallel.ron, block {block:>3}: 2 threads ({label}) speed-up over 1 thread = {r:.3} [{lo:.3}, {hi:.3}]; {:.0}x realtime",
                audio_s / t
            );
        }
    }
}

/// The SDK's enhancer and the plain-C gain, built as the tests build them (`target/test-plugins`), and the
/// native build of the shipped WebAssembly biquad's source.
#[cfg(target_os = "linux")]
fn native_plugins() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use std::process::Command;
    let repo = repo();
    let target = repo.join("target/test-plugins");
    let o = Command::new(env!("CARGO"))
        .args(["build", "--release", "--offline", "-p", "fxgraph-enhancer", "-p", "fxgraph-biquad", "--manifest-path"])
        .arg(repo.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("cargo");
    assert!(o.status.success(), "building the enhancer: {}", String::from_utf8_lossy(&o.stderr));
    let gain = target.join("libfxgraph_gain.so");
    let o = Command::new("cc")
        .args(["-std=c99", "-O2", "-fPIC", "-shared", "-I"])
        .arg(repo.join("plugins/include"))
        .arg("-o")
        .arg(&gain)
        .arg(repo.join("plugins/native/c/gain.c"))
        .arg("-lm")
        .output()
        .expect("cc");
    assert!(o.status.success(), "cc gain.c: {}", String::from_utf8_lossy(&o.stderr));
    (target.join("release/libfxgraph_enhancer.so"), gain, target.join("release/libfxgraph_biquad.so"))
}

/// The WebAssembly biquad against the same DSP source built natively (`plugins/native/biquad`) and against
/// the built-in `Eq` with the same settings, and the headline graph (whose filter is that plugin) against
/// `chain.ron`.
#[cfg(target_os = "linux")]
fn plugin_ratios(rounds: usize) {
    let (_, _, biquad) = native_plugins();
    let input = demo(48000);
    let (mut out, mut out2) = (vec![0.0f32; input.len()], vec![0.0f32; input.len()]);
    let plugins = repo().join("plugins/wasm");
    let load = |node: &str| single_node_in(node, &plugins);
    // Settings an `f32` holds exactly (the WebAssembly ABI's parameters are `f32`, the native ABI's `f64`), so
    // that both builds compute the same coefficients, and so the same bits.
    let config = "\"cutoff_hz\": 12000.0, \"resonance\": 0.5";
    let wasm = format!("Wasm(path: \"biquad_filter.wasm\", config: {{\"type\": \"lowpass\", {config}}})");
    let native = format!("Native(path: {:?}, config: {{\"type\": 0, {config}}})", biquad.display().to_string());
    let builtin = "Eq(bands: [(kind: LowPass, freq_hz: 12000.0, q: 0.5)])";
    for block in [512, 64] {
        let options = EngineOptions { max_block: block, threads: 1, monitor: false, ..Default::default() };
        let mut w = start(load(&wasm), options);
        let mut n = start(load(&native), options);
        let mut b = start(load(builtin), options);
        run_engine(&mut w, &input, &mut out, block);
        run_engine(&mut n, &input, &mut out2, block);
        assert!(out == out2, "the WebAssembly and native builds of the biquad compute the same bits");
        let (r, lo, hi, t) = paired(
            rounds,
            || run_engine(&mut w, black_box(&input), &mut out, block),
            || run_engine(&mut n, black_box(&input), &mut out2, block),
        );
        println!(
            "  biquad low-pass, block {block:>3}: WebAssembly / native build of the same source = {r:.3} [{lo:.3}, {hi:.3}] ({:.2} ns/frame WebAssembly)",
            t * 1e9 / (input.len() / 2) as f64
        );
        let (r, lo, hi, _) = paired(
            rounds,
            || run_engine(&mut w, black_box(&input), &mut out, block),
            || run_engine(&mut b, black_box(&input), &mut out2, block),
        );
        println!(
            "  biquad low-pass, block {block:>3}: WebAssembly plugin throughput / built-in = {r:.3} [{lo:.3}, {hi:.3}]"
        );
    }
    let options = EngineOptions { max_block: 512, threads: 1, ..Default::default() };
    let mut chain = start(graph("chain.ron"), options);
    // The headline graph, and the same graph with the built-in `Eq` low-pass in the plugin's place: what any
    // second-order filter node costs there.
    let text = std::fs::read_to_string(repo().join("graphs/mastering.ron")).expect("mastering.ron");
    let plugin = text.lines().find(|l| l.contains("\"filter\": Wasm(")).expect("the filter node");
    let builtin = text.replace(plugin, "        \"filter\": Eq(bands: [(kind: LowPass, freq_hz: 12000.0, q: 0.707)]),");
    let with_builtin = Graph::parse(&builtin, "mastering.ron", &repo().join("graphs")).expect("valid");
    for (label, g) in
        [("mastering.ron", graph("mastering.ron")), ("mastering.ron with a built-in low-pass", with_builtin)]
    {
        let mut mastering = start(g, options);
        let (r, lo, hi, t) = paired(
            rounds,
            || run_engine(&mut mastering, black_box(&input), &mut out, 512),
            || run_engine(&mut chain, black_box(&input), &mut out2, 512),
        );
        println!(
            "  {label}, block 512: {:.0}x realtime; throughput / chain.ron's = {r:.3} [{lo:.3}, {hi:.3}]",
            SECONDS / t
        );
    }
}

/// A one-node stereo graph at 48 kHz, whose relative paths are in `dir`.
fn single_node_in(node: &str, dir: &std::path::Path) -> Graph {
    let text = format!(
        "(sample_rate: 48000, channels: 2, nodes: {{ \"n\": {node} }}, edges: [(\"input\", \"n\"), (\"n\", \"output\")])"
    );
    Graph::parse(&text, "bench.ron", dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A one-node stereo graph at 48 kHz.
#[cfg(target_os = "linux")]
fn single_node(node: &str) -> Graph {
    single_node_in(node, ".".as_ref())
}

/// LADSPA 1.1's descriptor (`ladspa.h`), written out here so that the reference does not share the
/// host's declarations.
#[cfg(target_os = "linux")]
#[repr(C)]
#[allow(dead_code, reason = "the layout of ladspa.h, whether this benchmark reads a field or not")]
struct Descriptor {
    unique_id: std::ffi::c_ulong,
    label: *const std::ffi::c_char,
    properties: std::ffi::c_int,
    name: *const std::ffi::c_char,
    maker: *const std::ffi::c_char,
    copyright: *const std::ffi::c_char,
    port_count: std::ffi::c_ulong,
    port_descriptors: *const std::ffi::c_int,
    port_names: *const *const std::ffi::c_char,
    port_range_hints: *const std::ffi::c_void,
    implementation_data: *mut std::ffi::c_void,
    instantiate: Option<unsafe extern "C" fn(*const Descriptor, std::ffi::c_ulong) -> *mut std::ffi::c_void>,
    connect_port: Option<unsafe extern "C" fn(*mut std::ffi::c_void, std::ffi::c_ulong, *mut f32)>,
    activate: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    run: Option<unsafe extern "C" fn(*mut std::ffi::c_void, std::ffi::c_ulong)>,
    run_adding: Option<unsafe extern "C" fn(*mut std::ffi::c_void, std::ffi::c_ulong)>,
    set_run_adding_gain: Option<unsafe extern "C" fn(*mut std::ffi::c_void, f32)>,
    deactivate: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    cleanup: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
}

/// swh-plugins' `amp` called straight through its LADSPA descriptor, one instance per channel, in calls of
/// `block` frames: what a `Ladspa` node does, without the node.
#[cfg(target_os = "linux")]
struct DirectLadspa {
    _lib: libloading::Library,
    desc: *const Descriptor,
    handles: [*mut std::ffi::c_void; 2],
    gain: Box<f32>,
}

#[cfg(target_os = "linux")]
impl DirectLadspa {
    fn new(gain_db: f32) -> Option<Self> {
        type DescriptorFn = unsafe extern "C" fn(std::ffi::c_ulong) -> *const Descriptor;
        // SAFETY: a LADSPA library from Debian's swh-plugins; its entry point has LADSPA's signature.
        let lib = unsafe { libloading::Library::new("/usr/lib/ladspa/amp_1181.so") }.ok()?;
        // SAFETY: as above.
        let desc = unsafe { lib.get::<DescriptorFn>(b"ladspa_descriptor").ok()?(0) };
        assert!(!desc.is_null());
        let mut gain = Box::new(gain_db);
        // SAFETY: the descriptor's functions, called as LADSPA 1.1 says: instantiate, connect the control
        // port (0) to a value that outlives the instance, activate.
        let handles = unsafe {
            let d = &*desc;
            let mut h = [std::ptr::null_mut(); 2];
            for slot in &mut h {
                *slot = d.instantiate.expect("instantiate")(desc, 48000);
                d.connect_port.expect("connect")(*slot, 0, &mut *gain);
                if let Some(activate) = d.activate {
                    activate(*slot);
                }
            }
            h
        };
        Some(Self { _lib: lib, desc, handles, gain })
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], block: usize) {
        let n = input.len() / 2;
        // SAFETY: ports 1 and 2 are the audio input and output; each points at `frames` valid samples for
        // the call; the instance is used from this thread only.
        unsafe {
            let d = &*self.desc;
            let (connect, run) = (d.connect_port.expect("connect"), d.run.expect("run"));
            let mut at = 0;
            while at < n {
                let frames = block.min(n - at);
                for (c, &h) in self.handles.iter().enumerate() {
                    connect(h, 1, input.as_ptr().add(c * n + at).cast_mut());
                    connect(h, 2, output.as_mut_ptr().add(c * n + at));
                    run(h, frames as std::ffi::c_ulong);
                }
                at += frames;
            }
        }
        black_box(&self.gain);
    }
}

#[cfg(target_os = "linux")]
impl Drop for DirectLadspa {
    fn drop(&mut self) {
        // SAFETY: the instances were made by this descriptor and are not used again.
        unsafe {
            let d = &*self.desc;
            for &h in &self.handles {
                if let Some(deactivate) = d.deactivate {
                    deactivate(h);
                }
                d.cleanup.expect("cleanup")(h);
            }
        }
    }
}

/// Native plugin figures: the SDK enhancer's bass shelf against the built-in `BassBoost`, the C gain
/// against the built-in `Gain`, a LADSPA node against calling the plugin directly, and the isolation round
/// trip per block.
#[cfg(target_os = "linux")]
fn native_ratios() {
    let (enhancer, gain, _) = native_plugins();
    fxgraph::nodes::native::set_host_program(fxgraph_binary());
    let input = demo(48000);
    let frames = input.len() / 2;
    let mut out = vec![0.0f32; input.len()];
    let mut out2 = vec![0.0f32; input.len()];
    let rounds = 41;
    println!("native plugins ({rounds} ABBA rounds of {SECONDS} s of audio each; median [p25, p75]):");
    let bass_native = format!(
        "Native(path: \"{}\", config: {{\"bass_gain_db\": 3.0, \"bass_freq_hz\": 100.0, \"treble_gain_db\": 0.0, \"width\": 1.0}})",
        enhancer.display()
    );
    let gain_native =
        |extra: &str| format!("Native(path: \"{}\", config: {{\"gain_db\": -3.0}}{extra})", gain.display());
    let pairs = [
        (
            "enhancer (bass shelf only) / built-in BassBoost",
            "BassBoost(gain_db: 3.0, freq_hz: 100.0)".to_string(),
            bass_native,
        ),
        ("C gain plugin / built-in Gain", "Gain(gain_db: -3.0)".to_string(), gain_native("")),
    ];
    for block in [512, 64] {
        let options = EngineOptions { max_block: block, threads: 1, ..Default::default() };
        for (label, builtin, native) in &pairs {
            let mut a = start(single_node(builtin), options);
            let mut b = start(single_node(native), options);
            let (r, lo, hi, t) = paired(
                rounds,
                || run_engine(&mut a, black_box(&input), &mut out, block),
                || run_engine(&mut b, black_box(&input), &mut out2, block),
            );
            println!(
                "  block {block:>3}: {label} = {r:.3} [{lo:.3}, {hi:.3}] ({:.1} ns/frame built-in)",
                t * 1e9 / frames as f64
            );
        }
        match DirectLadspa::new(-3.0) {
            Some(mut direct) => {
                let node = "Ladspa(path: \"amp_1181.so\", label: \"amp\", controls: {\"amps_gain_db\": -3.0})";
                let mut rig = start(single_node(node), options);
                run_engine(&mut rig, &input, &mut out, block);
                direct.process(&input, &mut out2, block);
                assert!(out == out2, "the LADSPA node computes what the direct calls compute");
                let (r, lo, hi, t) = paired(
                    rounds,
                    || direct.process(black_box(&input), &mut out2, block),
                    || run_engine(&mut rig, black_box(&input), &mut out, block),
                );
                println!(
                    "  block {block:>3}: LADSPA amp node / direct descriptor calls = {r:.2} [{lo:.2}, {hi:.2}] ({:.2} ns/frame direct; the node adds {:.0} ns per block, the engine's own input, output and metering included)",
                    t * 1e9 / frames as f64,
                    (r - 1.0) * t * 1e9 / frames.div_ceil(block) as f64
                );
                let mut builtin = start(single_node("Gain(gain_db: -3.0)"), options);
                let (r, lo, hi, _) = paired(
                    rounds,
                    || run_engine(&mut builtin, black_box(&input), &mut out2, block),
                    || run_engine(&mut rig, black_box(&input), &mut out, block),
                );
                println!("  block {block:>3}: LADSPA amp node / built-in Gain node = {r:.3} [{lo:.3}, {hi:.3}]");
            }
            None => println!("  (swh-plugins is not installed: no LADSPA figure)"),
        }
        // Isolation: the same C gain in a child process; the difference per block is the round trip.
        let mut inproc = start(single_node(&gain_native("")), options);
        let mut isolated = start(single_node(&gain_native(", isolation: Process")), options);
        let (r, lo, hi, t) = paired(
            rounds,
            || run_engine(&mut inproc, black_box(&input), &mut out, block),
            || run_engine(&mut isolated, black_box(&input), &mut out2, block),
        );
        let blocks = frames.div_ceil(block) as f64;
        println!(
            "  block {block:>3}: isolated / in-process C gain = {r:.2} [{lo:.2}, {hi:.2}]: round trip {:.2} us per block [{:.2}, {:.2}]",
            (r - 1.0) * t / blocks * 1e6,
            (lo - 1.0) * t / blocks * 1e6,
            (hi - 1.0) * t / blocks * 1e6
        );
    }
}

fn chain(c: &mut Criterion) {
    let input = demo(48000);
    let n = input.len() / 2;
    let mut out = vec![0.0f32; input.len()];

    // The fused loop computes exactly the engine's DSP: same bits out.
    let mut engine = start(graph("chain.ron"), EngineOptions { max_block: 512, threads: 1, ..Default::default() });
    run_engine(&mut engine, &input, &mut out, 512);
    let mut fused_out = vec![0.0f32; input.len()];
    FusedChain::new(&graph("chain.ron")).process(&input, &mut fused_out);
    assert!(out.iter().zip(&fused_out).all(|(a, b)| a.to_bits() == b.to_bits()), "fused loop differs from the engine");
    let mut engine = start(reference_graph(), EngineOptions { max_block: 512, threads: 1, ..Default::default() });
    run_engine(&mut engine, &input, &mut out, 512);
    FusedReference::new(&reference_graph()).process(&input, &mut fused_out);
    assert!(
        out.iter().zip(&fused_out).all(|(a, b)| a.to_bits() == b.to_bits()),
        "fused reference loop differs from the engine"
    );

    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("fused", |b| {
        let mut fused = FusedChain::new(&graph("chain.ron"));
        b.iter(|| fused.process(black_box(&input), &mut fused_out));
    });
    for block in [64, 512] {
        let mut engine =
            start(graph("chain.ron"), EngineOptions { max_block: block, threads: 1, ..Default::default() });
        group.bench_with_input(BenchmarkId::new("engine", block), &block, |b, &block| {
            b.iter(|| run_engine(&mut engine, black_box(&input), &mut out, block));
        });
    }
    group.finish();
}

fn parallel(c: &mut Criterion) {
    let input = demo(48000);
    let mut out = vec![0.0f32; input.len()];
    let mut group = c.benchmark_group("parallel");
    group.throughput(Throughput::Elements((input.len() / 2) as u64));
    for block in [64, 512] {
        for (threads, parallelism, name) in [
            (1, Parallelism::Adaptive, "serial"),
            (2, Parallelism::Adaptive, "2-threads"),
            (2, Parallelism::Always, "2-threads-always"),
        ] {
            let options = EngineOptions { max_block: block, threads, parallelism, ..Default::default() };
            let mut engine = start(graph("parallel.ron"), options);
            group.bench_with_input(BenchmarkId::new(name, block), &block, |b, &block| {
                b.iter(|| run_engine(&mut engine, black_box(&input), &mut out, block));
            });
        }
    }
    group.finish();
}

/// Each built-in node kind alone, at several block sizes.
fn nodes(c: &mut Criterion) {
    let input = demo(48000);
    let mut out = vec![0.0f32; input.len()];
    let kinds = [
        (
            "eq3",
            "Eq(bands: [(kind: LowShelf, freq_hz: 120.0, gain_db: 2.0, q: 0.707), (kind: Peak, freq_hz: 1000.0, gain_db: -1.5, q: 1.0), (kind: HighShelf, freq_hz: 8000.0, gain_db: 1.5, q: 0.707)])",
        ),
        (
            "compressor",
            "Compressor(threshold_db: -18.0, ratio: 4.0, attack_ms: 10.0, release_ms: 100.0, knee_db: 6.0, makeup_db: 2.0)",
        ),
        ("limiter", "Limiter(ceiling_db: -1.0, lookahead_ms: 5.0, release_ms: 50.0)"),
        ("gain", "Gain(gain_db: -3.0)"),
        ("width", "StereoWidth(width: 1.3)"),
        ("bass_boost", "BassBoost(gain_db: 3.0)"),
        ("treble_boost", "TrebleBoost(gain_db: 3.0)"),
    ];
    let mut group = c.benchmark_group("node");
    group.throughput(Throughput::Elements((input.len() / 2) as u64));
    for (name, node) in kinds {
        for block in [64, 512, 4096] {
            let g = single_node_in(node, ".".as_ref());
            let mut engine = start(g, EngineOptions { max_block: block, threads: 1, ..Default::default() });
            group.bench_with_input(BenchmarkId::new(name, block), &block, |b, &block| {
                b.iter(|| run_engine(&mut engine, black_box(&input), &mut out, block));
            });
        }
    }
    group.finish();
}

/// A decaying noise IR (-60 dB over its length, as a room's), as a stereo 32-bit float WAV at 48 kHz.
fn write_room_ir(path: &std::path::Path, taps: usize) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let decay = (1e-3f64).ln() / taps as f64;
    let mut data = Vec::with_capacity(taps * 8);
    for i in 0..taps {
        for _ in 0..2 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 0.05 * (decay * i as f64).exp();
            data.extend_from_slice(&(x as f32).to_le_bytes());
        }
    }
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 3 | (2 << 16), 48000, 48000 * 8, 8 | (32 << 16)] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).expect("write the IR");
}

/// The `Convolver`'s cost per block in real time: driven one block per call (512 and 64 frames, as a device
/// callback drives it) over 20 s of the demo signal, each call timed, for IRs of 4096, 65536 and 480000 taps
/// (stereo) with no latency and with a block's. Five passes, each on a fresh engine, do the same work at the
/// same call; the least of a call's five times is its cost without the machine's interruptions (this VM
/// stalls a thread for milliseconds now and then). Reported: the 99th percentile and the largest of those
/// costs against the block's real-time budget, and the largest time any call took.
fn convolver_blocks() {
    let dir = std::env::temp_dir().join(format!("fxgraph-bench-convolver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = demo(48000);
    println!("Convolver, one block per call, 20 s of the demo signal (stereo IR, 48 kHz), 5 passes:");
    for taps in [4096, 65536, 480_000] {
        let ir = dir.join(format!("ir{taps}.wav"));
        write_room_ir(&ir, taps);
        for latency in ["Zero", "Block"] {
            for block in [512usize, 64] {
                let text = format!(
                    "(sample_rate: 48000, channels: 2, nodes: {{ \"conv\": Convolver(path: \"{}\", latency: {latency}) }}, edges: [(\"input\", \"conv\"), (\"conv\", \"output\")])",
                    ir.display()
                );
                let n = input.len() / 2;
                let calls = 20 * (n / block);
                let mut least = vec![f64::INFINITY; calls];
                let mut slowest = 0.0f64;
                for _ in 0..5 {
                    let graph = Graph::parse(&text, "conv.ron", &dir).expect("valid graph");
                    let options = EngineOptions { max_block: block, threads: 1, ..Default::default() };
                    let mut rig = start(graph, options);
                    let mut out = vec![0.0f32; input.len()];
                    for (call, least) in least.iter_mut().enumerate() {
                        let at = (call % (n / block)) * block;
                        let t = std::time::Instant::now();
                        rig.1.process(
                            &AudioIn::new(&input[at..], n, 2, block),
                            &mut AudioOut::new(&mut out[at..], n, 2, block),
                        );
                        let ns = t.elapsed().as_nanos() as f64;
                        *least = least.min(ns);
                        slowest = slowest.max(ns);
                    }
                }
                let mean = least.iter().sum::<f64>() / calls as f64;
                least.sort_by(f64::total_cmp);
                let budget = block as f64 / 48000.0 * 1e9;
                let (p99, max) = (least[calls * 99 / 100], least[calls - 1]);
                println!(
                    "  {taps:6} taps {latency:5} block {block:3}: mean {:6.1} us, p99 {:6.1} us ({:4.1}%), largest {:7.1} us ({:5.1}%) of a {:6.1} us budget; slowest call seen {:7.1} us",
                    mean / 1e3,
                    p99 / 1e3,
                    100.0 * p99 / budget,
                    max / 1e3,
                    100.0 * max / budget,
                    budget / 1e3,
                    slowest / 1e3
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench -p fxgraph-benches --bench engine` runs everything; `-- ratios` only the paired ratios, `-- native` only
    // the native-plugin ones (LV2's and CLAP's too; `-- formats` only those), `-- monitor` only the monitor's cost, `-- speedup` only the callback-driven
    // speed-ups of `parallel.ron`, `-- plugins` only the WebAssembly plugin's ratios (these three with more
    // rounds) and `-- convolver` only the convolver's block times;
    // any other filter only the matching criterion benchmarks.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref().is_none_or(|f| f == "ratios") {
        ratios();
    }
    #[cfg(target_os = "linux")]
    if filter.as_deref().is_none_or(|f| f == "native") {
        native_ratios();
    }
    #[cfg(target_os = "linux")]
    if filter.as_deref().is_none_or(|f| f == "native" || f == "formats") {
        formats::format_overheads();
    }
    if filter.as_deref() == Some("monitor") {
        monitor_cost(2001, true);
    }
    if filter.as_deref() == Some("speedup") {
        parallel_speedups(81);
    }
    if filter.as_deref() == Some("convolver") {
        convolver_blocks();
    }
    #[cfg(target_os = "linux")]
    if filter.as_deref() == Some("plugins") {
        println!("plugins (81 ABBA rounds of {SECONDS} s of audio each; median [p25, p75]):");
        plugin_ratios(81);
    }
    if matches!(
        filter.as_deref(),
        Some("ratios" | "native" | "formats" | "monitor" | "speedup" | "convolver" | "plugins")
    ) {
        return;
    }
    let mut c =
        Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4)).configure_from_args();
    chain(&mut c);
    parallel(&mut c);
    nodes(&mut c);
    c.final_summary();
}
