"""Small builders for ONNX graphs and model-local functions with readable names (Netron-friendly)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .quantize import Quantizer

DOMAIN = "qlstm_edge"
DOMAIN_VERSION = 1
DEFAULT_OPSET = 17
DEFAULT_IR_VERSION = 8  # IR 8 / opset 17: loads in onnxruntime >= 1.15 (benchmarks/ort_compat.py)

DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int64": TensorProto.INT64,
          "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int32": TensorProto.INT32, "int4": TensorProto.INT4}


class NodeBuilder:
    """Collects nodes; ``op`` returns the output name(s). Shared by graphs and function bodies."""

    def __init__(self, prefix: str = ""):
        self.nodes: List[onnx.NodeProto] = []
        self._used: Dict[str, int] = {}
        self.prefix = prefix

    def fresh(self, base: str) -> str:
        base = self.prefix + base
        n = self._used.get(base, 0)
        self._used[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def op(self, op_type: str, inputs: Sequence[str], outputs: Union[int, Sequence[str]] = 1, *,
           name: Optional[str] = None, domain: str = "", **attrs) -> Union[str, List[str]]:
        node_name = self.fresh(name or op_type)
        if isinstance(outputs, int):
            outputs = [node_name if outputs == 1 else f"{node_name}.{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=node_name, domain=domain,
                                           **attrs))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def const(self, value: float, like: str) -> str:
        """A scalar constant cast to the element type of ``like`` (keeps function bodies type-polymorphic)."""
        c = self.op("Constant", [], name="const", value=numpy_helper.from_array(np.array(value, np.float32)))
        return self.op("CastLike", [c, like], name="const_like")

    def ints(self, values: Sequence[int]) -> str:
        return self.op("Constant", [], name="ints", value=numpy_helper.from_array(np.array(values, np.int64)))


class FunctionBuilder(NodeBuilder):
    """Builds a model-local FunctionProto (a custom op's portable body made of standard ops)."""

    def __init__(self, name: str, inputs: Sequence[str], outputs: Sequence[str], doc: str = ""):
        super().__init__()
        self.name, self.inputs, self.outputs, self.doc = name, list(inputs), list(outputs), doc

    def build(self, opset: int) -> onnx.FunctionProto:
        f = helper.make_function(DOMAIN, self.name, self.inputs, self.outputs, self.nodes,
                                 [helper.make_opsetid("", opset)])
        f.doc_string = self.doc
        return f


def subgraph(name: str, nodes: NodeBuilder, inputs: Sequence[str], outputs: Sequence[str]) -> onnx.GraphProto:
    """An untyped body graph (Scan/Loop) for use inside a function: types come from the call site."""
    untyped = onnx.TypeProto()
    return helper.make_graph(nodes.nodes, name, [helper.make_value_info(n, untyped) for n in inputs],
                             [helper.make_value_info(n, untyped) for n in outputs])


class GraphBuilder(NodeBuilder):
    """The main graph: inputs, outputs, initializers and the functions of the custom ops used.

    ``quant`` is the export's quantization policy (exporters.quantize.Quantizer; default fp32), which
    recipes use to add weights (``g.quant``).
    """

    def __init__(self, quant: Optional[Quantizer] = None):
        super().__init__()
        self.quant = quant if quant is not None else Quantizer()
        self.inputs: List[onnx.ValueInfoProto] = []
        self.outputs: List[onnx.ValueInfoProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.functions: Dict[str, onnx.FunctionProto] = {}

    def input(self, name: str, dtype: str, shape: Sequence[Union[int, str]]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, DTYPES[dtype], list(shape)))
        return name

    def output(self, name: str, dtype: str, shape: Sequence[Union[int, str]]) -> str:
        self.outputs.append(helper.make_tensor_value_info(name, DTYPES[dtype], list(shape)))
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        name = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def custom(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
               function: onnx.FunctionProto, **attrs) -> List[str]:
        """One node of a ``qlstm_edge`` custom op, with the op's function body registered once."""
        self.functions.setdefault(op_type, function)
        out = self.op(op_type, inputs, outputs, name=name, domain=DOMAIN, **attrs)
        return [out] if isinstance(out, str) else out

    def model(self, name: str, opset: int, ir_version: int, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        m = helper.make_model(graph, functions=list(self.functions.values()), ir_version=ir_version,
                              opset_imports=[helper.make_opsetid("", opset),
                                             helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
                              producer_name="qlstm-edge")
        m.doc_string = doc
        return m
