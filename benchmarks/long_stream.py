"""Long-stream reliability: stream a model for up to 1,000,000 steps and report parity drift.

    python benchmarks/long_stream.py [CKPT ...] [--steps 10000 100000 1000000] [--mode sequence]
                                     [--quantize none fp16 int8 int8-dynamic int4] [--native auto]
                                     [--no-floor] [--json out.json]

For each checkpoint (default: every bundled sample checkpoint) the model is exported once per quantization
mode, and one random stream is fed, in chunks of 4096 with state carried across, to the PyTorch model
(float64 copy: the exact maths), to the PyTorch model as it is (float32: the "fp32 floor", skipped with
--no-floor) and to every export side by side. The reference therefore runs once per checkpoint, however many
modes are compared, and the outputs are never stored: a 1M-step stream needs no more memory than a chunk.
At each length in --steps the report gives, per mode, the max abs error of the outputs so far and of the
states at that step, the largest |state| of the exact model at that step (the scale the state error is to be
read against), and whether everything stayed finite, so drift and blow-up are visible side by side.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qlstm_edge import load_checkpoint
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import random_inputs
from qlstm_edge.registry import family_of
from qlstm_edge.runtime import StreamingSession

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 4096


def _max_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max())


def stream(model, sessions: dict, steps: list, seed: int, floor: bool, chunk: int, progress) -> list:
    """Feed one stream to the references and to every session; rows of running errors at each length."""
    recipe = family_of(model).recipe()
    exact = {"net": copy.deepcopy(model).to(torch.float64), "dtype": torch.float64, "state": None}
    fp32 = {"net": model, "dtype": torch.float32, "state": None} if floor else None
    for s in sessions.values():
        s.reset(batch_size=1)
    out_err = dict.fromkeys(sessions, 0.0)
    finite = dict.fromkeys(sessions, True)
    floor_err, rows, t, chunk_i, t0 = 0.0, [], 0, 0, time.perf_counter()
    any_session = next(iter(sessions.values()))
    for n in sorted(steps):
        while t < n:
            size = min(chunk, n - t)
            x = random_inputs(any_session, size, 1, seed=[seed, chunk_i])
            y_ref = _reference(recipe, exact, x)
            if not np.isfinite(y_ref).all():
                raise ArithmeticError(f"the PyTorch model itself went non-finite before step {t + size}: "
                                      "its recurrence diverges (see `qlstm-edge info`)")
            if fp32 is not None:
                floor_err = max(floor_err, _max_err(_reference(recipe, fp32, x), y_ref))
            for q, s in sessions.items():
                y = s.run(x.astype(s.metadata.inputs[0].dtype, copy=False))
                finite[q] = finite[q] and bool(np.isfinite(y).all())
                out_err[q] = max(out_err[q], _max_err(y, y_ref))
            t, chunk_i = t + size, chunk_i + 1
            progress(t)
        for q, s in sessions.items():
            got = s.get_state()
            states_finite = all(np.isfinite(v).all() for v in got.values())
            rows.append({"quantize": q, "steps": n, "op_path": s.op_path, "output_max_abs": out_err[q],
                         "state_max_abs": max(_max_err(got[k], v) for k, v in exact["state"].items()),
                         "state_scale": max(float(np.abs(v).max()) for v in exact["state"].values()),
                         "fp32_floor": floor_err if fp32 is not None else None,
                         "finite": finite[q] and states_finite, "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def _reference(recipe, ref: dict, x: np.ndarray) -> np.ndarray:
    xb = torch.from_numpy(x)
    y, ref["state"] = recipe.reference(ref["net"], xb.to(ref["dtype"]) if xb.is_floating_point() else xb, ref["state"])
    return y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--mode", choices=["step", "sequence"], default="sequence",
                    help="export mode; step-mode files are fed one step per call (slow for long streams)")
    ap.add_argument("--quantize", nargs="+", default=["none"], help="quantization modes ('none' = fp32)")
    ap.add_argument("--native", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-floor", action="store_true", help="skip the float32 PyTorch run (halves reference time)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    chunk = 1 if args.mode == "step" else CHUNK
    ckpts = args.checkpoints or sorted(ROOT.glob("samples/*/model.safetensors"))
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for ckpt in ckpts:
            model = load_checkpoint(ckpt).eval()
            sessions = {}
            for q in args.quantize:
                kw = {} if q == "none" else {"quantize": q}
                path = export_onnx(model, Path(d) / f"{ckpt.parent.name}_{q}.onnx", mode=args.mode, **kw)
                sessions[q] = StreamingSession(path, native=args.native, threads=1)
            name = str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt)
            t0, total = time.perf_counter(), max(args.steps)

            def progress(t):
                if t % (CHUNK * 25) < chunk or t == total:
                    rate = t / (time.perf_counter() - t0)
                    print(f"  {name}: {t}/{total} steps, {rate:.0f} steps/s, "
                          f"{(total - t) / rate / 60:.1f} min left", file=sys.stderr, flush=True)

            try:
                found = stream(model, sessions, args.steps, args.seed, not args.no_floor, chunk, progress)
            except ArithmeticError as e:
                found = [{"quantize": q, "steps": total, "finite": False, "error": str(e)} for q in sessions]
            for row in found:
                row = {"checkpoint": name, **row}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'checkpoint':40} {'quant':>12} {'steps':>9} {'out err':>10} {'state err':>10} {'max |state|':>11} "
          f"{'fp32 floor':>10} {'finite':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['checkpoint']:40} {r['quantize']:>12} {r['steps']:>9}  MODEL DIVERGES: {r['error']}")
            continue
        floor = "-" if r["fp32_floor"] is None else f"{r['fp32_floor']:.2e}"
        print(f"{r['checkpoint']:40} {r['quantize']:>12} {r['steps']:>9} {r['output_max_abs']:>10.2e} "
              f"{r['state_max_abs']:>10.2e} {r['state_scale']:>11.2e} {floor:>10} {str(r['finite']):>6}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
