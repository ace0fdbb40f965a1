"""The ``qlstm_edge`` metadata document carried by every exported ONNX file (DESIGN: "The ONNX contract").

It is all the runtime needs to stream a model: no Python model code is imported on the device.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np

METADATA_KEY = "qlstm_edge"
FORMAT = "qlstm_edge.onnx"
FORMAT_VERSION = 1
DOMAIN = "qlstm_edge"
DOMAIN_VERSION = 1

Dim = Union[int, str]


class MetadataError(ValueError):
    """An ONNX file whose qlstm_edge metadata is missing, malformed, too new or inconsistent."""


@dataclass
class TensorSpec:
    name: str
    shape: List[Dim]
    dtype: str
    range: Optional[List[int]] = None  # token ids: valid values are range[0] <= id < range[1]


@dataclass
class StateSpec:
    name: str
    input: str
    output: str
    shape: List[Dim]
    dtype: str = "float32"
    init: float = 0.0


@dataclass
class ModelMetadata:
    family: str
    mode: str  # "step" | "sequence"
    target: str  # "cpu" | "cuda"
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    states: List[StateSpec]
    toolkit_version: str
    custom_ops: List[str] = field(default_factory=list)
    quantization: Optional[Dict[str, Any]] = None
    config: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)  # family-specific facts (e.g. PR-LSTM stack depth)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    domain: str = DOMAIN
    domain_version: int = DOMAIN_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMetadata":
        """Parse and check the whole document: every field's type, shapes, dtypes, initial values, ranges and
        unique tensor names, so that a malformed file is refused here with a MetadataError naming the field."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise MetadataError(f"{source}: the {METADATA_KEY!r} metadata is not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise MetadataError(f"{source}: the {METADATA_KEY!r} metadata is not a qlstm-edge model description")
        version = d.get("format_version")
        if not _is_int(version) or version > FORMAT_VERSION:
            raise MetadataError(f"{source}: metadata format version {version!r} is newer than this runtime "
                                f"supports ({FORMAT_VERSION}); the file was written by qlstm-edge "
                                f"{d.get('toolkit_version', '?')}: upgrade qlstm-edge to run it")
        domain_version = d.get("domain_version", DOMAIN_VERSION)
        if not _is_int(domain_version) or domain_version < 1:
            raise MetadataError(f"{source}: metadata field 'domain_version' must be a positive integer, got "
                                f"{domain_version!r}")
        if domain_version > DOMAIN_VERSION:
            raise MetadataError(f"{source}: uses {DOMAIN} op-set version {domain_version}, this runtime knows "
                                f"up to {DOMAIN_VERSION}; upgrade qlstm-edge")
        try:
            _check_document(d)
        except MetadataError as e:
            raise MetadataError(f"{source}: malformed {METADATA_KEY!r} metadata: {e}") from None
        d["inputs"] = [TensorSpec(**t) for t in d["inputs"]]
        d["outputs"] = [TensorSpec(**t) for t in d["outputs"]]
        d["states"] = [StateSpec(**s) for s in d["states"]]
        return cls(**d)


DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8")  # the tensor types a qlstm-edge file streams
_TOP = {"family": str, "mode": str, "target": str, "inputs": list, "outputs": list, "states": list,
        "toolkit_version": str, "custom_ops": list, "quantization": (dict, type(None)), "config": dict,
        "extra": dict, "format": str, "format_version": int, "domain": str, "domain_version": int}
