"""The qlstm-edge CLI end to end: info, export, parity, stream; one-line errors with exit codes."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from qlstm_edge import __version__, save_checkpoint
from qlstm_edge.cli import main

from helpers import make_qllstm


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return save_checkpoint(make_qllstm(layers=2, hidden=32), d / "model.safetensors")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_and_version():
    r = run("--help")
    assert r.exit_code == 0 and "export" in r.output and "parity" in r.output
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_info_checkpoint_reports_parameter_comparison(ckpt):
    r = run("info", ckpt, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    H, E, L = 32, 32, 2
    qll = L * (H * (E + H) + 9 * H + 1)
    lstm = L * (4 * H * (E + H) + 8 * H)
    other = 40 * E + H * 3 + 3
    assert doc["parameters"] == qll + other and doc["lstm_parameters"] == lstm + other
    text = run("info", ckpt).output
    assert f"{qll + other:,}" in text and f"{lstm + other:,}" in text and "fewer here" in text


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_export_stream_parity(tmp_path, ckpt, mode):
    onnx_path = tmp_path / "m.onnx"
    r = run("export", ckpt, "-o", onnx_path, "--mode", mode)
    assert r.exit_code == 0, r.output
    info = json.loads(run("info", onnx_path, "--json").output)
    assert info["mode"] == mode and len(info["states"]) == 4
    x = np.random.default_rng(0).integers(0, 40, (2, 50))
    np.save(tmp_path / "x.npy", x)
    r = run("stream", onnx_path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--chunk", 7,
            "--native", "off")
    assert r.exit_code == 0, r.output
    y = np.load(tmp_path / "y.npy")
    import torch

    from qlstm_edge import load_checkpoint

    with torch.no_grad():
        ref = load_checkpoint(ckpt)(torch.from_numpy(x))[0].numpy()
    assert y.shape == (2, 50, 3) and np.abs(y - ref).max() <= 1e-5
    r = run("parity", ckpt, onnx_path, "--steps", 5000, "--batch", 2, "--json", "--native", "off")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output[r.output.index("{"):])
    assert rep["passed"] and rep["steps"] == 5000 and rep["max_abs"] <= 1e-4


def test_parity_exit_code_on_mismatch(tmp_path, ckpt):
    other = save_checkpoint(make_qllstm(layers=2, hidden=32, seed=5), tmp_path / "other.safetensors")
    onnx_path = tmp_path / "m.onnx"
    run("export", other, "-o", onnx_path)
    r = run("parity", ckpt, onnx_path, "--steps", 20, "--native", "off")
    assert r.exit_code == 1 and "parity FAIL" in r.output


def test_errors_are_one_line(tmp_path, ckpt):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"nope")
    r = run("info", junk)
    assert r.exit_code == 1 and r.output.startswith("error: ") and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 2), np.float32))
    onnx_path = tmp_path / "m.onnx"
    run("export", ckpt, "-o", onnx_path)
    r = run("stream", onnx_path, "--input", x, "--output", tmp_path / "y.npy", "--native", "off")
    assert r.exit_code == 1 and "dtype float32, expected int64" in r.output
    assert not (tmp_path / "y.npy").exists()
    r = run("parity", ckpt, onnx_path, "--chunks", "0")
    assert r.exit_code == 1 and "chunk sizes must be >= 1" in r.output


def test_bad_inputs_to_every_command(tmp_path, ckpt):
    junk_onnx = tmp_path / "junk.onnx"
    junk_onnx.write_bytes(b"not a model")
    r = run("info", junk_onnx)
    assert r.exit_code == 1 and "not a loadable ONNX model" in r.output
    r = run("export", junk_onnx, "-o", tmp_path / "out.onnx")
    assert r.exit_code == 1 and "not a qlstm-edge checkpoint" in r.output
    assert not (tmp_path / "out.onnx").exists()
    r = run("parity", ckpt, junk_onnx)
    assert r.exit_code == 1 and "not a loadable ONNX model" in r.output
    good = tmp_path / "m.onnx"
    run("export", ckpt, "-o", good)
    pickled = tmp_path / "x.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = run("stream", good, "--input", pickled, "--output", tmp_path / "y.npy")
    assert r.exit_code == 1 and "not a plain .npy array" in r.output
    np.save(tmp_path / "ids.npy", np.array([[1, 2, 99]], np.int64))
    r = run("stream", good, "--input", tmp_path / "ids.npy", "--output", tmp_path / "y.npy")
    assert r.exit_code == 1 and "token id 99" in r.output and "vocabulary range [0, 40)" in r.output
    np.save(tmp_path / "flat.npy", np.array([1, 2], np.int64))
    r = run("stream", good, "--input", tmp_path / "flat.npy", "--output", tmp_path / "y.npy")
    assert r.exit_code == 1 and "expected an array [B, T, ...]" in r.output
    r = run("parity", ckpt, good, "--steps", 0)
    assert r.exit_code == 2 and "--steps" in r.output  # click's own usage error
    r = run("--debug", "info", junk_onnx)
    assert r.exit_code == 1 and isinstance(r.exception, Exception)  # --debug lets the exception through
