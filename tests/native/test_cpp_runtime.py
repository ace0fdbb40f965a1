"""The C++ StreamingSession (runtime/include/qlstm_edge) against the Python one, through the sample program.

samples/cpp is built with CMake against onnxruntime's shared library from the npm package onnxruntime-node
(runtime/native/build.py --cpp-sample; cached per source change). Every family x {step, sequence} x {fp32,
int8-dynamic, int4}, on the function bodies and on the native library, streams to the same bits as Python (the
same kernels run: both onnxruntimes' for the bodies, the library's for the native path), outputs and final
states; bad inputs, refused calls and bad states get the same errors, and a refused call leaves the state as
it was. The dev extra installs cmake and nlohmann/json's headers (Python packages); g++ and npm are needed too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from helpers import FAMILIES
from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import InputError, StreamingSession, native_lib

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "runtime" / "native"))
import build as native_build  # noqa: E402

QUANT = [None, "int8-dynamic", "int4"]
STEPS = 9
BATCH = 2


@pytest.fixture(scope="module")
def sample():
    """The built qlstm_edge_stream program (a build failure fails the tests: the dev extra brings cmake and the JSON headers)."""
    return native_build.build_cpp_sample()


@pytest.fixture(scope="module")
def lib(lib_status):
    return lib_status["path"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``get(family, quantize) -> {mode: path}``, each exported once per module."""
    cache, models = {}, {}

    def get(name, quantize):
        if (name, quantize) not in cache:
            if name not in models:
                models[name] = FAMILIES[name][1]()
            d = tmp_path_factory.mktemp(f"{name}-{quantize or 'fp32'}")
            cache[name, quantize] = {mode: export_onnx(models[name], d / f"{mode}.onnx", mode=mode, quantize=quantize)
                                     for mode in ("step", "sequence")}
        return cache[name, quantize]

    return get


def stream_input(path, steps: int = STEPS, batch: int = BATCH, seed: int = 0) -> np.ndarray:
    """Random token ids or features for the file's data input, [batch, steps, ...]."""
    spec = StreamingSession(path, native="off").metadata.inputs[0]
    rng = np.random.default_rng(seed)
    tail = spec.shape[2:] if spec.shape[1:2] == ["time"] else spec.shape[1:]
    if spec.range is not None:
        return rng.integers(*spec.range, (batch, steps, *tail)).astype(spec.dtype)
    return rng.standard_normal((batch, steps, *tail)).astype(spec.dtype)


def py_stream(path, x, chunk=1, native="auto", resets=None, skip_refused=False, state=None):
    """What qlstm_edge_stream does, with the Python StreamingSession: (outputs, final state, refusals)."""
    resets = resets or {}
    s = StreamingSession(path, native=native)
    if state is not None:
        s.set_state(state)
    y_tail = s.metadata.outputs[0].shape[2 if s.mode == "sequence" else 1:]
    ys = np.zeros((x.shape[0], x.shape[1], *y_tail), np.float32)
    refused, t = [], 0
    while t < x.shape[1]:
        if t in resets:
            s.reset(rows=resets[t])
        end = min([t + chunk, x.shape[1]] + [r for r in resets if r > t])
        try:
            if chunk == 1:
                ys[:, t] = s.step(x[:, t])
            else:
                ys[:, t:end] = s.run(x[:, t:end])
        except InputError as e:
            if not skip_refused:
                raise
            refused.append(f"{type(e).__name__}: {e}")
        t = end
    return ys, s.get_state(), refused, s.op_path


