"""Length generalisation on a formal language: PR-LSTM learns parity on short strings, then streams long ones.

    python samples/formal_language/train.py       # about 2.5 minutes on 2 CPU cores

Every model reads a binary string symbol by symbol and says, at every position, whether the prefix so far
has an odd number of 1s (data `formal-language:parity`: a +-1 target at every prefix, trained by MSE; the
prediction is score > 0). PR-LSTM, QL-LSTM and LSTM of the same width are trained the same way on strings
of 32 symbols (and, as a harder setting, of 8), three seeds each, and evaluated on strings of up to 4,096
symbols. The bundled PR-LSTM (train length 32, seed 0) is exported to ONNX and the long strings are
streamed through StreamingSession in step mode (one symbol per call, O(1) amortised work per symbol) and
in sequence mode (chunks of 1,000 symbols, the state carried between chunks).

Writes model.safetensors, onnx/parity_{step,sequence}.onnx and results.json into --out (default: here).
Training-step equivalent on the command line (a bit-identical checkpoint):
    qlstm-edge train prlstm -d formal-language:parity --epochs 10 --batch-size 32 --lr 1e-2 \\
        -c '{"hidden_size": 16, "embed_size": 8}' -o model.safetensors
"""
import argparse
import json
import time
from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np
import torch

from qlstm_edge import __version__, count_parameters, save_checkpoint
from qlstm_edge.datasets import FORMAL_TASKS, formal_language
from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.training import TrainConfig, load_data, train_model

HERE = Path(__file__).resolve().parent
TASK = "parity"
SHAPE = {"hidden_size": 16, "embed_size": 8}
MODELS = [
    ("PR-LSTM", "prlstm", SHAPE),
    # alpha fixed at 0, as in the other samples (a learned alpha > 0 can make the update expansive)
    ("QL-LSTM", "qllstm", {**SHAPE, "alpha": 0.0, "learn_alpha": False}),
    ("LSTM", "rnn-baseline", SHAPE),
]
TRAIN = TrainConfig(epochs=10, batch_size=32, lr=1e-2, seed=0)
TRAIN_STRINGS = 2000
TRAIN_LENGTHS = (32, 8)  # the first is the bundled model's
SEEDS = (0, 1, 2)
EVAL_LENGTHS = (32, 64, 256, 1024, 4096)
EVAL_STRINGS = 256
EVAL_SEED = 1000  # the evaluation strings of length L use seed EVAL_SEED + L (training uses seed 0)
CHUNK = 1000  # sequence mode: symbols per call

Predict = Callable[[np.ndarray], np.ndarray]  # x [n, L] int64 -> scores [n, L]


def eval_strings(task: str, length: int, n: int = EVAL_STRINGS):
    """The evaluation strings of one length: (x [n, length] int64, labels [n, length] int64)."""
    x, y = formal_language(task, n, length, seed=EVAL_SEED + length)
    return x.numpy(), y.numpy()


def accuracy(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """``final``: the label of the whole string (last position); ``all_prefixes``: every position."""
    hits = (scores > 0).astype(np.int64) == labels
    return {"final": float(hits[:, -1].mean()), "all_prefixes": float(hits.mean())}


def evaluate(predict: Predict, task: str, lengths: Sequence[int], n: int = EVAL_STRINGS) -> Dict[str, dict]:
    """Accuracies of ``predict`` on the evaluation strings of each length, keyed by str(length)."""
    out = {}
    for length in lengths:
        x, y = eval_strings(task, length, n)
        out[str(length)] = accuracy(predict(x), y)
    return out


def torch_predict(model: torch.nn.Module) -> Predict:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x))[0][..., 0].numpy()
    return predict


def step_predict(path: Path) -> Predict:
    """Step mode: every string of the batch advances one symbol per call."""
    session = StreamingSession(path)

    def predict(x: np.ndarray) -> np.ndarray:
        session.reset(batch_size=len(x))
        out = np.empty(x.shape, np.float32)
        for t in range(x.shape[1]):
            out[:, t] = session.step(np.ascontiguousarray(x[:, t]))[:, 0]
        return out
    return predict


