"""Streaming forecasting of a real sensor series: weekly CO2 at Mauna Loa (shipped inside statsmodels).

    pip install 'qlstm-edge[samples]'          # statsmodels (the data) and matplotlib
    python samples/forecasting/train.py        # ~1-2 minutes on 2 CPU cores

A QL-LSTM reads one feature vector per week (the last weekly change, normalised, and the season's phase)
and predicts the next week's change. It is trained on the first 70% of the series; then the exported ONNX
model is streamed week by week through StreamingSession over the whole series, as a sensor device would
run it, and its one-week-ahead RMSE on the held-out 30% is compared with the naive last-value forecast
and with an LSTM trained the same way. Writes model.safetensors, lstm_baseline.safetensors, results.json,
onnx/co2_{step,sequence}.onnx into --out (default: this folder).

Training-step equivalent on the command line:
    qlstm-edge train qllstm -d forecast:co2 --epochs 40 --batch-size 32 --lr 1e-2 \\
        -c '{"hidden_size": 32, "embed_size": 16, "alpha": 0.0, "learn_alpha": false}' -o model.safetensors
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from qlstm_edge import count_parameters, save_checkpoint
from qlstm_edge.datasets import SERIES, forecast_task
from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.training import TrainConfig, load_data, train_model

HERE = Path(__file__).resolve().parent
SERIES_NAME = "co2"
# alpha fixed at 0: the model streams for ever, and a learned alpha > 0 can make the update expansive.
QLLSTM = {"hidden_size": 32, "embed_size": 16, "alpha": 0.0, "learn_alpha": False}
LSTM = {"hidden_size": 32, "embed_size": 16, "cell": "lstm"}
TRAIN = TrainConfig(epochs=40, batch_size=32, lr=1e-2, seed=0)


def stream_forecast(onnx_path: Path, features: np.ndarray) -> tuple:
    """Feed the series week by week (batch 1), as a device would; returns (predictions [T], us per step)."""
    session = StreamingSession(onnx_path)
    session.reset(batch_size=1)
    out = np.empty(len(features), np.float32)
    t0 = time.perf_counter()
    for t, row in enumerate(features):
        out[t] = session.step(row[None])[0, 0]
    return out, (time.perf_counter() - t0) / len(features) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--epochs", type=int, default=TRAIN.epochs)
    args = ap.parse_args()
    train = TrainConfig(**{**TRAIN.__dict__, "epochs": args.epochs})

    task = forecast_task(SERIES_NAME)
    data = load_data(f"forecast:{SERIES_NAME}")
    print(f"{SERIES[SERIES_NAME]}; train on weeks 0-{task.split + 1}, test on the {len(task.targets) - task.split} "
          f"weeks after; {len(data.x_train)} training windows of {data.x_train.shape[1]} weeks")
    q = train_model("qllstm", QLLSTM, data, train)
    lstm = train_model("rnn-baseline", LSTM, data, train)
    save_checkpoint(q.model, args.out / "model.safetensors")
    save_checkpoint(lstm.model, args.out / "lstm_baseline.safetensors")
    files = {mode: export_onnx(q.model, args.out / "onnx" / f"{SERIES_NAME}_{mode}.onnx", mode=mode)
             for mode in ("step", "sequence")}

    pred, us = stream_forecast(files["step"], task.features)
    with torch.no_grad():
        lstm_pred = lstm.model(torch.from_numpy(task.features)[None])[0][0, :, 0].numpy()
    rmse = {"naive_last_value": task.rmse(task.forecast(np.zeros(len(task.targets)))),
            "lstm_baseline": task.rmse(task.forecast(lstm_pred)),
            "qllstm_streamed_onnx": task.rmse(task.forecast(pred))}
    results = {"series": SERIES_NAME, "description": SERIES[SERIES_NAME], "units": "ppm",
               "test_weeks": len(task.targets) - task.split, "rmse_one_week_ahead": rmse,
               "parameters": {"qllstm": count_parameters(q.model), "lstm_baseline": count_parameters(lstm.model)},
               "streaming_us_per_step": round(us, 1), "train": q.train.__dict__,
               "train_seconds": {"qllstm": round(q.history.seconds, 1),
                                 "lstm_baseline": round(lstm.history.seconds, 1)}}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"one-week-ahead RMSE on the held-out {results['test_weeks']} weeks (ppm): "
          + ", ".join(f"{k} {v:.4f}" for k, v in rmse.items()))
    print(f"streamed {len(task.features)} weeks through {files['step'].name} at {us:.0f} us per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
