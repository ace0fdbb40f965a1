"""What the tests share: the repository root, small models of every family (the FAMILIES table), a hypothesis
strategy of random xLSTM models, and one-node graphs of the QL-LSTM ops with float64 references.

The tests import it as ``helpers`` (pyproject's pytest ``pythonpath``); benchmarks/bench_native.py and
.ci/isa_lane.py put tests/ on sys.path for it. No test module imports another test module.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from qlstm_edge import QLLSTMConfig, QLLSTMModel, registry
from qlstm_edge.exporters.quantize import Quantizer, dequantize, pack_int4, quantize_symmetric, to_fp16
from qlstm_edge.families.prlstm import PRLSTM, PRLSTMConfig, PRLSTMModel
from qlstm_edge.families.qllstm.export import cell_function, sequence_function
from qlstm_edge.families.xlstm import examples as xlstm_examples
from qlstm_edge.families.xlstm.examples import perturb
from qlstm_edge.runtime.metadata import DOMAIN

REPO = Path(__file__).resolve().parents[1]


# -- QL-LSTM and PR-LSTM -----------------------------------------------------------------------------------------
def make_qllstm(layers=2, tokens=True, hidden=16, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = QLLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=3,
                       **({"vocab_size": 40} if tokens else {"input_size": 5}), **kw)
    return QLLSTMModel(cfg).eval()


def make_prlstm_core(layers=2, seed=0, hidden=4, inputs=3, levels=24):
    torch.manual_seed(seed)
    return PRLSTM(inputs, hidden, num_layers=layers, stack_levels=levels).eval()


def make_prlstm(layers=2, tokens=True, hidden=8, seed=0, levels=24):
    torch.manual_seed(seed)
    cfg = PRLSTMConfig(hidden_size=hidden, num_layers=layers, output_size=3, stack_levels=levels,
                       **({"vocab_size": 40} if tokens else {"input_size": 5}))
    return PRLSTMModel(cfg).eval()


# -- xLSTM (the official package) --------------------------------------------------------------------------------
def import_xlstm():
    """The official xlstm package; skips the calling test without it (an error under QLSTM_EDGE_REQUIRE_XLSTM=1)."""
    try:
        import xlstm
        import xlstm.xlstm_large.model  # noqa: F401
    except ImportError as e:
        if os.environ.get("QLSTM_EDGE_REQUIRE_XLSTM") == "1":
            raise ImportError(f"QLSTM_EDGE_REQUIRE_XLSTM=1 but the xlstm package cannot be imported ({e}); "
                              f"pip install -e '.[xlstm]'") from e
        pytest.skip(f"the official xlstm package is not installed ({e}); pip install 'qlstm-edge[xlstm]'")
    return xlstm


def stack_kwargs(**kw):
    """xLSTMBlockStackConfig's arguments (the xLSTM examples' helper); skips without the package."""
    import_xlstm()
    return xlstm_examples.stack_kwargs(**kw)


def make_stack(seed=0, **kw):
    import_xlstm()
    return xlstm_examples.stack(seed, **kw)


def make_lm(seed=0, vocab=50, **kw):
    import_xlstm()
    return xlstm_examples.lm(seed, vocab, **kw)


def make_large(seed=0, **kw):
    import_xlstm()
    return xlstm_examples.large(seed, **kw)


def xlstm_stack(seed=0):
    """mLSTM block, then an sLSTM block with 32-wide heads (head-wise projections as batched MatMuls)."""
    return make_stack(seed, E=32, heads=1, mlstm_heads=2, slstm_at=[1])


def xlstm_lm(seed=1):
    """sLSTM block with 16-wide heads (head-wise projections as Mul + ReduceSum), then an mLSTM block."""
    return make_lm(seed, E=32, heads=2, slstm_at=[0])


def xlstm_large(seed=2):
    return make_large(seed, embedding_dim=32)


@st.composite
def xlstm_models(draw):
    """A small perturbed model of the xlstm package: a block stack (features), an LM (token ids) or xLSTMLarge."""
    x = import_xlstm()
    kind = draw(st.sampled_from(["stack", "lm", "large"]))
    heads = draw(st.sampled_from([1, 2, 4]))
    # the package's per-head splits: the sLSTM and mLSTM widths, and xLSTMLarge's qk width (embedding / 2)
    emb = draw(st.sampled_from([e for e in range(8, 33, 4) if e % (2 * heads if kind == "large" else heads) == 0]))
    blocks = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    if kind == "large":
        return make_large(seed=seed, embedding_dim=emb, num_heads=heads, num_blocks=blocks, vocab_size=11)
    slstm_at = draw(st.sets(st.integers(0, blocks - 1)))
    kw = stack_kwargs(E=emb, heads=heads, slstm_at=sorted(slstm_at), blocks=blocks,
                      conv=draw(st.integers(2, 4)))  # the package's mLSTM layer needs a conv
    kw["slstm_block"].slstm.conv1d_kernel_size = draw(st.sampled_from([0, 2, 3, 4]))  # sLSTM: 0 = no conv
    torch.manual_seed(seed)
    if kind == "stack":
        return perturb(x.xLSTMBlockStack(x.xLSTMBlockStackConfig(**kw)), seed)
    return perturb(x.xLSTMLMModel(x.xLSTMLMModelConfig(vocab_size=11, **kw)), seed)


def rand(rng, *shape, scale=1.0) -> np.ndarray:
    """float32 normal values of ``shape`` times ``scale``."""
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def library_with(lib_status: dict, *specs) -> str:
    """The native library's path, which must register the ops of ``specs``."""
    assert {s.name for s in specs} <= set(lib_status["ops"] or []), "rebuild the library"
    return lib_status["path"]


