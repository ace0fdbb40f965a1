"""GPU checks: the CUDA kernels against the CPU kernels, directly (the harness) and through onnxruntime.

Each test runs where its prerequisites are present and skips with the missing one otherwise; with
QLSTM_EDGE_REQUIRE_GPU=1 (set by .ci/gpu_check.py) a missing prerequisite fails instead.
- the harness compiles with nvcc and its CPU side runs (nvcc only: no GPU needed);
- the harness passes on the GPU (nvcc and a GPU): every CUDA kernel against the scalar CPU kernel;
- every family's exported step and sequence files, streamed through StreamingSession on onnxruntime's
  CUDAExecutionProvider with the CUDA op library, match the CPU native run (onnxruntime-gpu, the CUDA op
  library, a GPU); the block ops (xLSTMLarge's, the LM's mLSTM and sLSTM blocks) also in their quantized modes.
"""
import importlib.util
import os
import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import pytest

from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import TOLERANCES, random_inputs
from qlstm_edge.runtime import StreamingSession, native_lib

from helpers import FAMILIES, REPO

# onnxruntime's stock CUDA kernels (the models' other nodes) would otherwise multiply in TF32 on Ampere and
# later GPUs; read by cuBLAS when it starts, before any session of this module exists.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

REQUIRE = os.environ.get("QLSTM_EDGE_REQUIRE_GPU") == "1"
CHUNKS = (1, 7, 1, 16)  # step() for 1, run() otherwise: the state is carried between calls of both kinds
STEPS = 48
# A CUDA run differs from the CPU one by float32 rounding order (sums split differently; the stock nodes'
# libm ulps): the tolerance a float32 export is held to, relative to max(1, max |CPU value|) of each tensor.
FP32_TOL = TOLERANCES[None]


def _harness_build():
    spec = importlib.util.spec_from_file_location("qle_harness_build",
                                                  REPO / "runtime" / "native" / "harness" / "build_harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _harness_build()


def need(condition, reason):
    """Skip (fail under QLSTM_EDGE_REQUIRE_GPU=1) with ``reason`` unless ``condition``."""
    if condition:
        return
    if REQUIRE:
        pytest.fail(f"{reason} (QLSTM_EDGE_REQUIRE_GPU=1)")
    pytest.skip(reason)


def need_gpu():
    gpus, why = harness.find_gpus()
    need(gpus, f"no GPU: {why}")


@pytest.fixture(scope="module")
def harness_binary(tmp_path_factory):
    need(shutil.which("nvcc") is not None, "nvcc is not on PATH (CUDA toolkit missing)")
    return harness.build_harness(tmp_path_factory.mktemp("harness"))


@pytest.mark.slow
def test_harness_compiles_and_its_cpu_side_runs(harness_binary):
    """The harness stays buildable where nvcc is, GPU or not; its CPU references run on every case's inputs."""
    proc = subprocess.run([str(harness_binary), "--cpu-only"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for op in ("QLLSTMCell", "QLLSTMSequence", "PRLSTMStep", "PRLSTMSequence", "sLSTMCell", "sLSTMSequence",
               "mLSTMCell", "mLSTMSequence", "xLSTMLargeBlock", "xLSTMLargeBlockSequence", "mLSTMBlock",
               "mLSTMBlockSequence", "sLSTMBlock", "sLSTMBlockSequence"):
        assert f"{op} " in proc.stdout
    assert "276 cases, 0 failed" in proc.stdout


def test_harness_passes_on_the_gpu(request):
    need_gpu()
    binary = request.getfixturevalue("harness_binary")
    proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]


def cuda_onnxruntime():
    """Skips unless onnxruntime's CUDA execution provider, the CUDA op library and a GPU are all present."""
    need("CUDAExecutionProvider" in ort.get_available_providers(),
         f"this onnxruntime has no CUDAExecutionProvider (available: {ort.get_available_providers()}; "
         f"install onnxruntime-gpu)")
    need(native_lib.library_path(cuda=True) is not None,
         "no CUDA op library (build it with QLSTM_EDGE_BUILD_CUDA=1 python runtime/native/build.py)")
    need_gpu()


def stream(session, x):
    """x [B, T, ...] through ``session`` in CHUNKS; (outputs [B, T, ...], final state)."""
    ys, t, k = [], 0, 0
    while t < x.shape[1]:
        n = min(CHUNKS[k % len(CHUNKS)], x.shape[1] - t)
        ys.append(session.step(x[:, t])[:, None] if n == 1 else session.run(x[:, t:t + n]))
        t, k = t + n, k + 1
    return np.concatenate(ys, 1), session.get_state()


def assert_close(got, want, what, tol=FP32_TOL):
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert np.array_equal(np.isnan(got), np.isnan(want)), what
    finite = ~np.isnan(want)
    if finite.any():
        scale = max(1.0, float(np.abs(want[finite]).max()))
        err = float(np.abs(got[finite].astype(np.float64) - want[finite]).max())
        assert err <= tol * scale, f"{what}: max abs diff {err:.3e} > {tol * scale:.1e}"


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cuda_session_matches_cpu_native(family_exports, family, mode):
    cuda_onnxruntime()
    path = family_exports(family)[1][mode]
    cpu = StreamingSession(path, native="on")
    gpu = StreamingSession(path, providers="cuda", native="on")
    assert gpu.provider == "CUDAExecutionProvider"
    assert gpu.native_library is not None and gpu.native_library.name == native_lib.CUDA_LIB_NAME
    assert gpu.op_path == "native"
    x = random_inputs(cpu, STEPS, 2, seed=3)
    y_cpu, state_cpu = stream(cpu, x)
    y_gpu, state_gpu = stream(gpu, x)
    assert_close(y_gpu, y_cpu, "output")
    assert state_gpu.keys() == state_cpu.keys()
    for name in state_cpu:
        assert_close(state_gpu[name], state_cpu[name], f"state {name}")


# The block ops' quantized nodes (the float32 ones are above): the GPU products sum in another order than the CPU's
# vector kernels (float32 rounding, as above), and in int8-dynamic a row value that lands on a quantization
# boundary on one side may round to the next integer on the other: one grid step of a product, the 1e-3 of the
# CPU kernels' own tests (test_xlstm_block_kernels.py).
BLOCK_TOL = {"int8": FP32_TOL, "int8-dynamic": 1e-3, "int4": FP32_TOL}


@pytest.mark.parametrize("quantize", list(BLOCK_TOL))
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("family", ["xlstm-large", "xlstm-lm"])
def test_cuda_quantized_block_ops_match_cpu_native(tmp_path, family, mode, quantize):
    cuda_onnxruntime()
    need(family in FAMILIES, f"the xlstm package is not installed (no {family} example)")
    path = export_onnx(FAMILIES[family][1](), tmp_path / f"{mode}.onnx", mode=mode, quantize=quantize)
    cpu = StreamingSession(path, native="on")
    gpu = StreamingSession(path, providers="cuda", native="on")
    assert gpu.op_path == "native"
    x = random_inputs(cpu, STEPS, 2, seed=5)
    (y_cpu, state_cpu), (y_gpu, state_gpu) = stream(cpu, x), stream(gpu, x)
    tol = BLOCK_TOL[quantize]
    assert_close(y_gpu, y_cpu, "output", tol)
    for name in state_cpu:
        assert_close(state_gpu[name], state_cpu[name], f"state {name}", tol)
