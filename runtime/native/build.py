"""Build the qlstm_edge native op library (runtime/libqlstm_edge_ops.so).

Usable standalone (``python runtime/native/build.py``) and from setup.py (``build_native``).

- Targets: x86_64 and aarch64. The default is this machine's architecture, built into
  ``runtime/libqlstm_edge_ops.so`` with g++ (``$CXX``). ``--target aarch64`` on an x86-64 machine
  (or ``--target x86_64`` on an ARM one) cross-compiles with ``aarch64-linux-gnu-g++``
  (``x86_64-linux-gnu-g++``; ``--cxx`` names another) into ``build/native/libqlstm_edge_ops.aarch64.so``
  (``--out DIR`` to choose the folder), never over the host's library. A library is rebuilt when a
  source is newer or when its build fingerprint (compiler, target, flags, sources; stored in the
  library) differs from the requested build.
- Every build uses ``-ffp-contract=off``: no multiply-add is fused behind the source's back, so the
  scalar and element-wise float arithmetic is the same on every architecture.

- onnxruntime C/C++ API headers: ``$ORT_INCLUDE_DIR`` if set, else fetched once with
  ``npm pack com.github.asus4.onnxruntime@0.4.9`` and cached under
  ``~/.cache/qlstm_edge/ort-headers/0.4.9/`` (``$XDG_CACHE_HOME`` respected).
- onnxruntime's shared library for C++ programs that stream without Python (``runtime/include/qlstm_edge``,
  ``samples/cpp``; ``--cmake-args`` prints the CMake arguments): ``$ORT_LIBRARY`` if set, else
  ``libonnxruntime.so.1`` from ``npm pack onnxruntime-node@1.30.0`` (linux x64 and arm64), cached under
  ``~/.cache/qlstm_edge/ort-library/1.30.0/ARCH/``. ``--cpp-sample`` builds that runtime and its sample program
  with CMake, cached under ``~/.cache/qlstm_edge/cpp-build/`` per source change.
- Sources: ``core/`` (registration, the op contract, quantized matrices, the per-ISA kernels, the
  shared lane maths, CUDA helpers) and one folder per model family (``qllstm/``, ``prlstm/``,
  ``xlstm/``: its op specs and checks, CPU kernel, CUDA kernel and their registration). Every ``*.cc``
  of those folders is compiled, ``*_cuda_ops.cc`` and ``*.cu`` into the CUDA library only; each folder
  is on the include path. A new family is a new folder: its ops file registers its ops with a static
  registrar (core/qle_registry.h), so no list is edited. Sources are linked core first, then the
  families in name order, which is the order the library registers and lists its ops.
- CPU library: one .so with a scalar path and, chosen at run time, AVX2+FMA and AVX-512 paths on
  x86-64, NEON and NEON + dot-product paths on aarch64.
- CUDA (host builds only): when nvcc is on PATH the .cu sources are compile-checked (``nvcc -c``, object discarded),
  always with ``--fmad=false`` (the kernels share gate maths with the CPU, built without FMA contraction).
  With ``QLSTM_EDGE_BUILD_CUDA=1`` a second library ``runtime/libqlstm_edge_ops_cuda.so`` is
  linked (CPU + CUDA kernels, static cudart); it needs a CUDA driver at load time.

Environment: ``QLSTM_EDGE_SKIP_NATIVE=1`` skips everything; ``QLSTM_EDGE_REQUIRE_NATIVE=1``
turns "no compiler / no headers / build failed" into an error instead of a warning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NATIVE_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = NATIVE_DIR.parent
CROSS_OUT_DIR = RUNTIME_DIR.parent / "build" / "native"
LIB_NAME = "libqlstm_edge_ops.so"
CUDA_LIB_NAME = "libqlstm_edge_ops_cuda.so"

HEADERS_NPM_PACKAGE = "com.github.asus4.onnxruntime"
HEADERS_NPM_VERSION = "0.4.9"
HEADERS_TARBALL_DIR = "package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"
HEADERS_API_VERSION = 29
# onnxruntime's shared library for C++ programs (runtime/include/qlstm_edge): the npm package onnxruntime-node ships
# libonnxruntime.so.1 for linux x64 and arm64; its API version must be >= HEADERS_API_VERSION
RUNTIME_NPM_PACKAGE = "onnxruntime-node"
RUNTIME_NPM_VERSION = "1.30.0"
RUNTIME_TARBALL_DIR = "package/bin/napi-v6/linux/{arch}/"
RUNTIME_NPM_ARCHS = {"x86_64": "x64", "aarch64": "arm64"}
ORT_LIBRARY_NAME = "libonnxruntime.so.1"

CORE_DIR = NATIVE_DIR / "core"
# Folders under runtime/native that hold no op library sources (the standalone CUDA-vs-CPU harness).
NOT_FAMILIES = {"core", "harness"}
NVCCFLAGS = ["-std=c++17", "--fmad=false"]
CXXFLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra"]
# target architecture: (GNU triple of its cross compiler, names platform.machine() gives for it)
TARGETS = {"x86_64": ("x86_64-linux-gnu", ("x86_64", "amd64")), "aarch64": ("aarch64-linux-gnu", ("aarch64", "arm64"))}
BUILD_ID_PREFIX = "qlstm_edge-build:"


def family_dirs() -> list[Path]:
    """One folder per model family (its op specs, CPU and CUDA kernels and their registration)."""
    return sorted(d for d in NATIVE_DIR.iterdir()
                  if d.is_dir() and d.name not in NOT_FAMILIES and not d.name.startswith((".", "_")))


def source_dirs() -> list[Path]:
    """The core, then the family folders: the library's sources and its include path."""
    return [CORE_DIR, *family_dirs()]


