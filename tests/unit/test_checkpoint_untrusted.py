"""Checkpoints (issue 17, items 3 and 7): every checkpoint save_checkpoint writes loads back, whatever its header
length (a safetensors file starts with that length, whose low byte is 0x80 in one case of 256), and the tensors
are checked against the config before the model is built for real."""
import dataclasses
import json
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from qlstm_edge import CheckpointError, LSTMConfig, LSTMModel, QLLSTM, QLLSTMConfig, QLLSTMModel, load_checkpoint, \
    save_checkpoint
from qlstm_edge import registry
from qlstm_edge.checkpoint import FORMAT, FORMAT_VERSION, METADATA_KEY
from qlstm_edge.families.prlstm import PRLSTM, PRLSTMConfig, PRLSTMModel

from helpers import xlstm_models


def header_length(path):
    with open(path, "rb") as fh:
        return struct.unpack("<Q", fh.read(8))[0]


def assert_round_trip(model, path):
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_headers_whose_length_starts_with_byte_0x80_load(tmp_path):
    """The reported case (QL-LSTM, 4 layers, output 100, vocabulary 5000) among configs whose header lengths
    cover every residue mod 256 that safetensors' 8-byte padding allows; the 0x80 ones went to torch.load."""
    lengths = set()
    for layers in range(1, 9):
        for output, vocab, hidden in ((100, 5000, 8), (100, 500, 8), (2, 5000, 16), (10, 50, 32)):
            torch.manual_seed(layers)
            path = tmp_path / f"m{layers}-{output}-{vocab}-{hidden}.safetensors"
            assert_round_trip(QLLSTMModel(QLLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=output,
                                                       vocab_size=vocab)), path)
            lengths.add(header_length(path) % 256)
    assert 128 in lengths


def test_a_torch_file_is_still_recognised(tmp_path):
    m = QLLSTMModel(QLLSTMConfig(hidden_size=8, num_layers=4, output_size=100, vocab_size=500))
    for zipped in (True, False):
        p = tmp_path / f"m{zipped}.pt"
        torch.save({"family": "qllstm", "config": m.config.to_dict(), "state_dict": m.state_dict()}, p,
                   _use_new_zipfile_serialization=zipped)
        assert load_checkpoint(p).state_dict().keys() == m.state_dict().keys()
    p = tmp_path / "list.pt"
    torch.save([1, 2], p)
    with pytest.raises(CheckpointError, match="a torch file, but not a qlstm-edge checkpoint"):
        load_checkpoint(p)


@st.composite
def models(draw):
    """A small model of one of the built-in families (xLSTM: test_xlstm_checkpoints_round_trip)."""
    kind = draw(st.sampled_from(["qllstm", "qllstm-stack", "rnn-baseline", "prlstm", "prlstm-core"]))
    hidden, layers = draw(st.integers(1, 24)), draw(st.integers(1, 4))
    inputs = draw(st.one_of(st.fixed_dictionaries({"vocab_size": st.integers(1, 3000)}),
                            st.fixed_dictionaries({"input_size": st.integers(1, 40)})))
    output = draw(st.integers(1, 300))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    if kind == "qllstm":
        return QLLSTMModel(QLLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=output,
                                        embed_size=draw(st.none() | st.integers(1, 16)),
                                        learn_alpha=draw(st.booleans()), **inputs))
    if kind == "qllstm-stack":
        return QLLSTM(draw(st.integers(1, 40)), hidden, num_layers=layers, learn_alpha=draw(st.booleans()))
    if kind == "rnn-baseline":
        return LSTMModel(LSTMConfig(hidden_size=hidden, num_layers=layers, output_size=output,
                                    cell=draw(st.sampled_from(["lstm", "gru"])),
                                    bidirectional=draw(st.booleans()), **inputs))
    if kind == "prlstm":
        return PRLSTMModel(PRLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=output,
                                        stack_levels=draw(st.integers(1, 40)), **inputs))
    return PRLSTM(draw(st.integers(1, 40)), hidden, num_layers=layers, stack_levels=draw(st.integers(1, 40)))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=models())
