#!/usr/bin/env python3
"""Convolution with long impulse responses: fxgraph's `Convolver` against ffmpeg's `afir`, whole process.

    python3 benches/convolve.py [--seconds 60] [--rounds 5] [--taps 4096 65536 480000]

For each IR length, a stereo IR (decaying noise, one per channel, 48 kHz float WAV) convolves a float WAV of
the built-in demo signal, float WAV to float WAV, `--rounds` times, interleaved (fxgraph Zero, fxgraph Block,
ffmpeg, ffmpeg double, then again): each tool's median wall time and its ratio to fxgraph's. fxgraph runs
the single-threaded executor (`--threads 1`), ffmpeg one thread (`-threads 1 -filter_threads 1`).

- fxgraph: `Convolver(path, latency: Zero)` (no delay: a direct head, then partitions of 64 to 32768
  frames) and `latency: Block` (1024 frames of latency, compensated by `render`); `f64` sums.
- ffmpeg: `afir` with its default partitions (8192 frames), in its default `float` precision and in `double`.
  Offline, afir gets whole frames and outputs them aligned: a block latency, compensated.

The cost of each callback in real time (the 99th percentile and the largest against the block's budget, one
block per call) is measured in process: `cargo bench -p fxgraph-benches --bench engine -- convolver`.

Output: a table, and one JSON line.
"""

import argparse
import json
import math
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FX = os.path.join(ROOT, "target", "release", "fxgraph")
RATE = 48000
PASS = '(sample_rate: 48000, channels: 2, nodes: { "g": Gain(gain_db: 0.0) }, edges: [("input", "g"), ("g", "output")])'


def write_float_wav(path, channels):
    """A 32-bit float WAV of planar `channels` at 48 kHz."""
    frames = len(channels[0])
    data = bytearray()
    for t in range(frames):
        for c in channels:
            data += struct.pack("<f", c[t])
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 3, len(channels), RATE, RATE * 4 * len(channels), 4 * len(channels), 32) + b"data" + struct.pack(
        "<I", len(data))
    with open(path, "wb") as f:
        f.write(header + bytes(data))


def room_ir(taps, seed):
    """Decaying noise to -60 dB over its length, as a room's IR."""
    rng = random.Random(seed)
    k = math.log(1e-3) / taps
    return [0.05 * rng.uniform(-1, 1) * math.exp(k * i) for i in range(taps)]


def graph(ir, latency):
    return ('(sample_rate: 48000, channels: 2, nodes: { "conv": Convolver(path: "%s", latency: %s) }, '
            'edges: [("input", "conv"), ("conv", "output")])' % (ir, latency))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--taps", type=int, nargs="+", default=[4096, 65536, 480000])
    args = ap.parse_args()
    if not os.path.exists(FX):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        print("note: ffmpeg is not installed (apt install ffmpeg); fxgraph alone", file=sys.stderr)
    result = {"seconds": args.seconds, "rounds": args.rounds, "sizes": {}}
    with tempfile.TemporaryDirectory() as work:
        inp = os.path.join(work, "in.wav")
        with open(os.path.join(work, "pass.ron"), "w") as f:
            f.write(PASS)
        subprocess.run([FX, "render", os.path.join(work, "pass.ron"), "--seconds", str(args.seconds), "-o", inp],
                       check=True, stderr=subprocess.DEVNULL)
        print(f"{args.seconds:.0f} s of 48 kHz stereo float WAV, stereo IR, median of {args.rounds} interleaved runs:")
        for taps in args.taps:
            ir = os.path.join(work, f"ir{taps}.wav")
            write_float_wav(ir, [room_ir(taps, 1), room_ir(taps, 2)])
            commands = {}
            for latency in ("Zero", "Block"):
                g = os.path.join(work, f"conv{taps}-{latency}.ron")
                with open(g, "w") as f:
                    f.write(graph(ir, latency))
                commands[f"fxgraph {latency}"] = [FX, "render", g, "-i", inp, "-o", None, "--threads", "1"]
            if ffmpeg:
                for precision in ("float", "double"):
                    commands[f"ffmpeg {precision}"] = [
                        ffmpeg, "-v", "error", "-y", "-threads", "1", "-filter_threads", "1", "-i", inp, "-i", ir,
                        "-filter_complex", f"[0:a][1:a]afir=gtype=none:precision={precision}", "-c:a", "pcm_f32le",
                        None]
            times = {name: [] for name in commands}
            for _ in range(args.rounds):
                for name, cmd in commands.items():
                    out = os.path.join(work, "out.wav")
                    cmd = [out if c is None else c for c in cmd]
                    t0 = time.perf_counter()
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    times[name].append(time.perf_counter() - t0)
                    os.remove(out)
            size = {}
            print(f"  {taps} taps:")
            for name, t in times.items():
                m = statistics.median(t)
                size[name] = {"median_s": m, "times_s": t}
                note = ""
                if name.startswith("ffmpeg"):
                    z, b = (m / statistics.median(times[f"fxgraph {k}"]) for k in ("Zero", "Block"))
                    size[name]["fxgraph_zero_speedup"], size[name]["fxgraph_block_speedup"] = z, b
                    note = f"  fxgraph is {z:5.2f}x (Zero), {b:5.2f}x (Block) as fast"
                print(f"    {name:15} {m:7.3f} s  {args.seconds / m:6.0f}x realtime{note}")
            result["sizes"][str(taps)] = size
    print(json.dumps(result))


if __name__ == "__main__":
    main()
