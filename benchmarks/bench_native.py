"""Native qlstm_edge kernels vs the ONNX function body vs onnxruntime's built-in LSTM.

Batch 1, one intra-op thread, D = H. Prints one table; every ratio is measured in this run.

  step:     per-call latency of a one-node QLLSTMCell graph (weights as initializers, state fed
            back each call) with the native kernel, with the function body, and of a one-node
            Identity graph on [1, H] (the floor of an onnxruntime call from Python).
  sequence: T steps in one call: QLLSTMSequence native, its function body (Scan), and the
            standard ONNX LSTM op with the same H.
  quantized: per weight mode (fp32, fp16, int8, int8-dynamic, int4; exporters/quantize.py), the
            native step and sequence against native fp32 and against the mode's function body.
GFLOP/s counts 2*(D+H)*H for the shared matmul plus GATE_FLOPS_PER_UNIT*H per step for QL-LSTM,
and 8*(D+H)*H + GATE_FLOPS_PER_UNIT*H per step for LSTM (four gate matmuls).

    python benchmarks/bench_native.py [--hidden 128 256 512] [--seq-len 4096] [--isa avx512vnni]
                                      [--modes fp32 int8-dynamic ...] [--quant-seq-len 512]
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
from helpers import (INPUTS, IR_VERSION, OPSETS, QUANT_MODES, op_model, quant_op_model,  # noqa: E402
                     quantize_feeds, random_inputs)

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


def identity_state_model(D, H):
    """The floor with the cell's call arity: x [1, D], h, c [1, H] in; h, c copied out."""
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["h"], ["h_new"]), helper.make_node("Identity", ["c"], ["c_new"])], "identity3",
        [vi("x", TensorProto.FLOAT, [1, D]), vi("h", TensorProto.FLOAT, [1, H]), vi("c", TensorProto.FLOAT, [1, H])],
        [vi("h_new", TensorProto.FLOAT, [1, H]), vi("c_new", TensorProto.FLOAT, [1, H])])
    return helper.make_model(graph, opset_imports=OPSETS[:1], ir_version=IR_VERSION)


