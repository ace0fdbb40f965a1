"""xLSTM export: the custom ops ``qlstm_edge::sLSTMCell`` / ``sLSTMSequence`` / ``mLSTMCell`` /
``mLSTMSequence`` and the graph recipes of the official package's models.

One custom node per cell per block; everything else in a block (norms, causal conv1d with its state,
head-wise and dense projections, gates' pre-activations, FFN, soft-caps, embedding, LM head) is made of
standard ops. The maths is the package's own (xlstm 2.0.4+, CPU backends; DESIGN.md, section xLSTM).

Op signatures (B batch, T time, NH heads, H = NH*DH; every tensor float32 in an fp32 export):

    sLSTMCell    (x[B,4H], y[B,H], c[B,H], n[B,H], m[B,H], R[4,NH,DH,DH], b[4H]) -> y'[B,H], c', n', m'
    sLSTMSequence(x[B,T,4H], y0, c0, n0, m0, R, b) -> Y[B,T,H], y_T, c_T, n_T, m_T
        x: the input pre-activations of the gates i, f, z, o, gate-major (four blocks of H, each
        head-major); R[g, h]: head h's block of gate g's block-diagonal recurrent matrix; b gate-major.
        raw = x + y_h @ R[g, h] + b          (per gate g and head h)
        lfm = m + logsigmoid(f_raw)
        m'  = where(n == 0, i_raw, max(i_raw, lfm))        (element-wise, as the package's CUDA kernel)
        i   = min(exp(i_raw - m'), 1);  f = min(exp(lfm - m'), 1)
        c'  = f c + i tanh(z_raw);  n' = f n + i;  y' = sigmoid(o_raw) c' / n'

    mLSTMCell    (q[B,NH,DK], k[B,NH,DK], v[B,NH,DV], i[B,NH], f[B,NH], C[B,NH,DK,DV], n[B,NH,DK],
                  m[B,NH,1], q_scale[], k_scale[], eps[]) -> h[B,NH,DV], C', n', m'
    mLSTMSequence(q[B,T,NH,DK], k[B,T,NH,DK], v[B,T,NH,DV], i[B,T,NH], f[B,T,NH], C0, n0, m0,
                  q_scale, k_scale, eps) -> H[B,T,NH,DV], C_T, n_T, m_T
        lf = logsigmoid(f);  m' = max(lf + m, i);  f~ = exp(lf + m - m');  i~ = exp(i - m')
        q~ = q_scale q;  k~ = k_scale k;  C' = f~ C + (i~ k~) v^T;  n' = f~ n + i~ k~
        h  = (q~ C') / (max(|q~ . n'|, exp(-m')) + eps)
        (xLSTMBlockStack's mLSTM scales k by 1/sqrt(DK): q_scale 1, k_scale DK^-1/2, eps 1e-6;
         xLSTMLarge scales q: q_scale DK^-1/2, k_scale 1, eps from its config.)

Sequence ops project nothing per step: the chunk's gate pre-activations come in whole, and a Scan runs
only the recurrence. The state tensors keep the package's layouts (model.py: StackStates, LargeStates).

Quantization (exporters/quantize.py has the op contract; input positions never move):
    Quantized matrices: the sLSTM ops' R; every dense projection (mLSTM proj_up, proj_down and i/f gates, the
    FFN, xLSTMLarge's q/k/v/o, i/f gates and out_proj, the LM head); the head-wise (block-diagonal) projections
    (mLSTM q/k/v, sLSTM gate inputs), stored per block as stacked matrices [G, NH, in/NH, out/NH] (int4: packed
    two per byte, Quantizer.stacked_weight); the embeddings. Biases, norm scales, the learnable skip and the
    depthwise conv taps [KS, D] (element-wise) stay float32.
    sLSTMCell / sLSTMSequence: R is a stack of 4*NH matrices [DH, DH] (Quantizer.store_stacked: each slice
    follows the contract's [K, N] rule). fp16: R float16, y cast to float16 for y @ R. int8 / int8-dynamic: R
    int8 and R_scale[4,NH,DH] appended (input 7); int4: R packed two per byte, uint8 [4,NH,DH,ceil(DH/2)], and
    R_scale[4,NH,ceil(DH/bs),DH]. Attributes quant_mode and block_size. x, the gates' input pre-activations,
    stays float32 (it enters no product inside the op).
    int8-dynamic quantizes y per head (each head's DH values get their own scale), as the head-wise
    projections do with their inputs; dense projections quantize per row.
    mLSTMCell / mLSTMSequence hold no weight: the same op in every mode (float32 inputs, no attributes).
    fp16 runs every matrix product in float16 (its input cast, its result cast back); biases are added, and
    norms, gates, recurrences, soft-caps and the residual stream computed, in float32.
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

from typing import Dict, List, Optional

import numpy as np
import onnx
import torch
import xlstm
from xlstm.blocks.mlstm.layer import mLSTMLayer

from ...exporters.graph import FunctionBuilder, GraphBuilder, NodeBuilder, subgraph
from ...exporters.quantize import MODES as QUANT_MODES, Quantizer, Weight, stacked_scale
from ...exporters.recipe import ExportRecipe, Signature, f32
from .model import (LargeStates, StackStates, _check_stack_config, block_stack, run_large_steps,
                    run_stack_steps)

SLSTM_WEIGHTS = ["R", "b"]
SLSTM_MATRICES = ["R"]  # quantized input (stacked per-head matrices); its scale is appended
MLSTM_CONSTANTS = ["q_scale", "k_scale", "eps"]
STACK_EPS_MLSTM = 1e-6  # xlstm.blocks.mlstm.backends.recurrent_step_stabilized_simple's eps
SMALL_HEAD = 16  # head-wise projections with at most this many inputs per head use Mul + ReduceSum

# Parity tolerances of quantized exports (max abs error of outputs and final states, as qlstm_edge.parity
# TOLERANCES) for these families: about 3x the worst measured on random models (the test suite's
# perturbed package models: 7 block stacks / LMs, E 64-256, and 2 xLSTMLarge, E 64-128) over 10,000 steps.
# The defaults are calibrated on QL-LSTM, whose outputs are about 0.3; xLSTM outputs are normed features or
# logits (max about 5), the sLSTM normaliser n grows to about 140 and carries the largest absolute state error,
# and random xLSTMLarge models are badly conditioned (their own float32 rounding moves the logits by up to 1e-4,
# 300x QL-LSTM's). Measured worst (outputs / any tensor): stacks and LMs fp16 1.2e-2 / 3.3e-2, int8 0.20 / 0.73,
# int8-dynamic 0.37 / 1.7, int4 3.1 / 13; xLSTMLarge fp16 0.25, int8 1.4, int8-dynamic 1.5, int4 6.1 / 6.6.
# Bounds this loose catch a broken export, not accuracy loss: the exactness check is the test that an int8
# export equals the PyTorch model with dequantized weights; judge quality with `quantize-report --eval`.
STACK_QUANT_TOLERANCES = {"fp16": 0.1, "int8": 2.0, "int8-dynamic": 5.0, "int4": 40.0}
LARGE_QUANT_TOLERANCES = {"fp16": 0.75, "int8": 4.0, "int8-dynamic": 4.5, "int4": 20.0}


def _split_equal(nb: NodeBuilder, x: str, parts: int, axis: int, opset: int, name: str) -> List[str]:
    """Split into equal parts (opset 18 made ``num_outputs`` mandatory for that)."""
    kw = {"num_outputs": parts} if opset >= 18 else {}
    return nb.op("Split", [x], parts, name=name, axis=axis, **kw)


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
    r = q.body_stacked(fb, "R", "R_scale" if q.integer else None, name="R_dq")
    return r, (stacked_scale(fb, "R_scale", "R_scale_col") if q.dynamic else None)


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
    i_raw, f_raw, z_raw, o_raw = _split_equal(nb, raw, 4, -1, opset, "gates")
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


def _doc(q: Quantizer, what: str) -> str:
    return what if q.mode is None else f"{what} Weights {q.mode} (exporters/quantize.py, op contract)."


def slstm_cell_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q = q or Quantizer()
    fb = FunctionBuilder("sLSTMCell", ["x", "y", "c", "n", "m", *SLSTM_WEIGHTS, *q.scale_inputs(SLSTM_MATRICES)],
                         ["y_out", "c_out", "n_out", "m_out"],
                         doc=_doc(q, "One sLSTM step of the xlstm package (vanilla backend maths, element-wise m "
                                     "init)."))
    r = _slstm_recurrent(fb, q)
    outs = _slstm_step(fb, q, r, "x", "y", "c", "n", "m", _slstm_head_shape(fb, r[0]), opset)
    for value, name in zip(outs, ["y_out", "c_out", "n_out", "m_out"]):
        fb.op("Identity", [value], [name], name=name)
    return q.declare_attributes(fb.build(opset))


def slstm_sequence_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q = q or Quantizer()
    fb = FunctionBuilder("sLSTMSequence", ["x", "y0", "c0", "n0", "m0", *SLSTM_WEIGHTS,
                                           *q.scale_inputs(SLSTM_MATRICES)],
                         ["Y", "y_T", "c_T", "n_T", "m_T"],
                         doc=_doc(q, "A chunk of sLSTM steps: a Scan over the gate pre-activations x [B, T, 4H]."))
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
    fb = FunctionBuilder("mLSTMCell", ["q", "k", "v", "i", "f", "C", "n", "m", *MLSTM_CONSTANTS],
                         ["h", "C_out", "n_out", "m_out"],
                         doc="One mLSTM step of the xlstm package (stabilised matrix memory).")
    outs = _mlstm_step(fb, "q", "k", "v", "i", "f", "C", "n", "m")
    for value, name in zip(outs, ["h", "C_out", "n_out", "m_out"]):
        fb.op("Identity", [value], [name], name=name)
    return fb.build(opset)


def mlstm_sequence_function(opset: int) -> onnx.FunctionProto:
    fb = FunctionBuilder("mLSTMSequence", ["q", "k", "v", "i", "f", "C0", "n0", "m0", *MLSTM_CONSTANTS],
                         ["H", "C_T", "n_T", "m_T"],
                         doc="A chunk of mLSTM steps: a Scan over q, k, v [B, T, NH, D] and gates [B, T, NH].")
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


# -- standard-op pieces of the blocks --------------------------------------------------------------------
class _Net:
    """Builds the standard-op parts of a block on tensors [B, D] (step) or [B, T, D] (sequence)."""

    def __init__(self, g: GraphBuilder, mode: str, opset: int):
        self.g, self.mode, self.opset = g, mode, opset
        self.seq = mode == "sequence"
        self.lead = [0, 0] if self.seq else [0]  # Reshape: keep batch (and time)
        self.q = g.quant
        self._functions: Dict[str, onnx.FunctionProto] = {}
        self._compute: Dict[str, str] = {}

    def function(self, name: str) -> onnx.FunctionProto:
        if name not in self._functions:
            make = {"sLSTMCell": lambda: slstm_cell_function(self.opset, self.q),
                    "sLSTMSequence": lambda: slstm_sequence_function(self.opset, self.q),
                    "mLSTMCell": lambda: mlstm_cell_function(self.opset),  # no weights: the same in every mode
                    "mLSTMSequence": lambda: mlstm_sequence_function(self.opset)}[name]
            self._functions[name] = make()
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
        """Logits x @ weight^T (no bias) in the compute dtype (fp32: the node ``lm_head``, as before quantization)."""
        q, g = self.q, self.g
        if q.mode is None:
            return g.op("MatMul", [x, g.weight("lm_head.weight_t", f32(weight).T)], [out] if out else 1,
                        name="lm_head")
        return q.linear(g, "lm_head", self.compute(x), f32(weight).T, None, self.opset, out=out)

    def headwise(self, pairs: List[tuple], name: str) -> str:
        """xlstm's LinearHeadwiseExpand for G projections of the same shape at once: ``pairs`` = [(x_g, proj_g)],
        each x_g_h @ W_g_h^T per head h (a block-diagonal product) plus its bias; returns [..., G * out], the
        G outputs concatenated in order.

        One product for all G: the inputs' heads are stacked against the weights [G, NH, in/NH, out/NH] (each
        output element the same sum as one projection alone would compute): one node where G separate
        projections and their Concat were ~4G. Large heads (> SMALL_HEAD inputs) as a batched MatMul of
        [..., G, NH, 1, in/NH]. Small heads (the mLSTM's q/k/v use blocks of 4), where onnxruntime's batched
        MatMul pays per head, as a Mul [..., 1, G, NH, in/NH] x [out/NH, G, NH, in/NH] and a ReduceSum over the
        head's inputs: the broadcast is along the outermost axis, so the Mul runs over long contiguous rows (with
        the broadcast along out/NH next to in/NH it ran rows of 4 and took 24 us for the E=256 mLSTM's q/k/v,
        7 this way); a Transpose puts the outputs back in head order.
        Quantized: the weights are stacked matrices [G, NH, in/NH, out/NH] (``Quantizer.stacked_weight``:
        float32 in the weight-only modes, dequantized by ops onnxruntime folds when it loads the file); fp16 and
        int8-dynamic (which quantizes each head's input row on the fly) use the batched MatMul.
        """
        q, g = self.q, self.g
        w = np.stack([f32(proj.weight) for _, proj in pairs])  # [G, NH, out/NH, in/NH]
        _, nh, _, d_in = w.shape
        lead = len(self.lead)
        small = d_in <= SMALL_HEAD and q.mode in (None, "int8", "int4")
        head_shape, axis = ([1, 1, nh, d_in], lead + 1) if small else ([1, nh, 1, d_in], lead)
        heads = {}
        for x, _ in pairs:
            if x not in heads:
                heads[x] = g.op("Reshape", [x, g.ints(self.lead + head_shape)], name=f"{name}.heads{len(heads)}")
        stacked = g.op("Concat", [heads[x] for x, _ in pairs], name=f"{name}.stacked", axis=axis)
        scale = None
        if q.mode is None:
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
        if self.opset >= 18:
            ms = self.g.op("ReduceMean", [sq, self.g.ints([-1])], name=f"{name}.mean", keepdims=1)
        else:
            ms = self.g.op("ReduceMean", [sq], name=f"{name}.mean", axes=[-1], keepdims=1)
        rms = self.g.op("Sqrt", [self.g.op("Add", [ms, self.scalar(f"{name}.eps", norm.eps)], name=f"{name}.eps_add")],
                        name=f"{name}.rms")
        y = self.g.op("Div", [x, rms], name=f"{name}.normalize")
        if norm.weight is not None:
            y = self.g.op("Mul", [y, self.param(f"{name}.weight", f32(norm.weight))], name=f"{name}.scaled")
        if norm.bias is not None:
            y = self.g.op("Add", [y, self.param(f"{name}.bias", f32(norm.bias))], name=f"{name}.shifted")
        return y

    def silu(self, x: str, name: str) -> str:
        return self.g.op("Mul", [x, self.g.op("Sigmoid", [x], name=f"{name}.sigmoid")], name=name)

    def activation(self, kind: str, x: str, name: str) -> str:
        """The activations of xlstm's GatedFeedForward registry (torch's exact definitions)."""
        g = self.g
        if kind == "gelu":  # exact (erf) GELU: x/2 (1 + erf(x/sqrt 2)); onnxruntime fuses this form into one Gelu
            erf = g.op("Erf", [g.op("Div", [x, self.scalar(f"{name}.sqrt2", 2 ** 0.5)], name=f"{name}.scaled")],
                       name=f"{name}.erf")
            half = g.op("Mul", [x, self.scalar(f"{name}.half", 0.5)], name=f"{name}.half_x")
            return g.op("Mul", [half, g.op("Add", [erf, self.scalar(f"{name}.one", 1.0)], name=f"{name}.1p")],
                        name=name)
        if kind == "relu":
            return g.op("Relu", [x], name=name)
        if kind == "relu^2":
            r = g.op("Relu", [x], name=f"{name}.relu")
            return g.op("Mul", [r, r], name=name)
        if kind == "sigmoid":
            return g.op("Sigmoid", [x], name=name)
        if kind == "swish":
            return self.silu(x, name)
        if kind == "selu":
            return g.op("Selu", [x], name=name, alpha=1.6732632423543772, gamma=1.0507009873554805)
        raise ValueError(f"feed-forward activation {kind!r} is not supported by the xLSTM exporter")

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


# -- xLSTMBlockStack / xLSTMLMModel -----------------------------------------------------------------------
def _mlstm_block(net: _Net, block, i: int, x: str, states) -> str:
    g, layer = net.g, block.xlstm
    cell, cfg = layer.mlstm_cell, layer.config
    inner, nh = cfg._inner_embedding_dim, cfg.num_heads
    dh = inner // nh
    p = f"b{i}"
    xn = net.layer_norm(x, block.xlstm_norm, f"{p}.norm")
    x_m, z = net.split(net.linear(xn, layer.proj_up.weight, layer.proj_up.bias, f"{p}.proj_up"), [inner, inner],
                       f"{p}.split")
    x_c = net.silu(net.causal_conv(x_m, layer.conv1d.conv, states["conv"].input, states["conv"].output,
                                   f"{p}.conv"), f"{p}.conv_act")
    gate_in = net.headwise([(x_c, layer.q_proj), (x_c, layer.k_proj), (x_m, layer.v_proj)], f"{p}.qkv")  # [q, k, v]
    w_if = torch.cat([cell.igate.weight, cell.fgate.weight])  # one product for both gates (columns independent)
    b_if = None if cell.igate.bias is None else torch.cat([cell.igate.bias, cell.fgate.bias])
    i_pre, f_pre = net.split(net.linear(gate_in, w_if, b_if, f"{p}.ifgate"), [nh, nh], f"{p}.if_split")
    n_in = g.op("Squeeze", [states["n"].input, g.ints([3])], name=f"{p}.n_in")  # package: [B, NH, DH, 1]
    m_in = g.op("Squeeze", [states["m"].input, g.ints([3])], name=f"{p}.m_in")  # package: [B, NH, 1, 1]
    consts = [net.scalar(f"{p}.q_scale", 1.0), net.scalar(f"{p}.k_scale", dh ** -0.5),
              net.scalar(f"{p}.eps", STACK_EPS_MLSTM)]
    op = "mLSTMSequence" if net.seq else "mLSTMCell"
    qkv_heads = net.to_heads(gate_in, 3 * nh, dh, f"{p}.qkv_heads")  # [..., 3 NH, DH]: q's heads, k's, v's
    heads = g.op("Split", [qkv_heads, g.ints([nh] * 3)], 3, name=f"{p}.qkv_split", axis=-2)
    h, n_out, m_out = g.fresh(f"{p}.h"), g.fresh(f"{p}.n_cell"), g.fresh(f"{p}.m_cell")
    g.custom(op, [*heads, i_pre, f_pre, states["C"].input, n_in, m_in, *consts],
             [h, states["C"].output, n_out, m_out], name=f"{p}.{op}", function=net.function(op))
    g.op("Unsqueeze", [n_out, g.ints([3])], [states["n"].output], name=f"{p}.n_out")
    g.op("Unsqueeze", [m_out, g.ints([3])], [states["m"].output], name=f"{p}.m_out")
    on = cell.outnorm
    h_norm = net.head_norm(h, dh, None if on.weight_proxy is None else f32(on.weight_proxy),
                           None if on.bias is None else f32(on.bias), on.eps, f"{p}.outnorm")
    skip = g.op("Mul", [net.param(f"{p}.learnable_skip", f32(layer.learnable_skip)), x_c], name=f"{p}.skip")
    h_skip = g.op("Add", [h_norm, skip], name=f"{p}.h_skip")
    h_state = g.op("Mul", [h_skip, net.silu(z, f"{p}.z_act")], name=f"{p}.h_gated")
    y = net.linear(h_state, layer.proj_down.weight, layer.proj_down.bias, f"{p}.proj_down")
    return g.op("Add", [x, y], name=f"{p}.residual")


def _slstm_block(net: _Net, block, i: int, x: str, states) -> str:
    g, layer = net.g, block.xlstm
    cell, cfg = layer.slstm_cell, layer.config
    nh, hidden = cfg.num_heads, cfg.embedding_dim
    dh = hidden // nh
    p = f"b{i}"
    xn = net.layer_norm(x, block.xlstm_norm, f"{p}.norm")
    x_c = xn
    if cfg.conv1d_kernel_size > 0:
        x_c = net.silu(net.causal_conv(xn, layer.conv1d.conv, states["conv"].input, states["conv"].output,
                                       f"{p}.conv"), f"{p}.conv_act")
    # the package's sLSTMLayer feeds fgate's projection to the cell's i slot and igate's to f; kept as is
    wx = net.headwise([(x_c, layer.fgate), (x_c, layer.igate), (xn, layer.zgate), (xn, layer.ogate)],
                      f"{p}.gates_x")  # [i, f, z, o] pre-activations, gate-major
    r_ext = cell._recurrent_kernel_int2ext(cell._recurrent_kernel)  # [NH, DH_in, 4, DH_out]
    b_ext = cell._bias_int2ext(cell._bias)  # [NH, 4, DH]
    r, r_scale = net.q.store_stacked(g, f"{p}.R", f32(r_ext.permute(2, 0, 1, 3)))
    weights = [r, net.param(f"{p}.b", f32(b_ext.permute(1, 0, 2).reshape(-1))), *([r_scale] if r_scale else [])]
    op = "sLSTMSequence" if net.seq else "sLSTMCell"
    ins = [states[k].input for k in "ycnm"]
    outs = [states[k].output for k in "ycnm"]
    if net.seq:
        y_all = g.fresh(f"{p}.Y")
        g.custom(op, [wx, *ins, *weights], [y_all, *outs], name=f"{p}.{op}", function=net.function(op),
                 **net.q.op_attributes())
    else:
        g.custom(op, [wx, *ins, *weights], outs, name=f"{p}.{op}", function=net.function(op), **net.q.op_attributes())
        y_all = states["y"].output
    gn = layer.group_norm
    out = net.head_norm(net.to_heads(y_all, nh, dh, f"{p}.y_heads"), dh,
                        None if gn.weight_proxy is None else f32(gn.weight_proxy),
                        None if gn.bias is None else f32(gn.bias), gn.eps, f"{p}.group_norm")
    return g.op("Add", [x, out], name=f"{p}.residual")


def _ffn(net: _Net, block, i: int, x: str) -> str:
    if block.ffn is None:
        return x
    g, ffn, p = net.g, block.ffn, f"b{i}.ffn"
    xn = net.layer_norm(x, block.ffn_norm, f"{p}.norm")
    up = net.linear(xn, ffn.proj_up.weight, ffn.proj_up.bias, f"{p}.proj_up")
    gate, z = net.split(up, [ffn.config._proj_up_dim] * 2, f"{p}.split")
    h = g.op("Mul", [net.activation(ffn.config.act_fn, gate, f"{p}.act"), z], name=f"{p}.gated")
    y = net.linear(h, ffn.proj_down.weight, ffn.proj_down.bias, f"{p}.proj_down")
    return g.op("Add", [x, y], name=f"{p}.residual")


def _float32_states(q: Quantizer, specs) -> None:
    if q.mode is not None:
        q.float32_states.extend(s.name for s in specs.values())


class XLSTMStackRecipe(ExportRecipe):
    """``xlstm.xLSTMBlockStack``: features [B, (T,) E] in, the post-blocks-normed features out."""

    quantization_modes = QUANT_MODES
    quantization_tolerances = STACK_QUANT_TOLERANCES

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        stack = block_stack(model)
        layout = StackStates(stack)
        x_spec, y_spec = self.input_spec(model, g, mode)
        y_spec.dtype = g.quant.io_dtype
        specs = {name: self.state_io(g, name, shape) for name, shape in layout.shapes.items()}
        _float32_states(g.quant, specs)
        net = _Net(g, mode, opset)
        h = self.embed(model, net, x_spec.name)
        kinds = []
        for i, block in enumerate(stack.blocks):
            block_states = {name.split(".", 1)[1]: spec for name, spec in specs.items() if name.startswith(f"b{i}.")}
            if isinstance(block.xlstm, mLSTMLayer):
                h = _mlstm_block(net, block, i, h, block_states)
                kinds.append("mlstm")
            else:
                h = _slstm_block(net, block, i, h, block_states)
                kinds.append("slstm")
            h = _ffn(net, block, i, h)
        if not isinstance(stack.post_blocks_norm, torch.nn.Identity):
            h = net.layer_norm(h, stack.post_blocks_norm, "post_blocks_norm")
        self.head(model, net, h, y_spec.name)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in specs.values():
            g.output(s.output, s.dtype, s.shape)
        return Signature([x_spec], [y_spec], list(specs.values()),
                         extra={"package": "xlstm", "package_version": xlstm.__version__, "blocks": kinds})

    def input_spec(self, model, g, mode):
        e = model.config.embedding_dim
        return self.data_io(g, mode, [e], g.quant.io_dtype, [e])

    def embed(self, model, net: _Net, x: str) -> str:
        """The block input, float32 (a float16 data input is cast)."""
        return x if net.q.io_dtype == "float32" else net.g.op("Cast", [x], name="x_fp32", to=onnx.TensorProto.FLOAT)

    def head(self, model, net: _Net, h: str, y: str) -> None:
        net.q.to_io(net.g, h, y, compute=False)

    def reference(self, model, x, state):
        return run_stack_steps(model, x, state)

    def validate(self, model, mode):
        _check_stack_config(model.config)


class XLSTMLMRecipe(XLSTMStackRecipe):
    """``xlstm.xLSTMLMModel``: token ids in, logits out (embedding -> block stack -> LM head)."""

    def input_spec(self, model, g, mode):
        v = model.config.vocab_size
        return self.data_io(g, mode, [], "int64", [v], in_range=[0, v])

    def embed(self, model, net: _Net, x: str) -> str:
        q = net.q
        return q.to_float32(net.g, q.embedding(net.g, "token_embedding", f32(model.token_embedding.weight), x))

    def head(self, model, net: _Net, h: str, y: str) -> None:
        q = net.q
        direct = q.compute_dtype == q.io_dtype
        logits = net.lm_head(h, model.lm_head.weight, out=y if direct else None)
        if not direct:
            q.to_io(net.g, logits, y)


# -- xLSTMLarge --------------------------------------------------------------------------------------------
def _large_block(net: _Net, block, i: int, x: str, states, config) -> str:
    g, layer, p = net.g, block.mlstm_layer, f"b{i}"
    nh = config.num_heads
    dqk, dv = layer.qk_dim // nh, layer.v_dim // nh
    xn = net.rms_norm(x, block.norm_mlstm, f"{p}.norm_mlstm")
    if config.weight_mode == "single":  # one MatMul for q, k, v, o and one for the gates, as weight_mode "fused"
        parts = [layer.q, layer.k, layer.v, layer.ogate_preact]
        w_qkvo = torch.cat([m.weight for m in parts])
        b_qkvo = None if parts[0].bias is None else torch.cat([m.bias for m in parts])
        w_if = torch.cat([layer.igate_preact.weight, layer.fgate_preact.weight])
        b_if = torch.cat([layer.igate_preact.bias, layer.fgate_preact.bias])
    else:
        w_qkvo, b_qkvo = layer.qkv_opreact.weight, layer.qkv_opreact.bias
        w_if, b_if = layer.ifgate_preact.weight, layer.ifgate_preact.bias
    q, k, v, o = net.split(net.linear(xn, w_qkvo, b_qkvo, f"{p}.qkvo"), [layer.qk_dim, layer.qk_dim, layer.v_dim,
                                                                         layer.v_dim], f"{p}.qkvo_split")
    gates = net.soft_cap(net.linear(xn, w_if, b_if, f"{p}.ifgate"), config.gate_soft_cap, f"{p}.gate_cap")
    i_pre, f_pre = net.split(gates, [nh, nh], f"{p}.if_split")
    consts = [net.scalar(f"{p}.q_scale", dqk ** -0.5), net.scalar(f"{p}.k_scale", 1.0),
              net.scalar(f"{p}.eps", config.eps)]
    op = "mLSTMSequence" if net.seq else "mLSTMCell"
    heads = [net.to_heads(q, nh, dqk, f"{p}.q_heads"), net.to_heads(k, nh, dqk, f"{p}.k_heads"),
             net.to_heads(v, nh, dv, f"{p}.v_heads")]
    h = g.fresh(f"{p}.h")
    g.custom(op, [*heads, i_pre, f_pre, *(states[s].input for s in "Cnm"), *consts],
             [h, *(states[s].output for s in "Cnm")], name=f"{p}.{op}", function=net.function(op))
    mn = layer.multihead_norm
    h_norm = net.head_norm(h, dv, None if mn.weight is None else f32(mn.weight),
                           None if mn.bias is None else f32(mn.bias), mn.eps, f"{p}.multihead_norm")
    h_out = g.op("Mul", [g.op("Sigmoid", [o], name=f"{p}.ogate"), h_norm], name=f"{p}.h_out")
    x = g.op("Add", [x, net.linear(h_out, layer.out_proj.weight, layer.out_proj.bias, f"{p}.out_proj")],
             name=f"{p}.residual_mlstm")
    ffn = block.ffn
    xf = net.rms_norm(x, block.norm_ffn, f"{p}.norm_ffn")
    if config.weight_mode == "single":
        w_up = torch.cat([ffn.proj_up_gate.weight, ffn.proj_up.weight])
        b_up = None if ffn.proj_up.bias is None else torch.cat([ffn.proj_up_gate.bias, ffn.proj_up.bias])
    else:
        w_up, b_up = ffn.proj_up_gate_z.weight, ffn.proj_up_gate_z.bias
    gate, z = net.split(net.linear(xf, w_up, b_up, f"{p}.ffn.proj_up"), [ffn.up_proj_dim] * 2, f"{p}.ffn.split")
    hf = g.op("Mul", [net.silu(gate, f"{p}.ffn.act"), z], name=f"{p}.ffn.gated")
    y = net.linear(hf, ffn.proj_down.weight, ffn.proj_down.bias, f"{p}.ffn.proj_down")
    return g.op("Add", [x, y], name=f"{p}.residual_ffn")


class XLSTMLargeRecipe(ExportRecipe):
    """``xlstm.xlstm_large.model.xLSTMLarge``: token ids in, soft-capped logits out."""

    quantization_modes = QUANT_MODES
    quantization_tolerances = LARGE_QUANT_TOLERANCES

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        config = model.config
        v = config.vocab_size
        q = g.quant
        x_spec, y_spec = self.data_io(g, mode, [], "int64", [v], in_range=[0, v])
        y_spec.dtype = q.io_dtype
        specs = {name: self.state_io(g, name, shape) for name, shape in LargeStates(model).shapes.items()}
        _float32_states(q, specs)
        net = _Net(g, mode, opset)
        h = q.to_float32(g, q.embedding(g, "embedding", f32(model.embedding.weight), x_spec.name))
        for i, block in enumerate(model.backbone.blocks):
            block_states = {s: specs[f"b{i}.{s}"] for s in "Cnm"}
            h = _large_block(net, block, i, h, block_states, config)
        if config.add_out_norm:
            h = net.rms_norm(h, model.backbone.out_norm, "out_norm")
        logits = q.to_float32(g, net.lm_head(h, model.lm_head.weight))
        q.to_io(g, net.soft_cap(logits, config.output_logit_soft_cap, "logit_cap"), y_spec.name, compute=False)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in specs.values():
            g.output(s.output, s.dtype, s.shape)
        return Signature([x_spec], [y_spec], list(specs.values()),
                         extra={"package": "xlstm", "package_version": xlstm.__version__,
                                "blocks": ["mlstm"] * config.num_blocks})

    def reference(self, model, x, state):
        return run_large_steps(model, x, state)