def ort_session(model, library=None, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session of ``model`` (a ModelProto) with ``threads`` intra-op threads; the op library at
    path ``library`` registered when given (its native kernels run), else the function bodies run."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if library is not None:
        so.register_custom_ops_library(str(library))
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


# -- one-node graphs of the xLSTM block ops (tests/native/test_*_block_kernels.py) ------------------------------------
def block_stored(spec, weights: dict, mode, block_size: int) -> dict:
    """``weights`` as a ``mode`` node of ``spec`` stores them (quantize.py's schemes; stacked matrices slice by
    slice), then the matrices' scales in the integer modes."""
    scheme = Quantizer(mode, block_size=block_size).scheme
    out, scales = dict(weights), {}
    for name in spec.matrices:
        w = weights[name]
        out[name], scale, _ = (scheme.store_stacked(name, w, block_size) if w.ndim > 2 else
                               scheme.store(name, w, 1, block_size))
        if scale is not None:
            scales[f"{name}_scale"] = scale
    return {**out, **scales}


def block_op_model(spec, functions, weights: dict, mode, block_size: int, shapes: list, constant: bool = True,
                   norm_eps: float = 1e-5, **attributes):
    """One ``spec`` node whose graph inputs are x and the state (``shapes``: theirs, in order), its weights
    initializers (``constant``) or graph inputs, its attribute norm_eps and ``attributes``;
    ``functions(opset, quantizer)``: the model's FunctionProtos (the op's body and its nested cell's, or only the
    cell's). Returns (model, the weights to feed when not constant)."""
    q = Quantizer(mode, block_size=block_size)
    names = spec.input_names(scales=q.integer)
    params = {n: block_stored(spec, weights, mode, block_size)[n] for n in names[len(shapes):]}
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(names, shapes)]
    if not constant:
        graph_inputs += [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
                         for n, v in params.items()]
    node = helper.make_node(spec.name, names, spec.output_names, domain=DOMAIN, norm_eps=norm_eps,
                            **q.op_attributes(), **attributes)
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in spec.output_names]
    initializers = [numpy_helper.from_array(v, n) for n, v in params.items()] if constant else []
    graph = helper.make_graph([node], spec.name, graph_inputs, outputs, initializer=initializers)
    opset = q.min_opset
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
                              functions=functions(opset, q), ir_version=q.min_ir_version)
    return model, ({} if constant else params)


