import os

import pytest
import torch

from qlstm_edge import QLLSTMConfig, QLLSTMModel
from qlstm_edge.exporters import export_onnx


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' models are small: one torch thread is fastest (on a busy 2-core machine torch's thread pool
    makes the step-by-step references ~30x slower), and it keeps the shared CI cores free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def _prlstm(tokens):
    from test_prlstm import make_model as make_prlstm
    return make_prlstm(tokens=tokens, levels=8)  # a stream holds 255 steps: long enough, and a reachable limit


def _xlstm(kind):
    from test_xlstm import make_large, make_lm, make_stack  # skips the test when the xlstm package is missing
    if kind == "stack":
        return make_stack(E=16, heads=2, slstm_at=(1,), blocks=2, conv=2)
    if kind == "lm":
        return make_lm(E=16, heads=2, slstm_at=(0,), blocks=2, vocab=40)
    return make_large(embedding_dim=16, num_heads=2, num_blocks=1, vocab_size=40)


# name: (input kind, small model factory); every family, with feature and token input where it has both
FAMILIES = {
    "qllstm-tokens": ("tokens", lambda: make_model()),
    "qllstm-features": ("features", lambda: make_model(tokens=False)),
    "prlstm-tokens": ("tokens", lambda: _prlstm(True)),
    "prlstm-features": ("features", lambda: _prlstm(False)),
    "xlstm-stack": ("features", lambda: _xlstm("stack")),
    "xlstm-lm": ("tokens", lambda: _xlstm("lm")),
    "xlstm-large": ("tokens", lambda: _xlstm("large")),
}
TOKEN_FAMILIES = [n for n, (kind, _) in FAMILIES.items() if kind == "tokens"]
FEATURE_FAMILIES = [n for n, (kind, _) in FAMILIES.items() if kind == "features"]


@pytest.fixture(scope="session")
def family_exports(tmp_path_factory):
    """``get(name) -> (model, {mode: path})`` for a FAMILIES entry; each is built and exported once per session,
    on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            model = FAMILIES[name][1]()
            d = tmp_path_factory.mktemp(name)
            cache[name] = model, {mode: export_onnx(model, d / f"{mode}.onnx", mode=mode)
                                  for mode in ("step", "sequence")}
        return cache[name]

    return get
