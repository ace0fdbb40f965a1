"""Function bodies of the xLSTM block ops (ops.py): standard ops around the cell op, which stays one nested node.

xLSTMLargeBlock / xLSTMLargeBlockSequence (x [B, E] or [B, T, E]; the package's mLSTMBlock of xLSTMLarge):
    xn  = rms(x) * norm_mlstm_weight + norm_mlstm_bias            rms(v) = v / sqrt(mean(v^2) + norm_eps)
                                                                  (norm_eps: the node's float attribute)
    q, k, v, o = split(xn @ W_qkvo + b_qkvo, [QK, QK, V, V])
    i, f = split(cap(xn @ W_if + b_if), [NH, NH])                 cap(g) = c tanh(g / c), c = gate_soft_cap
                                                                  (gate_soft_cap 0: no cap, g itself)
    h, C', n', m' = mLSTMCell / mLSTMSequence(q, k, v per head, i, f, C, n, m, q_scale, 1, eps)
    hn  = layer_norm(h per head, norm_eps) * head_norm_weight + head_norm_bias
    x1  = x + (sigmoid(o) hn) @ W_out + b_out
    gate, z = split(rms(x1) * norm_ffn_weight + norm_ffn_bias) @ W_up + b_up, [U, U])
    y   = x1 + (silu(gate) z) @ W_down + b_down
NH, DK and DV come from the state C [B, NH, DK, DV]; QK = NH DK, V = NH DV.

Quantization (exporters/quantize.py has the op contract): the five matrices are stored per mode, their scales
appended in the order W_qkvo, W_if, W_out, W_up, W_down in the integer modes; the products run with the mode's
arithmetic (``Quantizer.body_matmul``: fp16 rounds the normed input and the product to float16, int8-dynamic
quantizes each row of the product's input). x, the norms, gates, biases, the residual stream and the states are
float32 in every mode (the mLSTM cell's reasons, cells.py).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...exporters.graph import FunctionBuilder, op_function
from ...exporters.quantize import Quantizer
from ...runtime.metadata import DOMAIN, DOMAIN_VERSION
from .ops import LARGE_BLOCK, LARGE_BLOCK_MATRICES, NORM_EPS, LARGE_BLOCK_SEQUENCE, MLSTM_CELL, MLSTM_SEQUENCE


def _rms_norm(fb: FunctionBuilder, x: str, weight: str, bias: str, opset: int, name: str) -> str:
    """x / sqrt(mean(x^2) + norm_eps) * weight + bias, in the ops of the standard-op RMSNorm (layers.Net.rms_norm),
    which onnxruntime fuses into one node."""
    sq = fb.op("Pow", [x, fb.const(2.0, x)], name=f"{name}.square")
    ms = fb.reduce("ReduceMean", sq, -1, 1, opset, name=f"{name}.mean")
    eps = _with_norm_eps(fb, fb.op("Constant", [], name=f"{name}.eps"), "value_float")
    rms = fb.op("Sqrt", [fb.op("Add", [ms, eps], name=f"{name}.eps_add")], name=f"{name}.rms")
    y = fb.op("Mul", [fb.op("Div", [x, rms], name=f"{name}.normalize"), weight], name=f"{name}.scaled")
    return fb.op("Add", [y, bias], name=f"{name}.shifted")


def _head_norm(fb: FunctionBuilder, h: str, merged_shape: str, dv: str) -> str:
    """Layer norm of each head of h [..., NH, DV] over DV (epsilon norm_eps), merged to [..., V], then scaled and
    shifted: the standard-op head norm's nodes (layers.Net.head_norm)."""
    ones = fb.op("ConstantOfShape", [dv], name="head_norm.ones", value=numpy_helper.from_array(np.ones(1, np.float32)))
    zeros = fb.op("ConstantOfShape", [dv], name="head_norm.zeros",
                  value=numpy_helper.from_array(np.zeros(1, np.float32)))
    y = _with_norm_eps(fb, fb.op("LayerNormalization", [h, ones, zeros], name="head_norm.normalize", axis=-1),
                       "epsilon")
    y = fb.op("Mul", [fb.op("Reshape", [y, merged_shape], name="head_norm.merge"), "head_norm_weight"],
              name="head_norm.scaled")
    return fb.op("Add", [y, "head_norm_bias"], name="head_norm.shifted")


def _with_norm_eps(fb: FunctionBuilder, value: str, attribute: str) -> str:
    """The node that made ``value`` (the last one added) given ``attribute`` = the op's attribute norm_eps."""
    ref = helper.make_attribute_ref(attribute, onnx.AttributeProto.FLOAT)
    ref.ref_attr_name = NORM_EPS
    fb.nodes[-1].attribute.append(ref)
    return value


