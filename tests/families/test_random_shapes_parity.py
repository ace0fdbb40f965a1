"""Property tests (hypothesis): random sizes, layer counts, lengths and chunkings of every family; parity holds
(check_parity against the float64 PyTorch model, or the xlstm package's own step, at the default fp32 tolerance)."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qlstm_edge import QLLSTMConfig, QLLSTMModel
from qlstm_edge.exporters import export_onnx
from qlstm_edge.families.prlstm import PRLSTM, PRLSTMConfig, PRLSTMModel
from qlstm_edge.parity import TOLERANCES, assert_parity
from qlstm_edge.runtime import StreamingSession

from helpers import xlstm_models

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CHUNKS = st.lists(st.integers(1, 40), min_size=1, max_size=4)
MODES = st.sampled_from(["step", "sequence"])
NATIVE = st.sampled_from(["off", "auto"])



def parity(model, tmp_path, mode, **kw):
    """assert_parity on a fresh export; every state of the file is compared, within the fp32 tolerance."""
    path = export_onnx(model, tmp_path / "m.onnx", mode=mode)
    report = assert_parity(model, path, **kw)
    assert np.isfinite(report.max_abs) and report.max_abs <= TOLERANCES[None]
    assert set(report.state_max_abs) == {s.name for s in StreamingSession(path, native="off").metadata.states}
    return report


@SETTINGS
@given(hidden=st.integers(1, 24), layers=st.integers(1, 3), tokens=st.booleans(), batch=st.integers(1, 3),
       steps=st.integers(1, 120), chunks=CHUNKS, mode=MODES, seed=st.integers(0, 2**16))
def test_qllstm_parity_for_random_shapes(tmp_path, hidden, layers, tokens, batch, steps, chunks, mode, seed):
    torch.manual_seed(seed)
    cfg = QLLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=2,
                       **({"vocab_size": 7} if tokens else {"input_size": 3}))
    parity(QLLSTMModel(cfg).eval(), tmp_path, mode, steps=steps, batch=batch, chunk_sizes=chunks, seed=seed,
           native="auto")


@st.composite
def prlstm_streams(draw):
    """(stack_levels K, steps, chunk sizes): lengths up to the 2^K - 1 a stream holds (often the full stack), often
    at or one past a power of two (a carry through every lower level of the stack), and chunks often powers of two
    (chunk boundaries on carries)."""
    levels = draw(st.integers(1, 8))
    cap = min(2 ** levels - 1, 130)
    near_carry = [n for p in range(1, levels + 1) for n in (2 ** p - 1, 2 ** p, 2 ** p + 1) if n <= cap]
    steps = draw(st.sampled_from(near_carry) | st.integers(1, cap) | st.integers(0, 3).map(lambda d: max(1, cap - d)))
    chunks = draw(st.lists(st.sampled_from([1, 2, 4, 8, 16, 32]) | st.integers(1, 40), min_size=1, max_size=4))
    return levels, steps, chunks


@settings(SETTINGS, max_examples=40)
@given(stream=prlstm_streams(), head=st.sampled_from(["tokens", "features", "core"]), inputs=st.integers(1, 6),
       hidden=st.integers(1, 16), layers=st.integers(1, 3), batch=st.integers(1, 3), mode=MODES, native=NATIVE,
       seed=st.integers(0, 2**16))
def test_prlstm_parity_for_random_shapes(tmp_path, stream, head, inputs, hidden, layers, batch, mode, native, seed):
    levels, steps, chunks = stream
    torch.manual_seed(seed)
    if head == "core":  # the bare recursive cell: features in, h out
        model = PRLSTM(inputs, hidden, num_layers=layers, stack_levels=levels).eval()
    else:
        cfg = PRLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=2, stack_levels=levels,
                           **({"vocab_size": 7} if head == "tokens" else {"input_size": inputs}))
        model = PRLSTMModel(cfg).eval()
    report = parity(model, tmp_path, mode, steps=steps, batch=batch, chunk_sizes=chunks, seed=seed, native=native)
    assert report.state_max_abs["count"] == 0  # the step counter is exact


@settings(SETTINGS, max_examples=20)
@given(model=xlstm_models(), batch=st.integers(1, 2), steps=st.integers(1, 40), chunks=CHUNKS, mode=MODES,
       native=NATIVE, seed=st.integers(0, 2**16))
def test_xlstm_parity_for_random_configs(tmp_path, model, batch, steps, chunks, mode, native, seed):
    parity(model, tmp_path, mode, steps=steps, batch=batch, chunk_sizes=chunks, seed=seed, native=native)
