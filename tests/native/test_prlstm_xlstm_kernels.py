"""Native PR-LSTM and xLSTM kernels against the custom ops' function bodies.

Two levels: one-node graphs of each op (its function body from the family's exporter, random inputs and
states, odd sizes, the PR-LSTM stream limit, bad inputs), and exported models streamed through
StreamingSession with native="on" against native="off". Every forced CPU path the library knows (the ``isa``
fixture, QLSTM_EDGE_NATIVE_ISA) is checked where the CPU has it. fp32 kernels: at most 1e-5 max abs from the
function body on these short streams.

Needs the built library (python runtime/native/build.py). Without it these tests skip, or fail when
QLSTM_EDGE_REQUIRE_NATIVE=1.
"""
from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from helpers import ort_session, perturb, rand, stack_kwargs
from qlstm_edge.exporters import export_onnx
from qlstm_edge.exporters.quantize import Quantizer, pack_int4, quantize_symmetric, to_fp16
from qlstm_edge.families.prlstm import PRLSTM
from qlstm_edge.families.prlstm import export as pr_export
from qlstm_edge.runtime import StreamingSession, native_lib

try:
    from qlstm_edge.families.xlstm import export as x_export
    from xlstm import xLSTMLMModel, xLSTMLMModelConfig
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
    HAVE_XLSTM = True
except ImportError as e:  # pragma: no cover - depends on the environment
    if os.environ.get("QLSTM_EDGE_REQUIRE_XLSTM") == "1":
        raise ImportError(f"QLSTM_EDGE_REQUIRE_XLSTM=1 but the xlstm package cannot be imported ({e})") from e
    HAVE_XLSTM = False

needs_xlstm = pytest.mark.skipif(not HAVE_XLSTM, reason="the official xlstm package is not installed")

TOL = 1e-5  # against the function body (float32)
TOL_FLOAT64 = 2e-5  # against the float64 references written below
OPSET = 17
DOMAIN = "qlstm_edge"
FAMILY_OPS = ["PRLSTMStep", "PRLSTMSequence", "sLSTMCell", "sLSTMSequence", "mLSTMCell", "mLSTMSequence"]
QUANTIZED_FAMILY_OPS = FAMILY_OPS[:4]  # the mLSTM ops hold no weights


@pytest.fixture(scope="module")
def lib(lib_status):
    """Path of the native op library (it must list the family ops)."""
    st = lib_status
    assert set(FAMILY_OPS) <= set(st["ops"] or []), f"{st['path']} lacks the family ops: rebuild it"
    return st["path"]


# -- one-node graphs -----------------------------------------------------------------------------
def op_model(op: str, function, feeds: dict, outputs: list, dynamic: bool = False):
    """A graph with one ``qlstm_edge::op`` node over graph inputs named like the op's inputs."""
    def info(name, arr):
        elem = TensorProto.INT64 if arr.dtype == np.int64 else TensorProto.FLOAT
        return helper.make_tensor_value_info(name, elem, None if dynamic else list(arr.shape))
    inputs = [info(k, v) for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(o, TensorProto.INT64 if o.startswith("count") else TensorProto.FLOAT, None)
            for o in outputs]
    node = helper.make_node(op, list(feeds), outputs, domain=DOMAIN)
    graph = helper.make_graph([node], op, inputs, outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
                             functions=[function], ir_version=8)



def compare(model, feeds, lib_path):
    want = ort_session(model).run(None, feeds)
    calls = native_lib.compute_calls()
    got = ort_session(model, lib_path).run(None, feeds)
    assert native_lib.compute_calls() == calls + 1  # the native kernel ran, not the function body
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype == np.int64:
            np.testing.assert_array_equal(g, w)
        else:
            assert np.array_equal(np.isnan(g), np.isnan(w))
            if g.size:
                assert np.nanmax(np.abs(g - w), initial=0.0) <= TOL
    return got


# PR-LSTM
PR_OUT = ["y", "block_h_out", "block_c_out", "prefix_h_out", "prefix_c_out", "count_out"]


def pr_feeds(rng, B, T, D, H, K, R, counts, seq):
    x = rand(rng, B, T, D) if seq else rand(rng, B, D)
    state = {}
    for name in ("block_h", "block_c", "prefix_h", "prefix_c"):
        s = rand(rng, B, K, H, scale=0.5)
        for r, n in enumerate(counts):  # zero where bit b of count is 0, as a real stream's state
            s[r, [b for b in range(K) if not (n >> b) & 1]] = 0.0
        state[name] = s
    return {"x": x, **state, "count": np.array(counts, np.int64),
            "W_leaf": rand(rng, D, 3 * H, scale=0.4), "b_leaf": rand(rng, 3 * H, scale=0.2),
            "W_merge": rand(rng, 2 * H, 5 * H, scale=0.3), "b_merge": rand(rng, 5 * H, scale=0.2),
            "W_unary": rand(rng, R, H, 4 * H, scale=0.3), "b_unary": rand(rng, R, 4 * H, scale=0.2)}


def pr_model(seq, R, feeds, dynamic=False):
    op = "PRLSTMSequence" if seq else "PRLSTMStep"
    fn = (pr_export.sequence_function if seq else pr_export.step_function)(OPSET, R)
    return op_model(op, fn, feeds, (["Y"] if seq else ["y"]) + PR_OUT[1:], dynamic)


@pytest.mark.parametrize("B,T,D,H,K,R,counts", [
    (1, 1, 5, 7, 4, 1, [0]),
    (3, 1, 3, 17, 5, 0, [0, 7, 22]),
    (3, 6, 5, 9, 5, 2, [1, 3, 11]),
    (1, 13, 4, 33, 6, 1, [18]),
])
def test_prlstm_op_matches_function_body(isa, lib, B, T, D, H, K, R, counts):
    rng = np.random.default_rng(B * 100 + T)
    for seq in (False, True):
        if not seq and T != 1:
            continue
        feeds = pr_feeds(rng, B, T, D, H, K, R, counts, seq)
        compare(pr_model(seq, R, feeds), feeds, lib)


def step_body_chain(feeds):
    """The PRLSTMStep function body (no library) applied token by token over a sequence op's feeds."""
    T = feeds["x"].shape[1]
    step = ort_session(pr_model(False, int(feeds["W_unary"].shape[0]), {**feeds, "x": feeds["x"][:, 0]}))
    cur = [feeds[k] for k in pr_export.STATES]
    weights = {k: feeds[k] for k in pr_export.WEIGHTS}
    ys = []
    for t in range(T):
        y, *cur = step.run(None, {"x": feeds["x"][:, t], **dict(zip(pr_export.STATES, cur)), **weights})
        ys.append(y)
    return np.stack(ys, 1), cur


