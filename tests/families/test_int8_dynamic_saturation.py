"""int8-dynamic files are exact on every onnxruntime CPU kernel: the static saturation check, on every export.

onnxruntime's uint8 x int8 kernels saturate pairs of products to int16 on x86 without VNNI, so a file with such
a product is right on a VNNI machine (like CI's) and wrong on an AVX2 one. The check below needs no such CPU:
it reads the file. The ISA lane (.ci/isa_lane.py) runs the same files under emulated AVX2 and SSE4.2 CPUs.
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import FAMILIES
from qlstm_edge.cli import main
from qlstm_edge.exporters import export_onnx
from qlstm_edge.exporters.saturation import saturating_products


def product_model(a_type, w, b_zero_point=None, in_function=False):
    """y = MatMulInteger(a, w) (a's zero point 128 when uint8), in the graph or in a local function's body."""
    a_zero = numpy_helper.from_array(np.array(128 if a_type == TensorProto.UINT8 else 0,
                                              np.uint8 if a_type == TensorProto.UINT8 else np.int8))
    nodes = [helper.make_node("Constant", [], ["za"], value=a_zero)]
    zps = ["za"]
    if b_zero_point is not None:
        nodes.append(helper.make_node("Constant", [], ["zb"], value=numpy_helper.from_array(b_zero_point)))
        zps.append("zb")
    nodes.append(helper.make_node("MatMulInteger", ["a", "w", *zps], ["y"], name="mm"))
    inputs = [helper.make_tensor_value_info("a", a_type, [1, w.shape[0]])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT32, [1, w.shape[1]])]
    inits = [numpy_helper.from_array(w, "w")]
    opsets = [helper.make_opsetid("", 17)]
    if not in_function:
        return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=opsets)
    fn = helper.make_function("test", "Product", ["a", "w"], ["y"], nodes, opsets)
    call = helper.make_node("Product", ["a", "w"], ["y"], domain="test")
    return helper.make_model(helper.make_graph([call], "g", inputs, outputs, inits), functions=[fn],
                             opset_imports=opsets + [helper.make_opsetid("test", 1)])


FULL_INT8 = np.full((4, 2), 127, np.int8)


@pytest.mark.parametrize("in_function", [False, True])
def test_uint8_times_int8_is_flagged_in_graphs_and_function_bodies(in_function):
    found = saturating_products(product_model(TensorProto.UINT8, FULL_INT8, in_function=in_function))
    assert len(found) == 1 and "uint8 x int8 with max |int8| = 127 > 64" in found[0], found


def test_exact_forms_pass_and_the_check_agrees_with_the_arithmetic():
    """uint8 x uint8, int8 x int8 and 7-bit int8 weights are exact on every kernel; the flagged form is the one whose
    worst case (every pair 255 x 127) onnx.reference and onnxruntime may disagree on."""
    seven_bit = np.full((4, 2), 64, np.int8)
    assert saturating_products(product_model(TensorProto.UINT8, seven_bit)) == []
    assert saturating_products(product_model(TensorProto.INT8, FULL_INT8)) == []
    u8 = (FULL_INT8.astype(np.int32) + 128).astype(np.uint8)
    exact = product_model(TensorProto.UINT8, u8, b_zero_point=np.array(128, np.uint8))
    assert saturating_products(exact) == []
    a = np.full((1, 4), 255, np.uint8)  # x_q = 127 at zero point 128
    want = np.full((1, 2), 4 * 127 * 127, np.int32)
    for model in (exact, product_model(TensorProto.UINT8, FULL_INT8)):
        np.testing.assert_array_equal(ReferenceEvaluator(model).run(None, {"a": a})[0], want)
    got = ort.InferenceSession(exact.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_int8_dynamic_export_has_a_product_that_can_saturate(family, mode, tmp_path):
    path = export_onnx(FAMILIES[family][1](), tmp_path / "m.onnx", mode=mode, quantize="int8-dynamic")
    model = onnx.load(str(path))
    assert saturating_products(model) == []
    products = [n for f in [model.graph, *model.functions] for n in f.node if n.op_type == "MatMulInteger"]
    assert products, "an int8-dynamic export without integer products checks nothing"


def test_info_warns_about_a_file_with_a_saturating_product(tmp_path):
    path = export_onnx(FAMILIES["qllstm-tokens"][1](), tmp_path / "m.onnx", mode="step", quantize="int8-dynamic")
    model = onnx.load(str(path))
    (fn,) = [f for f in model.functions if f.name == "QLLSTMCell"]
    (mm,) = [n for n in fn.node if n.op_type == "MatMulInteger" and "hW" in n.name]
    made_by = {out: n for n in fn.node for out in n.output}
    to_u8 = made_by[mm.input[1]]  # Cast(Add(Cast(W_h, int32), 128), uint8)
    del mm.input[3]  # the old form: W_h read as int8, not as uint8 W_h + 128
    mm.input[1] = made_by[made_by[to_u8.input[0]].input[0]].input[0]
    onnx.save(model, str(tmp_path / "old.onnx"))
    runner = CliRunner()
    res = runner.invoke(main, ["info", str(tmp_path / "old.onnx")])
    assert res.exit_code == 0, res.output
    assert "warning: integer product that depends on the CPU" in res.output and "uint8 x int8" in res.output
    doc = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)
    assert doc["warnings"] == []
