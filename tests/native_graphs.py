"""One-node ONNX graphs for the qlstm_edge custom ops, with a model-local function body written
from standard ops, plus a float64 numpy reference. Shared by tests/test_native_kernels.py and
benchmarks/bench_native.py."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

DOMAIN = "qlstm_edge"
INPUTS = ["x", "h", "c", "W_x", "W_h", "bias", "gate_scale", "gate_bias", "alpha"]
CELL_OUTPUTS = ["h_new", "c_new"]
SEQ_OUTPUTS = ["Y", "h_T", "c_T"]
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
IR_VERSION = 8


def _gates(nodes: list, u: str, h_prev: str, c_prev: str, h_out: str, c_out: str, p: str) -> None:
    """Append the gate maths for pre-activation `u`; gate rows come from `{p}gs_*`/`{p}gb_*`."""
    for k in "ifgo":
        nodes.append(helper.make_node("Mul", [f"{p}gs_{k}", u], [f"{p}m_{k}"]))
        nodes.append(helper.make_node("Add", [f"{p}m_{k}", f"{p}gb_{k}"], [f"{p}a_{k}"]))
        nodes.append(helper.make_node("Tanh" if k == "g" else "Sigmoid", [f"{p}a_{k}"], [f"{p}{k}"]))
    nodes += [
        helper.make_node("Mul", [f"{p}f", c_prev], [f"{p}fc"]),
        helper.make_node("Mul", [f"{p}i", f"{p}g"], [f"{p}ig"]),
        helper.make_node("Add", [f"{p}fc", f"{p}ig"], [c_out]),
        helper.make_node("Tanh", [c_out], [f"{p}tc"]),
        helper.make_node("Mul", [f"{p}o", f"{p}tc"], [f"{p}ht"]),
        helper.make_node("Sub", [f"{p}one", f"{p}f"], [f"{p}omf"]),
        helper.make_node("Mul", [f"{p}f", h_prev], [f"{p}fh"]),
        helper.make_node("Mul", [f"{p}omf", f"{p}ht"], [f"{p}omfht"]),
        helper.make_node("Add", [f"{p}fh", f"{p}omfht"], [f"{p}s1"]),
        helper.make_node("Mul", ["alpha", h_prev], [f"{p}ah"]),
        helper.make_node("Add", [f"{p}s1", f"{p}ah"], [h_out]),
    ]


def _split_gate_rows(nodes: list) -> None:
    nodes.append(helper.make_node("Split", ["gate_scale"], [f"gs_{k}" for k in "ifgo"], axis=0))
    nodes.append(helper.make_node("Split", ["gate_bias"], [f"gb_{k}" for k in "ifgo"], axis=0))
    nodes.append(helper.make_node("Constant", [], ["one"], value_float=1.0))


def cell_function():
    nodes: list = [
        helper.make_node("MatMul", ["x", "W_x"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["xb"]),
        helper.make_node("MatMul", ["h", "W_h"], ["hw"]),
        helper.make_node("Add", ["xb", "hw"], ["u"]),
    ]
    _split_gate_rows(nodes)
    _gates(nodes, "u", "h", "c", "h_new", "c_new", "")
    return helper.make_function(DOMAIN, "QLLSTMCell", INPUTS, CELL_OUTPUTS, nodes,
                                [helper.make_opsetid("", 17)])


def sequence_function():
    """x@W_x + bias for the whole chunk, then a Scan over time adding h@W_h."""
    body_nodes: list = [
        helper.make_node("MatMul", ["s_h", "W_h"], ["s_hw"]),
        helper.make_node("Add", ["s_xb", "s_hw"], ["s_u"]),
    ]
    _gates(body_nodes, "s_u", "s_h", "s_c", "s_h_new", "s_c_new", "")
    body_nodes.append(helper.make_node("Identity", ["s_h_new"], ["s_y"]))
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    body = helper.make_graph(body_nodes, "qllstm_step", [vi("s_h"), vi("s_c"), vi("s_xb")],
                             [vi("s_h_new"), vi("s_c_new"), vi("s_y")])
    nodes: list = [
        helper.make_node("MatMul", ["x", "W_x"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["xb"]),
    ]
    _split_gate_rows(nodes)
    nodes.append(helper.make_node("Scan", ["h", "c", "xb"], ["h_T", "c_T", "Y"], body=body,
                                  num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1]))
    return helper.make_function(DOMAIN, "QLLSTMSequence", INPUTS, SEQ_OUTPUTS, nodes,
                                [helper.make_opsetid("", 17)])


def op_model(sequence: bool, with_function: bool = True, static_shape: tuple | None = None,
             shapeless: bool = False):
    """One custom node; inputs have symbolic dims unless static_shape=(B, T, D, H) is given, or
    no shape at all with shapeless=True (so onnxruntime leaves every shape check to the kernel)."""
    if shapeless:
        shapes = [None] * len(INPUTS)
    elif static_shape is None:
        x_shape = ["B", "T", "D"] if sequence else ["B", "D"]
        shapes = [x_shape, ["B", "H"], ["B", "H"], ["D", "H"], ["H", "H"], ["H"], [4, "H"], [4, "H"], []]
    else:
        B, T, D, H = static_shape
        shapes = [[B, T, D] if sequence else [B, D], [B, H], [B, H], [D, H], [H, H], [H], [4, H], [4, H], []]
    outputs = SEQ_OUTPUTS if sequence else CELL_OUTPUTS
    name = "QLLSTMSequence" if sequence else "QLLSTMCell"
    graph = helper.make_graph(
        [helper.make_node(name, INPUTS, outputs, domain=DOMAIN)], f"one_{name}",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(INPUTS, shapes)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs])
    functions = [sequence_function() if sequence else cell_function()] if with_function else []
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION, functions=functions)


def random_inputs(B: int, T: int | None, D: int, H: int, seed: int = 0, alpha: float = 0.05) -> dict:
    """Feeds for the op: T=None gives the cell op's x [B, D], else x [B, T, D]."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    x_shape = (B, D) if T is None else (B, T, D)
    scale = 1.0 / np.sqrt(D + H)
    return {
        "x": f32(rng.standard_normal(x_shape)),
        "h": f32(rng.standard_normal((B, H)) * 0.5),
        "c": f32(rng.standard_normal((B, H)) * 0.5),
        "W_x": f32(rng.standard_normal((D, H)) * scale),
        "W_h": f32(rng.standard_normal((H, H)) * scale),
        "bias": f32(rng.standard_normal(H) * 0.1),
        "gate_scale": f32(1.0 + 0.3 * rng.standard_normal((4, H))),
        "gate_bias": f32(0.2 * rng.standard_normal((4, H))),
        "alpha": np.array(alpha, dtype=np.float32),
    }


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_step(x, h, c, W_x, W_h, bias, gs, gb, alpha):
    """float64 reference for one step (any float inputs)."""
    x, h, c, W_x, W_h, bias, gs, gb = (np.asarray(a, dtype=np.float64) for a in (x, h, c, W_x, W_h, bias, gs, gb))
    alpha = float(alpha)
    u = x @ W_x + h @ W_h + bias
    i = _sigmoid(gs[0] * u + gb[0])
    f = _sigmoid(gs[1] * u + gb[1])
    g = np.tanh(gs[2] * u + gb[2])
    o = _sigmoid(gs[3] * u + gb[3])
    c_new = f * c + i * g
    h_new = f * h + (1.0 - f) * (o * np.tanh(c_new)) + alpha * h
    return h_new, c_new


def reference(feeds: dict, sequence: bool):
    """float64 reference outputs in the op's output order."""
    args = [feeds[n] for n in INPUTS[3:]]
    if not sequence:
        return reference_step(feeds["x"], feeds["h"], feeds["c"], *args)
    x = np.asarray(feeds["x"], dtype=np.float64)
    h = np.asarray(feeds["h"], dtype=np.float64)
    c = np.asarray(feeds["c"], dtype=np.float64)
    ys = []
    for t in range(x.shape[1]):
        h, c = reference_step(x[:, t], h, c, *args)
        ys.append(h)
    Y = np.stack(ys, axis=1) if ys else np.zeros((x.shape[0], 0, h.shape[1]))
    return Y, h, c
