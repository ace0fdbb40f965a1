"""Per-step streaming latency and chunk throughput, measured side by side in one run (batch 1, one thread).

    python benchmarks/bench_step.py [--hidden 128 256 512] [--steps 2000] [--chunk 4096] [--json out.json]

Rows, per hidden size H (input size D = H, one layer):
  torch cell        PyTorch eager QLLSTMCell.forward under no_grad
  session (body)    StreamingSession.step on the step-mode export, function body (native="off")
  session (native)  StreamingSession.step with the native op library (when built)
  c++ (body)        the C++ StreamingSession (runtime/include/qlstm_edge) stepping the same file, timed inside the
  c++ (native)      samples/cpp program (qlstm_edge_stream --bench), function body / native library; the gap to the
                    session rows is the Python overhead a device without Python saves
  raw ort (native)  InferenceSession.run on the same file: the session's own Python overhead is the gap
  ort LSTM          onnxruntime's built-in LSTM op (what torch.nn.LSTM exports to), one step per call
  floor             a one-node Identity graph on [1, H]: the cost of any onnxruntime call
and chunk throughput for the sequence graph (T = --chunk) against the built-in LSTM op over the same T.
The session and c++ rows are timed in interleaved rounds (median of 5). ``--lm`` adds the same four rows for a small
xLSTM LM (the official package's xLSTMLMModel, mLSTM + sLSTM blocks, E=64).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
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
from qlstm_edge.runtime import StreamingSession, native_lib, native_status

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime" / "native"))
import build as native_build  # noqa: E402


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


def cpp_sample():
    """The C++ sample program (built once per source change), or None with the reason printed."""
    try:
        return native_build.build_cpp_sample()
    except (native_build.NativeBuildError, OSError) as e:
        print(f"# no c++ rows: {e}")
        return None


def cpp_step_seconds(sample: Path, path: Path, x: np.ndarray, steps: int, native: bool, workdir: Path) -> float:
    """Seconds per C++ StreamingSession.step, timed inside the sample over ``steps`` steps of x [B, ...]."""
    npy = workdir / f"{path.stem}_x.npy"
    np.save(npy, x[:, None])
    cmd = [str(sample), str(path), str(npy), "--bench", str(steps), "--native", "on" if native else "off"]
    if native:
        cmd += ["--native-lib", str(native_lib.library_path())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.split("step_us")[1]) * 1e-6


def session_rows(path: Path, x: np.ndarray, steps: int, native: bool, sample, workdir: Path, repeats: int = 5) -> dict:
    """session (body / native) and c++ (body / native) seconds per step on one step-mode file, timed in interleaved
    rounds (one round times every side once): the median round of each."""
    sides = {}
    natives = [False, True] if native else [False]
    for nat in natives:
        s = StreamingSession(path, native="on" if nat else "off")
        s.step(x)
        sides[f"session ({'native' if nat else 'body'})"] = lambda s=s: per_call(lambda: s.step(x), steps)
    if sample is not None:
        for nat in natives:
            sides[f"c++ ({'native' if nat else 'body'})"] = lambda nat=nat: cpp_step_seconds(sample, path, x, steps,
                                                                                             nat, workdir)
    rounds = {name: [] for name in sides}
    for _ in range(repeats):
        for name, side in sides.items():
            rounds[name].append(side())
    return {name: float(np.median(times)) for name, times in rounds.items()}


def per_call(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


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


def measure(H: int, steps: int, chunk: int, workdir: Path, native: bool, sample) -> dict:
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
    r.update(session_rows(step_path, x1, steps, native, sample, workdir))
    if native:
        sess = StreamingSession(step_path, native="on")._e.sess
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


def measure_lm(steps: int, workdir: Path, native: bool, sample) -> dict:
    """The session and c++ step rows for a small xLSTM LM (the official package's model, exported in step mode)."""
    from bench_xlstm import lm

    torch.manual_seed(0)
    path = export_onnx(lm(64, 4, 2, [1]), workdir / "xlstm_lm_step.onnx", mode="step")
    x = np.array([7], np.int64)
    return {"model": "xLSTM LM E=64, mLSTM + sLSTM blocks", **session_rows(path, x, steps, native, sample, workdir)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--steps", type=int, default=2000, help="calls per timing repeat")
    ap.add_argument("--chunk", type=int, default=4096, help="T for the chunk-throughput rows")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--lm", action="store_true", help="also time a small xLSTM LM (needs the xlstm package)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    native = native_status()["available"]
    print(f"# {platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"batch 1, one thread; native library: {'yes' if native else 'no'}")
    sample = cpp_sample()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for H in args.hidden:
            rows.append(measure(H, args.steps, args.chunk, Path(d), native, sample))
        lm_row = measure_lm(args.steps, Path(d), native, sample) if args.lm else None
    step_cols = ["torch cell", "session (body)", "session (native)", "c++ (body)", "c++ (native)", "raw ort (native)",
                 "ort LSTM", "floor"]
    step_cols = [c for c in step_cols if c in rows[0]]
    print("\nper-step latency, microseconds")
    print(f"{'H':>5} " + " ".join(f"{c:>17}" for c in step_cols))
    for r in rows:
        print(f"{r['H']:>5} " + " ".join(f"{r[c] * 1e6:>17.2f}" for c in step_cols))
    if lm_row is not None:
        cols = [c for c in step_cols if c in lm_row]
        print(f"\n{lm_row['model']}: per-step latency, microseconds")
        print(" ".join(f"{c:>17}" for c in cols))
        print(" ".join(f"{lm_row[c] * 1e6:>17.2f}" for c in cols))
    for r in [*rows, *([lm_row] if lm_row else [])]:
        pairs = [(p, c) for p, c in (("session (body)", "c++ (body)"), ("session (native)", "c++ (native)")) if c in r]
        if pairs:
            print(f"python session / c++ ({r.get('model') or 'QL-LSTM H=' + str(r['H'])}): "
                  + ", ".join(f"{c[5:-1]} {r[p] / r[c]:.2f}x" for p, c in pairs))
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
        args.json.write_text(json.dumps(rows + ([lm_row] if lm_row else []), indent=2))


if __name__ == "__main__":
    main()
