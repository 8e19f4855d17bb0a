//! The monitor: per-node timing, graph load, levels and memory.
//!
//! The audio side only records, into shared storage allocated on the control side: a timing
//! histogram per node and per graph, and a meter on the output and on nodes the application asks for.
//! Recording allocates nothing and takes no lock, and any thread may read the records while audio runs
//! ([`crate::control::MetricsReader`]). The control side gathers: the `publish_metrics` system copies what
//! was recorded into [`NodeTiming`](crate::control::NodeTiming) and
//! [`NodeMeter`](crate::control::NodeMeter) components and the
//! [`GraphMetrics`](crate::control::GraphMetrics) resource, and [`crate::Engine::metrics`] turns them
//! into a [`MetricsReport`] (snapshot API, `tracing` events, JSON).

pub(crate) mod meter;
mod report;
pub(crate) mod shared;
mod timing;

pub use meter::{Band, Levels, Meter, SPECTRUM_SIZE};
pub(crate) use meter::{RMS_BINS, block_levels, rms_bin};
pub use report::{MachineClock, MachineReport, MemoryReport, MetricsReport, NodeReport};
pub use timing::Timing;
pub(crate) use timing::{BUCKETS, bucket_of};

#[cfg(test)]
mod tests {
    use super::meter::*;
    use super::*;
    use crate::node::AudioIn;

    #[test]
    fn timing_quantiles_are_within_the_bucket_resolution() {
        let mut t = Timing::default();
        for ns in 1..=10_000u64 {
            t.record(ns * 100);
        }
        assert_eq!(t.calls(), 10_000);
        assert_eq!(t.max_ns(), 1_000_000);
        assert!((t.mean_ns() - 500_050.0).abs() < 1e-6);
        for q in [0.5, 0.9, 0.99] {
            let exact = q * 1_000_000.0;
            let got = t.quantile_ns(q) as f64;
            assert!((got - exact).abs() / exact < 0.07, "q{q}: {got} vs {exact}");
        }
    }

    #[test]
    fn meter_measures_a_sine_analytically() {
        // A full-scale 1 kHz sine at 48 kHz: peak 0 dBFS, RMS -3.01 dBFS, crest 3.01 dB, nothing clipped,
        // and its third-octave band near 0 dB while distant bands are far below.
        let sr = 48000;
        let mut m = Meter::new();
        let x: Vec<f32> =
            (0..48000).map(|n| (std::f64::consts::TAU * 1000.0 * n as f64 / 48000.0).sin() as f32).collect();
        for block in x.chunks(512) {
            m.feed(block, block.len(), 1, block.len());
        }
        let l = m.levels(sr);
        assert!(l.peak_dbfs.abs() < 0.01, "{}", l.peak_dbfs);
        assert!((l.rms_dbfs + 3.0103).abs() < 0.01, "{}", l.rms_dbfs);
        assert!((l.crest_factor_db - 3.0103).abs() < 0.02);
        assert_eq!(l.clipped_samples, 0);
        assert!(l.dynamic_range_db.abs() < 0.6, "a steady sine has no dynamics: {}", l.dynamic_range_db);
        let band = |hz: f64| {
            l.spectrum
                .iter()
                .min_by(|a, b| (a.center_hz - hz).abs().total_cmp(&(b.center_hz - hz).abs()))
                .map(|b| b.level_db)
        };
        let at_1k = band(1000.0).expect("1 kHz band");
        assert!(at_1k.abs() < 0.5, "1 kHz band at {at_1k} dB");
        assert!(band(100.0).expect("100 Hz band") < -60.0);
        assert!(band(10000.0).expect("10 kHz band") < -60.0);
    }

    #[test]
    fn rms_bins_are_the_nearest_half_db() {
        // Levels from -130 to +15 dBFS in steps that never land on an edge, and the clamped ends.
        for step in 0..=2900 {
            let db = -130.0 + f64::from(step) * 0.05 + 0.013;
            let n = 1024;
            let sum_sq = 10f64.powf(db / 10.0) * n as f64;
            let want = ((db - f64::from(RMS_FLOOR_DB)) * 2.0).round().clamp(0.0, (RMS_BINS - 1) as f64) as usize;
            assert_eq!(rms_bin(sum_sq, n), want, "{db} dBFS");
        }
        assert_eq!(rms_bin(0.0, 64), 0);
        assert_eq!(rms_bin(f64::NAN, 64), 0);
        assert_eq!(rms_bin(f64::INFINITY, 64), RMS_BINS - 1);
        assert_eq!(rms_bin(-1.0, 1), 0);
        assert_eq!(rms_bin(f64::MIN_POSITIVE / 4.0, 1), 0);
        assert_eq!(rms_bin(f64::MAX, 1), RMS_BINS - 1);
    }