def test_prlstm_stream_limit_matches_function_body(isa, lib):
    """K = 3 holds 7 tokens. Past the limit y is NaN and the counter keeps going, as in the bodies; the
    state there is unspecified (the step and sequence bodies differ from each other): the native sequence
    op continues exactly as the step op does."""
    rng = np.random.default_rng(7)
    counts = [5, 6, 7, 8, 13]
    feeds = pr_feeds(rng, len(counts), 1, 3, 6, 3, 1, counts, False)
    y = compare(pr_model(False, 1, feeds), feeds, lib)[0]
    assert np.array_equal(np.isnan(y).all(-1), np.array(counts) + 1 >= 8)
    for T in (1, 2, 5):
        feeds = pr_feeds(rng, len(counts), T, 3, 6, 3, 1, counts, True)
        Y, *state = ort_session(pr_model(True, 1, feeds), lib).run(None, feeds)
        want_Y, *want_state = ort_session(pr_model(True, 1, feeds)).run(None, feeds)
        pos = np.array(counts)[:, None] + np.arange(1, T + 1)[None]
        assert np.array_equal(np.isnan(Y).all(-1), pos >= 8) and np.array_equal(np.isnan(Y), np.isnan(want_Y))
        assert np.nanmax(np.abs(Y - want_Y)) <= TOL
        np.testing.assert_array_equal(state[-1], want_state[-1])
        inside = pos[:, -1] < 8  # chunks that end within the limit: the whole state is the body's
        for got, want in zip(state[:-1], want_state[:-1]):
            assert np.abs(got[inside] - want[inside]).max(initial=0.0) <= TOL
        chain_Y, chain_state = step_body_chain(feeds)
        assert np.array_equal(np.isnan(chain_Y), np.isnan(Y))
        for got, want in zip(state, chain_state):
            assert np.abs(got - want).max() <= TOL


def test_prlstm_step_chain_equals_sequence(lib, monkeypatch):
    """The step op applied token by token gives the sequence op's outputs (both native)."""
    rng = np.random.default_rng(3)
    B, T, D, H, K, R = 2, 11, 4, 10, 5, 1
    seq_feeds = pr_feeds(rng, B, T, D, H, K, R, [0, 9], True)
    Y, *state = ort_session(pr_model(True, R, seq_feeds), lib).run(None, seq_feeds)
    step = ort_session(pr_model(False, R, {**seq_feeds, "x": seq_feeds["x"][:, 0]}), lib)
    cur = [seq_feeds[k] for k in ("block_h", "block_c", "prefix_h", "prefix_c", "count")]
    weights = {k: seq_feeds[k] for k in pr_export.WEIGHTS}
    for t in range(T):
        y, *cur = step.run(None, {"x": seq_feeds["x"][:, t], **dict(zip(pr_export.STATES, cur)), **weights})
        np.testing.assert_array_equal(y, Y[:, t])
    for a, b in zip(cur, state):
        np.testing.assert_array_equal(a, b)


# xLSTM
def slstm_feeds(rng, B, T, NH, DH, seq, first=False):
    H = NH * DH
    n = np.zeros((B, H), np.float32) if first else np.abs(rand(rng, B, H)) + 0.5
    n[0, :2] = 0.0  # the element-wise n == 0 branch of the stabiliser
    return {"x": rand(rng, B, T, 4 * H) if seq else rand(rng, B, 4 * H), ("y0" if seq else "y"): rand(rng, B, H),
            ("c0" if seq else "c"): rand(rng, B, H), ("n0" if seq else "n"): n,
            ("m0" if seq else "m"): rand(rng, B, H), "R": rand(rng, 4, NH, DH, DH, scale=0.4),
            "b": rand(rng, 4 * H, scale=0.3)}


def mlstm_feeds(rng, B, T, NH, DK, DV, seq, scales=(1.0, 0.5, 1e-6)):
    """Random q, k, v and gates; the state is where the function body takes a stream from zero in 6 steps
    (a memory consistent with its normaliser n, as in a real stream)."""
    def chunk(t):
        lead = (B, t, NH)
        return {"q": rand(rng, *lead, DK), "k": rand(rng, *lead, DK), "v": rand(rng, *lead, DV),
                "i": rand(rng, *lead, scale=2.0), "f": rand(rng, *lead, scale=3.0) + 2.0}
    consts = {"q_scale": np.array(scales[0], np.float32), "k_scale": np.array(scales[1], np.float32),
              "eps": np.array(scales[2], np.float32)}
    warm = {**chunk(6), "C0": np.zeros((B, NH, DK, DV), np.float32), "n0": np.zeros((B, NH, DK), np.float32),
            "m0": np.zeros((B, NH, 1), np.float32), **consts}
    _, C, n, m = ort_session(x_model("mLSTMSequence", warm)).run(None, warm)
    x = chunk(T)
    if not seq:
        x = {k: v[:, 0] for k, v in x.items()}
    s = "0" if seq else ""
    return {**x, f"C{s}": C, f"n{s}": n, f"m{s}": m, **consts}


def x_model(op, feeds, dynamic=False):
    fn = {"sLSTMCell": x_export.slstm_cell_function, "sLSTMSequence": x_export.slstm_sequence_function,
          "mLSTMCell": x_export.mlstm_cell_function, "mLSTMSequence": x_export.mlstm_sequence_function}[op](OPSET)
    outs = {"sLSTMCell": ["y_out", "c_out", "n_out", "m_out"], "sLSTMSequence": ["Y", "y_T", "c_T", "n_T", "m_T"],
            "mLSTMCell": ["h", "C_out", "n_out", "m_out"], "mLSTMSequence": ["H", "C_T", "n_T", "m_T"]}[op]
    return op_model(op, fn, feeds, outs, dynamic)


@needs_xlstm
@pytest.mark.parametrize("B,T,NH,DH", [(1, 1, 1, 4), (3, 1, 3, 5), (1, 9, 2, 19), (3, 4, 4, 8)])
def test_slstm_ops_match_function_body(isa, lib, B, T, NH, DH):
    rng = np.random.default_rng(T * 10 + DH)
    if T == 1:
        feeds = slstm_feeds(rng, B, 1, NH, DH, False)
        compare(x_model("sLSTMCell", feeds), feeds, lib)
        feeds = slstm_feeds(rng, B, 1, NH, DH, False, first=True)
        compare(x_model("sLSTMCell", feeds), feeds, lib)
    feeds = slstm_feeds(rng, B, T, NH, DH, True)
    compare(x_model("sLSTMSequence", feeds), feeds, lib)


