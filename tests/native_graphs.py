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


def reference_gates(u, h, c, gs, gb, alpha):
    """float64 gate maths of one step given the pre-activation u = x @ W_x + h @ W_h + bias."""
    u, h, c, gs, gb = (np.asarray(a, dtype=np.float64) for a in (u, h, c, gs, gb))
    alpha = float(alpha)
    i = _sigmoid(gs[0] * u + gb[0])
    f = _sigmoid(gs[1] * u + gb[1])
    g = np.tanh(gs[2] * u + gb[2])
    o = _sigmoid(gs[3] * u + gb[3])
    c_new = f * c + i * g
    h_new = f * h + (1.0 - f) * (o * np.tanh(c_new)) + alpha * h
    return h_new, c_new


def reference_step(x, h, c, W_x, W_h, bias, gs, gb, alpha):
    """float64 reference for one step (any float inputs)."""
    x, h, W_x, W_h, bias = (np.asarray(a, dtype=np.float64) for a in (x, h, W_x, W_h, bias))
    return reference_gates(x @ W_x + h @ W_h + bias, h, c, gs, gb, alpha)


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


# ---------------------------------------------------------------------------------------------
# Quantized weights (exporters/quantize.py contract): one node whose function body is the
# family's own (qlstm_edge.families.qllstm.export), plus numpy references of each mode.

QUANT_MODES = ("fp16", "int8", "int8-dynamic", "int4")
SCALE_INPUTS = ["W_x_scale", "W_h_scale"]


def quantize_feeds(feeds: dict, mode: str, block_size: int = 32, packed: bool = True) -> dict:
    """The op's inputs for ``mode``: W_x / W_h stored per the contract (scales appended for the
    integer modes), x float16 in fp16 mode; everything else unchanged. int4 matrices are packed
    two per byte in uint8, or with ``packed=False`` ONNX INT4 (the form of files exported before
    the packed one); ``<matrix>_q`` holds their int4 values either way."""
    from qlstm_edge.exporters.quantize import pack_int4, quantize_symmetric, to_fp16

    out = dict(feeds)
    if mode == "fp16":
        out["x"] = feeds["x"].astype(np.float16)
        for m in ("W_x", "W_h"):
            out[m] = to_fp16(m, feeds[m])
        return out
    bits = 4 if mode == "int4" else 8
    for m in ("W_x", "W_h"):
        out[m], out[f"{m}_scale"] = quantize_symmetric(m, feeds[m], bits, 1, block_size if bits == 4 else None)
        if bits == 4:
            out[f"{m}_q"] = out[m]
            out[m] = pack_int4(out[m]) if packed else out[m]
    return out


def quant_op_model(sequence: bool, mode: str, block_size: int = 32, constants: dict | None = None,
                   with_function: bool = True, packed: bool = True):
    """One QLLSTMCell / QLLSTMSequence node in quantization ``mode`` with the family's function
    body. Inputs named in ``constants`` become initializers (as in an exported model, where the
    kernel packs them once); the others are graph inputs. int4 matrices are uint8, or with
    ``packed=False`` ONNX INT4 (opset 21, IR 10, as files exported before the packed form; no
    function body reads that form: use it with_function=False)."""
    from onnx import numpy_helper

    from qlstm_edge.exporters.quantize import Quantizer
    from qlstm_edge.families.qllstm.export import cell_function, sequence_function

    q = Quantizer(mode, block_size=block_size)
    opset, ir = (q.min_opset, q.min_ir_version) if packed else (21, 10)
    fn = sequence_function(opset, q) if sequence else cell_function(opset, q)
    inputs = INPUTS + (SCALE_INPUTS if q.integer else [])
    outputs = SEQ_OUTPUTS if sequence else CELL_OUTPUTS
    name = "QLLSTMSequence" if sequence else "QLLSTMCell"
    constants = constants or {}
    elem = {"x": TensorProto.FLOAT16 if mode == "fp16" else TensorProto.FLOAT}
    wtype = {"fp16": TensorProto.FLOAT16, "int8": TensorProto.INT8, "int8-dynamic": TensorProto.INT8,
             "int4": TensorProto.UINT8 if packed else TensorProto.INT4}[mode]
    elem.update(W_x=wtype, W_h=wtype)
    x_shape = ["B", "T", "D"] if sequence else ["B", "D"]
    scale_rows = {"W_x_scale": f"ceil(D/{block_size})", "W_h_scale": f"ceil(H/{block_size})"}
    width = "ceil(H/2)" if mode == "int4" and packed else "H"
    shapes = dict(zip(INPUTS, [x_shape, ["B", "H"], ["B", "H"], ["D", width], ["H", width], ["H"], [4, "H"], [4, "H"],
                               []]))
    shapes.update({n: ([scale_rows[n], "H"] if mode == "int4" else ["H"]) for n in SCALE_INPUTS})
    graph = helper.make_graph(
        [helper.make_node(name, inputs, outputs, domain=DOMAIN, **q.op_attributes())], f"one_{name}_{mode}",
        [helper.make_tensor_value_info(n, elem.get(n, TensorProto.FLOAT), shapes[n]) for n in inputs
         if n not in constants],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
                             ir_version=ir, functions=[fn] if with_function else [])