    #[test]
    fn rms_bins_agree_with_a_scan_of_the_edges_on_and_beside_every_edge() {
        let edges = rms_edges();
        // The last bin whose edge is at most the mean square, found by looking at every edge.
        let scan = |x: f64| edges.iter().rposition(|&e| e <= x).unwrap_or(0);
        let mut checked = 0;
        for &edge in &edges[1..] {
            let (below, above) = (f64::from_bits(edge.to_bits() - 1), f64::from_bits(edge.to_bits() + 1));
            for x in [below, edge, above, edge * 1.0001, edge * 1.02, edge * 1.05] {
                assert_eq!(rms_bin(x, 1), scan(x), "mean square {x:e}");
                checked += 1;
            }
        }
        // And across the mantissa's range at many exponents (where the guess is furthest off).
        for e in -45..8 {
            for k in 0..64 {
                let x = (1.0 + f64::from(k) / 64.0) * 2f64.powi(e);
                assert_eq!(rms_bin(x, 1), scan(x), "mean square {x:e}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6 * (RMS_BINS - 1) + 53 * 64);
    }

    #[test]
    fn block_levels_match_a_plain_double_precision_loop() {
        // Blocks peaking at 0.9 (none clipped) and at 1.2 (some clipped).
        let mut clipping_blocks = 0;
        for (channels, frames, amplitude) in
            [(1, 1, 0.9), (1, 15, 1.2), (2, 512, 0.9), (3, 37, 1.2), (2, 4099, 1.2), (1, 127, 0.9), (2, 71, 1.2)]
        {
            let stride = frames + 3;
            let data: Vec<f32> =
                (0..channels * stride).map(|i| (((i * 7919) % 2001) as f32 / 1000.0 - 1.0) * amplitude).collect();
            let BlockLevels { peak, sum_sq: sq, clipped } =
                block_levels(&AudioIn::new(&data, stride, channels, frames), crate::dsp::fma_kernels());
            // Both versions give the same peak and count, and sums of squares that differ in rounding only.
            let plain = block_levels_plain(&AudioIn::new(&data, stride, channels, frames));
            assert_eq!((peak.to_bits(), clipped), (plain.peak.to_bits(), plain.clipped));
            assert!((sq - plain.sum_sq).abs() <= 1e-6 * sq, "{sq} vs {}", plain.sum_sq);
            let samples = || (0..channels).flat_map(|c| &data[c * stride..c * stride + frames]);
            let want_peak = samples().fold(0.0f32, |p, v| p.max(v.abs()));
            let want_sq: f64 = samples().map(|&v| f64::from(v) * f64::from(v)).sum();
            let want_clipped = samples().filter(|v| v.abs() > 1.0).count() as u64;
            assert_eq!(peak, want_peak, "{channels} channels, {frames} frames");
            assert!((sq - want_sq).abs() <= 1e-5 * want_sq, "{channels} channels, {frames} frames: {sq} vs {want_sq}");
            assert_eq!(clipped, want_clipped, "{channels} channels, {frames} frames");
            clipping_blocks += usize::from(clipped > 0);
        }
        assert_eq!(clipping_blocks, 4);
    }

    #[test]
    fn the_shared_meter_records_what_the_plain_meter_does() {
        // Blocks of awkward sizes (odd ones shift the ring's position to odd samples; 5000 frames overfill it),
        // one to three channels and ten, planes with a gap between them, and some clipped samples.
        for channels in [1, 2, 3, 10] {
            let (plain, shared) = (&mut Meter::new(), shared::SharedMeter::new());
            let mut tail = shared::MeterTail::new();
            let mut t = 0usize;
            for (request, frames) in [1, 3, 37, 512, 255, 5000, 2, 4097, 64, 4095, 1].into_iter().enumerate() {
                let stride = frames + 5;
                let data: Vec<f32> = (0..channels * stride)
                    .map(|_| {
                        t += 1;
                        ((t * 48271) % 3001) as f32 / 1400.0 - 1.07
                    })
                    .collect();
                plain.feed(&data, stride, channels, frames);
                // Every block comes with a new request: the meter publishes once its tail is full.
                let spectrum = shared::Spectrum { keep: true, request: request as u64 + 1 };
                shared.feed(&AudioIn::new(&data, stride, channels, frames), &mut tail, spectrum);
                let got = shared.snapshot();
                assert_eq!(got.peak, plain.peak);
                assert_eq!(got.sum_sq, plain.sum_sq);
                assert_eq!((got.samples, got.clipped), (plain.samples, plain.clipped));
                assert_eq!(got.block_rms, plain.block_rms);
                assert_eq!(got.ring_filled, if plain.ring_filled == SPECTRUM_SIZE { SPECTRUM_SIZE } else { 0 });
                if got.ring_filled > 0 {
                    // The published window, oldest first, is the plain meter's ring read from its position.
                    let want = plain.ring[plain.ring_pos..].iter().chain(&plain.ring[..plain.ring_pos]);
                    assert_eq!(got.ring_pos, 0);
                    assert!(got.ring.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "{channels} channels");
                }
            }
            assert!(plain.clipped > 0);
        }
    }

    #[test]
    fn a_meter_publishes_its_latest_window_once_per_request_and_drops_it_when_unwatched() {
        let (meter, mut tail) = (shared::SharedMeter::new(), shared::MeterTail::new());
        let mut t = 0u32;
        let mut block = || -> Vec<f32> {
            (0..2 * 512)
                .map(|_| {
                    t += 1;
                    t as f32
                })
                .collect()
        };
        // Samples count up, so each window differs from the one before; `fed` is the mono mix of the
        // blocks fed so far, worked out here.
        let feed = |tail: &mut shared::MeterTail, data: &[f32], keep: bool, request: u64| {
            meter.feed(&AudioIn::new(data, 512, 2, 512), tail, shared::Spectrum { keep, request })
        };
        let window = || meter.snapshot().ring;
        let mut fed = Vec::new();
        // Kept but nobody asked: nothing is published, even once the tail is full.
        for _ in 0..9 {
            let b = block();
            fed.extend((0..512).map(|i| (b[i] + b[512 + i]) * 0.5));
            feed(&mut tail, &b, true, 0);
        }
        assert_eq!(meter.snapshot().ring_filled, 0);
        // Asked (request 1): published after the next block, the latest 4096 mono samples in order.
        let b = block();
        fed.extend((0..512).map(|i| (b[i] + b[512 + i]) * 0.5));
        feed(&mut tail, &b, true, 1);
        assert_eq!(meter.snapshot().ring_filled, SPECTRUM_SIZE);
        assert_eq!(window(), fed[fed.len() - SPECTRUM_SIZE..]);
        // The same request again: the window stays as published.
        let published = window();
        feed(&mut tail, &block(), true, 1);
        assert_eq!(window(), published);
        // An offline caller publishes at the end whatever the requests.
        meter.publish(&tail);
        assert_ne!(window(), published);
        // No longer watched: the tail and the published window are dropped, and a new request after
        // watching again waits for a whole window.
        feed(&mut tail, &block(), false, 1);
        assert_eq!(meter.snapshot().ring_filled, 0);
        feed(&mut tail, &block(), true, 2);
        assert_eq!(meter.snapshot().ring_filled, 0);
        meter.publish(&tail);
        assert_eq!(meter.snapshot().ring_filled, 0);
    }

    #[test]
    fn meter_counts_clipping_and_dynamics() {
        let mut m = Meter::new();
        let loud = vec![1.5f32; 512];
        let quiet = vec![0.01f32; 512];
        for i in 0..100 {
            let b = if i % 2 == 0 { &loud } else { &quiet };
            m.feed(b, 512, 1, 512);
        }
        let l = m.levels(48000);
        assert_eq!(l.clipped_samples, 50 * 512);
        // Blocks at +3.5 dBFS and -40 dBFS: 43.5 dB apart.
        assert!((l.dynamic_range_db - 43.5).abs() < 0.6, "{}", l.dynamic_range_db);
    }
}