@needs_xlstm
@pytest.mark.parametrize("B,T,NH,DK,DV", [(1, 1, 1, 4, 4), (3, 1, 3, 5, 7), (1, 9, 2, 33, 17), (3, 5, 4, 8, 16)])
def test_mlstm_ops_match_function_body(isa, lib, B, T, NH, DK, DV):
    rng = np.random.default_rng(T * 10 + DK)
    for scales in ((1.0, DK ** -0.5, 1e-6), (DK ** -0.5, 1.0, 1e-3)):
        if T == 1:
            feeds = mlstm_feeds(rng, B, 1, NH, DK, DV, False, scales)
            compare(x_model("mLSTMCell", feeds), feeds, lib)
        feeds = mlstm_feeds(rng, B, T, NH, DK, DV, True, scales)
        compare(x_model("mLSTMSequence", feeds), feeds, lib)


# float64 references of the step ops, written from the equations (qle_prlstm.h / qle_xlstm.h, DESIGN.md)
def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def ref_prlstm_step(f):
    W = {k: f[k].astype(np.float64) for k in pr_export.WEIGHTS}
    H, K = f["block_h"].shape[2], f["block_h"].shape[1]

    def combine(hl, cl, hr, cr):
        i, g, o, fl, fr = np.split(np.concatenate([hl, hr]) @ W["W_merge"] + W["b_merge"], 5)
        c = sig(i) * np.tanh(g) + sig(fl) * cl + sig(fr) * cr
        h = sig(o) * np.tanh(c)
        for k in range(W["W_unary"].shape[0]):
            i, g, o, fk = np.split(h @ W["W_unary"][k] + W["b_unary"][k], 4)
            c = sig(i) * np.tanh(g) + sig(fk) * c
            h = sig(o) * np.tanh(c)
        return h, c

    ys, states = [], [f[k].astype(np.float64).copy() for k in ("block_h", "block_c", "prefix_h", "prefix_c")]
    for r, n in enumerate(f["count"]):
        bh, bc, ph, pc = (s[r] for s in states)
        i, g, o = np.split(f["x"][r].astype(np.float64) @ W["W_leaf"] + W["b_leaf"], 3)
        c = sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        t = 0
        while t < K and (n >> t) & 1:  # carries: the trailing ones of count
            h, c = combine(bh[t], bc[t], h, c)
            t += 1
        above = [b for b in range(t + 1, K) if (n >> b) & 1]
        p = combine(ph[above[0]], pc[above[0]], h, c) if above else (h, c)
        ys.append(p[0] if n + 1 < 2 ** K else np.full(H, np.nan))
        for s in (bh, bc, ph, pc):
            s[:t] = 0.0
        bh[t], bc[t], ph[t], pc[t] = h, c, p[0], p[1]
    return [np.stack(ys), *states, f["count"] + 1]


def ref_slstm_cell(f):
    x, y, c, n, m, R, b = (f[k].astype(np.float64) for k in ("x", "y", "c", "n", "m", "R", "b"))
    NH, DH = R.shape[1], R.shape[2]
    ry = np.einsum("bhd,ghde->bghe", y.reshape(-1, NH, DH), R).reshape(len(x), -1)
    i_raw, f_raw, z_raw, o_raw = np.split(x + ry + b, 4, axis=1)
    lfm = m + np.minimum(f_raw, 0) - np.log1p(np.exp(-np.abs(f_raw)))
    m_new = np.where(n == 0, i_raw, np.maximum(i_raw, lfm))
    ig, fg = np.minimum(np.exp(i_raw - m_new), 1), np.minimum(np.exp(lfm - m_new), 1)
    c_new = fg * c + ig * np.tanh(z_raw)
    n_new = fg * n + ig
    return [sig(o_raw) * c_new / n_new, c_new, n_new, m_new]


def ref_mlstm_cell(f):
    q, k, v, i, fg, C, n, m = (f[key].astype(np.float64) for key in ("q", "k", "v", "i", "f", "C", "n", "m"))
    lfm = (np.minimum(fg, 0) - np.log1p(np.exp(-np.abs(fg))))[..., None] + m
    m_new = np.maximum(lfm, i[..., None])
    f_act, i_act = np.exp(lfm - m_new), np.exp(i[..., None] - m_new)
    ks, qs = k * float(f["k_scale"]), q * float(f["q_scale"])
    C_new = f_act[..., None] * C + (i_act * ks)[..., None] * v[..., None, :]
    n_new = f_act * n + i_act * ks
    qn = np.abs((qs * n_new).sum(-1, keepdims=True))
    h = np.einsum("bhk,bhkv->bhv", qs, C_new) / (np.maximum(qn, np.exp(-m_new)) + float(f["eps"]))
    return [h, C_new, n_new, m_new]


def test_step_ops_match_float64_reference(isa, lib):
    rng = np.random.default_rng(4)
    cases = [(pr_model(False, 2, f), f, ref_prlstm_step)
             for f in [pr_feeds(rng, 3, 1, 6, 13, 4, 2, [0, 11, 14], False)]]
    if HAVE_XLSTM:
        cases += [(x_model("sLSTMCell", f), f, ref_slstm_cell) for f in [slstm_feeds(rng, 3, 1, 3, 7, False)]]
        cases += [(x_model("mLSTMCell", f), f, ref_mlstm_cell) for f in [mlstm_feeds(rng, 3, 1, 2, 9, 11, False)]]
    for model, feeds, ref in cases:
        for got, want in zip(ort_session(model, lib).run(None, feeds), ref(feeds)):
            assert got.shape == want.shape
            assert np.array_equal(np.isnan(got), np.isnan(want))
            assert np.nanmax(np.abs(got - want), initial=0.0) <= TOL_FLOAT64, model.graph.node[0].op_type


def test_empty_chunk_keeps_the_state(lib):
    """T = 0 (the function bodies' Scan and Loop cannot take it; StreamingSession short-circuits it)."""
    rng = np.random.default_rng(5)
    feeds = pr_feeds(rng, 2, 0, 3, 8, 3, 1, [2, 5], True)
    Y, *state = ort_session(pr_model(True, 1, feeds), lib).run(None, feeds)
    assert Y.shape == (2, 0, 8)
    for got, name in zip(state, pr_export.STATES):
        np.testing.assert_array_equal(got, feeds[name])
    if not HAVE_XLSTM:
        return
    for op, feeds, names in (("sLSTMSequence", slstm_feeds(rng, 2, 0, 2, 3, True), ["y0", "c0", "n0", "m0"]),
                             ("mLSTMSequence", mlstm_feeds(rng, 2, 0, 2, 3, 5, True), ["C0", "n0", "m0"])):
        Y, *state = ort_session(x_model(op, feeds), lib).run(None, feeds)
        assert Y.shape[:2] == (2, 0)
        for got, name in zip(state, names):
            np.testing.assert_array_equal(got, feeds[name])


