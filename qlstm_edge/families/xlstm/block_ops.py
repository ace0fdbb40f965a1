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

mLSTMBlock / mLSTMBlockSequence (x [B, E] or [B, T, E]; the xLSTM LM's mLSTMBlock, xlstm's mLSTMLayer):
    xn   = layer_norm(x, norm_eps) * norm_weight + norm_bias
    x_m, z = split(xn @ W_up + b_up, [I, I])
    x_c  = silu(conv(x_m))          conv_t = sum_j conv_weight[j] w_{t+1+j} + conv_bias over the window
                                    w = [conv state (the last KS inputs, oldest first); x_m]; new state: its last KS
    q, k, v = split(heads(x_c, x_c, x_m) @ W_qkv + b_qkv, [I, I, I])   head-wise: each BS inputs of head p of
                                    projection g times W_qkv[g, p] [BS, BS]
    i, f = split([q, k, v] @ W_if + b_if, [NH, NH])
    h, C', n', m' = mLSTMCell / mLSTMSequence(q, k, v per head, i, f, C, n, m, 1, k_scale, eps)
                                    (n, m enter as [B, NH, DH], [B, NH, 1] and leave in the package's layout)
    y    = x + ((layer_norm(h per head, norm_eps) * head_norm_weight + head_norm_bias + skip x_c) silu(z))
           @ W_down + b_down
NH and DH come from the state C [B, NH, DH, DH] (I = NH DH), NP and BS from W_qkv [3, NP, BS, BS], KS from
conv_weight.

sLSTMBlock / sLSTMBlockSequence (x [B, E] or [B, T, E]; the xLSTM LM's sLSTM block and its FFN):
    xn  = layer_norm(x, norm_eps) * norm_weight + norm_bias
    xc  = silu(conv(xn) + conv_bias)                              conv(xn)_t = sum_j window_t[j] conv_weight[j],
                                                                  window_t: the last KS normed inputs, oldest first;
                                                                  conv' = the last window
    wx  = [xc, xc, xn, xn] per head @ W_gates[g, h] + b_gates     (gates i, f, z, o, gate-major, head-major)
    y, c', n', m' = sLSTMCell / sLSTMSequence(wx, y, c, n, m, R, b)
    x1  = x + layer_norm(y per head, norm_eps) * group_norm_weight + group_norm_bias
    gate, z = split((layer_norm(x1, norm_eps) * ffn_norm_weight + ffn_norm_bias) @ W_up + b_up, [U, U])
    h   = x1 + (act(gate) z) @ W_down + b_down                     act: the string attribute ffn_act (ffn_activation;
                                                                  absent: gelu(g) = g/2 (1 + erf(g / sqrt 2)))
The body is built for one activation (its model's) and declares ffn_act, as it declares quant_mode, without
reading it: the exporter gives every node the activation its body computes. NH and DH come from R [4, NH, DH, DH].
W_gates and R are stacked head matrices (Quantizer.store_stacked); their products, as the cell op's y @ R, quantize
each head's row on its own in int8-dynamic.

Quantization (exporters/quantize.py has the op contract): the matrices are stored per mode (xLSTMLarge's five,
the mLSTM block's W_up, W_qkv (stacked, as layers.Net.headwise stores it), W_if and W_down, the sLSTM block's
W_gates and R (stacked) and W_up and W_down), their scales appended
in the order of the spec's matrices in the integer modes; the products run with the mode's arithmetic
(``Quantizer.body_matmul``: fp16 rounds the normed input and the product to float16, int8-dynamic quantizes each row
of the product's input, each head's BS inputs on their own in the head-wise product). x, the norms, gates, biases,
the residual stream and the states are float32 in every mode (the mLSTM cell's reasons, cells.py).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...exporters.graph import FunctionBuilder, op_function
from ...exporters.quantize import Quantizer
from ...runtime.metadata import DOMAIN, DOMAIN_VERSION
from ...exporters.quantize import stacked_scale
from .ops import (FFN_ACTIVATIONS, LARGE_BLOCK, LARGE_BLOCK_MATRICES, LARGE_BLOCK_SEQUENCE, MLSTM_BLOCK,
                  MLSTM_BLOCK_MATRICES, MLSTM_BLOCK_SEQUENCE, MLSTM_CELL, MLSTM_SEQUENCE, NORM_EPS, SLSTM_BLOCK,
                  SLSTM_BLOCK_MATRICES, SLSTM_BLOCK_SEQUENCE, SLSTM_CELL, SLSTM_SEQUENCE)


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


def _dim(fb: FunctionBuilder, x: str, axis: int, name: str) -> str:
    """Dimension ``axis`` of ``x`` as a 1-d int64 tensor of one element."""
    return fb.op("Shape", [x], name=name, start=axis, end=axis + 1)


def _linear(fb: FunctionBuilder, q: Quantizer, matrices, opset: int):
    """(linear, scales): linear(x, w, b) = x @ w + b for the op's matrix input w (one of ``matrices``), its product
    in the mode's arithmetic (``Quantizer.body_matmul``); scales: each matrix's scale input (integer modes)."""
    scales = dict(zip(matrices, q.scale_inputs(matrices)))

    def linear(x: str, w: str, b: str) -> str:
        product = q.body_matmul(fb, x, q.body_weight(fb, w, scales.get(w)), scales.get(w), opset, name=f"{w}.product")
        return fb.op("Add", [product, b], name=f"{w}.biased")
    return linear, scales


def _split_at(fb: FunctionBuilder, x: str, sizes, name: str):
    """``x`` cut along its last axis into parts of ``sizes`` (1-d int64 tensors) and the rest: Slices, not a Split,
    whose computed sizes would leave onnxruntime without the parts' ranks (a Scan that reads them then fails)."""
    axis, bounds, end = fb.ints([-1]), [fb.ints([0])], fb.ints([2 ** 62])
    for j, size in enumerate(sizes):
        bounds.append(fb.op("Add", [bounds[-1], size], name=f"{name}_end{j}"))
    return [fb.op("Slice", [x, lo, hi, axis], name=f"{name}_part{j}")
            for j, (lo, hi) in enumerate(zip(bounds, bounds[1:] + [end]))]


def _finish(fb: FunctionBuilder, opset: int, q: Quantizer, spec) -> onnx.FunctionProto:
    """The block op's function: its nodes, the opset of its nested cell node, the spec's attributes (norm_eps,
    which the body reads; its string attributes, which name what the body was built to compute, as the
    quantization attributes do) and the quantization attributes."""
    f = fb.build(opset)
    f.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    f.attribute.extend([*spec.attributes, *(name for name, _ in spec.choices)])
    return q.declare_attributes(f)


def _large_block_function(seq: bool, opset: int, q: Quantizer) -> onnx.FunctionProto:
    spec, cell = (LARGE_BLOCK_SEQUENCE, MLSTM_SEQUENCE) if seq else (LARGE_BLOCK, MLSTM_CELL)
    fb = op_function(spec, q)
    state = spec.regular_inputs[1:4]
    linear, _ = _linear(fb, q, LARGE_BLOCK_MATRICES, opset)
    nh, dk, dv = (_dim(fb, state[0], a, n) for a, n in ((1, "NH"), (2, "DK"), (3, "DV")))
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
    return _finish(fb, opset, q, spec)


def large_block_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    return _large_block_function(False, opset, q or Quantizer())


def large_block_sequence_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    return _large_block_function(True, opset, q or Quantizer())


def _layer_norm(fb: FunctionBuilder, x: str, weight: str, bias: str, name: str) -> str:
    """LayerNormalization of x over its last axis (epsilon norm_eps), then scaled and shifted."""
    return _with_norm_eps(fb, fb.op("LayerNormalization", [x, weight, bias], name=name, axis=-1), "epsilon")


def silu(b, x: str, name: str) -> str:
    """x sigmoid(x) as nodes of ``b`` (a function body's FunctionBuilder or an exported graph's builder)."""
    return b.op("Mul", [x, b.op("Sigmoid", [x], name=f"{name}.sigmoid")], name=name)


SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805  # torch's selu


def ffn_activation(b, const: Callable[[float, str], str], kind: str, x: str, name: str) -> str:
    """The activation ``kind`` (FFN_ACTIVATIONS: xlstm's GatedFeedForward registry, torch's exact definitions) of x
    as standard-op nodes of ``b``; ``const(value, name)`` gives a float32 scalar (a function body's Constant, a
    graph's initializer). The sLSTM block op's body and the cell-op layout's FFN (layers.Net.activation) both
    build it here."""
    if kind == "gelu":  # exact (erf) GELU: x/2 (1 + erf(x/sqrt 2)); onnxruntime fuses this form into one Gelu
        half = b.op("Mul", [x, const(0.5, f"{name}.half")], name=f"{name}.half_x")
        erf = b.op("Erf", [b.op("Div", [x, const(2 ** 0.5, f"{name}.sqrt2")], name=f"{name}.scaled")],
                   name=f"{name}.erf")
        return b.op("Mul", [half, b.op("Add", [erf, const(1.0, f"{name}.one")], name=f"{name}.1p")], name=name)
    if kind == "relu":
        return b.op("Relu", [x], name=name)
    if kind == "relu^2":
        r = b.op("Relu", [x], name=f"{name}.relu")
        return b.op("Mul", [r, r], name=name)
    if kind == "sigmoid":
        return b.op("Sigmoid", [x], name=name)
    if kind == "swish":
        return silu(b, x, name)
    if kind == "selu":
        return b.op("Selu", [x], name=name, alpha=SELU_ALPHA, gamma=SELU_GAMMA)
    raise ValueError(f"feed-forward activation {kind!r} is not one of xlstm's {', '.join(FFN_ACTIVATIONS)}")


def _causal_conv(fb: FunctionBuilder, x: str, state: str, seq: bool) -> str:
    """The depthwise causal conv of x [B, (T,) I] over its window (``state`` [B, KS, I], then x): returns the conv's
    output; the new state (the window's last KS rows) goes to the op's conv output (step: layers.Net.causal_conv's
    nodes; a chunk gathers each step's window)."""
    if seq:
        window = fb.op("Concat", [state, x], name="conv.window", axis=1)  # [B, KS + T, I]
        t = _dim(fb, x, 1, "T")
        fb.op("Slice", [window, t, fb.ints([2 ** 62]), fb.ints([1])], ["conv_T"], name="conv.state")
        ks = _dim(fb, "conv_weight", 0, "KS")
        zero, one = (fb.op("Constant", [], name=f"conv.{v}", value=numpy_helper.from_array(np.array(v, np.int64)))
                     for v in (0, 1))
        last_tap = fb.op("Squeeze", [fb.op("Add", [ks, fb.ints([1])], name="conv.ks1")], name="conv.last_tap")
        steps = fb.op("Range", [zero, fb.op("Squeeze", [t], name="conv.t"), one], name="conv.steps")  # 0 .. T - 1
        taps = fb.op("Range", [one, last_tap, one], name="conv.taps")  # 1 .. KS
        rows = fb.op("Add", [fb.op("Unsqueeze", [steps, fb.ints([1])], name="conv.step_col"),
                             fb.op("Unsqueeze", [taps, fb.ints([0])], name="conv.tap_row")], name="conv.rows")
        windows = fb.op("Gather", [window, rows], name="conv.windows", axis=1)  # [B, T, KS, I]: rows t+1 .. t+KS
        axis = 2
    else:
        kept = fb.op("Slice", [state, fb.ints([1]), fb.ints([2 ** 62]), fb.ints([1])], name="conv.shift")
        windows = fb.op("Concat", [kept, fb.op("Unsqueeze", [x, fb.ints([1])], name="conv.x_row")], ["conv_out"],
                        name="conv.state", axis=1)  # [B, KS, I]
        axis = 1
    y = fb.op("ReduceSum", [fb.op("Mul", [windows, "conv_weight"], name="conv.wx"), fb.ints([axis])],
              name="conv.sum", keepdims=0)
    return fb.op("Add", [y, "conv_bias"], name="conv.biased")


def _headwise_qkv(fb: FunctionBuilder, q: Quantizer, sources, w: str, scale: Optional[str], lead: str, n_lead: int,
                  width: str, opset: int) -> str:
    """The head-wise products of ``sources`` (x_c, x_c, x_m) with W_qkv [3, NP, BS, BS] (as layers.Net.headwise
    computes them: float32 weights as a Mul and a ReduceSum over each head's inputs, float16 and int8-dynamic
    weights as a batched MatMul), merged to [..., width]."""
    np_, bs = _dim(fb, "W_qkv", 1, "NP"), _dim(fb, "W_qkv", 2, "BS")
    small = q.scheme.product_weight_dtype == "float32"
    one = fb.ints([1])
    head_shape, axis = ([one, one, np_, bs], n_lead + 1) if small else ([one, np_, one, bs], n_lead)
    shape = fb.op("Concat", [lead, *head_shape], name="qkv.head_shape", axis=0)
    heads = {}
    for x in sources:
        if x not in heads:
            heads[x] = fb.op("Reshape", [x, shape], name=f"qkv.heads{len(heads)}")
    stacked = fb.op("Concat", [heads[x] for x in sources], name="qkv.stacked", axis=axis)
    if small:  # [..., 1, 3, NP, BS] x [BS out, 3, NP, BS in], summed over the inputs
        w_t = fb.op("Transpose", [w], name="qkv.weight", perm=[3, 0, 1, 2])
        y = fb.op("ReduceSum", [fb.op("Mul", [stacked, w_t], name="qkv.Mul"), fb.ints([-1])], name="qkv.ReduceSum",
                  keepdims=0)
        y = fb.op("Transpose", [y], name="qkv.head_order", perm=[*range(n_lead), n_lead + 1, n_lead + 2, n_lead])
    else:
        y = q.body_matmul(fb, stacked, w, stacked_scale(fb, scale, "qkv.scale") if q.dynamic else None, opset,
                          name="qkv.MatMul")
    merged = fb.op("Concat", [lead, width], name="qkv.merged_shape", axis=0)
    return fb.op("Add", [fb.op("Reshape", [y, merged], name="qkv.merge"), "b_qkv"], name="qkv")


def _mlstm_block_function(seq: bool, opset: int, q: Quantizer) -> onnx.FunctionProto:
    spec, cell = (MLSTM_BLOCK_SEQUENCE, MLSTM_SEQUENCE) if seq else (MLSTM_BLOCK, MLSTM_CELL)
    fb = op_function(spec, q)
    conv, c, n, m = spec.regular_inputs[1:5]
    linear, scales = _linear(fb, q, MLSTM_BLOCK_MATRICES, opset)
    nh, dh = _dim(fb, c, 1, "NH"), _dim(fb, c, 2, "DH")
    inner = fb.op("Mul", [nh, dh], name="I")
    n_lead = 2 if seq else 1
    lead = fb.ints([0] * n_lead)
    xn = _layer_norm(fb, "x", "norm_weight", "norm_bias", "norm")
    x_m, z = _split_at(fb, linear(xn, "W_up", "b_up"), [inner], "up")
    x_c = silu(fb, _causal_conv(fb, x_m, conv, seq), "conv_act")
    w_qkv = q.body_stacked(fb, "W_qkv", scales.get("W_qkv"), name="W_qkv_dq")
    qkv = _headwise_qkv(fb, q, (x_c, x_c, x_m), w_qkv, scales.get("W_qkv"), lead, n_lead,
                        fb.op("Mul", [inner, fb.ints([3])], name="3I"), opset)
    i, f = fb.split_equal(linear(qkv, "W_if", "b_if"), 2, -1, opset, "if_split")
    head_shape = fb.op("Concat", [lead, nh, dh], name="head_shape", axis=0)
    heads = [fb.op("Reshape", [t, head_shape], name=f"{name}_heads")
             for t, name in zip(_split_at(fb, qkv, [inner, inner], "qkv_split"), "qkv")]
    three = fb.ints([3])
    n_in, m_in = (fb.op("Squeeze", [s, three], name=f"{s}_in") for s in (n, m))
    h, c_new, n_new, m_new = (fb.fresh(name) for name in ("h", "C_new", "n_new", "m_new"))
    fb.op(cell.name, [*heads, i, f, c, n_in, m_in, fb.const(1.0, "k_scale"), "k_scale", "eps"],
          [h, c_new, n_new, m_new], name=cell.name, domain=DOMAIN)
    hn = _head_norm(fb, h, fb.op("Concat", [lead, inner], name="merged_shape", axis=0), dh)
    h_skip = fb.op("Add", [hn, fb.op("Mul", ["skip", x_c], name="skip_x")], name="h_skip")
    h_state = fb.op("Mul", [h_skip, silu(fb, z, "z_act")], name="h_gated")
    y = fb.op("Add", ["x", linear(h_state, "W_down", "b_down")], name="residual")
    outs = dict(zip(spec.output_names, (y, None, c_new, fb.op("Unsqueeze", [n_new, three], name="n_package"),
                                        fb.op("Unsqueeze", [m_new, three], name="m_package"))))
    for name, value in outs.items():
        if value is not None:
            fb.op("Identity", [value], [name], name=name)
    return _finish(fb, opset, q, spec)


def _slstm_block_function(seq: bool, opset: int, q: Quantizer, ffn_act: str) -> onnx.FunctionProto:
    spec, cell = (SLSTM_BLOCK_SEQUENCE, SLSTM_SEQUENCE) if seq else (SLSTM_BLOCK, SLSTM_CELL)
    fb = op_function(spec, q)
    state = spec.regular_inputs[2:6]
    linear, scales = _linear(fb, q, SLSTM_BLOCK_MATRICES, opset)
    lead = fb.ints([0, 0] if seq else [0])

    xn = _layer_norm(fb, "x", "norm_weight", "norm_bias", "norm")
    xc = silu(fb, _causal_conv(fb, xn, spec.regular_inputs[1], seq), "conv_act")
    nh, dh = _dim(fb, "R", 1, "NH"), _dim(fb, "R", 2, "DH")
    e = fb.op("Mul", [nh, dh], name="E")
    head_shape = fb.op("Concat", [lead, fb.ints([1]), nh, fb.ints([1]), dh], name="gate_head_shape", axis=0)
    xc_h, xn_h = (fb.op("Reshape", [v, head_shape], name=f"{n}_heads") for v, n in ((xc, "xc"), (xn, "xn")))
    stacked = fb.op("Concat", [xc_h, xc_h, xn_h, xn_h], name="gate_inputs", axis=2 if seq else 1)  # [.., 4, NH, 1, DH]
    w_gates = q.body_stacked(fb, "W_gates", scales.get("W_gates"), name="W_gates_dq")
    dyn = stacked_scale(fb, scales["W_gates"], "W_gates_scale_col") if q.dynamic else None
    wx = fb.op("Reshape", [q.body_matmul(fb, stacked, w_gates, dyn, opset, name="W_gates.product"),
                           fb.op("Concat", [lead, fb.op("Mul", [e, fb.ints([4])], name="4E")], name="gates_shape",
                                 axis=0)], name="gates_merged")  # no -1: T may be 0
    wx = fb.op("Add", [wx, "b_gates"], name="gates")
    cell_out = [fb.fresh(n) for n in (["Y"] if seq else []) + ["y_new", "c_new", "n_new", "m_new"]]
    fb.op(cell.name, [wx, *state, "R", "b", *q.scale_inputs(["R"])], cell_out, name=cell.name, domain=DOMAIN,
          **q.op_attributes())
    heads = fb.op("Reshape", [cell_out[0], fb.op("Concat", [lead, nh, dh], name="y_head_shape", axis=0)],
                  name="y_heads")
    ones = fb.op("ConstantOfShape", [dh], name="group_norm.ones", value=numpy_helper.from_array(np.ones(1, np.float32)))
    zeros = fb.op("ConstantOfShape", [dh], name="group_norm.zeros",
                  value=numpy_helper.from_array(np.zeros(1, np.float32)))
    gn = fb.op("Reshape", [_layer_norm(fb, heads, ones, zeros, "group_norm.normalize"),
                           fb.op("Concat", [lead, e], name="merged_shape", axis=0)], name="group_norm.merge")
    gn = fb.op("Add", [fb.op("Mul", [gn, "group_norm_weight"], name="group_norm.scaled"), "group_norm_bias"],
               name="group_norm.shifted")
    x1 = fb.op("Add", ["x", gn], name="residual_slstm")
    gate, z = fb.split_equal(linear(_layer_norm(fb, x1, "ffn_norm_weight", "ffn_norm_bias", "ffn_norm"), "W_up",
                                    "b_up"), 2, -1, opset, "ffn_split")
    # float32 Constants, not CastLike ones: the onnx inliner expands a CastLike into a Cast that then keeps
    # onnxruntime from fusing the GELU, so an inlined file would compute it in other arithmetic
    c = lambda v, n: fb.op("Constant", [], name=n, value=numpy_helper.from_array(np.array(v, np.float32)))  # noqa: E731
    act = ffn_activation(fb, c, ffn_act, gate, "ffn_act")
    h = fb.op("Add", [x1, linear(fb.op("Mul", [act, z], name="ffn_gated"), "W_down", "b_down")], name="residual_ffn")
    for value, name in zip((h, *cell_out[len(cell_out) - 4:]), spec.output_names[:1] + spec.output_names[2:]):
        fb.op("Identity", [value], [name], name=name)
    return _finish(fb, opset, q, spec)


def mlstm_block_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    return _mlstm_block_function(False, opset, q or Quantizer())


def mlstm_block_sequence_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    return _mlstm_block_function(True, opset, q or Quantizer())


def slstm_block_function(opset: int, q: Optional[Quantizer] = None, ffn_act: str = FFN_ACTIVATIONS[0]
                         ) -> onnx.FunctionProto:
    return _slstm_block_function(False, opset, q or Quantizer(), ffn_act)


def slstm_block_sequence_function(opset: int, q: Optional[Quantizer] = None, ffn_act: str = FFN_ACTIVATIONS[0]
                                  ) -> onnx.FunctionProto:
    return _slstm_block_function(True, opset, q or Quantizer(), ffn_act)
