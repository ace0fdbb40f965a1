"""Building and writing the ONNX file of a model of a registered family (needs torch: the ``export`` extra)."""
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
from .graph import DEFAULT_IR_VERSION, DEFAULT_OPSET, GraphBuilder
from .quantize import DEFAULT_BLOCK_SIZE, QuantizationError, Quantizer
from .recipe import MODES

TARGETS = ("cpu", "cuda")


def build_onnx(model: nn.Module, *, mode: str = "step", target: str = "cpu", opset: Optional[int] = None,
               ir_version: Optional[int] = None, quantize: Optional[str] = None,
               block_size: int = DEFAULT_BLOCK_SIZE, io_dtype: str = "float32") -> onnx.ModelProto:
    """Build (and check) the ONNX model for ``model`` without writing it."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    quant = Quantizer(quantize, block_size=block_size, io_dtype=io_dtype)
    family = family_of(model)
    recipe = family.recipe()
    opset = max(DEFAULT_OPSET, recipe.min_opset, quant.min_opset) if opset is None else int(opset)
    if not recipe.min_opset <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be between {recipe.min_opset} and {onnx.defs.onnx_opset_version()}, got {opset}")
    ir_version = max(DEFAULT_IR_VERSION, quant.min_ir_version) if ir_version is None else int(ir_version)
    if opset < quant.min_opset or ir_version < quant.min_ir_version:
        raise QuantizationError(f"quantize={quant.mode!r} needs opset >= {quant.min_opset} and IR version >= "
                                f"{quant.min_ir_version} (int4 unpacks its packed weights with BitwiseAnd), got opset "
                                f"{opset}, IR version {ir_version}")
    recipe.validate(model, mode)
    supported = tuple(recipe.quantization_modes)
    if not quant.unquantized and quant.mode not in supported:
        raise QuantizationError(f"family {family.name!r} does not support quantize={quant.mode!r} yet "
                                f"(supported: {', '.join(supported) or 'none'})")
    g = GraphBuilder(quant=quant)
    sig = recipe.build(model, g, mode, opset)
    proto = g.model(f"{family.name}_{mode}", opset, ir_version,
                    doc=f"{family.name} exported by qlstm-edge {__version__} ({mode} mode, target {target}"
                        + (f", {quant.mode}" if quant.mode else "") + ")")
    meta = ModelMetadata(family=family.name, mode=mode, target=target, inputs=sig.inputs, outputs=sig.outputs,
                         states=sig.states, toolkit_version=__version__, custom_ops=sorted(g.functions),
                         quantization=quant.recipe(), config=family.config_of(model), extra=dict(sig.extra))
    onnx.helper.set_model_props(proto, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Union[nn.Module, str, os.PathLike], path: Union[str, os.PathLike], *, mode: str = "step",
                target: str = "cpu", opset: Optional[int] = None, ir_version: Optional[int] = None,
                quantize: Optional[str] = None, block_size: int = DEFAULT_BLOCK_SIZE,
                io_dtype: str = "float32") -> Path:
    """Export ``model`` (a module of a registered family, or a checkpoint path) to ``path``; atomic write.

    mode: "step" (one time step per call) or "sequence" (a chunk [B, T, ...] per call, T dynamic).
    target: "cpu" or "cuda" (recorded in the metadata; the same graph runs on both providers).
    quantize: None (fp32), "fp16" (meant for target "cuda"), "int8" (weight-only, per output channel),
    "int8-dynamic" (int8 weights and per-row dynamic int8 activations) or "int4" (weight-only, blocks of
    ``block_size`` along the input axis, packed two per byte; written with opset 18 / IR 8: onnxruntime >= 1.15).
    io_dtype: "float16" makes a float data input and the output float16 (fp16 only); states stay float32.
    The recipe goes in the metadata (``quantization``); exporters/quantize.py documents the op contract.
    """
    if not isinstance(model, nn.Module):
        if Path(path).exists() and os.path.samefile(model, path):
            raise ValueError(f"export_onnx: the output {path} is the checkpoint it exports ({model}); writing it "
                             f"would destroy the checkpoint: choose another output path")
        model = load_checkpoint(model)
    was_training = model.training
    model.eval()
    try:
        proto = build_onnx(model, mode=mode, target=target, opset=opset, ir_version=ir_version, quantize=quantize,
                           block_size=block_size, io_dtype=io_dtype)
    finally:
        model.train(was_training)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path