@needs_xlstm
def test_mlstm_denominator_both_sides(lib):
    """The cell inputs reach both sides of max(|q.n|, exp(-m)), and the native kernel matches on each."""
    rng = np.random.default_rng(11)
    feeds = mlstm_feeds(rng, 3, 1, 3, 5, 7, False)
    _, _, n, m = compare(x_model("mLSTMCell", feeds), feeds, lib)
    qn = np.abs((feeds["q"] * feeds["q_scale"] * n).sum(-1))
    floor = np.exp(-m[..., 0])
    assert (qn > floor).any() and (qn < floor).any()


def test_threads_split_rows_identically(lib):
    """Big enough calls split batch rows (mLSTM: rows x heads) over onnxruntime's threads: same values."""
    rng = np.random.default_rng(2)
    cases = [(pr_model, (True, 1), pr_feeds(rng, 4, 9, 16, 64, 6, 1, [0, 3, 17, 40], True))]
    if HAVE_XLSTM:
        cases += [(x_model, ("sLSTMSequence",), slstm_feeds(rng, 4, 16, 4, 32, True)),
                  (x_model, ("mLSTMSequence",), mlstm_feeds(rng, 3, 5, 4, 64, 64, True))]
    for make, args, feeds in cases:
        model = make(*args, feeds)
        one = ort_session(model, lib, threads=1).run(None, feeds)
        two = ort_session(model, lib, threads=2).run(None, feeds)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


# -- bad inputs ----------------------------------------------------------------------------------
def refused(model, feeds, lib_path, needle):
    with pytest.raises(Exception) as e:
        ort_session(model, lib_path).run(None, feeds)
    assert needle in str(e.value), str(e.value)


def test_prlstm_bad_inputs_are_refused_clearly(lib):
    rng = np.random.default_rng(0)
    feeds = pr_feeds(rng, 2, 1, 3, 4, 3, 1, [0, 1], False)
    model = pr_model(False, 1, feeds, dynamic=True)
    refused(model, {**feeds, "count": np.array([0, -1], np.int64)}, lib, "PRLSTMStep: input 'count' must hold")
    refused(model, {**feeds, "block_c": feeds["block_c"][:, :2]}, lib,
            "PRLSTMStep: input 'block_c' must have shape [B, K, H] = [2, 3, 4], got [2, 2, 4]")
    refused(model, {**feeds, "W_merge": feeds["W_merge"][:, :-1]}, lib, "PRLSTMStep: input 'W_merge' must have shape")
    refused(model, {**feeds, "x": feeds["x"][None]}, lib, "PRLSTMStep: input 'x' must have rank 2")
    deep = pr_feeds(rng, 1, 1, 3, 4, 63, 1, [0], False)
    refused(model, deep, lib, "PRLSTMStep: the stack depth K")
    seq_feeds = pr_feeds(rng, 1, 2, 3, 4, 3, 1, [2 ** 63 - 2], True)
    refused(pr_model(True, 1, seq_feeds, dynamic=True), seq_feeds, lib, "PRLSTMSequence: input 'count' must hold")


@needs_xlstm
def test_xlstm_bad_inputs_are_refused_clearly(lib):
    rng = np.random.default_rng(0)
    feeds = slstm_feeds(rng, 2, 1, 2, 3, False)
    model = x_model("sLSTMCell", feeds, dynamic=True)
    refused(model, {**feeds, "R": feeds["R"][:3]}, lib, "sLSTMCell: input 'R' must have shape [4, NH, DH, DH]")
    refused(model, {**feeds, "n": feeds["n"][:, :5]}, lib, "sLSTMCell: input 'n' must have shape [B, H] = [2, 6]")
    refused(model, {**feeds, "x": feeds["x"][:, :-1]}, lib, "sLSTMCell: input 'x' must have shape [B, 4H]")
    feeds = mlstm_feeds(rng, 2, 3, 2, 4, 5, True)
    model = x_model("mLSTMSequence", feeds, dynamic=True)
    refused(model, {**feeds, "eps": np.ones(2, np.float32)}, lib,
            "mLSTMSequence: input 'eps' must be a scalar (shape [] or [1]), got [2]")
    refused(model, {**feeds, "m0": feeds["m0"][..., 0]}, lib, "mLSTMSequence: input 'm0' must have shape [B, NH, 1]")
    refused(model, {**feeds, "k": feeds["k"][:, :2]}, lib, "mLSTMSequence: input 'k' must have shape [B, T, NH, DK]")


def test_forced_unknown_isa_is_refused(lib, monkeypatch):
    monkeypatch.setenv(native_lib.ISA_ENV, "sse9")
    feeds = pr_feeds(np.random.default_rng(0), 1, 1, 3, 4, 3, 1, [0], False)
    with pytest.raises(Exception, match="PRLSTMStep: QLSTM_EDGE_NATIVE_ISA=sse9"):
        ort_session(pr_model(False, 1, feeds), lib).run(None, feeds)


# -- the library's op table ---------------------------------------------------------------------------
def test_library_lists_its_ops(lib):
    """In registration order: the family folders (runtime/native/<family>/) sorted by name, and a folder's ops
    files sorted by name."""
    st = native_lib.status()
    ql = ["QLLSTMCell", "QLLSTMSequence"]
    block = ["xLSTMLargeBlock", "xLSTMLargeBlockSequence", "mLSTMBlock", "mLSTMBlockSequence", "sLSTMBlock",
             "sLSTMBlockSequence"]
    assert st["ops"] == [*FAMILY_OPS[:2], *ql, *block, *FAMILY_OPS[2:]]
    assert st["quantized_ops"] == [*QUANTIZED_FAMILY_OPS[:2], *ql, *block, *QUANTIZED_FAMILY_OPS[2:]]


