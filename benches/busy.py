#!/usr/bin/env python3
"""A render on a busy machine against the same render on an idle one: the bits and the faults.

    python3 benches/busy.py [graphs/mastering.ron] [--seconds 120] [--block 64] [--runs 20] [--loops 4]

Renders the graph over the demo signal once on an idle machine, then `--runs` times while `--loops` busy
loops (processes that only spin) compete for the cores, as a parallel batch of renders or a compile would.
Prints, for each loaded run, whether its output file is bit-identical to the idle one, its exit code, and
the faults and preempted plugin calls its `--metrics` report counts; then the totals. Exits 1 if any run
differed or faulted. Uses the release binary (`cargo build --release` first) unless `--exe` says otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("graph", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "graphs", "mastering.ron"))
    ap.add_argument("--seconds", default="120")
    ap.add_argument("--block", default="64")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--loops", type=int, default=4)
    ap.add_argument("--exe", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "fxgraph"))
    args = ap.parse_args()
    if not os.path.exists(args.exe):
        sys.exit(f"{args.exe} not found: run `cargo build --release` first")
    tmp = tempfile.mkdtemp()

    def render(name):
        out, metrics = os.path.join(tmp, name + ".wav"), os.path.join(tmp, name + ".json")
        cmd = [args.exe, "render", args.graph, "--seconds", args.seconds, "--block", args.block, "-o", out,
               "--metrics", metrics]
        code = subprocess.run(cmd, capture_output=True).returncode
        with open(metrics) as f:
            nodes = json.load(f)["nodes"]
        with open(out, "rb") as f:
            data = f.read()
        faults = sum(n["faults"] for n in nodes)
        preempted = sum(n.get("preempted_calls", 0) for n in nodes)  # older builds do not count them
        return data, code, faults, preempted

    idle, code, faults, _ = render("idle")
    print(f"idle: exit {code}, {faults} faults")
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(args.loops)]
    bad = 0
    try:
        for run in range(args.runs):
            data, code, faults, preempted = render(f"busy{run}")
            same = data == idle
            bad += (not same) or faults > 0 or code != 0
            print(f"busy {run + 1}: {'identical' if same else 'DIFFERENT'}, exit {code}, {faults} faults, "
                  f"{preempted} plugin calls let run past their deadline")
    finally:
        for p in loops:
            p.kill()
    print(f"{args.runs - bad} of {args.runs} loaded renders identical to the idle one and fault-free "
          f"({args.loops} busy loops, {os.cpu_count()} cores)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
