"""Build the qlstm_edge native op library (runtime/libqlstm_edge_ops.so).

Usable standalone (``python runtime/native/build.py``) and from setup.py (``build_native``).

- onnxruntime C/C++ API headers: ``$ORT_INCLUDE_DIR`` if set, else fetched once with
  ``npm pack com.github.asus4.onnxruntime@0.4.9`` and cached under
  ``~/.cache/qlstm_edge/ort-headers/0.4.9/`` (``$XDG_CACHE_HOME`` respected).
- CPU library: g++ (``$CXX``), one .so with scalar, AVX2+FMA and AVX-512 paths chosen at run time.
- CUDA: when nvcc is on PATH the .cu sources are compile-checked (``nvcc -c``, object discarded),
  always with ``--fmad=false`` (the kernels share gate maths with the CPU, built without FMA contraction).
  With ``QLSTM_EDGE_BUILD_CUDA=1`` a second library ``runtime/libqlstm_edge_ops_cuda.so`` is
  linked (CPU + CUDA kernels, static cudart); it needs a CUDA driver at load time.

Environment: ``QLSTM_EDGE_SKIP_NATIVE=1`` skips everything; ``QLSTM_EDGE_REQUIRE_NATIVE=1``
turns "no compiler / no headers / build failed" into an error instead of a warning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NATIVE_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = NATIVE_DIR.parent
LIB_NAME = "libqlstm_edge_ops.so"
CUDA_LIB_NAME = "libqlstm_edge_ops_cuda.so"

HEADERS_NPM_PACKAGE = "com.github.asus4.onnxruntime"
HEADERS_NPM_VERSION = "0.4.9"
HEADERS_TARBALL_DIR = "package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"
HEADERS_API_VERSION = 29

CPU_SOURCES = ["qle_ops.cc", "qle_qmatrix.cc", "qle_cpu_scalar.cc", "qle_cpu_avx2.cc", "qle_cpu_avx512.cc",
               "qle_family_contract.cc", "qle_family_ops.cc", "qle_prlstm.cc", "qle_xlstm.cc"]
CUDA_SOURCES = ["qle_cuda.cu", "qle_family_cuda.cu"]
CUDA_CPU_SOURCES = ["qle_family_cuda_ops.cc"]  # C++ compiled only into the CUDA library (-DQLE_WITH_CUDA)
NVCCFLAGS = ["-std=c++17", "--fmad=false"]
CXXFLAGS = ["-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra"]


class NativeBuildError(RuntimeError):
    """The native library could not be built."""


def _log(msg: str) -> None:
    print(f"[qlstm_edge native] {msg}", file=sys.stderr, flush=True)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def headers_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qlstm_edge" / "ort-headers" / HEADERS_NPM_VERSION


def _has_api_header(d: Path) -> bool:
    return (d / "onnxruntime_c_api.h").is_file() and (d / "onnxruntime_cxx_api.h").is_file()


def find_headers(fetch: bool = True) -> Path:
    """Directory holding onnxruntime_c_api.h / onnxruntime_cxx_api.h (fetching them if needed)."""
    env = os.environ.get("ORT_INCLUDE_DIR")
    if env:
        d = Path(env).expanduser()
        if not _has_api_header(d):
            raise NativeBuildError(f"ORT_INCLUDE_DIR={env} does not contain onnxruntime_c_api.h and onnxruntime_cxx_api.h")
        return d
    cache = headers_cache_dir()
    if _has_api_header(cache):
        return cache
    if not fetch:
        raise NativeBuildError(f"onnxruntime headers not cached in {cache}")
    npm = shutil.which("npm")
    if npm is None:
        raise NativeBuildError(
            "onnxruntime C/C++ API headers are needed: install npm (to fetch "
            f"{HEADERS_NPM_PACKAGE}@{HEADERS_NPM_VERSION}) or set ORT_INCLUDE_DIR"
        )
    _log(f"fetching onnxruntime headers: npm pack {HEADERS_NPM_PACKAGE}@{HEADERS_NPM_VERSION}")
    with tempfile.TemporaryDirectory(prefix="qle-ort-headers-") as tmp:
        proc = subprocess.run(
            [npm, "pack", f"{HEADERS_NPM_PACKAGE}@{HEADERS_NPM_VERSION}", "--silent"],
            cwd=tmp, capture_output=True, text=True,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise NativeBuildError(f"npm pack failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        staging = Path(tmp) / "headers"
        staging.mkdir()
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.startswith(HEADERS_TARBALL_DIR):
                    continue
                name = member.name[len(HEADERS_TARBALL_DIR):]
                if "/" in name or not name.endswith(".h"):
                    continue
                src = tar.extractfile(member)
                assert src is not None
                (staging / name).write_bytes(src.read())
        if not _has_api_header(staging):
            raise NativeBuildError(f"{tarballs[0].name} has no onnxruntime headers under {HEADERS_TARBALL_DIR}")
        api_line = f"#define ORT_API_VERSION {HEADERS_API_VERSION}"
        if api_line not in (staging / "onnxruntime_c_api.h").read_text(errors="replace"):
            raise NativeBuildError(f"fetched headers are not onnxruntime API version {HEADERS_API_VERSION}")
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.parent / f".{cache.name}.partial-{os.getpid()}"
        shutil.copytree(staging, partial)
        try:
            partial.rename(cache)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not _has_api_header(cache):
                raise
    _log(f"cached onnxruntime headers in {cache}")
    return cache


def _run(cmd: list[str], what: str) -> None:
    _log(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NativeBuildError(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")


def _is_up_to_date(target: Path, inputs: list[Path]) -> bool:
    if not target.is_file():
        return False
    t = target.stat().st_mtime
    return all(p.stat().st_mtime <= t for p in inputs)


def _native_inputs() -> list[Path]:
    return sorted(p for p in NATIVE_DIR.iterdir() if p.suffix in {".cc", ".h", ".cu", ".cuh"})


def build_cpu(include: Path, out_dir: Path = RUNTIME_DIR, force: bool = False) -> Path:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise NativeBuildError("no C++ compiler found (g++ / $CXX)")
    target = out_dir / LIB_NAME
    if not force and _is_up_to_date(target, _native_inputs()):
        _log(f"up to date: {target}")
        return target
    tmp = target.with_name(target.name + ".tmp")
    cmd = [cxx, *CXXFLAGS, "-shared", f"-I{include}", f"-I{NATIVE_DIR}",
           *(str(NATIVE_DIR / s) for s in CPU_SOURCES), "-o", str(tmp)]
    _run(cmd, "C++ build")
    tmp.replace(target)
    _log(f"built {target}")
    return target


def check_cuda(include: Path) -> bool | None:
    """Compile-check the CUDA sources (object discarded). None when nvcc is absent."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    with tempfile.TemporaryDirectory(prefix="qle-nvcc-") as tmp:
        for src in CUDA_SOURCES:
            _run([nvcc, *NVCCFLAGS, "-Xcompiler", "-fPIC", f"-I{NATIVE_DIR}", "-c",
                  str(NATIVE_DIR / src), "-o", str(Path(tmp) / (src + ".o"))], f"nvcc compile check of {src}")
    _log("CUDA sources compile (nvcc -c)")
    return True


