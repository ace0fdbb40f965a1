"""The native xLSTMLargeBlock / xLSTMLargeBlockSequence kernels against the ops' function bodies.

One-node graphs of each op (its function body and the nested mLSTM cell's, random inputs and states, odd sizes),
in every quantization mode and on every forced CPU path the library knows (the ``isa`` fixture): a stream of
calls with the state fed back, steps one by one and chunks. Tolerances are
test_prlstm_xlstm_kernels.py's (float32 1e-5; fp16 and int8-dynamic one grid step of a product, there explained),
relative to max(1, max |body|). Needs the built library (python runtime/native/build.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_close_relative, block_op_model, block_stream, library_with, ort_session, rand
from qlstm_edge.runtime import native_lib

pytest.importorskip("xlstm")
from qlstm_edge.families.xlstm.block_ops import large_block_function, large_block_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.cells import mlstm_cell_function, mlstm_sequence_function  # noqa: E402
from qlstm_edge.families.xlstm.ops import LARGE_BLOCK, LARGE_BLOCK_SEQUENCE  # noqa: E402

TOL = {None: 1e-5, "fp16": 4e-3, "int8": 1e-5, "int8-dynamic": 1e-3, "int4": 1e-5}
MODES = list(TOL)
# (B, E, NH, DK, DV, U, int4 block size, gate soft cap): odd widths, a block size that does not divide K, no cap
CASES = [(2, 12, 2, 3, 5, 7, 8, 15.0), (1, 16, 4, 4, 4, 24, 32, 0.0), (3, 10, 1, 6, 9, 5, 4, 3.0)]
NORM = 1e-5


@pytest.fixture(scope="module")
def lib(lib_status):
    return library_with(lib_status, LARGE_BLOCK, LARGE_BLOCK_SEQUENCE)


def block_weights(rng, E, NH, DK, DV, U, cap):
    QK, V = NH * DK, NH * DV
    return {"norm_mlstm_weight": 1 + rand(rng, E, scale=0.1), "norm_mlstm_bias": rand(rng, E, scale=0.1),
            "W_qkvo": rand(rng, E, 2 * QK + 2 * V, scale=0.3), "b_qkvo": rand(rng, 2 * QK + 2 * V, scale=0.1),
            "W_if": rand(rng, E, 2 * NH, scale=0.5), "b_if": rand(rng, 2 * NH, scale=1.0),
            "head_norm_weight": 1 + rand(rng, V, scale=0.1), "head_norm_bias": rand(rng, V, scale=0.1),
            "W_out": rand(rng, V, E, scale=0.3), "b_out": rand(rng, E, scale=0.1),
            "norm_ffn_weight": 1 + rand(rng, E, scale=0.1), "norm_ffn_bias": rand(rng, E, scale=0.1),
            "W_up": rand(rng, E, 2 * U, scale=0.3), "b_up": rand(rng, 2 * U, scale=0.1),
            "W_down": rand(rng, U, E, scale=0.3), "b_down": rand(rng, E, scale=0.1),
            "gate_soft_cap": np.array(cap, np.float32), "q_scale": np.array(DK ** -0.5, np.float32),
            "eps": np.array(1e-6, np.float32)}


def state_sizes(weights):
    """DK, DV of the weights of ``block_weights`` (q_scale is DK^-1/2; W_out has NH DV rows)."""
    nh = weights["W_if"].shape[1] // 2
    return round(float(weights["q_scale"]) ** -2), weights["W_out"].shape[0] // nh


def block_model(seq, weights, mode, block_size, constant=True):
    """One block node over graph inputs x and the state, its weights initializers (``constant``) or inputs."""
    E, NH, DK, DV = weights["W_qkvo"].shape[0], weights["W_if"].shape[1] // 2, *state_sizes(weights)
    shapes = [["B", "T", E] if seq else ["B", E], ["B", NH, DK, DV], ["B", NH, DK], ["B", NH, 1]]
    body, cell = ((large_block_sequence_function, mlstm_sequence_function) if seq else
                  (large_block_function, mlstm_cell_function))
    return block_op_model(LARGE_BLOCK_SEQUENCE if seq else LARGE_BLOCK,
                          lambda opset, q: [cell(opset), body(opset, q)], weights, mode, block_size, shapes, constant,
                          NORM)


def stream(sess, seq, xs, state, chunks, extra):
    return block_stream(sess, LARGE_BLOCK_SEQUENCE if seq else LARGE_BLOCK, seq, xs, state, chunks, extra)


def initial_state(rng, B, NH, DK, DV):
    return [rand(rng, B, NH, DK, DV, scale=0.3), rand(rng, B, NH, DK, scale=0.3), rand(rng, B, NH, 1)]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "fp32")
@pytest.mark.parametrize("seq", [False, True], ids=["step", "sequence"])
def test_block_kernel_matches_function_body(isa, lib, seq, mode):
    rng = np.random.default_rng(31)
    for B, E, NH, DK, DV, U, bs, cap in CASES:
        weights = block_weights(rng, E, NH, DK, DV, U, cap)
        xs, state = rand(rng, B, 9, E), initial_state(rng, B, NH, DK, DV)
        model, extra = block_model(seq, weights, mode, bs)
        want = stream(ort_session(model), seq, xs, state, [4, 1, 4], extra)
        calls = native_lib.compute_calls()
        got = stream(ort_session(model, lib), seq, xs, state, [4, 1, 4], extra)
        assert native_lib.compute_calls() == calls + (3 if seq else 9)  # the block kernel ran, not the body
        assert_close_relative([got[0], *got[1]], [want[0], *want[1]], TOL[mode])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "fp32")
def test_block_weights_as_graph_inputs_pack_per_call(lib, mode):
    """Weights fed as graph inputs are packed on each call: the same values as the once-packed initializers."""
    rng = np.random.default_rng(32)
    B, E, NH, DK, DV, U, bs, cap = CASES[0]
    weights = block_weights(rng, E, NH, DK, DV, U, cap)
    xs, state = rand(rng, B, 5, E), initial_state(rng, B, NH, DK, DV)
    packed = stream(ort_session(block_model(True, weights, mode, bs)[0], lib), True, xs, state, [5], {})
    model, extra = block_model(True, weights, mode, bs, constant=False)
    per_call = stream(ort_session(model, lib), True, xs, state, [5], extra)
    for a, b in zip([packed[0], *packed[1]], [per_call[0], *per_call[1]]):
        np.testing.assert_array_equal(a, b)


def test_block_bad_inputs_are_refused_clearly(lib):
    rng = np.random.default_rng(33)
    B, E, NH, DK, DV, U, bs, cap = CASES[0]
    weights = block_weights(rng, E, NH, DK, DV, U, cap)
    model, _ = block_model(False, weights, None, bs)
    model.graph.input[2].type.tensor_type.ClearField("shape")  # the kernel's check, not onnxruntime's, sees n
    state = initial_state(rng, B, NH, DK, DV)
    with pytest.raises(Exception, match=r"xLSTMLargeBlock: input 'n' must have shape \[B, NH, DK\] = \[2, 2, 3\]"):
        ort_session(model, lib).run(None, {"x": rand(rng, B, E), "C": state[0], "n": state[1][:, :, :2], "m": state[2]})
    model.graph.node[0].ClearField("attribute")
    with pytest.raises(Exception, match="xLSTMLargeBlock: the node has no float attribute 'norm_eps'"):
        ort_session(model, lib)