def cpp_stream(sample, path, x, tmp, chunk=1, native="auto", lib=None, resets=None, skip_refused=False,
               state=None, check=True):
    """Run the sample on ``x``: (outputs, final state, refusals, op_path, the error line or None)."""
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "x.npy", x)
    out_state = tmp / "state_out"
    out_state.mkdir(exist_ok=True)
    cmd = [str(sample), str(path), str(tmp / "x.npy"), "--output", str(tmp / "y.npy"), "--chunk", str(chunk),
           "--native", native, "--save-state", str(out_state)]
    if lib is not None:
        cmd += ["--native-lib", str(lib)]
    for t, rows in (resets or {}).items():
        cmd += ["--reset", f"{t}:" + ",".join(map(str, rows))]
    if skip_refused:
        cmd.append("--skip-refused")
    if state is not None:
        (tmp / "state_in").mkdir(exist_ok=True)
        for k, v in state.items():
            np.save(tmp / "state_in" / f"{k}.npy", v)
        cmd += ["--resume", str(tmp / "state_in")]
    env = {k: v for k, v in os.environ.items() if k != native_lib.LIB_ENV}  # the library is named by --native-lib
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    lines = proc.stderr.splitlines()
    error = next((ln[len("error: "):] for ln in lines if ln.startswith("error: ")), None)
    if check:
        assert proc.returncode == 0, proc.stderr
    if proc.returncode != 0:
        return None, None, None, None, error
    op_path = lines[0].rsplit("op_path ", 1)[1].split(";")[0]
    refused = [ln[len("refused: "):] for ln in lines if ln.startswith("refused: ")]
    state_out = {f.name[:-len(".npy")]: np.load(f) for f in out_state.glob("*.npy")}
    return np.load(tmp / "y.npy"), state_out, refused, op_path, error


def assert_same_stream(py, cpp):
    y, state, refused, op_path = py
    cy, cstate, crefused, cop_path, _ = cpp
    assert cop_path == op_path
    assert crefused == refused
    np.testing.assert_array_equal(cy, y)
    assert cstate.keys() == state.keys()
    for k in state:
        assert cstate[k].dtype == state[k].dtype, k
        np.testing.assert_array_equal(cstate[k], state[k], err_msg=k)


@pytest.mark.parametrize("quantize", QUANT, ids=lambda q: q or "fp32")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_streams_bit_identical(name, quantize, exports, sample, lib, tmp_path):
    """step() on the step file and run() chunks on the sequence file, function bodies and native."""
    paths = exports(name, quantize)
    x = stream_input(paths["step"])
    for mode, chunk in (("step", 1), ("sequence", 4)):
        for native in ("off", "on"):
            py = py_stream(paths[mode], x, chunk=chunk, native=native)
            assert py[3] == ("native" if native == "on" else "function-body")
            cpp = cpp_stream(sample, paths[mode], x, tmp_path / f"{mode}-{native}", chunk=chunk, native=native, lib=lib)
            assert_same_stream(py, cpp)


@pytest.mark.parametrize("name", ["qllstm-features", "xlstm-lm", "prlstm-tokens"])
def test_chunks_resets_and_resume(name, exports, sample, lib, tmp_path):
    """run() chunks on a step file, step() on a sequence file, reset of some rows part way, and a stream resumed
    from a saved state with set_state."""
    paths = exports(name, None)
    x = stream_input(paths["step"], batch=3)
    state = py_stream(paths["step"], stream_input(paths["step"], batch=3, seed=1), native="on")[1]
    for mode, chunk in (("step", 3), ("sequence", 1)):
        resets = {4: [0, 2], 7: [1]}
        py = py_stream(paths[mode], x, chunk=chunk, native="on", resets=resets, state=state)
        cpp = cpp_stream(sample, paths[mode], x, tmp_path / mode, chunk=chunk, native="on", lib=lib, resets=resets,
                         state=state)
        assert_same_stream(py, cpp)


def refusals_match(sample, path, x, tmp, lib, **kw):
    """Both runtimes refuse the same calls with the same words, and go on from the same (unchanged) state."""
    py = py_stream(path, x, native="on", skip_refused=True, **kw)
    cpp = cpp_stream(sample, path, x, tmp, native="on", lib=lib, skip_refused=True, **kw)
    assert py[2], "the case refuses no call"
    assert_same_stream(py, cpp)


def test_bad_inputs_refused_alike(exports, sample, lib, tmp_path):
    features, tokens = exports("qllstm-features", None), exports("qllstm-tokens", None)
    x = stream_input(features["step"])
    nan = x.copy()
    nan[1, 4, 2] = np.nan
    inf = x.copy()
    inf[0, 2, 0] = -np.inf
    for mode in ("step", "sequence"):
        for chunk in (1, 3):
            refusals_match(sample, features[mode], nan, tmp_path / f"nan-{mode}-{chunk}", lib, chunk=chunk)
            refusals_match(sample, features[mode], inf, tmp_path / f"inf-{mode}-{chunk}", lib, chunk=chunk)
    ids = stream_input(tokens["step"])
    ids[0, 3], ids[1, 6] = 40, -1
    for chunk in (1, 4):
        refusals_match(sample, tokens["step"], ids, tmp_path / f"ids-{chunk}", lib, chunk=chunk)


