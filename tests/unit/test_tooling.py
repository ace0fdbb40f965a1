"""Tools users apply to exported files keep their meaning (DESIGN.md, the ONNX contract).

For every family (tests/helpers.py FAMILIES) x {step, sequence} x {fp32, fp16, int8, int8-dynamic, int4}, on tiny
models and short streams:
- names: no value name is defined twice in the file: not in the graph and a function, two functions, or two
  bodies of one function (a tool that merges scopes then takes one value for another: notes/cross-arch.md records
  onnxsim taking a function's ``ints_1`` = [0] for the graph's [-1] in int4 files);
- ``onnx.inliner.inline_local_functions`` leaves every output and state unchanged, bit for bit; onnxsim and
  onnxoptimizer's default passes too, up to the float32 rounding of the ops they fuse (REORDERED);
- the ORT format: every file converts (onnxruntime's ``convert_onnx_models_to_ort``), loads and streams equal
  to its .onnx.
Every file runs through onnxruntime's CPU provider with the native library off, through StreamingSession, so
the metadata has to survive the tool too. onnxsim and onnxoptimizer are optional packages (the ``dev`` extra):
without them their tests skip, or fail under QLSTM_EDGE_REQUIRE_TOOLS=1 (CI).

Also: StreamingSession reads the custom nodes from the graph it loads, not from the metadata: a file whose
functions a tool inlined runs the function bodies ("function-body"), and native="on" refuses it.
"""
import collections
import contextlib
import io
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.inliner import inline_local_functions

from helpers import FAMILIES
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import random_inputs
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.runtime.session import NativeLibraryError

QUANTS = ["fp32", "fp16", "int8", "int8-dynamic", "int4"]
MODES = ["step", "sequence"]
CASES = [pytest.param(family, mode, quant, id=f"{family}-{mode}-{quant}")
         for family in FAMILIES for mode in MODES for quant in QUANTS]
STEPS, BATCH, SPLIT = 6, 2, 4  # two calls (4 steps, then 2) so that the state is carried once
# onnxsim and onnxoptimizer may fuse standard ops (onnxsim turns the xLSTM stack's MatMul + Add into a Gemm), which
# sums in another order: a few float32 ulps (measured: at most 4.8e-7 absolute on these streams). A changed
# meaning (a constant taken from the wrong scope) is off by orders of magnitude more. The onnx inliner and the
# ORT-format converter change no arithmetic: their files must match bit for bit.
REORDERED = dict(rtol=1e-5, atol=1e-6)