def test_quantized_family_nodes_are_reported_unsupported(lib, tmp_path):
    """A library whose family kernels take float32 nodes only (as before they took quantized ones) would make
    a quantized node of theirs fail the model's load once registered, so ``unsupported_nodes`` names it; this
    library takes them (and nothing is reported for a float32 model)."""
    torch.manual_seed(0)
    m = PRLSTM(4, 8, num_layers=2, stack_levels=5).eval()
    st = native_lib.status()
    assert native_lib.unsupported_nodes(export_onnx(m, tmp_path / "f32.onnx", mode="step"), st) == []
    path = export_onnx(m, tmp_path / "int8.onnx", mode="sequence", quantize="int8")
    assert native_lib.unsupported_nodes(path, st) == []
    float_only = {**st, "quantized_ops": ["QLLSTMCell", "QLLSTMSequence"]}
    assert native_lib.unsupported_nodes(path, float_only) == ["PRLSTMSequence (quant_mode int8)"]
    assert native_lib.unsupported_nodes(path, {**st, "ops": None}) == []  # a library that lists no ops
    (tmp_path / "junk.onnx").write_bytes(b"not a model")  # left to the session's load to report
    assert native_lib.unsupported_nodes(tmp_path / "junk.onnx", st) == []


# -- exported models streamed through StreamingSession ----------------------------------------------
def stream(path, native, xs, chunks=None):
    s = StreamingSession(path, native=native)
    assert s.op_path == ("native" if native == "on" else "function-body")
    if chunks is None:
        ys = [s.step(x) for x in xs.transpose(1, 0, *range(2, xs.ndim))]
        return np.stack(ys, 1), s.get_state()
    ys, t = [], 0
    for c in chunks:
        ys.append(s.run(xs[:, t:t + c]))
        t += c
    return np.concatenate(ys, 1), s.get_state()


def check_stream(path, xs, chunks=None):
    want, want_state = stream(path, "off", xs, chunks)
    calls = native_lib.compute_calls()
    got, got_state = stream(path, "on", xs, chunks)
    assert native_lib.compute_calls() > calls
    assert np.abs(got - want).max() <= TOL
    for k, v in want_state.items():
        if v.dtype == np.int64:
            np.testing.assert_array_equal(got_state[k], v)
        else:
            assert np.abs(got_state[k] - v).max() <= TOL, k


@pytest.mark.parametrize("batch", [1, 3])
def test_prlstm_model_streams(isa, lib, tmp_path, batch):
    torch.manual_seed(0)
    m = PRLSTM(5, 12, num_layers=3, stack_levels=6).eval()
    xs = np.random.default_rng(batch).standard_normal((batch, 21, 5)).astype(np.float32)
    check_stream(export_onnx(m, tmp_path / "step.onnx", mode="step"), xs)
    check_stream(export_onnx(m, tmp_path / "seq.onnx", mode="sequence"), xs, chunks=[1, 7, 2, 11])


def xlstm_lm(E, heads, slstm_at):
    torch.manual_seed(0)
    return perturb(xLSTMLMModel(xLSTMLMModelConfig(vocab_size=40, **stack_kwargs(E=E, heads=heads, slstm_at=slstm_at))),
                   seed=1)


@needs_xlstm
@pytest.mark.parametrize("batch", [1, 3])
def test_xlstm_lm_streams(isa, lib, tmp_path, batch):
    m = xlstm_lm(24, 2, [1])  # an mLSTM block (DK = 24) and an sLSTM block (DH = 12)
    ids = np.random.default_rng(batch).integers(0, 40, (batch, 17))
    check_stream(export_onnx(m, tmp_path / "step.onnx", mode="step"), ids)
    check_stream(export_onnx(m, tmp_path / "seq.onnx", mode="sequence"), ids, chunks=[1, 9, 7])


@needs_xlstm
def test_xlstm_large_streams(isa, lib, tmp_path):
    torch.manual_seed(0)
    cfg = xLSTMLargeConfig(embedding_dim=32, num_heads=2, num_blocks=2, vocab_size=40,
                           chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
                           step_kernel="native", mode="inference", return_last_states=True)
    m = xLSTMLarge(cfg).eval()
    ids = np.random.default_rng(0).integers(0, 40, (2, 13))
    check_stream(export_onnx(m, tmp_path / "step.onnx", mode="step"), ids)
    check_stream(export_onnx(m, tmp_path / "seq.onnx", mode="sequence"), ids, chunks=[5, 1, 7])


# -- quantized nodes (exporters/quantize.py contract) --------------------------------------------------
QUANT_MODES = ("fp16", "int8", "int8-dynamic", "int4")
PR_INPUTS = ["x", *pr_export.STATES, *pr_export.WEIGHTS]
SLSTM_CELL_INPUTS = ["x", "y", "c", "n", "m", "R", "b"]
SLSTM_SEQ_INPUTS = ["x", "y0", "c0", "n0", "m0", "R", "b"]


def store_matrices(feeds, matrices, mode, block_size, packed=True):
    """``feeds`` with each (stacked) float32 matrix stored as ``mode`` stores it, slice by slice (fp16: float16;
    int8 / int8-dynamic: int8 and a scale per output channel of each slice; int4: packed two per byte in uint8, or
    with ``packed=False`` ONNX INT4 as files exported before the packed form, and a scale per block of
    ``block_size`` input rows), and the scales as ``<matrix>_scale``; fp16 also makes x float16 when it enters a
    product (``x16``)."""
    out = dict(feeds)
    for name in matrices:
        w = feeds[name]
        if mode == "fp16":
            out[name] = to_fp16(name, w)
            continue
        bits, block = (4, block_size) if mode == "int4" else (8, None)
        K, N = w.shape[-2:]
        slices = [quantize_symmetric(name, s, bits, channel_axis=1, block_size=block) for s in w.reshape(-1, K, N)]
        blocks = [-(-K // block)] if block else []
        q = np.stack([s[0] for s in slices]).reshape(w.shape) if slices else np.zeros(w.shape, np.int8)
        out[name] = (pack_int4(q) if packed else q.astype(ml_dtypes.int4)) if bits == 4 else q
        out[f"{name}_scale"] = (np.stack([s[1] for s in slices]) if slices else
                                np.ones((0, *blocks, N), np.float32)).reshape(*w.shape[:-2], *blocks, N)
    return out


def quant_node_model(op, inputs, matrices, outputs, feeds, mode, block_size, function, constant=True):
    """One ``qlstm_edge::op`` node of quantization ``mode`` over ``inputs`` and the appended scales of
    ``matrices``, with the op's function body ``function(opset, quantizer)``. With ``constant`` the matrices and
    scales are initializers (the kernel packs them once), else graph inputs (packed on every call). ONNX INT4
    matrices (files exported before the packed form) make an opset 21 / IR 10 model without the function, which
    reads only the packed form. Returns the model and the feeds of its graph inputs."""
    q = Quantizer(mode, block_size=block_size)
    legacy = any(feeds[m].dtype == ml_dtypes.int4 for m in matrices)
    opset, ir = (21, 10) if legacy else (q.min_opset, q.min_ir_version)
    names = inputs + q.scale_inputs(matrices)
    consts = set(matrices + q.scale_inputs(matrices)) if constant else set()
    graph = helper.make_graph(
        [helper.make_node(op, names, outputs, domain=DOMAIN, **q.op_attributes())], f"{op}_{mode}",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(feeds[n].dtype), list(feeds[n].shape))
         for n in names if n not in consts],
        [helper.make_tensor_value_info(o, TensorProto.INT64 if o.startswith("count") else TensorProto.FLOAT, None)
         for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(feeds[n]), n) for n in names if n in consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
                              functions=[] if legacy else [function(opset, q)], ir_version=ir)
    return model, {n: feeds[n] for n in names if n not in consts}