def session(model, native):
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
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
    ident3 = session(identity_state_model(D, H), False)
    x = feeds["h"]
    return {
        "native": best_of(stepper(native), repeats),
        "function": best_of(stepper(func), repeats),
        "identity": best_of(lambda: ident.run(None, {"x": x}), repeats),
        "identity3": best_of(stepper(ident3), repeats),
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


def quant_models(mode, sequence, D, H, T, seed):
    """(model, dynamic feeds) for one node in weight mode `mode` ("fp32" or a QUANT_MODES entry)."""
    f = random_inputs(1, T if sequence else None, D, H, seed=seed)
    if mode == "fp32":
        return with_initializers(op_model(sequence, static_shape=(1, T or 1, D, H)), f), \
            {n: f[n] for n in ("x", "h", "c")}
    qf = quantize_feeds(f, mode, 32)
    consts = {n: qf[n] for n in INPUTS[3:] + (["W_x_scale", "W_h_scale"] if mode != "fp16" else [])}
    return quant_op_model(sequence, mode, 32, constants=consts), {n: qf[n] for n in ("x", "h", "c")}


def bench_quant(H, T, modes, repeats):
    """{mode: {step_native, step_function, seq_native}} seconds per call."""
    out = {}
    for mode in modes:
        model, feeds = quant_models(mode, False, H, H, None, seed=H)
        r = {}
        for native in (True, False):
            sess = session(model, native)
            st = dict(feeds)

            def call(sess=sess, st=st):
                h, c = sess.run(None, st)
                st["h"], st["c"] = h, c
            r["step_native" if native else "step_function"] = best_of(call, repeats)
        model, feeds = quant_models(mode, True, H, H, T, seed=H + 1)
        sess = session(model, True)
        r["seq_native"] = best_of(lambda sess=sess, feeds=feeds: sess.run(None, feeds), repeats)
        out[mode] = r
    return out


def print_quant(rows, T):
    print(f"\nweight modes, native kernels (batch 1; step: one QLLSTMCell call, us; sequence: T = {T} steps "
          "in one call, us per step)")
    print(f"{'H':>5} {'mode':>13} {'step nat':>9} {'step func':>10} {'func/nat':>9} {'fp32/mode':>10} "
          f"{'seq/step':>9} {'fp32/mode':>10} {'GOP/s':>7}")
    for r in rows:
        H, q = r["H"], r["quant"]
        base = q.get("fp32")
        for mode, m in q.items():
            per_step = m["seq_native"] / T
            ops = 2 * (2 * H) * H + GATE_FLOPS_PER_UNIT * H
            print(f"{H:>5} {mode:>13} {m['step_native'] * 1e6:>9.2f} {m['step_function'] * 1e6:>10.2f} "
                  f"{m['step_function'] / m['step_native']:>9.2f} "
                  f"{(base['step_native'] / m['step_native'] if base else float('nan')):>10.2f} "
                  f"{per_step * 1e6:>9.2f} {(base['seq_native'] / m['seq_native'] if base else float('nan')):>10.2f} "
                  f"{ops / per_step / 1e9:>7.1f}")
    print("  fp32/mode > 1: the mode is faster than native fp32; GOP/s: (multiply-adds x 2 + gate ops) per "
          "second in the sequence run")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--isa", choices=["auto", *native_lib.ISA_CHOICES], default=None,
                    help="force the native CPU path (sets QLSTM_EDGE_NATIVE_ISA)")
    ap.add_argument("--no-function-sequence", action="store_true", help="skip the slow Scan function body run")
    ap.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    ap.add_argument("--modes", nargs="*", default=["fp32", *QUANT_MODES], choices=["fp32", *QUANT_MODES],
                    help="weight modes of the quantized table (none: skip it)")
    ap.add_argument("--quant-seq-len", type=int, default=512)
    ap.add_argument("--skip-fp32-tables", action="store_true", help="only the weight-mode table")
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
        row = {"H": H}
        if not args.skip_fp32_tables:
            row["step"] = bench_step(H, args.repeats)
            row["sequence"] = bench_sequence(H, args.seq_len, args.repeats, not args.no_function_sequence)
        if args.modes:
            row["quant"] = bench_quant(H, args.quant_seq_len, args.modes, args.repeats)
        rows.append(row)
    if args.modes:
        print_quant(rows, args.quant_seq_len)
    if args.skip_fp32_tables:
        if args.json:
            print(json.dumps(rows, indent=1))
        return 0

    print("\nper-step latency, one QLLSTMCell node per call (us)")
    print(f"{'H':>5} {'native':>9} {'function':>9} {'identity':>9} {'ident3':>9} {'func/nat':>9} {'nat/id':>7} "
          f"{'nat/id3':>8} {'nat-id3':>8} {'GFLOP/s*':>9}")
    for r in rows:
        H, s = r["H"], r["step"]
        flops = 2 * (2 * H) * H + GATE_FLOPS_PER_UNIT * H
        kernel = max(s["native"] - s["identity3"], 1e-9)
        print(f"{H:>5} {s['native'] * 1e6:>9.2f} {s['function'] * 1e6:>9.2f} {s['identity'] * 1e6:>9.2f} "
              f"{s['identity3'] * 1e6:>9.2f} {s['function'] / s['native']:>9.2f} {s['native'] / s['identity']:>7.2f} "
              f"{s['native'] / s['identity3']:>8.2f} {kernel * 1e6:>8.2f} {flops / kernel / 1e9:>9.2f}")
    print("  identity: one Identity node, 1 input / 1 output; ident3: the cell's arity (x, h, c in; h, c out,\n"
          "  state fed back like the native run). * GFLOP/s of the native step minus the ident3 floor")

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
