"""Training: the loop lowers the loss, the same seed gives a bit-identical checkpoint, families are built by
name from JSON configs with the data's sizes filled in, and `qlstm-edge train` works end to end."""
import io
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qlstm_edge import ConfigError, load_checkpoint, save_checkpoint
from qlstm_edge.cli_train import train as train_cmd
from qlstm_edge.datasets import long_range_sentiment, sentiment_documents
from qlstm_edge.training import (Progress, TaskData, TrainConfig, build_model, fit, load_data, model_config_for,
                                 train_model)
from qlstm_edge.registry import get_family

TINY = {"hidden_size": 8, "embed_size": 4, "alpha": 0.0, "learn_alpha": False}
TINY_DATA = {"n": 96, "eval_n": 32, "length": 12}


def tiny_data():
    return load_data("long-range-sentiment", TINY_DATA)


def test_fit_lowers_the_loss():
    x, y = long_range_sentiment(64, length=8, vocab_size=12, seed=3)
    model = build_model("qllstm", TINY, TaskData("t", "classify", x, y), seed=0)
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(model(x)[0][:, -1], y).item()
    hist = fit(model, x, y, TrainConfig(epochs=15, batch_size=16, lr=2e-2), progress=False)
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(model(x)[0][:, -1], y).item()
    assert after < 0.8 * before and hist.loss[-1] < hist.loss[0] and hist.steps == 60


def test_regression_fit_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 10, 2, generator=g)
    y = x.cumsum(1)[..., :1] * 0.3  # a per-step target that needs memory
    data = TaskData("r", "regress", x, y)
    result = train_model("qllstm", TINY, data, TrainConfig(epochs=10, batch_size=8, lr=2e-2), progress=False)
    assert result.config["input_size"] == 2 and result.config["output_size"] == 1
    assert result.history.loss[-1] < 0.5 * result.history.loss[0]


@pytest.mark.parametrize("family,config", [("qllstm", TINY), ("rnn-baseline", {"hidden_size": 8, "cell": "gru"}),
                                           ("rnn-baseline", {"hidden_size": 8, "bidirectional": True})])
