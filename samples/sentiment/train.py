"""Train the bundled sentiment sample: QL-LSTM on long generated reviews (or on IMDB), then export it.

    python samples/sentiment/train.py                      # generated task (~2 minutes on 2 CPU cores)
    python samples/sentiment/train.py --imdb PATH/aclImdb  # the real IMDB folder, which you supply

Writes model.safetensors, vocab.json, metrics.json and onnx/sentiment_{step,sequence}.onnx into --out
(default: this folder). The command-line equivalent of the training step is

    qlstm-edge train qllstm -d sentiment-documents --epochs 20 --batch-size 128 --lr 5e-3 \\
        -c '{"hidden_size": 64, "embed_size": 32, "alpha": 0.0, "learn_alpha": false}' -o model.safetensors
"""
import argparse
import json
from pathlib import Path

from qlstm_edge import count_parameters, save_checkpoint
from qlstm_edge.exporters import export_onnx
from qlstm_edge.training import TrainConfig, load_data, train_model

HERE = Path(__file__).resolve().parent
# alpha is fixed at 0: with a learned alpha > 0, h = f h + (1-f) h~ + alpha h is expansive once f
# saturates, and a streamed document can be arbitrarily long.
MODEL = {"hidden_size": 64, "embed_size": 32, "alpha": 0.0, "learn_alpha": False}
TRAIN = TrainConfig(epochs=20, batch_size=128, lr=5e-3, seed=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imdb", type=Path, help="train on this aclImdb folder instead of the generated task")
    ap.add_argument("--length", type=int, default=256, help="IMDB: tokens kept per review")
    ap.add_argument("--vocab-size", type=int, default=20000, help="IMDB: vocabulary size limit")
    ap.add_argument("--epochs", type=int, default=TRAIN.epochs)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    if args.imdb:
        data = load_data(f"imdb:{args.imdb}", {"length": args.length, "vocab_size": args.vocab_size})
    else:
        data = load_data("sentiment-documents")
    print(f"data: {data.name}: {data.description}; {len(data.x_train)} train / {len(data.x_eval)} held-out "
          f"documents, vocabulary {len(data.vocab)}")
    train = TrainConfig(**{**TRAIN.__dict__, "epochs": args.epochs})
    result = train_model("qllstm", MODEL, data, train)
    ckpt = save_checkpoint(result.model, args.out / "model.safetensors")
    data.vocab.save(args.out / "vocab.json")
    files = [export_onnx(result.model, args.out / "onnx" / f"sentiment_{mode}.onnx", mode=mode)
             for mode in ("step", "sequence")]
    metrics = {"data": data.name, "description": data.description, "train_documents": len(data.x_train),
               "eval_documents": len(data.x_eval), "parameters": count_parameters(result.model),
               "eval_accuracy": result.history.eval_metric[-1], "train_seconds": round(result.history.seconds, 1),
               "config": result.config, "train": result.train.__dict__}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"held-out accuracy {metrics['eval_accuracy']:.3f}; wrote {ckpt}, vocab.json, metrics.json, "
          + ", ".join(str(f.relative_to(args.out)) for f in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