def sequence_predict(path: Path, chunk: int = CHUNK) -> Predict:
    """Sequence mode: chunks of ``chunk`` symbols, the state carried from one call to the next."""
    session = StreamingSession(path)

    def predict(x: np.ndarray) -> np.ndarray:
        session.reset(batch_size=len(x))
        return np.concatenate([session.run(x[:, t:t + chunk]) for t in range(0, x.shape[1], chunk)], axis=1)[..., 0]
    return predict


def step_timing(path: Path, task: str, length: int = 4096) -> Dict[str, float]:
    """Microseconds per symbol for one stream (batch 1) in step mode, over the first and the last quarter of
    ``length`` symbols: equal when the work per symbol does not grow with the stream."""
    session = StreamingSession(path)
    session.reset(batch_size=1)
    x, _ = eval_strings(task, length, n=1)
    times = np.empty(length)
    for t in range(length):
        t0 = time.perf_counter()
        session.step(x[:, t])
        times[t] = time.perf_counter() - t0
    q = length // 4
    return {"symbols": length, "us_per_symbol": round(float(times.mean() * 1e6), 1),
            "us_per_symbol_first_quarter": round(float(times[:q].mean() * 1e6), 1),
            "us_per_symbol_last_quarter": round(float(times[-q:].mean() * 1e6), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--task", choices=sorted(FORMAL_TASKS), default=TASK)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    runs = []
    bundled = None
    for train_length in TRAIN_LENGTHS:
        data = load_data(f"formal-language:{args.task}", {"n": TRAIN_STRINGS, "length": train_length})
        for seed in SEEDS:
            for label, family, config in MODELS:
                r = train_model(family, config, data, TrainConfig(**{**TRAIN.__dict__, "seed": seed}), progress=False)
                acc = evaluate(torch_predict(r.model), args.task, EVAL_LENGTHS)
                runs.append({"model": label, "family": family, "train_length": train_length, "seed": seed,
                             "parameters": count_parameters(r.model), "train_seconds": round(r.history.seconds, 1),
                             "final_train_loss": r.history.loss[-1], "accuracy": acc})
                print(f"train length {train_length:>3} seed {seed} {label:<8} " + "  ".join(
                    f"{k}: {v['final']:.3f}" for k, v in acc.items()), flush=True)
                if (family, train_length, seed) == ("prlstm", TRAIN_LENGTHS[0], SEEDS[0]):
                    bundled = r

    save_checkpoint(bundled.model, args.out / "model.safetensors")
    files = {mode: export_onnx(bundled.model, args.out / "onnx" / f"{args.task}_{mode}.onnx", mode=mode)
             for mode in ("step", "sequence")}
    streamed = {"step": evaluate(step_predict(files["step"]), args.task, EVAL_LENGTHS),
                "sequence": evaluate(sequence_predict(files["sequence"]), args.task, EVAL_LENGTHS)}
    for mode, acc in streamed.items():
        print(f"bundled PR-LSTM, ONNX {mode} mode: " + "  ".join(f"{k}: {v['final']:.3f}" for k, v in acc.items()))
    timing = step_timing(files["step"], args.task)
    print(f"step mode, one stream: {timing['us_per_symbol']} us per symbol (first quarter "
          f"{timing['us_per_symbol_first_quarter']}, last quarter {timing['us_per_symbol_last_quarter']})")

    doc = {"task": args.task, "description": FORMAL_TASKS[args.task], "toolkit_version": __version__,
           "torch": torch.__version__, "train_strings": TRAIN_STRINGS, "train_lengths": list(TRAIN_LENGTHS),
           "train": {k: v for k, v in TRAIN.__dict__.items() if k != "seed"}, "seeds": list(SEEDS),
           "eval_lengths": list(EVAL_LENGTHS), "eval_strings_per_length": EVAL_STRINGS, "eval_seed": EVAL_SEED,
           "bundled": {"model": "PR-LSTM", "train_length": TRAIN_LENGTHS[0], "seed": SEEDS[0],
                       "config": bundled.config, "parameters": count_parameters(bundled.model),
                       "files": {m: str(p.relative_to(args.out)) for m, p in files.items()},
                       "sequence_chunk": CHUNK, "onnx_accuracy": streamed, "streaming": timing},
           "runs": runs}
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
