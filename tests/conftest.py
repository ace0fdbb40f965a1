import os

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


@pytest.fixture(scope="session")
def lib_status():
    """The native op library's status; skips (or fails under QLSTM_EDGE_REQUIRE_NATIVE=1) without it."""
    from qlstm_edge.runtime import native_lib

    st = native_lib.status()
    if st["isa_supported"] is None:
        msg = f"native op library unavailable: {st['reason']}"
        if os.environ.get("QLSTM_EDGE_REQUIRE_NATIVE") == "1":
            pytest.fail(msg + " (QLSTM_EDGE_REQUIRE_NATIVE=1)")
        pytest.skip(msg)
    return st
