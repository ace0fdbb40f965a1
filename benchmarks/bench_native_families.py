"""Per-token StreamingSession.step latency of PR-LSTM and xLSTM models: native kernels vs function bodies.

Batch 1, one thread everywhere (torch.set_num_threads(1); onnxruntime intra-op threads 1). Each model is
exported in step mode and streamed with native="on" (the fused C++ kernels of the native op library) and
native="off" (the ops' ONNX function bodies); for xLSTM models also the official package's own recurrent
step (``xLSTMLMModel.step``, ``xLSTMLarge.forward(x, state)``; bench_xlstm.py builds the same models).
All sides are timed in this run, interleaved, median of --repeats rounds of --steps tokens.
A second table times the quantized exports (exporters/quantize.py modes) of the models whose custom ops hold
weights (PR-LSTM; xLSTMLM, whose sLSTM blocks have R): per mode, the same file with native="on" and "off".

    python benchmarks/bench_native_families.py [--steps 200] [--repeats 5] [--lib PATH] [--json]
        [--quantize fp16,int8,int8-dynamic,int4 | none] [--fp32 / --no-fp32]

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
from bench_xlstm import MODELS as XLSTM_MODELS, VOCAB, package_stepper, time_per_token  # noqa: E402

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


def bench_quantized(name, model, mode: str, steps: int, repeats: int, workdir: Path, tokens: bool) -> dict:
    """Step latency of the ``mode`` export, native kernels vs function bodies (same file, interleaved rounds)."""
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
    row = {"model": name, "quantize": mode, **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}}
    row["native_vs_body"] = row["body_ms"] / row["native_ms"]
    return row


def bench(name, model, steps: int, repeats: int, workdir: Path, package: bool) -> dict:
    path = export_onnx(model.eval(), workdir / "model.onnx", mode="step")
    native = StreamingSession(path, threads=1, native="on")
    body = StreamingSession(path, threads=1, native="off")
    assert native.op_path == "native" and body.op_path == "function-body"
    inputs = onnx_inputs(model, steps, tokens=package)
    if package:
        torch_inputs = [torch.tensor([[int(x[0])]]) for x in inputs]
        pkg = package_stepper(model)
    sides = {"native": native.step, "body": body.step}
    if package:
        sides["package"] = pkg
    times = {k: [] for k in sides}
    with torch.no_grad():
        for k, fn in sides.items():  # warm-up
            for x in (torch_inputs if k == "package" else inputs)[:10]:
                fn(x)
        for _ in range(repeats):
            for k, fn in sides.items():
                times[k].append(time_per_token(fn, torch_inputs if k == "package" else inputs))
    row = {"model": name, "parameters": sum(t.numel() for t in model.parameters())}
    row.update({f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()})
    row["native_vs_body"] = row["body_ms"] / row["native_ms"]
    if package:
        row["native_vs_package"] = row["package_ms"] / row["native_ms"]
        row["body_vs_package"] = row["package_ms"] / row["body_ms"]
    return row


def print_fp32(rows, args):
    print(f"per-token StreamingSession.step latency, batch 1, 1 thread, {args.steps} tokens x {args.repeats} "
          f"rounds (median)")
    print(f"{'model':<36} {'params':>10} {'native':>10} {'body':>10} {'package':>10} {'native/body':>12} "
          f"{'vs package':>17}")
    for r in rows:
        pkg = f"{r['package_ms']:>7.3f} ms" if "package_ms" in r else f"{'-':>10}"
        vs = (f"{r['native_vs_package']:>5.1f}x (body {r['body_vs_package']:.1f}x)" if "package_ms" in r
              else f"{'-':>17}")
        print(f"{r['model']:<36} {r['parameters']:>10,} {r['native_ms']:>7.3f} ms {r['body_ms']:>7.3f} ms {pkg} "
              f"{r['native_vs_body']:>11.1f}x {vs}")
    print("speed-ups: how many times faster native is than the function bodies, and than the package's step")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lib", help="native op library to use (default: the built runtime/libqlstm_edge_ops.so)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quantize", default=",".join(QUANT_MODES),
                    help="comma-separated quantization modes of the second table, or 'none'")
    ap.add_argument("--fp32", action=argparse.BooleanOptionalAction, default=True,
                    help="the float32 table with the package's step (default on)")
    args = ap.parse_args()
    modes = [] if args.quantize == "none" else args.quantize.split(",")
    unknown = sorted(set(modes) - set(QUANT_MODES))
    if unknown:
        ap.error(f"--quantize: unknown mode(s) {unknown}; choose from {', '.join(QUANT_MODES)} or none")
    if args.lib:
        os.environ["QLSTM_EDGE_NATIVE_LIB"] = str(Path(args.lib).resolve())
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows, qrows = [], []
    quantized_models = {**{k: (v, False) for k, v in PRLSTM_MODELS.items()},
                        **{k: (v, True) for k, v in XLSTM_MODELS.items() if k.startswith("xLSTMLM")}}
    with tempfile.TemporaryDirectory() as d:
        if args.fp32:
            for name, make in PRLSTM_MODELS.items():
                rows.append(bench(name, make(), args.steps, args.repeats, Path(d), package=False))
            for name, make in XLSTM_MODELS.items():
                rows.append(bench(name, make(), args.steps, args.repeats, Path(d), package=True))
        for name, (make, tokens) in quantized_models.items():
            model = make()
            for mode in modes:
                qrows.append(bench_quantized(name, model, mode, args.steps, args.repeats, Path(d), tokens))
    if args.json:
        print(json.dumps({"fp32": rows, "quantized": qrows}, indent=2))
        return
    if rows:
        print_fp32(rows, args)
    if qrows:
        print(f"quantized exports: per-token StreamingSession.step latency, batch 1, 1 thread, {args.steps} tokens x "
              f"{args.repeats} rounds (median); native vs function body, same file")
        print(f"{'model':<36} {'quantize':<13} {'native':>10} {'body':>10} {'native/body':>12}")
        for r in qrows:
            print(f"{r['model']:<36} {r['quantize']:<13} {r['native_ms']:>7.3f} ms {r['body_ms']:>7.3f} ms "
                  f"{r['native_vs_body']:>11.1f}x")


if __name__ == "__main__":
    main()
