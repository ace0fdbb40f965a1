"""Per-token StreamingSession.step latency of PR-LSTM and xLSTM models: native kernels vs function bodies.

Batch 1, one thread everywhere (onnxruntime intra-op threads 1). Each model is exported in step mode, in
float32 and in each --quantize mode (for the models whose custom ops hold weights: PR-LSTM, and xLSTMLM,
whose sLSTM blocks have R), and the same file is streamed with native="on" (the fused C++ kernels of the
native op library) and native="off" (the ops' ONNX function bodies), timed in this run, interleaved, median of
--repeats rounds of --steps tokens. The xLSTM models are bench_xlstm.py's; that script compares them with the
official package's own step.

    python benchmarks/bench_native_families.py [--steps 200] [--repeats 5] [--lib PATH] [--json]
        [--quantize fp16,int8,int8-dynamic,int4 | none]

--lib: the library to use (sets $QLSTM_EDGE_NATIVE_LIB), default runtime/libqlstm_edge_ops.so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from qlstm_edge.exporters import export_onnx
from qlstm_edge.families.prlstm import PRLSTM
from qlstm_edge.runtime import StreamingSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_xlstm import MODELS as XLSTM_MODELS, VOCAB, time_per_token  # noqa: E402
from xlstm.xlstm_large.model import xLSTMLarge  # noqa: E402

from qlstm_edge.exporters.quantize import MODES as QUANT_MODES  # noqa: E402

PRLSTM_MODELS = {
    "PR-LSTM D=32 H=64 2 layers": lambda: PRLSTM(32, 64, num_layers=2, stack_levels=24),
    "PR-LSTM D=64 H=128 2 layers": lambda: PRLSTM(64, 128, num_layers=2, stack_levels=24),
    "PR-LSTM D=128 H=256 3 layers": lambda: PRLSTM(128, 256, num_layers=3, stack_levels=24),
}


def onnx_inputs(model, steps: int, tokens: bool) -> list:
    rng = np.random.default_rng(0)
    if tokens:
        return [np.array([t], np.int64) for t in rng.integers(0, VOCAB, steps)]
    return list(rng.standard_normal((steps, 1, model.input_size)).astype(np.float32))


def bench(name, model, mode, steps: int, repeats: int, workdir: Path, tokens: bool) -> dict:
    """Step latency of the ``mode`` export (None: float32), native kernels vs function bodies (same file)."""
    path = export_onnx(model.eval(), workdir / f"model_{mode}.onnx", mode="step", quantize=mode)
    sides = {"native": StreamingSession(path, threads=1, native="on"),
             "body": StreamingSession(path, threads=1, native="off")}
    assert sides["native"].op_path == "native" and sides["body"].op_path == "function-body"
    inputs = onnx_inputs(model, steps, tokens)
    times = {k: [] for k in sides}
    for s in sides.values():  # warm-up
        for x in inputs[:10]:
            s.step(x)
    for _ in range(repeats):
        for k, s in sides.items():
            times[k].append(time_per_token(s.step, inputs))
    row = {"model": name, "parameters": sum(t.numel() for t in model.parameters()), "quantize": mode or "fp32",
           **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}}
    row["native_vs_body"] = row["body_ms"] / row["native_ms"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lib", help="native op library to use (default: the built runtime/libqlstm_edge_ops.so)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quantize", default=",".join(QUANT_MODES),
                    help="comma-separated quantization modes of the second table, or 'none'")
    args = ap.parse_args()
    modes = [] if args.quantize == "none" else args.quantize.split(",")
    unknown = sorted(set(modes) - set(QUANT_MODES))
    if unknown:
        ap.error(f"--quantize: unknown mode(s) {unknown}; choose from {', '.join(QUANT_MODES)} or none")
    if args.lib:
        os.environ["QLSTM_EDGE_NATIVE_LIB"] = str(Path(args.lib).resolve())
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    models = {**{k: (v, False) for k, v in PRLSTM_MODELS.items()}, **{k: (v, True) for k, v in XLSTM_MODELS.items()}}
    with tempfile.TemporaryDirectory() as d:
        for name, (make, tokens) in models.items():
            model = make()
            weighted = not isinstance(model, xLSTMLarge)  # xLSTMLarge's cells are mLSTMs: no weights in the ops
            for mode in [None, *(modes if weighted else [])]:
                rows.append(bench(name, model, mode, args.steps, args.repeats, Path(d), tokens))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"per-token StreamingSession.step latency, batch 1, 1 thread, {args.steps} tokens x {args.repeats} rounds "
          f"(median); native kernels vs function bodies, same file")
    print(f"{'model':<36} {'params':>10} {'quantize':<13} {'native':>10} {'body':>10} {'native/body':>12}")
    for r in rows:
        print(f"{r['model']:<36} {r['parameters']:>10,} {r['quantize']:<13} {r['native_ms']:>7.3f} ms "
              f"{r['body_ms']:>7.3f} ms {r['native_vs_body']:>11.1f}x")

if __name__ == "__main__":
    main()
