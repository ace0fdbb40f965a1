"""Quantized export of the PR-LSTM and xLSTM families (fp16, int8, int8-dynamic, int4).

For each family and mode: the op contract of exporters/quantize.py (matrix inputs keep their positions,
scales appended in matrix order, quant_mode/block_size attributes, one custom node per cell), the full
checker, onnxruntime and onnx.reference, the metadata recipe, parity against the PyTorch model over
2,000 steps within the mode's tolerance, and exactness of weight-only int8 against models whose weights
were quantized here, independently of the exporter. The native kernels are float32-only: parity runs the
ops' function bodies (native="off"), and one test checks that native="auto" leaves quantized nodes to them.

The PyTorch references are computed once per model and stream (the xLSTM reference is the package's
step API, a Python loop per token) and every export is compared with them.
"""
import copy
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from qlstm_edge.exporters import build_onnx, export_onnx
from qlstm_edge.exporters.quantize import INT4_PACKED, QuantizationError
from qlstm_edge.families.prlstm import PRLSTMConfig, PRLSTMModel
from qlstm_edge.families.qllstm.model import QLLSTMConfig, QLLSTMModel
from qlstm_edge.parity import TOLERANCES, documented_tolerance, random_inputs
from qlstm_edge.registry import family_of
from qlstm_edge.runtime import StreamingSession, native_status

from helpers import make_prlstm, stack_kwargs, xlstm_large, xlstm_lm, xlstm_stack

try:
    import xlstm  # noqa: F401
    from xlstm import xLSTMLMModel, xLSTMLMModelConfig
    XLSTM_MISSING = None
except ImportError as e:  # pragma: no cover - depends on the environment
    if os.environ.get("QLSTM_EDGE_REQUIRE_XLSTM") == "1":
        raise ImportError(f"QLSTM_EDGE_REQUIRE_XLSTM=1 but the xlstm package cannot be imported ({e})") from e
    XLSTM_MISSING = f"the official xlstm package is not installed ({e})"

QMODES = ["fp16", "int8", "int8-dynamic", "int4"]
STEPS = 2000
STEP_MODE_STEPS = 300
CHUNKS = (1, 7, 64, 333)
BS = 32  # the default int4 block size
INTEGER = {"int8": TensorProto.INT8, "int8-dynamic": TensorProto.INT8, "int4": TensorProto.UINT8}  # int4: packed


# -- models ------------------------------------------------------------------------------------------------

def prlstm(tokens, layers, hidden=8, seed=0):
    return make_prlstm(layers, tokens, hidden, seed, levels=16)


MODELS = {"prlstm-tokens-3layers": lambda: prlstm(True, 3), "prlstm-features-1layer": lambda: prlstm(False, 1, seed=1)}
if XLSTM_MISSING is None:
    MODELS.update({"xlstm-stack": xlstm_stack, "xlstm-lm": xlstm_lm, "xlstm-large": xlstm_large})
PR_KEYS = [k for k in MODELS if k.startswith("prlstm")]
XL_KEYS = ["xlstm-stack", "xlstm-lm", "xlstm-large"]
ALL_KEYS = PR_KEYS + [pytest.param(k, marks=pytest.mark.skipif(XLSTM_MISSING is not None, reason=str(XLSTM_MISSING)))
                      for k in XL_KEYS]


def tolerance(model, quant):
    """The mode's documented parity tolerance (a family may document its own)."""
    return documented_tolerance(family_of(model).recipe(), quant)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """key -> (model, {(quant, graph mode): path}), exported on first use."""
    d = tmp_path_factory.mktemp("quant_families")
    cache = {}

    def get(key):
        if key not in cache:
            m = MODELS[key]()
            cache[key] = (m, {(q, mode): export_onnx(m, d / f"{key}_{q}_{mode}.onnx", mode=mode, quantize=q)
                              for q in [None, *QMODES] for mode in ("step", "sequence")})
        return cache[key]
    return get


