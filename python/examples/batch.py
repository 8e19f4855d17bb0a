#!/usr/bin/env python3
"""Renders every audio file of a folder through a graph, on all cores: one graph per worker process.

    python3 python/examples/batch.py graphs/mastering.ron IN_DIR OUT_DIR [--workers N]

The graph is loaded (and its parameters set) once, here; each worker gets it pickled (its text and the
parameters set on it) and builds its own engine, then renders files with `fxgraph.render`, which reads
WAV, FLAC, MP3, Ogg Vorbis, AAC, ALAC and AIFF and writes 32-bit float WAV. A file that cannot be read is
reported and the batch goes on.
"""

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
from pathlib import Path

import fxgraph

AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4", ".aac", ".aif", ".aiff"}

_graph = None


def _start(graph):
    # Runs once in each worker: the graph arrives unpickled, with an engine of its own.
    global _graph
    _graph = graph


def _render(src, dst):
    t0 = time.perf_counter()
    frames = fxgraph.render(_graph, src, dst)
    return frames, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graph")
    ap.add_argument("input_dir", type=Path)
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="set a parameter first")
    args = ap.parse_args()

    graph = fxgraph.Graph.load(args.graph)
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            graph[key] = float(value)
        except ValueError:
            graph[key] = value
    files = sorted(p for p in args.input_dir.iterdir() if p.suffix.lower() in AUDIO)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    t0 = time.perf_counter()
    # Spawned, not forked: each worker starts clean and gets the graph through pickling.
    spawn = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(args.workers, mp_context=spawn, initializer=_start, initargs=(graph,)) as pool:
        jobs = {pool.submit(_render, f, args.output_dir / (f.stem + ".wav")): f for f in files}
        for job in cf.as_completed(jobs):
            f = jobs[job]
            try:
                frames, seconds = job.result()
                print(f"{f.name}: {frames} frames in {seconds:.2f} s")
            except (OSError, fxgraph.FxgraphError) as e:
                failed += 1
                print(f"{f.name}: {e}", file=sys.stderr)
    print(f"{len(files) - failed} of {len(files)} files in {time.perf_counter() - t0:.2f} s with {args.workers} workers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
