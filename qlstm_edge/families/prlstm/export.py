"""PR-LSTM export: the custom ops ``qlstm_edge::PRLSTMStep`` / ``PRLSTMSequence`` and the graph recipe.

One custom node per model and mode; it carries the whole recursive cell (leaf encoder, the shared merge
and its unary refinements) and the binary-counter stack. The ops' signatures are in ops.py (docs/ops.md); weights
are input-major (x @ W, no Transpose).

Gate order along the last axis: W_leaf i, g, o; W_merge i, g, o, f_l, f_r (rows [h_l; h_r]); W_unary[k]
i, g, o, f. R = num_layers - 1 (R = 0 is a [0, H, 4H] tensor). K (the stack depth) is the states' second
dimension. The state is the one of ``PRLSTMState`` (model.py): block and prefix (h, c) per level, zero
where bit b of count is 0, and the token count; y / Y[:, t] is h of the prefix state P(count + t + 1).

Step body: leaf; a Loop over the carries (trip count = the largest number of trailing ones of count in
the batch, amortised one merge per token), each carry merging the stack block of that level (left) with
the block being built (right); then ONE merge gives the new prefix: P(n+1) = merge(P(n+1 - 2^t), block)
with P(n+1 - 2^t) read from the prefix state of the lowest occupied level above t.
Sequence body: leaves of the chunk with one MatMul, then two Loops over levels (trip count U <= K,
computed in the graph: the number of levels at which count and count+T fall in different blocks):
up-sweep (level b+1 = ONE batched merge of the pairs of level b, the first pair completed by the stack
block of level b when bit b of count is set), down-sweep (ONE batched merge per level gives the prefix at
the end of every left child; a right child's prefix is its parent's). O(log T) depth, about 2T merges,
exact for every T and for streams at different positions in the batch.
A stream holds at most 2^K - 1 tokens (metadata ``extra["max_steps"]``); StreamingSession refuses a call
that would pass it. Run directly, the graph returns NaN outputs at positions past the limit.
The bodies unroll the R unary refinements (R is fixed per exported model) and use standard ops only.

Quantized weights (exporters/quantize.py has the op contract; input positions never move). The matrices are
W_leaf, W_merge and W_unary; W_unary is a stack of R matrices [H, 4H] and each slice W_unary[k] follows the
contract's [K, N] rule with its own scale slice W_unary_scale[k] (``Quantizer.store_stacked``):
    fp16          W_leaf, W_merge, W_unary float16 and x float16; the products x W_leaf, [h_l; h_r] W_merge and
                  h W_unary[k] run in float16 (h cast), their results and everything after them in float32.
    int8,         W_leaf, W_merge, W_unary int8, symmetric per output channel (of each slice); appended inputs
    int8-dynamic  12-14: W_leaf_scale[3H], W_merge_scale[5H], W_unary_scale[R,4H]. int8-dynamic quantizes x,
                  [h_l; h_r] and h per row (per stream, token and tree node) and multiplies with MatMulInteger.
    int4          W_leaf, W_merge, W_unary packed two per byte: uint8 [D, ceil(3H/2)], [2H, ceil(5H/2)],
                  [R, H, 2H]; blocks of bs = block_size rows along the input axis: W_leaf_scale[ceil(D/bs),3H],
                  W_merge_scale[ceil(2H/bs),5H], W_unary_scale[R,ceil(H/bs),4H].
    Quantized nodes carry the attributes quant_mode (string) and block_size (int, 0 unless int4). Biases, the
    embedding / input map and the head follow the standard-op rules of exporters/quantize.py.
The four float states stay float32 in every mode. They are the binary-counter stack: a level holds a block
or prefix summary of up to 2^b tokens that is merged again at every higher level and, in ``prefix``, read for
every later token. c sums both children's forget-gated cells (c = i g + f_l c_l + f_r c_r), so it is not
squashed: without unary refinements (num_layers = 1) |c| grows with the tree depth (about 2 at 2,000 tokens
on random models) and it carries most of a quantized model's error. Rounding the states to float16 would
add a 2^-11 relative error at each of the log2(T) merges that re-read them.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ...exporters.graph import FunctionBuilder, GraphBuilder, NodeBuilder, op_function, subgraph
from ...exporters.quantize import MODES as QUANT_MODES, Quantizer, Weight
from ...exporters.recipe import CoreIO, ExportRecipe, SequenceModelIO, Signature, f32
from ...ops import OpSpec
from .model import PRLSTM, PRLSTMModel, PRLSTMState
from .ops import SEQUENCE, STEP

STATES = STEP.regular_inputs[1:6]  # the op's state inputs: the stack, then count
WEIGHTS = STEP.regular_inputs[6:]
MATRICES = list(STEP.matrices)  # quantized inputs; their scales are appended in this order
STATE_NAMES = ["block.h", "block.c", "prefix.h", "prefix.c", "count"]  # metadata names
STEP_COUNTER = "count"


def loop_body(name: str, nodes: NodeBuilder, inputs: List[str], outputs: List[str]) -> onnx.GraphProto:
    """A Loop body: (iteration, cond, carried...) -> (cond, carried..., scan outputs...).

    The iteration number and the condition are typed (onnxruntime needs them); the rest come from the
    call site, as for the untyped Scan bodies of the QL-LSTM ops.
    """
    graph = subgraph(name, nodes, inputs, outputs)
    for v, elem in ((graph.input[0], TensorProto.INT64), (graph.input[1], TensorProto.BOOL),
                    (graph.output[0], TensorProto.BOOL)):
        v.CopyFrom(helper.make_tensor_value_info(v.name, elem, []))  # the name as subgraph() made it unique
    return graph


class _Body:
    """Emits the PR-LSTM maths into a NodeBuilder (a function body or a Loop body of one)."""

    def __init__(self, nb: NodeBuilder, opset: int, unary: int, q: Quantizer, weights: Dict[str, Weight]):
        self.nb, self.opset, self.unary, self.q, self.weights = nb, opset, unary, q, weights

    def nested(self, nb: NodeBuilder) -> "_Body":
        """The same maths emitted into ``nb`` (a Loop body of this one), with the same prepared weights."""
        return _Body(nb, self.opset, self.unary, self.q, self.weights)

    def matmul(self, x: str, matrix: str, name: str, x_is_compute: bool = False) -> str:
        """x @ W as float32, for W one of the prepared weights (``prepare_weights``)."""
        w, scale = self.weights[matrix]
        return self.q.body_matmul(self.nb, x, w, scale, self.opset, name=name, x_is_compute=x_is_compute)

    def true(self) -> str:
        """A Loop's explicit condition (onnx.reference runs no iteration when the condition is omitted)."""
        return self.nb.op("Constant", [], name="loop_cond", value=numpy_helper.from_array(np.array(True)))

    def scalar(self, value: int, name: str = "scalar") -> str:
        return self.nb.op("Constant", [], name=name, value=numpy_helper.from_array(np.array(value, np.int64)))

    def ints(self, values) -> str:
        return self.nb.ints(values)

    def split(self, z: str, parts: int, name: str) -> List[str]:
        return self.nb.split_equal(z, parts, -1, self.opset, name)

    def reduce_max(self, x: str, axis: int, name: str) -> str:
        return self.nb.reduce("ReduceMax", x, axis, 0, self.opset, name)

    def flat(self, x: str, name: str) -> str:
        """x as a vector: Loop scan outputs are kept rank 1 (onnx.reference stacks them with np.vstack)."""
        return self.nb.op("Reshape", [x, self.ints([-1])], name=name)

    def unsq(self, x: str, axes, name: str = "unsq") -> str:
        return self.nb.op("Unsqueeze", [x, self.ints(axes)], name=name)

    def dim(self, x: str, axis: int, name: str) -> str:
        """Size of axis ``axis`` of x as an int64 scalar."""
        return self.nb.op("Gather", [self.nb.op("Shape", [x], name=f"{name}.shape"), self.scalar(axis)], name=name,
                          axis=0)

    def at(self, x: str, index: str, axis: int, name: str) -> str:
        """x indexed by an int64 scalar along ``axis`` (the axis is removed)."""
        return self.nb.op("Gather", [x, index], name=name, axis=axis)

    def slice(self, x: str, start: str, end: str, axis: int, name: str) -> str:
        """x[start:end] along ``axis``; start and end are int64 tensors of shape [1]."""
        return self.nb.op("Slice", [x, start, end, self.ints([axis])], name=name)

    def bits(self, v: str, pow2: str, name: str) -> str:
        """[B, K] int64: bit b of v[B] for the K powers of two in pow2."""
        nb = self.nb
        return nb.op("Mod", [nb.op("Div", [self.unsq(v, [1]), pow2], name=f"{name}.shift"), self.scalar(2)],
                     name=name)

    def leaf(self, x: str) -> Tuple[str, str]:
        """leaf(x): [i; g; o] = x W_leaf + b_leaf; c = sig(i) tanh(g); h = sig(o) tanh(c)."""
        nb = self.nb
        z = nb.op("Add", [self.matmul(x, "W_leaf", "leaf.xW", x_is_compute=True), "b_leaf"], name="leaf.z")
        i, g, o = self.split(z, 3, "leaf.gates")
        c = nb.op("Mul", [nb.op("Sigmoid", [i], name="leaf.i"), nb.op("Tanh", [g], name="leaf.g")], name="leaf.c")
        h = nb.op("Mul", [nb.op("Sigmoid", [o], name="leaf.o"), nb.op("Tanh", [c], name="leaf.tanh_c")],
                  name="leaf.h")
        return h, c

    def combine(self, h_l: str, c_l: str, h_r: str, c_r: str) -> Tuple[str, str]:
        """merge(l, r), then the unary refinements; any leading dims."""
        nb = self.nb
        z = nb.op("Add", [self.matmul(nb.op("Concat", [h_l, h_r], name="merge.hh", axis=-1), "W_merge", "merge.hW"),
                          "b_merge"], name="merge.z")
        i, g, o, f_l, f_r = self.split(z, 5, "merge.gates")
        c = nb.op("Add", [nb.op("Mul", [nb.op("Sigmoid", [i], name="merge.i"), nb.op("Tanh", [g], name="merge.g")],
                                name="merge.ig"),
                          nb.op("Add", [nb.op("Mul", [nb.op("Sigmoid", [f_l], name="merge.f_l"), c_l],
                                              name="merge.fc_l"),
                                        nb.op("Mul", [nb.op("Sigmoid", [f_r], name="merge.f_r"), c_r],
                                              name="merge.fc_r")], name="merge.fc")], name="merge.c")
        h = nb.op("Mul", [nb.op("Sigmoid", [o], name="merge.o"), nb.op("Tanh", [c], name="merge.tanh_c")],
                  name="merge.h")
        for k in range(self.unary):
            z = nb.op("Add", [self.matmul(h, f"W_unary.{k}", f"unary{k}.hW"), f"b_unary.{k}"], name=f"unary{k}.z")
            i, g, o, f = self.split(z, 4, f"unary{k}.gates")
            c = nb.op("Add", [nb.op("Mul", [nb.op("Sigmoid", [i], name=f"unary{k}.i"),
                                            nb.op("Tanh", [g], name=f"unary{k}.g")], name=f"unary{k}.ig"),
                              nb.op("Mul", [nb.op("Sigmoid", [f], name=f"unary{k}.f"), c], name=f"unary{k}.fc")],
                      name=f"unary{k}.c")
            h = nb.op("Mul", [nb.op("Sigmoid", [o], name=f"unary{k}.o"),
                              nb.op("Tanh", [c], name=f"unary{k}.tanh_c")], name=f"unary{k}.h")
        return h, c

    def stack_constants(self) -> Dict[str, str]:
        """levels [K], pow2 [K], pow2_K (scalar 2^K), K (scalar), all int64, from block_h's shape."""
        nb = self.nb
        K = self.dim("block_h", 1, "K")
        one = self.scalar(1, "one")
        levels1 = nb.op("Range", [self.scalar(0, "zero"), nb.op("Add", [K, one], name="K_plus_1"), one],
                        name="levels_0_to_K")
        shifted = nb.op("BitShift", [nb.op("Cast", [one], name="one_u64", to=TensorProto.UINT64),
                                     nb.op("Cast", [levels1], name="levels_u64", to=TensorProto.UINT64)],
                        name="pow2_u64", direction="LEFT")
        pow2_1 = nb.op("Cast", [shifted], name="pow2_0_to_K", to=TensorProto.INT64)
        k_1d = self.unsq(K, [0], "K_1d")
        pow2 = self.slice(pow2_1, self.ints([0]), k_1d, 0, "pow2")
        levels = self.slice(levels1, self.ints([0]), k_1d, 0, "levels")
        return {"K": K, "levels": levels, "pow2": pow2, "pow2_1": pow2_1, "pow2_K": self.at(pow2_1, K, 0, "pow2_K")}

    def nan_past_limit(self, y: str, positions: str, pow2_K: str) -> str:
        """y with NaN where the 1-based stream position exceeds 2^K - 1 (positions: y's shape less its last axis)."""
        nb = self.nb
        over = nb.op("GreaterOrEqual", [positions, pow2_K], name="past_limit")
        nan = nb.const(float("nan"), y)
        return nb.op("Where", [self.unsq(over, [-1], "past_limit3"), nan, y], name="y_checked")


