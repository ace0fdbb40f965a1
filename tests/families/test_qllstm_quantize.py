"""Quantized export (fp16, int8, int8-dynamic, int4): op contract, checker, onnxruntime, onnx.reference,
parity within the documented tolerances over 2,000+ steps, weight edge cases, file sizes, the report CLI."""
import copy
import json

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx.reference import ReferenceEvaluator

from qlstm_edge import QLLSTMConfig, QLLSTMModel, save_checkpoint
from qlstm_edge.cli_quant import quantize_report
from qlstm_edge.exporters import build_onnx, export_onnx
from qlstm_edge.exporters.graph import GraphBuilder
from qlstm_edge.exporters.quantize import INT4_PACKED, QuantizationError, Quantizer, dequantize, quantize_symmetric
from qlstm_edge.parity import TOLERANCES, check_parity, random_inputs
from qlstm_edge.runtime import StreamingSession, native_lib, native_status

from helpers import make_qllstm

QMODES = ["fp16", "int8", "int8-dynamic", "int4"]
ALL = [None, *QMODES]
STEPS = 2000


def custom_nodes(proto):
    return [n for n in proto.graph.node if n.domain == "qlstm_edge"]


def inits(proto):
    return {t.name: t for t in proto.graph.initializer}


def meta_of(proto):
    return json.loads({p.key: p.value for p in proto.metadata_props}["qlstm_edge"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(quant, graph mode): path} for one 2-layer token model (H=16)."""
    d = tmp_path_factory.mktemp("quant")
    m = make_qllstm(layers=2, seed=3)
    return m, {(q, mode): export_onnx(m, d / f"{q}_{mode}.onnx", mode=mode, quantize=q)
               for q in ALL for mode in ("step", "sequence")}


# -- reference quantization written here, independently of exporters/quantize.py ---------------------------

def ref_int8_per_column(w):
    """Symmetric int8 per column of w [K, N]: returns the dequantized matrix."""
    amax = np.abs(w).max(axis=0)
    s = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    return (np.clip(np.round(w / s), -127, 127) * s).astype(np.float32)


def ref_int4_blocks(w, bs):
    """Symmetric int4 in blocks of bs rows per column of w [K, N]: returns the dequantized matrix."""
    out = np.empty_like(w)
    for k0 in range(0, w.shape[0], bs):
        blk = w[k0:k0 + bs]
        amax = np.abs(blk).max(axis=0)
        s = np.where(amax > 0, amax / 7.0, 1.0).astype(np.float32)
        out[k0:k0 + bs] = np.clip(np.round(blk / s), -7, 7) * s
    return out


def dequantized_copy(model, quant, bs=32):
    """A copy of a QLLSTMModel whose matrices hold what a weight-only export computes with."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for cell in m.rnn.cells:
            d = cell.input_size
            w = cell.weight.numpy()
            parts = [w[:, :d].T, w[:, d:].T]  # W_x, W_h input-major, like the op contract
            deq = [ref_int8_per_column(p) if quant == "int8" else ref_int4_blocks(p, bs) for p in parts]
            cell.weight.copy_(torch.from_numpy(np.concatenate([deq[0].T, deq[1].T], axis=1)))
        head = m.head.weight.numpy().T
        m.head.weight.copy_(torch.from_numpy((ref_int8_per_column(head) if quant == "int8"
                                              else ref_int4_blocks(head, bs)).T))
        table = m.embedding.weight.numpy()
        m.embedding.weight.copy_(torch.from_numpy((ref_int8_per_column(table.T).T if quant == "int8"
                                                   else ref_int4_blocks(table.T, bs).T)))
    return m


# -- graph contract --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("quant", ALL)
def test_contract_checker_and_metadata(exported, quant, mode):
    m, paths = exported
    proto = onnx.load(paths[(quant, mode)])
    onnx.checker.check_model(proto, full_check=True)
    op = "QLLSTMCell" if mode == "step" else "QLLSTMSequence"
    nodes = custom_nodes(proto)
    assert [n.op_type for n in nodes] == [op, op]  # still one custom node per cell
    init = inits(proto)
    meta = meta_of(proto)
    for l, n in enumerate(nodes):
        assert n.input[3] == f"l{l}.W_x" and n.input[4] == f"l{l}.W_h" and n.input[8] == f"l{l}.alpha"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if quant is None:
            assert len(n.input) == 9 and attrs == {}
            assert init[f"l{l}.W_x"].data_type == onnx.TensorProto.FLOAT
            continue
        assert attrs == {"quant_mode": quant.encode(), "block_size": 32 if quant == "int4" else 0}
        want = {"fp16": onnx.TensorProto.FLOAT16, "int8": onnx.TensorProto.INT8,
                "int8-dynamic": onnx.TensorProto.INT8, "int4": onnx.TensorProto.UINT8}[quant]
        assert init[f"l{l}.W_x"].data_type == want and init[f"l{l}.W_h"].data_type == want
        if quant == "int4":  # packed two per byte: [K, ceil(H / 2)]
            assert list(init[f"l{l}.W_x"].dims) == list(init[f"l{l}.W_h"].dims) == [16, 8]
        for k in ("bias", "gate_scale", "gate_bias", "alpha"):
            assert init[f"l{l}.{k}"].data_type == onnx.TensorProto.FLOAT
        if quant == "fp16":
            assert len(n.input) == 9
            continue
        assert list(n.input[9:]) == [f"l{l}.W_x_scale", f"l{l}.W_h_scale"]  # appended, in matrix order
        sx, sh = (onnx.numpy_helper.to_array(init[s]) for s in n.input[9:])
        assert sx.dtype == np.float32
        if quant == "int4":
            assert sx.shape == (1, 16) and sh.shape == (1, 16)  # ceil(16 / 32) blocks x H
        else:
            assert sx.shape == (16,) and sh.shape == (16,)
        rec = meta["quantization"]["tensors"][f"l{l}.W_x"]
        assert rec["scale"] == f"l{l}.W_x_scale" and rec["channel_axis"] == 1
        assert rec.get("storage") == (INT4_PACKED if quant == "int4" else None)
    fn = {f.name: f for f in proto.functions}[op]
    assert all(node.domain in ("", "ai.onnx") for node in fn.node)  # bodies: standard ops only
    q = meta["quantization"]
    if quant is None:
        assert q is None and proto.ir_version == 8
        return
    assert q["mode"] == quant and q["contract_version"] == 1
    assert q["float32_states"] == ["l0.h", "l0.c", "l1.h", "l1.c"]
    assert all(s["dtype"] == "float32" for s in meta["states"])
    opsets = {o.domain: o.version for o in proto.opset_import}
    if quant == "int4":
        assert q["granularity"] == "block" and q["block_size"] == 32 and q["min_onnxruntime"] == "1.15"
        assert proto.ir_version == 8 and opsets[""] == 18
        assert {t["storage"] for t in q["tensors"].values()} == {INT4_PACKED}
    else:
        assert proto.ir_version == 8 and opsets[""] == 17 and q["block_size"] is None
    if quant in ("int8", "int8-dynamic", "int4"):
        assert {"embedding.weight", "head.weight_t"} <= set(q["tensors"])  # every weight-bearing layer
        assert q["scale_dtype"] == "float32"
        assert "l0.bias" in q["float_tensors"]


# -- running: onnxruntime (function bodies and with the native library), onnx.reference --------------------

@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("quant", ALL)
def test_parity_within_documented_tolerance(exported, quant, mode):
    m, paths = exported
    r = check_parity(m, paths[(quant, mode)], steps=STEPS, batch=2, native="off")
    assert r.quantization == quant and r.tolerance == TOLERANCES[quant]
    assert r.passed, str(r)


@pytest.mark.parametrize("quant", ALL)
def test_native_auto_runs_quantized_models_correctly(exported, quant):
    """With the native library registered (native="auto"), every mode runs and stays within its tolerance;
    when the library is built its kernels take the quantized weights directly (the op contract)."""
    m, paths = exported
    calls = native_lib.compute_calls()
    r = check_parity(m, paths[(quant, "step")], steps=STEPS, native="auto")
    assert r.passed, str(r)
    if native_status()["available"]:
        assert r.op_path == "native" and native_lib.compute_calls() >= calls + STEPS
    else:
        assert r.op_path == "function-body"


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_weight_only_equals_model_with_dequantized_weights(exported, quant):
    """Weight-only modes compute exactly the fp32 maths with dequantized weights (reference built here)."""
    m, paths = exported
    deq = dequantized_copy(m, quant)
    r = check_parity(deq, paths[(quant, "sequence")], steps=500, batch=2, native="off", tolerance=1e-4)
    assert r.passed, str(r)


def test_int8_dynamic_quantizes_activations(exported):
    """int8-dynamic differs from weight-only int8 only by the activations' rounding, which is small."""
    m, paths = exported
    a = StreamingSession(paths[("int8", "step")], native="off")
    b = StreamingSession(paths[("int8-dynamic", "step")], native="off")
    x = random_inputs(a, 300, 2, seed=4)
    ya, yb = a.run(x), b.run(x)
    assert 0 < np.abs(ya - yb).max() < TOLERANCES["int8-dynamic"]
    fn = {f.name: f for f in onnx.load(paths[("int8-dynamic", "step")]).functions}["QLLSTMCell"]
    assert sum(n.op_type == "MatMulInteger" for n in fn.node) == 2  # x @ W_x and h @ W_h on integers


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("quant", QMODES)
def test_reference_evaluator_agrees_with_onnxruntime(exported, quant, mode):
    m, paths = exported
    path = paths[(quant, mode)]
    s = StreamingSession(path, native="off")
    x = random_inputs(s, 4, 2, seed=1)
    feed = {"x": x if mode == "sequence" else x[:, 0]}
    rng = np.random.default_rng(2)
    for st in s.metadata.states:
        feed[st.input] = (0.5 * rng.standard_normal((2, 16))).astype(np.float32)
    names = [o.name for o in onnx.load(path).graph.output]
    ref = ReferenceEvaluator(str(path)).run(names, feed)
    got = s._e.sess.run(names, feed)
    # fp16: onnx.reference multiplies in float16, CPU onnxruntime in float32 (float16 storage only).
    # int4: both run float32 products with the same dequantized weights.
    tol = 5e-3 if quant == "fp16" else 1e-5
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype and np.abs(r - g).max() <= tol


def test_feature_input_model_all_modes(tmp_path):
    m = make_qllstm(layers=1, tokens=False, seed=5)
    for quant in QMODES:
        path = export_onnx(m, tmp_path / f"{quant}.onnx", mode="sequence", quantize=quant)
        q = meta_of(onnx.load(path))["quantization"]
        if quant != "fp16":
            assert "input_map.weight_t" in q["tensors"] and "head.weight_t" in q["tensors"]
        r = check_parity(m, path, steps=STEPS, native="off")
        assert r.passed, str(r)


def test_fp16_io_keeps_states_float32(tmp_path):
    m = make_qllstm(layers=2, tokens=False, seed=6)
    path = export_onnx(m, tmp_path / "io16.onnx", quantize="fp16", io_dtype="float16", target="cuda")
    s = StreamingSession(path, native="off")
    meta = s.metadata
    assert meta.inputs[0].dtype == "float16" and meta.outputs[0].dtype == "float16"
    assert {st.dtype for st in meta.states} == {"float32"} and meta.target == "cuda"
    x = np.random.default_rng(0).standard_normal((2, 300, 5)).astype(np.float32)
    y = s.run(x.astype(np.float16))
    with torch.no_grad():
        ref = m(torch.from_numpy(x))[0].numpy()
    assert y.dtype == np.float16 and np.abs(y.astype(np.float32) - ref).max() < TOLERANCES["fp16"]
    with pytest.raises(QuantizationError, match="needs quantize='fp16'"):
        build_onnx(m, quantize="int8", io_dtype="float16")


# -- weight edge cases -----------------------------------------------------------------------------------

def test_quantize_matches_independent_reference():
    w = np.random.default_rng(0).standard_normal((70, 9)).astype(np.float32)
    q, s = quantize_symmetric("w", w, 8, channel_axis=1)
    assert q.dtype == np.int8 and s.shape == (9,) and np.abs(q).max() == 127
    np.testing.assert_allclose(dequantize(q, s, 1), ref_int8_per_column(w), rtol=0, atol=1e-6)
    q4, s4 = quantize_symmetric("w", w, 4, channel_axis=1, block_size=32)
    assert q4.dtype == ml_dtypes.int4 and s4.shape == (3, 9)  # ceil(70 / 32) blocks
    np.testing.assert_allclose(dequantize(q4, s4, 1, 32), ref_int4_blocks(w, 32), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bits,block", [(8, None), (4, 32)])
def test_zero_rows_columns_and_outliers(bits, block):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 6)).astype(np.float32)
    w[:, 2] = 0.0  # an all-zero output channel
    w[5, :] = 0.0  # an all-zero input row
    w[40, 4] = 1e6  # a huge outlier in channel 4, block 1 (rows 32..63)
    w[0, 0] = 1e-42  # a subnormal in an otherwise normal channel
    q, s = quantize_symmetric("w", w, bits, channel_axis=1, block_size=block)
    assert np.isfinite(s).all() and (s > 0).all()  # nothing divides by zero later
    d = dequantize(q, s, 1, block)
    assert np.isfinite(d).all()
    assert (d[:, 2] == 0).all() and (d[5] == 0).all()
    qmax = 127 if bits == 8 else 7
    step = np.abs(w).max(axis=0) / qmax if block is None else None
    if block is None:
        assert (np.abs(d - w) <= step / 2 * 1.0001 + 1e-30).all()  # within half a quantization step everywhere
    else:
        assert np.abs(d[40, 4] - 1e6) <= 1e6 / 7 / 2
        assert np.abs(d[:32, 4] - w[:32, 4]).max() <= np.abs(w[:32, 4]).max() / 7  # other block unaffected
    others = [c for c in range(6) if c not in (2, 4)]
    rel = np.abs(d[:, others] - w[:, others]).max() / np.abs(w[:, others]).max()
    assert rel <= 0.5 / qmax * 1.0001  # the outlier did not coarsen the other channels