def block_stream(sess, spec, seq: bool, xs: np.ndarray, state: list, chunks, extra: dict):
    """Outputs of ``sess`` (a ``spec`` node's model) over ``xs`` [B, T, E]: chunks of the given lengths, or one step
    a call; the state fed back between calls. Returns (outputs [B, T, E], final state)."""
    ys = []
    bounds = np.cumsum([0, *chunks]) if seq else range(xs.shape[1] + 1)
    names = spec.regular_inputs[1:1 + len(state)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        x = xs[:, lo:hi] if seq else xs[:, lo]
        y, *state = sess.run(None, {"x": x, **dict(zip(names, state)), **extra})
        ys.append(y if seq else y[:, None])
    return np.concatenate(ys, 1), state


def assert_close_relative(got, want, tol: float) -> None:
    """Each of ``got`` has ``want``'s shape and dtype and is within ``tol`` * max(1, max |want|) of it."""
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        assert np.abs(g.astype(np.float64) - w).max(initial=0.0) <= tol * scale, (np.abs(g - w).max(), tol * scale)


# -- every family ---------------------------------------------------------------------------------------------------
def _example(ex):
    def build():
        try:
            return ex.build()
        except ImportError:  # an xLSTM example without the package: skip (or fail under QLSTM_EDGE_REQUIRE_XLSTM=1)
            import_xlstm()
            raise
    return build


# name: (input kind, small model factory): every registered family's examples (registry.Example), so a new family
# is covered by every family-wide test without an edit here
FAMILIES = {name: (ex.inputs, _example(ex)) for name, ex in registry.examples().items()}
TOKEN_FAMILIES = [n for n, (kind, _) in FAMILIES.items() if kind == "tokens"]
FEATURE_FAMILIES = [n for n, (kind, _) in FAMILIES.items() if kind == "features"]


# -- one-node graphs of the QL-LSTM ops (the exporter's function bodies) and float64 references ---------------------
INPUTS = ["x", "h", "c", "W_x", "W_h", "bias", "gate_scale", "gate_bias", "alpha"]
CELL_OUTPUTS = ["h_new", "c_new"]
SEQ_OUTPUTS = ["Y", "h_T", "c_T"]
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
IR_VERSION = 8


def _op_function(sequence: bool, opset: int, q=None):
    """The exporter's function body of QLLSTMSequence or QLLSTMCell (quantizer ``q``, default fp32)."""
    return sequence_function(opset, q) if sequence else cell_function(opset, q)


def op_model(sequence: bool, with_function: bool = True, static_shape: tuple | None = None,
             shapeless: bool = False):
    """One fp32 custom node with the exporter's function body; inputs have symbolic dims unless
    static_shape=(B, T, D, H) is given, or no shape at all with shapeless=True (so onnxruntime leaves
    every shape check to the kernel)."""
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
    functions = [_op_function(sequence, OPSETS[0].version)] if with_function else []
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


# Quantized weights (exporters/quantize.py contract): one node with the exporter's function body, plus numpy
# references of each mode.

QUANT_MODES = ("fp16", "int8", "int8-dynamic", "int4")
SCALE_INPUTS = ["W_x_scale", "W_h_scale"]


def quantize_feeds(feeds: dict, mode: str, block_size: int = 32, packed: bool = True) -> dict:
    """The op's inputs for ``mode``: W_x / W_h stored per the contract (scales appended for the
    integer modes), x float16 in fp16 mode; everything else unchanged. int4 matrices are packed
    two per byte in uint8, or with ``packed=False`` ONNX INT4 (the form of files exported before
    the packed one); ``<matrix>_q`` holds their int4 values either way."""
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
    q = Quantizer(mode, block_size=block_size)
    opset, ir = (q.min_opset, q.min_ir_version) if packed else (21, 10)
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
    functions = [_op_function(sequence, opset, q)] if with_function else []
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
                             ir_version=ir, functions=functions)


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
