"""Hardening of the streaming runtime against crafted files and careless inputs (issue 17, items 4-9): external
data anywhere in a file, files Python cannot parse, ndarray subclasses, run() failing part way, reset(rows=...)
masks, the metadata document's types and names, state sizes against the graph, and a per-call time limit.

Crafted files are built here: edits of an exported QL-LSTM file, and a toy model of standard ops with the
metadata (y = x + h; optionally a Loop whose trip count is a state, so a stream can be made to run forever)."""
import json
import re
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from qlstm_edge.runtime import InputError, ModelFileError, StreamingSession, TimeLimitError
from qlstm_edge.runtime import session as session_module


def same_state(a, b):
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def toy_meta(loop=False, dim=4):
    states = [{"name": "h", "input": "h.in", "output": "h.out", "shape": ["batch", dim], "dtype": "float32",
               "init": 0.0}]
    if loop:
        states.append({"name": "n", "input": "n.in", "output": "n.out", "shape": ["batch"], "dtype": "int64",
                       "init": 1})
    return {"format": "qlstm_edge.onnx", "format_version": 1, "family": "toy", "mode": "step", "target": "cpu",
            "toolkit_version": "0", "inputs": [{"name": "x", "shape": ["batch", dim], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": ["batch", dim], "dtype": "float32"}], "states": states}


def toy_file(path, loop=False, dim=4):
    """y = x + h, h <- y ([batch, dim] each). With ``loop``, x first goes through a Loop of max(n) identity
    iterations (state n)."""
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", f32, ["batch", dim]),
              helper.make_tensor_value_info("h.in", f32, ["batch", dim])]
    outputs = [helper.make_tensor_value_info("y", f32, ["batch", dim]),
               helper.make_tensor_value_info("h.out", f32, ["batch", dim])]
    nodes = [helper.make_node("Add", ["v", "h.in"], ["y"]), helper.make_node("Identity", ["y"], ["h.out"])]
    if loop:
        body = helper.make_graph(
            [helper.make_node("Identity", ["go"], ["go.out"]), helper.make_node("Identity", ["v.in"], ["v.out"])],
            "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                     helper.make_tensor_value_info("go", TensorProto.BOOL, []),
                     helper.make_tensor_value_info("v.in", f32, None)],
            [helper.make_tensor_value_info("go.out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v.out", f32, None)])
        nodes[:0] = [helper.make_node("ReduceMax", ["n.in"], ["trips"], keepdims=0),
                     helper.make_node("Constant", [], ["true"], value=helper.make_tensor("t", TensorProto.BOOL, [],
                                                                                          [True])),
                     helper.make_node("Loop", ["trips", "true", "x"], ["v"], body=body),
                     helper.make_node("Identity", ["n.in"], ["n.out"])]
        inputs.append(helper.make_tensor_value_info("n.in", TensorProto.INT64, ["batch"]))
        outputs.append(helper.make_tensor_value_info("n.out", TensorProto.INT64, ["batch"]))
    else:
        nodes.insert(0, helper.make_node("Identity", ["x"], ["v"]))
    model = helper.make_model(helper.make_graph(nodes, "toy", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"qlstm_edge": json.dumps(toy_meta(loop, dim))})
    onnx.save(model, path)
    return path


def with_meta(src, dst, edit):
    """A copy of ``src`` whose metadata document went through ``edit`` (a function changing the dict)."""
    proto = onnx.load(src)
    prop = next(p for p in proto.metadata_props if p.key == "qlstm_edge")
    doc = json.loads(prop.value)
    edit(doc)
    prop.value = json.dumps(doc)
    onnx.save(proto, dst)
    return dst


def external(tensor, location):
    """Make ``tensor`` read its data from ``location`` (an external-data reference)."""
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "12")):
        e = tensor.external_data.add()
        e.key, e.value = k, v
    return tensor


# -- item 4: external data in every tensor a file stores ---------------------------------------------------------