def test_all_zero_layer_and_zero_input_rows_export_and_run(tmp_path):
    m = make_qllstm(layers=1, tokens=False, seed=7)
    with torch.no_grad():
        m.rnn.cells[0].weight.zero_()
        m.input_map.weight[:, 0] = 0.0
    for quant in ("int8", "int8-dynamic", "int4"):
        path = export_onnx(m, tmp_path / f"{quant}.onnx", quantize=quant)
        s = StreamingSession(path, native="off")
        y = s.run(np.zeros((2, 50, 5), np.float32))  # all-zero activation rows: dynamic scale must not be 0
        assert np.isfinite(y).all()
        with torch.no_grad():
            ref = m(torch.zeros(2, 50, 5))[0].numpy()
        assert np.abs(y - ref).max() <= TOLERANCES[quant]


@pytest.mark.parametrize("quant", QMODES)
@pytest.mark.parametrize("where", ["rnn.cells.1.weight", "head.weight", "embedding.weight", "rnn.cells.0.bias"])
def test_nonfinite_weights_are_refused_by_name(tmp_path, quant, where):
    m = make_qllstm(layers=2, seed=8)
    names = {"rnn.cells.1.weight": "l1.W_x", "head.weight": "head.weight_t", "embedding.weight": "embedding.weight",
             "rnn.cells.0.bias": "l0.bias"}
    with torch.no_grad():
        dict(m.named_parameters())[where].view(-1)[3] = float("nan")
    with pytest.raises(QuantizationError, match=f"'{names[where]}'.*non-finite"):
        export_onnx(m, tmp_path / "bad.onnx", quantize=quant)
    assert not (tmp_path / "bad.onnx").exists()


