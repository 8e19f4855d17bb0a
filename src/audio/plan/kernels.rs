//! What every executor runs, a range of frames at a time: a branch (its input mix, then its nodes in
//! place), the graph input copied in, the output mixed, metered and handed out.
#![allow(unsafe_code)] // Branches and parts of their buffers are reached by pointer; see the SAFETY notes.

use super::*;

/// Runs frames `at..at + n` of dataflow task `t`: a branch, the input (the task after the branches) or
/// the output (the last).
///
/// # Safety
/// As [`run_range`] for a branch; for an end, as [`run_input`] or [`run_output`].
pub(super) unsafe fn run_task(parts: &Parts<'_>, t: usize, at: usize, n: usize) {
    // SAFETY: passed on.
    unsafe {
        match t.checked_sub(parts.branch_count) {
            None => run_range(parts, t, at, n),
            Some(0) => run_input(parts, at, n),
            Some(_) => run_output(parts, at, n),
        }
    }
}

/// Writes frames `at..at + n` of the graph input where the branches read it.
///
/// # Safety
/// Called for consecutive ranges from 0, one call at a time, before any branch reads those frames; `at + n`
/// is at most the run's frames.
pub(super) unsafe fn run_input(parts: &Parts<'_>, at: usize, n: usize) {
    // SAFETY: those frames are this call's (the contract), and `input_to` holds the run's frames.
    unsafe { parts.ends.input(parts.input_to.add(at), at, n) }
}

/// Mixes frames `at..at + n` of the graph output (where it is a mix), hands them to the run's end and
/// meters them, in blocks of at most `max_block` frames for the meter.
///
/// # Safety
/// Called for consecutive ranges from 0, one call at a time, once those frames of everything the output
/// reads are final; `at + n` is at most the run's frames.
pub(super) unsafe fn run_output(parts: &Parts<'_>, at: usize, n: usize) {
    let io = parts.io;
    if parts.mix_output {
        for r in parts.output_zero {
            for c in r.clone() {
                // SAFETY: the output buffer is this call's alone; frames `at..at + n` of channel `c`.
                unsafe { std::slice::from_raw_parts_mut(parts.output_buf.add(c * io.stride + at), n) }.fill(0.0);
            }
        }
        for k in 0..parts.outputs {
            // SAFETY: the output's edges and buffer are this call's alone (one call at a time).
            let edge = unsafe { &mut *parts.output.add(k) };
            let src = parts.source(edge.from);
            // SAFETY: frames `at..at + n` of `src` are final; the output buffer is distinct from the
            // branches' and holds the run's frames.
            unsafe { mix_edge(parts.output_buf, src, edge, &io, at, n) };
        }
    }
    // SAFETY: those frames of the output are final (the contract, and the mix above).
    let src = unsafe { parts.output_from.add(at) };
    // SAFETY: as above.
    unsafe { parts.ends.output(src, at, n) };
    // Metered after the copy: the meter's last stores (the spectrum's samples, when kept) then drain while
    // the block ends, instead of holding up the copy's loads (0.3% to 0.5% of `chain.ron`'s time).
    if let Some((meter, tail)) = parts.output_meter {
        // SAFETY: as above; the tail is this call's alone, like the output's edges.
        unsafe { feed_blocks(meter, &mut *tail, src, io.out_channels, &io, n) };
    }
}

/// Feeds `n` frames of `channels` channels from `data` (planar, the run's stride) to `meter`, in blocks of
/// at most `max_block` frames: a meter's block levels are those of the blocks nodes are called with,
/// whatever the executor and however many blocks a run holds.
///
/// # Safety
/// Those frames of each channel are valid and not written meanwhile.
pub(super) unsafe fn feed_blocks(
    meter: &SharedMeter,
    tail: &mut MeterTail,
    data: *const f32,
    channels: usize,
    io: &Io,
    n: usize,
) {
    let mut off = 0;
    while off < n {
        let len = io.max_block.min(n - off);
        // SAFETY: by the contract.
        meter.feed(&unsafe { AudioIn::from_raw(data.add(off), io.stride, channels, len) }, tail, io.spectrum);
        off += len;
    }
}