def pr_quant_model(seq, feeds, mode, block_size, constant=True, packed=True, **replace):
    """A quantized PRLSTMStep / PRLSTMSequence node over ``feeds`` (float32), stored per ``mode`` (``packed``:
    ``store_matrices``); ``replace`` overrides stored tensors (bad-input tests)."""
    R = int(feeds["W_unary"].shape[0])
    qf = store_matrices(feeds, pr_export.MATRICES, mode, block_size, packed)
    if mode == "fp16":  # x enters the leaf product: float16 in an fp16 node
        qf["x"] = feeds["x"].astype(np.float16)
    qf.update(replace)
    op, fn = ("PRLSTMSequence", pr_export.sequence_function) if seq else ("PRLSTMStep", pr_export.step_function)
    return quant_node_model(op, PR_INPUTS, pr_export.MATRICES, (["Y"] if seq else ["y"]) + PR_OUT[1:], qf, mode,
                            block_size, lambda opset, q: fn(opset, R, q), constant)


def slstm_quant_model(seq, feeds, mode, block_size, constant=True, packed=True, **replace):
    """A quantized sLSTMCell / sLSTMSequence node, as ``pr_quant_model``."""
    qf = store_matrices(feeds, x_export.SLSTM_MATRICES, mode, block_size, packed)  # x float32: it enters no product
    qf.update(replace)
    if seq:
        return quant_node_model("sLSTMSequence", SLSTM_SEQ_INPUTS, x_export.SLSTM_MATRICES,
                                ["Y", "y_T", "c_T", "n_T", "m_T"], qf, mode, block_size,
                                x_export.slstm_sequence_function, constant)
    return quant_node_model("sLSTMCell", SLSTM_CELL_INPUTS, x_export.SLSTM_MATRICES,
                            ["y_out", "c_out", "n_out", "m_out"], qf, mode, block_size, x_export.slstm_cell_function,
                            constant)


# Native vs function body, max abs difference relative to max(1, max |body|). int8 / int4 are weight-only
# (float32 products): float rounding only, as the fp32 kernels (measured <= 1.5e-6 on these cases and over
# 300-token streams). fp16 and int8-dynamic round a product's result (float16) or its input (int8, per row)
# on a grid: where the native gate maths and onnxruntime's differ in the last float32 bit, a value next to a
# grid boundary lands one grid step apart, and that step carries on. One float16 step of the largest
# pre-activations here (|v| < 8) is at most 2^-8 = 3.9e-3 (measured worst 1.5e-3 one-node, 2.2e-4 over
# streams); one int8 activation step moves a product by max|a| / 127 * max|W| (measured worst 2.4e-7 one-node,
# 2.3e-4 over streams). Where the int8-dynamic activation is an input (sLSTMCell's y) the integer products are
# identical and the float32 tolerance holds.
QUANT_TOL = {"fp16": 4e-3, "int8": TOL, "int8-dynamic": 1e-3, "int4": TOL}
PR_QUANT_CASES = [(3, 1, 5, 9, 5, 2, [0, 7, 22], 4), (2, 6, 7, 10, 5, 1, [3, 11], 8),
                  (1, 13, 4, 17, 6, 0, [18], 16)]  # (B, T, D, H, K, R, counts, block_size): K % bs != 0, R = 0
SLSTM_QUANT_CASES = [(3, 1, 3, 5, 4), (2, 7, 2, 12, 8), (1, 9, 2, 19, 8)]  # (B, T, NH, DH, bs): odd DH * DH


def assert_close(got, want, tol):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype == np.int64:
            np.testing.assert_array_equal(g, w)
            continue
        assert np.array_equal(np.isnan(g), np.isnan(w))
        if w.size:
            scale = max(1.0, float(np.nanmax(np.abs(w))))
            assert np.nanmax(np.abs(g.astype(np.float64) - w)) <= tol * scale, (np.nanmax(np.abs(g - w)), tol * scale)


def compare_quant(model, feeds, lib_path, tol):
    want = ort_session(model).run(None, feeds)
    calls = native_lib.compute_calls()
    got = ort_session(model, lib_path).run(None, feeds)
    assert native_lib.compute_calls() == calls + 1  # the native kernel ran, not the function body
    assert_close(got, want, tol)
    return got


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_quantized_prlstm_ops_match_function_body(isa, lib, mode):
    rng = np.random.default_rng(21)
    for B, T, D, H, K, R, counts, bs in PR_QUANT_CASES:
        feeds = pr_feeds(rng, B, T, D, H, K, R, counts, T > 1)
        compare_quant(*pr_quant_model(T > 1, feeds, mode, bs), lib, QUANT_TOL[mode])


@needs_xlstm
@pytest.mark.parametrize("mode", QUANT_MODES)
def test_quantized_slstm_ops_match_function_body(isa, lib, mode):
    rng = np.random.default_rng(22)
    for B, T, NH, DH, bs in SLSTM_QUANT_CASES:
        seq = T > 1
        tol = TOL if mode == "int8-dynamic" and not seq else QUANT_TOL[mode]
        compare_quant(*slstm_quant_model(seq, slstm_feeds(rng, B, T, NH, DH, seq), mode, bs), lib, tol)


