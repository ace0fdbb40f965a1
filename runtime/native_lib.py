"""Locate, describe and register the native qlstm_edge op library (no torch import here).

The library is ``libqlstm_edge_ops.so`` next to this file (built by ``runtime/native/build.py``,
also at install time), or the file named by ``$QLSTM_EDGE_NATIVE_LIB``. With CUDA kernels it is
``libqlstm_edge_ops_cuda.so`` (built only with ``QLSTM_EDGE_BUILD_CUDA=1``).
``$QLSTM_EDGE_NATIVE_ISA`` forces the CPU code path: auto, scalar, or one of the library's architecture
(x86-64: avx2 | avxvnni | avx512 | avx512vnni; aarch64: neon | neon-dotprod).
A library built for another architecture (a cross build) is refused with a message naming both,
read from its ELF header before it is loaded.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
from pathlib import Path
from typing import Optional

from .errors import NativeLibraryError
from .metadata import DOMAIN

LIB_NAME = "libqlstm_edge_ops.so"
CUDA_LIB_NAME = "libqlstm_edge_ops_cuda.so"
LIB_ENV = "QLSTM_EDGE_NATIVE_LIB"
ISA_ENV = "QLSTM_EDGE_NATIVE_ISA"
ISAS_BY_ARCH = {"x86_64": ("scalar", "avx2", "avxvnni", "avx512", "avx512vnni"),
                "aarch64": ("scalar", "neon", "neon-dotprod")}
ISA_CHOICES = tuple(dict.fromkeys(isa for isas in ISAS_BY_ARCH.values() for isa in isas))
# ELF e_machine values of the architectures a library may be built for, and platform.machine() names
ELF_MACHINES = {62: "x86_64", 183: "aarch64", 3: "i386", 40: "arm", 243: "riscv64", 21: "ppc64"}
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

_HERE = Path(__file__).resolve().parent
_loaded: dict = {}


def library_path(cuda: bool = False) -> Optional[Path]:
    """Path of the built library ($QLSTM_EDGE_NATIVE_LIB wins), or None when there is none."""
    override = os.environ.get(LIB_ENV)
    if override:
        p = Path(override).expanduser()
        return p.resolve() if p.is_file() else None
    p = _HERE / (CUDA_LIB_NAME if cuda else LIB_NAME)
    return p if p.is_file() else None


def _missing_reason(cuda: bool) -> str:
    override = os.environ.get(LIB_ENV)
    if override:
        return f"{LIB_ENV}={override} is not a file"
    if sys.platform != "linux":
        return f"the native op library is only built on Linux (this is {sys.platform})"
    name = CUDA_LIB_NAME if cuda else LIB_NAME
    how = "QLSTM_EDGE_BUILD_CUDA=1 python runtime/native/build.py" if cuda else "python runtime/native/build.py"
    return (f"native op library not built ({_HERE / name} is missing); build it with `{how}` "
            "or reinstall without QLSTM_EDGE_SKIP_NATIVE")


def host_arch() -> str:
    machine = platform.machine().lower()
    return MACHINE_ALIASES.get(machine, machine)


def library_arch(path: Path) -> Optional[str]:
    """Architecture a shared library is built for, from its ELF header (None: not an ELF file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"ELF machine {machine}")


def _load(path: Path) -> ctypes.CDLL:
    """dlopen the library once per process and keep it loaded: onnxruntime opens the same file,
    so this also pins it for as long as sessions may use its kernels."""
    key = str(path)
    lib = _loaded.get(key)
    if lib is None:
        arch, host = library_arch(path), host_arch()
        if arch is not None and arch != host:
            raise NativeLibraryError(f"the native op library {path} is built for {arch}, this machine is {host}: "
                                 f"use a library built for {host} (`python runtime/native/build.py` on this "
                                 f"machine, or `--target {host}` cross-compiled elsewhere)")
        try:
            lib = ctypes.CDLL(key)
        except OSError as e:
            raise NativeLibraryError(f"cannot load the native op library {path}: {e}") from None
        lib.qle_native_info.restype = ctypes.c_char_p
        lib.qle_native_compute_calls.restype = ctypes.c_ulonglong
        _loaded[key] = lib
    return lib