def _find_cudart_static(nvcc: str) -> Path:
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), str(Path(nvcc).resolve().parent.parent),
             "/usr/local/cuda"]
    for root in filter(None, roots):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
            if (Path(root) / sub / "libcudart_static.a").is_file():
                return Path(root) / sub
    raise NativeBuildError("libcudart_static.a not found (set CUDA_HOME)")


def build_cuda(include: Path, out_dir: Path = RUNTIME_DIR) -> Path:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise NativeBuildError("QLSTM_EDGE_BUILD_CUDA=1 but nvcc is not on PATH")
    cxx = os.environ.get("CXX") or shutil.which("g++") or "g++"
    cudart_dir = _find_cudart_static(nvcc)
    target = out_dir / CUDA_LIB_NAME
    with tempfile.TemporaryDirectory(prefix="qle-cuda-") as tmp:
        objs = []
        for src in CUDA_SOURCES:
            obj = Path(tmp) / (src + ".o")
            _run([nvcc, "-O3", *NVCCFLAGS, "-Xcompiler", "-fPIC,-fvisibility=hidden", f"-I{NATIVE_DIR}",
                  "-c", str(NATIVE_DIR / src), "-o", str(obj)], f"nvcc build of {src}")
            objs.append(str(obj))
        tmp_target = target.with_name(target.name + ".tmp")
        _run([cxx, *CXXFLAGS, "-shared", "-DQLE_WITH_CUDA", f"-I{include}", f"-I{NATIVE_DIR}",
              *(str(NATIVE_DIR / s) for s in CPU_SOURCES + CUDA_CPU_SOURCES), *objs,
              f"-L{cudart_dir}", "-lcudart_static", "-ldl", "-lrt", "-lpthread", "-o", str(tmp_target)],
             "CUDA library link")
        tmp_target.replace(target)
    _log(f"built {target}")
    return target


def build_native(require: bool | None = None, force: bool = False) -> Path | None:
    """Build the library; returns its path, or None when skipped / impossible and not required."""
    if _env_flag("QLSTM_EDGE_SKIP_NATIVE"):
        _log("QLSTM_EDGE_SKIP_NATIVE=1: not building the native op library")
        return None
    if require is None:
        require = _env_flag("QLSTM_EDGE_REQUIRE_NATIVE")
    try:
        include = find_headers()
        lib = build_cpu(include, force=force)
    except (NativeBuildError, OSError) as exc:
        if require:
            raise NativeBuildError(f"native op library is required (QLSTM_EDGE_REQUIRE_NATIVE=1) but could not be built: {exc}") from exc
        _log(f"WARNING: installing without the native op library ({exc}). "
             "Models still run through the ONNX function bodies (native='off').")
        return None
    try:
        check_cuda(include)
        if _env_flag("QLSTM_EDGE_BUILD_CUDA"):
            build_cuda(include)
    except (NativeBuildError, OSError) as exc:
        if require:
            raise NativeBuildError(f"CUDA part of the native op library failed (QLSTM_EDGE_REQUIRE_NATIVE=1): {exc}") from exc
        _log(f"WARNING: CPU library built, CUDA part failed: {exc}")
    return lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--require", action="store_true", help="fail instead of warning when the build is impossible")
    args = parser.parse_args(argv)
    try:
        lib = build_native(require=True if args.require else None, force=args.force)
    except NativeBuildError as exc:
        _log(f"ERROR: {exc}")
        return 1
    if lib is not None:
        print(lib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
