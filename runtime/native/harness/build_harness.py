"""Build (and optionally run) the CUDA kernel harness: runtime/native/harness/qle_cuda_harness.cc.

The harness runs every CUDA kernel of the native library against its CPU kernel on random inputs, without
onnxruntime (its headers are needed to compile; nothing of it is linked or run). One nvcc command compiles
the library's sources as runtime/native/build.py lists them (the CUDA kernels with ``--fmad=false``, the CPU
sources with the library's host flags, every family folder on the include path) and the harness, and links
them with CUDA's static runtime. Building needs nvcc and the onnxruntime headers (runtime/native/build.py finds or
fetches them); running the comparisons needs a GPU (``--cpu-only`` runs the CPU side alone).

    python runtime/native/harness/build_harness.py                  # build into build/harness/
    python runtime/native/harness/build_harness.py --run            # build, then run every case
    python runtime/native/harness/build_harness.py --run -- --list  # arguments after -- go to the harness
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
NATIVE_DIR = HARNESS_DIR.parent
REPO_DIR = NATIVE_DIR.parent.parent
DEFAULT_OUT = REPO_DIR / "build" / "harness"
BINARY_NAME = "qle_cuda_harness"
NO_GPU_EXIT = 77  # the harness's exit status when no CUDA device is usable (automake's "skipped")


def find_gpus() -> tuple[list[str], str]:
    """(names of the CUDA devices the driver offers, why there are none): asks the driver library
    (libcuda.so.1) directly, so it needs neither nvidia-smi nor a CUDA toolkit."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return [], f"no NVIDIA driver ({exc})"
    count = ctypes.c_int(0)
    if (err := cuda.cuInit(0)) != 0:
        return [], f"the NVIDIA driver found no usable GPU (cuInit: CUresult {err})"
    if (err := cuda.cuDeviceGetCount(ctypes.byref(count))) != 0 or count.value == 0:
        return [], f"the NVIDIA driver lists no GPU (cuDeviceGetCount: CUresult {err}, {count.value} devices)"
    names = []
    for i in range(count.value):
        device, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
        cuda.cuDeviceGet(ctypes.byref(device), i)
        cuda.cuDeviceGetName(name, len(name), device)
        names.append(name.value.decode(errors="replace"))
    return names, ""


def harness_sources(native) -> list[Path]:
    """The harness's sources: every CUDA kernel and every CPU source of the op library, as ``native``
    (runtime/native/build.py) lists them, so a new family folder is compiled in with no edit here; then
    the harness itself. The CUDA op registrations (``native.cuda_op_sources()``) are left out: nothing here
    runs onnxruntime."""
    return [*native.cuda_sources(), *native.cpu_sources(), HARNESS_DIR / "qle_cuda_harness.cc"]


def _native_build():
    """runtime/native/build.py as a module (its sources, compiler flags and the onnxruntime header lookup)."""
    spec = importlib.util.spec_from_file_location("qle_native_build", NATIVE_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_command(nvcc: str, include_ort: Path, out: Path) -> list[str]:
    """The nvcc command line that compiles and links the harness into ``out``."""
    native = _native_build()
    host_flags = [f for f in native.CXXFLAGS if f not in ("-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden")]
    return [nvcc, "-O3", *native.NVCCFLAGS, "-Xcompiler", ",".join(host_flags), f"-I{include_ort}",
            *native.include_flags(), *map(str, harness_sources(native)), "-o", str(out)]


def build_harness(out_dir: Path = DEFAULT_OUT) -> Path:
    """Compile and link the harness; returns the binary. Raises RuntimeError when nvcc is missing or the
    build fails (with the compiler's output)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc is not on PATH: the CUDA harness needs the CUDA toolkit")
    include_ort = _native_build().find_headers()
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / BINARY_NAME
    cmd = build_command(nvcc, include_ort, binary)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"harness build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{(proc.stdout + proc.stderr)[-6000:]}")
    return binary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    harness_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Exit status: the harness's with --run (0 all cases ok, 1 a case "
                                            f"failed, {NO_GPU_EXIT} no CUDA device), else 0 built / 1 not built.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"build folder (default {DEFAULT_OUT})")
    parser.add_argument("--run", action="store_true", help="run the harness after building it")
    args = parser.parse_args(own)
    try:
        binary = build_harness(args.out)
    except (RuntimeError, OSError) as exc:
        print(f"[harness] ERROR: {exc}", file=sys.stderr)
        return 1
    print(binary)
    if not args.run:
        return 0
    return subprocess.run([str(binary), *harness_args]).returncode


if __name__ == "__main__":
    sys.exit(main())
