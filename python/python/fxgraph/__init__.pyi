from os import PathLike
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

Audio = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]
Value = Union[float, str]

class FxgraphError(Exception):
    """Something fxgraph could not do: a node that cannot be built, audio that cannot be read or written."""

class GraphError(ValueError):
    """A graph that is not valid, and where: `file`, `line`, `column`, `node` (None where not known)."""

    file: str
    line: Optional[int]
    column: Optional[int]
    node: Optional[str]
    message: str

class ParamError(ValueError):
    """A parameter that does not exist, or a value it does not take."""

class Graph:
    @staticmethod
    def load(path: Union[str, PathLike[str]], *, threads: int = 1, block: int = 512) -> "Graph":
        """Reads a graph file (RON); relative paths in it are read from its folder."""
    @staticmethod
    def from_ron(
        text: str,
        *,
        file: str = "<text>",
        base_dir: Union[str, PathLike[str]] = ".",
        threads: int = 1,
        block: int = 512,
    ) -> "Graph":
        """A graph from RON text; `file` names it in errors, `base_dir` is where relative paths are read from."""
    @property
    def ron(self) -> str: ...
    @property
    def file(self) -> str: ...
    @property
    def base_dir(self) -> Path: ...
    @property
    def sample_rate(self) -> Optional[int]:
        """The rate the graph's file gives, or None."""
    @property
    def inputs(self) -> List[Tuple[str, int]]:
        """The graph's inputs: (name, channels), in order."""
    @property
    def outputs(self) -> List[Tuple[str, int]]:
        """The graph's outputs: (name, channels), in order."""
    @property
    def position(self) -> int:
        """Frames processed so far; readable from another thread while a call processes."""
    @property
    def latency_frames(self) -> int: ...
    def process(
        self,
        audio: Union[Audio, Mapping[str, Audio]],
        sample_rate: Optional[int] = None,
        *,
        reset: bool = True,
        out: Optional[npt.NDArray[np.float32]] = None,
    ) -> Union[Audio, Dict[str, Audio]]:
        """Runs (channels, frames) audio through the graph; see the module's documentation."""
    def reset(self) -> None: ...
    def __setitem__(self, key: str, value: Value) -> None: ...
    def __getitem__(self, key: str) -> Value: ...
    def params(self) -> Dict[str, Value]: ...
    def param_info(self) -> Dict[str, Dict[str, Any]]: ...
    def metrics(self) -> Dict[str, Any]: ...
    def messages(self) -> List[Dict[str, Any]]: ...

def render(
    graph: Graph,
    input_path: Union[str, PathLike[str]],
    output_path: Union[str, PathLike[str]],
    *,
    format: str = "f32",
) -> int:
    """Renders a file through a graph into a WAV file, as `fxgraph render` does; returns the frames written."""

def analyze(path: Union[str, PathLike[str]]) -> Dict[str, Any]:
    """Loudness (EBU R128), peaks, RMS, dynamics and spectrum of a file, as `fxgraph analyze` reports them."""

def set_plugin_host(path: Union[str, PathLike[str]]) -> None:
    """Names the `fxgraph` command, which hosts native plugins run with `isolation: Process`."""