def test_fp16_overflow_is_refused(tmp_path):
    m = make_qllstm(layers=1, seed=9)
    with torch.no_grad():
        m.head.weight[0, 0] = 1e5
    with pytest.raises(QuantizationError, match="'head.weight_t'.*float16's range"):
        export_onnx(m, tmp_path / "m.onnx", quantize="fp16")
    export_onnx(m, tmp_path / "m8.onnx", quantize="int8")  # a large but finite weight is fine for int8


def test_invalid_requests(tmp_path):
    m = make_qllstm(layers=1)
    with pytest.raises(QuantizationError, match="quantize must be None or one of"):
        build_onnx(m, quantize="int3")
    with pytest.raises(QuantizationError, match="opset >= 18"):
        build_onnx(m, quantize="int4", opset=17)
    with pytest.raises(QuantizationError, match="block_size must be a positive integer"):
        build_onnx(m, quantize="int4", block_size=0)
    with pytest.raises(QuantizationError, match="io_dtype"):
        Quantizer("fp16", io_dtype="bfloat16")


def test_int4_block_size_parameter(tmp_path):
    m = make_qllstm(layers=1, seed=10)
    path = export_onnx(m, tmp_path / "b8.onnx", quantize="int4", block_size=8)
    proto = onnx.load(path)
    init = inits(proto)
    assert onnx.numpy_helper.to_array(init["l0.W_h_scale"]).shape == (2, 16)  # ceil(16 / 8) blocks
    assert meta_of(proto)["quantization"]["block_size"] == 8
    assert check_parity(m, path, steps=STEPS, native="off").passed