def test_int4_onnx_int4_storage_matches_packed_bit_for_bit(isa, lib):
    """Files exported before the packed int4 form hold the matrices as ONNX INT4 [..., K, N] (opset 21): the PR-LSTM
    and sLSTM kernels still run them (stacked slices included, an empty stack too), with exactly the numbers of the
    same values packed two per byte."""
    rng = np.random.default_rng(25)
    cases = [(pr_quant_model, pr_feeds(rng, B, T, D, H, K, R, counts, T > 1), T > 1, bs)
             for B, T, D, H, K, R, counts, bs in PR_QUANT_CASES]
    if HAVE_XLSTM:
        cases += [(slstm_quant_model, slstm_feeds(rng, B, T, NH, DH, T > 1), T > 1, bs)
                  for B, T, NH, DH, bs in SLSTM_QUANT_CASES]
    for make, feeds, seq, bs in cases:
        outs = []
        for packed in (True, False):
            model, run = make(seq, feeds, "int4", bs, packed=packed)
            calls = native_lib.compute_calls()
            outs.append(ort_session(model, lib).run(None, run))
            assert native_lib.compute_calls() == calls + 1
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_quantized_weights_as_graph_inputs_pack_per_call(lib, mode):
    """Weights fed as graph inputs are packed on each call: the same values as the once-packed initializers, on one
    thread and with the batch rows split over two."""
    rng = np.random.default_rng(23)
    cases = [(pr_quant_model, pr_feeds(rng, 4, 9, 16, 64, 6, 1, [0, 3, 17, 40], True))]
    if HAVE_XLSTM:
        cases.append((slstm_quant_model, slstm_feeds(rng, 4, 16, 4, 32, True)))
    for make, feeds in cases:
        model, run_feeds = make(True, feeds, mode, 32)
        packed = ort_session(model, lib).run(None, run_feeds)
        model, run_feeds = make(True, feeds, mode, 32, constant=False)
        for threads in (1, 2):
            for a, b in zip(ort_session(model, lib, threads=threads).run(None, run_feeds), packed):
                np.testing.assert_array_equal(a, b)


def test_quantized_bad_inputs_are_refused_clearly(lib):
    rng = np.random.default_rng(24)
    f = pr_feeds(rng, 2, 1, 3, 4, 3, 1, [0, 1], False)
    q8 = store_matrices(f, pr_export.MATRICES, "int8", 32)
    model, feeds = pr_quant_model(False, f, "int8", 32, W_merge_scale=q8["W_merge_scale"][:-1])
    refused(model, feeds, lib, "PRLSTMStep: input 'W_merge_scale' must have shape [5H] (one scale per output "
                               "channel) = [20], got [19]")
    model, feeds = pr_quant_model(False, f, "int8", 32, W_unary=f["W_unary"])
    refused(model, feeds, lib, "PRLSTMStep: input 'W_unary' must be int8 for quant_mode 'int8', got float32")
    model, feeds = pr_quant_model(False, f, "int8", 32)
    del model.graph.node[0].input[-1]
    refused(model, feeds, lib, "PRLSTMStep: quant_mode 'int8' needs 15 inputs (the 12 regular ones, then "
                               "W_leaf_scale, W_merge_scale and W_unary_scale), got 14")
    model, feeds = pr_quant_model(False, f, "fp16", 32, x=f["x"])
    refused(model, feeds, lib, "PRLSTMStep: input 'x' must be float16 for quant_mode 'fp16', got float32")
    q4 = store_matrices(f, pr_export.MATRICES, "int4", 2)
    model, feeds = pr_quant_model(True, {**f, "x": f["x"][:, None]}, "int4", 2,
                                  W_unary_scale=np.concatenate([q4["W_unary_scale"]] * 2, axis=1))
    refused(model, feeds, lib, "PRLSTMSequence: input 'W_unary_scale' must have shape [R, ceil(H / block_size), "
                               "4H] = [1, 2, 16], got [1, 4, 16]")
    model, feeds = pr_quant_model(False, f, "int4", 2, W_merge=q4["W_merge"][:, :-1])
    refused(model, feeds, lib, "PRLSTMStep: input 'W_merge' must have shape [2H, ceil(5H / 2)] (input-major, int4 two "
                               "per byte) = [8, 10], got [8, 9]")
    model, feeds = pr_quant_model(False, f, "int4", 2, W_leaf=q8["W_leaf"])
    refused(model, feeds, lib, "PRLSTMStep: input 'W_leaf' must be uint8 (int4 packed two per byte) or int4 for "
                               "quant_mode 'int4', got int8")
    dyn = store_matrices(f, pr_export.MATRICES, "int8-dynamic", 32)
    dyn["W_leaf"][0, 0] = -128
    model, feeds = pr_quant_model(False, f, "int8-dynamic", 32, W_leaf=dyn["W_leaf"])
    refused(model, feeds, lib, "PRLSTMStep: int8-dynamic weights must lie in [-127, 127]")
    model, feeds = pr_quant_model(False, f, "int8", 32)
    node = model.graph.node[0]
    node.attribute[[a.name for a in node.attribute].index("quant_mode")].s = b"int3"
    refused(model, feeds, lib, "PRLSTMStep: unknown quant_mode 'int3'")
    if not HAVE_XLSTM:
        return
    f = slstm_feeds(rng, 2, 1, 2, 3, False)
    q8 = store_matrices(f, x_export.SLSTM_MATRICES, "int8", 32)
    model, feeds = slstm_quant_model(False, f, "int8", 32, R_scale=q8["R_scale"][:, :, :2])
    refused(model, feeds, lib, "sLSTMCell: input 'R_scale' must have shape [4, NH, DH] (one scale per output "
                               "channel of each slice) = [4, 2, 3], got [4, 2, 2]")
    model, feeds = slstm_quant_model(False, f, "fp16", 32, R=f["R"])
    refused(model, feeds, lib, "sLSTMCell: input 'R' must be float16 for quant_mode 'fp16', got float32")
    model, feeds = slstm_quant_model(False, f, "int4", 32, R=np.zeros((4, 2, 3, 3), np.uint8))
    refused(model, feeds, lib, "sLSTMCell: input 'R' must have shape [4, NH, DH, ceil(DH / 2)] (int4 two per byte) = "
                               "[4, 2, 3, 2], got [4, 2, 3, 3]")
    model, feeds = slstm_quant_model(False, f, "int8", 32)
    del model.graph.node[0].input[-1]
    refused(model, feeds, lib, "sLSTMCell: quant_mode 'int8' needs 8 inputs (the 7 regular ones, then R_scale), "
                               "got 7")
    model, feeds = slstm_quant_model(False, f, "int8", 32)
    del model.graph.node[0].attribute[:]
    refused(model, feeds, lib, "sLSTMCell: expected 7 inputs for fp32 weights, got 8")


