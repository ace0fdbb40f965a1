"""StreamingSession input validation for every family (helpers.FAMILIES: QL-LSTM, PR-LSTM, xLSTM; feature and
token input; step and sequence files). Each bad input gets a clear error naming the tensor and what was expected,
and the stream goes on as if the bad call never happened. Expectations come from the file's metadata."""
import re

import numpy as np
import onnx
import pytest

from qlstm_edge.parity import random_inputs
from qlstm_edge.runtime import InputError, ModelFileError, StreamingSession
from qlstm_edge.runtime.session import StreamLimitError

from helpers import FAMILIES, FEATURE_FAMILIES, TOKEN_FAMILIES

MODES = ["step", "sequence"]
COUNTED = [n for n in FAMILIES if n.startswith("prlstm")]  # families whose streams have a step limit


@pytest.fixture(scope="module")
def feature_files(family_exports):
    return family_exports("qllstm-features")[1]


def open_session(family_exports, family, mode, **kw):
    return StreamingSession(family_exports(family)[1][mode], native="off", **kw)


def refused(fn, arg, match, error=InputError):
    """fn(arg) raises ``error`` whose message matches ``match``."""
    try:
        fn(arg)
    except error as e:
        assert re.search(match, str(e)), f"{fn.__name__}: message {str(e)!r} does not match {match!r}"
    else:
        pytest.fail(f"{fn.__name__} accepted a bad argument; expected {error.__name__} matching {match!r}")


def same_state(a, b):
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def bad_inputs(s, batch):
    """(call, x, message pattern) for every kind of malformed x that this file's input spec allows."""
    spec = s.metadata.inputs[0]
    x = random_inputs(s, 3, batch, seed=1)  # a well-formed chunk [B, T, ...] and step [B, ...]
    step, rank = x[:, 0], x.ndim - 1
    other = random_inputs(s, 3, batch + 1, seed=2)
    wrong = "int32" if spec.range is not None else "float64"
    cases = [
        ("step", step.astype(wrong), rf"^x has dtype {wrong}, expected {spec.dtype}"),
        ("run", x.astype(wrong), rf"^x chunk has dtype {wrong}, expected {spec.dtype}"),
        ("step", step.tolist(), rf"^x must be a numpy array of {spec.dtype}, got list"),
        ("run", x.tolist(), rf"^x chunk must be a numpy array of {spec.dtype}, got list"),
        ("step", x, rf"^x has rank {rank + 1} \(shape {re.escape(str(list(x.shape)))}\), expected rank {rank}"),
        ("run", step, rf"^x chunk has rank {rank} .*, expected rank {rank + 1}"),
        ("step", other[:, 0], rf"^x has batch size {batch + 1} but the stream's state has batch size {batch}; "
                              rf"call reset\(batch_size={batch + 1}\)"),
        ("run", other, rf"^x has batch size {batch + 1} but the stream's state has batch size {batch}"),
        ("run", other[:, :0], rf"^x has batch size {batch + 1} but the stream's state has batch size {batch}"),
        ("step", step[:0], "^x has batch size 0"),
        ("run", x[:0], "^x chunk has batch size 0"),
    ]
    if spec.range is None:  # features: a fixed trailing axis, and float values that must be finite
        d = step.shape[-1]
        cases += [("step", np.zeros((*step.shape[:-1], d + 1), spec.dtype), rf"^x has shape .* \(axis {rank - 1} "
                                                                            rf"must be {d}\)"),
                  ("run", np.zeros((*x.shape[:-1], d + 1), spec.dtype), rf"^x chunk has shape .* \(axis {rank} "
                                                                        rf"must be {d}\)")]
        for value in (np.nan, np.inf, -np.inf):
            bad_step, bad_chunk = step.copy(), x.copy()
            bad_step[1, d - 1] = bad_chunk[1, 2, 0] = value
            cases += [("step", bad_step, rf"^x has a non-finite value {value} at index \[1, {d - 1}\] "
                                         rf"\(pass allow_nonfinite=True"),
                      ("run", bad_chunk, rf"^x chunk has a non-finite value {value} at index \[1, 2, 0\]")]
    else:  # token ids: int64 within [lo, hi)
        lo, hi = spec.range
        bad_step, bad_chunk, low = step.copy(), x.copy(), x.copy()
        bad_step[1] = bad_chunk[0, 2] = hi
        low[1, 1] = lo - 1
        vocab = rf"is out of the vocabulary range \[{lo}, {hi}\)"
        cases += [("step", bad_step, rf"^x: token id {hi} at index \[1\] {vocab}"),
                  ("run", bad_chunk, rf"^x chunk: token id {hi} at index \[0, 2\] {vocab}"),
                  ("run", low, rf"^x chunk: token id {lo - 1} at index \[1, 1\] {vocab}")]
    return cases


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_bad_inputs_are_refused_and_the_stream_goes_on_unchanged(family_exports, family, mode):
    s, twin = open_session(family_exports, family, mode), open_session(family_exports, family, mode)
    assert (s.metadata.inputs[0].range is not None) == (FAMILIES[family][0] == "tokens")  # the table is right
    x = random_inputs(s, 9, 2, seed=0)
    s.run(x[:, :3])
    twin.run(x[:, :3])
    before = s.get_state()
    for call, bad, match in bad_inputs(s, batch=2):
        refused(getattr(s, call), bad, match)
        assert same_state(s.get_state(), before), (call, match)
    # the same results as if the bad calls never happened
    assert np.array_equal(s.step(x[:, 3]), twin.step(x[:, 3]))
    assert np.array_equal(s.run(x[:, 4:]), twin.run(x[:, 4:]))
    assert same_state(s.get_state(), twin.get_state())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", FEATURE_FAMILIES)