def error_matches(sample, path, x, tmp, lib, chunk=1, **kw):
    """The call both runtimes refuse, with the same error type and message."""
    with pytest.raises(InputError) as err:
        py_stream(path, x, chunk=chunk, native="on", **kw)
    cpp = cpp_stream(sample, path, x, tmp, chunk=chunk, native="on", lib=lib, check=False, **kw)
    assert cpp[4] == f"{type(err.value).__name__}: {err.value}"


def test_bad_calls_and_states_refused_alike(exports, sample, lib, tmp_path):
    paths = exports("qllstm-features", None)
    x = stream_input(paths["step"])
    state = py_stream(paths["step"], x, native="on")[1]
    first = next(k for k, v in state.items() if v.ndim > 1)
    cases = {
        "dtype": dict(x=x.astype(np.float64)),
        "size": dict(x=np.zeros((2, 3, 6), np.float32)),
        "chunk-size": dict(x=np.zeros((2, 6, 4), np.float32), chunk=3),
        "batch": dict(x=np.zeros((3, 2, 5), np.float32), state=state),
        "reset-rows": dict(x=x, resets={2: [5]}),
        "state-dtype": dict(x=x, state={**state, first: state[first].astype(np.float64)}),
        "state-shape": dict(x=x, state={**state, first: state[first][:, :-1]}),
        "state-nan": dict(x=x, state={k: np.full_like(v, np.nan) for k, v in state.items()}),
        "state-names": dict(x=x, state={**state, "extra": state[first]}),
    }
    for case, kw in cases.items():
        for mode in ("step", "sequence"):
            error_matches(sample, paths[mode], tmp=tmp_path / f"{case}-{mode}", lib=lib, **kw)


def test_stream_limit_alike(exports, sample, lib, tmp_path):
    """PR-LSTM holds 255 steps a stream here: the limit refuses the same calls, and a reset lets the row go on."""
    paths = exports("prlstm-tokens", None)
    x = stream_input(paths["step"], steps=8)
    state = py_stream(paths["step"], x[:, :1], native="on")[1]
    state["count"] = np.array([3, 253], np.int64)
    for mode in ("step", "sequence"):
        for chunk in (1, 3):
            refusals_match(sample, paths[mode], x, tmp_path / f"{mode}-{chunk}", lib, chunk=chunk, state=state,
                           resets={6: [1]})
    bad = {**state, "count": np.array([0, 300], np.int64)}
    error_matches(sample, paths["step"], x, tmp_path / "count", lib, state=bad)


def test_model_file_errors(exports, sample, lib, tmp_path):
    not_onnx = tmp_path / "not.onnx"
    not_onnx.write_bytes(b"not a model")
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(exports("qllstm-features", None)["step"]))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    x = stream_input(exports("qllstm-features", None)["step"])
    for path in (tmp_path / "missing.onnx", not_onnx, plain):
        with pytest.raises(Exception) as err:
            StreamingSession(path)
        cpp = cpp_stream(sample, path, x, tmp_path / path.stem, lib=lib, check=False)
        want = f"{type(err.value).__name__}: {err.value}"
        if path is not_onnx:  # the parser's own words follow: Python's onnx package, onnxruntime's in C++
            want, cpp = want.split(" (")[0], (*cpp[:4], cpp[4].split(" (")[0])
        assert cpp[4] == want
    cpp = cpp_stream(sample, exports("qllstm-features", None)["step"], x, tmp_path / "nolib", native="on",
                     check=False)
    assert cpp[4].startswith("NativeLibraryError: native='on' but the native op library is unavailable")


