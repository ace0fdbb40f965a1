"""Quantization accuracy against an anchor: onnxruntime's own dynamic quantization of a torch.nn.LSTM model.

    python benchmarks/quant_anchor.py            # trains small models (about 2-3 minutes on 2 CPU cores)

1. Classification (qlstm_edge.datasets.long_range_sentiment, a harder setting: trained on 64-token documents,
   tested on 192- and 768-token ones, so the cue must be carried 3x and 12x as far as in training and
   accuracy is not saturated: quantization damage shows). A QL-LSTM model and a torch.nn.LSTM model (family rnn-baseline, same
   embedding / hidden / head sizes; forget-gate bias initialised to 3, without which it does not learn the
   task in this budget) are trained on the same data. The QL-LSTM model is exported in every
   qlstm-edge quantization mode; the LSTM model is exported by hand as a standard ONNX graph (Gather ->
   LSTM -> MatMul head, built with onnx.helper) and quantized with
   ``onnxruntime.quantization.quantize_dynamic`` (its DynamicQuantizeLSTM path). Test accuracy of each
   file next to its own fp32 model, and file sizes, printed side by side.
2. Forecasting (generated noisy sine, one step ahead): RMSE of every QL-LSTM mode against fp32.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from qlstm_edge import QLLSTMConfig, QLLSTMModel
from qlstm_edge.cli_quant import quantization_report
from qlstm_edge.datasets import long_range_sentiment
from qlstm_edge.families.baseline import LSTMConfig, LSTMModel
from qlstm_edge.training import TrainConfig, evaluate, fit, seed_everything

TRAIN_LENGTH, TEST_LENGTHS, CUE_FRACTION, VOCAB = 64, (192, 768), 0.25, 64
HIDDEN, EMBED = 64, 16


def lstm_to_onnx(model: LSTMModel, path: Path) -> Path:
    """The rnn-baseline LSTM (embedding -> 1-layer LSTM -> head) as a standard ONNX graph with the LSTM op."""
    H = model.config.hidden_size
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    perm = np.concatenate([np.arange(H) + k * H for k in (0, 3, 1, 2)])  # PyTorch i,f,g,o -> ONNX i,o,f,c
    W = sd["rnn.weight_ih_l0"][perm][None]
    R = sd["rnn.weight_hh_l0"][perm][None]
    B = np.concatenate([sd["rnn.bias_ih_l0"][perm], sd["rnn.bias_hh_l0"][perm]])[None]
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("embedding", sd["embedding.weight"]), ("W", W), ("R", R), ("B", B),
        ("head_w", sd["head.weight"].T.copy()), ("head_b", sd["head.bias"])]]
    nodes = [
        helper.make_node("Gather", ["embedding", "x"], ["e"], axis=0),
        helper.make_node("Transpose", ["e"], ["e_t"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["e_t", "W", "R", "B"], ["Y", "", ""], hidden_size=H),
        helper.make_node("Squeeze", ["Y", "one"], ["Y_s"]),
        helper.make_node("Transpose", ["Y_s"], ["h"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["h", "head_w"], ["hw"]),
        helper.make_node("Add", ["hw", "head_b"], ["y"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.INT64, ["B", "T"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", 2])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hits = 0
    for i in range(0, len(x), 250):
        out = sess.run(None, {"x": x[i:i + 250]})[0]
        hits += int((out[:, -1].argmax(-1) == y[i:i + 250]).sum())
    return hits / len(x)


def classification(tmp: Path):
    x, y = long_range_sentiment(3000, length=TRAIN_LENGTH, cue_fraction=CUE_FRACTION, seed=0)
    seed_everything(0)
    ql = QLLSTMModel(QLLSTMConfig(hidden_size=HIDDEN, vocab_size=VOCAB, embed_size=EMBED, output_size=2,
                                  alpha=0.0, learn_alpha=False))
    t = time.time()
    fit(ql, x, y, TrainConfig(epochs=5, lr=5e-3, seed=0), progress=False)
    print(f"trained QL-LSTM in {time.time() - t:.0f}s", flush=True)
    seed_everything(0)
    lstm = LSTMModel(LSTMConfig(hidden_size=HIDDEN, vocab_size=VOCAB, embed_size=EMBED, output_size=2))
    with torch.no_grad():  # forget-gate bias 3 (PyTorch gate order i, f, g, o)
        lstm.rnn.bias_ih_l0[HIDDEN:2 * HIDDEN].fill_(3.0)
        lstm.rnn.bias_hh_l0[HIDDEN:2 * HIDDEN].zero_()
    t = time.time()
    fit(lstm, x, y, TrainConfig(epochs=8, lr=5e-3, seed=0), progress=False)
    print(f"trained LSTM in {time.time() - t:.0f}s", flush=True)
    fp32 = lstm_to_onnx(lstm, tmp / "lstm_fp32.onnx")
    q8 = tmp / "lstm_int8_dynamic.onnx"
    quantize_dynamic(str(fp32), str(q8), weight_type=QuantType.QInt8)
    ops = sorted({n.op_type for n in onnx.load(str(q8)).graph.node})
    print(f"quantize_dynamic(weight_type=QInt8) LSTM graph ops: {', '.join(ops)}")
    for length in TEST_LENGTHS:
        xt, yt = long_range_sentiment(4000, length=length, cue_fraction=CUE_FRACTION, seed=7)
        doc = quantization_report(ql, steps=1000, eval_data=(xt.numpy(), yt.numpy(), "classify"))
        ql_torch = doc["eval"]["fp32_pytorch"]
        rows = [("QL-LSTM (qlstm-edge)", r["mode"], r["bytes"], r["ratio"], r["metric"], 100 * r["metric_delta"])
                for r in doc["rows"]]
        torch_acc = evaluate(lstm, xt, yt, "classify")
        for label, path in (("fp32", fp32), ("ort quantize_dynamic", q8)):
            acc = onnx_accuracy(path, xt.numpy(), yt.numpy())
            rows.append(("torch.nn.LSTM (onnx LSTM op)", label, path.stat().st_size,
                         path.stat().st_size / fp32.stat().st_size, acc, 100 * (acc - torch_acc)))
        print(f"\nclassification: long_range_sentiment(cue_fraction={CUE_FRACTION}), trained on length "
              f"{TRAIN_LENGTH}, {len(xt)} test documents of length {length}; H={HIDDEN}, embedding {EMBED}; "
              f"PyTorch fp32 accuracy: QL-LSTM {ql_torch:.4f}, LSTM {torch_acc:.4f}")
        print(f"{'model':<30}{'mode':<22}{'bytes':>9}{'ratio':>7}{'accuracy':>10}{'vs PyTorch fp32':>17}")
        for m, mode, size, ratio, acc, delta in rows:
            print(f"{m:<30}{mode:<22}{size:>9,}{ratio:>7.3f}{acc:>10.4f}{delta:>+14.2f} pt")


def noisy_sine(n: int, length: int, seed: int):
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)[None, :] + rng.uniform(0, 100, (n, 1))
    period = rng.uniform(12, 40, (n, 1))
    s = np.sin(2 * np.pi * t / period) + 0.1 * rng.standard_normal((n, length + 1))
    s = s.astype(np.float32)[..., None]
    return torch.from_numpy(s[:, :-1]), torch.from_numpy(s[:, 1:])


def forecasting():
    x, y = noisy_sine(1000, 64, seed=0)
    xt, yt = noisy_sine(500, 64, seed=1)
    seed_everything(0)
    m = QLLSTMModel(QLLSTMConfig(hidden_size=HIDDEN, input_size=1, output_size=1, alpha=0.0, learn_alpha=False))
    t = time.time()
    fit(m, x, y, TrainConfig(epochs=4, lr=5e-3, seed=0, task="regress"), progress=False)
    print(f"\nforecasting: noisy sine (period 12-40 steps, noise sd 0.1), one step ahead, {len(xt)} test series; "
          f"trained in {time.time() - t:.0f}s")
    doc = quantization_report(m, steps=1000, eval_data=(xt.numpy(), yt.numpy(), "regress"))
    print(f"{'mode':<14}{'bytes':>9}{'ratio':>7}{'RMSE':>10}{'vs fp32':>10}")
    base = doc["eval"]["fp32_pytorch"]
    print(f"{'PyTorch fp32':<14}{'':>9}{'':>7}{base:>10.4f}")
    for r in doc["rows"]:
        print(f"{r['mode']:<14}{r['bytes']:>9,}{r['ratio']:>7.3f}{r['metric']:>10.4f}"
              f"{100 * r['metric_delta'] / base:>+9.2f}%")


if __name__ == "__main__":
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        classification(Path(d))
    forecasting()
    sys.stdout.flush()
