"""Checkpoints: one safetensors file whose header metadata holds a JSON document (family, config).

Loading never executes pickle: safetensors is a flat tensor format, and a legacy ``.pt`` file is only
read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from . import families as _families  # noqa: F401  (registers the built-in families)
from ._io import atomic_path
from ._version import __version__
from .registry import family_of, get_family

FORMAT = "qlstm_edge.checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "qlstm_edge"

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A file that cannot be loaded as a qlstm-edge checkpoint; the message says why."""


def save_checkpoint(model: nn.Module, path: PathLike) -> Path:
    """Write ``model`` (a registered family) to ``path`` as safetensors + JSON header; atomic."""
    family = family_of(model)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": __version__,
           "family": family.name, "config": family.config_of(model)}
    # clone: tied weights (e.g. an LM head sharing the embedding) are separate tensors in the file
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(doc)})
    return path


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Return (header document, tensors) without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic[:2] == b"PK" or magic[:1] == b"\x80":
        return _read_torch_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a qlstm-edge checkpoint (not a readable safetensors file: {e})") from None
    if METADATA_KEY not in meta:
        raise CheckpointError(f"{path}: a safetensors file, but not a qlstm-edge checkpoint "
                              f"(no {METADATA_KEY!r} entry in its metadata)")
    try:
        doc = json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    return _check_doc(path, doc), tensors


def _read_torch_file(path: Path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for refused or corrupt files
        raise CheckpointError(f"{path}: not a loadable checkpoint: torch files are only read with "
                              f"weights_only=True and this one was refused ({type(e).__name__}: "
                              f"{str(e).splitlines()[0]})") from None
    if not (isinstance(obj, dict) and {"family", "config", "state_dict"} <= set(obj)):
        raise CheckpointError(f"{path}: a torch file, but not a qlstm-edge checkpoint (expected a dict with "
                              f"keys 'family', 'config', 'state_dict'); save models with save_checkpoint()")
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "family": obj["family"], "config": obj["config"]}
    return _check_doc(path, doc), dict(obj["state_dict"])


def _check_doc(path: Path, doc: Any) -> Dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a qlstm-edge checkpoint (metadata format is "
                              f"{doc.get('format') if isinstance(doc, dict) else doc!r}, expected {FORMAT!r})")
    version = doc.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: checkpoint has no integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is newer than this toolkit supports "
                              f"({FORMAT_VERSION}; toolkit {__version__}, file written by "
                              f"{doc.get('toolkit_version', 'unknown')}); upgrade qlstm-edge")
    for key in ("family", "config"):
        if key not in doc:
            raise CheckpointError(f"{path}: checkpoint metadata lacks {key!r}")
    return doc


def load_checkpoint(path: PathLike) -> nn.Module:
    """Build the model a checkpoint describes and load its tensors (strict names, shapes and dtypes)."""
    doc, tensors = read_checkpoint(path)
    try:
        family = get_family(doc["family"])
    except KeyError as e:
        raise CheckpointError(f"{path}: {e}") from None
    try:
        model = family.build(doc["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid {family.name} config: {e}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = ([f"missing tensors {missing}"] if missing else []) + (
            [f"unexpected tensors {unexpected}"] if unexpected else [])
        raise CheckpointError(f"{path}: tensors do not match the {family.name} config: " + "; ".join(parts))
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {list(got.shape)}, the config implies "
                                  f"{list(ref.shape)}")
        if got.dtype != ref.dtype:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {got.dtype}, expected {ref.dtype}")
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model
