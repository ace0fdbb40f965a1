"""Measurements behind qlstm_edge.parity.TOLERANCES and README's quantization table.

    python benchmarks/quant_report.py                  # 10k-step streams (a few minutes on 2 CPU cores)
    python benchmarks/quant_report.py --steps 100000   # the 100k-step run
    python benchmarks/quant_report.py --json out.json

For random (untrained) QL-LSTM models of several shapes and for the bundled quickstart sample, every
quantization mode is exported and streamed against the PyTorch model in float64 (qlstm_edge.cli_quant):
the max abs output error at 1k / 10k (/ 100k) steps and over the last 1k steps before each. The sample is
measured twice: on a random token stream (out of distribution for a trained model) and on its own task's
documents back to back, with the task accuracy next to fp32. Also prints file sizes of an H=256 model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from qlstm_edge import QLLSTMConfig, QLLSTMModel, load_checkpoint  # noqa: E402
from qlstm_edge._io import atomic_path  # noqa: E402
from qlstm_edge.cli_quant import eval_stream, format_report, quantization_report  # noqa: E402
from qlstm_edge.datasets import long_range_sentiment  # noqa: E402
from qlstm_edge.parity import TOLERANCES  # noqa: E402

RANDOM_MODELS = [  # (name, config kwargs)
    ("tokens H16 L2", dict(hidden_size=16, num_layers=2, vocab_size=40, output_size=3)),
    ("features H16 L2", dict(hidden_size=16, num_layers=2, input_size=5, output_size=3)),
    ("tokens H64 L3", dict(hidden_size=64, num_layers=3, vocab_size=500, output_size=4)),
    ("features H128 L1", dict(hidden_size=128, num_layers=1, input_size=32, output_size=8)),
    ("tokens H256 L2", dict(hidden_size=256, num_layers=2, vocab_size=1000, output_size=2)),
]


def random_model(kw, seed):
    torch.manual_seed(seed)
    return QLLSTMModel(QLLSTMConfig(**kw)).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = {"random": [], "sample": {}}
    worst = {}
    for k, (name, kw) in enumerate(RANDOM_MODELS):
        doc = quantization_report(random_model(kw, seed=k), steps=args.steps, batch=2, seed=k)
        doc["name"] = name
        out["random"].append(doc)
        print(f"\n== random model: {name}\n{format_report(doc)}", flush=True)
        for r in doc["rows"]:
            worst[r["mode"]] = max(worst.get(r["mode"], 0.0), max(r["max_abs"].values()),
                                   max(r["state_max_abs"].values()))
    sample = load_checkpoint(ROOT / "samples/quickstart/model.safetensors")
    x, y = long_range_sentiment(2000, length=64, seed=2)
    ev = (x.numpy(), y.numpy(), "classify")
    for stream_name, stream in (("random", None), ("documents", eval_stream(ev[0], args.steps))):
        doc = quantization_report(sample, steps=args.steps, eval_data=ev, stream=stream)
        out["sample"][stream_name] = doc
        print(f"\n== quickstart sample, {stream_name} stream\n{format_report(doc)}", flush=True)
    print("\n== worst max abs error (outputs and states) over the random models vs the default tolerances")
    for mode, err in worst.items():
        key = None if mode == "fp32" else mode
        tol = TOLERANCES.get(key)
        print(f"  {mode:<13} {err:.3e}   tolerance {tol if tol is not None else '(none)'}"
              + ("" if tol is None else f"   margin x{tol / err:.1f}"))
    if args.json:
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
