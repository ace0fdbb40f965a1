"""Native qlstm_edge kernels on quantized weights (exporters/quantize.py contract): every mode,
both ops, every ISA path, against the family's function body and an independent numpy reference.

int8 / int4 are weight-only (float32 products: float rounding only). int8-dynamic quantizes the
activations per row exactly as the function body does, so with identical inputs the int32 sums
are identical and only the float gate maths may differ. fp16 rounds the matrix-product inputs and
results to float16 like the body; onnxruntime's own float16 MatMul rounds more (it accumulates in
float16), so native vs body is held to the project's fp16 tolerance, and native vs the float64
emulation to a bound derived from float16 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (INPUTS, QUANT_MODES, SCALE_INPUTS, make_qllstm, ort_session, quant_op_model, quantize_feeds,
                     quantize_rows_like_body, random_inputs, reference_quant)
from qlstm_edge.parity import TOLERANCES
from qlstm_edge.runtime import native_lib

SIZES = [(1, 21, 37, 16), (3, 50, 130, 32)]  # (B, D, H, int4 block_size): odd H, K % block != 0
T = 6
TOL_FLOAT = 1e-5       # native vs body / reference where only float32 rounding differs
FP16_ULP = 2.0 ** -10  # float16 spacing relative to |v| (upper bound)



def weight_names(mode):
    return ["W_x", "W_h"] + (SCALE_INPUTS if mode != "fp16" else [])


def case(mode, sequence, B, D, H, bs, seed):
    qf = quantize_feeds(random_inputs(B, T if sequence else None, D, H, seed=seed), mode, bs)
    consts = {n: qf[n] for n in weight_names(mode)}
    feeds = {n: qf[n] for n in INPUTS if n not in consts}
    return qf, consts, feeds


def fp16_bound(qf, sequence):
    """Two float16 roundings of u's two products may differ by one ulp each, scaled by the largest
    gate sensitivity (|gate_scale|; sigmoid' <= 1/4, tanh' <= 1); per step, accumulated over T."""
    x = np.asarray(qf["x"], np.float64).reshape(-1, qf["W_x"].shape[0])
    mag = np.abs(x).max() * np.abs(qf["W_x"].astype(np.float64)).sum(0).max() + \
        (np.abs(qf["h"]).max() + 1.0) * np.abs(qf["W_h"].astype(np.float64)).sum(0).max()
    return 2 * FP16_ULP * mag * np.abs(qf["gate_scale"]).max() * (T if sequence else 1)


_body_cache: dict = {}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B%d_D%d_H%d_bs%d" % s)
@pytest.mark.parametrize("sequence", [False, True], ids=["cell", "sequence"])
@pytest.mark.parametrize("mode", QUANT_MODES)
def test_matches_body_and_reference(isa, mode, sequence, size):
    B, D, H, bs = size
    qf, consts, feeds = case(mode, sequence, B, D, H, bs, seed=H + B + sequence)
    calls = native_lib.compute_calls()
    out = ort_session(quant_op_model(sequence, mode, bs, constants=consts), native_lib.library_path()).run(None, feeds)
    assert native_lib.compute_calls() == calls + 1
    key = (mode, sequence, size)
    if key not in _body_cache:
        _body_cache[key] = ort_session(quant_op_model(sequence, mode, bs, constants=consts)).run(None, feeds)
    body = _body_cache[key]
    ref = reference_quant(qf, mode, sequence, bs)
    tol_ref = fp16_bound(qf, sequence) if mode == "fp16" else 2 * TOL_FLOAT
    tol_body = TOLERANCES["fp16"] if mode == "fp16" else TOL_FLOAT
    for got, b, r in zip(out, body, ref):
        assert got.dtype == np.float32 and got.shape == b.shape == r.shape
        assert np.abs(got - r).max() <= tol_ref, (np.abs(got - r).max(), tol_ref)
        assert np.abs(got - b).max() <= tol_body, (np.abs(got - b).max(), tol_body)



@pytest.mark.parametrize("B,steps", [(1, 7), (1, 2), (1, 3), (2, 5), (1, 11)], ids=lambda v: str(v))
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_weight_only_row_tiles_match_body(isa, mode, B, steps):
    """The weight-only products tile rows by 6 (x @ W_x over B * T rows): every remainder of 1-5 rows and the
    column tails (4H = 148: 32-column panels, then 16 and a masked 4) against the function body."""
    D, H, bs = 21, 37, 16
    qf = quantize_feeds(random_inputs(B, steps, D, H, seed=B * 100 + steps), mode, bs)
    consts = {n: qf[n] for n in weight_names(mode)}
    feeds = {n: qf[n] for n in INPUTS if n not in consts}
    out = ort_session(quant_op_model(True, mode, bs, constants=consts), native_lib.library_path()).run(None, feeds)
    body = ort_session(quant_op_model(True, mode, bs, constants=consts)).run(None, feeds)
    for got, b in zip(out, body):
        assert got.shape == b.shape and np.abs(got - b).max() <= TOL_FLOAT, np.abs(got - b).max()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B%d_D%d_H%d_bs%d" % s)
@pytest.mark.parametrize("sequence", [False, True], ids=["cell", "sequence"])
def test_int4_onnx_int4_storage_matches_packed_bit_for_bit(isa, sequence, size):
    """Files exported before the packed int4 form hold W_x / W_h as ONNX INT4 [K, N] (opset 21): the kernels still
    run them, with exactly the numbers of the same values packed two per byte in uint8."""
    B, D, H, bs = size
    f = random_inputs(B, T if sequence else None, D, H, seed=H + B)
    outs = []
    for packed in (True, False):
        qf = quantize_feeds(f, "int4", bs, packed=packed)
        consts = {n: qf[n] for n in weight_names("int4")}
        model = quant_op_model(sequence, "int4", bs, constants=consts, with_function=False, packed=packed)
        calls = native_lib.compute_calls()
        outs.append(ort_session(model, native_lib.library_path()).run(None, {n: qf[n] for n in INPUTS if n not in consts}))
        assert native_lib.compute_calls() == calls + 1
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_weights_as_graph_inputs_pack_per_call(lib_status, mode):
    """Weights fed as graph inputs (not constant initializers) are packed on each call: same
    result as the once-packed constants."""
    qf, consts, feeds = case(mode, True, 2, 19, 33, 32, seed=3)
    packed = ort_session(quant_op_model(True, mode, constants=consts), native_lib.library_path()).run(None, feeds)
    per_call = ort_session(quant_op_model(True, mode), native_lib.library_path()).run(None, {**feeds, **consts})
    for a, b in zip(packed, per_call):
        np.testing.assert_array_equal(a, b)


def test_int8_dynamic_rounding_ties_and_extremes(isa):
    """Products of extreme int8 values over K = 1000 (|sum| up to 1.6e7: no saturation in the
    maddubs path, no wrap in the VNNI +128 form) and activations exactly on .5 ties (s = 1:
    half-to-even, as the body's Round). An off-by-one in any integer sum moves u by s * w_scale
    (about 1e-5 here), far above the float rounding the tolerance allows."""
    B, D, H = 2, 1000, 40
    rng = np.random.default_rng(7)
    f = random_inputs(B, None, D, H, seed=7)
    f["W_x"] = (rng.choice([-1.0, 1.0], size=(D, H)) * 1e-3).astype(np.float32)  # all +-127
    x = rng.choice([-127.0, 127.0], size=(B, D)).astype(np.float32)
    x[:, 1:9] = [0.5, 1.5, 2.5, -0.5, -2.5, 126.5, -126.5, 3.5]
    f["x"] = x
    f["gate_scale"][:] = 0.3  # u reaches ~1: gates stay informative
    qf = quantize_feeds(f, "int8-dynamic")
    xq, s = quantize_rows_like_body(x)
    assert (s == 1.0).all() and list(xq[0, 1:9]) == [0, 2, 2, 0, -2, 126, -126, 4]
    consts = {n: qf[n] for n in weight_names("int8-dynamic")}
    feeds = {n: qf[n] for n in INPUTS if n not in consts}
    model = quant_op_model(False, "int8-dynamic", constants=consts)
    out = ort_session(model, native_lib.library_path()).run(None, feeds)
    body = ort_session(model).run(None, feeds)
    for got, b, r in zip(out, body, reference_quant(qf, "int8-dynamic", False)):
        assert np.abs(got - r).max() <= 2 * TOL_FLOAT
        assert np.abs(got - b).max() <= TOL_FLOAT


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_multithreaded_batch_split(lib_status, mode):
    qf, consts, feeds = case(mode, True, 9, 67, 130, 32, seed=9)
    model = quant_op_model(True, mode, constants=consts)
    two = ort_session(model, native_lib.library_path(), threads=2).run(None, feeds)
    one = ort_session(model, native_lib.library_path(), threads=1).run(None, feeds)
    for a, b in zip(two, one):
        np.testing.assert_array_equal(a, b)


def test_sequence_equals_repeated_cell(lib_status):
    qf, consts, feeds = case("int8-dynamic", True, 2, 11, 24, 32, seed=4)
    Y, hT, cT = ort_session(quant_op_model(True, "int8-dynamic", constants=consts), native_lib.library_path()).run(None, feeds)
    cell = ort_session(quant_op_model(False, "int8-dynamic", constants=consts), native_lib.library_path())
    h, c = feeds["h"], feeds["c"]
    for t in range(T):
        h, c = cell.run(None, {**feeds, "x": np.ascontiguousarray(feeds["x"][:, t]), "h": h, "c": c})
        np.testing.assert_array_equal(Y[:, t], h)
    np.testing.assert_array_equal(hT, h)
    np.testing.assert_array_equal(cT, c)


def _refused(model, feeds, needle):
    with pytest.raises(Exception) as err:
        ort_session(model, native_lib.library_path()).run(None, feeds)
    assert needle in str(err.value), str(err.value)


def test_wrong_quantized_inputs_are_refused_clearly(lib_status):
    qf, consts, feeds = case("int8", False, 2, 6, 5, 32, seed=1)
    model = quant_op_model(False, "int8", constants=consts, with_function=False)
    node = model.graph.node[0]
    node.attribute[[a.name for a in node.attribute].index("quant_mode")].s = b"int3"
    _refused(model, feeds, "unknown quant_mode 'int3'")

    model = quant_op_model(False, "int8", constants=consts, with_function=False)
    del model.graph.node[0].input[9:]
    _refused(model, feeds, "quant_mode 'int8' needs 11 inputs")

    model = quant_op_model(False, "int8", constants=consts, with_function=False)
    del model.graph.node[0].attribute[:]
    _refused(model, feeds, "expected 9 inputs for fp32 weights, got 11")
    del model.graph.node[0].input[9:]
    _refused(model, feeds, "input 'W_x' must be float32 (the node has no quant_mode attribute")

    bad = dict(consts, W_h_scale=np.ones(4, np.float32))
    _refused(quant_op_model(False, "int8", constants=bad, with_function=False), feeds,
             "'W_h_scale' must have shape [H] (one scale per output channel) = [5], got [4]")

    q4, c4, f4 = case("int4", False, 2, 6, 5, 4, seed=1)
    _refused(quant_op_model(False, "int4", 4, constants=dict(c4, W_x_scale=np.ones((1, 5), np.float32)),
                            with_function=False), f4,
             "'W_x_scale' must have shape [ceil(D / block_size), H] = [2, 5], got [1, 5]")
    _refused(quant_op_model(False, "int4", 4, constants=dict(c4, W_h=np.zeros((5, 5), np.uint8)),
                            with_function=False), f4,
             "input 'W_h' must have shape [H, ceil(H / 2)] (input-major, int4 two per byte) = [5, 3], got [5, 5]")
    _refused(quant_op_model(False, "int4", 4, constants=dict(c4, W_x=q4["W_x_q"].astype(np.int8)),
                            with_function=False), f4,
             "input 'W_x' must be uint8 (int4 packed two per byte) or int4 for quant_mode 'int4', got int8")

    c8 = dict(consts)
    c8["W_h"] = c8["W_h"].copy()
    c8["W_h"][0, 0] = -128
    _refused(quant_op_model(False, "int8-dynamic", constants=c8, with_function=False), feeds,
             "int8-dynamic weights must lie in [-127, 127]")


# ---------------------------------------------------------------------------------------------
# End to end: exported QL-LSTM models, StreamingSession native="on" vs "off".

@pytest.mark.parametrize("graph_mode", ["step", "sequence"])
@pytest.mark.parametrize("quant", QUANT_MODES)
def test_exported_model_native_matches_function_body(tmp_path, lib_status, quant, graph_mode):
    from qlstm_edge.exporters import export_onnx
    from qlstm_edge.runtime import StreamingSession

    model = make_qllstm(2, tokens=False, hidden=40, seed=5)
    path = export_onnx(model, tmp_path / "m.onnx", mode=graph_mode, quantize=quant, block_size=16)
    x = np.random.default_rng(1).standard_normal((2, 60, 5)).astype(np.float32)
    outs = {}
    for native in ("on", "off"):
        s = StreamingSession(path, native=native, threads=1)
        assert s.op_path == ("native" if native == "on" else "function-body")
        calls = native_lib.compute_calls()
        if graph_mode == "step":
            y = np.stack([s.step(x[:, t]) for t in range(x.shape[1])], axis=1)
        else:
            y = np.concatenate([s.run(x[:, :25]), s.run(x[:, 25:])], axis=1)
        ran = native_lib.compute_calls() - calls
        assert ran == (0 if native == "off" else (2 * 60 if graph_mode == "step" else 2 * 2))
        outs[native] = (y, s.get_state())
    (y_on, st_on), (y_off, st_off) = outs["on"], outs["off"]
    # The function-body session runs onnxruntime's own kernels (its float16 MatMul accumulates in
    # float16), so the bound is the mode's parity tolerance (qlstm_edge.parity).
    tol = TOLERANCES[quant]
    assert np.abs(y_on - y_off).max() <= tol
    for k in st_on:
        assert np.abs(st_on[k] - st_off[k]).max() <= tol