def _sparse_head_bias(proto, location):
    bias = next(t for t in proto.graph.initializer if t.name == "head.bias")
    proto.graph.initializer.remove(bias)
    values = external(helper.make_tensor("head.bias", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]), location)
    indices = helper.make_tensor("head.bias.idx", TensorProto.INT64, [3], [0, 1, 2])
    proto.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [3]))


def _sparse_indices(proto, location):
    bias = next(t for t in proto.graph.initializer if t.name == "head.bias")
    proto.graph.initializer.remove(bias)
    values = helper.make_tensor("head.bias", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0])
    indices = external(helper.make_tensor("head.bias.idx", TensorProto.INT64, [3], [0, 1, 2]), location)
    proto.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [3]))


def _function_constant(proto, location):
    value = external(helper.make_tensor("fn.secret", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]), location)
    proto.functions[0].node.insert(0, helper.make_node("Constant", [], ["QLLSTMCell.secret"], value=value))


def _subgraph_constant(proto, location):
    value = external(helper.make_tensor("sub.secret", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]), location)
    out = helper.make_tensor_value_info("branch.out", TensorProto.FLOAT, [3])
    then = helper.make_graph([helper.make_node("Constant", [], ["branch.out"], value=value)], "then", [], [out])
    other = helper.make_graph([helper.make_node("Constant", [], ["branch.out"], value=helper.make_tensor(
        "zeros", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]))], "else", [], [out])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    proto.graph.initializer.append(cond)
    proto.graph.node.append(helper.make_node("If", ["cond"], ["if.out"], then_branch=then, else_branch=other))


def _function_subgraph_constant(proto, location):
    value = external(helper.make_tensor("fn.sub.secret", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]), location)
    out = helper.make_tensor_value_info("QLLSTMCell.branch.out", TensorProto.FLOAT, [3])
    then = helper.make_graph([helper.make_node("Constant", [], ["QLLSTMCell.branch.out"], value=value)], "then", [],
                             [out])
    fn = proto.functions[0]
    fn.node.extend([helper.make_node("Constant", [], ["QLLSTMCell.cond"], value=helper.make_tensor(
                        "cond", TensorProto.BOOL, [], [True])),
                    helper.make_node("If", ["QLLSTMCell.cond"], ["QLLSTMCell.if.out"], then_branch=then,
                                     else_branch=then)])


def _sparse_attribute(proto, location):
    values = external(helper.make_tensor("attr.secret", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]), location)
    indices = helper.make_tensor("attr.idx", TensorProto.INT64, [3], [0, 1, 2])
    sparse = helper.make_sparse_tensor(values, indices, [3])
    proto.graph.node.append(helper.make_node("Constant", [], ["const.out"], sparse_value=sparse))


@pytest.mark.parametrize("craft, name", [(_sparse_head_bias, "head.bias"), (_sparse_indices, "head.bias"),
                                         (_function_constant, "fn.secret"), (_subgraph_constant, "sub.secret"),
                                         (_function_subgraph_constant, "fn.sub.secret"),
                                         (_sparse_attribute, "attr.secret")])
@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin"])
def test_external_data_anywhere_in_the_file_is_refused(tmp_path, exported, craft, name, location):
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 64)
    proto = onnx.load(exported[1]["step"])
    craft(proto, location)
    (tmp_path / "models").mkdir()
    bad = tmp_path / "models" / "m.onnx"
    bad.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelFileError, match=rf"tensor '{re.escape(name)}' points its external data at "
                                             rf"'{re.escape(location)}', outside the model's folder"):
        StreamingSession(bad, native="off")


