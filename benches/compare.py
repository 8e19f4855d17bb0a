#!/usr/bin/env python3
"""Whole-process render of the reference chain (benches/reference.ron): fxgraph against sox and ffmpeg.

    python3 benches/compare.py [--seconds 600] [--rounds 5] [--callgrind]

A float WAV of the built-in demo signal (music-like, stereo, 48 kHz) is rendered from float WAV to float
WAV by each tool, `--rounds` times, interleaved (fxgraph, sox, ffmpeg, fxgraph, ...), and each tool's median
wall time is reported with its ratio to fxgraph's: the machine's drift hits all of them alike. fxgraph
runs with one thread (`--threads 1`); ffmpeg with one filter thread (`-filter_threads 1 -threads 1`).
With `--callgrind`, valgrind also counts each tool's instructions per frame: the difference between a
30 s and a 10 s render divided by the 20 s of frames between them, so start-up costs cancel.

The chain, as closely as each tool can express it:
- fxgraph: gain -6 dB, RBJ peaking bands at 100/400/1k/4k/10k Hz (+3/-2/+1.5/-3/+2 dB, Q 1), compressor
  -18 dB 4:1 10/100 ms hard knee, RBJ low-pass 12 kHz Q 0.707, lookahead limiter -1 dB 5 ms / 50 ms.
- ffmpeg: volume, five `equalizer` (Q), `acompressor` (knee 1 = hard), `lowpass` (Q), `alimiter`
  (attack 5 ms, release 50 ms, no auto level).
- sox: gain, five `equalizer` (Q), `compand` with the same static curve and times, `lowpass` (Q), and a
  second `compand` as the limiter (sox has no lookahead limiter).

A tool that is not installed is skipped, with a message. Output: a table, and one JSON line.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FX = os.path.join(ROOT, "target", "release", "fxgraph")
PASS = '(sample_rate: 48000, channels: 2, nodes: { "g": Gain(gain_db: 0.0) }, edges: [("input", "g"), ("g", "output")])'

SOX_CHAIN = [
    "gain", "-6",
    "equalizer", "100", "1q", "3",
    "equalizer", "400", "1q", "-2",
    "equalizer", "1000", "1q", "1.5",
    "equalizer", "4000", "1q", "-3",
    "equalizer", "10000", "1q", "2",
    "compand", "0.01,0.1", "-18,-18,0,-13.5", "0", "-90", "0",
    "lowpass", "12000", "0.707q",
    "compand", "0.005,0.05", "-1,-1,0,-1", "0", "-90", "0.005",
]
FF_CHAIN = ",".join([
    "volume=-6dB",
    "equalizer=f=100:t=q:w=1:g=3",
    "equalizer=f=400:t=q:w=1:g=-2",
    "equalizer=f=1000:t=q:w=1:g=1.5",
    "equalizer=f=4000:t=q:w=1:g=-3",
    "equalizer=f=10000:t=q:w=1:g=2",
    "acompressor=threshold=-18dB:ratio=4:attack=10:release=100:knee=1:makeup=1",
    "lowpass=f=12000:t=q:w=0.707",
    "alimiter=limit=-1dB:attack=5:release=50:level=disabled",
])


def commands(inp, out):
    return {
        "fxgraph": [FX, "render", os.path.join(HERE, "reference.ron"), "-i", inp, "-o", out, "--threads", "1"],
        "sox": ["sox", inp, "-e", "floating-point", "-b", "32", out] + SOX_CHAIN,
        "ffmpeg": ["ffmpeg", "-v", "error", "-y", "-threads", "1", "-filter_threads", "1", "-i", inp,
                   "-af", FF_CHAIN, "-c:a", "pcm_f32le", out],
    }


def make_input(path, seconds, work):
    graph = os.path.join(work, "pass.ron")
    with open(graph, "w") as f:
        f.write(PASS)
    subprocess.run([FX, "render", graph, "--seconds", str(seconds), "-o", path], check=True,
                   stderr=subprocess.DEVNULL)


def available(tools):
    found = {}
    for name in tools:
        exe = FX if name == "fxgraph" else shutil.which(name)
        if exe and os.path.exists(exe):
            found[name] = True
        else:
            print(f"note: {name} is not installed; skipped", file=sys.stderr)
    return found


def instructions(cmd):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    raise RuntimeError("no callgrind summary")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(FX):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    tools = available(["fxgraph", "sox", "ffmpeg"])
    result = {"seconds": args.seconds, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as work:
        inp = os.path.join(work, "in.wav")
        make_input(inp, args.seconds, work)
        times = {t: [] for t in tools}
        for _ in range(args.rounds):
            for tool in tools:
                out = os.path.join(work, f"out-{tool}.wav")
                cmd = commands(inp, out)[tool]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[tool].append(time.perf_counter() - t0)
                os.remove(out)
        base = statistics.median(times["fxgraph"])
        print(f"{args.seconds:.0f} s of 48 kHz stereo float WAV to float WAV, median of {args.rounds} interleaved runs:")
        for tool in tools:
            m = statistics.median(times[tool])
            ratio = m / base
            print(f"  {tool:8} {m:8.3f} s  {args.seconds / m:7.0f}x realtime  fxgraph is {ratio:5.2f}x as fast")
            result[tool] = {"median_s": m, "times_s": times[tool], "fxgraph_speedup": ratio}
        if args.callgrind:
            if not shutil.which("valgrind"):
                print("note: valgrind is not installed; no instruction counts", file=sys.stderr)
            else:
                short = {}
                for s in (10, 30):
                    path = os.path.join(work, f"in{s}.wav")
                    make_input(path, s, work)
                    short[s] = path
                print("instructions per frame (callgrind; 30 s minus 10 s over the 960000 frames between):")
                for tool in tools:
                    counts = {}
                    for s, path in short.items():
                        out = os.path.join(work, f"cg-{tool}.wav")
                        counts[s] = instructions(commands(path, out)[tool])
                    per_frame = (counts[30] - counts[10]) / (20 * 48000)
                    print(f"  {tool:8} {per_frame:7.0f}")
                    result[tool]["instructions_per_frame"] = per_frame
    print(json.dumps(result))


if __name__ == "__main__":
    main()