_REQUIRED = ("family", "mode", "target", "inputs", "outputs", "states", "toolkit_version")
_TENSOR = {"name": str, "shape": list, "dtype": str, "range": (list, type(None))}
_STATE = {"name": str, "input": str, "output": str, "shape": list, "dtype": str, "init": (int, float)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fields(d, types: dict, required, where: str) -> None:
    """``d`` is an object with only the keys of ``types``, each of its type, and every ``required`` key."""
    if not isinstance(d, dict):
        raise MetadataError(f"{where} must be an object, got {d!r}")
    unknown = sorted(set(d) - set(types))
    if unknown:
        raise MetadataError(f"{where} has unknown fields {unknown}")
    missing = [k for k in required if k not in d]
    if missing:
        raise MetadataError(f"{where} lacks the fields {missing}")
    for key, value in d.items():
        if isinstance(value, bool) or not isinstance(value, types[key]):  # JSON true/false are not numbers
            kind = types[key].__name__ if isinstance(types[key], type) else " or ".join(
                "null" if t is type(None) else t.__name__ for t in types[key])
            raise MetadataError(f"{where}.{key} must be {kind}, got {value!r}")


def _check_shape(shape: list, where: str) -> None:
    for k, dim in enumerate(shape):
        if not (_is_int(dim) and dim >= 0) and not (isinstance(dim, str) and dim):
            raise MetadataError(f"{where}.shape[{k}] must be a non-negative integer or a symbolic name, got {dim!r}")


def _check_tensor(t, where: str, lead: List[str], fixed_tail: bool) -> None:
    """A data input or output: leading symbolic ``lead`` axes (batch, and time in sequence files), then sizes (fixed
    ones only with ``fixed_tail``: the runtime allocates the output)."""
    _fields(t, _TENSOR, ("name", "shape", "dtype"), where)
    if not t["name"]:
        raise MetadataError(f"{where}.name must not be empty")
    _check_shape(t["shape"], where)
    if t["dtype"] not in DTYPES:
        raise MetadataError(f"{where}.dtype must be one of {list(DTYPES)}, got {t['dtype']!r}")
    shape = t["shape"]
    if len(shape) < len(lead) or shape[0] != "batch" or not all(isinstance(d, str) for d in shape[:len(lead)]):
        raise MetadataError(f"{where}.shape must start with the symbolic axes {lead}, got {shape}")
    if fixed_tail and not all(_is_int(d) for d in shape[len(lead):]):
        raise MetadataError(f"{where}.shape must be {lead} then fixed sizes, got {shape}")
    rng = t.get("range")
    if rng is not None:
        if len(rng) != 2 or not all(_is_int(v) for v in rng) or rng[0] >= rng[1]:
            raise MetadataError(f"{where}.range must be [lo, hi] with integers lo < hi, got {rng!r}")
        if t["dtype"] not in ("int64", "int32", "int8", "uint8"):
            raise MetadataError(f"{where}.range is for integer token ids, but the tensor is {t['dtype']}")


def _check_state(s, where: str) -> None:
    _fields(s, _STATE, ("name", "input", "output", "shape"), where)
    for key in ("name", "input", "output"):
        if not s[key]:
            raise MetadataError(f"{where}.{key} must not be empty")
    _check_shape(s["shape"], where)
    shape, dtype = s["shape"], s.get("dtype", "float32")
    if not shape or shape[0] != "batch" or not all(_is_int(d) for d in shape[1:]):
        raise MetadataError(f"{where}.shape must be ['batch', fixed sizes...], got {shape}")
    if dtype not in DTYPES:
        raise MetadataError(f"{where}.dtype must be one of {list(DTYPES)}, got {dtype!r}")
    init = s.get("init", 0.0)
    if np.dtype(dtype).kind == "f":
        info = np.finfo(dtype)
        ok = -float(info.max) <= init <= float(info.max)  # False for NaN and infinities too
    else:
        info = np.iinfo(dtype)
        ok = not (isinstance(init, float) and not init.is_integer()) and info.min <= init <= info.max
    if not ok:
        raise MetadataError(f"{where}.init {init!r} is not a finite value of its dtype {dtype}")


def _check_document(d: dict) -> None:
    _fields(d, _TOP, _REQUIRED, "metadata")
    if d["mode"] not in ("step", "sequence"):
        raise MetadataError(f"metadata.mode must be 'step' or 'sequence', got {d['mode']!r}")
    if len(d["inputs"]) != 1 or len(d["outputs"]) != 1:
        raise MetadataError("metadata must name exactly one data input and one data output")
    lead = ["batch", "time"] if d["mode"] == "sequence" else ["batch"]
    _check_tensor(d["inputs"][0], "inputs[0]", lead, fixed_tail=False)
    _check_tensor(d["outputs"][0], "outputs[0]", lead, fixed_tail=True)
    for k, s in enumerate(d["states"]):
        _check_state(s, f"states[{k}]")
    for k, op in enumerate(d.get("custom_ops", [])):
        if not isinstance(op, str):
            raise MetadataError(f"metadata.custom_ops[{k}] must be a string, got {op!r}")
    # names must be unique: the runtime keys states by name and feeds graph tensors by name
    for kind, names in (("state name", [s["name"] for s in d["states"]]),
                        ("graph input", [d["inputs"][0]["name"]] + [s["input"] for s in d["states"]]),
                        ("graph output", [d["outputs"][0]["name"]] + [s["output"] for s in d["states"]])):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise MetadataError(f"{kind}s must be unique, {twice} appear more than once")