def test_external_data_must_be_a_regular_file_and_not_a_memory_address(tmp_path, exported):
    (tmp_path / "adir").mkdir()
    for location, why in (("adir", "which is not a regular file"), ("*/_ORT_MEM_ADDR_/*", "outside the model's")):
        proto = onnx.load(exported[1]["step"])
        _function_constant(proto, location)
        bad = tmp_path / "m.onnx"
        bad.write_bytes(proto.SerializeToString())
        with pytest.raises(ModelFileError, match=rf"'fn.secret' points its external data at '{re.escape(location)}'"
                                                 rf", {why}"):
            StreamingSession(bad, native="off")


def test_a_file_python_cannot_parse_is_refused_not_loaded_unchecked(tmp_path, exported, monkeypatch):
    """A file that onnxruntime loads but Python's parser refuses (protobuf implementations differ: nesting depth,
    size limits) would skip the external-data check: it is refused, with the parser's reason."""
    def refuse(*args, **kwargs):
        raise onnx.onnx_cpp2py_export.checker.ValidationError("Exceeded maximum protobuf recursion depth")

    monkeypatch.setattr(onnx, "load", refuse)
    with pytest.raises(ModelFileError, match=r"not a loadable ONNX model \(it does not parse: Exceeded maximum "
                                             r"protobuf recursion depth\)"):
        StreamingSession(exported[1]["step"], native="off")


# -- item 5: ndarray subclasses, and run() applied whole or not at all ---------------------------------------------

def test_masked_inputs_and_states_are_refused(tmp_path, exported):
    s = StreamingSession(toy_file(tmp_path / "toy.onnx"), native="off")
    s.step(np.ones((2, 4), np.float32))
    before = s.get_state()
    nan = np.ma.masked_invalid(np.array([[np.nan, 1, 2, 3], [0, 1, 2, 3]], np.float32))
    plain = r"must be a plain numpy array of float32, got numpy\.ma\.(core\.)?MaskedArray \(an ndarray subclass: " \
            r"onnxruntime would read its raw data, masked entries included\); pass np\.asarray\(x\), or x\.filled"
    with pytest.raises(InputError, match=rf"^x {plain}"):
        s.step(nan)
    with pytest.raises(InputError, match=rf"^x chunk {plain}"):
        s.run(nan[:, None])
    with pytest.raises(InputError, match=r"^state 'h' must be a plain numpy array, got numpy\.ma\.(core\.)?Masked"):
        s.set_state({"h": nan})
    with pytest.raises(InputError, match=r"^x must be a plain numpy array of float32, got numpy\.memmap"):
        s.step(np.memmap(tmp_path / "mm", np.float32, "w+", shape=(2, 4)))
    assert same_state(s.get_state(), before)

    tokens = StreamingSession(exported[1]["step"], native="off")
    tokens.step(np.array([1, 2], np.int64))
    before = tokens.get_state()
    hidden = np.ma.array([5, 99], mask=[False, True])  # 99 is out of the vocabulary [0, 40)
    with pytest.raises(InputError, match=r"^x must be a plain numpy array of int64, got numpy\.ma\.(core\.)?Masked"):
        tokens.step(hidden)
    with pytest.raises(InputError, match=r"^x chunk must be a plain numpy array of int64"):
        tokens.run(np.ma.array([[5, 6, 99], [1, 2, 3]], mask=[[0, 0, 1], [0, 0, 0]]))
    assert same_state(tokens.get_state(), before)


@pytest.mark.parametrize("bind", [True, False])
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_a_run_that_fails_part_way_leaves_the_state_as_it_was(exported, monkeypatch, bind, interrupt):
    s, twin = (StreamingSession(exported[1]["step"], native="off") for _ in range(2))
    s._e.bind = bind  # both ways a session feeds onnxruntime: bound buffers, and plain feeds
    x = np.random.default_rng(0).integers(0, 40, (2, 12)).astype(np.int64)
    s.run(x[:, :3])
    twin.run(x[:, :3])
    before = s.get_state()
    real, calls = s._call, []

    def stop_after_4(*args):
        if len(calls) == 4:
            raise interrupt("stopped part way")
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(s, "_call", stop_after_4)
    with pytest.raises(interrupt, match="stopped part way"):
        s.run(x[:, 3:])
    assert len(calls) == 4 and same_state(s.get_state(), before)
    monkeypatch.undo()
    assert np.array_equal(s.run(x[:, 3:]), twin.run(x[:, 3:])) and same_state(s.get_state(), twin.get_state())