def _soft_cap(fb: FunctionBuilder, g: str) -> str:
    """gate_soft_cap tanh(g / gate_soft_cap), or g where gate_soft_cap is 0 (the model has no cap)."""
    capped = fb.op("Mul", ["gate_soft_cap", fb.op("Tanh", [fb.op("Div", [g, "gate_soft_cap"], name="gate_cap.div")],
                                                  name="gate_cap.tanh")], name="gate_cap.capped")
    uncapped = fb.op("Equal", ["gate_soft_cap", fb.const(0.0, g)], name="gate_cap.none")
    return fb.op("Where", [uncapped, g, capped], name="gate_cap")


def _dims(fb: FunctionBuilder, state: str):
    """NH, DK, DV (1-d int64 tensors of one element) from the state C [B, NH, DK, DV]."""
    shape = fb.op("Shape", [state], name="C_shape")
    return [fb.op("Slice", [shape, fb.ints([a]), fb.ints([a + 1])], name=n) for a, n in ((1, "NH"), (2, "DK"),
                                                                                        (3, "DV"))]


def _split_at(fb: FunctionBuilder, x: str, sizes, name: str):
    """``x`` cut along its last axis into parts of ``sizes`` (1-d int64 tensors) and the rest: Slices, not a Split,
    whose computed sizes would leave onnxruntime without the parts' ranks (a Scan that reads them then fails)."""
    axis, bounds, end = fb.ints([-1]), [fb.ints([0])], fb.ints([2 ** 62])
    for j, size in enumerate(sizes):
        bounds.append(fb.op("Add", [bounds[-1], size], name=f"{name}_end{j}"))
    return [fb.op("Slice", [x, lo, hi, axis], name=f"{name}_part{j}")
            for j, (lo, hi) in enumerate(zip(bounds, bounds[1:] + [end]))]


def _large_block_function(seq: bool, opset: int, q: Quantizer) -> onnx.FunctionProto:
    spec, cell = (LARGE_BLOCK_SEQUENCE, MLSTM_SEQUENCE) if seq else (LARGE_BLOCK, MLSTM_CELL)
    fb = op_function(spec, q)
    state = spec.regular_inputs[1:4]
    scales = dict(zip(LARGE_BLOCK_MATRICES, q.scale_inputs(LARGE_BLOCK_MATRICES)))
    weights = {w: q.body_weight(fb, w, scales.get(w)) for w in LARGE_BLOCK_MATRICES}

    def linear(x: str, w: str, b: str) -> str:
        return fb.op("Add", [q.body_matmul(fb, x, weights[w], scales.get(w), opset, name=f"{w}.product"), b],
                     name=f"{w}.biased")

    nh, dk, dv = _dims(fb, state[0])
    qk, v = fb.op("Mul", [nh, dk], name="QK"), fb.op("Mul", [nh, dv], name="V")
    lead = fb.ints([0, 0] if seq else [0])
    xn = _rms_norm(fb, "x", "norm_mlstm_weight", "norm_mlstm_bias", opset, "norm_mlstm")
    q_, k_, v_, o = _split_at(fb, linear(xn, "W_qkvo", "b_qkvo"), [qk, qk, v], "qkvo")
    i, f = fb.split_equal(_soft_cap(fb, linear(xn, "W_if", "b_if")), 2, -1, opset, "if_split")
    heads = [fb.op("Reshape", [t, fb.op("Concat", [lead, nh, d], name=f"{n}_head_shape", axis=0)],
                   name=f"{n}_heads") for t, n, d in ((q_, "q", dk), (k_, "k", dk), (v_, "v", dv))]  # no -1: T may be 0
    h, c_new, n_new, m_new = (fb.fresh(n) for n in ("h", "C_new", "n_new", "m_new"))
    fb.op(cell.name, [*heads, i, f, *state, "q_scale", fb.const(1.0, "q_scale"), "eps"], [h, c_new, n_new, m_new],
          name=cell.name, domain=DOMAIN)
    hn = _head_norm(fb, h, fb.op("Concat", [lead, v], name="merged_shape", axis=0), dv)
    h_out = fb.op("Mul", [fb.op("Sigmoid", [o], name="ogate"), hn], name="h_out")
    x1 = fb.op("Add", ["x", linear(h_out, "W_out", "b_out")], name="residual_mlstm")
    xf = _rms_norm(fb, x1, "norm_ffn_weight", "norm_ffn_bias", opset, "norm_ffn")
    gate, z = fb.split_equal(linear(xf, "W_up", "b_up"), 2, -1, opset, "ffn_split")
    silu = fb.op("Mul", [gate, fb.op("Sigmoid", [gate], name="ffn_act.sigmoid")], name="ffn_act")
    y = fb.op("Add", [x1, linear(fb.op("Mul", [silu, z], name="ffn_gated"), "W_down", "b_down")],
              name="residual_ffn")
    for value, name in zip((y, c_new, n_new, m_new), spec.output_names):
        fb.op("Identity", [value], [name], name=name)
    f = fb.build(opset)
    f.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))  # the nested cell node
    f.attribute.append(NORM_EPS)
    return q.declare_attributes(f)


def large_block_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    return _large_block_function(False, opset, q or Quantizer())


def large_block_sequence_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    return _large_block_function(True, opset, q or Quantizer())