def _sources(pattern: str) -> list[Path]:
    return [p for d in source_dirs() for p in sorted(d.glob(pattern))]


def cuda_op_sources() -> list[Path]:
    """C++ compiled only into the CUDA library (-DQLE_WITH_CUDA): the CUDA op registrations."""
    return _sources("*_cuda_ops.cc")


def cpu_sources() -> list[Path]:
    return [p for p in _sources("*.cc") if p not in cuda_op_sources()]


def cuda_sources() -> list[Path]:
    return _sources("*.cu")


def include_flags() -> list[str]:
    return [f"-I{d}" for d in source_dirs()]


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

    def extract(tar: tarfile.TarFile, staging: Path) -> None:
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
            raise NativeBuildError(f"{HEADERS_NPM_PACKAGE}@{HEADERS_NPM_VERSION} has no onnxruntime headers under "
                                   f"{HEADERS_TARBALL_DIR}")
        api_line = f"#define ORT_API_VERSION {HEADERS_API_VERSION}"
        if api_line not in (staging / "onnxruntime_c_api.h").read_text(errors="replace"):
            raise NativeBuildError(f"fetched headers are not onnxruntime API version {HEADERS_API_VERSION}")

    _fetch_npm_into(HEADERS_NPM_PACKAGE, HEADERS_NPM_VERSION, extract, cache, "onnxruntime headers",
                    "or set ORT_INCLUDE_DIR")
    return cache