# -- item 6: reset(rows=...) ------------------------------------------------------------------------------------

def test_reset_takes_a_done_mask_or_integer_rows_and_refuses_anything_else(tmp_path):
    s = StreamingSession(toy_file(tmp_path / "toy.onnx"), native="off")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    s.step(x)
    for mask in ([False, False, True], np.array([False, False, True]), [np.bool_(False), False, np.bool_(True)]):
        s.set_state({"h": x})
        s.reset(rows=mask)
        assert np.array_equal(s.get_state()["h"], np.concatenate([x[:2], np.zeros((1, 4), np.float32)])), mask
    for rows in ([2], np.array([2]), np.array([2], np.uint8), (r for r in [2]), [np.int32(2)], [2, 2]):
        s.set_state({"h": x})
        s.reset(rows=rows)
        assert np.array_equal(s.get_state()["h"][:2], x[:2]) and not s.get_state()["h"][2].any(), rows
    s.set_state({"h": x})
    s.reset(rows=[])
    assert np.array_equal(s.get_state()["h"], x)
    bad = [([1.7], r"got float 1\.7"), (np.array([1.0]), "got an array of float64"),
           ([[0], [1]], r"got list \[0\]"), (np.array([[0], [1]]), "got a 2-D array"),
           ([True, 1], "got a mix of booleans and integers"), ("01", "got str '01'"), (1, "got int 1"),
           ({0: 1}, r"got dict \{0: 1\}"), ([None], "got NoneType None")]
    for rows, match in bad:
        with pytest.raises(InputError, match=rf"^reset rows must be integer row indices or a boolean mask of the "
                                             rf"batch size 3, {match}"):
            s.reset(rows=rows)
    for mask in ([False, True], np.ones(4, bool)):
        with pytest.raises(InputError, match=rf"^reset rows: a boolean mask needs one entry per stream \(3\), got "
                                             rf"{len(mask)}"):
            s.reset(rows=mask)
    for rows, shown in (([-1], "-1"), ([0, 2 ** 70], str(2 ** 70)), (np.array([0, 7], np.uint64), "7")):
        with pytest.raises(InputError, match=rf"^reset rows \[{shown}\] out of range for batch size 3"):
            s.reset(rows=rows)
    assert np.array_equal(s.get_state()["h"], x)


# -- items 7 and 8: the metadata document -----------------------------------------------------------------------

def _set(path, value):
    def edit(doc):
        *where, last = path
        for k in where:
            doc = doc[k]
        doc[last] = value
    return edit


def _copy_field(path, source):
    def edit(doc):
        states = doc["states"]
        states[path[0]][path[1]] = states[source[0]][source[1]]
    return edit


