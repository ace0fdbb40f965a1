#!/usr/bin/env python3
"""Every GPU check of qlstm-edge in one run (a few minutes on a machine with an NVIDIA GPU).

Steps, each reported with its time and outcome:
  1. gpu        find the GPU (asks the NVIDIA driver); without one, say so and exit 77: nothing was checked.
  2. library    build the CUDA op library, runtime/libqlstm_edge_ops_cuda.so
                (QLSTM_EDGE_BUILD_CUDA=1 python runtime/native/build.py --require).
  3. harness    build runtime/native/harness and run it: every CUDA kernel (QL-LSTM cell/sequence,
                PR-LSTM step/sequence, sLSTM and mLSTM cell/sequence, the xLSTMLarge, mLSTM and sLSTM block
                step/sequence, in every weight mode) against the scalar CPU kernel on random inputs, two calls with the state carried,
                one line per case.
  4. pytest     python -m pytest -q tests/native/test_gpu.py -k "not harness" with QLSTM_EDGE_REQUIRE_GPU=1
                (a missing prerequisite fails instead of skipping): every family's exported step and
                sequence files streamed through StreamingSession on onnxruntime's CUDAExecutionProvider
                with the CUDA op library, against the CPU native run. Needs onnxruntime-gpu (an
                onnxruntime with CUDAExecutionProvider). The file's harness tests are step 3, not run twice.

The later steps run even when an earlier one fails, so one run shows everything; a step still running when
the run reaches 570 s is stopped and fails. NVIDIA_TF32_OVERRIDE=0 is set for the steps: onnxruntime's
stock CUDA kernels then multiply in float32, not TF32, as the CPU does.

Exit status: 0 every step passed; 1 a step failed; 77 no GPU found (nothing checked).
Run it from anywhere with the project's Python, e.g. `.venv/bin/python .ci/gpu_check.py`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "gpu_check"
BUDGET_S = 570  # the whole run: a step that would take it past 10 minutes is stopped and fails


def load_harness_build():
    """runtime/native/harness/build_harness.py as a module: find_gpus and the no-GPU exit status live there."""
    spec = importlib.util.spec_from_file_location("qle_harness_build", ROOT / "runtime" / "native" / "harness" /
                                                  "build_harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_step(name: str, cmd: list[str], env: dict, timeout_s: float) -> tuple[bool, float, str]:
    """Runs one step with its output streamed; (passed, seconds, note)."""
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    try:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=max(timeout_s, 1.0)).returncode
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - start, f"stopped at the run's {BUDGET_S} s budget"
    return rc == 0, time.monotonic() - start, "" if rc == 0 else f"exit {rc}"


def steps(python: str) -> list[tuple[str, list[str]]]:
    return [
        ("library", [python, "runtime/native/build.py", "--require"]),
        ("harness", [python, "runtime/native/harness/build_harness.py", "--out", str(BUILD_DIR), "--run"]),
        ("pytest", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/native/test_gpu.py", "-k", "not harness"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    harness = load_harness_build()
    gpus, why = harness.find_gpus()
    if not gpus:
        print(f"gpu_check: no GPU on this machine: {why}. Nothing was checked (exit {harness.NO_GPU_EXIT}).")
        return harness.NO_GPU_EXIT
    print(f"gpu_check: {', '.join(gpus)}")
    env = dict(os.environ, QLSTM_EDGE_BUILD_CUDA="1", QLSTM_EDGE_REQUIRE_GPU="1", NVIDIA_TF32_OVERRIDE="0")
    deadline = time.monotonic() + BUDGET_S
    results = [(name, *run_step(name, cmd, env, deadline - time.monotonic())) for name, cmd in steps(sys.executable)]
    print("\n=== summary")
    for name, ok, seconds, note in results:
        print(f"  {name:8s} {'ok' if ok else 'FAIL':4s} {seconds:6.1f} s  {note}")
    failed = [name for name, ok, _, _ in results if not ok]
    print(f"gpu_check: {'every check passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