def test_help(sample):
    out = subprocess.run([str(sample), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--native MODE" in out and "--chunk N" in out


def test_native_choice(exports, sample, lib, tmp_path):
    """native 'auto' uses the library when it is named and runs the function bodies when it is not."""
    path = exports("xlstm-lm", None)["step"]
    x = stream_input(path)
    assert cpp_stream(sample, path, x, tmp_path / "auto", native="auto", lib=lib)[3] == "native"
    assert cpp_stream(sample, path, x, tmp_path / "none", native="auto")[3] == "function-body"


OLD_ONNXRUNTIME = r"""
#include <stddef.h>
#include <stdint.h>
/* onnxruntime's OrtApiBase, from an onnxruntime that offers no C API version past 20 */
typedef struct { const void* (*GetApi)(uint32_t); const char* (*GetVersionString)(void); } OrtApiBase;
static const void* get_api(uint32_t version) { return NULL; (void)version; }
static const char* version_string(void) { return "1.20.0-simulated"; }
static const OrtApiBase base = {get_api, version_string};
const OrtApiBase* OrtGetApiBase(void) { return &base; }
"""


def test_older_onnxruntime_refused(sample, exports, tmp_path):
    """A libonnxruntime.so.1 whose C API is older than the headers' (GetApi(29) returns null) is refused with an
    error naming its version: a stand-in library, found first through LD_LIBRARY_PATH."""
    symbols = subprocess.run(["nm", "-D", "--undefined-only", str(sample)], capture_output=True, text=True,
                             check=True).stdout
    node = next(line.split("@")[-1] for line in symbols.splitlines() if "OrtGetApiBase@" in line)
    (tmp_path / "ort.c").write_text(OLD_ONNXRUNTIME)
    (tmp_path / "ort.map").write_text(f"{node} {{ global: OrtGetApiBase; local: *; }};\n")
    subprocess.run(["gcc", "-shared", "-fPIC", str(tmp_path / "ort.c"), f"-Wl,--version-script={tmp_path / 'ort.map'}",
                    "-o", str(tmp_path / "libonnxruntime.so.1")], check=True)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 5), np.float32))
    proc = subprocess.run([str(sample), str(exports("qllstm-features", None)["step"]), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, env={**os.environ, "LD_LIBRARY_PATH": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: OnnxRuntimeError: onnxruntime 1.20.0-simulated does not provide the C API "
                                   f"version {native_build.HEADERS_API_VERSION} these headers were written for: link "
                                   f"an onnxruntime of 1.{native_build.HEADERS_API_VERSION} or newer")


def with_metadata(src: Path, dest: Path, change) -> Path:
    """A copy of ``src`` whose qlstm_edge metadata document went through ``change(doc)``."""
    model = onnx.load(str(src))
    prop = next(p for p in model.metadata_props if p.key == "qlstm_edge")
    doc = json.loads(prop.value)
    change(doc)
    prop.value = json.dumps(doc)
    onnx.save(model, str(dest))
    return dest


METADATA_DEFECTS = {
    "unknown-field": lambda d: d.update(comment="hi"),
    "missing-field": lambda d: d.pop("target"),
    "newer-format": lambda d: d.update(format_version=2),
    "newer-domain": lambda d: d.update(domain_version=3),
    "not-ours": lambda d: d.update(format="other"),
    "mode": lambda d: d.update(mode="batch"),
    "two-inputs": lambda d: d["inputs"].append(d["inputs"][0]),
    "input-lead": lambda d: d["inputs"][0].update(shape=[5, "batch"]),
    "dtype": lambda d: d["outputs"][0].update(dtype="float64"),
    "state-shape": lambda d: d["states"][0].update(shape=[16, "batch"]),
    "state-init": lambda d: d["states"][0].update(init=1e39),
    "state-empty": lambda d: d["states"][0].update(output=""),
    "state-twice": lambda d: d["states"].append(d["states"][0]),
    "graph-name": lambda d: d["states"][0].update(input="nowhere"),
}


@pytest.mark.parametrize("defect", list(METADATA_DEFECTS))
def test_metadata_defects_refused_alike(defect, exports, sample, lib, tmp_path):
    path = with_metadata(exports("qllstm-features", None)["step"], tmp_path / f"{defect}.onnx",
                         METADATA_DEFECTS[defect])
    with pytest.raises(Exception) as err:
        StreamingSession(path, native="off")
    cpp = cpp_stream(sample, path, np.zeros((1, 1, 5), np.float32), tmp_path / "run", native="off", check=False)
    assert cpp[4] == f"{type(err.value).__name__}: {err.value}"
