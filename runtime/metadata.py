"""The ``qlstm_edge`` metadata document carried by every exported ONNX file (DESIGN: "The ONNX contract").

It is all the runtime needs to stream a model: no Python model code is imported on the device.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Union

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
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise MetadataError(f"{source}: the {METADATA_KEY!r} metadata is not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise MetadataError(f"{source}: the {METADATA_KEY!r} metadata is not a qlstm-edge model description")
        version = d.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise MetadataError(f"{source}: metadata format version {version!r} is newer than this runtime "
                                f"supports ({FORMAT_VERSION}); the file was written by qlstm-edge "
                                f"{d.get('toolkit_version', '?')}: upgrade qlstm-edge to run it")
        if d.get("domain_version", DOMAIN_VERSION) > DOMAIN_VERSION:
            raise MetadataError(f"{source}: uses {DOMAIN} op-set version {d['domain_version']}, this runtime knows "
                                f"up to {DOMAIN_VERSION}; upgrade qlstm-edge")
        try:
            d["inputs"] = [TensorSpec(**t) for t in d["inputs"]]
            d["outputs"] = [TensorSpec(**t) for t in d["outputs"]]
            d["states"] = [StateSpec(**s) for s in d["states"]]
            meta = cls(**d)
        except (KeyError, TypeError) as e:
            raise MetadataError(f"{source}: malformed {METADATA_KEY!r} metadata ({e})") from None
        if meta.mode not in ("step", "sequence"):
            raise MetadataError(f"{source}: unknown mode {meta.mode!r} in metadata")
        if len(meta.inputs) != 1 or len(meta.outputs) != 1:
            raise MetadataError(f"{source}: metadata must name exactly one data input and one data output")
        return meta