def quantize_rows_like_body(x: np.ndarray):
    """int8-dynamic activation quantization exactly as the function body computes it (float32
    Div / Max / Round half-to-even / Clip): returns (x_q int8, scale float32 with a trailing 1)."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=-1, keepdims=True)
    s = np.maximum(amax / np.float32(127.0), np.float32(1e-30)).astype(np.float32)
    xq = np.clip(np.rint(x / s), -127, 127).astype(np.int8)
    return xq, s


def _quant_matmul(a: np.ndarray, qf: dict, m: str, mode: str, block_size: int) -> np.ndarray:
    """a @ W (float64 result) with ``mode``'s arithmetic; ``qf`` holds the quantized inputs."""
    from qlstm_edge.exporters.quantize import dequantize

    if mode == "fp16":
        a16 = np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float64)
        prod = a16 @ qf[m].astype(np.float64)
        return prod.astype(np.float16).astype(np.float64)
    if mode == "int8-dynamic":
        aq, s = quantize_rows_like_body(a)
        acc = aq.astype(np.int64) @ qf[m].astype(np.int64)
        return ((acc.astype(np.float32) * s) * qf[f"{m}_scale"]).astype(np.float64)
    w = dequantize(qf[f"{m}_q" if mode == "int4" else m], qf[f"{m}_scale"], 1, block_size if mode == "int4" else None)
    return np.asarray(a, dtype=np.float64) @ w.astype(np.float64)


def reference_quant(qf: dict, mode: str, sequence: bool, block_size: int = 32):
    """float64 reference of the op on quantized inputs ``qf`` (quantize_feeds), in output order.
    The products follow the mode (fp16 rounding, exact int8-dynamic integer sums); the rest is
    float64. int8-dynamic quantizes each step's h as float32, as the kernels and the body do."""
    bias = np.asarray(qf["bias"], dtype=np.float64)

    def step(xw, h, c):
        u = xw + _quant_matmul(np.asarray(h, dtype=np.float32), qf, "W_h", mode, block_size)
        return reference_gates(u, h, c, qf["gate_scale"], qf["gate_bias"], qf["alpha"])

    x = np.asarray(qf["x"], dtype=np.float32)
    h = np.asarray(qf["h"], dtype=np.float64)
    c = np.asarray(qf["c"], dtype=np.float64)
    if not sequence:
        return step(_quant_matmul(x, qf, "W_x", mode, block_size) + bias, h, c)
    ys = []
    for t in range(x.shape[1]):
        h, c = step(_quant_matmul(x[:, t], qf, "W_x", mode, block_size) + bias, h, c)
        ys.append(h)
    return np.stack(ys, axis=1), h, c