def test_same_seed_gives_a_bit_identical_checkpoint(tmp_path, family, config):
    data = tiny_data()
    paths = []
    for k in range(2):
        r = train_model(family, config, data, TrainConfig(epochs=1, batch_size=32, seed=7), progress=False)
        paths.append(save_checkpoint(r.model, tmp_path / f"{k}.safetensors"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = train_model(family, config, data, TrainConfig(epochs=1, batch_size=32, seed=8), progress=False)
    assert save_checkpoint(other.model, tmp_path / "o.safetensors").read_bytes() != paths[0].read_bytes()


def test_max_steps_and_threads_restored():
    before = torch.get_num_threads()
    r = train_model("qllstm", TINY, tiny_data(), TrainConfig(epochs=5, batch_size=8, max_steps=3), progress=False)
    assert r.history.steps == 3 and len(r.history.loss) == 1 and torch.get_num_threads() == before


def test_config_is_completed_and_checked_against_the_data():
    data = tiny_data()
    fam = get_family("qllstm")
    assert model_config_for(fam, {"hidden_size": 4}, data) == {"hidden_size": 4, "vocab_size": 64, "output_size": 2}
    assert model_config_for(fam, {"vocab_size": 100}, data)["vocab_size"] == 100  # a larger table is fine
    with pytest.raises(ConfigError, match="output_size=3 does not fit the data"):
        model_config_for(fam, {"output_size": 3}, data)
    with pytest.raises(ConfigError, match="sets input_size=4 but the data 'long-range-sentiment' is token ids"):
        model_config_for(fam, {"input_size": 4}, data)
    with pytest.raises(ConfigError, match="cannot read the data"):
        model_config_for(get_family("qllstm-stack"), {"hidden_size": 4}, data)
    with pytest.raises(ConfigError, match="unknown field"):
        build_model("qllstm", {"hidden": 4}, data)


def test_task_data_validation():
    with pytest.raises(ValueError, match="classification targets must be int64 class ids"):
        TaskData("d", "classify", torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2))
    with pytest.raises(ValueError, match="2 inputs and 3 targets"):
        TaskData("d", "classify", torch.zeros(2, 3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="regression targets must be float32"):
        TaskData("d", "regress", torch.zeros(2, 3, 1), torch.zeros(2, 4, 1))
    with pytest.raises(ValueError, match="task must be"):
        TrainConfig(task="rank").validate()
    with pytest.raises(ValueError, match="unknown data 'nope'"):
        load_data("nope")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\]"):
        load_data("long-range-sentiment", {"bogus": 1})


def test_progress_is_one_line_per_epoch_off_a_terminal():
    out = io.StringIO()
    bar = Progress(2, 4, "classify", stream=out)
    bar.step(0, 1, 0.7)
    bar.epoch(0, 0.69, 0.5)
    assert not bar.live and out.getvalue().startswith("epoch 1/2 loss 0.6900  eval acc 0.5000") \
        and out.getvalue().count("\n") == 1


def test_sentiment_documents_labels_follow_the_cues():
    texts, labels = sentiment_documents(200, length=30, cue_fraction=0.5, seed=1)
    from qlstm_edge.datasets import NEGATORS, NEGATIVE_WORDS, POSITIVE_WORDS

    for text, label in zip(texts, labels):
        words = text.split()
        assert len(words) == 30
        votes = []
        for p, w in enumerate(words):
            if w in POSITIVE_WORDS or w in NEGATIVE_WORDS:
                assert p < 15
                polarity = 1 if w in POSITIVE_WORDS else -1
                votes.append(-polarity if p > 0 and words[p - 1] in NEGATORS else polarity)
        assert len(votes) == 3 and all(v == (1 if label else -1) for v in votes)
    assert 60 < sum(labels) < 140


def run(*args):
    return CliRunner().invoke(train_cmd, [str(a) for a in args])


def test_cli_help_lists_families_and_data():
    r = run("--help")
    assert r.exit_code == 0
    for word in ("FAMILY", "qllstm", "rnn-baseline", "sentiment-documents", "forecast:co2", "--seed"):
        assert word in r.output


def test_cli_tiny_run_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "m.safetensors"
    r = run("qllstm", "-c", json.dumps(TINY), "-d", "sentiment-documents", "--data-options",
            json.dumps({"n": 32, "eval_n": 16, "length": 20}), "--epochs", 1, "-o", out, "--json", "--quiet")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    model = load_checkpoint(out)
    assert doc["config"] == model.config.to_dict() and doc["steps"] == 1
    from qlstm_edge.text import Vocabulary

    assert len(Vocabulary.load(tmp_path / "m.vocab.json")) == model.config.vocab_size


def test_cli_config_from_file_and_npz_data(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"hidden_size": 4, "cell": "gru"}))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.standard_normal((8, 5, 3)).astype(np.float32),
             y_train=rng.standard_normal((8, 5, 2)).astype(np.float32))
    r = run("rnn-baseline", "-c", tmp_path / "cfg.json", "-d", f"npz:{tmp_path / 'd.npz'}", "--epochs", 2,
            "-o", tmp_path / "g.safetensors", "--quiet")
    assert r.exit_code == 0, r.output
    cfg = load_checkpoint(tmp_path / "g.safetensors").config
    assert (cfg.input_size, cfg.output_size, cfg.cell) == (3, 2, "gru")


@pytest.mark.parametrize("args,message", [
    (["qllstm", "-c", '{"hidden_size": 0}'], "hidden_size must be a positive integer"),
    (["qllstm", "-c", '{"hidden_size": 4, "bogus": 1}'], "unknown field(s) ['bogus']"),
    (["qllstm", "-c", '{"hidden_size": 4'], "not valid JSON"),
    (["qllstm", "-c", "[1]"], "neither a JSON object nor an existing .json file"),
    (["no-such-family"], "unknown model family 'no-such-family'"),
    (["qllstm", "-d", "imdb:/no/such/folder"], "no such folder"),
])
def test_cli_bad_input_is_one_line_error(tmp_path, args, message):
    r = run(*args, "-o", tmp_path / "m.safetensors", "--quiet")
    assert r.exit_code != 0 and message in r.output
    error_lines = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "m.safetensors").exists()
