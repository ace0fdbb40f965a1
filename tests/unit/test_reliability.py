"""Reliability: concurrency, native-library fallback, untrusted files, atomic writes."""

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from qlstm_edge import save_checkpoint
from qlstm_edge.cli import main
from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import ModelFileError, NativeLibraryError, StreamingSession

from helpers import make_qllstm


def test_missing_native_library_falls_back_or_refuses(exported, monkeypatch, tmp_path, caplog):
    _, paths = exported
    monkeypatch.setenv("QLSTM_EDGE_NATIVE_LIB", str(tmp_path / "nowhere.so"))
    s = StreamingSession(paths["step"], native="auto")
    assert s.op_path == "function-body" and "nowhere.so" in s.describe()["native_note"]
    with pytest.raises(NativeLibraryError, match="native='on' but the native op library is unavailable"):
        StreamingSession(paths["step"], native="on")
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"\x7fELF not really a library")
    monkeypatch.setenv("QLSTM_EDGE_NATIVE_LIB", str(bogus))
    with caplog.at_level("WARNING", logger="qlstm_edge.runtime"):
        s = StreamingSession(paths["step"], native="auto")
    assert s.op_path == "function-body" and "running function bodies instead" in caplog.text
    s.step(np.array([1], np.int64))
    with pytest.raises(NativeLibraryError):
        StreamingSession(paths["step"], native="on")


def test_external_data_outside_the_model_folder_is_refused(tmp_path, exported):
    _, paths = exported
    proto = onnx.load(paths["step"])
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(16 * 16, np.float32).tobytes())
    init = next(t for t in proto.graph.initializer if t.name == "l0.W_h")
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", str(16 * 16 * 4))):
        e = init.external_data.add()
        e.key, e.value = k, v
    (tmp_path / "models").mkdir()
    bad = tmp_path / "models" / "m.onnx"
    bad.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelFileError, match=r"'l0.W_h' points its external data at '../secret.bin', outside"):
        StreamingSession(bad, native="off")


def test_interrupted_writes_leave_nothing_under_the_target_name(tmp_path, monkeypatch):
    m = make_qllstm()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save_model", boom)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(m, tmp_path / "m.onnx")
    import qlstm_edge.checkpoint as ck

    monkeypatch.setattr(ck, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(m, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_info_warns_about_expansive_alpha(tmp_path):
    m = make_qllstm(alpha=0.2)
    path = save_checkpoint(m, tmp_path / "m.safetensors")
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.exit_code == 0 and "warning: layer 0: alpha = 0.2" in r.output and "expansive where f > 0.8" in r.output
    stable = save_checkpoint(make_qllstm(), tmp_path / "s.safetensors")
    assert "warning" not in CliRunner().invoke(main, ["info", str(stable)]).output


def test_export_refuses_unknown_modules_and_options(tmp_path):
    with pytest.raises(KeyError, match="not a model family this toolkit knows"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="mode must be one of"):
        export_onnx(make_qllstm(), tmp_path / "m.onnx", mode="batch")
    with pytest.raises(ValueError, match="target must be one of"):
        export_onnx(make_qllstm(), tmp_path / "m.onnx", target="tpu")
    with pytest.raises(ValueError, match="opset must be between"):
        export_onnx(make_qllstm(), tmp_path / "m.onnx", opset=9)
    assert list(tmp_path.iterdir()) == []