# -- sizes ----------------------------------------------------------------------------------------------

def test_file_sizes_shrink_h256(tmp_path):
    torch.manual_seed(0)
    m = QLLSTMModel(QLLSTMConfig(hidden_size=256, num_layers=2, vocab_size=1000, output_size=2)).eval()
    size = {q: export_onnx(m, tmp_path / f"{q}.onnx", quantize=q).stat().st_size for q in ALL}
    assert size["int8"] <= 0.30 * size[None] and size["int8-dynamic"] <= 0.30 * size[None]
    assert size["int4"] <= 0.18 * size[None]
    assert size["fp16"] <= 0.55 * size[None]


# -- the report command -------------------------------------------------------------------------------------

def test_quantize_report_cli(tmp_path):
    m = make_qllstm(layers=1, seed=11, hidden=8)
    ckpt = save_checkpoint(m, tmp_path / "m.safetensors")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.integers(0, 40, (20, 30)), y=rng.integers(0, 3, 20))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(quantize_report, [str(ckpt), "--steps", "1200", "--eval", str(tmp_path / "eval.npz"),
                                               "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [r["mode"] for r in doc["rows"]] == ["fp32", "fp16", "int8", "int8-dynamic", "int4"]
    assert doc["checkpoints"] == [1000, 1200] and doc["eval"]["metric"] == "accuracy"
    for r in doc["rows"]:
        assert set(r["max_abs"]) == {"1000", "1200"} and 0 <= r["metric"] <= 1
        assert r["max_abs"]["1200"] >= r["max_abs"]["1000"]
    assert doc["rows"][0]["max_abs"]["1200"] <= TOLERANCES[None] and doc["rows"][0]["ratio"] == 1.0
    assert "int8-dynamic" in res.output and "accuracy" in res.output
    bad = CliRunner().invoke(quantize_report, [str(ckpt), "--modes", "int3"])
    assert bad.exit_code != 0


@pytest.mark.parametrize("ids_shape", [(4,), (2, 3)])
@pytest.mark.parametrize("width,block", [(13, 5), (16, 32), (12, 4)])
def test_int4_embedding_gathers_packed_rows(ids_shape, width, block):
    """int4 tables are stored two values per byte and only the gathered rows are dequantized: the rows equal
    the numpy dequantization exactly, for odd widths and short last blocks."""
    rng = np.random.default_rng(width)
    table = rng.standard_normal((11, width)).astype(np.float32)
    q = Quantizer("int4", block_size=block)
    g = GraphBuilder(quant=q)
    g.input("ids", "int64", [f"d{k}" for k in range(len(ids_shape))])
    g.op("Identity", [q.embedding(g, "emb", table, "ids")], ["rows"])
    g.output("rows", "float32", [*(f"d{k}" for k in range(len(ids_shape))), width])
    proto = g.model("int4_embedding", opset=q.min_opset, ir_version=q.min_ir_version)
    onnx.checker.check_model(proto, full_check=True)
    stored = {t.name: t for t in proto.graph.initializer}["emb.weight"]
    assert stored.data_type == onnx.TensorProto.UINT8 and list(stored.dims) == [11, -(-width // 2)]
    ids = rng.integers(0, 11, ids_shape)
    want = dequantize(*quantize_symmetric("t", table, 4, channel_axis=0, block_size=block), 0, block)[ids]
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    assert got.shape == (*ids_shape, width) and np.array_equal(got, want)
    assert np.array_equal(ReferenceEvaluator(proto).run(None, {"ids": ids})[0], want)


@pytest.mark.parametrize("shape,block", [((2, 3, 13, 5), 4), ((4, 16, 16), 32), ((1, 12, 7), 4)])
def test_int4_stacked_layer_weights_are_exact_and_folded_at_load(tmp_path, shape, block):
    """Stacked int4 matrices of standard-op layers (xLSTM head-wise projections) are stored packed two per byte
    and dequantize to exactly the numpy values (odd widths, short last blocks), and onnxruntime folds the
    dequantization into one float32 initializer when it loads the file instead of running it on every call."""
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(np.float32)
    q = Quantizer("int4", block_size=block)
    g = GraphBuilder(quant=q)
    g.input("x", "float32", [*shape[:-2], 1, shape[-2]])
    w_dq, scale = q.stacked_weight(g, "W", w)
    assert scale is None
    g.op("MatMul", ["x", w_dq], ["y"])
    g.op("Identity", [w_dq], ["w"])
    g.output("y", "float32", [*shape[:-2], 1, shape[-1]])
    g.output("w", "float32", list(shape))
    proto = g.model("int4_stacked", opset=q.min_opset, ir_version=q.min_ir_version)
    onnx.checker.check_model(proto, full_check=True)
    stored = {t.name: t for t in proto.graph.initializer}["W"]
    assert stored.data_type == onnx.TensorProto.UINT8 and list(stored.dims) == [*shape[:-1], -(-shape[-1] // 2)]
    assert q.quantized["W"]["storage"].startswith("uint8") and q.quantized["W"]["shape"] == list(shape)
    k = shape[-2]
    side_by_side = np.moveaxis(w, -2, 0).reshape(k, -1)  # the slices' channels as columns, as store_stacked
    want_w = np.moveaxis(dequantize(*quantize_symmetric("W", side_by_side, 4, channel_axis=1, block_size=block),
                                    1, block).reshape(k, *shape[:-2], shape[-1]), 0, -2)
    x = rng.standard_normal((*shape[:-2], 1, k)).astype(np.float32)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    y, got_w = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert np.array_equal(got_w, want_w) and np.allclose(y, np.matmul(x, want_w), rtol=1e-5, atol=1e-5)
    assert np.array_equal(ReferenceEvaluator(proto).run(["w"], {"x": x})[0], want_w)
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    matmul = next(n for n in optimized.graph.node if n.op_type == "MatMul")
    assert {n.op_type for n in optimized.graph.node} <= {"MatMul", "Identity"}  # nothing left to run per call
    weight = next(t for t in optimized.graph.initializer if t.name == matmul.input[1])
    assert np.array_equal(onnx.numpy_helper.to_array(weight), want_w)
