#!/usr/bin/env python3
"""fxgraph's Python package against Spotify's pedalboard on the reference chain, in one process.

    pip install ./python pedalboard        # the package from this repository, pedalboard from PyPI
    python3 benches/python_vs_pedalboard.py [--seconds 60] [--rounds 7]

Three measures, each `--rounds` times, interleaved (fxgraph, pedalboard, fxgraph, ...), medians and the
ratio of pedalboard's time to fxgraph's:
- in process: a NumPy array of `--seconds` of stereo 48 kHz float32 music-like signal through the chain
  (`graph.process(x, 48000)` against `board(x, 48000)`), and fxgraph again writing into a reused array
  (`out=`: no fresh memory to fault in), against the same pedalboard times;
- file to file: a float WAV of it rendered into a float WAV (`fxgraph.render` against pedalboard's
  `AudioFile` read in 1 s chunks through `board.process(chunk, reset=False)` and written);
- threads: two graphs on two threads against the same two one after the other (`process` releases the GIL).

The chain (benches/reference.ron), as closely as pedalboard can express it: gain -6 dB, peaking bands at
100/400/1k/4k/10k Hz (+3/-2/+1.5/-3/+2 dB, Q 1), compressor -18 dB 4:1 10/100 ms, low-pass at 12 kHz
(pedalboard's `LowpassFilter`; fxgraph's is the RBJ second-order one, Q 0.707), limiter -1 dB (release
50 ms). Both run on one thread each. Output: a table, and one JSON line.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time

import numpy as np

import fxgraph

HERE = os.path.dirname(os.path.abspath(__file__))


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def signal(seconds, rate=48000):
    """The same music-like test signal as the package's tests: tones with envelopes over shaped noise."""
    rng = np.random.default_rng(1)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = np.empty((2, n))
    for c in range(2):
        noise = np.cumsum(rng.standard_normal(n)) * 0.002
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        tones = sum(0.2 * np.sin(2 * np.pi * f * t) * np.exp(-((t * 2) % 1) * 3) for f in (110.0, 440.0 * (c + 1), 2500.0))
        out[c] = 0.5 * tones + noise
    return out.astype(np.float32)


def board():
    import pedalboard as pb

    return pb.Pedalboard(
        [
            pb.Gain(gain_db=-6.0),
            pb.PeakFilter(cutoff_frequency_hz=100.0, gain_db=3.0, q=1.0),
            pb.PeakFilter(cutoff_frequency_hz=400.0, gain_db=-2.0, q=1.0),
            pb.PeakFilter(cutoff_frequency_hz=1000.0, gain_db=1.5, q=1.0),
            pb.PeakFilter(cutoff_frequency_hz=4000.0, gain_db=-3.0, q=1.0),
            pb.PeakFilter(cutoff_frequency_hz=10000.0, gain_db=2.0, q=1.0),
            pb.Compressor(threshold_db=-18.0, ratio=4.0, attack_ms=10.0, release_ms=100.0),
            pb.LowpassFilter(cutoff_frequency_hz=12000.0),
            pb.Limiter(threshold_db=-1.0, release_ms=50.0),
        ]
    )


def pedalboard_file(b, src, dst, chunk=48000):
    from pedalboard.io import AudioFile

    b.reset()
    with AudioFile(src) as f, AudioFile(dst, "w", f.samplerate, f.num_channels, bit_depth=32) as o:
        while f.tell() < f.frames:
            o.write(b.process(f.read(chunk), f.samplerate, reset=False))


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def write_wav(path, x, rate):
    import struct

    data = np.ascontiguousarray(x.T).astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 2, rate, rate * 8, 8, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import pedalboard

    x = signal(args.seconds)
    graph = fxgraph.Graph.load(os.path.join(HERE, "reference.ron"))
    b = board()
    # Warm-up: first calls pay for page faults and the engines' set-up.
    graph.process(x[:, :48000], 48000)
    b(x[:, :48000], 48000)

    results = {}
    fx, fx_out, pb = [], [], []
    out = np.empty_like(x)
    for _ in range(args.rounds):
        fx.append(timed(lambda: graph.process(x, 48000)))
        fx_out.append(timed(lambda: graph.process(x, 48000, out=out)))
        pb.append(timed(lambda: b(x, 48000, reset=True)))
    results["in_process"] = (statistics.median(fx), statistics.median(pb))
    results["in_process_out"] = (statistics.median(fx_out), statistics.median(pb))

    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.wav")
        write_wav(src, x, 48000)
        fx, pb = [], []
        for _ in range(args.rounds):
            fx.append(timed(lambda: fxgraph.render(graph, src, os.path.join(d, "fx.wav"))))
            pb.append(timed(lambda: pedalboard_file(b, src, os.path.join(d, "pb.wav"))))
        results["file_to_file"] = (statistics.median(fx), statistics.median(pb))

    # Two graphs on two threads against the same two calls one after the other.
    other = fxgraph.Graph.load(os.path.join(HERE, "reference.ron"))
    serial, parallel = [], []
    for _ in range(args.rounds):
        serial.append(timed(lambda: (graph.process(x, 48000), other.process(x, 48000))))

        def both():
            ts = [threading.Thread(target=g.process, args=(x, 48000)) for g in (graph, other)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        parallel.append(timed(both))
    threads = statistics.median(serial) / statistics.median(parallel)

    print(f"machine: {machine()}; pedalboard {pedalboard.__version__}, fxgraph {fxgraph.__version__}")
    print(f"{args.seconds:.0f} s of stereo 48 kHz float32, the reference chain, medians of {args.rounds} interleaved rounds:")
    for what, (f, p) in results.items():
        print(f"  {what:<15} fxgraph {f:7.3f} s   pedalboard {p:7.3f} s   pedalboard / fxgraph = {p / f:5.2f}x")
    print(f"  two graphs on two threads: {threads:.2f}x the throughput of one thread")
    print(
        json.dumps(
            {
                "machine": machine(),
                "seconds": args.seconds,
                "rounds": args.rounds,
                **{k: {"fxgraph_s": f, "pedalboard_s": p, "ratio": p / f} for k, (f, p) in results.items()},
                "two_threads_speedup": threads,
            }
        )
    )


if __name__ == "__main__":
    main()
