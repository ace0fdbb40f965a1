"""Quickstart: the bundled QL-LSTM sentiment model -> ONNX -> streamed -> parity-checked against PyTorch.

    python samples/quickstart/run.py [--out DIR]

The model (model.safetensors, trained by train.py here) reads a generated long-range sentiment task:
one sentiment cue in the first quarter of a 64-token document decides the label.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from qlstm_edge import count_parameters, load_checkpoint, lstm_parameter_count
from qlstm_edge.datasets import long_range_sentiment
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import check_parity
from qlstm_edge.runtime import StreamingSession

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "export", help="where to write the ONNX files")
    ap.add_argument("--steps", type=int, default=5000, help="parity stream length")
    args = ap.parse_args()

    model = load_checkpoint(HERE / "model.safetensors")
    print(f"model: QL-LSTM, {count_parameters(model):,} parameters "
          f"(the same model on torch.nn.LSTM: {lstm_parameter_count(model):,})")
    files = {mode: export_onnx(model, args.out / f"sentiment_{mode}.onnx", mode=mode)
             for mode in ("step", "sequence")}
    for mode, path in files.items():
        print(f"exported {mode:8s} -> {path} ({path.stat().st_size:,} bytes)")

    x, y = long_range_sentiment(200, length=64, seed=7)
    session = StreamingSession(files["step"])
    session.reset(batch_size=len(x))
    t0 = time.perf_counter()
    for t in range(x.shape[1]):  # token by token, as a device would see the text arrive
        logits = session.step(x[:, t].numpy())
    per_step = (time.perf_counter() - t0) / x.shape[1]
    accuracy = float((logits.argmax(-1) == y.numpy()).mean())
    print(f"streamed 200 documents token by token ({session.op_path} on {session.provider}, "
          f"{per_step * 1e6:.0f} us per step at batch 200): accuracy {accuracy:.3f}")

    ok = True
    for mode, path in files.items():
        report = check_parity(model, path, steps=args.steps, batch=2)
        print(report)
        ok &= report.passed
    print("quickstart OK" if ok else "quickstart FAILED: parity exceeded its tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
