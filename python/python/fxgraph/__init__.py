"""fxgraph: audio effect graphs in RON, run on NumPy arrays and files by fxgraph's engine.

    import fxgraph, numpy as np
    graph = fxgraph.Graph.load("graphs/mastering.ron")
    graph["comp.threshold_db"] = -24
    out = graph.process(audio, 48000)      # audio: float32 or float64, shaped (channels, frames)

A graph file describes named nodes, the edges between them and their parameters (see the repository's
README). Processing releases the GIL, so threads can run different graphs at once; a graph pickles as its
text and the parameters set on it, so it can be sent to worker processes.
"""

import os as _os
import shutil as _shutil

from ._fxgraph import FxgraphError, Graph, GraphError, ParamError, __version__, analyze, render, set_plugin_host

__all__ = ["Graph", "GraphError", "ParamError", "FxgraphError", "render", "analyze", "set_plugin_host", "__version__"]

# Native plugins with `isolation: Process` run in a child process of the `fxgraph` command: found on PATH
# unless FXGRAPH_PLUGIN_HOST names it.
if "FXGRAPH_PLUGIN_HOST" not in _os.environ and _shutil.which("fxgraph"):
    set_plugin_host(_shutil.which("fxgraph"))


def _restore(text, file, base_dir, threads, block, params):
    """Builds a pickled graph again (see `Graph.__reduce__`)."""
    graph = Graph.from_ron(text, file=file, base_dir=base_dir, threads=threads, block=block)
    for node, param, value in params:
        graph[f"{node}.{param}"] = value
    return graph
