"""The native sLSTMBlock / sLSTMBlockSequence kernels against the ops' function bodies.

One-node graphs of each op (its function body and the nested sLSTM cell's, random inputs and states, odd sizes),
in every quantization mode and on every forced CPU path the library knows (the ``isa`` fixture): a stream of
calls with the state fed back, steps one by one and chunks. The native side runs a copy of the graph without the
op's function body, so only the block kernel can have run it. Tolerances as test_xlstm_block_kernels.py's,
relative to max(1, max |body|). Needs the built library (python runtime/native/build.py).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper

from helpers import assert_close_relative, block_op_model, block_stream, library_with, ort_session, rand
from qlstm_edge.runtime import native_lib

pytest.importorskip("xlstm")
from qlstm_edge.families.xlstm.block_ops import slstm_block_function, slstm_block_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.cells import slstm_cell_function, slstm_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.ops import FFN_ACT, FFN_ACTIVATIONS, SLSTM_BLOCK, SLSTM_BLOCK_SEQUENCE  # noqa: E402

TOL = {None: 1e-5, "fp16": 4e-3, "int8": 1e-5, "int8-dynamic": 1e-3, "int4": 1e-5}
MODES = list(TOL)
# (B, NH, DH, KS, U, int4 block size): odd widths, a block size that does not divide K, a conv of one tap
CASES = [(2, 2, 5, 4, 7, 4), (1, 4, 4, 1, 24, 32), (3, 1, 6, 3, 5, 4)]
NORM = 1e-5


@pytest.fixture(scope="module")
def lib(lib_status):
    return library_with(lib_status, SLSTM_BLOCK, SLSTM_BLOCK_SEQUENCE)


def block_weights(rng, NH, DH, KS, U):
    E = NH * DH
    return {"norm_weight": 1 + rand(rng, E, scale=0.1), "norm_bias": rand(rng, E, scale=0.1),
            "conv_weight": rand(rng, KS, E, scale=0.5), "conv_bias": rand(rng, E, scale=0.1),
            "W_gates": rand(rng, 4, NH, DH, DH, scale=0.4), "b_gates": rand(rng, 4 * E, scale=0.1),
            "R": rand(rng, 4, NH, DH, DH, scale=0.3), "b": rand(rng, 4 * E, scale=0.5),
            "group_norm_weight": 1 + rand(rng, E, scale=0.1), "group_norm_bias": rand(rng, E, scale=0.1),
            "ffn_norm_weight": 1 + rand(rng, E, scale=0.1), "ffn_norm_bias": rand(rng, E, scale=0.1),
            "W_up": rand(rng, E, 2 * U, scale=0.3), "b_up": rand(rng, 2 * U, scale=0.1),
            "W_down": rand(rng, U, E, scale=0.3), "b_down": rand(rng, E, scale=0.1)}


def block_model(seq, weights, mode, block_size, constant=True, body=True, act=None):
    """One block node over graph inputs x and the state, its weights initializers (``constant``) or inputs; with
    the op's function body (``body``) or only the nested cell's; its FFN activation ``act`` (the node's ffn_act;
    None: no attribute, as nodes written before it existed, and a gelu body)."""
    KS, E = weights["conv_weight"].shape
    make_body, cell = ((slstm_block_sequence_function, slstm_sequence_function) if seq else
                       (slstm_block_function, slstm_cell_function))
    return block_op_model(SLSTM_BLOCK_SEQUENCE if seq else SLSTM_BLOCK,
                          lambda opset, q: [cell(opset, q)] + ([make_body(opset, q, act or "gelu")] if body else []),
                          weights, mode, block_size,
                          [["B", "T", E] if seq else ["B", E], ["B", KS, E]] + [["B", E]] * 4, constant, NORM,
                          **({} if act is None else {FFN_ACT: act}))


def stream(sess, seq, xs, state, chunks, extra):
    return block_stream(sess, SLSTM_BLOCK_SEQUENCE if seq else SLSTM_BLOCK, seq, xs, state, chunks, extra)


def initial_state(rng, B, KS, E):
    """A conv window, y, c, a positive normaliser n (one row all zero: the first step's m init) and m."""
    n = np.abs(rand(rng, B, E)) + 0.5
    n[0] = 0.0
    return [rand(rng, B, KS, E), rand(rng, B, E, scale=0.3), rand(rng, B, E, scale=0.3), n, rand(rng, B, E)]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "fp32")
@pytest.mark.parametrize("seq", [False, True], ids=["step", "sequence"])
def test_block_kernel_matches_function_body(isa, lib, seq, mode):
    rng = np.random.default_rng(41)
    for B, NH, DH, KS, U, bs in CASES:
        weights = block_weights(rng, NH, DH, KS, U)
        xs, state = rand(rng, B, 9, NH * DH), initial_state(rng, B, KS, NH * DH)
        model, extra = block_model(seq, weights, mode, bs)
        want = stream(ort_session(model), seq, xs, state, [4, 1, 4], extra)
        calls = native_lib.compute_calls()
        got = stream(ort_session(block_model(seq, weights, mode, bs, body=False)[0], lib), seq, xs, state,
                     [4, 1, 4], extra)
        assert native_lib.compute_calls() == calls + (3 if seq else 9)
        assert_close_relative([got[0], *got[1]], [want[0], *want[1]], TOL[mode])