BAD_METADATA = [
    (_set(["domain_version"], "2"), r"'domain_version' must be a positive integer, got '2'"),
    (_set(["format_version"], True), r"format version True is newer"),
    (_set(["states", 0, "shape"], ["batch", -16]), r"states\[0\]\.shape\[1\] must be a non-negative integer or a "
                                                   r"symbolic name, got -16"),
    (_set(["states", 0, "shape"], ["batch", "H"]), r"states\[0\]\.shape must be \['batch', fixed sizes\.\.\.\]"),
    (_set(["states", 0, "shape"], [16, "batch"]), r"states\[0\]\.shape must be \['batch', fixed sizes"),
    (_set(["states", 0, "init"], "abc"), r"states\[0\]\.init must be int or float, got 'abc'"),
    (_set(["states", 0, "init"], True), r"states\[0\]\.init must be int or float, got True"),
    (_set(["states", 0, "init"], 1e300), r"states\[0\]\.init 1e\+300 is not a finite value of its dtype float32"),
    (_set(["states", 0, "dtype"], "float64"), r"states\[0\]\.dtype must be one of \['float32'"),
    (_set(["states", 0, "name"], 7), r"states\[0\]\.name must be str, got 7"),
    (_set(["states", 0], ["l0.h"]), r"states\[0\] must be an object, got \['l0\.h'\]"),
    (_set(["states", 0, "bogus"], 1), r"states\[0\] has unknown fields \['bogus'\]"),
    (_set(["inputs", 0, "range"], [50]), r"inputs\[0\]\.range must be \[lo, hi\] with integers lo < hi, got \[50\]"),
    (_set(["inputs", 0, "range"], [40, 0]), r"inputs\[0\]\.range must be \[lo, hi\]"),
    (_set(["inputs", 0, "shape"], [1]), r"inputs\[0\]\.shape must start with the symbolic axes \['batch'"),
    (_set(["outputs", 0, "dtype"], "complex64"), r"outputs\[0\]\.dtype must be one of"),
    (_set(["outputs", 0, "shape"], ["batch", "time", "classes"]), r"outputs\[0\]\.shape must be \['batch'.*\] then "
                                                                  r"fixed sizes"),
    (_set(["mode"], 3), r"metadata\.mode must be str, got 3"),
    (_set(["states"], {}), r"metadata\.states must be list, got \{\}"),
    (_set(["extra"], []), r"metadata\.extra must be dict, got \[\]"),
    (_set(["quantization"], "int8"), r"metadata\.quantization must be dict or null, got 'int8'"),
    (_set(["custom_ops"], [1]), r"metadata\.custom_ops\[0\] must be a string, got 1"),
    (_set(["surprise"], 1), r"metadata has unknown fields \['surprise'\]"),
    (_copy_field([1, "name"], [0, "name"]), r"state names must be unique, \['l0\.h'\] appear more than once"),
    (_copy_field([1, "input"], [0, "input"]), r"graph inputs must be unique, \['l0\.h\.in'\]"),
    (_copy_field([1, "output"], [0, "output"]), r"graph outputs must be unique, \['l0\.h\.out'\]"),
    (_set(["states", 0, "input"], "x"), r"graph inputs must be unique, \['x'\]"),
]


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("edit, match", BAD_METADATA)
def test_bad_metadata_is_refused_at_load_naming_the_field(tmp_path, exported, edit, match, mode):
    bad = with_meta(exported[1][mode], tmp_path / "bad.onnx", edit)
    with pytest.raises(ModelFileError, match=match):
        StreamingSession(bad, native="off")


def test_state_shapes_must_match_the_graph_and_fit_the_bound(tmp_path, exported):
    huge = with_meta(exported[1]["step"], tmp_path / "huge.onnx", _set(["states", 0, "shape"], ["batch", 2 ** 40]))
    with pytest.raises(ModelFileError, match=r"metadata gives the state 'l0\.h' the shape \['batch', 1099511627776\], "
                                             r"the graph declares its input 'l0\.h\.in' as \['batch', 16\]"):
        StreamingSession(huge, native="off")
    rank = with_meta(exported[1]["step"], tmp_path / "rank.onnx", _set(["states", 1, "shape"], ["batch", 4, 4]))
    with pytest.raises(ModelFileError, match=r"the state 'l0\.c' the shape \['batch', 4, 4\], the graph declares"):
        StreamingSession(rank, native="off")
    wide = with_meta(exported[1]["step"], tmp_path / "wide.onnx", _set(["outputs", 0, "shape"], ["batch", 2 ** 40]))
    with pytest.raises(ModelFileError, match=r"data output the shape \['batch', 1099511627776\]"):
        StreamingSession(wide, native="off")
    # graph and metadata agree on a terabyte state: the bound refuses it before anything is allocated
    agreed = toy_file(tmp_path / "agreed.onnx", dim=2 ** 38)
    with pytest.raises(ModelFileError, match=r"the state 'h' \(\['batch', 274877906944\], float32\) takes the states "
                                             r"and one step's output of a stream to 1,099,511,627,776 bytes, over the "
                                             r"runtime's bound of 1,073,741,824 bytes a stream"):
        StreamingSession(agreed, native="off")


