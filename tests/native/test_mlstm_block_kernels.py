"""The native mLSTMBlock / mLSTMBlockSequence kernels (the xLSTM LM's mLSTM block) against the ops' function bodies.

One-node graphs of each op (its function body and the nested mLSTM cell's, random inputs and states, odd sizes),
in every quantization mode and on every forced CPU path the library knows (the ``isa`` fixture): a stream of
calls with the state (conv window, C, n, m) fed back, steps one by one and chunks. Tolerances are
test_xlstm_block_kernels.py's, relative to max(1, max |body|). Needs the built library
(python runtime/native/build.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qlstm_edge.exporters.quantize import Quantizer
from helpers import ort_session
from qlstm_edge.runtime import native_lib

pytest.importorskip("xlstm")
from qlstm_edge.families.xlstm.block_ops import mlstm_block_function, mlstm_block_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.cells import mlstm_cell_function, mlstm_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.ops import (MLSTM_BLOCK, MLSTM_BLOCK_MATRICES, MLSTM_BLOCK_SEQUENCE,  # noqa: E402
                                           NORM_EPS)

DOMAIN = "qlstm_edge"
TOL = {None: 1e-5, "fp16": 4e-3, "int8": 1e-5, "int8-dynamic": 1e-3, "int4": 1e-5}
MODES = list(TOL)
# (B, E, NH, DH, BS, KS, int4 block size): odd widths and head sizes, a block size that does not divide K, one tap
CASES = [(2, 12, 2, 6, 4, 3, 8), (1, 16, 4, 4, 2, 4, 32), (3, 10, 1, 9, 3, 1, 4)]
NORM = 1e-5
STATE = ("conv", "C", "n", "m")


@pytest.fixture(scope="module")
def lib(lib_status):
    assert {MLSTM_BLOCK.name, MLSTM_BLOCK_SEQUENCE.name} <= set(lib_status["ops"] or []), "rebuild the library"
    return lib_status["path"]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def block_weights(rng, E, NH, DH, BS, KS):
    I = NH * DH
    return {"norm_weight": 1 + rand(rng, E, scale=0.1), "norm_bias": rand(rng, E, scale=0.1),
            "W_up": rand(rng, E, 2 * I, scale=0.3), "b_up": rand(rng, 2 * I, scale=0.1),
            "conv_weight": rand(rng, KS, I, scale=0.5), "conv_bias": rand(rng, I, scale=0.1),
            "W_qkv": rand(rng, 3, I // BS, BS, BS, scale=0.5), "b_qkv": rand(rng, 3 * I, scale=0.1),
            "W_if": rand(rng, 3 * I, 2 * NH, scale=0.3), "b_if": rand(rng, 2 * NH, scale=1.0),
            "head_norm_weight": 1 + rand(rng, I, scale=0.1), "head_norm_bias": rand(rng, I, scale=0.1),
            "skip": 1 + rand(rng, I, scale=0.1),
            "W_down": rand(rng, I, E, scale=0.3), "b_down": rand(rng, E, scale=0.1),
            "k_scale": np.array(DH ** -0.5, np.float32), "eps": np.array(1e-6, np.float32)}


def stored(weights, mode, block_size):
    """The weights as a ``mode`` node stores them (quantize.py's schemes), then the matrices' scales in the integer
    modes."""
    scheme = Quantizer(mode, block_size=block_size).scheme
    out, scales = dict(weights), {}
    for name in MLSTM_BLOCK_MATRICES:
        w = weights[name]
        out[name], scale, _ = (scheme.store_stacked(name, w, block_size) if w.ndim > 2 else
                               scheme.store(name, w, 1, block_size))
        if scale is not None:
            scales[f"{name}_scale"] = scale
    return {**out, **scales}


def state_shapes(weights):
    I, KS = weights["conv_weight"].shape[1], weights["conv_weight"].shape[0]
    NH = weights["W_if"].shape[1] // 2
    DH = I // NH
    return [["B", KS, I], ["B", NH, DH, DH], ["B", NH, DH, 1], ["B", NH, 1, 1]]


def block_model(seq, weights, mode, block_size, constant=True):
    """One block node over graph inputs x and the state, its weights initializers (``constant``) or inputs."""
    q = Quantizer(mode, block_size=block_size)
    spec = MLSTM_BLOCK_SEQUENCE if seq else MLSTM_BLOCK
    opset = q.min_opset
    names = spec.input_names(scales=q.integer)
    params = {n: stored(weights, mode, block_size)[n] for n in names[5:]}
    E = weights["W_up"].shape[0]
    shapes = [["B", "T", E] if seq else ["B", E], *state_shapes(weights)]
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(names, shapes)]
    if not constant:
        graph_inputs += [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
                         for n, v in params.items()]
    node = helper.make_node(spec.name, names, spec.output_names, domain=DOMAIN,
                            **{NORM_EPS: NORM}, **q.op_attributes())
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in spec.output_names]
    initializers = [numpy_helper.from_array(v, n) for n, v in params.items()] if constant else []
    graph = helper.make_graph([node], spec.name, graph_inputs, outputs, initializer=initializers)
    body, cell = ((mlstm_block_sequence_function, mlstm_sequence_function) if seq else
                  (mlstm_block_function, mlstm_cell_function))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
                              functions=[cell(opset), body(opset, q)], ir_version=q.min_ir_version)
    return model, ({} if constant else params)


def stream(sess, seq, xs, state, chunks, extra):
    """Outputs of ``sess`` over ``xs`` [B, T, E] (chunks of the given lengths, or one step a call), the state
    fed back between calls; returns (outputs [B, T, E], final state)."""
    ys = []
    bounds = np.cumsum([0, *chunks]) if seq else range(xs.shape[1] + 1)
    names = [f"{s}0" for s in STATE] if seq else STATE
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        x = xs[:, lo:hi] if seq else xs[:, lo]
        y, *state = sess.run(None, {"x": x, **dict(zip(names, state)), **extra})
        ys.append(y if seq else y[:, None])
    return np.concatenate(ys, 1), state


def initial_state(rng, B, weights):
    return [rand(rng, B, *s[1:], scale=0.3 if k in "Cn" else 1.0)
            for k, s in zip(("w", "C", "n", "m"), state_shapes(weights))]


def assert_close(got, want, tol):
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        assert np.abs(g.astype(np.float64) - w).max(initial=0.0) <= tol * scale, (np.abs(g - w).max(), tol * scale)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "fp32")
@pytest.mark.parametrize("seq", [False, True], ids=["step", "sequence"])
def test_block_kernel_matches_function_body(isa, lib, seq, mode):
    rng = np.random.default_rng(41)
    for B, E, NH, DH, BS, KS, bs in CASES:
        weights = block_weights(rng, E, NH, DH, BS, KS)
        xs, state = rand(rng, B, 9, E), initial_state(rng, B, weights)
        model, extra = block_model(seq, weights, mode, bs)
        chunks = [4, 1, 4]
        want = stream(ort_session(model), seq, xs, state, chunks, extra)
        calls = native_lib.compute_calls()
        got = stream(ort_session(model, lib), seq, xs, state, chunks, extra)
        assert native_lib.compute_calls() == calls + (3 if seq else 9)  # the block kernel ran, not the body
        assert_close([got[0], *got[1]], [want[0], *want[1]], TOL[mode])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "fp32")
def test_block_weights_as_graph_inputs_pack_per_call(lib, mode):
    """Weights fed as graph inputs are packed on each call: the same values as the once-packed initializers."""
    rng = np.random.default_rng(42)
    B, E, NH, DH, BS, KS, bs = CASES[0]
    weights = block_weights(rng, E, NH, DH, BS, KS)
    xs, state = rand(rng, B, 5, E), initial_state(rng, B, weights)
    packed = stream(ort_session(block_model(True, weights, mode, bs)[0], lib), True, xs, state, [5], {})
    model, extra = block_model(True, weights, mode, bs, constant=False)
    per_call = stream(ort_session(model, lib), True, xs, state, [5], extra)
    for a, b in zip([packed[0], *packed[1]], [per_call[0], *per_call[1]]):
        np.testing.assert_array_equal(a, b)


def test_block_bad_inputs_are_refused_clearly(lib):
    rng = np.random.default_rng(43)
    B, E, NH, DH, BS, KS, bs = CASES[0]
    weights = block_weights(rng, E, NH, DH, BS, KS)
    model, _ = block_model(False, weights, None, bs)
    for i in (1, 3):  # the kernel's checks, not onnxruntime's, see the conv state and n
        model.graph.input[i].type.tensor_type.ClearField("shape")
    conv, c, n, m = initial_state(rng, B, weights)
    sess = ort_session(model, lib)
    with pytest.raises(Exception, match=r"mLSTMBlock: input 'n' must have shape \[B, NH, DH, 1\] = \[2, 2, 6, 1\]"):
        sess.run(None, {"x": rand(rng, B, E), "conv": conv, "C": c, "n": n[..., :1, :], "m": m})
    with pytest.raises(Exception, match=r"mLSTMBlock: input 'conv' must have shape \[B, KS, I\] = \[2, 3, 12\]"):
        sess.run(None, {"x": rand(rng, B, E), "conv": conv[:, 1:], "C": c, "n": n, "m": m})
    odd = dict(weights, W_qkv=rand(rng, 3, 2, 5, 5))  # heads of 5 do not split I = 12
    with pytest.raises(Exception, match=r"mLSTMBlock: input 'W_qkv' \[3, NP, BS, BS\] must split I = NH DH = 12 "
                                        r"into heads of BS = 5"):
        ort_session(block_model(False, odd, None, bs)[0], lib).run(
            None, {"x": rand(rng, B, E), "conv": conv, "C": c, "n": n, "m": m})
    model.graph.node[0].ClearField("attribute")
    with pytest.raises(Exception, match="mLSTMBlock: the node has no float attribute 'norm_eps'"):
        ort_session(model, lib)
