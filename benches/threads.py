#!/usr/bin/env python3
"""Two threads against one, whole process: `fxgraph bench` (from memory) or `fxgraph render` (file to file).

    python3 benches/threads.py graphs/parallel.ron [--block 512] [--seconds 60] [--rounds 9]
    python3 benches/threads.py graphs/parallel.ron --render in.wav [--rounds 9]

Each round runs one thread, two threads, two threads, one thread (ABBA, so the machine's drift hits both
alike) and takes the ratio of the summed realtime factors; the median over rounds is printed, with the 25th
and 75th percentiles. `--render` renders the given WAV file to a temporary file instead of running `bench`
on the demo signal. Uses the release binary (`cargo build --release` first) unless `--exe` says otherwise.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("graph")
    ap.add_argument("--block", default="512")
    ap.add_argument("--seconds", default="60")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--render", metavar="INPUT.wav")
    ap.add_argument("--exe", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "fxgraph"))
    args = ap.parse_args()
    if not os.path.exists(args.exe):
        sys.exit(f"{args.exe} not found: run `cargo build --release` first")
    out = tempfile.NamedTemporaryFile(suffix=".wav", delete=False).name

    def realtime(threads):
        if args.render:
            cmd = [args.exe, "render", args.graph, "-i", args.render, "-o", out, "--block", args.block]
        else:
            cmd = [args.exe, "bench", args.graph, "--seconds", args.seconds, "--block", args.block]
        run = subprocess.run(cmd + ["--threads", str(threads)], capture_output=True, text=True, check=True)
        return float(re.search(r"([0-9.]+)x realtime", run.stdout + run.stderr).group(1))

    try:
        realtime(1), realtime(2)
        ratios = []
        for _ in range(args.rounds):
            a1, b1, b2, a2 = realtime(1), realtime(2), realtime(2), realtime(1)
            ratios.append((b1 + b2) / (a1 + a2))
    finally:
        os.unlink(out)
    ratios.sort()
    q = lambda p: ratios[round((len(ratios) - 1) * p)]
    what = f"render -i {args.render}" if args.render else f"bench --seconds {args.seconds}"
    print(f"{args.graph}, {what}, block {args.block}, {args.rounds} rounds: "
          f"2 threads / 1 thread = {q(0.5):.3f} [{q(0.25):.3f}, {q(0.75):.3f}]")


if __name__ == "__main__":
    main()
