import pytest
import torch

from qlstm_edge import QLLSTMConfig, QLLSTMModel
from qlstm_edge.exporters import export_onnx


def make_model(layers=2, tokens=True, hidden=16, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = QLLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=3,
                       **({"vocab_size": 40} if tokens else {"input_size": 5}), **kw)
    return QLLSTMModel(cfg).eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(model, {mode: path}) for a 2-layer token model, exported once per test session."""
    d = tmp_path_factory.mktemp("exported")
    m = make_model()
    return m, {mode: export_onnx(m, d / f"{mode}.onnx", mode=mode) for mode in ("step", "sequence")}
