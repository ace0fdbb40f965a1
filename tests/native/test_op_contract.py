"""The custom-op table (qlstm_edge/ops.py) is the one statement of every op's contract: the native library, the
committed op documentation and every exported file agree with it."""
import ctypes
import json
import subprocess
import sys

import onnx
import pytest
import torch

from qlstm_edge.exporters import build_onnx
from qlstm_edge.ops import all_ops
from qlstm_edge.runtime.metadata import DOMAIN
from helpers import REPO

OPS = all_ops()
QUANT_MODES = [None, "fp16", "int8", "int8-dynamic", "int4"]
ELEM = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT8: "int8",
        onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT64: "int64"}
# element type of a matrix input as each quantization mode stores it (int4: packed two per byte in uint8)
MATRIX_TYPE = {None: "float32", "fp16": "float16", "int8": "int8", "int8-dynamic": "int8", "int4": "uint8"}


def native_contract():
    """The ``contract`` list of the native library's info; skips only where no library is built."""
    from qlstm_edge.runtime import native_lib

    path = native_lib.library_path()
    if path is None:
        pytest.skip("no native op library built (python runtime/native/build.py)")
    lib = ctypes.CDLL(str(path))
    lib.qle_native_info.restype = ctypes.c_char_p
    info = json.loads(lib.qle_native_info().decode())
    assert "contract" in info, (f"the native library {path} states no op contract: qle_native_info() has no "
                                f"'contract' key (keys: {sorted(info)}); rebuild it from sources that state it")
    return info["contract"]


def test_native_contract_equals_the_op_table():
    native = {op["name"]: op for op in native_contract()}
    assert sorted(native) == sorted(OPS), "the native library and qlstm_edge/ops.py declare different ops"
    for name, spec in OPS.items():
        assert native[name] == spec.contract(), f"{name}: the native contract differs from qlstm_edge/ops.py"


def test_docs_ops_md_is_the_generated_table_and_needs_no_torch():
    script = ("import runpy, sys; runpy.run_module('qlstm_edge.ops', run_name='__main__'); "
              "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'the op table imports torch/onnx'")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert (REPO / "docs" / "ops.md").read_text() == out, "docs/ops.md is stale: python -m qlstm_edge.ops > docs/ops.md"


def test_every_op_is_declared_once_with_scales_after_the_regular_inputs():
    assert set(OPS) == {"QLLSTMCell", "QLLSTMSequence", "PRLSTMStep", "PRLSTMSequence", "sLSTMCell", "sLSTMSequence",
                        "mLSTMCell", "mLSTMSequence", "xLSTMLargeBlock", "xLSTMLargeBlockSequence", "mLSTMBlock",
                        "mLSTMBlockSequence", "sLSTMBlock", "sLSTMBlockSequence"}
    for spec in OPS.values():
        c = spec.contract()
        assert c["inputs"][:c["regular"]] == spec.regular_inputs
        assert c["inputs"][c["regular"]:] == [f"{spec.regular_inputs[i]}_scale" for i in c["matrices"]]


def _models():
    from qlstm_edge import PRLSTMConfig, PRLSTMModel, QLLSTMConfig, QLLSTMModel

    torch.manual_seed(0)
    models = {"qllstm": QLLSTMModel(QLLSTMConfig(hidden_size=8, num_layers=2, output_size=3, vocab_size=20)),
              "prlstm": PRLSTMModel(PRLSTMConfig(hidden_size=8, num_layers=2, output_size=3, stack_levels=6,
                                                 input_size=5))}
    try:
        from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig,
                           sLSTMLayerConfig, xLSTMBlockStack, xLSTMBlockStackConfig)
    except ImportError:
        return models
    models["xlstm-stack"] = xLSTMBlockStack(xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=2, qkv_proj_blocksize=4, num_heads=2)),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=2, conv1d_kernel_size=2),
                                     feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=16, num_blocks=2, embedding_dim=16, slstm_at=[1]))
    from qlstm_edge.families.xlstm.examples import large

    models["xlstm-large"] = large(embedding_dim=16, num_heads=2, num_blocks=1, vocab_size=20)
    return models


MODELS = _models()


def _value_types(model: onnx.ModelProto):
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


@pytest.mark.parametrize("quant", QUANT_MODES, ids=lambda q: q or "fp32")
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_custom_node_matches_its_spec(family, mode, quant):
    model = build_onnx(MODELS[family].eval(), mode=mode, quantize=quant)
    integer = quant in ("int8", "int8-dynamic", "int4")
    types = _value_types(model)
    functions = {f.name: f for f in model.functions}
    nodes = [n for n in model.graph.node if n.domain == DOMAIN]
    assert nodes
    for node in nodes:
        spec = OPS[node.op_type]
        has_matrices = bool(spec.matrices)
        names = spec.input_names(scales=integer and has_matrices)
        fn = functions[node.op_type]
        assert list(fn.input) == [f"{spec.name}.{n}" for n in names]
        assert list(fn.output) == [f"{spec.name}.{n}" for n in spec.output_names]
        assert len(node.input) == len(names) and len(node.output) == len(spec.outputs)
        want = []
        for i, port in enumerate(spec.inputs):
            if port.name in spec.matrices:
                want.append(MATRIX_TYPE[quant])
            elif i == 0 and spec.x_in_product and quant == "fp16":
                want.append("float16")
            else:
                want.append(port.dtype)
        want += ["float32"] * (len(names) - len(spec.inputs))
        got = [ELEM.get(types.get(n), types.get(n)) for n in node.input]
        assert got == want, f"{node.name} ({quant or 'fp32'}): input types {got}, the op table says {want}"
        got_out = [ELEM.get(types.get(n), types.get(n)) for n in node.output]
        assert got_out == [p.dtype for p in spec.outputs], f"{node.name}: output types {got_out}"
        attrs = {a.name for a in node.attribute}
        quantized = {"quant_mode", "block_size"} if quant and has_matrices else set()
        assert attrs == quantized | set(spec.attributes) | {name for name, _ in spec.choices}, node.name
        for a in node.attribute:  # the exporter writes every string attribute, with one of its values
            values = dict(spec.choices).get(a.name)
            assert values is None or a.s.decode() in values, (node.name, a.name, a.s)
