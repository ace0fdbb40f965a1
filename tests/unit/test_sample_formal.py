"""samples/formal_language: the generator's labels, the bundled PR-LSTM checkpoint and its ONNX files
(parity, the users' own assert_parity), and the sample's published numbers reproduced by its own
evaluation function on a short length."""
import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from qlstm_edge.families.prlstm import PRLSTMModel  # registers the family
from qlstm_edge import load_checkpoint
from qlstm_edge.datasets import FORMAL_TASKS, formal_language
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import assert_parity
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.training import load_data

from helpers import REPO

SAMPLE = REPO / "samples" / "formal_language"
FILES = {m: SAMPLE / "onnx" / f"parity_{m}.onnx" for m in ("step", "sequence")}
STEPS = 2000


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(SAMPLE / "model.safetensors")


@pytest.fixture(scope="module")
def sample_script():
    spec = importlib.util.spec_from_file_location("formal_language_train", SAMPLE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results():
    return json.loads((SAMPLE / "results.json").read_text())


def reference_label(task: str, prefix: list) -> int:
    if task == "parity":
        return sum(prefix) % 2
    text = "".join(map(str, prefix))
    pairs_01 = sum(text[i:i + 2] == "01" for i in range(len(text) - 1))
    pairs_10 = sum(text[i:i + 2] == "10" for i in range(len(text) - 1))
    return int(pairs_01 == pairs_10)


@pytest.mark.parametrize("task", sorted(FORMAL_TASKS))
def test_generator_labels_every_prefix(task):
    x, y = formal_language(task, 40, 23, seed=5)
    assert x.shape == y.shape == (40, 23) and x.dtype == y.dtype == torch.int64
    assert set(x.unique().tolist()) == {0, 1}
    for row, labels in zip(x.tolist(), y.tolist()):
        assert labels == [reference_label(task, row[:t + 1]) for t in range(len(row))]
    assert torch.equal(formal_language(task, 40, 23, seed=5)[0], x)  # seeded
    assert not torch.equal(formal_language(task, 40, 23, seed=6)[0], x)


def test_generator_and_data_name_errors():
    with pytest.raises(ValueError, match="unknown formal-language task 'dyck'"):
        formal_language("dyck", 4, 8)
    with pytest.raises(ValueError, match="need integers n >= 1 and length >= 1"):
        formal_language("parity", 4, 0)
    with pytest.raises(ValueError, match=r"formal-language:NAME with NAME one of \['even-pairs', 'parity'\]"):
        load_data("formal-language")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['size'\]"):
        load_data("formal-language:parity", {"size": 3})


def test_data_name_gives_plus_minus_one_targets_at_every_prefix():
    data = load_data("formal-language:parity", {"n": 50, "length": 12, "eval_n": 10, "eval_length": 40})
    assert data.task == "regress" and data.x_train.shape == (50, 12) and data.y_train.shape == (50, 12, 1)
    assert data.x_eval.shape == (10, 40) and data.y_eval.shape == (10, 40, 1)
    parity = torch.cumsum(data.x_train, 1) % 2
    assert torch.equal(data.y_train[..., 0], torch.where(parity == 1, 1.0, -1.0))
    assert data.implied_config() == {"vocab_size": 2, "output_size": 1}


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_export_from_bundled_checkpoint_passes_parity(tmp_path, model, mode):
    path = export_onnx(model, tmp_path / f"parity_{mode}.onnx", mode=mode)
    report = assert_parity(model, path, steps=STEPS, batch=2)
    assert report.steps == STEPS and report.passed


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_bundled_onnx_files_load_and_match(model, mode):
    path = FILES[mode]
    assert path.stat().st_size < 500_000, f"{path} is not commit-sized"
    s = StreamingSession(path, native="off")
    assert s.metadata.mode == mode and s.metadata.family == "prlstm"
    assert_parity(model, path, steps=STEPS, batch=2, native="off")
    assert_parity(model, path, steps=300, batch=1, native="auto")


def test_bundled_checkpoint_is_small_and_the_published_one(model, results):
    assert (SAMPLE / "model.safetensors").stat().st_size < 500_000
    assert isinstance(model, PRLSTMModel) and dataclasses.asdict(model.config) == results["bundled"]["config"]
    assert results["bundled"]["parameters"] == sum(p.numel() for p in model.parameters())


def test_published_numbers_are_reproduced_on_a_short_length(sample_script, model, results):
    length = "64"
    # the bundled model's row of the comparison (PyTorch) and its ONNX files streamed both ways
    run = next(r for r in results["runs"] if r["model"] == "PR-LSTM" and r["seed"] == results["bundled"]["seed"]
               and r["train_length"] == results["bundled"]["train_length"])
    got = sample_script.evaluate(sample_script.torch_predict(model), "parity", [int(length)])
    assert got[length] == run["accuracy"][length]
    for mode, predict in (("step", sample_script.step_predict), ("sequence", sample_script.sequence_predict)):
        got = sample_script.evaluate(predict(FILES[mode]), "parity", [int(length)])
        assert got[length] == results["bundled"]["onnx_accuracy"][mode][length]
    # the evaluation is right: scores from the ONNX file, labels recomputed here
    x, labels = sample_script.eval_strings("parity", int(length))
    scores = StreamingSession(FILES["sequence"]).run(x)[..., 0]
    assert np.array_equal(labels, np.cumsum(x, axis=1) % 2)
    assert ((scores > 0) == (labels == 1)).mean() == results["bundled"]["onnx_accuracy"]["sequence"][length]["all_prefixes"]
