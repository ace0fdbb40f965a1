"""PR-LSTM: the parallel sequence graph against streaming it step by step, QL-LSTM and onnxruntime's LSTM.

Batch 1, one intra-op thread, D = H, every graph run through plain onnxruntime, states fed as zeros / fed
back; the PR-LSTM and QL-LSTM files once through their function bodies and once with the native op library
registered (--paths). Prints two tables per path; every ratio is measured in this run.

  whole sequence (ms per sequence of T tokens):
    PR seq    one call of the PR-LSTM sequence-mode graph (PRLSTMSequence: O(log T) Loop levels)
    PR step   the PR-LSTM step-mode graph called T times, state fed back (exact streaming)
    QL seq    one call of a 1-layer QL-LSTM sequence-mode graph (QLLSTMSequence: a Scan over T)
    ORT LSTM  one call of a graph with onnxruntime's built-in LSTM op (built with onnx.helper)
  streaming (us per token over a stream of T tokens): PR-LSTM step graph vs QL-LSTM step graph.

PR-LSTM is PRLSTM(H, H, num_layers=2) (binary merge + one unary refinement), stack of 24 levels.

    python benchmarks/bench_prlstm.py [--hidden 128] [--seq-len 256 1024 4096] [--repeats 5]
                                      [--paths body native]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from qlstm_edge import QLLSTM
from qlstm_edge.exporters import export_onnx
from qlstm_edge.families.prlstm import PRLSTM
from qlstm_edge.runtime import native_lib
from qlstm_edge.runtime.metadata import METADATA_KEY, ModelMetadata


def session(path_or_bytes, native: bool = False):
    so = ort.SessionOptions()
    if native:
        native_lib.register(so)
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes, so,
                                providers=["CPUExecutionProvider"])


class Exported:
    """An exported file run directly through onnxruntime, states fed from the metadata."""

    def __init__(self, path: Path, native: bool):
        self.sess = session(path, native)
        self.meta = ModelMetadata.from_json(self.sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
        self.outputs = [self.meta.outputs[0].name] + [s.output for s in self.meta.states]

    def zero_state(self):
        return {s.input: np.full([1 if d == "batch" else d for d in s.shape], s.init, s.dtype)
                for s in self.meta.states}

    def run_sequence(self, x):
        feed = self.zero_state()
        feed["x"] = x
        return self.sess.run(self.outputs[:1], feed)[0]

    def run_steps(self, x):
        feed = self.zero_state()
        inputs = [s.input for s in self.meta.states]
        run, outputs = self.sess.run, self.outputs
        for t in range(x.shape[1]):
            feed["x"] = x[:, t]
            outs = run(outputs, feed)
            feed.update(zip(inputs, outs[1:]))
        return outs[0]


def lstm_session(T, H, seed=0):
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(2 * H)
    inits = [numpy_helper.from_array((rng.standard_normal((1, 4 * H, H)) * s).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((1, 4 * H, H)) * s).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((1, 8 * H)) * 0.1).astype(np.float32), "B")]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=H)], "lstm",
        [vi("X", TensorProto.FLOAT, [T, 1, H])], [vi("Y", TensorProto.FLOAT, [T, 1, 1, H])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return session(model.SerializeToString())


def interleaved_medians(fns, repeats):
    """Median seconds per call of each function; the functions take turns, so load changes hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def print_tables(rows, path: str) -> None:
    print(f"\n[{path}] whole sequence (ms per sequence of T tokens)")
    print(f"{'T':>6} {'PR seq':>9} {'PR step':>9} {'QL seq':>9} {'ORT LSTM':>9} {'PRstep/PRseq':>13} "
          f"{'PRseq/QLseq':>12} {'PRseq/LSTM':>11}")
    for r in rows:
        print(f"{r['T']:>6} {r['pr_seq'] * 1e3:>9.2f} {r['pr_step'] * 1e3:>9.2f} {r['ql_seq'] * 1e3:>9.2f} "
              f"{r['lstm'] * 1e3:>9.2f} {r['pr_step'] / r['pr_seq']:>13.2f} {r['pr_seq'] / r['ql_seq']:>12.2f} "
              f"{r['pr_seq'] / r['lstm']:>11.2f}")
    print(f"[{path}] streaming (us per token, averaged over a stream of T tokens)")
    print(f"{'T':>6} {'PR step':>9} {'QL step':>9} {'PR/QL':>7} {'PR seq/token':>13}")
    for r in rows:
        T = r["T"]
        print(f"{T:>6} {r['pr_step'] / T * 1e6:>9.1f} {r['ql_step'] / T * 1e6:>9.1f} "
              f"{r['pr_step'] / r['ql_step']:>7.2f} {r['pr_seq'] / T * 1e6:>13.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seq-len", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paths", nargs="+", choices=["body", "native"], default=["body", "native"],
                    help="run the exported files through their function bodies and/or the native op library")
    args = ap.parse_args(argv)
    if "native" in args.paths and not native_lib.status()["available"]:
        ap.error(f"--paths native: the native op library is unavailable ({native_lib.status()['reason']})")
    H = args.hidden
    torch.manual_seed(0)
    pr, ql = PRLSTM(H, H, num_layers=2).eval(), QLLSTM(H, H, num_layers=1).eval()
    print(f"onnxruntime {ort.__version__}, CPU, batch 1, 1 intra-op thread, D = H = {H}, "
          f"median of {args.repeats} interleaved runs")
    with tempfile.TemporaryDirectory() as d:
        files = {(name, mode): export_onnx(model, Path(d) / f"{name}_{mode}.onnx", mode=mode)
                 for name, model in (("pr", pr), ("ql", ql)) for mode in ("step", "sequence")}
        for path in args.paths:
            g = {key: Exported(f, native=path == "native") for key, f in files.items()}
            rows = []
            for T in args.seq_len:
                x = np.random.default_rng(T).standard_normal((1, T, H)).astype(np.float32)
                lstm = lstm_session(T, H)
                x_lstm = np.ascontiguousarray(x.transpose(1, 0, 2))
                # the two PR-LSTM paths compute the same outputs
                assert np.abs(g["pr", "sequence"].run_sequence(x)[:, -1] - g["pr", "step"].run_steps(x)).max() < 1e-5
                r = interleaved_medians({"pr_seq": lambda: g["pr", "sequence"].run_sequence(x),
                                         "pr_step": lambda: g["pr", "step"].run_steps(x),
                                         "ql_seq": lambda: g["ql", "sequence"].run_sequence(x),
                                         "ql_step": lambda: g["ql", "step"].run_steps(x),
                                         "lstm": lambda: lstm.run(None, {"X": x_lstm})}, args.repeats)
                r["T"] = T
                rows.append(r)
            print_tables(rows, "function bodies" if path == "body" else "native op library")
    return 0


if __name__ == "__main__":
    sys.exit(main())
