"""xLSTM cell ops: the function bodies of ``sLSTMCell`` / ``sLSTMSequence`` / ``mLSTMCell`` / ``mLSTMSequence``.

The maths is the package's own (xlstm 2.0.4+, CPU backends; DESIGN.md, section xLSTM). B batch, T time, NH heads,
H = NH*DH; the signatures are in ops.py (docs/ops.md).

    sLSTM: x holds the input pre-activations of the gates i, f, z, o, gate-major (four blocks of H, each
        head-major); R[g, h]: head h's block of gate g's block-diagonal recurrent matrix; b gate-major.
        raw = x + y_h @ R[g, h] + b          (per gate g and head h)
        lfm = m + logsigmoid(f_raw)
        m'  = where(n == 0, i_raw, max(i_raw, lfm))        (element-wise, as the package's CUDA kernel)
        i   = min(exp(i_raw - m'), 1);  f = min(exp(lfm - m'), 1)
        c'  = f c + i tanh(z_raw);  n' = f n + i;  y' = sigmoid(o_raw) c' / n'
    mLSTM:
        lf = logsigmoid(f);  m' = max(lf + m, i);  f~ = exp(lf + m - m');  i~ = exp(i - m')
        q~ = q_scale q;  k~ = k_scale k;  C' = f~ C + (i~ k~) v^T;  n' = f~ n + i~ k~
        h  = (q~ C') / (max(|q~ . n'|, exp(-m')) + eps)
        (xLSTMBlockStack's mLSTM scales k by 1/sqrt(DK): q_scale 1, k_scale DK^-1/2, eps 1e-6;
         xLSTMLarge scales q: q_scale DK^-1/2, k_scale 1, eps from its config.)

Sequence ops project nothing per step: the chunk's gate pre-activations come in whole, and a Scan runs
only the recurrence.

Quantization (exporters/quantize.py has the op contract; input positions never move):
    sLSTMCell / sLSTMSequence: R is a stack of 4*NH matrices [DH, DH] (Quantizer.store_stacked: each slice
    follows the contract's [K, N] rule). fp16: R float16, y cast to float16 for y @ R. int8 / int8-dynamic: R
    int8 and R_scale[4,NH,DH] appended (input 7); int4: R packed two per byte, uint8 [4,NH,DH,ceil(DH/2)], and
    R_scale[4,NH,ceil(DH/bs),DH]. Attributes quant_mode and block_size. x, the gates' input pre-activations,
    stays float32 (it enters no product inside the op).
    int8-dynamic quantizes y per head (each head's DH values get their own scale), as the head-wise
    projections do with their inputs; dense projections quantize per row.
    mLSTMCell / mLSTMSequence hold no weight: the same op in every mode (float32 inputs, no attributes).
Every state stays float32 in every mode:
    m (sLSTM and mLSTM) is the log-space stabiliser: the gates are exp(i - m') and exp(log f + m - m'), so an
    absolute error in m is a relative error of every gate and of every memory update.
    sLSTM c, n and mLSTM C, n are sums decayed by f, which sits near 1: an update much smaller than the sum
    (n grows to about 140 on random models after 10,000 steps, while i <= 1) would be rounded away in float16
    (2^-11 relative). y = o c / n and h = q C / max(|q n|, exp(-m)) divide memories by normalisers that carry
    the same exp(-m) scale, so both must keep their relative precision.
    sLSTM y (the last output) and the conv windows (the last inputs) are stored as the model computed them.
"""
from __future__ import annotations

from typing import Optional

import onnx

from ...exporters.graph import FunctionBuilder, NodeBuilder, op_function, subgraph
from ...exporters.quantize import Quantizer, Weight, stacked_scale
from .ops import MLSTM_CELL, MLSTM_SEQUENCE, SLSTM_CELL, SLSTM_SEQUENCE

SLSTM_MATRICES = list(SLSTM_CELL.matrices)  # quantized input (stacked per-head matrices); its scale is appended


def _log1p(nb: NodeBuilder, z: str, name: str) -> str:
    """log(1 + z) to full precision for small z (there is no Log1p op): log(u) * z / (u - 1), u = 1 + z.

    A plain Log(1 + z) loses the low bits of z: for the forget gates (z = exp(-|f|) ~ 1e-3) that is a
    1e-5 relative error in log f per step, which the recurrence accumulates.
    """
    u = nb.op("Add", [nb.const(1.0, z), z], name=f"{name}.u")
    d = nb.op("Sub", [u, nb.const(1.0, z)], name=f"{name}.u_1")
    ratio = nb.op("Div", [nb.op("Mul", [nb.op("Log", [u], name=f"{name}.log_u"), z], name=f"{name}.num"), d],
                  name=f"{name}.ratio")
    return nb.op("Where", [nb.op("Equal", [d, nb.const(0.0, z)], name=f"{name}.tiny"), z, ratio], name=name)


