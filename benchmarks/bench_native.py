"""Native qlstm_edge kernels vs the ONNX function body vs onnxruntime's built-in LSTM.

Batch 1, one intra-op thread, D = H. Prints one table; every ratio is measured in this run.

  step:     per-call latency of a one-node QLLSTMCell graph (weights as initializers, state fed
            back each call) with the native kernel, with the function body, and of a one-node
            Identity graph on [1, H] (the floor of an onnxruntime call from Python).
  sequence: T steps in one call: QLLSTMSequence native, its function body (Scan), and the
            standard ONNX LSTM op with the same H.
GFLOP/s counts 2*(D+H)*H for the shared matmul plus GATE_FLOPS_PER_UNIT*H per step for QL-LSTM,
and 8*(D+H)*H + GATE_FLOPS_PER_UNIT*H per step for LSTM (four gate matmuls).

    python benchmarks/bench_native.py [--hidden 128 256 512] [--seq-len 4096] [--isa avx512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from native_graphs import INPUTS, OPSETS, IR_VERSION, op_model, random_inputs  # noqa: E402

from qlstm_edge.runtime import native_lib  # noqa: E402

GATE_FLOPS_PER_UNIT = 20
WEIGHTS = INPUTS[3:]


def with_initializers(model, feeds):
    """Move the weight inputs of a one-node op model into initializers."""
    graph = model.graph
    keep = [vi for vi in graph.input if vi.name not in WEIGHTS]
    del graph.input[:]
    graph.input.extend(keep)
    graph.initializer.extend(numpy_helper.from_array(feeds[n], n) for n in WEIGHTS)
    return model


def lstm_model(T, D, H, seed=0):
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(D + H)
    inits = [
        numpy_helper.from_array((rng.standard_normal((1, 4 * H, D)) * s).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((1, 4 * H, H)) * s).astype(np.float32), "R"),
        numpy_helper.from_array((rng.standard_normal((1, 8 * H)) * 0.1).astype(np.float32), "B"),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=H)],
        "lstm", [vi("X", TensorProto.FLOAT, [T, 1, D]), vi("h0", TensorProto.FLOAT, [1, 1, H]),
                 vi("c0", TensorProto.FLOAT, [1, 1, H])],
        [vi("Y", TensorProto.FLOAT, None), vi("Y_h", TensorProto.FLOAT, None), vi("Y_c", TensorProto.FLOAT, None)],
        initializer=inits)
    return helper.make_model(graph, opset_imports=OPSETS[:1], ir_version=IR_VERSION)


def identity_model(H):
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [vi("x", TensorProto.FLOAT, [1, H])], [vi("y", TensorProto.FLOAT, [1, H])])
    return helper.make_model(graph, opset_imports=OPSETS[:1], ir_version=IR_VERSION)


def session(model, native):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if native:
        native_lib.register(so)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def best_of(fn, repeats):
    """Median seconds per call over `repeats` timed batches (calls per batch auto-sized)."""
    fn()
    n, t0 = 1, time.perf_counter()
    while True:
        for _ in range(n):
            fn()
        el = time.perf_counter() - t0
        if el > 0.05:
            break
        n *= 2
        t0 = time.perf_counter()
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per.append((time.perf_counter() - t0) / n)
    return statistics.median(per)


def bench_step(H, repeats):
    D = H
    feeds = random_inputs(1, None, D, H, seed=H)
    state = {"x": feeds["x"], "h": feeds["h"], "c": feeds["c"]}

    def stepper(sess):
        st = dict(state)

        def call():
            h, c = sess.run(None, st)
            st["h"], st["c"] = h, c
        return call

    native = session(with_initializers(op_model(False, static_shape=(1, 1, D, H)), feeds), True)
    func = session(with_initializers(op_model(False, static_shape=(1, 1, D, H)), feeds), False)
    ident = session(identity_model(H), False)
    x = feeds["h"]
    return {
        "native": best_of(stepper(native), repeats),
        "function": best_of(stepper(func), repeats),
        "identity": best_of(lambda: ident.run(None, {"x": x}), repeats),
    }


def bench_sequence(H, T, repeats, with_function):
    D = H
    feeds = random_inputs(1, T, D, H, seed=H + 1)
    dyn = {"x": feeds["x"], "h": feeds["h"], "c": feeds["c"]}
    out = {}
    native = session(with_initializers(op_model(True, static_shape=(1, T, D, H)), feeds), True)
    out["native"] = best_of(lambda: native.run(None, dyn), repeats)
    if with_function:
        func = session(with_initializers(op_model(True, static_shape=(1, T, D, H)), feeds), False)
        out["function"] = best_of(lambda: func.run(None, dyn), max(1, repeats // 2))
    lstm = session(lstm_model(T, D, H), False)
    lf = {"X": np.ascontiguousarray(feeds["x"].transpose(1, 0, 2)), "h0": feeds["h"][None], "c0": feeds["c"][None]}
    out["lstm"] = best_of(lambda: lstm.run(None, lf), repeats)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--isa", choices=["auto", *native_lib.ISA_CHOICES], default=None,
                    help="force the native CPU path (sets QLSTM_EDGE_NATIVE_ISA)")
    ap.add_argument("--no-function-sequence", action="store_true", help="skip the slow Scan function body run")
    ap.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    args = ap.parse_args(argv)
    if args.isa:
        os.environ[native_lib.ISA_ENV] = args.isa
    st = native_lib.status()
    if not st["available"]:
        print(f"native op library unavailable: {st['reason']}", file=sys.stderr)
        return 1
    print(f"onnxruntime {ort.__version__}, native path {st['isa']} ({st['path']}), batch 1, 1 intra-op thread, D = H, "
          f"T = {args.seq_len}")
    rows = []
    for H in args.hidden:
        s = bench_step(H, args.repeats)
        q = bench_sequence(H, args.seq_len, args.repeats, not args.no_function_sequence)
        rows.append({"H": H, "step": s, "sequence": q})

    print("\nper-step latency, one QLLSTMCell node per call (us)")
    print(f"{'H':>5} {'native':>9} {'function':>9} {'identity':>9} {'func/nat':>9} {'nat-floor':>10} {'GFLOP/s*':>9}")
    for r in rows:
        H, s = r["H"], r["step"]
        flops = 2 * (2 * H) * H + GATE_FLOPS_PER_UNIT * H
        kernel = max(s["native"] - s["identity"], 1e-9)
        print(f"{H:>5} {s['native'] * 1e6:>9.2f} {s['function'] * 1e6:>9.2f} {s['identity'] * 1e6:>9.2f} "
              f"{s['function'] / s['native']:>9.2f} {kernel * 1e6:>10.2f} {flops / kernel / 1e9:>9.2f}")
    print("  * GFLOP/s of the native step with the Identity-call floor subtracted")

    T = args.seq_len
    print(f"\nsequence, T = {T} steps in one call (ms per call; GFLOP/s; steps/s)")
    print(f"{'H':>5} {'native':>9} {'function':>9} {'ORT LSTM':>9} {'LSTM/nat':>9} {'func/nat':>9} "
          f"{'nat GF/s':>9} {'LSTM GF/s':>10} {'nat steps/s':>12}")
    for r in rows:
        H, q = r["H"], r["sequence"]
        ql = T * (2 * (2 * H) * H + GATE_FLOPS_PER_UNIT * H)
        ls = T * (8 * (2 * H) * H + GATE_FLOPS_PER_UNIT * H)
        fn = q.get("function")
        print(f"{H:>5} {q['native'] * 1e3:>9.2f} {(fn * 1e3 if fn else float('nan')):>9.2f} {q['lstm'] * 1e3:>9.2f} "
              f"{q['lstm'] / q['native']:>9.2f} {(fn / q['native'] if fn else float('nan')):>9.2f} "
              f"{ql / q['native'] / 1e9:>9.2f} {ls / q['lstm'] / 1e9:>10.2f} {T / q['native']:>12.0f}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