def test_the_toy_file_streams(tmp_path):
    """The crafted files above differ from a good file only in what each test changes."""
    s = StreamingSession(toy_file(tmp_path / "toy.onnx"), native="off")
    x = np.ones((2, 3, 4), np.float32)
    assert np.array_equal(s.run(x)[:, -1], 3 * x[:, 0]) and np.array_equal(s.get_state()["h"], 3 * x[:, 0])


# -- item 9: a per-call time limit ------------------------------------------------------------------------------

FOREVER = 2 ** 62


@pytest.mark.parametrize("bind", [True, False])
def test_time_limit_stops_a_call_that_would_never_return(tmp_path, bind):
    path = toy_file(tmp_path / "loop.onnx", loop=True)
    s, twin = StreamingSession(path, native="off", time_limit_s=0.3), StreamingSession(path, native="off")
    s._e.bind = bind
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert np.array_equal(s.step(x), twin.step(x))  # one Loop iteration a step: well within the limit
    good = s.get_state()
    s.set_state({**good, "n": np.array([1, FOREVER], np.int64)})
    forever = s.get_state()
    for call, arg in ((s.step, x), (s.run, np.stack([x, x, x], 1))):
        t0 = time.monotonic()
        with pytest.raises(TimeLimitError, match=r"^the call ran past the session's time limit of 0\.3 s and was "
                                                 r"stopped; the stream's state is unchanged"):
            call(arg)
        assert time.monotonic() - t0 < 10
        assert same_state(s.get_state(), forever)
    s.set_state(good)
    assert np.array_equal(s.run(np.stack([x, x], 1)), twin.run(np.stack([x, x], 1)))
    assert same_state(s.get_state(), twin.get_state())


def test_time_limit_on_a_step_file_fed_a_chunk_restores_the_state(tmp_path, monkeypatch):
    """The deadline covers the whole run(): it can pass between steps, and the steps already taken are undone."""
    path = toy_file(tmp_path / "toy.onnx")
    s = StreamingSession(path, native="off", time_limit_s=0.2)
    x = np.ones((1, 6, 4), np.float32)
    s.run(x)
    before, real = s.get_state(), s._call

    def slow(*args):
        time.sleep(0.05)
        return real(*args)

    monkeypatch.setattr(s, "_call", slow)
    with pytest.raises(TimeLimitError):
        s.run(np.ones((1, 40, 4), np.float32))
    assert same_state(s.get_state(), before)
    assert s.new_stream().time_limit_s == 0.2


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "1", True])
def test_time_limit_must_be_a_positive_number(tmp_path, bad):
    path = toy_file(tmp_path / "toy.onnx")
    with pytest.raises(ValueError, match=r"time_limit_s must be a positive number of seconds or None"):
        StreamingSession(path, native="off", time_limit_s=bad)
    s = StreamingSession(path, native="off")
    with pytest.raises(ValueError, match=r"time_limit_s must be a positive number"):
        s.time_limit_s = bad
    assert s.time_limit_s is None


def test_the_stream_bound_is_a_module_setting(tmp_path, monkeypatch):
    path = toy_file(tmp_path / "toy.onnx")
    monkeypatch.setattr(session_module, "MAX_STREAM_BYTES", 16)
    with pytest.raises(ModelFileError, match=r"the data output .* to 32 bytes, over the runtime's bound of 16 bytes"):
        StreamingSession(path, native="off")