@pytest.mark.parametrize("mode", [None, "int8-dynamic"], ids=["fp32", "int8-dynamic"])
@pytest.mark.parametrize("act", [None, *FFN_ACTIVATIONS], ids=lambda a: a or "no-attribute")
@pytest.mark.parametrize("seq", [False, True], ids=["step", "sequence"])
def test_block_kernel_matches_function_body_for_every_ffn_activation(isa, lib, seq, act, mode):
    """Each of xlstm's FFN activations (the node's ffn_act; none: gelu, as in files written before the attribute)."""
    rng = np.random.default_rng(45)
    for B, NH, DH, KS, U, bs in CASES[:2]:
        weights = block_weights(rng, NH, DH, KS, U)
        xs, state = rand(rng, B, 6, NH * DH), initial_state(rng, B, KS, NH * DH)
        want = stream(ort_session(block_model(seq, weights, mode, bs, act=act)[0]), seq, xs, state, [4, 2], {})
        calls = native_lib.compute_calls()
        got = stream(ort_session(block_model(seq, weights, mode, bs, body=False, act=act)[0], lib), seq, xs, state,
                     [4, 2], {})
        assert native_lib.compute_calls() == calls + (2 if seq else 6)
        assert_close_relative([got[0], *got[1]], [want[0], *want[1]], TOL[mode])


def test_block_chunk_shorter_than_the_conv_window(lib):
    """Chunks of 1 and 2 steps with a window of 4: the new window mixes the old one and the chunk."""
    rng = np.random.default_rng(44)
    B, NH, DH, KS, U, bs = CASES[0]
    weights = block_weights(rng, NH, DH, KS, U)
    xs, state = rand(rng, B, 5, NH * DH), initial_state(rng, B, KS, NH * DH)
    model, _ = block_model(True, weights, None, bs)
    want = stream(ort_session(model), True, xs, state, [1, 2, 2], {})
    got = stream(ort_session(model, lib), True, xs, state, [1, 2, 2], {})
    assert_close_relative([got[0], *got[1]], [want[0], *want[1]], TOL[None])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "fp32")
def test_block_weights_as_graph_inputs_pack_per_call(lib, mode):
    """Weights fed as graph inputs are packed on each call: the same values as the once-packed initializers."""
    rng = np.random.default_rng(42)
    B, NH, DH, KS, U, bs = CASES[0]
    weights = block_weights(rng, NH, DH, KS, U)
    xs, state = rand(rng, B, 5, NH * DH), initial_state(rng, B, KS, NH * DH)
    packed = stream(ort_session(block_model(True, weights, mode, bs)[0], lib), True, xs, state, [5], {})
    model, extra = block_model(True, weights, mode, bs, constant=False)
    per_call = stream(ort_session(model, lib), True, xs, state, [5], extra)
    for a, b in zip([packed[0], *packed[1]], [per_call[0], *per_call[1]]):
        np.testing.assert_array_equal(a, b)


def test_block_bad_inputs_are_refused_clearly(lib):
    rng = np.random.default_rng(43)
    B, NH, DH, KS, U, bs = CASES[0]
    E = NH * DH
    weights = block_weights(rng, NH, DH, KS, U)
    model, _ = block_model(False, weights, None, bs)
    for i in (1, 4):  # the kernel's check, not onnxruntime's, sees conv and n
        model.graph.input[i].type.tensor_type.ClearField("shape")
    conv, y, c, n, m = initial_state(rng, B, KS, E)
    feeds = {"x": rand(rng, B, E), "conv": conv, "y": y, "c": c, "n": n, "m": m}
    sess = ort_session(model, lib)
    with pytest.raises(Exception, match=r"sLSTMBlock: input 'n' must have shape \[B, E\] = \[2, 10\]"):
        sess.run(None, {**feeds, "n": n[:, :7]})
    with pytest.raises(Exception, match=r"sLSTMBlock: input 'conv' must have shape \[B, KS, E\] = \[2, 4, 10\]"):
        sess.run(None, {**feeds, "conv": conv[:, :, :7]})
    with pytest.raises(Exception, match=r"sLSTMBlock: input 'conv_weight' must have shape \[KS, E\] \(KS from conv\)"):
        sess.run(None, {**feeds, "conv": conv[:, :3]})
    for value, message in (("tanh", "attribute 'ffn_act' must be one of 'gelu', 'relu', 'relu^2', 'sigmoid', "
                                     "'swish', 'selu', got 'tanh'"), (3, "attribute 'ffn_act' must be a string")):
        model.graph.node[0].attribute.append(helper.make_attribute(FFN_ACT, value))
        with pytest.raises(Exception, match=re.escape(f"sLSTMBlock: {message}")):
            ort_session(model, lib)
        del model.graph.node[0].attribute[-1]
    model.graph.node[0].ClearField("attribute")
    with pytest.raises(Exception, match="sLSTMBlock: the node has no float attribute 'norm_eps'"):
        ort_session(model, lib)
