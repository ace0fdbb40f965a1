"""The seed paper's comparison on our sample task: parameters and accuracy of LSTM, GRU, BiLSTM, QL-LSTM
and PR-LSTM.

    pip install 'qlstm-edge[samples]'             # matplotlib, for the plot
    python samples/comparison/run.py              # ~21 minutes on 2 shared CPU cores; writes results.json, comparison.png

Every model has the same shape (embedding 32 -> one recurrent layer of 64 units -> a head that reads the
last step) and the same training (seed, epochs, batch, clip) on the generated long-range sentiment task of
samples/sentiment (`sentiment-documents`), at each learning rate of a small sweep (--lr, repeatable; the
same rates for every model). The torch.nn baselines start with the usual keep-gate bias of 1 (LSTM forget
gate, GRU update gate; QL-LSTM's forget-gate bias starts at 1 too), and the BiLSTM's head reads the forward
direction after the last word and the backward direction after the first (readout "ends"). Add a model
with --model LABEL FAMILY JSON, e.g. --model "LSTM x2" rnn-baseline '{"hidden_size": 64, "num_layers": 2}'.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import torch

from qlstm_edge import __version__, count_parameters
from qlstm_edge.training import TrainConfig, build_model, load_data, train_model

HERE = Path(__file__).resolve().parent
SHAPE = {"hidden_size": 64, "embed_size": 32}
KEEP = {"forget_bias": 1.0}  # initial bias of the LSTM forget gate / GRU update gate
MODELS = [
    ("LSTM", "rnn-baseline", {**SHAPE, **KEEP, "cell": "lstm"}),
    ("GRU", "rnn-baseline", {**SHAPE, **KEEP, "cell": "gru"}),
    ("BiLSTM", "rnn-baseline", {**SHAPE, **KEEP, "cell": "lstm", "bidirectional": True, "readout": "ends"}),
    # alpha fixed at 0, as in the sentiment sample (stable on arbitrarily long streams)
    ("QL-LSTM", "qllstm", {**SHAPE, "alpha": 0.0, "learn_alpha": False}),
    ("PR-LSTM", "prlstm", SHAPE),
]
TRAIN = TrainConfig(epochs=20, batch_size=128, seed=0)
LRS = (5e-3, 2e-3)  # 5e-3: the sentiment sample's rate


def plot(results, lrs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["model"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(labels, [r["parameters"] / 1000 for r in results], color="#4c72b0")
    a.set_ylabel("parameters (thousands)")
    a.set_title("model size")
    for k, r in enumerate(results):
        a.text(k, r["parameters"] / 1000, f"{r['parameters']:,}", ha="center", va="bottom", fontsize=8)
    width = 0.8 / len(lrs)
    colors = ("#55a868", "#c44e52", "#8172b2", "#ccb974")
    for j, lr in enumerate(lrs):
        xs = [k - 0.4 + width * (j + 0.5) for k in range(len(results))]
        accs = [100 * next(run["accuracy"] for run in r["runs"] if run["lr"] == lr) for r in results]
        b.bar(xs, accs, width, label=f"lr {lr:g}", color=colors[j % len(colors)])
        for x, acc in zip(xs, accs):
            b.text(x, acc, f"{acc:.0f}", ha="center", va="bottom", fontsize=7)
    b.set_xticks(range(len(results)), labels)
    b.axhline(50, color="grey", lw=0.8, ls="--")
    b.set_ylim(0, 122)
    b.set_yticks(range(0, 101, 20))
    b.set_ylabel("held-out accuracy (%)")
    b.set_title("accuracy after the last epoch (chance: 50%)")
    b.legend(fontsize=7, loc="upper center", ncol=len(lrs), frameon=False)
    fig.suptitle("generated long-range sentiment (sentiment-documents): same shape, same training", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs=3, action="append", default=[], metavar=("LABEL", "FAMILY", "JSON"),
                    help="add a model: display label, registry family, JSON config")
    ap.add_argument("--lr", type=float, action="append", default=None,
                    help=f"a learning rate of the sweep (repeatable; default {' '.join(map(str, LRS))})")
    ap.add_argument("--only", action="append", default=None, metavar="LABEL",
                    help="train only this model (repeatable; a built-in label or one given with --model)")
    ap.add_argument("--epochs", type=int, default=TRAIN.epochs)
    ap.add_argument("--seed", type=int, default=TRAIN.seed, help="initial weights and batch order")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    models = MODELS + [(label, fam, json.loads(cfg)) for label, fam, cfg in args.model]
    if args.only:
        unknown = sorted(set(args.only) - {label for label, _, _ in models})
        if unknown:
            ap.error(f"--only {unknown}: not a model label; choose from {[label for label, _, _ in models]}")
        models = [m for m in models if m[0] in args.only]
    lrs = tuple(args.lr or LRS)
    train = TrainConfig(**{**TRAIN.__dict__, "epochs": args.epochs, "seed": args.seed})
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data = load_data("sentiment-documents")
    results = []
    for label, family, config in models:
        entry = {"model": label, "family": family, "runs": []}
        for lr in lrs:
            print(f"== {label} ({family}), lr {lr:g}", flush=True)
            r = train_model(family, config, data, TrainConfig(**{**train.__dict__, "lr": lr}))
            entry.update(config=r.config, parameters=count_parameters(r.model))
            entry["runs"].append({"lr": lr, "accuracy": r.history.eval_metric[-1],
                                  "best_epoch_accuracy": max(r.history.eval_metric),
                                  "accuracy_per_epoch": r.history.eval_metric, "final_train_loss": r.history.loss[-1],
                                  "train_seconds": round(r.history.seconds, 1)})
        results.append(entry)
    lstm = count_parameters(build_model("rnn-baseline", MODELS[0][2], data))
    for r in results:
        r["parameters_vs_lstm"] = round(r["parameters"] / lstm, 4)
    train_doc = {k: v for k, v in train.__dict__.items() if k != "lr"}
    doc = {"task": data.name, "description": data.description, "train_documents": len(data.x_train),
           "eval_documents": len(data.x_eval), "train": {**train_doc, "task": data.task}, "learning_rates": list(lrs),
           "toolkit_version": __version__, "torch": torch.__version__, "machine": platform.machine(),
           "total_seconds": round(time.perf_counter() - t0, 1), "results": results}
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, lrs, args.out / "comparison.png")
    print(f"{'model':<10}{'parameters':>12}{'vs LSTM':>9}" + "".join(f"{'acc lr ' + format(lr, 'g'):>14}" for lr in lrs)
          + f"{'train s':>9}")
    for r in results:
        print(f"{r['model']:<10}{r['parameters']:>12,}{r['parameters_vs_lstm']:>9.2f}"
              + "".join(f"{run['accuracy']:>14.3f}" for run in r["runs"])
              + f"{sum(run['train_seconds'] for run in r['runs']):>9.1f}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'comparison.png'} ({doc['total_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