def prepare_weights(fb: FunctionBuilder, q: Quantizer, unary: int) -> Dict[str, Weight]:
    """The matrices as the body's MatMuls read them (``q.body_weight``), at the function's top level so that
    dequantization runs once per call, not per Loop iteration; ``W_unary.k`` / ``b_unary.k`` are slice k of the
    stacked unary weights."""
    scales = dict(zip(MATRICES, q.scale_inputs(MATRICES)))
    weights = {m: (q.body_weight(fb, m, scales.get(m)), scales.get(m)) for m in ("W_leaf", "W_merge")}
    # the stack is prepared once and sliced (weight-only modes dequantized, int8-dynamic unsigned)
    source = q.body_stacked(fb, "W_unary", scales.get("W_unary"), name="W_unary_dq")
    for k in range(unary):
        idx = fb.op("Constant", [], name="unary.index", value=numpy_helper.from_array(np.array(k, np.int64)))
        fb.op("Gather", [source, idx], [f"W_unary.{k}"], name=f"W_unary.{k}", axis=0)
        fb.op("Gather", ["b_unary", idx], [f"b_unary.{k}"], name=f"b_unary.{k}", axis=0)
        scale = (fb.op("Gather", [scales["W_unary"], idx], [f"W_unary_scale.{k}"], name=f"W_unary_scale.{k}", axis=0)
                 if q.dynamic else None)  # int8-dynamic: the slice's scale for MatMulInteger
        weights[f"W_unary.{k}"] = (f"W_unary.{k}", scale)
    return weights