def _logsigmoid(nb: NodeBuilder, x: str, name: str) -> str:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for any x (torch's formula)."""
    e = nb.op("Exp", [nb.op("Neg", [nb.op("Abs", [x], name=f"{name}.abs")], name=f"{name}.neg")], name=f"{name}.exp")
    return nb.op("Sub", [nb.op("Min", [x, nb.const(0.0, x)], name=f"{name}.min0"), _log1p(nb, e, f"{name}.log1p")],
                 name=name)


# -- sLSTM ---------------------------------------------------------------------------------------------
def _slstm_recurrent(fb: FunctionBuilder, q: Quantizer) -> Weight:
    """R as the step's MatMul reads it (``q.body_stacked``, once per call), and for int8-dynamic its scale as
    [4, NH, 1, DH]."""
    scale = dict(zip(SLSTM_MATRICES, q.scale_inputs(SLSTM_MATRICES))).get("R")
    r = q.body_stacked(fb, "R", scale, name="R_dq")
    return r, (stacked_scale(fb, scale, "R_scale_col") if q.dynamic else None)


def _slstm_head_shape(nb: NodeBuilder, r: str) -> str:
    """[0, 1, NH, 1, DH] from R's shape: y [B, H] -> [B, 1, NH, 1, DH] for the per-head MatMul with R."""
    dims = nb.op("Shape", [r], name="R_shape")
    nh = nb.op("Slice", [dims, nb.ints([1]), nb.ints([2])], name="NH")
    dh = nb.op("Slice", [dims, nb.ints([2]), nb.ints([3])], name="DH")
    return nb.op("Concat", [nb.ints([0, 1]), nh, nb.ints([1]), dh], name="y_head_shape", axis=0)


def _slstm_step(nb: NodeBuilder, q: Quantizer, r: Weight, x: str, y: str, c: str, n: str, m: str, head_shape: str,
                opset: int):
    """One sLSTM step (``r`` from ``_slstm_recurrent``, b by name); returns (y', c', n', m')."""
    y_heads = nb.op("Reshape", [y, head_shape], name="y_heads")  # [B, 1, NH, 1, DH]
    ry = nb.op("Reshape", [q.body_matmul(nb, y_heads, *r, opset, name="yR"), nb.ints([0, -1])], name="Ry")  # [B, 4H]
    raw = nb.op("Add", [nb.op("Add", [x, ry], name="x_Ry"), "b"], name="raw")
    i_raw, f_raw, z_raw, o_raw = nb.split_equal(raw, 4, -1, opset, "gates")
    lfm = nb.op("Add", [m, _logsigmoid(nb, f_raw, "logsig_f")], name="logf_plus_m")
    first = nb.op("Equal", [n, nb.const(0.0, n)], name="n_is_zero")
    m_new = nb.op("Where", [first, i_raw, nb.op("Max", [i_raw, lfm], name="max_i_lfm")], name="m_new")
    one = nb.const(1.0, raw)
    i_gate = nb.op("Min", [nb.op("Exp", [nb.op("Sub", [i_raw, m_new], name="i_m")], name="exp_i"), one],
                   name="i_gate")
    f_gate = nb.op("Min", [nb.op("Exp", [nb.op("Sub", [lfm, m_new], name="f_m")], name="exp_f"), one],
                   name="f_gate")
    o_gate = nb.op("Sigmoid", [o_raw], name="o_gate")
    c_new = nb.op("Add", [nb.op("Mul", [f_gate, c], name="fc"),
                          nb.op("Mul", [i_gate, nb.op("Tanh", [z_raw], name="z")], name="iz")], name="c_new")
    n_new = nb.op("Add", [nb.op("Mul", [f_gate, n], name="fn"), i_gate], name="n_new")
    y_new = nb.op("Div", [nb.op("Mul", [o_gate, c_new], name="oc"), n_new], name="y_new")
    return y_new, c_new, n_new, m_new


def slstm_cell_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q = q or Quantizer()
    fb = op_function(SLSTM_CELL, q)
    r = _slstm_recurrent(fb, q)
    outs = _slstm_step(fb, q, r, "x", "y", "c", "n", "m", _slstm_head_shape(fb, r[0]), opset)
    for value, name in zip(outs, SLSTM_CELL.output_names):
        fb.op("Identity", [value], [name], name=name)
    return q.declare_attributes(fb.build(opset))


def slstm_sequence_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q = q or Quantizer()
    fb = op_function(SLSTM_SEQUENCE, q)
    r = _slstm_recurrent(fb, q)
    head_shape = _slstm_head_shape(fb, r[0])
    x_t = fb.op("Transpose", ["x"], name="x_time_major", perm=[1, 0, 2])
    body = NodeBuilder(prefix="step.")
    y, c, n, m = _slstm_step(body, q, r, "x_t", "y_prev", "c_prev", "n_prev", "m_prev", head_shape, opset)
    body.op("Identity", [y], ["y_t"], name="y_t")
    graph = subgraph("slstm_step", body, ["y_prev", "c_prev", "n_prev", "m_prev", "x_t"], [y, c, n, m, "y_t"])
    fb.op("Scan", ["y0", "c0", "n0", "m0", x_t], ["y_T", "c_T", "n_T", "m_T", "Y_time_major"], name="recurrence",
          body=graph, num_scan_inputs=1)
    fb.op("Transpose", ["Y_time_major"], ["Y"], name="Y", perm=[1, 0, 2])
    return q.declare_attributes(fb.build(opset))


# -- mLSTM ---------------------------------------------------------------------------------------------
def _mlstm_step(nb: NodeBuilder, q: str, k: str, v: str, i: str, f: str, C: str, n: str, m: str):
    """One mLSTM step (constants q_scale, k_scale, eps by name); returns (h, C', n', m')."""
    i3 = nb.op("Unsqueeze", [i, nb.ints([-1])], name="i3")  # [B, NH, 1]
    f3 = nb.op("Unsqueeze", [f, nb.ints([-1])], name="f3")
    lfm = nb.op("Add", [_logsigmoid(nb, f3, "logsig_f"), m], name="logf_plus_m")
    m_new = nb.op("Max", [lfm, i3], name="m_new")
    f_act = nb.op("Exp", [nb.op("Sub", [lfm, m_new], name="f_m")], name="f_act")
    i_act = nb.op("Exp", [nb.op("Sub", [i3, m_new], name="i_m")], name="i_act")
    ks = nb.op("Mul", [k, "k_scale"], name="k_scaled")
    qs = nb.op("Mul", [q, "q_scale"], name="q_scaled")
    ik = nb.op("Mul", [i_act, ks], name="ik")  # i~ k~ first: one pass less over the [DK, DV] memory
    ikv = nb.op("Mul", [nb.op("Unsqueeze", [ik, nb.ints([-1])], name="ik_col"),
                        nb.op("Unsqueeze", [v, nb.ints([-2])], name="v_row")], name="ikv")  # [B, NH, DK, DV]
    c_new = nb.op("Add", [nb.op("Mul", [nb.op("Unsqueeze", [f_act, nb.ints([-1])], name="f4"), C], name="fC"), ikv],
                  name="C_new")
    n_new = nb.op("Add", [nb.op("Mul", [f_act, n], name="fn"), ik], name="n_new")
    q_row = nb.op("Unsqueeze", [qs, nb.ints([-2])], name="q_row")  # [B, NH, 1, DK]
    h_num = nb.op("Squeeze", [nb.op("MatMul", [q_row, c_new], name="qC"), nb.ints([-2])], name="h_num")
    qn = nb.op("Squeeze", [nb.op("MatMul", [q_row, nb.op("Unsqueeze", [n_new, nb.ints([-1])], name="n_col")],
                                 name="qn4"), nb.ints([-1])], name="qn")  # [B, NH, 1]
    floor = nb.op("Exp", [nb.op("Neg", [m_new], name="neg_m")], name="exp_neg_m")
    denom = nb.op("Add", [nb.op("Max", [nb.op("Abs", [qn], name="abs_qn"), floor], name="max_qn"), "eps"],
                  name="denom")
    h = nb.op("Div", [h_num, denom], name="h_new")
    return h, c_new, n_new, m_new


def mlstm_cell_function(opset: int) -> onnx.FunctionProto:
    fb = op_function(MLSTM_CELL, Quantizer())  # no weights: the same op in every mode
    outs = _mlstm_step(fb, "q", "k", "v", "i", "f", "C", "n", "m")
    for value, name in zip(outs, MLSTM_CELL.output_names):
        fb.op("Identity", [value], [name], name=name)
    return fb.build(opset)


def mlstm_sequence_function(opset: int) -> onnx.FunctionProto:
    fb = op_function(MLSTM_SEQUENCE, Quantizer())
    scanned = [fb.op("Transpose", [t], name=f"{t}_time_major", perm=[1, 0, 2, 3]) for t in ("q", "k", "v")]
    scanned += [fb.op("Transpose", [t], name=f"{t}_time_major", perm=[1, 0, 2]) for t in ("i", "f")]
    body = NodeBuilder(prefix="step.")
    h, C, n, m = _mlstm_step(body, "q_t", "k_t", "v_t", "i_t", "f_t", "C_prev", "n_prev", "m_prev")
    body.op("Identity", [h], ["h_t"], name="h_t")
    graph = subgraph("mlstm_step", body, ["C_prev", "n_prev", "m_prev", "q_t", "k_t", "v_t", "i_t", "f_t"],
                     [C, n, m, "h_t"])
    fb.op("Scan", ["C0", "n0", "m0", *scanned], ["C_T", "n_T", "m_T", "H_time_major"], name="recurrence",
          body=graph, num_scan_inputs=5)
    fb.op("Transpose", ["H_time_major"], ["H"], name="H", perm=[1, 0, 2, 3])
    return fb.build(opset)
