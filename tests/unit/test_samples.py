"""The samples' bundled models: exported from the bundled checkpoints they pass parity (the users' own
assert_parity), the bundled ONNX files load and match their checkpoints, and the data pipelines behind
them behave. Tests that need statsmodels (the `samples` extra) skip without it, unless
QLSTM_EDGE_REQUIRE_SAMPLES=1 (CI), where they fail."""
import json
import os

import numpy as np
import pytest
import torch

from qlstm_edge import load_checkpoint
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import assert_parity
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.text import Vocabulary

from helpers import REPO

SAMPLES = REPO / "samples"
BUNDLED = {  # sample -> (checkpoint, {mode: bundled ONNX file})
    "sentiment": ("model.safetensors", {m: f"onnx/sentiment_{m}.onnx" for m in ("step", "sequence")}),
    "forecasting": ("model.safetensors", {m: f"onnx/co2_{m}.onnx" for m in ("step", "sequence")}),
}
STEPS = 2000


def needs_statsmodels():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        if os.environ.get("QLSTM_EDGE_REQUIRE_SAMPLES") == "1":
            pytest.fail("statsmodels is missing but QLSTM_EDGE_REQUIRE_SAMPLES=1: pip install '.[samples]'")
        pytest.skip("needs statsmodels (pip install 'qlstm-edge[samples]')")


@pytest.fixture(scope="module", params=sorted(BUNDLED))
def sample(request):
    name = request.param
    ckpt, files = BUNDLED[name]
    return name, load_checkpoint(SAMPLES / name / ckpt), {m: SAMPLES / name / f for m, f in files.items()}


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_export_from_bundled_checkpoint_passes_parity(tmp_path, sample, mode):
    name, model, _ = sample
    path = export_onnx(model, tmp_path / f"{name}_{mode}.onnx", mode=mode)
    report = assert_parity(model, path, steps=STEPS, batch=2)
    assert report.steps == STEPS and report.passed


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_bundled_onnx_files_load_and_match(sample, mode):
    name, model, files = sample
    path = files[mode]
    assert path.stat().st_size < 500_000, f"{path} is not commit-sized"
    s = StreamingSession(path, native="off")
    assert s.metadata.mode == mode and s.metadata.family == "qllstm"
    assert_parity(model, path, steps=STEPS, batch=2, native="off")
    assert_parity(model, path, steps=300, batch=1, native="auto")


def test_bundled_checkpoints_are_small_and_stable():
    for name, (ckpt, _) in BUNDLED.items():
        model = load_checkpoint(SAMPLES / name / ckpt)
        assert (SAMPLES / name / ckpt).stat().st_size < 500_000
        # fixed alpha = 0: the update cannot be expansive on arbitrarily long streams
        assert model.config.alpha == 0.0 and model.config.learn_alpha is False


def test_sentiment_vocabulary_and_real_text():
    from qlstm_edge.datasets import sentiment_documents
    from qlstm_edge.text import encode_documents, tokenize

    d = SAMPLES / "sentiment"
    model, vocab = load_checkpoint(d / "model.safetensors"), Vocabulary.load(d / "vocab.json")
    assert len(vocab) == model.config.vocab_size
    texts, labels = sentiment_documents(200, seed=999)
    x = encode_documents([tokenize(t) for t in texts], vocab, length=100).numpy()
    s = StreamingSession(d / "onnx" / "sentiment_sequence.onnx")
    logits = s.run(x)[:, -1]
    with torch.no_grad():
        ref = model(torch.from_numpy(x))[0][:, -1].numpy()
    assert np.abs(logits - ref).max() < 1e-4
    accuracy = (logits.argmax(-1) == np.array(labels)).mean()
    metrics = json.loads((d / "metrics.json").read_text())
    assert accuracy > 0.9 and metrics["eval_accuracy"] > 0.9


def test_forecasting_streams_the_real_series():
    needs_statsmodels()
    from qlstm_edge.datasets import forecast_task

    d = SAMPLES / "forecasting"
    task = forecast_task("co2")
    assert task.features.shape == (2282, 3) and task.targets.shape == (2282, 1) and task.split == 1597
    # the naive last-value forecast is exactly v[t+1] for v[t+2]
    assert task.rmse(task.forecast(np.zeros(len(task.targets)))) == pytest.approx(
        float(np.sqrt(np.mean(np.diff(task.values)[task.split + 1:] ** 2))))
    model = load_checkpoint(d / "model.safetensors")
    feats = task.features[None]
    report = assert_parity(model, d / "onnx" / "co2_step.onnx", inputs=feats)  # the whole real series
    assert report.steps == 2282
    results = json.loads((d / "results.json").read_text())
    s = StreamingSession(d / "onnx" / "co2_sequence.onnx")
    pred = s.run(feats)[0, :, 0]
    rmse = task.rmse(task.forecast(pred))
    assert rmse == pytest.approx(results["rmse_one_week_ahead"]["qllstm_streamed_onnx"], abs=1e-4)
    assert rmse < results["rmse_one_week_ahead"]["naive_last_value"]


