"""Per-step streaming latency and chunk throughput, measured side by side in one run (batch 1, one thread).

    python benchmarks/bench_step.py [--hidden 128 256 512] [--steps 2000] [--chunk 4096] [--json out.json]

Rows, per hidden size H (input size D = H, one layer):
  torch cell        PyTorch eager QLLSTMCell.forward under no_grad
  session (body)    StreamingSession.step on the step-mode export, function body (native="off")
  session (native)  StreamingSession.step with the native op library (when built)
  raw ort (native)  InferenceSession.run on the same file: the session's own Python overhead is the gap
  ort LSTM          onnxruntime's built-in LSTM op (what torch.nn.LSTM exports to), one step per call
  floor             a one-node Identity graph on [1, H]: the cost of any onnxruntime call
and chunk throughput for the sequence graph (T = --chunk) against the built-in LSTM op over the same T.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from qlstm_edge import QLLSTM
from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import StreamingSession, native_status


def best_of(fn, n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean seconds per call over ``n`` calls."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return float(np.median(times))


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def lstm_graph(H: int, D: int, rng) -> onnx.ModelProto:
    """onnxruntime's built-in LSTM op ([T, B, D] input, initial and final h/c), random weights."""
    w = (rng.standard_normal((1, 4 * H, D)) * H ** -0.5).astype(np.float32)
    r = (rng.standard_normal((1, 4 * H, H)) * H ** -0.5).astype(np.float32)
    b = np.zeros((1, 8 * H), np.float32)
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["Y", "h", "c"], hidden_size=H)
    g = helper.make_graph([node], "lstm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, D]),
                           helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 1, H]),
                           helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, 1, H])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, 1, H]),
                           helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, H]),
                           helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1, H])],
                          [onnx.numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def identity_graph(H: int) -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "floor",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, H])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, H])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def measure(H: int, steps: int, chunk: int, workdir: Path, native: bool) -> dict:
    rng = np.random.default_rng(H)
    torch.manual_seed(H)
    rnn = QLLSTM(H, H).eval()
    cell = rnn.cells[0]
    step_path = export_onnx(rnn, workdir / f"step_{H}.onnx", mode="step")
    seq_path = export_onnx(rnn, workdir / f"seq_{H}.onnx", mode="sequence")
    x1 = rng.standard_normal((1, H)).astype(np.float32)
    xt = torch.from_numpy(x1)
    st = (torch.zeros(1, H), torch.zeros(1, H))
    r = {"H": H}

    def torch_step():
        with torch.no_grad():
            cell(xt, st)

    r["torch cell"] = best_of(torch_step, steps)
    body = StreamingSession(step_path, native="off")
    r["session (body)"] = best_of(lambda: body.step(x1), steps)
    if native:
        nat = StreamingSession(step_path, native="on")
        r["session (native)"] = best_of(lambda: nat.step(x1), steps)
        sess = nat._e.sess
        feed = {"x": x1, "l0.h.in": np.zeros((1, H), np.float32), "l0.c.in": np.zeros((1, H), np.float32)}
        r["raw ort (native)"] = best_of(lambda: sess.run(None, feed), steps)
    lstm = ort_session(lstm_graph(H, H, rng))
    h0 = np.zeros((1, 1, H), np.float32)
    x_l = x1[None]
    r["ort LSTM"] = best_of(lambda: lstm.run(None, {"x": x_l, "h0": h0, "c0": h0}), steps)
    floor = ort_session(identity_graph(H))
    r["floor"] = best_of(lambda: floor.run(None, {"x": x1}), steps)

    xs = rng.standard_normal((1, chunk, H)).astype(np.float32)
    reps = max(1, 2000 // chunk)
    seq_body = StreamingSession(seq_path, native="off")
    r["chunk body"] = best_of(lambda: (seq_body.reset(), seq_body.run(xs)), reps, 3) / chunk
    if native:
        seq_nat = StreamingSession(seq_path, native="on")
        r["chunk native"] = best_of(lambda: (seq_nat.reset(), seq_nat.run(xs)), reps, 3) / chunk
    x_tb = np.ascontiguousarray(xs.transpose(1, 0, 2))
    r["chunk ort LSTM"] = best_of(lambda: lstm.run(None, {"x": x_tb, "h0": h0, "c0": h0}), reps, 3) / chunk
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--steps", type=int, default=2000, help="calls per timing repeat")
    ap.add_argument("--chunk", type=int, default=4096, help="T for the chunk-throughput rows")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    native = native_status()["available"]
    print(f"# {platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"batch 1, one thread; native library: {'yes' if native else 'no'}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for H in args.hidden:
            rows.append(measure(H, args.steps, args.chunk, Path(d), native))
    step_cols = ["torch cell", "session (body)", "session (native)", "raw ort (native)", "ort LSTM", "floor"]
    step_cols = [c for c in step_cols if c in rows[0]]
    print("\nper-step latency, microseconds")
    print(f"{'H':>5} " + " ".join(f"{c:>17}" for c in step_cols))
    for r in rows:
        print(f"{r['H']:>5} " + " ".join(f"{r[c] * 1e6:>17.2f}" for c in step_cols))
    best = "session (native)" if native else "session (body)"
    print(f"\nratios ({best} as the unit)")
    print(f"{'H':>5} {'torch/session':>14} {'LSTM/session':>13} {'session/floor':>14}"
          + (f" {'body/native':>12} {'session/raw':>12}" if native else ""))
    for r in rows:
        line = (f"{r['H']:>5} {r['torch cell'] / r[best]:>14.2f} {r['ort LSTM'] / r[best]:>13.2f} "
                f"{r[best] / r['floor']:>14.2f}")
        if native:
            line += f" {r['session (body)'] / r[best]:>12.2f} {r[best] / r['raw ort (native)']:>12.2f}"
        print(line)
    chunk_cols = [c for c in ("chunk body", "chunk native", "chunk ort LSTM") if c in rows[0]]
    print(f"\nchunk throughput, T = {args.chunk}: microseconds per step (and LSTM / QL-LSTM ratio)")
    print(f"{'H':>5} " + " ".join(f"{c:>15}" for c in chunk_cols) + f" {'LSTM/best':>10}")
    for r in rows:
        best_chunk = min(r[c] for c in chunk_cols if c != "chunk ort LSTM")
        print(f"{r['H']:>5} " + " ".join(f"{r[c] * 1e6:>15.3f}" for c in chunk_cols)
              + f" {r['chunk ort LSTM'] / best_chunk:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
