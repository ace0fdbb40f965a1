"""Native qlstm_edge kernels vs the ONNX function body vs a float64 numpy reference.

Needs the built library (python runtime/native/build.py). Without it these tests skip, or fail
when QLSTM_EDGE_REQUIRE_NATIVE=1.
"""

from __future__ import annotations

import ctypes
import shutil
import threading
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from helpers import REPO, op_model, ort_session, random_inputs, reference
from qlstm_edge.runtime import native_lib

NATIVE_SRC = REPO / "runtime" / "native"
D_FOR_H = {1: 2, 3: 5, 17: 9, 33: 40, 130: 67}
TOL_VS_FUNCTION = 1e-5
TOL_VS_FLOAT64 = 2e-5



_function_cache: dict = {}


def function_outputs(sequence: bool, feeds: dict, key) -> list:
    """Outputs of the function-body path (no library), cached across ISA parametrizations."""
    if key not in _function_cache:
        _function_cache[key] = ort_session(op_model(sequence)).run(None, feeds)
    return _function_cache[key]


def check(native_out, func_out, ref_out):
    assert len(native_out) == len(ref_out)
    for got, fb, ref in zip(native_out, func_out, ref_out):
        assert got.dtype == np.float32
        assert got.shape == ref.shape == fb.shape
        if got.size:
            assert np.abs(got - fb).max() <= TOL_VS_FUNCTION
            assert np.abs(got - ref).max() <= TOL_VS_FLOAT64


@pytest.mark.parametrize("H", sorted(D_FOR_H))
@pytest.mark.parametrize("B", [1, 3])
def test_cell_matches_function_and_reference(isa, B, H):
    D = D_FOR_H[H]
    feeds = random_inputs(B, None, D, H, seed=H * 10 + B)
    calls = native_lib.compute_calls()
    out = ort_session(op_model(False), native_lib.library_path()).run(None, feeds)
    assert native_lib.compute_calls() == calls + 1
    check(out, function_outputs(False, feeds, ("cell", B, H)), reference(feeds, False))


@pytest.mark.parametrize("T", [0, 1, 7, 33])
@pytest.mark.parametrize("H", sorted(D_FOR_H))
@pytest.mark.parametrize("B", [1, 3])
def test_sequence_matches_function_and_reference(isa, B, H, T):
    D = D_FOR_H[H]
    feeds = random_inputs(B, T, D, H, seed=H * 100 + B * 10 + T)
    out = ort_session(op_model(True), native_lib.library_path()).run(None, feeds)
    ref = reference(feeds, True)
    if T == 0:
        # onnxruntime's Scan refuses a zero-length scan axis, so the function body cannot run
        # T=0 there; the native kernel returns Y [B, 0, H] and passes the state through.
        check(out, ref, ref)
        np.testing.assert_array_equal(out[1], feeds["h"])
        np.testing.assert_array_equal(out[2], feeds["c"])
        return
    check(out, function_outputs(True, feeds, ("seq", B, H, T)), ref)


def test_sequence_large_chunk_projection(isa):
    """A chunk of B * T >= 128 rows with D, H > 256 and odd tails: the input projection takes the gemm's
    cache-blocked path (W copied in 256 x 256 blocks, later K blocks added into the output)."""
    B, T, D, H = 3, 65, 301, 259
    feeds = random_inputs(B, T, D, H, seed=77)
    out = ort_session(op_model(True), native_lib.library_path()).run(None, feeds)
    check(out, function_outputs(True, feeds, ("seq-large", B, H, T)), reference(feeds, True))


