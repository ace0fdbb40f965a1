"""Classify reviews with the bundled sentiment model, streamed word by word through the exported ONNX file.

    python samples/sentiment/run.py                                 # held-out generated reviews + parity
    python samples/sentiment/run.py --text "the plot was not good ..."

Uses model.safetensors, vocab.json and onnx/sentiment_{step,sequence}.onnx from this folder (written by
train.py). The text goes through the same tokenizer and vocabulary as in training.
"""
import argparse
from pathlib import Path

import numpy as np

from qlstm_edge import load_checkpoint
from qlstm_edge.datasets import sentiment_documents
from qlstm_edge.parity import check_parity
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.text import Vocabulary, encode_documents, tokenize

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", help="a review to classify")
    ap.add_argument("--dir", type=Path, default=HERE, help="folder holding the model files")
    ap.add_argument("--steps", type=int, default=2000, help="parity stream length")
    args = ap.parse_args()
    vocab = Vocabulary.load(args.dir / "vocab.json")
    session = StreamingSession(args.dir / "onnx" / "sentiment_step.onnx")

    if args.text:
        ids = np.array(vocab.encode(tokenize(args.text)), np.int64)
        if ids.size == 0:
            raise SystemExit("the text has no tokens")
        session.reset(batch_size=1)
        for token in ids:  # word by word, as text arrives on a device
            logits = session.step(token[None])
        p = np.exp(logits[0] - logits[0].max())
        p /= p.sum()
        print(f"positive with probability {p[1]:.3f} ({len(ids)} tokens, "
              f"{int((ids == vocab.id('<unk>')).sum())} unknown)")
        return 0

    texts, labels = sentiment_documents(500, seed=12345)
    x = encode_documents([tokenize(t) for t in texts], vocab, length=100).numpy()
    session.reset(batch_size=len(x))
    for t in range(x.shape[1]):
        logits = session.step(x[:, t])
    accuracy = float((logits.argmax(-1) == np.array(labels)).mean())
    print(f"streamed 500 held-out generated reviews word by word ({session.op_path} on {session.provider}): "
          f"accuracy {accuracy:.3f}")
    model = load_checkpoint(args.dir / "model.safetensors")
    ok = True
    for mode in ("step", "sequence"):
        report = check_parity(model, args.dir / "onnx" / f"sentiment_{mode}.onnx", steps=args.steps, batch=2)
        print(report)
        ok &= report.passed
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
