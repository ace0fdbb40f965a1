"""Small builders for ONNX graphs and model-local functions with readable names (Netron-friendly).

Every value name is unique across the main graph and all functions (DESIGN.md, the ONNX contract): tools that
inline or simplify (onnx's inliner, onnxsim, onnxruntime's ORT-format converter) may merge the scopes, and a name
that meant one value in a function and another in the graph then means the wrong one. A function's values (its
formal inputs and outputs, its nodes' outputs, and everything in its Scan/Loop bodies) are named
``<function>.<name>``; a body's own values are named ``<body prefix><name>`` (``subgraph``) within that.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ops import OpSpec
from ..runtime.metadata import DOMAIN, DOMAIN_VERSION
from .quantize import Quantizer

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

    def split_equal(self, x: str, parts: int, axis: int, opset: int, name: str) -> List[str]:
        """``x`` split into ``parts`` equal parts along ``axis`` (opset 18 made ``num_outputs`` mandatory for that)."""
        kw = {"num_outputs": parts} if opset >= 18 else {}
        return self.op("Split", [x], parts, name=name, axis=axis, **kw)

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int, opset: int, name: str) -> str:
        """A Reduce* op over one axis (opset 18 moved ``axes`` from an attribute to an input)."""
        if opset >= 18:
            return self.op(op_type, [x, self.ints([axis])], name=name, keepdims=keepdims)
        return self.op(op_type, [x], name=name, axes=[axis], keepdims=keepdims)


def _rename_scope(nodes: Sequence[onnx.NodeProto], formals: Sequence[str], rename, outer: Dict[str, str]
                  ) -> Dict[str, str]:
    """Rename the values defined in one scope (``formals`` and the nodes' outputs) with ``rename(name)``, and
    every reference to them, in nested bodies too; ``outer`` maps the enclosing scopes' names (a body reads
    them). Node names follow their scope's renaming. Returns this scope's map."""
    names = dict(outer)
    names.update((n, rename(n)) for n in formals)
    names.update((o, rename(o)) for node in nodes for o in node.output if o)
    for node in nodes:
        node.name = rename(node.name) if node.name else node.name
        for field in (node.input, node.output):
            renamed = [names.get(n, n) for n in field]
            del field[:]
            field.extend(renamed)
        for a in node.attribute:
            for body in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                inner = _rename_scope(body.node, [v.name for v in body.input], rename, names)
                for v in (*body.input, *body.output):
                    v.name = inner.get(v.name, v.name)
    return names


class FunctionBuilder(NodeBuilder):
    """Builds a model-local FunctionProto (a custom op's portable body made of standard ops).

    The body is written with short local names (formal inputs such as ``x``, ``W_h``); ``build`` names every
    value of the function ``<name>.<local name>``, so no value name is shared with the graph or another function.
    """

    def __init__(self, name: str, inputs: Sequence[str], outputs: Sequence[str], doc: str = ""):
        super().__init__()
        self.name, self.inputs, self.outputs, self.doc = name, list(inputs), list(outputs), doc

    def build(self, opset: int) -> onnx.FunctionProto:
        nodes = [onnx.NodeProto() for _ in self.nodes]
        for copy, node in zip(nodes, self.nodes):
            copy.CopyFrom(node)
        prefix = f"{self.name}."
        names = _rename_scope(nodes, self.inputs, lambda n: prefix + n, {})
        f = helper.make_function(DOMAIN, self.name, [names[n] for n in self.inputs],
                                 [names[n] for n in self.outputs], nodes, [helper.make_opsetid("", opset)])
        f.doc_string = self.doc
        return f


def op_function(spec: OpSpec, q: Quantizer) -> FunctionBuilder:
    """The builder of ``spec``'s function body for an export quantized as ``q``: the signature from the op table
    (the scale inputs appended in the integer modes), the op's summary as doc string, plus the mode when quantized."""
    doc = spec.summary if q.unquantized else f"{spec.summary} Weights {q.mode} (exporters/quantize.py, op contract)."
    return FunctionBuilder(spec.name, spec.input_names(scales=q.integer), spec.output_names, doc=doc)


def subgraph(name: str, nodes: NodeBuilder, inputs: Sequence[str], outputs: Sequence[str]) -> onnx.GraphProto:
    """An untyped body graph (Scan/Loop) for use inside a function: types come from the call site.

    The body's own values (its inputs, its nodes' outputs) are named with the builder's prefix (``name.`` when it
    has none), so sibling bodies of one function never share a name; names it reads from the enclosing scope stay.
    """
    untyped = onnx.TypeProto()
    graph = helper.make_graph(nodes.nodes, name, [helper.make_value_info(n, untyped) for n in inputs],
                              [helper.make_value_info(n, untyped) for n in outputs])
    prefix = nodes.prefix or f"{name}."
    local = _rename_scope(graph.node, list(inputs), lambda n: n if n.startswith(prefix) else prefix + n, {})
    for v in (*graph.input, *graph.output):
        v.name = local.get(v.name, v.name)
    return graph


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