def _effective_isa(info: dict) -> tuple[Optional[str], Optional[str]]:
    """(ISA the kernels will use, reason it cannot be used)."""
    forced = os.environ.get(ISA_ENV, "").strip()
    if forced in ("", "auto"):
        return info["isa_auto"], None
    arch = info.get("arch", "x86_64")
    if forced not in ISA_CHOICES:
        return None, f"{ISA_ENV}={forced!r} is not one of {', '.join(ISA_CHOICES)}, auto"
    if forced not in info["isa_supported"]:
        return None, (f"{ISA_ENV}={forced} is not an instruction set of this {arch} library "
                      f"({', '.join(info['isa_supported'])}, auto)")
    if not info["isa_supported"].get(forced, False):
        return None, f"{ISA_ENV}={forced} but this CPU does not support it"
    return forced, None


def status(cuda: bool = False) -> dict:
    """{available, path, reason, arch, isa, isa_supported, cuda, ort_api_version, ops, quantized_ops} for this
    machine (arch: the library's architecture).

    ops: every custom op the library registers (None for a library that does not list them);
    quantized_ops: those of them that also take quantized nodes (a quant_mode attribute); the others
    take float32 nodes only.
    """
    path = library_path(cuda)
    out = {"available": False, "path": str(path) if path else None, "reason": None, "arch": None, "isa": None,
           "isa_supported": None, "cuda": None, "ort_api_version": None, "ops": None, "quantized_ops": None}
    if path is None:
        out["reason"] = _missing_reason(cuda)
        return out
    try:
        info = json.loads(_load(path).qle_native_info().decode())
    except NativeLibraryError as e:
        out["reason"] = str(e)
        return out
    except (AttributeError, ValueError) as e:
        out["reason"] = f"{path} is not a qlstm_edge native op library: {e}"
        return out
    isa, why = _effective_isa(info)
    out.update(arch=info.get("arch", "x86_64"), isa=isa, isa_supported=info["isa_supported"], cuda=info["cuda"],
               ort_api_version=info["ort_api_version"], ops=info.get("ops"), quantized_ops=info.get("quantized_ops"))
    if why:
        out["reason"] = why
        return out
    out["available"] = True
    return out


def unsupported_nodes(model, st: dict) -> list:
    """Custom nodes of the model that the library described by ``st`` (``status()``) has no kernel for.

    onnxruntime checks a node against the registered op's signature, so a library registered on a session
    whose model has such a node (an op the library lacks is fine; a quantized node of a float32-only op is
    not) makes the model fail to load: run those models through the function bodies. Empty when the
    library does not list its ops, and for a file that is not an ONNX model (loading it reports that).
    Entries read "OpName (quant_mode int8)". ``model``: a file path, or an already parsed ModelProto.
    """
    ops, quantized = st.get("ops"), set(st.get("quantized_ops") or ())
    if ops is None:
        return []
    import onnx  # only when a model is checked

    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception:  # not a model (protobuf decode errors have no common type): the session load says so
            return []
    out = []
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type not in ops:
            continue
        mode = next((a.s.decode() for a in node.attribute if a.name == "quant_mode"), None)
        if mode is not None and node.op_type not in quantized:
            out.append(f"{node.op_type} (quant_mode {mode})")
    return sorted(set(out))


def register(session_options, cuda: bool = False) -> Path:
    """Register the library on an onnxruntime.SessionOptions; returns the library path."""
    st = status(cuda)
    if not st["available"]:
        raise NativeLibraryError(st["reason"])
    path = Path(st["path"])
    try:
        session_options.register_custom_ops_library(str(path))
    except Exception as e:
        raise NativeLibraryError(f"onnxruntime refused the native op library {path}: {e}") from None
    return path


def compute_calls() -> int:
    """How many times a native kernel ran in this process (0 when the library is not loaded)."""
    total = 0
    for lib in _loaded.values():
        total += int(lib.qle_native_compute_calls())
    return total