def test_checkpoints_round_trip_for_random_configs(tmp_path, model):
    assert_round_trip(model, tmp_path / "m.safetensors")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=xlstm_models())  # skips when the xlstm package is missing
def test_xlstm_checkpoints_round_trip(tmp_path, model):
    assert_round_trip(model, tmp_path / "m.safetensors")


def crafted(path, tensors, config, family="qllstm"):
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "family": family, "config": config}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(doc)})
    return path


@pytest.fixture
def builds(monkeypatch):
    """The devices qllstm models are built on while loading; a build outside the meta device fails at once,
    since a test below describes a model of gigabytes."""
    devices = []
    family = registry.get_family("qllstm")

    def build(config):
        devices.append(str(torch.get_default_device()))
        if devices[-1] != "meta" and config.get("hidden_size", 0) > 1000:
            raise AssertionError(f"built on {devices[-1]} before the tensors were checked")
        return family.build(config)

    monkeypatch.setitem(registry._FAMILIES, "qllstm", dataclasses.replace(family, build=build))
    return devices


BIG = {"hidden_size": 6000, "num_layers": 8, "vocab_size": 50000, "output_size": 2}  # ~2.5 GB of float32


def test_a_small_file_describing_a_huge_model_is_refused_before_building_it(tmp_path, builds):
    path = crafted(tmp_path / "bomb.safetensors", {}, BIG)
    assert path.stat().st_size < 300
    with pytest.raises(CheckpointError, match=r"tensors do not match the qllstm config: missing tensors "
                                              r"\['embedding.weight', 'head.bias', .*'rnn.cells.7.weight'\]"):
        load_checkpoint(path)
    assert builds == ["meta"]


def test_wrong_shapes_and_dtypes_are_refused_before_building(tmp_path, builds):
    small = QLLSTMModel(QLLSTMConfig(hidden_size=4, num_layers=8, vocab_size=5, output_size=2)).state_dict()
    path = crafted(tmp_path / "shape.safetensors", dict(small), BIG)  # every name, the shapes of a tiny model
    with pytest.raises(CheckpointError, match=r"tensor 'embedding.weight' has shape \[5, 4\], the config implies "
                                              r"\[50000, 6000\]"):
        load_checkpoint(path)
    config = {**BIG, "hidden_size": 4, "vocab_size": 5}
    path = crafted(tmp_path / "dtype.safetensors", {**small, "head.bias": small["head.bias"].double()}, config)
    with pytest.raises(CheckpointError, match=r"tensor 'head.bias' has dtype torch.float64, expected torch.float32"):
        load_checkpoint(path)
    assert builds == ["meta", "meta"]
    assert load_checkpoint(crafted(tmp_path / "ok.safetensors", dict(small), config)) is not None
    assert builds == ["meta", "meta", "meta", "cpu"]  # a valid file: checked on meta, then built once


def test_a_config_of_a_million_layers_is_refused_while_building_on_meta(tmp_path, builds):
    counted = []
    hook = torch.nn.modules.module.register_module_parameter_registration_hook(lambda *a: counted.append(1))
    try:
        with pytest.raises(CheckpointError, match="the qllstm config describes a model of more than 260 tensors, "
                                                  "the file holds 1"):
            load_checkpoint(crafted(tmp_path / "deep.safetensors", {"head.bias": torch.zeros(2)},
                                    {**BIG, "num_layers": 10**6}))
    finally:
        hook.remove()
    assert builds == ["meta"] and len(counted) <= 261


def test_non_tensor_entries_of_a_torch_file_are_refused(tmp_path):
    m = QLLSTMModel(QLLSTMConfig(hidden_size=4, vocab_size=5))
    p = tmp_path / "m.pt"
    torch.save({"family": "qllstm", "config": m.config.to_dict(), "state_dict": {**m.state_dict(), "head.bias": 3}}, p)
    with pytest.raises(CheckpointError, match=r"entries \['head.bias'\] of the state dict are not tensors"):
        load_checkpoint(p)
