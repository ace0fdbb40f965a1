"""Static check: integer products of an ONNX file whose result depends on the CPU kernel onnxruntime picks.

onnxruntime's CPU kernels for a uint8 x int8 product (MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv)
on x86 without VNNI add each pair of products into int16 with saturation (``vpmaddubsw``): exact only while
2 * 255 * max|b| <= 32767, i.e. |b| <= 64 (7-bit weights). VNNI, SSE-only x86, ARM64, WASM and onnx.reference
sum exactly, so such a file is right on one machine and wrong on the next. uint8 x uint8 and int8 x int8 are
exact on every kernel (docs/int8-dynamic.md in the repository). This check finds every uint8 x int8 (or int8 x uint8) product,
in the graph, in every function body and in every subgraph, whose int8 operand is not a constant proven to stay
within 64: the form a file must not have.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import onnx
import onnx.inliner
from onnx import TensorProto, numpy_helper

# op type -> (input index of the activation-like operand, input index of the weight-like operand)
INTEGER_PRODUCTS = {"MatMulInteger": (0, 1), "ConvInteger": (0, 1), "QLinearMatMul": (0, 3), "QLinearConv": (0, 3)}
PAIR_SUM_LIMIT = 32767  # int16: the saturating pair sum of vpmaddubsw
UINT8_MAX = 255
SAFE_INT8 = PAIR_SUM_LIMIT // (2 * UINT8_MAX)  # 64: |b| up to this never saturates


def saturating_products(model: onnx.ModelProto) -> List[str]:
    """One line per integer product of ``model`` that can saturate on some onnxruntime CPU kernel (empty: none).

    Functions are inlined first, so a product inside a custom op's body is judged with the types and constants
    of the tensors the graph actually binds to it.
    """
    flat = onnx.shape_inference.infer_shapes(onnx.inliner.inline_local_functions(model))
    return [line for graph, scope in _graphs(flat.graph, {}) for line in _check(graph, scope)]


Scope = Dict[str, Tuple[int, Optional[np.ndarray]]]  # value name -> (element type, constant value or None)


def _graphs(graph: onnx.GraphProto, outer: Scope) -> Iterator[Tuple[onnx.GraphProto, Scope]]:
    """``graph`` and every subgraph under it, each with the types and constants visible in it."""
    scope = dict(outer)
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.type.HasField("tensor_type"):
            scope[vi.name] = (vi.type.tensor_type.elem_type, None)
    for t in graph.initializer:
        scope[t.name] = (t.data_type, numpy_helper.to_array(t))
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    scope[node.output[0]] = (a.t.data_type, numpy_helper.to_array(a.t))
    yield graph, scope
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                        list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
                yield from _graphs(sub, scope)


def _check(graph: onnx.GraphProto, scope: Scope) -> Iterator[str]:
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in INTEGER_PRODUCTS:
            continue
        ia, ib = INTEGER_PRODUCTS[node.op_type]
        (ta, _), (tb, b) = (scope.get(node.input[i], (TensorProto.UNDEFINED, None)) for i in (ia, ib))
        types = {ta, tb}
        where = f"{node.op_type} {node.name or node.output[0]!r}"
        if TensorProto.UNDEFINED in types:
            yield f"{where}: operand types unknown (inputs {list(node.input)}); cannot prove the products exact"
        elif types == {TensorProto.UINT8, TensorProto.INT8}:
            signed = b if tb == TensorProto.INT8 else None
            peak = None if signed is None else int(np.abs(signed.astype(np.int32)).max(initial=0))
            if peak is None or peak > SAFE_INT8:
                bound = "unbounded (not a constant)" if peak is None else f"max |int8| = {peak}"
                yield (f"{where}: uint8 x int8 with {bound} > {SAFE_INT8}; pairs of products saturate at "
                       f"{PAIR_SUM_LIMIT} on x86 without VNNI (use uint8 x uint8 or int8 x int8)")
