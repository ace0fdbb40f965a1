"""Fixtures shared by every test; the models and helpers they build on are in tests/helpers.py."""
import os

import pytest
import torch

from helpers import FAMILIES, make_qllstm
from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import native_lib


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' models are small: one torch thread is fastest (on a busy 2-core machine torch's thread pool
    makes the step-by-step references ~30x slower), and it keeps the shared CI cores free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(model, {mode: path}) for a 2-layer token model, exported once per test session."""
    d = tmp_path_factory.mktemp("exported")
    m = make_qllstm()
    return m, {mode: export_onnx(m, d / f"{mode}.onnx", mode=mode) for mode in ("step", "sequence")}


@pytest.fixture(scope="session")
def lib_status():
    """The native op library's status; skips (or fails under QLSTM_EDGE_REQUIRE_NATIVE=1) without it."""
    st = native_lib.status()
    if st["isa_supported"] is None:
        msg = f"native op library unavailable: {st['reason']}"
        if os.environ.get("QLSTM_EDGE_REQUIRE_NATIVE") == "1":
            pytest.fail(msg + " (QLSTM_EDGE_REQUIRE_NATIVE=1)")
        pytest.skip(msg)
    return st


@pytest.fixture(params=native_lib.ISA_CHOICES)
def isa(request, lib_status, monkeypatch):
    """Each instruction set the library knows, forced through QLSTM_EDGE_NATIVE_ISA; skips those this CPU lacks."""
    if not lib_status["isa_supported"].get(request.param):
        pytest.skip(f"this CPU does not support {request.param}")
    monkeypatch.setenv(native_lib.ISA_ENV, request.param)
    return request.param


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
