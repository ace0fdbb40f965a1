"""ONNX export: ``export_onnx(model, path, mode=..., target=...)`` for every registered model family."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import onnx
from torch import nn

from .._version import __version__
from ..checkpoint import load_checkpoint
from ..registry import family_of
from ..runtime.metadata import METADATA_KEY, ModelMetadata
from .._io import atomic_path
from .graph import DEFAULT_IR_VERSION, DEFAULT_OPSET, DOMAIN, GraphBuilder
from .recipe import MODES, ExportRecipe, Signature

TARGETS = ("cpu", "cuda")
MIN_OPSET = 17

__all__ = ["export_onnx", "build_onnx", "ExportRecipe", "Signature", "MODES", "TARGETS"]


def build_onnx(model: nn.Module, *, mode: str = "step", target: str = "cpu", opset: Optional[int] = None,
               ir_version: Optional[int] = None) -> onnx.ModelProto:
    """Build (and check) the ONNX model for ``model`` without writing it."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}, got {opset}")
    ir_version = DEFAULT_IR_VERSION if ir_version is None else int(ir_version)
    family = family_of(model)
    recipe = family.recipe()
    recipe.validate(model, mode)
    g = GraphBuilder()
    sig = recipe.build(model, g, mode, opset)
    proto = g.model(f"{family.name}_{mode}", opset, ir_version,
                    doc=f"{family.name} exported by qlstm-edge {__version__} ({mode} mode, target {target})")
    meta = ModelMetadata(family=family.name, mode=mode, target=target, inputs=sig.inputs, outputs=sig.outputs,
                         states=sig.states, toolkit_version=__version__, custom_ops=sorted(g.functions),
                         config=family.config_of(model), extra=dict(sig.extra))
    onnx.helper.set_model_props(proto, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Union[nn.Module, str, os.PathLike], path: Union[str, os.PathLike], *, mode: str = "step",
                target: str = "cpu", opset: Optional[int] = None, ir_version: Optional[int] = None) -> Path:
    """Export ``model`` (a module of a registered family, or a checkpoint path) to ``path``; atomic write.

    mode: "step" (one time step per call) or "sequence" (a chunk [B, T, ...] per call, T dynamic).
    target: "cpu" or "cuda" (recorded in the metadata; the same graph runs on both providers).
    """
    if not isinstance(model, nn.Module):
        model = load_checkpoint(model)
    was_training = model.training
    model.eval()
    try:
        proto = build_onnx(model, mode=mode, target=target, opset=opset, ir_version=ir_version)
    finally:
        model.train(was_training)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path