def tool(name: str):
    """The optional package ``name`` (dev extra); skips without it, fails under QLSTM_EDGE_REQUIRE_TOOLS=1."""
    try:
        return __import__(name)
    except ImportError as e:
        msg = f"{name} is not installed ({e}); pip install -e '.[dev]'"
        if os.environ.get("QLSTM_EDGE_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " (QLSTM_EDGE_REQUIRE_TOOLS=1)")
        pytest.skip(msg)


def stream(path: Path, x: np.ndarray):
    """(y, final state) of ``x`` [B, T, ...] streamed through the file in two calls, function bodies only."""
    s = StreamingSession(path, native="off")
    y = np.concatenate([s.run(x[:, :SPLIT]), s.run(x[:, SPLIT:])], axis=1)
    return y, s.get_state()


class Export:
    """One exported file, its stream input and its own outputs (the reference every tool's file must match)."""

    def __init__(self, path: Path):
        self.path = path
        self.proto = onnx.load(str(path))
        self.x = random_inputs(StreamingSession(path, native="off"), STEPS, BATCH, seed=0)
        self.y, self.state = stream(path, self.x)

    def derived(self, name: str, proto: onnx.ModelProto) -> Path:
        """``proto`` (a tool's output) saved next to the export as ``<stem>.<name>.onnx``."""
        out = self.path.with_name(f"{self.path.stem}.{name}.onnx")
        onnx.save_model(proto, str(out))
        return out

    def assert_streams_equal(self, path: Path, what: str, rounding: bool = False) -> None:
        """The file at ``path`` streams ``x`` to the same outputs and states: bit for bit, or with ``rounding``
        within float32 rounding of reordered arithmetic (REORDERED)."""
        y, state = stream(path, self.x)
        same = (lambda a, b, msg: np.testing.assert_allclose(a, b, err_msg=msg, **REORDERED)) if rounding \
            else (lambda a, b, msg: np.testing.assert_array_equal(a, b, err_msg=msg))
        same(y, self.y, f"{what}: output")
        assert sorted(state) == sorted(self.state)
        for k, v in self.state.items():
            same(state[k], v, f"{what}: state {k!r}")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``get(family, mode, quant) -> Export``; each model is built, and each file exported, once per module."""
    models, files = {}, {}

    def get(family, mode, quant):
        key = (family, mode, quant)
        if key not in files:
            if family not in models:
                models[family] = FAMILIES[family][1]()
            d = tmp_path_factory.mktemp(f"{family}-{mode}-{quant}")
            files[key] = Export(export_onnx(models[family], d / "model.onnx", mode=mode,
                                            quantize=None if quant == "fp32" else quant))
        return files[key]

    return get


def custom_nodes(proto: onnx.ModelProto):
    """The (name, op type) of the graph's qlstm_edge nodes."""
    return [(n.name, n.op_type) for n in proto.graph.node if n.domain == "qlstm_edge"]


def value_definitions(proto: onnx.ModelProto):
    """{value name: [scope, ...]} for every definition: the graph's inputs and initializers, each function's
    formal inputs, every node output and every Scan/Loop body input, in the graph and every function."""
    defs = collections.defaultdict(list)

    def scope(where, nodes, formals):
        for name in formals:
            defs[name].append(where)
        for node in nodes:
            for name in node.output:
                if name:
                    defs[name].append(where)
            for a in node.attribute:
                for body in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    scope(f"{where}/{node.name or node.op_type}:{body.name}", body.node, [v.name for v in body.input])

    scope("graph", proto.graph.node, [v.name for v in proto.graph.input] + [t.name for t in proto.graph.initializer])
    for f in proto.functions:
        scope(f"function {f.name}", f.node, f.input)
    return defs


# -- names ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, mode, quant", CASES)
def test_every_value_name_is_defined_once(exports, family, mode, quant):
    proto = exports(family, mode, quant).proto
    assert proto.functions, "the export ships its custom ops as functions"
    shared = {name: where for name, where in value_definitions(proto).items() if len(where) > 1}
    assert not shared, f"value names defined more than once: {dict(list(shared.items())[:10])}"


# -- onnx inliner --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, mode, quant", CASES)
def test_onnx_inliner_keeps_outputs(exports, family, mode, quant):
    e = exports(family, mode, quant)
    inlined = inline_local_functions(e.proto)
    assert custom_nodes(e.proto) and not custom_nodes(inlined) and not inlined.functions
    e.assert_streams_equal(e.derived("inlined", inlined), "onnx inliner")


# -- onnxsim -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, mode, quant", CASES)
def test_onnxsim_keeps_outputs(exports, family, mode, quant):
    onnxsim = tool("onnxsim")
    e = exports(family, mode, quant)
    simplified, _ = onnxsim.simplify(e.proto)
    assert custom_nodes(simplified) == custom_nodes(e.proto)  # the ops stay: the native library can still run them
    e.assert_streams_equal(e.derived("onnxsim", simplified), "onnxsim", rounding=True)


# -- onnxoptimizer -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, mode, quant", CASES)
def test_onnxoptimizer_keeps_outputs(exports, family, mode, quant):
    onnxoptimizer = tool("onnxoptimizer")
    e = exports(family, mode, quant)
    optimized = onnxoptimizer.optimize(e.proto)
    assert custom_nodes(optimized) == custom_nodes(e.proto)
    e.assert_streams_equal(e.derived("onnxoptimizer", optimized), "onnxoptimizer", rounding=True)


# -- ORT format ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, mode, quant", CASES)
def test_ort_format_converts_loads_and_streams_equal(exports, family, mode, quant):
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    e = exports(family, mode, quant)
    out = e.path.parent / "ort"
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints a line per step
        convert_onnx_models_to_ort(e.path, output_dir=out, optimization_styles=[OptimizationStyle.Fixed])
    converted = out / f"{e.path.stem}.ort"
    assert converted.is_file()
    assert StreamingSession(converted, native="off").describe()["custom_ops"] == []  # the converter inlined them
    e.assert_streams_equal(converted, "ORT format")


# -- op_path comes from the loaded graph ---------------------------------------------------------------------

def test_inlined_file_runs_function_bodies_and_native_on_refuses_it(exports):
    e = exports("qllstm-tokens", "step", "fp32")
    inlined = e.derived("inlined", inline_local_functions(e.proto))
    s = StreamingSession(inlined, native="auto")
    info = s.describe()
    assert s.op_path == info["op_path"] == "function-body" and info["custom_ops"] == []
    assert info["native_library"] is None and "no qlstm_edge custom nodes" in info["native_note"]
    assert StreamingSession(e.path, native="off").describe()["custom_ops"] == ["QLLSTMCell"]
    with pytest.raises(NativeLibraryError, match=r"native='on' but .*inlined\.onnx has no qlstm_edge custom nodes "
                                                 r"\(op_path 'function-body'\): a tool inlined"):
        StreamingSession(inlined, native="on")
