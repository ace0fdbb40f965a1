"""Long-stream reliability: stream a model for up to 1,000,000 steps and report parity drift.

    python benchmarks/long_stream.py [CKPT ...] [--steps 10000 100000 1000000] [--mode sequence]
                                     [--quantize none ...] [--native auto] [--json out.json]

For each checkpoint (default: every bundled sample checkpoint) and quantization mode, the model is
exported, then streamed (chunks of 4096) through StreamingSession and through the PyTorch model (float64)
for each length; the report gives the max abs error on outputs and final states at each length, whether
and whether everything stayed finite, so drift and blow-up are visible side by side.
"""
from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from pathlib import Path

from qlstm_edge import load_checkpoint
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import UnstableModelError, check_parity

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--mode", choices=["step", "sequence"], default="sequence")
    ap.add_argument("--quantize", nargs="+", default=["none"],
                    help="quantization modes to export with ('none' = fp32), when export_onnx supports them")
    ap.add_argument("--native", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    ckpts = args.checkpoints or sorted(ROOT.glob("samples/*/model.safetensors"))
    quantizable = "quantize" in inspect.signature(export_onnx).parameters
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for ckpt in ckpts:
            model = load_checkpoint(ckpt)
            for q in args.quantize:
                kw = {} if q == "none" else {"quantize": q}
                if kw and not quantizable:
                    raise SystemExit(f"this export_onnx has no quantize option (asked for {q})")
                path = export_onnx(model, Path(d) / f"{ckpt.parent.name}_{q}.onnx", mode=args.mode, **kw)
                for n in args.steps:
                    t0 = time.perf_counter()
                    try:
                        r = check_parity(model, path, steps=n, chunk_sizes=[4096], native=args.native)
                        row = {"checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt),
                               "quantize": q, "steps": n, "op_path": r.op_path, "output_max_abs": r.output_max_abs,
                               "state_max_abs": max(r.state_max_abs.values()), "fp32_floor": r.fp32_floor,
                               "tolerance": r.tolerance, "finite": True}
                    except UnstableModelError as e:
                        row = {"checkpoint": str(ckpt), "quantize": q, "steps": n, "finite": False, "error": str(e)}
                    row["seconds"] = round(time.perf_counter() - t0, 1)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(f"\n{'checkpoint':40} {'quant':>8} {'steps':>9} {'out err':>10} {'state err':>10} {'fp32 floor':>10}")
    for r in rows:
        if r["finite"]:
            print(f"{r['checkpoint']:40} {r['quantize']:>8} {r['steps']:>9} {r['output_max_abs']:>10.2e} "
                  f"{r['state_max_abs']:>10.2e} {r['fp32_floor']:>10.2e}")
        else:
            print(f"{r['checkpoint']:40} {r['quantize']:>8} {r['steps']:>9}  DIVERGED: {r['error']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