def test_allow_nonfinite_lets_nan_and_inf_through(family_exports, family, mode):
    lenient = open_session(family_exports, family, mode, allow_nonfinite=True)
    x = random_inputs(lenient, 4, 2, seed=3)
    x[1, 2, 0] = np.nan
    x[0, 1, -1] = np.inf
    y = lenient.run(x)
    assert not np.isfinite(y[1, 2:]).all() and not np.isfinite(y[0, 1:]).all()
    lenient.set_state(lenient.get_state())  # a non-finite state is let through as well
    strict = open_session(family_exports, family, mode)
    refused(strict.set_state, lenient.get_state(), r"^state '.+' has a non-finite value")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_allow_nonfinite_does_not_admit_token_ids_out_of_vocabulary(family_exports, family, mode):
    lenient = open_session(family_exports, family, mode, allow_nonfinite=True)
    lo, hi = lenient.metadata.inputs[0].range
    refused(lenient.step, np.array([lo, hi], np.int64), rf"^x: token id {hi} at index \[1\] is out of the vocabulary")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_empty_chunks_are_no_ops(family_exports, family, mode):
    s, twin = open_session(family_exports, family, mode), open_session(family_exports, family, mode)
    x = random_inputs(s, 10, 2, seed=4)
    y0 = s.run(x[:, :0])  # a first, empty call starts the streams at their initial state
    initial = {spec.name: np.full([2 if d == "batch" else d for d in spec.shape], spec.init, spec.dtype)
               for spec in s.metadata.states}
    assert s.batch_size == 2 and same_state(s.get_state(), initial)
    y = twin.run(x)
    assert y0.shape == (2, 0, *y.shape[2:]) and y0.dtype == y.dtype
    parts = []
    for t0, t1 in ((0, 4), (4, 4), (4, 10), (10, 10)):
        before = s.get_state()
        parts.append(s.run(x[:, t0:t1]))
        assert t1 > t0 or same_state(s.get_state(), before)
    assert np.array_equal(np.concatenate(parts, 1), y) and same_state(s.get_state(), twin.get_state())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_set_state_checks(family_exports, family, mode):
    s, twin = open_session(family_exports, family, mode), open_session(family_exports, family, mode)
    x = random_inputs(s, 6, 2, seed=5)
    s.run(x[:, :3])
    twin.run(x[:, :3])
    good, specs = s.get_state(), s.metadata.states
    first = specs[0].name
    refused(s.set_state, list(good.values()), r"^state must be a dict of arrays keyed by \[")
    refused(s.set_state, {k: v for k, v in good.items() if k != first},
            rf"^state does not belong to this model: missing \['{re.escape(first)}'\], unexpected \[\]")
    refused(s.set_state, {**good, "bogus.h": good[first]}, r"^state does not belong to this model: missing \[\], "
                                                           r"unexpected \['bogus.h'\]")
    other = open_session(family_exports, "prlstm-features" if family.startswith("qllstm") else "qllstm-features",
                         mode)  # another family's stream: none of its state names are this model's
    other.run(random_inputs(other, 2, 2, seed=6))
    refused(s.set_state, other.get_state(), r"^state does not belong to this model: missing \[.+\], unexpected \[.+\]")
    for k, spec in enumerate(specs):
        arr, name = good[spec.name], re.escape(spec.name)
        wrong = "int32" if spec.dtype == "int64" else "float64"
        refused(s.set_state, {**good, spec.name: arr.astype(wrong)},
                rf"^state '{name}' has dtype {wrong}, expected {spec.dtype}")
        refused(s.set_state, {**good, spec.name: arr.tolist()}, rf"^state '{name}' must be a numpy array, got list")
        longer = np.zeros((*arr.shape[:-1], arr.shape[-1] + 1), arr.dtype) if arr.ndim > 1 else arr[:, None]
        refused(s.set_state, {**good, spec.name: longer}, rf"^state '{name}' has shape "
                                                          rf"{re.escape(str(list(longer.shape)))}, expected "
                                                          rf"{re.escape(str(list(arr.shape)))}")
        if k:  # one tensor of another batch size than the first
            refused(s.set_state, {**good, spec.name: np.zeros((3, *arr.shape[1:]), arr.dtype)},
                    rf"^state '{name}' has shape \[3\b.*expected \[2\b")
        if arr.dtype.kind == "f":
            nan = arr.copy()
            nan.flat[-1] = np.nan
            idx = re.escape(str([n - 1 for n in nan.shape]))
            refused(s.set_state, {**good, spec.name: nan}, rf"^state '{name}' has a non-finite value nan at index {idx}")
    assert same_state(s.get_state(), good)
    assert np.array_equal(s.run(x[:, 3:]), twin.run(x[:, 3:])) and same_state(s.get_state(), twin.get_state())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_state_of_another_batch_size_starts_streams_of_that_size(family_exports, family, mode):
    s, three = open_session(family_exports, family, mode), open_session(family_exports, family, mode)
    x = random_inputs(s, 5, 3, seed=7)
    s.run(x[:2, :2])
    three.run(x[:, :2])
    s.set_state(three.get_state())
    assert s.batch_size == 3
    refused(s.step, x[:2, 2], r"^x has batch size 2 but the stream's state has batch size 3")
    assert np.array_equal(s.run(x[:, 2:]), three.run(x[:, 2:]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reset_checks(family_exports, family):
    s = open_session(family_exports, family, "step")
    refused(lambda rows: s.reset(rows=rows), [0], r"no state yet")
    s.reset(batch_size=3)
    initial = {spec.name: np.full([3 if d == "batch" else d for d in spec.shape], spec.init, spec.dtype)
               for spec in s.metadata.states}
    assert s.batch_size == 3 and same_state(s.get_state(), initial)
    refused(lambda rows: s.reset(rows=rows), [3], r"^reset rows \[3\] out of range for batch size 3")
    refused(lambda b: s.reset(batch_size=b), 0, "positive integer")
    refused(lambda b: s.reset(batch_size=b, rows=[0]), 3, "not both")
    s.run(random_inputs(s, 4, 3, seed=8))
    ran = s.get_state()
    s.reset(rows=[1])
    after = s.get_state()
    for name, arr in after.items():
        assert np.array_equal(arr[[0, 2]], ran[name][[0, 2]]) and np.array_equal(arr[1], initial[name][1]), name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", COUNTED)
def test_stream_limit_refuses_the_call_and_names_the_row(family_exports, family, mode):
    s, twin = open_session(family_exports, family, mode), open_session(family_exports, family, mode)
    limit, counter = s.metadata.extra["max_steps"], s.metadata.extra["step_counter"]
    x = random_inputs(s, limit + 1, 2, seed=9)
    s.run(x[:, :limit - 5])
    twin.run(x[:, :limit - 5])
    before = s.get_state()
    refused(s.run, x[:, limit - 5:limit + 1], rf"^stream 0 has taken {limit - 5} steps and this model holds at most "
                                              rf"{limit} steps per stream .*: 6 more would pass the limit",
            StreamLimitError)
    assert same_state(s.get_state(), before)
    assert np.array_equal(s.run(x[:, limit - 5:limit]), twin.run(x[:, limit - 5:limit]))  # exactly full
    assert s.get_state()[counter].tolist() == [limit, limit]
    assert s.run(x[:, :0]).shape[1] == 0  # an empty chunk takes no step
    s.reset(rows=[0])
    refused(s.step, x[:, 0], rf"^stream 1 has taken {limit} steps .*; call reset\(rows=\[1\]\)", StreamLimitError)
    s.reset(rows=[1])
    fresh = open_session(family_exports, family, mode)
    assert np.array_equal(s.step(x[:, 0]), fresh.step(x[:, 0]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", COUNTED)
def test_set_state_refuses_a_negative_step_count(family_exports, family, mode):
    """A step counter below zero describes no stream: refused by name like any other bad state (with the native
    kernels it would otherwise fail inside onnxruntime, and the function bodies would silently run it)."""
    s = open_session(family_exports, family, mode)
    counter = s.metadata.extra["step_counter"]
    s.run(random_inputs(s, 3, 2, seed=10))
    good = s.get_state()
    bad = {**good, counter: np.array([-3, 3], np.int64)}
    refused(s.set_state, bad, rf"state '{re.escape(counter)}'.*-3")
    assert same_state(s.get_state(), good)


def test_files_that_are_not_models(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        StreamingSession(junk, native="off")
    with pytest.raises(ModelFileError, match="no such file"):
        StreamingSession(tmp_path / "missing.onnx", native="off")
    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    plain = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8), plain)
    with pytest.raises(ModelFileError, match="not a qlstm-edge export"):
        StreamingSession(plain, native="off")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_truncated_and_tampered_files(tmp_path, family_exports, family):
    path = family_exports(family)[1]["step"]
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        StreamingSession(cut, native="off")
    proto = onnx.load(path)
    prop = next(p for p in proto.metadata_props if p.key == "qlstm_edge")
    prop.value = prop.value.replace('"format_version":1', '"format_version":99')
    newer = tmp_path / "newer.onnx"
    onnx.save(proto, newer)
    with pytest.raises(ModelFileError, match="newer than this runtime supports"):
        StreamingSession(newer, native="off")
    state_input = StreamingSession(path, native="off").metadata.states[-1].input
    proto = onnx.load(path)
    prop = next(p for p in proto.metadata_props if p.key == "qlstm_edge")
    assert f'"input":"{state_input}"' in prop.value
    prop.value = prop.value.replace(f'"input":"{state_input}"', '"input":"missing.in"')
    liar = tmp_path / "liar.onnx"
    onnx.save(proto, liar)
    with pytest.raises(ModelFileError, match="names graph input 'missing.in', which the graph lacks"):
        StreamingSession(liar, native="off")


def test_cuda_request_falls_back_with_warning(feature_files, caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback path is not reachable here")
    with caplog.at_level("WARNING", logger="qlstm_edge.runtime"):
        s = StreamingSession(feature_files["step"], providers="cuda", native="off")
    assert s.provider == "CPUExecutionProvider"
    assert "falling back to CPUExecutionProvider" in caplog.text
    assert s.describe()["op_path"] == "function-body"