def test_sequence_equals_repeated_cell(isa):
    B, T, D, H = 2, 9, 7, 20
    feeds = random_inputs(B, T, D, H, seed=5)
    Y, hT, cT = ort_session(op_model(True), native_lib.library_path()).run(None, feeds)
    cell = ort_session(op_model(False), native_lib.library_path())
    h, c = feeds["h"], feeds["c"]
    for t in range(T):
        h, c = cell.run(None, {**feeds, "x": np.ascontiguousarray(feeds["x"][:, t]), "h": h, "c": c})
        np.testing.assert_allclose(Y[:, t], h, atol=1e-6, rtol=0)
    np.testing.assert_allclose(hT, h, atol=1e-6, rtol=0)
    np.testing.assert_allclose(cT, c, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sequence", [False, True])
def test_multithreaded_batch_split(isa, sequence):
    """B=9 with 2 intra-op threads takes the ParallelFor paths (row groups, projection chunks)."""
    B, T, D, H = 9, (33 if sequence else None), 67, 130
    feeds = random_inputs(B, T, D, H, seed=9)
    out = ort_session(op_model(sequence), native_lib.library_path(), threads=2).run(None, feeds)
    single = ort_session(op_model(sequence), native_lib.library_path(), threads=1).run(None, feeds)
    for a, b in zip(out, single):
        np.testing.assert_array_equal(a, b)
    check(out, ort_session(op_model(sequence)).run(None, feeds), reference(feeds, sequence))


def test_activation_accuracy_extreme_preactivations(isa):
    """Vectorised exp/sigmoid/tanh: pre-activations from 1e-4 up to +-200 (past the exp clamp)
    stay within 1e-6 of float64 on a single step."""
    B, D, H = 4, 3, 161
    feeds = random_inputs(B, None, D, H, seed=11)
    rng = np.random.default_rng(12)
    mags = np.concatenate([np.geomspace(1e-4, 200.0, H // 2), -np.geomspace(1e-4, 200.0, H - H // 2)])
    feeds["W_x"][:] = 0.0
    feeds["W_h"][:] = 0.0
    feeds["bias"][:] = 1.0
    feeds["gate_scale"][:] = mags.astype(np.float32) * rng.choice([-1.0, 1.0], size=(4, H)).astype(np.float32)
    feeds["gate_bias"][:] = 0.0
    feeds["c"][:] = (mags * 0.5).astype(np.float32)
    out = ort_session(op_model(False), native_lib.library_path()).run(None, feeds)
    for got, ref in zip(out, reference(feeds, False)):
        assert np.abs(got - ref).max() <= 1e-6


def test_nan_propagates(isa):
    B, D, H = 1, 4, 37
    feeds = random_inputs(B, None, D, H, seed=3)
    feeds["h"][0, 5] = np.nan
    h_new, c_new = ort_session(op_model(False), native_lib.library_path()).run(None, feeds)
    assert np.isnan(h_new).any() and np.isnan(c_new).any()
    feeds = random_inputs(B, None, D, H, seed=3)
    feeds["gate_bias"][1, 20] = np.nan
    h_new, c_new = ort_session(op_model(False), native_lib.library_path()).run(None, feeds)
    assert np.isnan(h_new[0, 20]) and np.isnan(c_new[0, 20])
    assert np.isfinite(np.delete(h_new[0], 20)).all()


def test_registered_kernel_wins_over_local_function(lib_status):
    """The model carries a FunctionProto for QLLSTMCell; with the library registered onnxruntime
    runs the native kernel (its Compute counter moves), without it the function body runs."""
    model = op_model(False, with_function=True, static_shape=(2, 1, 5, 8))
    assert [f.name for f in model.functions] == ["QLLSTMCell"]
    feeds = random_inputs(2, None, 5, 8, seed=1)
    before = native_lib.compute_calls()
    native = ort_session(model, native_lib.library_path()).run(None, feeds)
    assert native_lib.compute_calls() == before + 1
    plain = ort_session(model).run(None, feeds)
    assert native_lib.compute_calls() == before + 1
    for a, b in zip(native, plain):
        np.testing.assert_allclose(a, b, atol=TOL_VS_FUNCTION, rtol=0)


def test_without_function_body_needs_library(lib_status):
    model = op_model(False, with_function=False)
    feeds = random_inputs(1, None, 3, 4)
    out = ort_session(model, native_lib.library_path()).run(None, feeds)
    check(out, out, reference(feeds, False))
    with pytest.raises(Exception):
        ort_session(model)


@pytest.mark.parametrize(
    "sequence,name,shape,needle",
    [
        (False, "W_h", (6, 5), "'W_h' must have shape [H, H]"),
        (False, "W_x", (6, 6), "'W_x' must have shape [D, H]"),
        (False, "gate_scale", (3, 6), "'gate_scale' must have shape [4, H]"),
        (False, "alpha", (1,), "'alpha' must have shape [] (0-d scalar)"),
        (False, "x", (2, 1, 4), "'x' must have rank 2"),
        (False, "c", (2, 5), "'c' must have shape [B, H]"),
        (True, "W_h", (6, 7), "'W_h' must have shape [H, H]"),
        (True, "x", (2, 4), "'x' must have rank 3"),
        (True, "bias", (7,), "'bias' must have shape [H]"),
    ],
)
def test_wrong_input_is_refused_clearly(lib_status, sequence, name, shape, needle):
    B, D, H = 2, 4, 6
    feeds = random_inputs(B, 3 if sequence else None, D, H)
    feeds[name] = np.zeros(shape, dtype=np.float32)
    sess = ort_session(op_model(sequence, with_function=False, shapeless=True), native_lib.library_path())
    with pytest.raises(Exception) as err:
        sess.run(None, feeds)
    assert needle in str(err.value)
    assert ("QLLSTMSequence" if sequence else "QLLSTMCell") in str(err.value)


def test_forced_unknown_isa_is_refused(lib_status, monkeypatch):
    monkeypatch.setenv(native_lib.ISA_ENV, "sse9")
    st = native_lib.status()
    assert not st["available"] and "sse9" in st["reason"]
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(native_lib.library_path()))
    with pytest.raises(Exception, match="QLSTM_EDGE_NATIVE_ISA=sse9"):
        ort.InferenceSession(op_model(False).SerializeToString(), so, providers=["CPUExecutionProvider"])


def test_info_reports_architecture_and_its_isas(lib_status):
    assert lib_status["arch"] == native_lib.host_arch()
    assert list(lib_status["isa_supported"]) == list(native_lib.ISAS_BY_ARCH[lib_status["arch"]])


def test_library_of_another_architecture_is_refused(monkeypatch, tmp_path):
    """A cross-built library is recognised from its ELF header before dlopen (whose error would be "No such file")."""
    host = native_lib.host_arch()
    other, machine = ("x86_64", 62) if host == "aarch64" else ("aarch64", 183)
    fake = tmp_path / "libqlstm_edge_ops.so"
    fake.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44))
    monkeypatch.setenv(native_lib.LIB_ENV, str(fake))
    st = native_lib.status()
    assert st["available"] is False and f"is built for {other}, this machine is {host}" in st["reason"]
    with pytest.raises(native_lib.NativeLibraryError, match=f"built for {other}"):
        native_lib.register(ort.SessionOptions())


def test_status_reports_missing_library(monkeypatch, tmp_path):
    monkeypatch.setenv(native_lib.LIB_ENV, str(tmp_path / "nope.so"))
    st = native_lib.status()
    assert st["available"] is False and "nope.so" in st["reason"]
    with pytest.raises(native_lib.NativeLibraryError, match="nope.so"):
        native_lib.register(ort.SessionOptions())


def test_not_a_library_is_refused_clearly(monkeypatch, tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not an ELF file")
    monkeypatch.setenv(native_lib.LIB_ENV, str(bogus))
    st = native_lib.status()
    assert st["available"] is False and "libbogus.so" in st["reason"]


def test_concurrent_runs_on_one_session(lib_status):
    """onnxruntime may call one kernel instance from several threads: results stay exact."""
    B, T, D, H = 2, 17, 11, 40
    sess = ort_session(op_model(True), native_lib.library_path(), threads=1)
    feeds = [random_inputs(B, T, D, H, seed=s) for s in range(4)]
    expected = [sess.run(None, f) for f in feeds]
    errors = []

    def worker(k):
        for _ in range(20):
            got = sess.run(None, feeds[k])
            if not all(np.array_equal(a, b) for a, b in zip(got, expected[k])):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_older_runtime_api_gets_clear_status(lib_status):
    """RegisterCustomOps against a runtime that lacks API version 29 (simulated with a wrapped
    OrtApiBase) returns an OrtStatus naming the versions, instead of crashing."""
    capi = Path(ort.__file__).parent / "capi"
    cands = sorted(capi.glob("libonnxruntime.so*"))
    if not cands:
        pytest.skip(f"no libonnxruntime.so in {capi}")
    ortlib = ctypes.CDLL(str(cands[0]))

    class OrtApiBase(ctypes.Structure):
        _fields_ = [("GetApi", ctypes.c_void_p), ("GetVersionString", ctypes.c_void_p)]

    ortlib.OrtGetApiBase.restype = ctypes.POINTER(OrtApiBase)
    real = ortlib.OrtGetApiBase().contents
    get_api_t = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)
    real_get = get_api_t(real.GetApi)
    version = ctypes.create_string_buffer(b"1.20.0-simulated")
    fake_get = get_api_t(lambda v: real_get(v) if v <= 20 else None)
    fake_ver = ctypes.CFUNCTYPE(ctypes.c_void_p)(lambda: ctypes.addressof(version))
    fake = OrtApiBase(ctypes.cast(fake_get, ctypes.c_void_p).value, ctypes.cast(fake_ver, ctypes.c_void_p).value)
    lib = ctypes.CDLL(str(native_lib.library_path()))
    lib.RegisterCustomOps.restype = ctypes.c_void_p
    status = lib.RegisterCustomOps(None, ctypes.byref(fake))
    assert status, "expected an error status"
    api = ctypes.cast(real_get(1), ctypes.POINTER(ctypes.c_void_p))  # OrtApi: CreateStatus, GetErrorCode, GetErrorMessage
    message = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p)(api[2])(status).decode()
    assert "built for onnxruntime API version 29" in message
    assert "1.20.0-simulated" in message and "native='off'" in message


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_sources_compile_check(tmp_path):
    """Compile check only (no GPU here): nvcc -c the kernels with the build's flags (warnings are errors),
    no fused multiply-add in any kernel (they share their gate maths with the CPU kernels, built without
    contraction), and the CUDA op registrations."""
    sys.path.insert(0, str(NATIVE_SRC))
    import build as native_build

    includes = native_build.include_flags()
    for src in native_build.cuda_sources():
        proc = subprocess.run(["nvcc", *native_build.NVCCFLAGS, "-Werror", "all-warnings", "-Xcompiler",
                               "-fPIC,-Wall,-Wextra,-Werror", *includes, "-c", str(src), "-o",
                               str(tmp_path / (src.name + ".o"))], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    for src in native_build.cuda_sources():
        ptx = tmp_path / (src.stem + ".ptx")
        proc = subprocess.run(["nvcc", *native_build.NVCCFLAGS, *includes, "-ptx", str(src), "-o", str(ptx)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "fma.rn.f32" not in ptx.read_text(), f"{src.name}: fused multiply-add in the device code"
    try:
        include = native_build.find_headers(fetch=False)
    except native_build.NativeBuildError as e:
        pytest.skip(f"CUDA kernels compile; registration not checked: {e}")
    for src in [NATIVE_SRC / "core" / "qle_register.cc", *native_build.cuda_op_sources()]:
        proc = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-DQLE_WITH_CUDA",
                               f"-I{include}", *includes, str(src)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
