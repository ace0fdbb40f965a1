"""QL-LSTM export: graph contract, parity, chunking, state resume, reference evaluator (the 5,000-step parity grid
is a soak test: tests/soak/test_long_streams.py)."""
import json

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from qlstm_edge import QLLSTM, load_checkpoint, save_checkpoint
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import assert_parity, check_parity, random_inputs
from qlstm_edge.runtime import StreamingSession

from helpers import make_qllstm


def test_bare_stack_exports_and_matches(tmp_path):
    rnn = QLLSTM(6, 9, num_layers=2).eval()
    for mode in ("step", "sequence"):
        path = export_onnx(rnn, tmp_path / f"{mode}.onnx", mode=mode)
        assert_parity(rnn, path, steps=300, batch=2, native="off")


def test_checkpoint_path_exports(tmp_path):
    m = make_qllstm()
    ckpt = save_checkpoint(m, tmp_path / "m.safetensors")
    path = export_onnx(ckpt, tmp_path / "m.onnx")
    assert_parity(load_checkpoint(ckpt), path, steps=100, native="off")


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_graph_contract(exported, mode):
    m, paths = exported
    proto = onnx.load(paths[mode])
    onnx.checker.check_model(proto, full_check=True)
    custom = [n for n in proto.graph.node if n.domain == "qlstm_edge"]
    op = "QLLSTMCell" if mode == "step" else "QLLSTMSequence"
    assert [n.op_type for n in custom] == [op] * m.config.num_layers
    assert [n.name for n in custom] == [f"l{l}.{op}" for l in range(m.config.num_layers)]
    functions = {(f.domain, f.name) for f in proto.functions}
    assert {(n.domain, n.op_type) for n in custom} <= functions
    assert all(n.domain in ("", "ai.onnx") for f in proto.functions for n in f.node)  # bodies: standard ops only
    assert proto.ir_version == 8 and {o.domain: o.version for o in proto.opset_import} == {"": 17, "qlstm_edge": 1}
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["qlstm_edge"])
    graph_in = {i.name for i in proto.graph.input}
    graph_out = {o.name for o in proto.graph.output}
    assert {s["name"] for s in meta["states"]} == {f"l{l}.{s}" for l in range(2) for s in "hc"}
    for s in meta["states"]:
        assert s["input"] in graph_in and s["output"] in graph_out and s["shape"] == ["batch", 16]
    assert meta["mode"] == mode and meta["family"] == "qllstm" and meta["inputs"][0]["range"] == [0, 40]
    assert all(i.name for i in proto.graph.node)  # every node is named (readable in Netron)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_reference_evaluator_agrees_with_onnxruntime(exported, mode):
    m, paths = exported
    s = StreamingSession(paths[mode], native="off")
    x = random_inputs(s, 6, 2, seed=1)
    feed = {"x": x if mode == "sequence" else x[:, 0]}
    rng = np.random.default_rng(2)
    for st in s.metadata.states:
        feed[st.input] = rng.standard_normal((2, 16)).astype(np.float32)
    names = [o.name for o in onnx.load(paths[mode]).graph.output]
    ref = ReferenceEvaluator(str(paths[mode])).run(names, feed)
    got = s._e.sess.run(names, feed)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and np.abs(r - g).max() <= 1e-5


def test_sequence_is_invariant_to_chunking(exported):
    _, paths = exported
    s = StreamingSession(paths["sequence"], native="off")
    x = random_inputs(s, 200, 3, seed=3)
    whole = s.run(x)
    final = s.get_state()
    for sizes in ([1], [7, 1, 50], [199, 1], [64]):
        s.reset()
        parts, t, k = [], 0, 0
        while t < 200:
            parts.append(s.run(x[:, t:t + sizes[k % len(sizes)]]))
            t += sizes[k % len(sizes)]
            k += 1
        assert np.abs(np.concatenate(parts, 1) - whole).max() <= 1e-6
        assert all(np.abs(s.get_state()[n] - final[n]).max() <= 1e-6 for n in final)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_state_resume_is_bit_exact(exported, mode):
    _, paths = exported
    a = StreamingSession(paths[mode], native="off")
    x = random_inputs(a, 40, 2, seed=4)
    y_all = a.run(x)
    b = StreamingSession(paths[mode], native="off")
    b.run(x[:, :17])
    saved = b.get_state()
    np.savez(str(a.path) + ".state.npz", **saved)
    c = StreamingSession(paths[mode], native="off")
    c.set_state(dict(np.load(str(a.path) + ".state.npz")))
    assert np.array_equal(c.run(x[:, 17:]), y_all[:, 17:])
    assert all(np.array_equal(c.get_state()[k], a.get_state()[k]) for k in saved)


def test_step_and_sequence_files_agree(exported):
    _, paths = exported
    a, b = StreamingSession(paths["step"], native="off"), StreamingSession(paths["sequence"], native="off")
    x = random_inputs(a, 30, 2, seed=5)
    ya = np.stack([a.step(x[:, t]) for t in range(30)], 1)
    assert np.abs(ya - b.run(x)).max() <= 1e-5


def test_per_row_reset_restarts_only_those_streams(exported):
    _, paths = exported
    s = StreamingSession(paths["step"], native="off")
    x = random_inputs(s, 20, 3, seed=6)
    s.run(x[:, :10])
    s.reset(rows=[1])
    y = s.run(x[:, 10:])
    fresh = StreamingSession(paths["step"], native="off")
    alone = fresh.run(x[1:2, 10:])
    assert np.array_equal(y[1:2], alone)
    cont = StreamingSession(paths["step"], native="off")
    assert np.array_equal(cont.run(x)[[0, 2], 10:], y[[0, 2]])


def test_parity_report_fails_on_wrong_model(tmp_path, exported):
    _, paths = exported
    other = make_qllstm(seed=99)
    r = check_parity(other, paths["step"], steps=50, native="off")
    assert not r.passed and r.max_abs > 1e-3
    with pytest.raises(AssertionError, match="parity FAIL"):
        assert_parity(other, paths["step"], steps=50, native="off")
    with pytest.raises(ValueError, match="different qllstm config"):
        check_parity(make_qllstm(layers=1), paths["step"], steps=5, native="off")
