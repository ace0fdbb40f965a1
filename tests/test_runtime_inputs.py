"""StreamingSession input validation: each bad input gets a clear error and the stream is unchanged."""
import numpy as np
import onnx
import pytest

from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import InputError, ModelFileError, StreamingSession

from conftest import make_model


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("feat")
    m = make_model(tokens=False)
    return {mode: export_onnx(m, d / f"{mode}.onnx", mode=mode) for mode in ("step", "sequence")}


def started(path, batch=2):
    s = StreamingSession(path, native="off")
    s.run(np.zeros((batch, 3, 5), np.float32))
    return s


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("call,x,match", [
    ("step", np.zeros((2, 5), np.float64), "x has dtype float64, expected float32"),
    ("step", [[0.0] * 5] * 2, "x must be a numpy array of float32, got list"),
    ("step", np.zeros((2, 3, 5), np.float32), r"x has rank 3 .* expected rank 2"),
    ("step", np.zeros((2, 4), np.float32), r"axis 1 must be 5"),
    ("run", np.zeros((2, 5), np.float32), r"x chunk has rank 2 .* expected rank 3"),
    ("run", np.zeros((2, 3, 6), np.float32), r"axis 2 must be 5"),
    ("step", np.zeros((3, 5), np.float32), r"batch size 3 but the stream's state has batch size 2"),
    ("step", np.zeros((0, 5), np.float32), "batch size 0"),
])
def test_bad_inputs_are_refused_and_state_is_kept(feature_files, mode, call, x, match):
    s = started(feature_files[mode])
    before = s.get_state()
    with pytest.raises(InputError, match=match):
        getattr(s, call)(x)
    after = s.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    s.step(np.ones((2, 5), np.float32))  # the stream goes on


def test_nonfinite_refused_with_index_unless_allowed(feature_files):
    s = started(feature_files["sequence"])
    x = np.zeros((2, 4, 5), np.float32)
    x[1, 2, 3] = np.nan
    with pytest.raises(InputError, match=r"non-finite value nan at index \[1, 2, 3\]"):
        s.run(x)
    x[1, 2, 3] = np.inf
    with pytest.raises(InputError, match=r"non-finite value inf at index \[1, 2, 3\]"):
        s.run(x)
    lenient = StreamingSession(feature_files["sequence"], native="off", allow_nonfinite=True)
    assert not np.isfinite(lenient.run(x)).all()


def test_token_ids_out_of_vocabulary(exported):
    _, paths = exported
    s = StreamingSession(paths["step"], native="off")
    with pytest.raises(InputError, match=r"token id 40 at index \[1\] is out of the vocabulary range \[0, 40\)"):
        s.step(np.array([3, 40], np.int64))
    with pytest.raises(InputError, match=r"token id -1 at index \[0, 1\]"):
        s.run(np.array([[3, -1]], np.int64))
    with pytest.raises(InputError, match="dtype int32, expected int64"):
        s.step(np.array([3], np.int32))


def test_empty_chunk_is_a_no_op(feature_files):
    s = started(feature_files["sequence"])
    before = s.get_state()
    y = s.run(np.zeros((2, 0, 5), np.float32))
    assert y.shape == (2, 0, 3)
    assert all(np.array_equal(before[k], s.get_state()[k]) for k in before)


def test_set_state_checks(feature_files):
    s = started(feature_files["step"])
    good = s.get_state()
    with pytest.raises(InputError, match=r"missing \['l1.c'\]"):
        s.set_state({k: v for k, v in good.items() if k != "l1.c"})
    with pytest.raises(InputError, match=r"unexpected \['l9.h'\]"):
        s.set_state({**good, "l9.h": good["l0.h"]})
    with pytest.raises(InputError, match=r"'l0.c' has shape \[2, 7\], expected \[2, 16\]"):
        s.set_state({**good, "l0.c": np.zeros((2, 7), np.float32)})
    with pytest.raises(InputError, match=r"'l0.h' has dtype float64"):
        s.set_state({**good, "l0.h": good["l0.h"].astype(np.float64)})
    with pytest.raises(InputError, match=r"state 'l1.h' has shape \[3, 16\], expected \[2, 16\]"):
        s.set_state({**good, "l1.h": np.zeros((3, 16), np.float32)})
    bad = {**good, "l0.h": good["l0.h"].copy()}
    bad["l0.h"][0, 0] = np.nan
    with pytest.raises(InputError, match="state 'l0.h' has a non-finite value"):
        s.set_state(bad)
    assert all(np.array_equal(good[k], s.get_state()[k]) for k in good)


def test_reset_checks(feature_files):
    s = StreamingSession(feature_files["step"], native="off")
    with pytest.raises(InputError, match="no state yet"):
        s.reset(rows=[0])
    s.reset(batch_size=3)
    assert s.batch_size == 3 and all(v.shape[0] == 3 for v in s.get_state().values())
    with pytest.raises(InputError, match=r"rows \[3\] out of range for batch size 3"):
        s.reset(rows=[3])
    with pytest.raises(InputError, match="positive integer"):
        s.reset(batch_size=0)


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


def test_truncated_and_tampered_files(tmp_path, feature_files):
    data = feature_files["step"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        StreamingSession(cut, native="off")
    proto = onnx.load(feature_files["step"])
    prop = next(p for p in proto.metadata_props if p.key == "qlstm_edge")
    prop.value = prop.value.replace('"format_version":1', '"format_version":99')
    newer = tmp_path / "newer.onnx"
    onnx.save(proto, newer)
    with pytest.raises(ModelFileError, match="newer than this runtime supports"):
        StreamingSession(newer, native="off")
    proto = onnx.load(feature_files["step"])
    prop = next(p for p in proto.metadata_props if p.key == "qlstm_edge")
    prop.value = prop.value.replace('"input":"l0.h.in"', '"input":"l0.h.missing"')
    liar = tmp_path / "liar.onnx"
    onnx.save(proto, liar)
    with pytest.raises(ModelFileError, match="names graph input 'l0.h.missing', which the graph lacks"):
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