def _fetch_npm_into(package: str, version: str, extract, cache: Path, what: str, alternative: str) -> None:
    """``npm pack package@version``, let ``extract(tarfile, staging_dir)`` copy what is needed out of the tarball,
    then move the staging folder to ``cache`` in one rename (concurrent fetches leave one complete copy)."""
    npm = shutil.which("npm")
    if npm is None:
        raise NativeBuildError(f"{what} are needed: install npm (to fetch {package}@{version}) {alternative}")
    _log(f"fetching {what}: npm pack {package}@{version}")
    with tempfile.TemporaryDirectory(prefix="qle-npm-") as tmp:
        proc = subprocess.run([npm, "pack", f"{package}@{version}", "--silent"], cwd=tmp, capture_output=True,
                              text=True)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise NativeBuildError(f"npm pack failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        staging = Path(tmp) / "staging"
        staging.mkdir()
        with tarfile.open(tarballs[0], "r:gz") as tar:
            extract(tar, staging)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.parent / f".{cache.name}.partial-{os.getpid()}"
        shutil.copytree(staging, partial)
        try:
            partial.rename(cache)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not cache.is_dir():
                raise
    _log(f"cached {what} in {cache}")


def onnxruntime_cache_dir(arch: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qlstm_edge" / "ort-library" / RUNTIME_NPM_VERSION / arch


def find_onnxruntime_library(arch: str | None = None, fetch: bool = True) -> Path:
    """onnxruntime's shared library for ``arch`` (default: this machine), for C++ programs that stream without
    Python: ``$ORT_LIBRARY`` if set (a libonnxruntime.so of the user's own), else libonnxruntime.so.1 from the npm
    package onnxruntime-node, fetched once and cached under ``~/.cache/qlstm_edge/ort-library/VERSION/ARCH/``."""
    arch = arch or host_arch()
    env = os.environ.get("ORT_LIBRARY")
    if env:
        lib = Path(env).expanduser()
        if not lib.is_file():
            raise NativeBuildError(f"ORT_LIBRARY={env} is not a file")
        return lib
    if arch not in RUNTIME_NPM_ARCHS:
        raise NativeBuildError(f"{RUNTIME_NPM_PACKAGE} ships no onnxruntime library for {arch!r}; set ORT_LIBRARY")
    cache = onnxruntime_cache_dir(arch)
    lib = cache / ORT_LIBRARY_NAME
    if lib.is_file():
        return lib
    if not fetch:
        raise NativeBuildError(f"onnxruntime library not cached in {cache}")
    member_name = RUNTIME_TARBALL_DIR.format(arch=RUNTIME_NPM_ARCHS[arch]) + ORT_LIBRARY_NAME

    def extract(tar: tarfile.TarFile, staging: Path) -> None:
        try:
            src = tar.extractfile(member_name)
        except KeyError:
            src = None
        if src is None:
            raise NativeBuildError(f"{RUNTIME_NPM_PACKAGE}@{RUNTIME_NPM_VERSION} has no {member_name}")
        (staging / ORT_LIBRARY_NAME).write_bytes(src.read())

    _fetch_npm_into(RUNTIME_NPM_PACKAGE, RUNTIME_NPM_VERSION, extract, cache, f"the onnxruntime library ({arch})",
                    "or set ORT_LIBRARY")
    return lib


def json_headers() -> Path | None:
    """nlohmann/json's headers from the nlohmann-json Python package (the dev extra), or None (CMake then looks for
    an installed nlohmann_json package, e.g. Debian's nlohmann-json3-dev)."""
    try:
        import nlohmann_json
    except ImportError:
        return None
    return Path(str(nlohmann_json.get_include()))


def cmake_args(arch: str | None = None) -> list[str]:
    """The CMake cache entries that point a C++ build (samples/cpp) at the onnxruntime headers and library, and at
    nlohmann/json's headers where the Python package has them."""
    json_dir = json_headers()
    return [f"-DQLSTM_EDGE_ORT_INCLUDE_DIR={find_headers()}",
            f"-DQLSTM_EDGE_ORT_LIBRARY={find_onnxruntime_library(arch)}",
            *([f"-DQLSTM_EDGE_JSON_INCLUDE_DIR={json_dir}"] if json_dir else [])]


def find_cmake() -> str | None:
    """The cmake of the cmake Python package (the dev extra) when installed, else the one on PATH."""
    try:
        import cmake
    except ImportError:
        return shutil.which("cmake")
    return shutil.which("cmake", path=cmake.CMAKE_BIN_DIR) or shutil.which("cmake")


CPP_SOURCES = (RUNTIME_DIR / "include", RUNTIME_DIR.parent / "samples" / "cpp")
CPP_SAMPLE = "qlstm_edge_stream"
CPP_CXXFLAGS = "-O2 -DNDEBUG"


def cpp_build_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qlstm_edge" / "cpp-build"


def build_cpp_sample(arch: str | None = None, cxx: str | None = None) -> Path:
    """Build samples/cpp (the C++ StreamingSession of runtime/include and the qlstm_edge_stream program) with CMake
    for ``arch``; returns the program. Cached under ``~/.cache/qlstm_edge/cpp-build/KEY/``, KEY a hash of the
    sources, the compiler and the onnxruntime library, so a build happens once per change."""
    arch = arch or host_arch()
    cmake = find_cmake()
    if cmake is None:
        raise NativeBuildError("building the C++ runtime needs cmake: pip install cmake (the dev extra has it) or "
                               "apt-get install cmake")
    compiler = _compiler(arch, cxx)
    args = cmake_args(arch)
    if arch != host_arch():
        args += ["-DCMAKE_SYSTEM_NAME=Linux", f"-DCMAKE_SYSTEM_PROCESSOR={arch}"]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    digest = hashlib.sha256(json.dumps([compiler, version, arch, args, CPP_CXXFLAGS]).encode())
    for root in CPP_SOURCES:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(root)).encode() + f.read_bytes())
    target = cpp_build_cache_dir() / f"{arch}-{digest.hexdigest()[:16]}" / CPP_SAMPLE
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="qle-cpp-") as tmp:
        _run([cmake, "-S", str(CPP_SOURCES[1]), "-B", tmp, f"-DCMAKE_CXX_COMPILER={compiler}",
              "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_CXX_FLAGS_RELEASE={CPP_CXXFLAGS}", *args], "CMake configure")
        _run([cmake, "--build", tmp, "-j", "2"], "C++ runtime build")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{CPP_SAMPLE}.partial-{os.getpid()}")
        shutil.copy2(Path(tmp) / CPP_SAMPLE, partial)
        partial.replace(target)
    _log(f"built {target}")
    return target


