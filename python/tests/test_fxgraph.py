"""fxgraph's Python package against the `fxgraph` command and its own contract.

Run from the repository: `pip install ./python` (see the README), then `python3 -m pytest python/tests`.
The command's binary is `target/release/fxgraph` (or $FXGRAPH_BIN).
"""

import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import fxgraph

REPO = Path(__file__).resolve().parents[2]
GRAPHS = REPO / "graphs"
BIN = Path(os.environ.get("FXGRAPH_BIN", REPO / "target" / "release" / "fxgraph"))


def music(seconds, channels=2, rate=48000, seed=1):
    """Noise shaped like music: a few tones with decaying envelopes over pink-ish noise, below full scale."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = np.empty((channels, n))
    for c in range(channels):
        noise = np.cumsum(rng.standard_normal(n)) * 0.002
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        tones = sum(0.2 * np.sin(2 * np.pi * f * t) * np.exp(-((t * 2) % 1) * 3) for f in (110.0, 440.0 * (c + 1), 2500.0))
        out[c] = 0.5 * tones + noise
    return out.astype(np.float32)


def write_wav(path, x, rate):
    """A 32-bit float WAV of (channels, frames) samples."""
    x = np.atleast_2d(x)
    channels = x.shape[0]
    data = np.ascontiguousarray(x.T).astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_wav(path):
    """(channels, frames) float32 samples of a 32-bit float WAV (plain or extensible format)."""
    b = Path(path).read_bytes()
    assert b[:4] == b"RIFF" and b[8:12] == b"WAVE", "a RIFF WAVE file"
    at, channels, data = 12, None, None
    while at + 8 <= len(b):
        tag, size = b[at : at + 4], struct.unpack("<I", b[at + 4 : at + 8])[0]
        body = b[at + 8 : at + 8 + size]
        if tag == b"fmt ":
            code, channels, _, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            assert bits == 32 and code in (3, 0xFFFE), (code, bits)
        elif tag == b"data":
            data = body
        at += 8 + size + (size & 1)
    return np.frombuffer(data, dtype="<f4").reshape(-1, channels).T.copy()


def cli_render(graph, inputs, out, *extra):
    args = [str(BIN), "render", str(graph), "-o", str(out), "--threads", "1", *extra]
    for i in inputs:
        args += ["-i", str(i)]
    subprocess.run(args, check=True, capture_output=True)
    return read_wav(out)


def bits(x):
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


@pytest.fixture(scope="module")
def have_cli():
    if not BIN.exists():
        pytest.fail(f"{BIN} is missing: build the command first (cargo build --release)")


@pytest.mark.parametrize("name", ["mastering.ron", "chain.ron", "parallel.ron", "enhancer.ron"])
def test_process_gives_the_bits_fxgraph_render_writes(tmp_path, have_cli, name):
    graph = fxgraph.Graph.load(GRAPHS / name)
    rate = graph.sample_rate or 48000
    x = music(3.0, rate=rate)
    write_wav(tmp_path / "in.wav", x, rate)
    want = cli_render(GRAPHS / name, [tmp_path / "in.wav"], tmp_path / "out.wav")
    got = graph.process(x, rate)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(bits(got), bits(want)), f"{name}: {np.count_nonzero(bits(got) != bits(want))} samples differ"
    # Again on the same graph (reset=True starts from silence), on two threads, and from float64.
    assert np.array_equal(bits(graph.process(x, rate)), bits(want))
    two = fxgraph.Graph.load(GRAPHS / name, threads=2, block=256)
    assert np.array_equal(bits(two.process(x, rate)), bits(want))
    out = np.full_like(x, np.nan)
    assert graph.process(x, rate, out=out) is out and np.array_equal(bits(out), bits(want))
    with pytest.raises(ValueError, match="shaped"):
        graph.process(x, rate, out=np.empty((2, 10), np.float32))
    with pytest.raises(TypeError, match="float32"):
        graph.process(x, rate, out=np.empty(x.shape, np.float64))
    y64 = graph.process(x.astype(np.float64), rate)
    assert y64.dtype == np.float64 and np.array_equal(bits(y64), bits(want))
    # And `fxgraph.render`, file to file.
    assert fxgraph.render(graph, tmp_path / "in.wav", tmp_path / "py.wav") == x.shape[1]
    assert np.array_equal(bits(read_wav(tmp_path / "py.wav")), bits(want))


def test_several_inputs_take_a_dict_and_several_outputs_give_one(tmp_path, have_cli):
    graph = fxgraph.Graph.load(GRAPHS / "ducking.ron")
    assert graph.inputs == [("music", 2), ("voice", 1)]
    song, voice = music(2.0, seed=2), music(2.0, channels=1, seed=3)
    write_wav(tmp_path / "m.wav", song, 48000)
    write_wav(tmp_path / "v.wav", voice, 48000)
    want = cli_render(GRAPHS / "ducking.ron", [f"music={tmp_path / 'm.wav'}", f"voice={tmp_path / 'v.wav'}"], tmp_path / "o.wav")
    got = graph.process({"music": song, "voice": voice[0]}, 48000)
    assert np.array_equal(bits(got), bits(want))
    with pytest.raises(KeyError, match="voice"):
        graph.process({"music": song}, 48000)
    with pytest.raises(TypeError, match="several inputs"):
        graph.process(song, 48000)

    split = fxgraph.Graph.from_ron(
        """(channels: 1, outputs: {"low": 1, "high": 1},
            nodes: { "x": Crossover(freqs_hz: [1000.0]) },
            edges: [("input", "x"), ("x.band0", "output.low"), ("x.band1", "output.high")])"""
    )
    for f in (300.0, 1000.0, 4000.0):
        x = (0.5 * np.sin(2 * np.pi * f * np.arange(44100) / 44100)).astype(np.float32)
        bands = split.process(x, 44100)
        assert set(bands) == {"low", "high"} and bands["low"].shape == (1, x.shape[0])
        # LR4 bands sum to an all-pass: a sine keeps its level (once settled); at the crossover frequency
        # each band is 6 dB down.
        total = bands["low"][0, 22050:].astype(np.float64) + bands["high"][0, 22050:]
        rms = lambda v: np.sqrt(np.mean(np.square(v, dtype=np.float64)))
        assert abs(20 * np.log10(rms(total) / rms(x[22050:]))) < 0.01, f
        if f == 1000.0:
            assert abs(20 * np.log10(rms(bands["low"][0, 22050:]) / rms(x[22050:])) + 6.02) < 0.05


@pytest.mark.parametrize("name", ["mastering.ron", "parallel.ron"])
def test_streaming_in_chunks_of_random_sizes_equals_one_call(name):
    x = music(2.0)
    one = fxgraph.Graph.load(GRAPHS / name).process(x, reset=False)
    graph = fxgraph.Graph.load(GRAPHS / name, threads=2)
    rng = np.random.default_rng(7)
    parts, at = [], 0
    while at < x.shape[1]:
        n = int(rng.integers(1, 5000))
        parts.append(graph.process(x[:, at : at + n], reset=False))
        at += n
    assert np.array_equal(bits(np.concatenate(parts, axis=1)), bits(one))
    # Streamed output lags by the graph's latency; reset=True compensates it.
    aligned = fxgraph.Graph.load(GRAPHS / name).process(x)
    lag = graph.latency_frames
    assert np.array_equal(bits(one[:, lag:]), bits(aligned[:, : x.shape[1] - lag]))


def test_bad_graphs_raise_with_file_line_column_and_node(tmp_path):
    with pytest.raises(fxgraph.GraphError) as e:
        fxgraph.Graph.from_ron(
            '(sample_rate: 48000, channels: 2,\n nodes: {"g": Gain(gain_db: 99.0)},\n edges: [("input", "g"), ("g", "output")])',
            file="bad.ron",
        )
    assert (e.value.file, e.value.line, e.value.node) == ("bad.ron", 2, "g")
    assert e.value.column > 0 and "gain_db" in e.value.message and isinstance(e.value, ValueError)
    path = tmp_path / "typo.ron"
    path.write_text('(sample_rate: 48000, channels: 2, nodes: {"g": Gian()}, edges: [])')
    with pytest.raises(fxgraph.GraphError) as e:
        fxgraph.Graph.load(path)
    assert e.value.file == str(path) and e.value.line == 1 and "Gian" in str(e.value)
    with pytest.raises(OSError):
        fxgraph.Graph.load(tmp_path / "missing.ron")


def test_parameters_are_validated_like_the_engine_s_and_take_effect():
    graph = fxgraph.Graph.load(GRAPHS / "chain.ron")
    params = graph.params()
    assert params and all("." in k for k in params)
    key = next(k for k in params if k.endswith("gain_db"))
    info = graph.param_info()[key]
    assert info["unit"] == "dB" and info["min"] < info["max"]
    x = music(1.0)
    before = graph.process(x)
    graph[key] = params[key] - 6.0
    assert graph[key] == params[key] - 6.0
    after = graph.process(x)
    assert not np.array_equal(before, after)
    # A reset call's output depends on the values, not on when they were set (a parameter does not ramp
    # from the value it had before).
    other = fxgraph.Graph.load(GRAPHS / "chain.ron")
    other[key] = params[key] - 3.0
    other.process(x)
    other[key] = params[key] - 6.0
    assert np.array_equal(bits(other.process(x)), bits(after))
    with pytest.raises(fxgraph.ParamError, match="must be between"):
        graph[key] = info["max"] + 1.0
    with pytest.raises(fxgraph.ParamError, match="no parameter"):
        graph[key.split(".")[0] + ".nonsense"] = 1.0
    with pytest.raises(fxgraph.ParamError, match="no node"):
        graph["nonsense.gain_db"] = 1.0
    with pytest.raises(KeyError):
        graph["no_dot"] = 1.0
    with pytest.raises(TypeError):
        graph[key] = [1.0]
    assert graph[key] == params[key] - 6.0, "a refused value changes nothing"
    with pytest.raises(ValueError, match="channels"):
        graph.process(music(0.1, channels=3))
    with pytest.raises(TypeError):
        graph.process(np.zeros((2, 10), dtype=np.int16))


def test_pickling_keeps_the_graph_and_the_parameters_set():
    graph = fxgraph.Graph.load(GRAPHS / "mastering.ron")
    graph["comp.threshold_db"] = -30.0
    graph["comp.threshold_db"] = -24.0
    clone = pickle.loads(pickle.dumps(graph))
    assert clone.params() == graph.params() and clone["comp.threshold_db"] == -24.0
    assert clone.base_dir == graph.base_dir and clone.ron == graph.ron
    x = music(1.0)
    assert np.array_equal(bits(clone.process(x)), bits(graph.process(x)))


def test_processing_releases_the_gil():
    # While one thread processes a long signal, this thread runs Python and reads the graph's position
    # (lock-free) part-way through the call. With the GIL held for the whole call it could only ever see
    # the position before the call or after it.
    graph = fxgraph.Graph.load(GRAPHS / "chain.ron")
    x = music(60.0)
    frames = x.shape[1]
    t = threading.Thread(target=graph.process, args=(x,))
    t.start()
    seen = set()
    while t.is_alive():
        seen.add(graph.position)
    t.join()
    assert graph.position == frames + graph.latency_frames
    inside = sorted(p for p in seen if 0 < p < frames)
    assert inside, f"positions seen while the call ran: {sorted(seen)}"


def test_metrics_and_analyze(tmp_path):
    graph = fxgraph.Graph.load(GRAPHS / "chain.ron")
    graph.process(music(1.0))
    m = graph.metrics()
    names = [n["name"] for n in m["nodes"]]
    assert names and all(n["calls"] > 0 for n in m["nodes"]) and m["blocks"] > 0
    rate, n = 48000, 48000 * 5
    sine = (0.5 * np.sin(2 * np.pi * 997.0 * np.arange(n) / rate)).astype(np.float32)
    write_wav(tmp_path / "sine.wav", np.stack([sine, sine]), rate)
    a = fxgraph.analyze(tmp_path / "sine.wav")
    # BS.1770: a 0 dBFS 997 Hz sine on one channel reads -3.01 LUFS. Here -6.02 dB on each of two
    # channels (+3.01 dB): -6.02 LUFS.
    assert abs(a["integrated_lufs"] - (-6.02)) < 0.05, a["integrated_lufs"]
    assert abs(a["sample_peak_dbfs"] - 20 * np.log10(0.5)) < 0.01


@pytest.mark.skipif(not Path("/usr/bin/cc").exists(), reason="needs a C compiler to build the crashing plugin")
def test_a_crashing_isolated_native_plugin_raises_nothing_and_is_bypassed(tmp_path, have_cli):
    lib = tmp_path / "null_deref.so"
    subprocess.run(
        ["cc", "-std=c99", "-O2", "-fPIC", "-shared", "-DNULL_DEREF", "-I", str(REPO / "plugins/include"),
         "-o", str(lib), str(REPO / "tests/native/variants.c"), "-lm"],
        check=True,
    )
    text = f"""(sample_rate: 48000, channels: 2,
        nodes: {{ "pre": Gain(gain_db: -6.0), "bad": Native(path: "{lib}", isolation: Process) }},
        edges: [("input", "pre"), ("pre", "bad"), ("bad", "output")])"""
    fxgraph.set_plugin_host(BIN)
    graph = fxgraph.Graph.from_ron(text)
    x = music(1.0)
    y = graph.process(x)
    # The graph plays on with the crashed node bypassed: the gain's output, dry.
    assert np.allclose(y, x * np.float32(10 ** (-6 / 20)), atol=1e-6)
    bad = next(n for n in graph.metrics()["nodes"] if n["name"] == "bad")
    assert bad["faults"] >= 1
    assert any("signal 11" in m["text"] for m in graph.messages()), graph.messages()


def test_the_batch_example_renders_a_folder_as_process_does_and_reports_a_bad_file(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    signals = {f"song{i}": music(1.0 + i, seed=10 + i) for i in range(3)}
    for name, x in signals.items():
        write_wav(src / f"{name}.wav", x, 48000)
    (src / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    example = REPO / "python/examples/batch.py"
    r = subprocess.run(
        [sys.executable, str(example), str(GRAPHS / "chain.ron"), str(src), str(dst), "--workers", "2",
         "--set", "comp.threshold_db=-30"],
        capture_output=True, text=True,
    )
    assert r.returncode == 1 and "broken.wav" in r.stderr and "3 of 4 files" in r.stdout, r.stdout + r.stderr
    graph = fxgraph.Graph.load(GRAPHS / "chain.ron")
    graph["comp.threshold_db"] = -30.0
    for name, x in signals.items():
        assert np.array_equal(bits(read_wav(dst / f"{name}.wav")), bits(graph.process(x))), name


def test_another_sample_rate_prepares_the_graph_again_with_the_parameters_set():
    graph = fxgraph.Graph.load(GRAPHS / "chain.ron")
    plain = fxgraph.Graph.load(GRAPHS / "chain.ron")
    graph["comp.threshold_db"] = -40.0
    x = music(1.0, rate=44100)
    y, z = graph.process(x, 44100), plain.process(x, 44100)
    assert graph["comp.threshold_db"] == -40.0 and not np.array_equal(y, z)
    # The same as a graph written for 44.1 kHz with that threshold.
    text = (GRAPHS / "chain.ron").read_text().replace("sample_rate: 48000", "sample_rate: 44100")
    text = text.replace("threshold_db: -18.0", "threshold_db: -40.0")
    assert np.array_equal(bits(fxgraph.Graph.from_ron(text).process(x, 44100)), bits(y))
    with pytest.raises(ValueError, match="sample_rate"):
        graph.process(x, 1000)


def test_signals_shorter_than_the_latency_or_about_as_long_give_render_s_bits(tmp_path, have_cli):
    graph = fxgraph.Graph.load(GRAPHS / "mastering.ron")
    lag = graph.latency_frames
    assert lag > 0
    for n in (1, lag // 2, lag, lag + 1):
        x = np.ascontiguousarray(music(0.1)[:, :n])
        write_wav(tmp_path / "in.wav", x, 48000)
        want = cli_render(GRAPHS / "mastering.ron", [tmp_path / "in.wav"], tmp_path / "out.wav")
        assert np.array_equal(bits(graph.process(x)), bits(want)), n
