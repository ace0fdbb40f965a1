"""PR-LSTM: the parallel forward against a naive dyadic fold, streaming exports, parity, checkpoints, graph contract."""
import json

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from qlstm_edge import load_checkpoint, save_checkpoint
from qlstm_edge.config import ConfigError
from qlstm_edge.exporters import export_onnx
from qlstm_edge.families.prlstm import PRLSTM, PRLSTMConfig, PRLSTMModel, PRLSTMState
from qlstm_edge.parity import assert_parity
from qlstm_edge.runtime import StreamingSession, StreamLimitError
from qlstm_edge.runtime.session import InputError

from helpers import make_prlstm, make_prlstm_core

STATE_NAMES = ["block.h", "block.c", "prefix.h", "prefix.c", "count"]



def naive_prefix_outputs(sd, x, unary):
    """h of P(L) for L = 1..T by the definition: left fold over the dyadic blocks of L, largest first,
    each block a balanced tree; leaf and merge written from DESIGN.md's equations and the state_dict."""
    sig, tanh = torch.sigmoid, torch.tanh

    def leaf(v):
        i, g, o = (v @ sd["leaf.weight"].T + sd["leaf.bias"]).chunk(3, -1)
        c = sig(i) * tanh(g)
        return sig(o) * tanh(c), c

    def merge(left, right):
        z = torch.cat([left[0], right[0]], -1) @ sd["merge.weight"].T + sd["merge.bias"]
        i, g, o, f_l, f_r = z.chunk(5, -1)
        c = sig(i) * tanh(g) + sig(f_l) * left[1] + sig(f_r) * right[1]
        h = sig(o) * tanh(c)
        for k in range(unary):
            i, g, o, f = (h @ sd[f"unary.{k}.weight"].T + sd[f"unary.{k}.bias"]).chunk(4, -1)
            c = sig(i) * tanh(g) + sig(f) * c
            h = sig(o) * tanh(c)
        return h, c

    trees = {}

    def tree(start, size):
        if (start, size) not in trees:
            trees[start, size] = leaf(x[:, start]) if size == 1 else merge(tree(start, size // 2),
                                                                           tree(start + size // 2, size // 2))
        return trees[start, size]

    outs = []
    for L in range(1, x.shape[1] + 1):
        acc, start = None, 0
        for b in reversed(range(L.bit_length())):
            if (L >> b) & 1:
                block = tree(start, 1 << b)
                start += 1 << b
                acc = block if acc is None else merge(acc, block)
        outs.append(acc[0])
    return torch.stack(outs, 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, {mode: path}) for a 2-layer token model."""
    d = tmp_path_factory.mktemp("prlstm")
    m = make_prlstm()
    return m, {mode: export_onnx(m, d / f"{mode}.onnx", mode=mode) for mode in ("step", "sequence")}


def torch_y(model, x, state=None):
    with torch.no_grad():
        y, st = model(torch.from_numpy(x), state)
    return y.numpy(), st


# -- the PyTorch model ---------------------------------------------------------------------------------
def test_state_dict_names_and_shapes():
    m = PRLSTM(3, 4, num_layers=3)
    assert {k: list(v.shape) for k, v in m.state_dict().items()} == {
        "leaf.weight": [12, 3], "leaf.bias": [12], "merge.weight": [20, 8], "merge.bias": [20],
        "unary.0.weight": [16, 4], "unary.0.bias": [16], "unary.1.weight": [16, 4], "unary.1.bias": [16]}


@pytest.mark.parametrize("layers", [1, 3])
def test_parallel_forward_matches_naive_fold_for_every_length(layers):
    m = make_prlstm_core(layers).double()
    x = torch.randn(2, 300, 3, dtype=torch.float64)
    ref = naive_prefix_outputs(m.state_dict(), x, layers - 1)
    with torch.no_grad():
        for T in range(1, 301):
            y, st = m(x[:, :T])
            assert (y - ref[:, :T]).abs().max() <= 1e-12, T
            assert st.count.tolist() == [T, T]


def test_parallel_forward_has_log_depth():
    """Merges happen level by level: the number of batched merge calls grows with log2 T, not T."""
    m = make_prlstm_core()
    calls = []
    m.merge.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        for T, most in ((64, 2 * 6 + 1), (1000, 2 * 10 + 1), (4096, 2 * 12 + 1)):
            calls.clear()
            m(torch.randn(1, T, 3))
            assert len(calls) <= most, (T, len(calls))


def test_chunked_forward_and_streams_at_different_positions():
    m = make_prlstm_core(seed=1).double()
    x = torch.randn(2, 200, 3, dtype=torch.float64)
    ref = naive_prefix_outputs(m.state_dict(), x, 1)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(10):
            ys, st, t = [], None, 0
            while t < 200:
                c = int(rng.integers(1, 40))
                y, st = m(x[:, t:t + c], st)
                ys.append(y)
                t += c
            assert (torch.cat(ys, 1) - ref).abs().max() <= 1e-12
        _, st = m(x[:, :77])
        st = PRLSTMState(*(s.clone() for s in st))
        for s in st:
            s[1] = 0  # row 1 starts a new stream at x[1, 77]
        y, st = m(x[:, 77:200], st)
        fresh = naive_prefix_outputs(m.state_dict(), x[1:, 77:200], 1)
        assert (y[0] - ref[0, 77:]).abs().max() <= 1e-12 and (y[1] - fresh[0]).abs().max() <= 1e-12
        assert st.count.tolist() == [200, 123]


def test_torch_stream_overflow_and_bad_state():
    m = make_prlstm_core(levels=4)
    _, st = m(torch.randn(1, 15, 3))
    with pytest.raises(StreamLimitError, match="at most 15 tokens per stream; a stream at 15 tokens cannot take 1"):
        m(torch.randn(1, 1, 3), st)
    with pytest.raises(ValueError, match="block_h has shape"):
        m(torch.randn(2, 1, 3), st)
    with pytest.raises(ValueError, match="stack_levels must be an integer"):
        PRLSTM(3, 4, stack_levels=0)
    with pytest.raises(ConfigError, match="stack_levels"):
        PRLSTMConfig(vocab_size=5, stack_levels=63).validate()


# -- the exported files --------------------------------------------------------------------------------
def test_step_stream_equals_whole_sequence_at_every_position(tmp_path):
    m = make_prlstm(tokens=False, seed=2)
    path = export_onnx(m, tmp_path / "step.onnx", mode="step")
    x = np.random.default_rng(1).standard_normal((2, 1000, 5)).astype(np.float32)
    s = StreamingSession(path, native="off")
    got = np.stack([s.step(x[:, t]) for t in range(1000)], 1)
    ref, st = torch_y(m, x)
    assert np.abs(got - ref).max() <= 1e-5
    final = s.get_state()
    for name, want in zip(STATE_NAMES, st):
        assert np.abs(final[name] - want.numpy()).max() <= 1e-5, name


def test_sequence_graph_is_exact_for_every_length(tmp_path):
    m = make_prlstm(tokens=False, seed=3, layers=1)
    path = export_onnx(m, tmp_path / "seq.onnx", mode="sequence")
    x = np.random.default_rng(2).standard_normal((2, 300, 5)).astype(np.float32)
    ref, _ = torch_y(m, x)
    s = StreamingSession(path, native="off")
    for T in range(1, 301):
        s.reset(batch_size=2)
        assert np.abs(s.run(x[:, :T]) - ref[:, :T]).max() <= 1e-5, T


def test_chunked_sequence_streaming_equals_one_pass(exported):
    _, paths = exported
    s = StreamingSession(paths["sequence"], native="off")
    x = np.random.default_rng(3).integers(0, 40, (3, 700))
    whole = s.run(x)
    final = s.get_state()
    for sizes in ([1], [7, 1, 50], [333, 1, 64], [255, 256, 1, 2]):
        s.reset()
        parts, t, k = [], 0, 0
        while t < 700:
            parts.append(s.run(x[:, t:t + sizes[k % len(sizes)]]))
            t += sizes[k % len(sizes)]
            k += 1
        assert np.abs(np.concatenate(parts, 1) - whole).max() <= 1e-5
        got = s.get_state()
        assert all(np.abs(got[n] - final[n]).max() <= 1e-5 for n in final)
        assert got["count"].tolist() == [700] * 3


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_per_row_reset_streams_at_different_positions(exported, mode):
    m, paths = exported
    s = StreamingSession(paths[mode], native="off")
    x = np.random.default_rng(4).integers(0, 40, (3, 300))
    s.run(x[:, :45])
    s.reset(rows=[1])
    y = s.run(x[:, 45:300])
    ref, _ = torch_y(m, x)
    alone, _ = torch_y(m, x[1:2, 45:])
    assert np.abs(y[[0, 2]] - ref[[0, 2], 45:]).max() <= 1e-5
    assert np.abs(y[1] - alone[0]).max() <= 1e-5
    assert s.get_state()["count"].tolist() == [300, 255, 300]


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_state_resume_is_bit_exact(exported, mode, tmp_path):
    _, paths = exported
    x = np.random.default_rng(5).integers(0, 40, (2, 90))
    a = StreamingSession(paths[mode], native="off")
    y_all = a.run(x)
    b = StreamingSession(paths[mode], native="off")
    b.run(x[:, :37])
    np.savez(tmp_path / "state.npz", **b.get_state())
    c = StreamingSession(paths[mode], native="off")
    c.set_state(dict(np.load(tmp_path / "state.npz")))
    assert np.array_equal(c.run(x[:, 37:]), y_all[:, 37:])
    assert all(np.array_equal(c.get_state()[k], v) for k, v in a.get_state().items())


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_stream_past_the_stack_limit_is_refused(tmp_path, mode):
    m = make_prlstm(levels=4)
    path = export_onnx(m, tmp_path / f"{mode}.onnx", mode=mode)
    s = StreamingSession(path, native="off")
    x = np.random.default_rng(6).integers(0, 40, (2, 16))
    y = s.run(x[:, :15])  # 2^4 - 1 tokens fit
    ref, _ = torch_y(m, x[:, :15])
    assert np.abs(y - ref).max() <= 1e-5
    before = s.get_state()
    with pytest.raises(InputError, match=r"stream 0 has taken 15 steps and this model holds at most 15 steps per "
                                         r"stream \(metadata extra\['max_steps'\]\): 1 more would pass the limit; "
                                         r"call reset\(rows=\[0\]\) to start that stream again"):
        s.step(x[:, 15])
    assert all(np.array_equal(s.get_state()[k], v) for k, v in before.items())  # refused: state unchanged
    s.reset(rows=[0, 1])
    assert np.abs(s.run(x[:, :3]) - ref[:, :3]).max() <= 1e-5


def test_raw_graph_returns_nan_past_the_limit(tmp_path):
    """Without StreamingSession (plain onnxruntime) the positions past 2^K - 1 come out NaN."""
    m = make_prlstm(levels=4)
    path = export_onnx(m, tmp_path / "seq.onnx", mode="sequence")
    sess = StreamingSession(path, native="off")._e.sess
    feed = {"x": np.random.default_rng(7).integers(0, 40, (1, 20))}
    for name, shape, dtype in (("block.h", (1, 4, 8), np.float32), ("block.c", (1, 4, 8), np.float32),
                               ("prefix.h", (1, 4, 8), np.float32), ("prefix.c", (1, 4, 8), np.float32),
                               ("count", (1,), np.int64)):
        feed[f"{name}.in"] = np.zeros(shape, dtype)
    y = sess.run(["y"], feed)[0]
    assert np.isfinite(y[:, :15]).all() and np.isnan(y[:, 15:]).all()


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("layers,tokens", [(1, True), (3, False)])
def test_check_parity_passes(tmp_path, mode, layers, tokens):
    m = make_prlstm(layers, tokens, seed=layers)
    path = export_onnx(m, tmp_path / "m.onnx", mode=mode)
    r = assert_parity(m, path, steps=1500 if mode == "sequence" else 600, batch=2, native="off")
    assert r.max_abs <= 1e-4 and set(r.state_max_abs) == set(STATE_NAMES)


def test_bare_core_exports_and_matches(tmp_path):
    core = make_prlstm_core(layers=2, hidden=6)
    for mode in ("step", "sequence"):
        path = export_onnx(core, tmp_path / f"{mode}.onnx", mode=mode)
        assert_parity(core, path, steps=300, batch=2, native="off")


def test_checkpoint_round_trip(tmp_path):
    m = make_prlstm(tokens=False, levels=10)
    ckpt = save_checkpoint(m, tmp_path / "m.safetensors")
    back = load_checkpoint(ckpt)
    assert type(back) is PRLSTMModel and back.config == m.config
    x = np.random.default_rng(8).standard_normal((2, 50, 5)).astype(np.float32)
    assert np.array_equal(torch_y(back, x)[0], torch_y(m, x)[0])
    path = export_onnx(ckpt, tmp_path / "m.onnx", mode="sequence")
    assert_parity(back, path, steps=200, native="off")
    core = save_checkpoint(make_prlstm_core(), tmp_path / "core.safetensors")
    assert load_checkpoint(core).config == make_prlstm_core().config


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_graph_contract(exported, mode):
    m, paths = exported
    proto = onnx.load(paths[mode])
    onnx.checker.check_model(proto, full_check=True)
    op = "PRLSTMStep" if mode == "step" else "PRLSTMSequence"
    custom = [n for n in proto.graph.node if n.domain == "qlstm_edge"]
    assert [n.op_type for n in custom] == [op]
    assert {(f.domain, f.name) for f in proto.functions} == {("qlstm_edge", op)}

    def standard(nodes):
        for n in nodes:
            assert n.domain in ("", "ai.onnx"), n.op_type
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    standard(a.g.node)

    standard(proto.functions[0].node)  # bodies (and their Loop bodies): standard ops only
    assert proto.ir_version == 8 and {o.domain: o.version for o in proto.opset_import} == {"": 17, "qlstm_edge": 1}
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["qlstm_edge"])
    assert [s["name"] for s in meta["states"]] == STATE_NAMES
    graph_in = {i.name for i in proto.graph.input}
    graph_out = {o.name for o in proto.graph.output}
    for s in meta["states"]:
        assert s["input"] in graph_in and s["output"] in graph_out
        assert s["shape"] == (["batch"] if s["name"] == "count" else ["batch", 24, 8])
        assert s["dtype"] == ("int64" if s["name"] == "count" else "float32")
    assert meta["extra"] == {"stack_levels": 24, "max_steps": 2 ** 24 - 1, "step_counter": "count"}
    assert meta["family"] == "prlstm" and meta["config"]["stack_levels"] == 24
    assert all(n.name for n in proto.graph.node)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_reference_evaluator_agrees_with_onnxruntime(exported, mode):
    _, paths = exported
    s = StreamingSession(paths[mode], native="off")
    s.run(np.random.default_rng(9).integers(0, 40, (2, 11)))  # a non-trivial stack (11 = 0b1011: 3 carries next)
    s.reset(rows=[1])
    x = np.random.default_rng(10).integers(0, 40, (2, 6))
    feed = {"x": x if mode == "sequence" else x[:, 0]}
    for spec in s.metadata.states:
        feed[spec.input] = s.get_state()[spec.name]
    names = [o.name for o in onnx.load(paths[mode]).graph.output]
    ref = ReferenceEvaluator(str(paths[mode])).run(names, feed)
    got = s._e.sess.run(names, feed)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and np.abs(r - g).max() <= 1e-5