def _run(cmd: list[str], what: str) -> None:
    _log(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NativeBuildError(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")


def host_arch() -> str:
    """This machine's architecture as a TARGETS key (the machine name itself when it is not one)."""
    machine = platform.machine().lower()
    return next((arch for arch, (_, names) in TARGETS.items() if machine in names), machine)


def _is_up_to_date(target: Path, inputs: list[Path], build_id: str) -> bool:
    if not target.is_file():
        return False
    t = target.stat().st_mtime
    return all(p.stat().st_mtime <= t for p in inputs) and (BUILD_ID_PREFIX + build_id).encode() in target.read_bytes()


def _native_inputs() -> list[Path]:
    return [p for d in source_dirs() for p in sorted(d.iterdir()) if p.suffix in {".cc", ".h", ".cu", ".cuh"}]


def _compiler(arch: str, cxx: str | None) -> str:
    if cxx:
        if shutil.which(cxx) is None:
            raise NativeBuildError(f"C++ compiler {cxx!r} not found")
        return cxx
    if arch == host_arch():
        found = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        if found is None:
            raise NativeBuildError("no C++ compiler found (g++ / $CXX)")
        return found
    triple = TARGETS[arch][0]
    found = shutil.which(f"{triple}-g++")
    if found is None:
        raise NativeBuildError(f"cross-compiling for {arch} needs {triple}-g++ (Debian/Ubuntu: apt-get install "
                               f"g++-{triple.replace('_', '-')}), or name a compiler with --cxx")
    return found


def library_output(arch: str, out_dir: Path | None = None) -> Path:
    """Where the library for ``arch`` goes: the host's in runtime/, another architecture's in build/native/."""
    if arch == host_arch():
        return (out_dir or RUNTIME_DIR) / LIB_NAME
    return (out_dir or CROSS_OUT_DIR) / LIB_NAME.replace(".so", f".{arch}.so")


def build_cpu(include: Path, out_dir: Path | None = None, force: bool = False, arch: str | None = None,
              cxx: str | None = None) -> Path:
    arch = arch or host_arch()
    if arch not in TARGETS:
        raise NativeBuildError(f"unsupported target architecture {arch!r} (one of {', '.join(TARGETS)})")
    cxx = _compiler(arch, cxx)
    target = library_output(arch, out_dir)
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    build_id = hashlib.sha256(json.dumps([cxx, version, arch, CXXFLAGS, [str(p.relative_to(NATIVE_DIR)) for p in cpu_sources()]]).encode()).hexdigest()[:16]
    if not force and _is_up_to_date(target, _native_inputs(), build_id):
        _log(f"up to date: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    cmd = [cxx, *CXXFLAGS, f'-DQLE_BUILD_ID="{BUILD_ID_PREFIX}{build_id}"', "-shared", f"-I{include}",
           *include_flags(), *(str(p) for p in cpu_sources()), "-o", str(tmp)]
    _run(cmd, f"C++ build ({arch})")
    tmp.replace(target)
    _log(f"built {target}")
    return target


def check_cuda(include: Path) -> bool | None:
    """Compile-check the CUDA sources (object discarded). None when nvcc is absent."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    with tempfile.TemporaryDirectory(prefix="qle-nvcc-") as tmp:
        for src in cuda_sources():
            _run([nvcc, *NVCCFLAGS, "-Xcompiler", "-fPIC", *include_flags(), "-c",
                  str(src), "-o", str(Path(tmp) / (src.name + ".o"))], f"nvcc compile check of {src.name}")
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
        for src in cuda_sources():
            obj = Path(tmp) / (src.name + ".o")
            _run([nvcc, "-O3", *NVCCFLAGS, "-Xcompiler", "-fPIC,-fvisibility=hidden", *include_flags(),
                  "-c", str(src), "-o", str(obj)], f"nvcc build of {src.name}")
            objs.append(str(obj))
        tmp_target = target.with_name(target.name + ".tmp")
        _run([cxx, *CXXFLAGS, "-shared", "-DQLE_WITH_CUDA", f"-I{include}", *include_flags(),
              *(str(p) for p in cpu_sources() + cuda_op_sources()), *objs,
              f"-L{cudart_dir}", "-lcudart_static", "-ldl", "-lrt", "-lpthread", "-o", str(tmp_target)],
             "CUDA library link")
        tmp_target.replace(target)
    _log(f"built {target}")
    return target


def build_native(require: bool | None = None, force: bool = False, arch: str | None = None,
                 out_dir: Path | None = None, cxx: str | None = None) -> Path | None:
    """Build the library for ``arch`` (default: this machine); returns its path, or None when skipped /
    impossible and not required. A cross build (another architecture) builds the CPU library only."""
    if _env_flag("QLSTM_EDGE_SKIP_NATIVE"):
        _log("QLSTM_EDGE_SKIP_NATIVE=1: not building the native op library")
        return None
    cross = (arch or host_arch()) != host_arch()  # a cross build is asked for explicitly: its failure is an error
    if require is None:
        require = _env_flag("QLSTM_EDGE_REQUIRE_NATIVE")
    try:
        include = find_headers()
        lib = build_cpu(include, out_dir=out_dir, force=force, arch=arch, cxx=cxx)
    except (NativeBuildError, OSError) as exc:
        if cross:
            raise
        if require:
            raise NativeBuildError(f"native op library is required (QLSTM_EDGE_REQUIRE_NATIVE=1) but could not be built: {exc}") from exc
        _log(f"WARNING: installing without the native op library ({exc}). "
             "Models still run through the ONNX function bodies (native='off').")
        return None
    if cross:
        return lib
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
    parser.add_argument("--target", choices=sorted(TARGETS), default=None,
                        help=f"architecture to build for (default: this machine, {host_arch()}); another one "
                             "cross-compiles into build/native/libqlstm_edge_ops.ARCH.so")
    parser.add_argument("--out", type=Path, default=None, help="folder for the library (default: see --target)")
    parser.add_argument("--cxx", default=None, help="C++ compiler (default: $CXX or g++ for this machine, "
                                                    "TRIPLE-g++ for a cross build)")
    parser.add_argument("--cmake-args", action="store_true",
                        help="print the CMake arguments that point a C++ build (samples/cpp) at the onnxruntime headers "
                             "and library for --target (fetching them once), and build nothing")
    parser.add_argument("--cpp-sample", action="store_true",
                        help="build the C++ runtime and its sample program (samples/cpp) for --target with CMake, "
                             "cached under ~/.cache/qlstm_edge/cpp-build, and print the program's path")
    args = parser.parse_args(argv)
    if args.cpp_sample:
        try:
            print(build_cpp_sample(args.target, args.cxx))
        except (NativeBuildError, OSError) as exc:
            _log(f"ERROR: {exc}")
            return 1
        return 0
    if args.cmake_args:
        try:
            print(" ".join(cmake_args(args.target)))
        except (NativeBuildError, OSError) as exc:
            _log(f"ERROR: {exc}")
            return 1
        return 0
    try:
        lib = build_native(require=True if args.require else None, force=args.force, arch=args.target,
                           out_dir=args.out, cxx=args.cxx)
    except (NativeBuildError, OSError) as exc:
        _log(f"ERROR: {exc}")
        return 1
    if lib is not None:
        print(lib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