@pytest.fixture(scope="module")
def reference(built):
    """key -> (x [2, STEPS, ...], float64 PyTorch outputs, states after STEP_MODE_STEPS, states at the end)."""
    cache = {}

    def get(key):
        if key not in cache:
            m, paths = built(key)
            x = random_inputs(StreamingSession(paths[(None, "sequence")], native="off"), STEPS, 2, seed=7)
            ref = copy.deepcopy(m).to(torch.float64)
            recipe = family_of(m).recipe()
            xt = torch.from_numpy(x)
            xt = xt.double() if xt.is_floating_point() else xt
            y1, s1 = recipe.reference(ref, xt[:, :STEP_MODE_STEPS], None)
            y2, s2 = recipe.reference(ref, xt[:, STEP_MODE_STEPS:], s1)
            cache[key] = (x, np.concatenate([y1, y2], axis=1), s1, s2)
        return cache[key]
    return get


def stream_error(session, x, y_ref, state_ref):
    """Max abs error of outputs and final states, the stream fed in chunks cycling through CHUNKS (sequence
    mode) or one step per call."""
    session.reset(batch_size=x.shape[0])
    ys, t = [], 0
    sizes = iter(np.resize(CHUNKS, x.shape[1]))
    while t < x.shape[1]:  # step mode: run() calls the graph once per step
        t1 = x.shape[1] if session.mode == "step" else min(t + int(next(sizes)), x.shape[1])
        ys.append(session.run(np.ascontiguousarray(x[:, t:t1])))
        t = t1
    got = session.get_state()
    errs = {"output": float(np.abs(np.concatenate(ys, 1).astype(np.float64) - y_ref).max())}
    errs.update({k: float(np.abs(got[k].astype(np.float64) - v).max()) for k, v in state_ref.items()})
    return errs


def magnitudes(y_ref, state_ref):
    """max |value| of the output and of each final state (keys as ``stream_error``'s)."""
    return {"output": float(np.abs(y_ref).max()), **{k: float(np.abs(v).max()) for k, v in state_ref.items()}}


# -- quantization written here, independently of the exporter --------------------------------------------------

def roundtrip_last_axis(w, bits):
    """Symmetric quantization of a float64 array along its last axis: int8 one scale per row, int4 one scale per
    block of BS consecutive elements of a row; returns the dequantized array."""
    qmax = 127 if bits == 8 else 7
    block = w.shape[-1] if bits == 8 else BS
    out = np.empty_like(w)
    for k0 in range(0, w.shape[-1], block):
        part = w[..., k0:k0 + block]
        s = (np.abs(part).max(axis=-1, keepdims=True) / qmax).astype(np.float32).astype(np.float64)
        s = np.where(s > 0, s, 1.0)
        out[..., k0:k0 + block] = np.clip(np.round(part / s), -qmax, qmax) * s
    return out


def dequantized_copy(model, bits):
    """A copy whose matrices (every weight with >= 2 dims except depthwise conv taps) hold what a weight-only
    export computes with. A torch weight [out, in] (heads [NH, out, in], embedding [V, E]) is quantized per
    row of its last axis; the sLSTM recurrent kernel per (head, gate, output) along its input axis."""
    m = copy.deepcopy(model)
    modules = dict(m.named_modules())
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() < 2 or "conv1d" in name:
                continue
            if name.endswith("_recurrent_kernel_"):
                cell = modules[name.rsplit(".", 1)[0]]
                ext = cell._recurrent_kernel_int2ext(p).double().numpy()  # [NH, DH_in, 4, DH_out]
                deq = roundtrip_last_axis(ext.transpose(0, 2, 3, 1), bits).transpose(0, 3, 1, 2)
                p.copy_(cell._recurrent_kernel_ext2int(torch.from_numpy(deq).to(p.dtype)))
            else:
                p.copy_(torch.from_numpy(roundtrip_last_axis(p.double().numpy(), bits)).to(p.dtype))
    return m


# -- helpers on files ----------------------------------------------------------------------------------------

def meta_of(proto):
    return json.loads({p.key: p.value for p in proto.metadata_props}["qlstm_edge"])


