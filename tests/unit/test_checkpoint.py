"""Checkpoints: bit-exact round trip, every bad-file case gives its clear error, no pickle executed."""
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from qlstm_edge import CheckpointError, LSTMConfig, LSTMModel, QLLSTM, QLLSTMConfig, QLLSTMModel, load_checkpoint, \
    save_checkpoint
from qlstm_edge.checkpoint import FORMAT, FORMAT_VERSION, METADATA_KEY


def model():
    torch.manual_seed(0)
    return QLLSTMModel(QLLSTMConfig(hidden_size=8, num_layers=2, vocab_size=30, output_size=3, learn_alpha=False))


def write(path, tensors, doc):
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(doc)} if doc is not None else None)


def doc_of(**over):
    d = {"format": FORMAT, "format_version": FORMAT_VERSION, "family": "qllstm",
         "config": model().config.to_dict()}
    d.update(over)
    return d


@pytest.mark.parametrize("make", [model, lambda: QLLSTM(3, 5, num_layers=2),
                                  lambda: LSTMModel(LSTMConfig(hidden_size=6, input_size=2, cell="gru"))])
def test_round_trip_is_bit_exact(tmp_path, make):
    m = make()
    path = save_checkpoint(m, tmp_path / "m.safetensors")
    m2 = load_checkpoint(path)
    assert type(m2) is type(m)
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary file left behind


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a qlstm-edge checkpoint"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_plain_safetensors_without_metadata(tmp_path):
    p = tmp_path / "plain.safetensors"
    write(p, model().state_dict(), None)
    with pytest.raises(CheckpointError, match="no 'qlstm_edge' entry"):
        load_checkpoint(p)


def test_unknown_family(tmp_path):
    p = tmp_path / "m.safetensors"
    write(p, model().state_dict(), doc_of(family="transformer"))
    with pytest.raises(CheckpointError, match="unknown model family 'transformer'"):
        load_checkpoint(p)


def test_newer_format_version(tmp_path):
    p = tmp_path / "m.safetensors"
    write(p, model().state_dict(), doc_of(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer than this toolkit supports"):
        load_checkpoint(p)


def test_missing_unexpected_and_wrong_shape(tmp_path):
    sd = dict(model().state_dict())
    p = tmp_path / "m.safetensors"
    missing = {k: v for k, v in sd.items() if k != "head.bias"}
    write(p, missing, doc_of())
    with pytest.raises(CheckpointError, match=r"missing tensors \['head.bias'\]"):
        load_checkpoint(p)
    write(p, {**sd, "extra.weight": torch.zeros(2)}, doc_of())
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['extra.weight'\]"):
        load_checkpoint(p)
    write(p, {**sd, "head.bias": torch.zeros(5)}, doc_of())
    with pytest.raises(CheckpointError, match=r"'head.bias' has shape \[5\], the config implies \[3\]"):
        load_checkpoint(p)


def test_bad_config(tmp_path):
    p = tmp_path / "m.safetensors"
    write(p, model().state_dict(), doc_of(config={"hidden_size": -1, "vocab_size": 3}))
    with pytest.raises(CheckpointError, match="invalid qllstm config"):
        load_checkpoint(p)


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"family": "qllstm", "config": {}, "state_dict": Boom()}, fh, protocol=2)  # torch.save's protocol
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(p)
    assert not (tmp_path / "PWNED").exists()


def test_torch_file_with_weights_only_content_loads(tmp_path):
    m = model()
    p = tmp_path / "m.pt"
    torch.save({"family": "qllstm", "config": m.config.to_dict(), "state_dict": m.state_dict()}, p)
    m2 = load_checkpoint(p)
    assert all(torch.equal(m.state_dict()[k], m2.state_dict()[k]) for k in m.state_dict())
