"""Checkpoints: one safetensors file whose header metadata holds a JSON document (family, config).

Loading never executes pickle: safetensors is a flat tensor format, and a legacy ``.pt`` file is only
read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.nn.modules.module import register_module_buffer_registration_hook, \
    register_module_parameter_registration_hook

from ._io import atomic_path
from ._version import __version__
from .registry import family_of, get_family

FORMAT = "qlstm_edge.checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "qlstm_edge"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header

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
    # safetensors' save_file writes its own temporary file and renames it over the path it is given, which
    # would replace a device or FIFO that atomic_path writes in place: serialise, then write here
    with atomic_path(path) as target:
        data = save(tensors, metadata={METADATA_KEY: json.dumps(doc)})
        with open(target, "wb") as fh:
            fh.write(data)
    return path


def _has_safetensors_layout(path: Path) -> bool:
    """Whether ``path`` is laid out as a safetensors file: an 8-byte little-endian header length N that fits in
    the file (and safetensors' limit), then N bytes holding a JSON object. Every file safetensors writes has it;
    a torch file (a zip, or a pickle) does not, as its bytes after the first 8 are no JSON object. The first
    byte alone cannot tell them apart: it is the header length's low byte, 0x80 (a pickle's first byte) for one
    header length in 256."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return False
        size = os.fstat(fh.fileno()).st_size
        length = int.from_bytes(head, "little")
        if not 2 <= length <= min(size - 8, MAX_HEADER_BYTES) or fh.read(1) != b"{":
            return False
        fh.seek(8)
        try:
            header = json.loads(fh.read(length))
        except ValueError:  # not UTF-8, or not JSON
            return False
    return isinstance(header, dict)


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Return (header document, tensors) without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not _has_safetensors_layout(path):
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == b"PK" or magic[:1] == b"\x80":
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


class _SkipInit(TorchFunctionMode):
    """For meta builds: weight initialisers (``torch.nn.init``, ``Tensor.normal_`` and the other random fills)
    return their tensor untouched. On meta tensors they compute nothing anyway, but the first call loads the
    meta kernels' Python decompositions, sympy included, which are slow to import."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init" or getattr(func, "__name__", None) in _RANDOM_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


_RANDOM_FILLS = {"normal_", "uniform_", "bernoulli_", "cauchy_", "exponential_", "geometric_", "log_normal_",
                 "random_"}


class _TooManyTensors(Exception):
    """Raised inside a meta build that registers more tensors than the file could match."""


def _expected_tensors(path: Path, family, config: Any, available: int) -> Dict[str, torch.Tensor]:
    """The state_dict of the model ``config`` describes, built on the meta device: names, shapes and dtypes,
    with no storage allocated and no weights initialised (:class:`_SkipInit`), so a small file whose config
    describes a huge model costs nothing. The build is stopped once it has registered more than
    ``4 * available + 256`` parameters and buffers (``available``: the tensors the file holds), so that a config
    of a million layers is refused before its million module objects are made; a model that matches the file
    registers about ``available``."""
    limit = 4 * available + 256
    thread = threading.get_ident()
    registered = 0

    def count(module, name, value):
        nonlocal registered
        if threading.get_ident() == thread:
            registered += 1
            if registered > limit:
                raise _TooManyTensors

    hooks = [register_module_parameter_registration_hook(count), register_module_buffer_registration_hook(count)]
    try:
        with torch.device("meta"), _SkipInit():
            model = family.build(config)
    except _TooManyTensors:
        raise CheckpointError(f"{path}: the {family.name} config describes a model of more than {limit} "
                              f"tensors, the file holds {available}") from None
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid {family.name} config: {e}") from None
    finally:
        for hook in hooks:
            hook.remove()
    return model.state_dict()


def load_checkpoint(path: PathLike) -> nn.Module:
    """Build the model a checkpoint describes and load its tensors (strict names, shapes and dtypes).

    The tensors are checked against the config (on a model built on the meta device) before the model is
    built for real, so a refused file never costs the memory or time of the model its config describes.
    """
    doc, tensors = read_checkpoint(path)
    try:
        family = get_family(doc["family"])
    except KeyError as e:
        raise CheckpointError(f"{path}: {e}") from None
    not_tensors = sorted(k for k, v in tensors.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: entries {not_tensors} of the state dict are not tensors")
    expected = _expected_tensors(Path(path), family, doc["config"], len(tensors))
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
    try:
        model = family.build(doc["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid {family.name} config: {e}") from None
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model
