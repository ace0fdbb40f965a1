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

from helpers import assert_close_relative, block_op_model, block_stream, library_with, ort_session, rand
from qlstm_edge.runtime import native_lib

pytest.importorskip("xlstm")
from qlstm_edge.families.xlstm.block_ops import mlstm_block_function, mlstm_block_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.cells import mlstm_cell_function, mlstm_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.ops import MLSTM_BLOCK, MLSTM_BLOCK_SEQUENCE  # noqa: E402

TOL = {None: 1e-5, "fp16": 4e-3, "int8": 1e-5, "int8-dynamic": 1e-3, "int4": 1e-5}
MODES = list(TOL)
# (B, E, NH, DH, BS, KS, int4 block size): odd widths and head sizes, a block size that does not divide K, one tap
CASES = [(2, 12, 2, 6, 4, 3, 8), (1, 16, 4, 4, 2, 4, 32), (3, 10, 1, 9, 3, 1, 4)]
NORM = 1e-5


@pytest.fixture(scope="module")
def lib(lib_status):
    return library_with(lib_status, MLSTM_BLOCK, MLSTM_BLOCK_SEQUENCE)


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


def state_shapes(weights):
    I, KS = weights["conv_weight"].shape[1], weights["conv_weight"].shape[0]
    NH = weights["W_if"].shape[1] // 2
    DH = I // NH
    return [["B", KS, I], ["B", NH, DH, DH], ["B", NH, DH, 1], ["B", NH, 1, 1]]


def block_model(seq, weights, mode, block_size, constant=True):
    """One block node over graph inputs x and the state, its weights initializers (``constant``) or inputs."""
    E = weights["W_up"].shape[0]
    body, cell = ((mlstm_block_sequence_function, mlstm_sequence_function) if seq else
                  (mlstm_block_function, mlstm_cell_function))
    return block_op_model(MLSTM_BLOCK_SEQUENCE if seq else MLSTM_BLOCK,
                          lambda opset, q: [cell(opset), body(opset, q)], weights, mode, block_size,
                          [["B", "T", E] if seq else ["B", E], *state_shapes(weights)], constant, NORM)


def stream(sess, seq, xs, state, chunks, extra):
    return block_stream(sess, MLSTM_BLOCK_SEQUENCE if seq else MLSTM_BLOCK, seq, xs, state, chunks, extra)


def initial_state(rng, B, weights):
    return [rand(rng, B, *s[1:], scale=0.3 if k in "Cn" else 1.0)
            for k, s in zip(("w", "C", "n", "m"), state_shapes(weights))]


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
        assert_close_relative([got[0], *got[1]], [want[0], *want[1]], TOL[mode])


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
