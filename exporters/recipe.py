"""The per-family export recipe interface: which nodes, which state, and the PyTorch reference for parity."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..runtime.metadata import StateSpec, TensorSpec
from .graph import DEFAULT_OPSET, GraphBuilder

MODES = ("step", "sequence")


@dataclass
class Signature:
    """What a recipe declared on the graph; becomes the metadata document."""

    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    states: List[StateSpec]
    extra: Dict[str, object] = field(default_factory=dict)


class ExportRecipe:
    """Subclass per family. ``build`` adds the graph; ``reference`` runs the PyTorch model over a chunk.

    Class attributes declare what the family supports; the exporter and the parity check read them:
    ``quantization_modes``: the ``quantize`` modes it exports (none: fp32 only);
    ``quantization_tolerances``: parity tolerances per mode where the family's measurements need their own
    (qlstm_edge.parity.TOLERANCES otherwise); ``min_opset``: the lowest ONNX opset its graphs are written for.
    """

    quantization_modes: Tuple[str, ...] = ()
    quantization_tolerances: Dict[str, float] = {}
    min_opset: int = DEFAULT_OPSET

    def build(self, model: nn.Module, g: GraphBuilder, mode: str, opset: int) -> Signature:
        raise NotImplementedError

    def reference(self, model: nn.Module, x: torch.Tensor,
                  state: Optional[Dict[str, np.ndarray]]) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Run ``x`` ([B, T, ...], batch first) from ``state`` (None: the initial state) in PyTorch.

        Returns the per-step outputs [B, T, ...] and the final state, keyed by metadata state name.
        """
        raise NotImplementedError

    def validate(self, model: nn.Module, mode: str) -> None:
        """Raise ValueError if this model cannot be exported in ``mode``."""

    @staticmethod
    def data_io(g: GraphBuilder, mode: str, in_shape: List, in_dtype: str, out_shape: List,
                in_range: Optional[List[int]] = None) -> Tuple[TensorSpec, TensorSpec]:
        """Declare the data input ``x`` and output ``y``; sequence mode adds the dynamic time axis."""
        time = ["time"] if mode == "sequence" else []
        x = TensorSpec("x", ["batch", *time, *in_shape], in_dtype, in_range)
        y = TensorSpec("y", ["batch", *time, *out_shape], "float32")
        g.input(x.name, x.dtype, x.shape)
        return x, y

    @staticmethod
    def state_io(g: GraphBuilder, name: str, shape: List, dtype: str = "float32", init: float = 0.0) -> StateSpec:
        spec = StateSpec(name, f"{name}.in", f"{name}.out", ["batch", *shape], dtype, init)
        g.input(spec.input, dtype, spec.shape)
        return spec


def f32(t: torch.Tensor) -> np.ndarray:
    """A parameter as a float32 numpy array (what graphs store before any quantization)."""
    return t.detach().cpu().numpy().astype(np.float32)


class CoreIO:
    """A bare recurrent core: feature vectors in, the last layer's hidden state out (mixed into recipes)."""

    def input_spec(self, model, g: GraphBuilder, mode: str):
        return ExportRecipe.data_io(g, mode, [model.input_size], g.quant.io_dtype, [model.hidden_size])

    def embed(self, model, g: GraphBuilder, x: str, opset: int) -> str:
        return g.quant.from_io(g, x)

    def head(self, model, g: GraphBuilder, h: str, y: str, opset: int) -> None:
        g.quant.to_io(g, h, y, compute=False)

    def run_torch(self, model, x, state):
        return model(x, state)


class SequenceModelIO:
    """Export of the shared input map and head of ``families.common.SequenceModel`` (mixed into recipes)."""

    def input_spec(self, model, g: GraphBuilder, mode: str):
        cfg = model.config
        if cfg.vocab_size is not None:
            return ExportRecipe.data_io(g, mode, [], "int64", [cfg.output_size], in_range=[0, cfg.vocab_size])
        return ExportRecipe.data_io(g, mode, [cfg.input_size], g.quant.io_dtype, [cfg.output_size])

    def embed(self, model, g: GraphBuilder, x: str, opset: int) -> str:
        q = g.quant
        if model.config.vocab_size is not None:
            return q.embedding(g, "embedding", f32(model.embedding.weight), x)
        return q.linear(g, "input_map", q.from_io(g, x), f32(model.input_map.weight).T, f32(model.input_map.bias),
                        opset)

    def head(self, model, g: GraphBuilder, h: str, y: str, opset: int) -> None:
        q = g.quant
        direct = q.compute_dtype == q.io_dtype
        out = q.linear(g, "head", q.to_compute(g, h), f32(model.head.weight).T, f32(model.head.bias), opset,
                       out=y if direct else None)
        if not direct:
            q.to_io(g, out, y)
