"""Property tests (hypothesis): random sizes, layer counts, lengths and chunkings; parity holds."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qlstm_edge import QLLSTMConfig, QLLSTMModel
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import assert_parity

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(hidden=st.integers(1, 24), layers=st.integers(1, 3), tokens=st.booleans(), batch=st.integers(1, 3),
       steps=st.integers(1, 120), chunks=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       mode=st.sampled_from(["step", "sequence"]), seed=st.integers(0, 2**16))
def test_qllstm_parity_for_random_shapes(tmp_path, hidden, layers, tokens, batch, steps, chunks, mode, seed):
    torch.manual_seed(seed)
    cfg = QLLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=2,
                       **({"vocab_size": 7} if tokens else {"input_size": 3}))
    model = QLLSTMModel(cfg).eval()
    path = export_onnx(model, tmp_path / f"m{seed}.onnx", mode=mode)
    report = assert_parity(model, path, steps=steps, batch=batch, chunk_sizes=chunks, seed=seed, native="auto")
    assert report.max_abs <= 1e-4 and np.isfinite(report.max_abs)