def test_missing_statsmodels_is_a_clear_error(monkeypatch):
    import sys

    from qlstm_edge.datasets import MissingExtraError, load_series

    monkeypatch.setitem(sys.modules, "statsmodels", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'qlstm-edge\[samples\]'"):
        load_series("co2")
    with pytest.raises(ValueError, match="unknown series 'co3'"):
        load_series("co3")


def test_walkthrough_runs_end_to_end(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("walkthrough", SAMPLES / "walkthrough" / "walkthrough.py")
    walkthrough = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(walkthrough)
    walkthrough.walk(tmp_path)
    out = capsys.readouterr().out
    assert "bit-identical file for the same seed: True" in out and "assert_parity passed" in out
    assert out.count("parity PASS") == 2 and (tmp_path / "model_step.onnx").is_file()


# -- the baselines' options that make samples/comparison fair ------------------------------------------------

def _baseline(seed=0, **options):
    from qlstm_edge.families.baseline import LSTMConfig, LSTMModel

    torch.manual_seed(seed)
    return LSTMModel(LSTMConfig(hidden_size=5, vocab_size=7, embed_size=3, **options))


@pytest.mark.parametrize("cell,gate", [("lstm", 1), ("gru", 1)])  # torch's gate order: LSTM i,f,g,o; GRU r,z,n
def test_baseline_forget_bias_sets_only_the_keep_gate(cell, gate):
    plain = _baseline(cell=cell, num_layers=2, bidirectional=True)
    biased = _baseline(cell=cell, num_layers=2, bidirectional=True, forget_bias=1.0)
    h = 5
    names = [n for n, _ in plain.rnn.named_parameters()]
    assert len([n for n in names if n.startswith("bias_ih")]) == 4  # 2 layers x 2 directions
    for name in names:
        a, b = getattr(plain.rnn, name).detach(), getattr(biased.rnn, name).detach()
        if not name.startswith("bias_"):
            assert torch.equal(a, b)
            continue
        keep = slice(gate * h, (gate + 1) * h)
        rest = torch.ones(len(a), dtype=torch.bool)
        rest[keep] = False
        assert torch.equal(a[rest], b[rest])
        if name.startswith("bias_hh"):
            assert torch.equal(b[keep], torch.zeros(h))
        else:
            assert torch.equal(b[keep], torch.ones(h))


def nn_lstm(model, suffix):
    """A one-directional torch.nn.LSTM with the weights of one direction of the model's bidirectional LSTM."""
    lstm = torch.nn.LSTM(3, 5, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, name).copy_(getattr(model.rnn, name + suffix))
    return lstm


def test_baseline_ends_readout_reads_both_directions_after_the_whole_sequence():
    model = _baseline(bidirectional=True, readout="ends").eval()
    x = torch.randint(0, 7, (3, 9))
    with torch.no_grad():
        y = model(x)[0]
        e = model.embedding(x)
        # reference: a one-directional LSTM with the forward weights, and one with the backward weights run
        # on the reversed sequence; position t reads [forward h_t; backward h after the whole sequence]
        fwd, bwd = nn_lstm(model, ""), nn_lstm(model, "_reverse")
        h_fwd = fwd(e)[0]
        h_bwd = bwd(e.flip(1))[0][:, -1]
        for t in range(9):
            assert torch.allclose(y[:, t], model.head(torch.cat([h_fwd[:, t], h_bwd], -1)), atol=1e-6)
    step = _baseline(bidirectional=True).eval()
    step.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(step(x)[0][:, -1], y[:, -1])  # "step" reads the backward state of one word


def test_baseline_option_errors_and_old_checkpoints():
    from qlstm_edge.config import ConfigError

    with pytest.raises(ConfigError, match="readout 'ends' is for bidirectional models"):
        _baseline(readout="ends")
    with pytest.raises(ConfigError, match=r"readout must be one of \['step', 'ends'\]"):
        _baseline(bidirectional=True, readout="mean")
    with pytest.raises(ConfigError, match="forget_bias must be a finite number or null"):
        _baseline(forget_bias="1")
    old = load_checkpoint(SAMPLES / "forecasting" / "lstm_baseline.safetensors")  # saved before the options
    assert old.config.forget_bias is None and old.config.readout == "step"
