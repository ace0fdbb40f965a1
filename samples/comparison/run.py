"""The seed paper's comparison on our sample task: parameters and accuracy of LSTM, GRU, BiLSTM and QL-LSTM.

    pip install 'qlstm-edge[samples]'             # matplotlib, for the plot
    python samples/comparison/run.py              # ~5 minutes on 2 CPU cores; writes results.json, comparison.png

Every model has the same shape (embedding 32 -> one recurrent layer of 64 units -> a head that reads the
last step) and the same training (seed, epochs, batch, learning rate) on the generated long-range
sentiment task of samples/sentiment (`sentiment-documents`). Add a family as it lands with
--model LABEL FAMILY JSON, e.g. --model PR-LSTM prlstm '{"hidden_size": 64}'.
"""
import argparse
import json
import platform
from pathlib import Path

import torch

from qlstm_edge import __version__, count_parameters
from qlstm_edge.training import TrainConfig, load_data, train_model

HERE = Path(__file__).resolve().parent
SHAPE = {"hidden_size": 64, "embed_size": 32}
MODELS = [
    ("LSTM", "rnn-baseline", {**SHAPE, "cell": "lstm"}),
    ("GRU", "rnn-baseline", {**SHAPE, "cell": "gru"}),
    ("BiLSTM", "rnn-baseline", {**SHAPE, "cell": "lstm", "bidirectional": True}),
    # alpha fixed at 0, as in the sentiment sample (stable on arbitrarily long streams)
    ("QL-LSTM", "qllstm", {**SHAPE, "alpha": 0.0, "learn_alpha": False}),
]
TRAIN = TrainConfig(epochs=20, batch_size=128, lr=5e-3, seed=0)


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["model"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.bar(labels, [r["parameters"] / 1000 for r in results], color="#4c72b0")
    a.set_ylabel("parameters (thousands)")
    a.set_title("model size")
    b.bar(labels, [100 * r["accuracy"] for r in results], color="#55a868")
    b.axhline(50, color="grey", lw=0.8, ls="--")
    b.set_ylim(0, 100)
    b.set_ylabel("held-out accuracy (%)")
    b.set_title("accuracy (chance: 50%)")
    for ax, key, fmt in ((a, "parameters", "{:,}"), (b, "accuracy", "{:.1%}")):
        for k, r in enumerate(results):
            value = r[key] / 1000 if key == "parameters" else 100 * r[key]
            ax.text(k, value, fmt.format(r[key]), ha="center", va="bottom", fontsize=8)
    fig.suptitle("generated long-range sentiment (sentiment-documents): same shape, same training", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs=3, action="append", default=[], metavar=("LABEL", "FAMILY", "JSON"),
                    help="add a model: display label, registry family, JSON config")
    ap.add_argument("--epochs", type=int, default=TRAIN.epochs)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    models = MODELS + [(label, fam, json.loads(cfg)) for label, fam, cfg in args.model]
    train = TrainConfig(**{**TRAIN.__dict__, "epochs": args.epochs})

    data = load_data("sentiment-documents")
    results = []
    for label, family, config in models:
        print(f"== {label} ({family})")
        r = train_model(family, config, data, train)
        results.append({"model": label, "family": family, "config": r.config,
                        "parameters": count_parameters(r.model), "accuracy": r.history.eval_metric[-1],
                        "best_epoch_accuracy": max(r.history.eval_metric), "accuracy_per_epoch": r.history.eval_metric,
                        "train_seconds": round(r.history.seconds, 1)})
    lstm = next(r["parameters"] for r in results if r["model"] == "LSTM")
    for r in results:
        r["parameters_vs_lstm"] = round(r["parameters"] / lstm, 4)
    doc = {"task": data.name, "description": data.description, "train_documents": len(data.x_train),
           "eval_documents": len(data.x_eval), "train": {**train.__dict__, "task": data.task},
           "toolkit_version": __version__,
           "torch": torch.__version__, "machine": platform.machine(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, args.out / "comparison.png")
    print(f"{'model':<10}{'parameters':>12}{'vs LSTM':>9}{'accuracy':>10}{'train s':>9}")
    for r in results:
        print(f"{r['model']:<10}{r['parameters']:>12,}{r['parameters_vs_lstm']:>9.2f}{r['accuracy']:>10.3f}"
              f"{r['train_seconds']:>9.1f}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
