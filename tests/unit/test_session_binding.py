"""StreamingSession binds its state buffers to onnxruntime once (two IOBindings that swap roles) instead of
passing every state through ``InferenceSession.run``. These tests drive the same file with a plain run loop
written here and require bit-identical outputs and states through the calls that replace or rebuild the
bound buffers: resets of some rows, set_state, chunk lengths that change, and state snapshots that must not
move when the stream goes on."""
import numpy as np
import onnxruntime as ort
import pytest

from helpers import FAMILIES
from qlstm_edge.runtime import StreamingSession


class PlainLoop:
    """The reference: onnxruntime's run with every state fed as a numpy array, as the metadata describes."""

    def __init__(self, path, meta, batch):
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.meta = meta
        self.state = {s.name: np.full([batch if d == "batch" else d for d in s.shape], s.init, s.dtype)
                      for s in meta.states}

    def run(self, x):
        feed = {self.meta.inputs[0].name: x, **{s.input: self.state[s.name] for s in self.meta.states}}
        outs = self.sess.run([self.meta.outputs[0].name] + [s.output for s in self.meta.states], feed)
        self.state = {s.name: o for s, o in zip(self.meta.states, outs[1:])}
        return outs[0]

    def reset_rows(self, rows):
        for s in self.meta.states:
            self.state[s.name] = self.state[s.name].copy()
            self.state[s.name][rows] = s.init


def inputs(meta, rng, lead):
    spec = meta.inputs[0]
    tail = spec.shape[2:] if meta.mode == "sequence" else spec.shape[1:]
    if spec.range is not None:
        return rng.integers(spec.range[0], spec.range[1], (*lead, *tail)).astype(spec.dtype)
    return rng.standard_normal((*lead, *tail)).astype(spec.dtype)


def assert_same(ours, theirs, what):
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), what


def assert_same_state(session, loop, what):
    got = session.get_state()
    for name, want in loop.state.items():
        assert_same(got[name], want, f"{what}: state {name}")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bound_stream_equals_plain_runs(family_exports, family):
    _, paths = family_exports(family)
    rng = np.random.default_rng(0)
    for mode, path in paths.items():
        s = StreamingSession(path, native="off")
        loop = PlainLoop(path, s.metadata, batch=2)
        chunks = [1] if mode == "step" else [3, 1, 4, 4, 2]  # sequence files: a changing T rebinds x and y

        def go(what, n_calls=3):
            for t in chunks * n_calls:
                lead = (2,) if mode == "step" else (2, t)
                x = inputs(s.metadata, rng, lead)
                got = s.step(x) if mode == "step" else s.run(x)
                assert_same(got, loop.run(x), f"{mode} file, {what}: output")
            assert_same_state(s, loop, f"{mode} file, {what}")

        go("first calls")
        s.reset(rows=[1])
        loop.reset_rows([1])
        go("after reset(rows=[1])")
        snapshot, kept = s.get_state(), loop.state
        copy = {k: v.copy() for k, v in snapshot.items()}
        go("after get_state")
        for name in snapshot:  # a snapshot is the stream's state then, not a view of the live buffers
            assert_same(snapshot[name], copy[name], f"{mode} file: snapshot of {name} moved")
        s.set_state(snapshot)
        loop.state = kept
        go("after set_state")


def test_step_output_is_not_overwritten_by_the_next_step(family_exports):
    _, paths = family_exports("xlstm-lm")
    s = StreamingSession(paths["step"], native="off")
    y1 = s.step(np.array([3], np.int64))
    kept = y1.copy()
    s.step(np.array([7], np.int64))
    assert_same(y1, kept, "the first step's output changed when the stream went on")