def custom_nodes(path):
    import onnx
    return sum(n.domain == DOMAIN for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_quantized_models_stream_natively(lib, tmp_path, mode):
    """Quantized PR-LSTM and xLSTM (mLSTM + sLSTM blocks) exports run every custom node natively, 300 tokens step
    by step and in chunks (the state carried across calls), and match their function bodies."""
    T = 300
    torch.manual_seed(0)
    cases = [(PRLSTM(5, 12, num_layers=3, stack_levels=10).eval(),
              np.random.default_rng(0).standard_normal((2, T, 5)).astype(np.float32))]
    if HAVE_XLSTM:
        cases.append((xlstm_lm(24, 2, [1]), np.random.default_rng(1).integers(0, 40, (2, T))))
    for m, xs in cases:
        for graph_mode, chunks in (("step", None), ("sequence", [1, 120, 1, 178])):
            path = export_onnx(m, tmp_path / f"{graph_mode}.onnx", mode=graph_mode, quantize=mode, block_size=8)
            want, want_state = stream(path, "off", xs, chunks)
            calls = native_lib.compute_calls()
            got, got_state = stream(path, "on", xs, chunks)
            assert native_lib.compute_calls() - calls == custom_nodes(path) * (T if chunks is None else len(chunks))
            assert_close([got], [want], QUANT_TOL[mode])
            assert got_state.keys() == want_state.keys()
            assert_close([got_state[k] for k in want_state], list(want_state.values()), QUANT_TOL[mode])


# -- long PR-LSTM chunks (the level path) --------------------------------------------------------
# Chunks of at least 16 tokens (qle_prlstm.cc kLevelMinT) run level by level, with each level's
# merges batched into one product; shorter chunks token by token. The level path computes the same merges on the same
# operands: only the float32 summation order of the products may differ.
LEVEL_CASES = [  # (B, T, D, H, K, R, counts)
    (2, 16, 5, 9, 12, 1, [0, 37]),
    (1, 64, 3, 8, 7, 1, [63]),  # ends at 2^K - 1 = 127
    (1, 127, 3, 8, 7, 2, [0]),  # fills the stack to 2^K - 1 = 127
    (2, 300, 4, 16, 9, 2, [211, 6]),  # row 0 ends at 2^K - 1 = 511
    (2, 1000, 3, 8, 14, 0, [5, 3001]),
    (1, 2100, 2, 4, 13, 1, [1000]),  # two pieces (2048 + 52 tokens)
]


def pr_seq_model(feeds, mode, block_size=4):
    """(model, feeds to run) of a PRLSTMSequence node over ``feeds`` (float32), fp32 or quantized per ``mode``."""
    if mode == "fp32":
        return pr_model(True, int(feeds["W_unary"].shape[0]), feeds), feeds
    return pr_quant_model(True, feeds, mode, block_size)


def pr_token_chain(feeds, mode, lib_path):
    """The native PRLSTMSequence op over ``feeds``' chunk as T chunks of one token (the token-by-token path), the
    state fed back: (Y, states)."""
    model, run = pr_seq_model({**feeds, "x": feeds["x"][:, :1]}, mode)
    sess = ort_session(model, lib_path)
    x = feeds["x"].astype(run["x"].dtype)
    cur = [run[k] for k in pr_export.STATES]
    ys = []
    for t in range(x.shape[1]):
        y, *cur = sess.run(None, {**run, "x": x[:, t:t + 1], **dict(zip(pr_export.STATES, cur))})
        ys.append(y)
    return [np.concatenate(ys, 1), *cur]


@pytest.mark.parametrize("B,T,D,H,K,R,counts", LEVEL_CASES)
def test_prlstm_long_chunks_match_token_path_and_body(isa, lib, B, T, D, H, K, R, counts):
    """Long chunks (the level path) from nonzero, non-aligned counts, rows at different counts: the token-by-token
    kernel's outputs and states, and the function body's."""
    rng = np.random.default_rng(T + K)
    feeds = pr_feeds(rng, B, T, D, H, K, R, counts, True)
    got = compare(pr_model(True, R, feeds), feeds, lib)
    want = pr_token_chain(feeds, "fp32", lib)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.abs(g - w).max() <= TOL
    np.testing.assert_array_equal(got[-1], np.array(counts) + T)


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_quantized_long_chunks_match_token_path_and_body(lib, mode):
    """The level path in every quantization mode: its batched products quantize and round each row as the 1-row
    products do, so the token-by-token kernel's outputs and states within the mode's tolerance, and the body's."""
    rng = np.random.default_rng(25)
    for B, T, D, H, K, R, counts in LEVEL_CASES[:4]:
        feeds = pr_feeds(rng, B, T, D, H, K, R, counts, True)
        model, run = pr_seq_model(feeds, mode)
        got = compare_quant(model, run, lib, QUANT_TOL[mode])
        assert_close(got, pr_token_chain(feeds, mode, lib), QUANT_TOL[mode])


def test_prlstm_long_chunk_count_is_exact(lib):
    """A count past 2^40 (positions, blocks and prefixes in 64-bit arithmetic): count_out = count + T exactly, and the
    level path matches the token path and the body."""
    rng = np.random.default_rng(26)
    counts = [(1 << 40) + 12345, (1 << 41) - 301]  # row 1 ends at 2^41 - 1
    feeds = pr_feeds(rng, 2, 300, 3, 6, 42, 1, counts, True)
    got = compare(pr_model(True, 1, feeds), feeds, lib)
    assert got[-1].dtype == np.int64
    np.testing.assert_array_equal(got[-1], np.array(counts, np.int64) + 300)
    for g, w in zip(got, pr_token_chain(feeds, "fp32", lib)):
        assert np.abs(g - w).max() <= TOL


def test_prlstm_long_chunk_past_the_limit(lib):
    """In one batch a long chunk within the stream limit (level path) and one that runs past it (token path, as the
    step op: NaN outputs from position 2^K on)."""
    rng = np.random.default_rng(27)
    counts = [0, 50]
    feeds = pr_feeds(rng, 2, 100, 3, 6, 7, 1, counts, True)
    Y, *state = ort_session(pr_model(True, 1, feeds), lib).run(None, feeds)
    want_Y, *want_state = ort_session(pr_model(True, 1, feeds)).run(None, feeds)
    pos = np.array(counts)[:, None] + np.arange(1, 101)[None]
    assert np.array_equal(np.isnan(Y).all(-1), pos >= 128) and np.array_equal(np.isnan(Y), np.isnan(want_Y))
    assert np.nanmax(np.abs(Y - want_Y)) <= TOL
    for got, want in zip(state, want_state):  # row 0 ends within the limit: the body's state
        assert np.abs(got[0] - want[0]).max() <= TOL
    chain_Y, *chain_state = pr_token_chain(feeds, "fp32", lib)
    assert np.array_equal(np.isnan(chain_Y), np.isnan(Y)) and np.nanmax(np.abs(Y - chain_Y)) <= TOL
    for got, want in zip(state, chain_state):
        assert np.abs(got - want).max() <= TOL