def _op_function(spec: OpSpec, opset: int, unary: int, q: Optional[Quantizer]):
    """The builder of a PR-LSTM op's body (both ops take the same inputs: x, the stack, the weights, their scales),
    with its quantizer, body helper (over the prepared weights) and stack constants."""
    q = q or Quantizer()
    fb = op_function(spec, q)
    e = _Body(fb, opset, unary, q, prepare_weights(fb, q, unary))
    return q, fb, e, e.stack_constants()


def step_function(opset: int, unary: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q, fb, e, k = _op_function(STEP, opset, unary, q)
    h0, c0 = e.leaf("x")
    nbits = e.bits("count", k["pow2"], "count_bits")  # [B,K]
    zeros_bits = fb.op("Cast", [fb.op("Equal", [nbits, e.scalar(0)], name="free")], name="free_i32",
                       to=TensorProto.INT32)
    t = fb.op("ArgMax", [zeros_bits], name="carries", axis=1, keepdims=0)  # trailing ones of count = new level
    trips = e.reduce_max(t, 0, "carry_trips")

    body = NodeBuilder(prefix="carry.")
    be = e.nested(body)
    sel = be.unsq(body.op("Less", ["b", t], name="active"), [1], "active2")
    lh, lc = be.at("block_h", "b", 1, "stack_h"), be.at("block_c", "b", 1, "stack_c")
    mh, mc = be.combine(lh, lc, "cur_h", "cur_c")
    nh = body.op("Where", [sel, mh, "cur_h"], name="cur_h_next")
    nc = body.op("Where", [sel, mc, "cur_c"], name="cur_c_next")
    body.op("Identity", ["cond"], ["cond_out"], name="cond_out")
    graph = loop_body("prlstm_carry", body, ["b", "cond", "cur_h", "cur_c"], ["cond_out", nh, nc])
    cur_h, cur_c = fb.op("Loop", [trips, e.true(), h0, c0], ["block_new_h", "block_new_c"], name="carry", body=graph)

    # the new prefix: merge(P(n+1 - 2^t), new block), P(n+1 - 2^t) = prefix of the lowest occupied level above t
    t2 = e.unsq(t, [1], "t2")
    above = fb.op("And", [fb.op("Equal", [nbits, e.scalar(1)], name="occupied"),
                          fb.op("Less", [t2, k["levels"]], name="above_t")], name="occupied_above")
    above_i = fb.op("Cast", [above], name="occupied_above_i32", to=TensorProto.INT32)
    has_base = fb.op("Cast", [e.reduce_max(above_i, 1, "has_base_i32")], name="has_base", to=TensorProto.BOOL)
    base_level = e.unsq(fb.op("ArgMax", [above_i], name="base_level", axis=1, keepdims=0), [1], "base_level2")
    base_h = fb.op("GatherND", ["prefix_h", base_level], name="base_h", batch_dims=1)
    base_c = fb.op("GatherND", ["prefix_c", base_level], name="base_c", batch_dims=1)
    mh, mc = e.combine(base_h, base_c, cur_h, cur_c)
    has2 = e.unsq(has_base, [1], "has_base2")
    p_h = fb.op("Where", [has2, mh, cur_h], name="prefix_new_h")
    p_c = fb.op("Where", [has2, mc, cur_c], name="prefix_new_c")
    pos = fb.op("Add", ["count", e.scalar(1)], name="position")
    fb.op("Identity", [e.nan_past_limit(p_h, pos, k["pow2_K"])], ["y"], name="y")

    lvl = e.unsq(k["levels"], [0], "levels2")
    at_t = e.unsq(fb.op("Equal", [lvl, t2], name="at_t"), [2], "at_t3")
    below_t = e.unsq(fb.op("Less", [lvl, t2], name="below_t"), [2], "below_t3")
    zero = fb.const(0.0, "block_h")
    for name, new in (("block_h", cur_h), ("block_c", cur_c), ("prefix_h", p_h), ("prefix_c", p_c)):
        cleared = fb.op("Where", [below_t, zero, name], name=f"{name}.cleared")
        fb.op("Where", [at_t, e.unsq(new, [1], f"{name}.new3"), cleared], [f"{name}_out"], name=f"{name}_out")
    fb.op("Add", ["count", e.scalar(1)], ["count_out"], name="count_out")
    return q.declare_attributes(fb.build(opset))


def sequence_function(opset: int, unary: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q, fb, e, k = _op_function(SEQUENCE, opset, unary, q)
    leaf_h, leaf_c = e.leaf("x")  # [B,T,H]
    c = _chunk_levels(e, k)
    c.has_base, c.base_h, c.base_c = _prefix_bases(e, k, c.nbits)
    up = _up_sweep(e, c, leaf_h, leaf_c)
    y_h, pre_h, pre_c = _down_sweep(e, c, up)
    positions = fb.op("Add", [e.unsq(c.n, [1], "n_col"),
                              fb.op("Range", [e.scalar(1), fb.op("Add", [c.T, e.scalar(1)], name="T_plus_1"),
                                              e.scalar(1)], name="offsets")], name="positions")  # [B,T]
    fb.op("Identity", [e.nan_past_limit(y_h, positions, k["pow2_K"])], ["Y"], name="Y")
    _stack_after_chunk(e, k, c, up, pre_h, pre_c)
    return q.declare_attributes(fb.build(opset))


def _chunk_levels(e: "_Body", k: Dict[str, str]) -> SimpleNamespace:
    """Where a chunk of T tokens at stream position n = count falls in the stack: T, end = n + T, the bits of n
    and of end per level, U (the number of levels the chunk completes blocks of) and, per level, the index of
    the block that ends the stream's part of that level at n + T."""
    fb = e.nb
    T = e.dim("x", 1, "T")
    n = "count"
    end = fb.op("Add", [n, T], name="end")
    nbits = e.bits(n, k["pow2"], "count_bits")  # [B,K]
    end_bits = e.bits(end, k["pow2"], "end_bits")
    # U: levels b at which n and n+T lie in different blocks (then the chunk completes blocks of level b)
    differ = fb.op("Not", [fb.op("Equal", [fb.op("Div", [e.unsq(n, [1], "n2"), k["pow2_1"]], name="n_blocks"),
                                          fb.op("Div", [e.unsq(end, [1], "end2"), k["pow2_1"]], name="end_blocks")],
                                 name="same_block")], name="differ")
    u_rows = fb.op("ReduceSum", [fb.op("Cast", [differ], name="differ_i64", to=TensorProto.INT64), e.ints([1])],
                   name="levels_per_row", keepdims=0)
    U = fb.op("Min", [e.reduce_max(u_rows, 0, "levels_max"), k["K"]], name="U")
    # e_b: index (in level b's chunk frame) of the block that ends the stream's level-b part at n+T
    last = fb.op("Sub", [fb.op("Sub", [fb.op("Div", [e.unsq(end, [1], "end2b"), k["pow2"]], name="end_idx"),
                                      e.scalar(1)], name="last_idx"),
                         fb.op("Div", [e.unsq(n, [1], "n2b"), k["pow2"]], name="n_idx")], name="last_local")
    return SimpleNamespace(T=T, n=n, end=end, nbits=nbits, end_bits=end_bits, U=U, last=last)


def _prefix_bases(e: "_Body", k: Dict[str, str], nbits: str) -> Tuple[str, str, str]:
    """Per level b, the prefix a level-b block of the chunk continues from: P(n with bits <= b cleared), the prefix
    state of the lowest occupied level above b. Returns (has_base [B, K] bool, base_h, base_c [B, K, H])."""
    fb = e.nb
    occupied = fb.op("Equal", [nbits, e.scalar(1)], name="occupied")
    lvl_col, lvl_row = e.unsq(k["levels"], [1], "levels_col"), e.unsq(k["levels"], [0], "levels_row")
    cand = fb.op("Cast", [fb.op("And", [e.unsq(occupied, [1], "occupied3"),
                                        fb.op("Less", [lvl_col, lvl_row], name="above")], name="cand")],
                 name="cand_i32", to=TensorProto.INT32)  # [B, b, l]
    has_base = fb.op("Cast", [e.reduce_max(cand, 2, "has_base_i32")], name="has_base", to=TensorProto.BOOL)
    base_idx = fb.op("Expand", [e.unsq(fb.op("ArgMax", [cand], name="base_level", axis=2, keepdims=0), [2],
                                       "base_level3"), fb.op("Shape", ["prefix_h"], name="state_shape")],
                     name="base_index")
    base_h = fb.op("GatherElements", ["prefix_h", base_idx], name="base_h", axis=1)  # [B,K,H]
    base_c = fb.op("GatherElements", ["prefix_c", base_idx], name="base_c", axis=1)
    return has_base, base_h, base_c


def _up_sweep(e: "_Body", c: SimpleNamespace, leaf_h: str, leaf_c: str) -> SimpleNamespace:
    """The up-sweep Loop over the U levels: level b+1 = ONE batched merge of the pairs of level b (the first pair
    completed by the stack block of level b when bit b of count is set). Returns the left children of every
    level [U, B, M1, H], the last block of every level and the level sizes."""
    fb, T, U, nbits, last = e.nb, c.T, c.U, c.nbits, c.last
    m_pad = e.unsq(fb.op("Div", [fb.op("Add", [T, e.scalar(2)], name="T_plus_2"), e.scalar(2)], name="M1"), [0],
                   "M1_1d")

    up = NodeBuilder(prefix="up.")
    ue = e.nested(up)
    M = ue.dim("A_h", 1, "M")
    bit = ue.unsq(up.op("Cast", [ue.at(nbits, "b", 1, "bit_i64")], name="bit", to=TensorProto.BOOL), [1, 2], "bit3")
    hd = up.op("Shape", ["A_h"], name="A_shape")
    pair_shape = up.op("Concat", [ue.ints([0, -1, 2]), up.op("Slice", [hd, ue.ints([2]), ue.ints([3])],
                                                            name="H_1d")], name="pair_shape", axis=0)
    n_pairs = up.op("Div", [up.op("Add", [M, ue.scalar(2)], name="M_plus_2"), ue.scalar(2)], name="pairs")
    pair_len = ue.unsq(up.op("Mul", [n_pairs, ue.scalar(2)], name="pair_len"), [0], "pair_len_1d")
    pad_amount = up.op("Sub", [m_pad, ue.unsq(n_pairs, [0], "pairs_1d")], name="pad_amount")  # [1]: M1 - pairs
    pads = up.op("Concat", [ue.ints([0, 0, 0, 0]), pad_amount, ue.ints([0])], name="pads", axis=0)
    last_b = ue.at(last, "b", 1, "last_b")
    last_idx = ue.unsq(up.op("Max", [up.op("Min", [last_b, up.op("Sub", [M, ue.scalar(1)], name="M_minus_1")],
                                           name="last_hi"), ue.scalar(0)], name="last_clipped"), [1], "last_idx")
    lefts, blocks, pairs = [], [], {}
    for s, state in (("h", "block_h"), ("c", "block_c")):
        a = f"A_{s}"
        stack = ue.unsq(ue.at(state, "b", 1, f"stack_{s}"), [1], f"stack_{s}3")  # [B,1,H]
        zero = up.op("Expand", [up.const(0.0, a), up.op("Shape", [stack], name=f"stack_{s}.shape")],
                     name=f"zero_{s}")
        ext = up.op("Where", [bit, up.op("Concat", [stack, a], name=f"front_{s}", axis=1),
                              up.op("Concat", [a, zero], name=f"back_{s}", axis=1)], name=f"E_{s}")
        even = ue.slice(up.op("Concat", [ext, zero], name=f"E_pad_{s}", axis=1), ue.ints([0]), pair_len, 1,
                        f"E_even_{s}")
        pr = up.op("Reshape", [even, pair_shape], name=f"pairs_{s}")  # [B, pairs, 2, H]
        pairs[s] = (ue.at(pr, ue.scalar(0), 2, f"left_{s}"), ue.at(pr, ue.scalar(1), 2, f"right_{s}"))
        lefts.append(ue.flat(up.op("Pad", [pairs[s][0], pads], name=f"left_padded_{s}"), f"left_flat_{s}"))
        blocks.append(ue.flat(up.op("GatherND", [a, last_idx], name=f"last_block_{s}", batch_dims=1),
                              f"last_block_flat_{s}"))
    nh, nc = ue.combine(pairs["h"][0], pairs["c"][0], pairs["h"][1], pairs["c"][1])
    up.op("Identity", ["cond"], ["cond_out"], name="cond_out")
    m_out = ue.unsq(M, [0], "M_out")
    graph = loop_body("prlstm_up", up, ["b", "cond", "A_h", "A_c"], ["cond_out", nh, nc, *lefts, *blocks, m_out])
    top_h, _, lefts_h, lefts_c, last_h, last_c, sizes = fb.op(
        "Loop", [U, e.true(), leaf_h, leaf_c],
        ["top_h", "top_c", "lefts_flat_h", "lefts_flat_c", "last_block_h", "last_block_c", "level_sizes"],
        name="up_sweep", body=graph)
    state_shape = fb.op("Shape", ["block_h"], name="stack_shape")
    B_1d = fb.op("Slice", [state_shape, e.ints([0]), e.ints([1])], name="B_1d")
    H_1d = fb.op("Slice", [state_shape, e.ints([2]), e.ints([3])], name="H_1d")
    lefts_shape = fb.op("Concat", [e.ints([-1]), B_1d, m_pad, H_1d], name="lefts_shape", axis=0)
    per_level_shape = fb.op("Concat", [e.ints([-1]), B_1d, H_1d], name="per_level_shape", axis=0)
    lefts_h = fb.op("Reshape", [lefts_h, lefts_shape], name="lefts_h")  # [U, B, M1, H]
    lefts_c = fb.op("Reshape", [lefts_c, lefts_shape], name="lefts_c")
    return SimpleNamespace(top_h=top_h, lefts_h=lefts_h, lefts_c=lefts_c, last_h=last_h, last_c=last_c, sizes=sizes,
                           per_level_shape=per_level_shape)


def _down_sweep(e: "_Body", c: SimpleNamespace, up: SimpleNamespace) -> Tuple[str, str, str]:
    """The down-sweep Loop, top level first: ONE batched merge per level gives the prefix at the end of every left
    child (a right child's prefix is its parent's). Returns (Y's h [B, T, H], the last prefix of every level h, c)."""
    fb, U, nbits, last, has_base = e.nb, c.U, c.nbits, c.last, c.has_base
    base_h, base_c, lefts_h, lefts_c, sizes, top_h = c.base_h, c.base_c, up.lefts_h, up.lefts_c, up.sizes, up.top_h
    dn = NodeBuilder(prefix="down.")
    de = e.nested(dn)
    b = dn.op("Sub", [dn.op("Sub", [U, de.scalar(1)], name="U_minus_1"), "i"], name="b")
    Mn = de.unsq(de.dim("Q_h", 1, "Mn"), [0], "Mn_1d")
    M_b = de.at(sizes, b, 0, "M_b")  # [1]
    bit = de.unsq(dn.op("Cast", [de.at(nbits, b, 1, "bit_i64")], name="bit", to=TensorProto.BOOL), [1, 2], "bit3")
    first = dn.op("Equal", [dn.op("Range", [de.scalar(0), de.dim("Q_h", 1, "Mn_scalar"), de.scalar(1)],
                                  name="pair_index"), de.scalar(0)], name="first_pair")
    no_base = dn.op("Not", [de.at(has_base, b, 1, "has_base_b")], name="no_base")
    alone = de.unsq(dn.op("And", [de.unsq(no_base, [1], "no_base2"), de.unsq(first, [0], "first2")],
                          name="alone"), [2], "alone3")  # P(end of first left child) = the block itself
    left, prev = {}, {}
    for s, base in (("h", base_h), ("c", base_c)):
        left[s] = de.slice(de.at(lefts_h if s == "h" else lefts_c, b, 0, f"lefts_{s}"), de.ints([0]), Mn, 1,
                           f"left_{s}")
        shifted = dn.op("Concat", [de.unsq(de.at(base, b, 1, f"base_{s}"), [1], f"base_{s}3"), f"Q_{s}"],
                        name=f"Q_prev_ext_{s}", axis=1)
        prev[s] = de.slice(shifted, de.ints([0]), Mn, 1, f"Q_prev_{s}")
    mh, mc = de.combine(prev["h"], prev["c"], left["h"], left["c"])
    hd = dn.op("Shape", ["Q_h"], name="Q_shape")
    flat_shape = dn.op("Concat", [de.ints([0, -1]), dn.op("Slice", [hd, de.ints([2]), de.ints([3])], name="H_1d")],
                       name="flat_shape", axis=0)
    last_b = de.at(last, b, 1, "last_b")
    m_b_last = dn.op("Sub", [dn.op("Squeeze", [M_b], name="M_b_scalar"), de.scalar(1)], name="M_b_minus_1")
    last_idx = de.unsq(dn.op("Max", [dn.op("Min", [last_b, m_b_last], name="last_hi"), de.scalar(0)],
                             name="last_clipped"), [1], "last_idx")
    q_out, pre_out = [], []
    for s, merged in (("h", mh), ("c", mc)):
        lq = dn.op("Where", [alone, left[s], merged], name=f"left_prefix_{s}")
        inter = dn.op("Concat", [de.unsq(lq, [2], f"left_prefix3_{s}"), de.unsq(f"Q_{s}", [2], f"right_prefix3_{s}")],
                      name=f"interleave_{s}", axis=2)
        full = dn.op("Reshape", [inter, flat_shape], name=f"Q_full_{s}")
        q_next = dn.op("Where", [bit, de.slice(full, de.ints([1]),
                                               dn.op("Add", [M_b, de.ints([1])], name=f"M_b_plus_1_{s}"), 1,
                                               f"Q_from_1_{s}"),
                                 de.slice(full, de.ints([0]), M_b, 1, f"Q_from_0_{s}")], name=f"Q_next_{s}")
        q_out.append(q_next)
        pre_out.append(de.flat(dn.op("GatherND", [q_next, last_idx], name=f"last_prefix_{s}", batch_dims=1),
                               f"last_prefix_flat_{s}"))
    dn.op("Identity", ["cond"], ["cond_out"], name="cond_out")
    graph = loop_body("prlstm_down", dn, ["i", "cond", "Q_h", "Q_c"], ["cond_out", *q_out, *pre_out])
    q0 = fb.op("ConstantOfShape", [fb.op("Shape", [top_h], name="top_shape")], name="Q_top",
               value=numpy_helper.from_array(np.zeros(1, np.float32)))
    q0 = fb.op("CastLike", [q0, top_h], name="Q_top_like")
    y_h, _, pre_h, pre_c = fb.op("Loop", [U, e.true(), q0, q0], ["prefix_all_h", "prefix_all_c", "last_prefix_h",
                                                           "last_prefix_c"], name="down_sweep", body=graph)
    return y_h, pre_h, pre_c


def _stack_after_chunk(e: "_Body", k: Dict[str, str], c: SimpleNamespace, up: SimpleNamespace, pre_h: str,
                       pre_c: str) -> None:
    """The stack state at n + T: levels b < U whose last block ends inside the chunk come from the sweeps, the
    other occupied levels are kept, the rest cleared; count advances by T."""
    fb, U, last, end = e.nb, c.U, c.last, c.end
    end_bits, last_h, last_c, per_level_shape = c.end_bits, up.last_h, up.last_c, up.per_level_shape
    occ_end = fb.op("Equal", [end_bits, e.scalar(1)], name="end_occupied")
    take = fb.op("And", [occ_end, fb.op("GreaterOrEqual", [last, e.scalar(0)], name="in_chunk")], name="take")
    keep = fb.op("And", [occ_end, fb.op("Not", [take], name="not_take")], name="keep")
    take3, keep3 = e.unsq(take, [2], "take3"), e.unsq(keep, [2], "keep3")
    pad_levels = fb.op("Concat", [e.ints([0, 0, 0, 0]), e.unsq(fb.op("Sub", [k["K"], U], name="K_minus_U"), [0],
                                                                "K_minus_U_1d"), e.ints([0])], name="level_pads",
                       axis=0)
    reverse = fb.op("Sub", [fb.op("Sub", [U, e.scalar(1)], name="U_minus_1"),
                            fb.op("Range", [e.scalar(0), U, e.scalar(1)], name="down_order")], name="level_order")
    zero = fb.const(0.0, "block_h")
    for name, swept, top_down in (("block_h", last_h, False), ("block_c", last_c, False),
                                  ("prefix_h", pre_h, True), ("prefix_c", pre_c, True)):
        swept = fb.op("Reshape", [swept, per_level_shape], name=f"{name}.per_level")  # [U, B, H]
        if top_down:
            swept = fb.op("Gather", [swept, reverse], name=f"{name}.level_order", axis=0)
        per_level = fb.op("Pad", [fb.op("Transpose", [swept], name=f"{name}.batch_major", perm=[1, 0, 2]),
                                  pad_levels], name=f"{name}.swept")  # [B,K,H]
        kept = fb.op("Where", [keep3, name, zero], name=f"{name}.kept")
        fb.op("Where", [take3, per_level, kept], [f"{name}_out"], name=f"{name}_out")
    fb.op("Identity", [end], ["count_out"], name="count_out")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def cell_weights(core: PRLSTM) -> Dict[str, np.ndarray]:
    """The parameters in the ops' layout (input-major; the unary layers stacked)."""
    H = core.hidden_size
    return {"W_leaf": f32(core.leaf.weight).T, "b_leaf": f32(core.leaf.bias),
            "W_merge": f32(core.merge.weight).T, "b_merge": f32(core.merge.bias),
            "W_unary": np.stack([f32(u.weight).T for u in core.unary]) if len(core.unary)
            else np.zeros((0, H, 4 * H), np.float32),
            "b_unary": np.stack([f32(u.bias) for u in core.unary]) if len(core.unary)
            else np.zeros((0, 4 * H), np.float32)}


def op_weights(q: Quantizer, g: GraphBuilder, core: PRLSTM) -> List[str]:
    """The op's weight inputs in contract order: WEIGHTS, then (integer modes) the scales of MATRICES."""
    w = cell_weights(core)
    front = q.op_weights(g, "", {k: w[k] for k in WEIGHTS[:4]}, ["W_leaf", "W_merge"])  # + 2 scales
    w_unary, unary_scale = q.store_stacked(g, "W_unary", w["W_unary"])
    b_unary = q.param(g, "b_unary", w["b_unary"], "float32")
    return [*front[:4], w_unary, b_unary, *front[4:], *([unary_scale] if unary_scale else [])]


class PRLSTMCoreRecipe(CoreIO, ExportRecipe):
    """A bare ``PRLSTM``: features in, h of every prefix out."""

    quantization_modes = QUANT_MODES

    def core(self, model) -> PRLSTM:
        return model

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        q = g.quant
        core = self.core(model)
        K, H = core.stack_levels, core.hidden_size
        x_spec, y_spec = self.input_spec(model, g, mode)
        y_spec.dtype = q.io_dtype
        states = [self.state_io(g, name, [K, H]) for name in STATE_NAMES[:4]]
        states.append(self.state_io(g, STEP_COUNTER, [], dtype="int64", init=0))
        q.keep_float32_states([s.name for s in states[:4]])
        e = self.embed(model, g, x_spec.name, opset)  # the compute dtype
        unary = len(core.unary)
        op, fn = ((STEP.name, step_function(opset, unary, q)) if mode == "step"
                  else (SEQUENCE.name, sequence_function(opset, unary, q)))
        weights = op_weights(q, g, core)
        y = g.custom(op, [e, *(s.input for s in states), *weights], [g.fresh("prlstm.y"), *(s.output for s in states)],
                     name=op, function=fn, **q.op_attributes())[0]
        self.head(model, g, y, y_spec.name, opset)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in states:
            g.output(s.output, s.dtype, s.shape)
        extra = {"stack_levels": K, "max_steps": core.max_steps, "step_counter": STEP_COUNTER}
        return Signature([x_spec], [y_spec], states, extra)

    def reference(self, model, x, state: Optional[Dict[str, np.ndarray]]):
        if state is not None:
            state = PRLSTMState(*(torch.from_numpy(np.asarray(state[name])) for name in STATE_NAMES))
        with torch.no_grad():
            y, new = self.run_torch(model, x, state)
        return _np(y), {name: _np(t) for name, t in zip(STATE_NAMES, new)}


class PRLSTMModelRecipe(SequenceModelIO, PRLSTMCoreRecipe):
    """``PRLSTMModel``: embedding (token ids) or linear input map -> PRLSTM -> per-position head."""

    def core(self, model: PRLSTMModel) -> PRLSTM:
        return model.rnn