def attrs_of(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def array(init, name):
    return onnx.numpy_helper.to_array(init[name])


def standard_ops_only(nodes, nested=()):
    """Standard ops only, but for the cell ops ``nested`` in a block op's body (functions of the file, each
    checked in its turn)."""
    for n in nodes:
        assert n.domain in ("", "ai.onnx") or (n.domain == "qlstm_edge" and n.op_type in nested), n.op_type
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                standard_ops_only(a.g.node)


def expected_ops(key, mode, meta, quant):
    if key.startswith("prlstm"):
        return ["PRLSTMStep" if mode == "step" else "PRLSTMSequence"]
    if key == "xlstm-large" and quant != "fp16":  # one block op per block, the mLSTM cell op nested in its body
        return ["xLSTMLargeBlock" if mode == "step" else "xLSTMLargeBlockSequence"] * len(meta["extra"]["blocks"])
    suffix = "Cell" if mode == "step" else "Sequence"
    # one block op per block (the cell op and standard-op layers: fp16, and int8-dynamic's mLSTM block, blocks.py)
    seq = "" if mode == "step" else "Sequence"
    mlstm = f"mLSTM{suffix}" if quant in ("fp16", "int8-dynamic") else f"mLSTMBlock{seq}"
    slstm = f"sLSTM{suffix}" if quant == "fp16" else f"sLSTMBlock{seq}"
    return [slstm if kind == "slstm" else mlstm for kind in meta["extra"]["blocks"]]


def check_stored(init, name, quant, want, scale_shape):
    """The initializer ``name`` holds ``want`` (float64, input-major [..., K, N]) as ``quant`` stores it."""
    t = init[name]
    if quant == "fp16":
        assert t.data_type == TensorProto.FLOAT16
        np.testing.assert_array_equal(array(init, name), want.astype(np.float32).astype(np.float16))
        return
    assert t.data_type == INTEGER[quant]
    q = array(init, name)
    if quant == "int4":  # two per byte, low nibble first, each q + 8 (unpacked here, independently of the exporter)
        assert q.shape == (*want.shape[:-1], -(-want.shape[-1] // 2))
        q = np.stack([q & 15, q >> 4], -1).reshape(*q.shape[:-1], 2 * q.shape[-1])[..., :want.shape[-1]].astype(np.int8) - 8
    q = q.astype(np.float32)
    s = array(init, f"{name}_scale")
    assert s.dtype == np.float32 and list(s.shape) == scale_shape and q.shape == want.shape
    assert (np.abs(q) <= (7 if quant == "int4" else 127)).all()
    k = q.shape[-2]
    full = s[..., None, :] if quant != "int4" else np.repeat(s, BS, axis=-2)[..., :k, :]
    bits = 4 if quant == "int4" else 8
    ref = np.swapaxes(roundtrip_last_axis(np.swapaxes(want, -1, -2), bits), -1, -2)
    np.testing.assert_allclose(q * full, ref, rtol=1e-6, atol=1e-7)


# -- the contract ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("quant", QMODES)
@pytest.mark.parametrize("key", ALL_KEYS)
def test_contract_checker_and_metadata(built, key, quant, mode):
    m, paths = built(key)
    proto = onnx.load(paths[(quant, mode)])
    onnx.checker.check_model(proto, full_check=True)
    meta = meta_of(proto)
    init = {t.name: t for t in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.domain == "qlstm_edge"]
    assert [n.op_type for n in nodes] == expected_ops(key, mode, meta, quant)  # one custom node per cell
    for f in proto.functions:  # bodies (and their Loop/Scan bodies): standard ops, and a block's nested cell op
        nested = {"xLSTMLarge": {"mLSTMCell", "mLSTMSequence"}, "mLSTMBlock": {"mLSTMCell", "mLSTMSequence"},
                  "sLSTMBlock": {"sLSTMCell", "sLSTMSequence"}}
        standard_ops_only(f.node, nested=next((v for k, v in nested.items() if f.name.startswith(k)), ()))
    attrs = {"quant_mode": quant.encode(), "block_size": BS if quant == "int4" else 0}
    integer = quant in INTEGER

    if key.startswith("prlstm"):
        node, = nodes
        core = m.rnn
        H, R = core.hidden_size, len(core.unary)
        assert attrs_of(node) == attrs
        assert list(node.input[6:12]) == ["W_leaf", "b_leaf", "W_merge", "b_merge", "W_unary", "b_unary"]
        assert list(node.input[12:]) == (["W_leaf_scale", "W_merge_scale", "W_unary_scale"] if integer else [])
        blocks = (lambda k: [-(-k // BS)]) if quant == "int4" else (lambda k: [])
        w = lambda lin: lin.weight.detach().double().numpy().T  # noqa: E731  input-major
        check_stored(init, "W_leaf", quant, w(core.leaf), blocks(core.input_size) + [3 * H])
        check_stored(init, "W_merge", quant, w(core.merge), blocks(2 * H) + [5 * H])
        unary = np.stack([w(u) for u in core.unary]) if R else np.zeros((0, H, 4 * H))
        check_stored(init, "W_unary", quant, unary, [R] + blocks(H) + [4 * H])
        for b in ("b_leaf", "b_merge", "b_unary"):
            assert init[b].data_type == TensorProto.FLOAT
        x_type = {i.name: i for i in proto.graph.input}["x"].type.tensor_type.elem_type
        assert x_type == (TensorProto.INT64 if m.config.vocab_size else TensorProto.FLOAT)
    else:
        for node in nodes:
            i = int(node.name.split(".")[0][1:])
            if node.op_type.startswith("xLSTMLarge"):
                check_large_block(init, node, m.backbone.blocks[i], m.config, quant, attrs)
                continue
            if node.op_type.startswith("mLSTMBlock"):
                stack = m.xlstm_block_stack if hasattr(m, "xlstm_block_stack") else m
                check_mlstm_block(init, node, stack.blocks[i], quant, attrs)
                continue
            if node.op_type.startswith("mLSTM"):  # the cell op holds no weights: the unquantized op in every mode
                assert len(node.input) == 11 and attrs_of(node) == {}
                continue
            blocks = m.xlstm_block_stack.blocks if hasattr(m, "xlstm_block_stack") else m.blocks
            if node.op_type.startswith("sLSTMBlock"):
                check_slstm_block(init, node, blocks[i], quant, attrs)
                continue
            assert attrs_of(node) == attrs
            assert list(node.input[5:]) == [f"b{i}.R", f"b{i}.b", *([f"b{i}.R_scale"] if integer else [])]
            check_stored_r(init, f"b{i}", blocks[i].xlstm.slstm_cell, quant)
            assert init[f"b{i}.b"].data_type == TensorProto.FLOAT
    # every matrix is stored per the mode: the only float tensors with >= 2 dims left are scales, depthwise conv
    # taps and PR-LSTM's stacked unary biases
    q = meta["quantization"]
    scales = {rec.get("scale") for rec in q["tensors"].values()}
    float2d = [t.name for t in proto.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2
               and ".conv." not in t.name and not t.name.endswith(".conv_weight") and t.name != "b_unary"
               and t.name not in scales]
    assert float2d == []
    stored = {TensorProto.FLOAT16} if quant == "fp16" else {INTEGER[quant]}
    matrices = {t.name for t in proto.graph.initializer if t.data_type in stored and len(t.dims) >= 2}
    assert set(q["tensors"]) == matrices and len(matrices) >= 3
    assert q["mode"] == quant and q["contract_version"] == 1 and "float_tensors" in q
    float_states = [s["name"] for s in meta["states"] if s["dtype"] != "int64"]
    assert q["float32_states"] == float_states and {s["dtype"] for s in meta["states"]} <= {"float32", "int64"}
    for name, rec in q["tensors"].items():
        if integer:
            assert rec["scale"] == f"{name}_scale" and rec["scale"] in init
        assert rec.get("storage") == (INT4_PACKED if quant == "int4" else None)
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert (proto.ir_version, opsets[""]) == ((8, 18) if quant == "int4" else (8, 17))


def check_mlstm_block(init, node, block, quant, attrs):
    """An mLSTMBlock node (the LM's mLSTM block): its attributes, inputs and four matrices stored per ``quant`` (the
    head-wise q/k/v stacked [3, NP, BS, BS]), their scales appended in order."""
    i = node.name.split(".")[0]
    layer = block.xlstm
    assert attrs_of(node) == {**attrs, "norm_eps": pytest.approx(block.xlstm_norm.eps)}
    w = lambda *lins: np.concatenate([lin.weight.detach().double().numpy() for lin in lins]).T  # noqa: E731
    qkv = np.stack([p.weight.detach().double().numpy() for p in (layer.q_proj, layer.k_proj, layer.v_proj)])
    matrices = {"W_up": w(layer.proj_up), "W_qkv": qkv.transpose(0, 1, 3, 2),
                "W_if": w(layer.mlstm_cell.igate, layer.mlstm_cell.fgate), "W_down": w(layer.proj_down)}
    names = list(node.input)
    assert names[1:5] == [f"{i}.{s}.in" for s in ("conv", "C", "n", "m")]
    assert len(names) == 22 + (4 if quant in INTEGER else 0)
    for name, want in matrices.items():
        assert f"{i}.{name}" in names[5:20]
        check_stored(init, f"{i}.{name}", quant, want, list(want.shape[:-2]) +
                     ([-(-want.shape[-2] // BS)] if quant == "int4" else []) + [want.shape[-1]])
    assert names[22:] == ([f"{i}.{name}_scale" for name in matrices] if quant in INTEGER else [])
def check_stored_r(init, prefix, cell, quant):
    """The sLSTM cell's R [4, NH, DH, DH] (``<prefix>.R``) stored per ``quant``."""
    nh, dh = cell.config.num_heads, cell.config.head_dim
    ext = cell._recurrent_kernel_int2ext(cell._recurrent_kernel).detach().double().numpy()
    check_stored(init, f"{prefix}.R", quant, ext.transpose(2, 0, 1, 3), [4, nh] + ([-(-dh // BS)] if quant == "int4"
                                                                                   else []) + [dh])


def check_slstm_block(init, node, block, quant, attrs):
    """An sLSTMBlock node: its attributes, inputs and four matrices stored per ``quant`` (the head-wise gate
    projections stacked f, i, z, o as the package's i/f swap feeds the cell, and R, slice by slice), their scales
    appended in order."""
    i = node.name.split(".")[0]
    assert attrs_of(node) == {**attrs, "norm_eps": pytest.approx(block.xlstm_norm.eps),
                              "ffn_act": block.ffn.config.act_fn.encode()}
    layer, ffn = block.xlstm, block.ffn
    names = list(node.input)
    assert names[1:6] == [f"{i}.{s}.in" for s in ("conv", *"ycnm")] and len(names) == 22 + (4 if quant in INTEGER
                                                                                             else 0)
    nh, dh = layer.config.num_heads, layer.config.embedding_dim // layer.config.num_heads
    gates = np.stack([g.weight.detach().double().numpy() for g in (layer.fgate, layer.igate, layer.zgate, layer.ogate)])
    check_stored(init, f"{i}.W_gates", quant, gates.transpose(0, 1, 3, 2),
                 [4, nh] + ([-(-dh // BS)] if quant == "int4" else []) + [dh])
    check_stored_r(init, i, layer.slstm_cell, quant)
    for name, lin in (("W_up", ffn.proj_up), ("W_down", ffn.proj_down)):
        want = lin.weight.detach().double().numpy().T
        check_stored(init, f"{i}.{name}", quant, want, ([-(-want.shape[0] // BS)] if quant == "int4" else []) +
                     [want.shape[1]])
    assert names[10] == f"{i}.W_gates" and names[12] == f"{i}.R" and names[18] == f"{i}.W_up"
    assert names[20] == f"{i}.W_down"
    assert names[22:] == ([f"{i}.{n}_scale" for n in ("W_gates", "R", "W_up", "W_down")] if quant in INTEGER else [])


def check_large_block(init, node, block, config, quant, attrs):
    """An xLSTMLargeBlock node (weight_mode "single", as the test model): its attributes, inputs and five matrices
    stored per ``quant``, their scales appended in order."""
    i = node.name.split(".")[0]
    assert attrs_of(node) == {**attrs, "norm_eps": pytest.approx(config.norm_eps)}
    layer, ffn = block.mlstm_layer, block.ffn
    w = lambda *lins: np.concatenate([lin.weight.detach().double().numpy() for lin in lins]).T  # noqa: E731
    matrices = {"W_qkvo": w(layer.q, layer.k, layer.v, layer.ogate_preact),
                "W_if": w(layer.igate_preact, layer.fgate_preact), "W_out": w(layer.out_proj),
                "W_up": w(ffn.proj_up_gate, ffn.proj_up), "W_down": w(ffn.proj_down)}
    names = list(node.input)
    assert names[1:4] == [f"{i}.{s}.in" for s in "Cnm"] and len(names) == 23 + (5 if quant in INTEGER else 0)
    for name, want in matrices.items():
        assert f"{i}.{name}" in names[4:19]
        check_stored(init, f"{i}.{name}", quant, want, ([-(-want.shape[0] // BS)] if quant == "int4" else []) +
                     [want.shape[1]])
    assert names[23:] == ([f"{i}.{name}_scale" for name in matrices] if quant in INTEGER else [])


def test_fp32_export_is_unchanged_by_the_quantizer(built):
    """fp32 files carry no quantization: no attributes, no scales, float32 weights (as before quantization)."""
    inputs = {"PRLSTMSequence": 12, "sLSTMSequence": 7, "mLSTMSequence": 11, "xLSTMLargeBlockSequence": 23,
              "mLSTMBlockSequence": 22, "sLSTMBlockSequence": 22}
    model_attributes = {"xLSTMLargeBlockSequence": ["norm_eps"], "mLSTMBlockSequence": ["norm_eps"],
                        "sLSTMBlockSequence": ["ffn_act", "norm_eps"]}  # the blocks' own, in every mode
    for key in MODELS:
        proto = onnx.load(built(key)[1][(None, "sequence")])
        assert meta_of(proto)["quantization"] is None
        for n in proto.graph.node:
            if n.domain == "qlstm_edge":
                assert [a.name for a in n.attribute] == model_attributes.get(n.op_type, [])
                assert len(n.input) == inputs[n.op_type]
        assert {t.data_type for t in proto.graph.initializer} <= {TensorProto.FLOAT}


# -- running ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("quant", [None, *QMODES])
@pytest.mark.parametrize("key", ALL_KEYS)
def test_parity_2000_steps_within_tolerance(built, reference, key, quant):
    """Sequence mode, 2,000 steps x batch 2 in chunks of 1, 7, 64 and 333 steps, against the PyTorch model in
    float64; max abs error of the outputs and the final states."""
    m, paths = built(key)
    x, y_ref, _, state_ref = reference(key)
    errs = stream_error(StreamingSession(paths[(quant, "sequence")], native="off"), x, y_ref, state_ref)
    assert max(errs.values()) <= tolerance(m, quant), errs


@pytest.mark.parametrize("quant", QMODES)
@pytest.mark.parametrize("key", ALL_KEYS)
def test_step_mode_parity_within_tolerance(built, reference, key, quant):
    m, paths = built(key)
    x, y_ref, state_ref, _ = reference(key)
    n = STEP_MODE_STEPS
    errs = stream_error(StreamingSession(paths[(quant, "step")], native="off"), x[:, :n], y_ref[:, :n], state_ref)
    assert max(errs.values()) <= tolerance(m, quant), errs


@pytest.mark.parametrize("key", ALL_KEYS)
def test_int8_export_equals_model_with_dequantized_weights(built, reference, key):
    """Weight-only int8 computes exactly the fp32 maths with the dequantized weights (quantized in this test):
    the parity error of a quantized export is the model's own sensitivity to its weights, not export error."""
    m, paths = built(key)
    x, _, _, _ = reference(key)
    x = x[:, :500]
    deq = dequantized_copy(m, 8).to(torch.float64)
    xt = torch.from_numpy(x)
    y_ref, state_ref = family_of(m).recipe().reference(deq, xt.double() if xt.is_floating_point() else xt, None)
    errs = stream_error(StreamingSession(paths[("int8", "sequence")], native="off"), x, y_ref, state_ref)
    size = magnitudes(y_ref, state_ref)  # relative to each tensor's size: sLSTM's n grows with the stream
    assert all(errs[k] <= TOLERANCES[None] * max(1.0, size[k]) for k in errs), (errs, size)


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("quant", QMODES)
@pytest.mark.parametrize("key", ALL_KEYS)
def test_reference_evaluator_agrees_with_onnxruntime(built, reference, key, quant, mode):
    _, paths = built(key)
    path = paths[(quant, mode)]
    x = reference(key)[0]
    s = StreamingSession(path, native="off")
    s.run(x[:, :5])  # a non-trivial state to start from
    feed = {"x": x[:, 5:8] if mode == "sequence" else x[:, 5]}
    state = s.get_state()
    for spec in s.metadata.states:
        feed[spec.input] = state[spec.name]
    names = [o.name for o in onnx.load(path).graph.output]
    ref = ReferenceEvaluator(str(path)).run(names, feed)
    got = s._e.sess.run(names, feed)
    # fp16: onnx.reference multiplies in float16, CPU onnxruntime in float32
    tol = 1e-2 if quant == "fp16" else 1e-4
    for r, g, name in zip(ref, got, names):
        assert r.shape == g.shape and r.dtype == g.dtype
        assert np.abs(r.astype(np.float64) - g).max() <= tol * max(1.0, float(np.abs(r).max())), name


@pytest.mark.parametrize("key", ALL_KEYS)
def test_native_auto_runs_quantized_exports_correctly(built, reference, key):
    """The native library takes every quantized custom node (PR-LSTM, the xLSTM cells and block ops; the mLSTM cell
    nodes hold no weight and stay float32): native="auto" runs every quantized export natively, and it matches the
    function bodies. (fp16 files, and the LM's mLSTM blocks in int8-dynamic files, keep the cell ops with
    onnxruntime's norms and activations around them: xlstm/blocks.py says why.)"""
    m, paths = built(key)
    x = reference(key)[0][:, :64]
    for quant in QMODES:
        auto = StreamingSession(paths[(quant, "step")], native="auto")
        off = StreamingSession(paths[(quant, "step")], native="off")
        y = off.run(x)
        assert np.abs(auto.run(x) - y).max() <= 1e-4 * max(1.0, float(np.abs(y).max()))
        if native_status()["available"]:
            assert auto.op_path == "native"


# -- io dtype, edge cases, sizes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["prlstm-features-1layer", pytest.param(
    "xlstm-stack", marks=pytest.mark.skipif(XLSTM_MISSING is not None, reason=str(XLSTM_MISSING)))])
def test_fp16_io_keeps_states_float32(built, reference, tmp_path, key):
    m, _ = built(key)
    x, y_ref, _, _ = reference(key)
    path = export_onnx(m, tmp_path / "io16.onnx", mode="sequence", quantize="fp16", io_dtype="float16")
    s = StreamingSession(path, native="off")
    assert s.metadata.inputs[0].dtype == "float16" and s.metadata.outputs[0].dtype == "float16"
    assert {st.dtype for st in s.metadata.states} <= {"float32", "int64"}  # int64: PR-LSTM's token count
    y = s.run(x[:, :200].astype(np.float16))
    assert y.dtype == np.float16
    # float16 data in and out add their own rounding (|y| up to a few units: 2^-11 relative) to fp16's error
    err = np.abs(y.astype(np.float64) - y_ref[:, :200]).max()
    assert err <= tolerance(m, "fp16") + np.abs(y_ref).max() * 2.0 ** -10, err


def test_prlstm_int4_block_size(tmp_path):
    m = prlstm(True, 2, hidden=12, seed=3)
    path = export_onnx(m, tmp_path / "b4.onnx", mode="step", quantize="int4", block_size=4)
    init = {t.name: t for t in onnx.load(path).graph.initializer}
    assert array(init, "W_unary_scale").shape == (1, 3, 48)  # [R, ceil(12 / 4), 4H]
    assert array(init, "W_merge_scale").shape == (6, 60)
    node = [n for n in onnx.load(path).graph.node if n.domain == "qlstm_edge"][0]
    assert attrs_of(node)["block_size"] == 4


@pytest.fixture(scope="module")
def int4_files(tmp_path_factory):
    """{(family model key, graph mode): path} of int4 exports of every family (QL-LSTM and MODELS)."""
    d = tmp_path_factory.mktemp("int4")
    torch.manual_seed(4)
    makers = {"qllstm": lambda: QLLSTMModel(QLLSTMConfig(hidden_size=12, num_layers=2, vocab_size=40, output_size=3)),
              **MODELS}
    out = {}
    for key, make in makers.items():
        m = make().eval()
        for mode in ("step", "sequence"):
            out[(key, mode)] = export_onnx(m, d / key / f"{mode}.onnx", mode=mode, quantize="int4", block_size=8)
    return out


def int4_tensors(proto):
    """Names of the ONNX INT4 tensors a file holds: initializers and Constant values of the graph, of every function
    body and of their Loop / Scan bodies."""
    found = [t.name for t in proto.graph.initializer if t.data_type == TensorProto.INT4]
    todo = [proto.graph.node] + [f.node for f in proto.functions]
    while todo:
        for n in todo.pop():
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.INT4:
                    found.append(n.name)
                for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                    found += [t.name for t in g.initializer if t.data_type == TensorProto.INT4]
                    todo.append(g.node)
    return found


def test_int4_files_hold_no_int4_tensor(int4_files):
    """Every int4 tensor is stored packed in uint8 (ORT format and onnxoptimizer cannot hold ONNX INT4)."""
    for (key, mode), path in int4_files.items():
        proto = onnx.load(path)
        assert int4_tensors(proto) == [], (key, mode)
        assert {t["storage"] for t in meta_of(proto)["quantization"]["tensors"].values()} == {INT4_PACKED}


def test_int4_files_convert_to_ort_format(int4_files, tmp_path):
    """An int4 file of each family converts to onnxruntime's ORT format (what mobile builds load) and streams there
    as the .onnx does; with the native library given to the converter the custom nodes stay and run natively."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    status = native_status()
    lib = status["path"] if status["available"] else None
    for key in ["qllstm", "prlstm-tokens-3layers", *(["xlstm-lm", "xlstm-large"] if XLSTM_MISSING is None else [])]:
        for mode, native in (("step", "off"), ("sequence", "on" if lib and key.startswith("prlstm") else "off")):
            path = int4_files[(key, mode)]
            out = tmp_path / key / mode
            convert_onnx_models_to_ort(path, out, [OptimizationStyle.Fixed],
                                       custom_op_library_path=Path(lib) if native == "on" else None)
            ort_file, = out.glob("*.ort")
            ref, got = StreamingSession(path, native=native), StreamingSession(ort_file, native=native)
            assert got.op_path == ref.op_path == ("native" if native == "on" else "function-body")
            x = random_inputs(ref, 20, 2, seed=5)
            if mode == "step":
                y_ref = np.stack([ref.step(x[:, t]) for t in range(20)], 1)
                y = np.stack([got.step(x[:, t]) for t in range(20)], 1)
            else:
                y_ref, y = ref.run(x), got.run(x)
            np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(y_ref).max())))


@pytest.mark.parametrize("quant", QMODES)
def test_nonfinite_weights_are_refused_by_name(quant):
    m = prlstm(True, 2)
    with torch.no_grad():
        m.rnn.unary[0].weight[1, 2] = float("nan")
    with pytest.raises(QuantizationError, match="'W_unary'.*non-finite"):
        build_onnx(m, quantize=quant)
    if XLSTM_MISSING is None:
        x = xlstm_lm()
        with torch.no_grad():
            x.xlstm_block_stack.blocks[0].xlstm.slstm_cell._recurrent_kernel_.view(-1)[5] = float("inf")
        with pytest.raises(QuantizationError, match="'b0.R'.*non-finite"):
            build_onnx(x, quantize=quant)


def test_file_sizes_shrink_mid_size_models():
    """Weights dominate mid-size models: int8 about 1/4 and int4 about 1/7 of fp32, fp16 about 1/2."""
    torch.manual_seed(0)
    models = [PRLSTMModel(PRLSTMConfig(hidden_size=256, num_layers=2, vocab_size=1000, output_size=2))]
    if XLSTM_MISSING is None:
        torch.manual_seed(0)
        kw = stack_kwargs(E=256, heads=4, mlstm_heads=2, slstm_at=[1])
        models.append(xLSTMLMModel(xLSTMLMModelConfig(vocab_size=1000, **kw)).eval())
    for m in models:
        size = {q: len(build_onnx(m, quantize=q).SerializeToString()) for q in [None, *QMODES]}
        assert size["int8"] <= 0.30 * size[None] and size["int8-dynamic"] <= 0.30 * size[None], size
        assert size["int4"] <= 0.20 * size[None], size
        assert size["fp16"] <= 0.55 * size[None], size