/// Runs frames `at..at + n` of branch `b`: prepares that part of its input, then runs its nodes over it
/// in place, each in calls of at most `max_block` frames.
///
/// # Safety
/// No other thread may access branch `b`'s inputs or nodes, or frames `at..at + n` of its buffer,
/// meanwhile; frames `at..at + n` of every branch that `b` reads must be final and not written during the
/// call; `at + n` is at most the run's frames and `at` a multiple of `max_block`.
pub(super) unsafe fn run_range(parts: &Parts<'_>, b: usize, at: usize, n: usize) {
    let io = parts.io;
    let stride = io.stride;
    // SAFETY: the branch's fields other than its buffer are this thread's by the contract (its buffer is
    // reached through `bufs`, a part at a time).
    let bp = unsafe { parts.branches.add(b) };
    // SAFETY: as above.
    let (nodes, takes_input) = unsafe { ((*bp).nodes.clone(), (*bp).takes_input) };
    // SAFETY: as above.
    let inputs = unsafe { &mut *std::ptr::addr_of_mut!((*bp).inputs) };
    // SAFETY: as above.
    let zero = unsafe { &*std::ptr::addr_of!((*bp).zero) };
    // SAFETY: as above.
    let buf = unsafe { (*parts.bufs.add(b)).0 };
    if !takes_input {
        for edge in inputs.iter_mut() {
            let src = parts.source(edge.from);
            // SAFETY: frames `at..at + n` of `src` are final (the contract), and of `buf` this thread's.
            unsafe { mix_edge(buf, src, edge, &io, at, n) };
        }
        for c in zero.iter().flat_map(Clone::clone) {
            // SAFETY: frames `at..at + n` of channel `c`, this thread's.
            unsafe { std::slice::from_raw_parts_mut(buf.add(c * stride + at), n) }.fill(0.0);
        }
    }
    let mut t = if io.monitor { clock::now() } else { 0 };
    for k in nodes {
        // SAFETY: the branch's nodes belong to this thread alone, by the contract.
        let slot = unsafe { &mut *parts.slots.add(k) };
        // A run may hold several blocks (a batch): each node gets them one by one, in order.
        let mut off = 0;
        while off < n {
            let len = io.max_block.min(n - off);
            if let Some(p) = &mut slot.processor {
                // SAFETY: frames `at + off..at + off + len` of each channel, this thread's; `len <= stride`.
                p.process(&mut unsafe { AudioOut::from_raw(buf.add(at + off), stride, slot.channels, len) });
            }
            if io.monitor {
                let ended = clock::now();
                slot.stats.timing.record(ended.saturating_sub(t));
                t = ended;
            }
            off += len;
        }
        if io.monitor
            && let Some(m) = &mut slot.meter
        {
            // SAFETY: frames `at..at + n` of this branch, which only this thread writes.
            unsafe { feed_blocks(&m.meter, &mut m.tail, buf.add(at), slot.out_channels, &io, n) };
            t = clock::now();
        }
    }
}

/// Adds (or, for the first edge into its channels, writes) `edge`'s share of frames `at..at + n` of `src`
/// into `dst`: its channels, delayed, and faded during a crossfade.
///
/// # Safety
/// `dst` and `src` are distinct planar buffers of the run's stride that hold the edge's channels; frames
/// `at..at + n` of `src` are not written and of `dst` not accessed by another thread meanwhile; `at + n` is
/// at most the run's frames.
pub(super) unsafe fn mix_edge(dst: *mut f32, src: *const f32, edge: &mut Edge, io: &Io, at: usize, n: usize) {
    let stride = io.stride;
    let w = edge.wiring;
    let first = w.first;
    let gains: Option<&[f32]> = match (io.fading, edge.fade) {
        // SAFETY: the gain buffers hold the run's frames and are only read during it.
        (true, Fade::In) => Some(unsafe { std::slice::from_raw_parts(io.fade_in.add(at), n) }),
        // SAFETY: as above.
        (true, Fade::Out) => Some(unsafe { std::slice::from_raw_parts(io.fade_out.add(at), n) }),
        _ => None,
    };
    let d = edge.delay;
    for c in 0..w.width {
        // SAFETY: by the contract.
        let y = unsafe { std::slice::from_raw_parts_mut(dst.add((w.to_ch + c) * stride + at), n) };
        let from = w.from_ch + if w.mono { 0 } else { c };
        // SAFETY: as above.
        let x = unsafe { std::slice::from_raw_parts(src.add(from * stride + at), n) };
        if d == 0 {
            match (first, gains) {
                (true, None) => y.copy_from_slice(x),
                (false, None) => {
                    for (yi, xi) in y.iter_mut().zip(x) {
                        *yi += xi;
                    }
                }
                (true, Some(g)) => {
                    for ((yi, xi), gi) in y.iter_mut().zip(x).zip(g) {
                        *yi = xi * gi;
                    }
                }
                (false, Some(g)) => {
                    for ((yi, xi), gi) in y.iter_mut().zip(x).zip(g) {
                        *yi += xi * gi;
                    }
                }
            }
        } else {
            let line = &mut edge.line[c * d..(c + 1) * d];
            let mut pos = edge.pos;
            for (i, (yi, xi)) in y.iter_mut().zip(x).enumerate() {
                let mut v = line[pos];
                line[pos] = *xi;
                pos = if pos + 1 == d { 0 } else { pos + 1 };
                if let Some(g) = gains {
                    v *= g[i];
                }
                *yi = if first { v } else { *yi + v };
            }
        }
    }
    if d > 0 {
        edge.pos = (edge.pos + n) % d;
    }
}
