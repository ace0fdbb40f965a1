"""Standard-op layers of xLSTM blocks: projections (dense and head-wise), norms, activations, soft-caps and the
causal conv1d, on tensors [B, D] (step) or [B, T, D] (sequence).

Quantization (exporters/quantize.py has the op contract):
    Quantized matrices: the sLSTM ops' R; every dense projection (mLSTM proj_up, proj_down and i/f gates, the
    FFN, xLSTMLarge's q/k/v/o, i/f gates and out_proj, the LM head); the head-wise (block-diagonal) projections
    (mLSTM q/k/v, sLSTM gate inputs), stored per block as stacked matrices [G, NH, in/NH, out/NH] (int4: packed
    two per byte, Quantizer.stacked_weight); the embeddings. Biases, norm scales, the learnable skip and the
    depthwise conv taps [KS, D] (element-wise) stay float32. The block ops (block_ops.py) store the same matrices
    as op inputs: the sLSTM block op its stacked head-wise gate weights and R, proj_up and proj_down.
    fp16 runs every matrix product in float16 (its input cast, its result cast back); biases are added, and
    norms, gates, recurrences, soft-caps and the residual stream computed, in float32.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import onnx
import torch

from ...exporters.graph import GraphBuilder
from ...exporters.quantize import stacked_scale
from ...exporters.recipe import f32
from .cells import mlstm_cell_function, mlstm_sequence_function, slstm_cell_function, slstm_sequence_function
from .block_ops import (ffn_activation, large_block_function, large_block_sequence_function, mlstm_block_function,
                        mlstm_block_sequence_function, silu, slstm_block_function, slstm_block_sequence_function)
from .ops import (LARGE_BLOCK, LARGE_BLOCK_SEQUENCE, MLSTM_BLOCK, MLSTM_BLOCK_SEQUENCE, MLSTM_CELL, MLSTM_SEQUENCE,
                  SLSTM_BLOCK, SLSTM_BLOCK_SEQUENCE, SLSTM_CELL, SLSTM_SEQUENCE)

SMALL_HEAD = 16  # head-wise projections with at most this many inputs per head use Mul + ReduceSum


class Net:
    """Builds the standard-op parts of a block on tensors [B, D] (step) or [B, T, D] (sequence)."""

    def __init__(self, g: GraphBuilder, mode: str, opset: int):
        self.g, self.mode, self.opset = g, mode, opset
        self.seq = mode == "sequence"
        self.lead = [0, 0] if self.seq else [0]  # Reshape: keep batch (and time)
        self.q = g.quant
        self._functions: Dict[str, onnx.FunctionProto] = {}
        self._compute: Dict[str, str] = {}
        self.ffn_act: Optional[str] = None  # the FFN activation the sLSTM block op's body computes (one a model)

    def function(self, name: str) -> onnx.FunctionProto:
        if name not in self._functions:
            make = {SLSTM_CELL.name: lambda: slstm_cell_function(self.opset, self.q),
                    SLSTM_SEQUENCE.name: lambda: slstm_sequence_function(self.opset, self.q),
                    MLSTM_CELL.name: lambda: mlstm_cell_function(self.opset),  # no weights: the same in every mode
                    MLSTM_SEQUENCE.name: lambda: mlstm_sequence_function(self.opset),
                    LARGE_BLOCK.name: lambda: large_block_function(self.opset, self.q),
                    LARGE_BLOCK_SEQUENCE.name: lambda: large_block_sequence_function(self.opset, self.q),
                    MLSTM_BLOCK.name: lambda: mlstm_block_function(self.opset, self.q),
                    MLSTM_BLOCK_SEQUENCE.name: lambda: mlstm_block_sequence_function(self.opset, self.q),
                    SLSTM_BLOCK.name: lambda: slstm_block_function(self.opset, self.q, self.ffn_act),
                    SLSTM_BLOCK_SEQUENCE.name: lambda: slstm_block_sequence_function(self.opset, self.q,
                                                                                     self.ffn_act)}[name]
            self._functions[name] = make()
            self.g.functions.setdefault(name, self._functions[name])
        return self._functions[name]

    def param(self, name: str, array: np.ndarray) -> str:
        """A float32 parameter (norm scales, biases, conv taps, constants): float32 in every mode."""
        return self.q.param(self.g, name, array, "float32")

    def scalar(self, name: str, value: float) -> str:
        return self.param(name, np.array(value, np.float32))

    def compute(self, x: str) -> str:
        """float32 ``x`` in the compute dtype (one Cast per tensor in fp16 mode, shared by its consumers)."""
        if x not in self._compute:
            self._compute[x] = self.q.to_compute(self.g, x)
        return self._compute[x]

    def linear(self, x: str, weight: torch.Tensor, bias: Optional[torch.Tensor], name: str) -> str:
        """x @ weight^T + bias: the product as ``q.linear`` computes it, the bias added in float32 (biases stay
        float32: in fp16 a float16 sum would round gate pre-activations with large biases, such as the mLSTM
        forget gates' 3..6, to float16's step before the exponential gates); float32 in and out."""
        q = self.q
        y = q.to_float32(self.g, q.linear(self.g, name, self.compute(x), f32(weight).T, None, self.opset))
        if bias is None:
            return y
        return self.g.op("Add", [y, self.param(f"{name}.bias", f32(bias))], name=name)

    def lm_head(self, x: str, weight: torch.Tensor, out: Optional[str] = None) -> str:
        """Logits x @ weight^T (no bias) in the compute dtype (fp32: one MatMul node named ``lm_head``)."""
        q, g = self.q, self.g
        if q.unquantized:
            return g.op("MatMul", [x, g.weight("lm_head.weight_t", f32(weight).T)], [out] if out else 1,
                        name="lm_head")
        return q.linear(g, "lm_head", self.compute(x), f32(weight).T, None, self.opset, out=out)

    def headwise(self, pairs: List[tuple], name: str) -> str:
        """xlstm's LinearHeadwiseExpand for G projections of the same shape at once: ``pairs`` = [(x_g, proj_g)],
        each x_g_h @ W_g_h^T per head h (a block-diagonal product) plus its bias; returns [..., G * out], the
        G outputs concatenated in order.

        One product for all G: the inputs' heads are stacked against the weights [G, NH, in/NH, out/NH] (each
        output element the same sum as one projection alone would compute): one node instead of G projections
        and their Concat. Large heads (> SMALL_HEAD inputs) as a batched MatMul of
        [..., G, NH, 1, in/NH]. Small heads (the mLSTM's q/k/v use blocks of 4), where onnxruntime's batched
        MatMul pays per head, as a Mul [..., 1, G, NH, in/NH] x [out/NH, G, NH, in/NH] and a ReduceSum over the
        head's inputs: the broadcast is along the outermost axis, so the Mul runs over long contiguous rows rather
        than rows of in/NH; a Transpose puts the outputs back in head order.
        Quantized: the weights are stacked matrices [G, NH, in/NH, out/NH] (``Quantizer.stacked_weight``:
        float32 in the weight-only modes, dequantized by ops onnxruntime folds when it loads the file); fp16 and
        int8-dynamic (which quantizes each head's input row on the fly) use the batched MatMul.
        """
        q, g = self.q, self.g
        w = np.stack([f32(proj.weight) for _, proj in pairs])  # [G, NH, out/NH, in/NH]
        _, nh, _, d_in = w.shape
        lead = len(self.lead)
        small = d_in <= SMALL_HEAD and q.scheme.product_weight_dtype == "float32"
        head_shape, axis = ([1, 1, nh, d_in], lead + 1) if small else ([1, nh, 1, d_in], lead)
        heads = {}
        for x, _ in pairs:
            if x not in heads:
                heads[x] = g.op("Reshape", [x, g.ints(self.lead + head_shape)], name=f"{name}.heads{len(heads)}")
        stacked = g.op("Concat", [heads[x] for x, _ in pairs], name=f"{name}.stacked", axis=axis)
        scale = None
        if q.unquantized:
            w_heads = (self.param(f"{name}.weight", w.transpose(2, 0, 1, 3)) if small
                       else self.param(f"{name}.weight_t", w.transpose(0, 1, 3, 2)))
        else:
            w_heads, scale = q.stacked_weight(g, f"{name}.weight_t", w.transpose(0, 1, 3, 2))
            if small:
                w_heads = g.op("Transpose", [w_heads], name=f"{name}.weight", perm=[3, 0, 1, 2])
        if small:
            prod = g.op("Mul", [stacked, w_heads], name=f"{name}.Mul")  # [..., out/NH, G, NH, in/NH]
            y = g.op("ReduceSum", [prod, g.ints([-1])], name=f"{name}.ReduceSum", keepdims=0)
            y = g.op("Transpose", [y], name=f"{name}.head_order", perm=[*range(lead), lead + 1, lead + 2, lead])
        else:
            scale = stacked_scale(g, scale, f"{name}.scale") if q.dynamic else None
            y = q.body_matmul(g, stacked, w_heads, scale, self.opset, name=f"{name}.MatMul")
        y = g.op("Reshape", [y, g.ints(self.lead + [-1])], name=f"{name}.merge")
        if all(proj.bias is None for _, proj in pairs):
            return y
        bias = np.concatenate([np.zeros(proj.weight.shape[0] * proj.weight.shape[1], np.float32) if proj.bias is None
                               else f32(proj.bias) for _, proj in pairs])  # a missing bias adds zeros: the same values
        return self.g.op("Add", [y, self.param(f"{name}.bias", bias)], name=name)

    def split(self, x: str, sizes: List[int], name: str) -> List[str]:
        return self.g.op("Split", [x, self.g.ints(sizes)], len(sizes), name=name, axis=-1)

    def to_heads(self, x: str, nh: int, dh: int, name: str) -> str:
        return self.g.op("Reshape", [x, self.g.ints(self.lead + [nh, dh])], name=name)

    def merge_heads(self, x: str, name: str) -> str:
        return self.g.op("Reshape", [x, self.g.ints(self.lead + [-1])], name=name)

    def layer_norm(self, x: str, norm, name: str) -> str:
        """xlstm's LayerNorm (scale 1 + weight when residual_weight, optional bias)."""
        scale = norm.weight_proxy
        scale = np.ones(norm.ndim, np.float32) if scale is None else f32(scale)
        bias = np.zeros(norm.ndim, np.float32) if norm.bias is None else f32(norm.bias)
        # the bias input is always given (zeros: the same values): onnxruntime 1.15's AttentionFusion reads a
        # LayerNormalization's third input unchecked and aborts the process when one with several consumers has none
        return self.g.op("LayerNormalization", [x, self.param(f"{name}.scale", scale), self.param(f"{name}.bias", bias)],
                         name=name, axis=-1, epsilon=float(norm.eps))

    def head_norm(self, x: str, dh: int, scale: Optional[np.ndarray], bias: Optional[np.ndarray], eps: float,
                  name: str) -> str:
        """Layer norm of each head of x [..., NH, DH] over DH, then a per-channel scale/bias on [..., NH*DH]."""
        y = self.g.op("LayerNormalization", [x, self.param(f"{name}.ones", np.ones(dh, np.float32)),
                                             self.param(f"{name}.zeros", np.zeros(dh, np.float32))],
                      name=f"{name}.normalize", axis=-1, epsilon=float(eps))  # the bias: as layer_norm says
        y = self.merge_heads(y, f"{name}.merge")
        if scale is not None:
            y = self.g.op("Mul", [y, self.param(f"{name}.scale", scale)], name=f"{name}.scaled")
        if bias is not None:
            y = self.g.op("Add", [y, self.param(f"{name}.bias", bias)], name=f"{name}.shifted")
        return y

    def rms_norm(self, x: str, norm, name: str) -> str:
        """xLSTMLarge's RMSNorm: x / sqrt(mean(x^2) + eps) * weight (+ bias)."""
        sq = self.g.op("Pow", [x, self.scalar(f"{name}.two", 2.0)], name=f"{name}.square")
        ms = self.g.reduce("ReduceMean", sq, -1, 1, self.opset, name=f"{name}.mean")
        rms = self.g.op("Sqrt", [self.g.op("Add", [ms, self.scalar(f"{name}.eps", norm.eps)], name=f"{name}.eps_add")],
                        name=f"{name}.rms")
        y = self.g.op("Div", [x, rms], name=f"{name}.normalize")
        if norm.weight is not None:
            y = self.g.op("Mul", [y, self.param(f"{name}.weight", f32(norm.weight))], name=f"{name}.scaled")
        if norm.bias is not None:
            y = self.g.op("Add", [y, self.param(f"{name}.bias", f32(norm.bias))], name=f"{name}.shifted")
        return y

    def silu(self, x: str, name: str) -> str:
        return silu(self.g, x, name)

    def activation(self, kind: str, x: str, name: str) -> str:
        """The activations of xlstm's GatedFeedForward registry (block_ops.ffn_activation)."""
        return ffn_activation(self.g, lambda v, n: self.scalar(n, v), kind, x, name)

    def soft_cap(self, x: str, cap: Optional[float], name: str) -> str:
        if cap is None:
            return x
        c = self.scalar(f"{name}.cap", cap)
        return self.g.op("Mul", [c, self.g.op("Tanh", [self.g.op("Div", [x, c], name=f"{name}.div")],
                                             name=f"{name}.tanh")], name=name)

    def causal_conv(self, x: str, conv, state_in: str, state_out: str, name: str) -> str:
        """Depthwise causal conv1d with its state (the last KS inputs, oldest first), as the package's step."""
        g = self.g
        w = f32(conv.weight[:, 0, :]).T  # [KS, D]: w[j] weights x_{t-KS+1+j}
        ks = w.shape[0]
        if self.seq:  # window t of cat(state, x) is rows t+1 .. t+KS
            ext = g.op("Concat", [state_in, x], name=f"{name}.window", axis=1)  # [B, KS+T, D]
            g.op("Slice", [ext, g.ints([-ks]), g.ints([2 ** 62]), g.ints([1])], [state_out], name=f"{name}.state")
            terms = []
            for j in range(ks):
                end = -(ks - 1 - j) if j < ks - 1 else 2 ** 62
                rows = g.op("Slice", [ext, g.ints([1 + j]), g.ints([end]), g.ints([1])], name=f"{name}.tap{j}")
                terms.append(g.op("Mul", [rows, self.param(f"{name}.w{j}", w[j])], name=f"{name}.wx{j}"))
            y = terms[0]
            for j, t in enumerate(terms[1:], 1):
                y = g.op("Add", [y, t], name=f"{name}.sum{j}")
        else:
            kept = g.op("Slice", [state_in, g.ints([1]), g.ints([ks]), g.ints([1])], name=f"{name}.shift")
            new = g.op("Concat", [kept, g.op("Unsqueeze", [x, g.ints([1])], name=f"{name}.x_row")], [state_out],
                       name=f"{name}.state", axis=1)
            y = g.op("ReduceSum", [g.op("Mul", [new, self.param(f"{name}.weight", w)], name=f"{name}.wx"),
                                   g.ints([1])], name=f"{name}.sum", keepdims=0)
        if conv.bias is None:
            return y
        return g.op("Add", [y, self.param(f"{name}.bias", f32(conv.bias))], name=name)
