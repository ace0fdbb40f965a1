"""Per-token streaming latency of xLSTM models: the xlstm package's own step on CPU vs StreamingSession.step.

Batch 1, one thread on both sides (torch.set_num_threads(1); onnxruntime intra-op threads 1). The
package side is its recurrent step API (``xLSTMBlockStack.step`` / ``xLSTMLMModel.step``, sLSTM backend
"vanilla"; ``xLSTMLarge.forward(x_t, state)`` in inference mode with the native step kernel). The ONNX
side is the step-mode export run through the custom ops' function bodies (there are no native xLSTM
kernels yet). Both are timed in this run, interleaved, median of --repeats rounds of --steps tokens.
Small models are bound by per-op overhead (Python and torch dispatch on the package side), large ones by
the dense matmuls that both sides run with an optimised GEMV, so the ratio shrinks with model size.

    python benchmarks/bench_xlstm.py [--steps 200] [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                   xLSTMLMModel, xLSTMLMModelConfig)
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import StreamingSession

VOCAB = 1000


def lm(embedding_dim: int, heads: int, blocks: int, slstm_at):
    cfg = xLSTMLMModelConfig(
        vocab_size=VOCAB, embedding_dim=embedding_dim, num_blocks=blocks, context_length=256, slstm_at=slstm_at,
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4,
                                                            num_heads=heads)),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=heads, conv1d_kernel_size=4),
                                     feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")))
    return xLSTMLMModel(cfg).eval()


def large(embedding_dim: int, heads: int, blocks: int):
    cfg = xLSTMLargeConfig(embedding_dim=embedding_dim, num_heads=heads, num_blocks=blocks, vocab_size=VOCAB,
                           chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
                           step_kernel="native", mode="inference", return_last_states=True)
    return xLSTMLarge(cfg).eval()


MODELS = {
    "xLSTMLM mLSTM+sLSTM E=64 2 blocks": lambda: lm(64, 4, 2, [1]),
    "xLSTMLM mLSTM+sLSTM E=128 2 blocks": lambda: lm(128, 4, 2, [1]),
    "xLSTMLM [m,s,m,m] E=256 4 blocks": lambda: lm(256, 4, 4, [1]),
    "xLSTMLM sLSTM only E=256 2 blocks": lambda: lm(256, 4, 2, "all"),
    "xLSTMLarge E=64 2 heads 2 blocks": lambda: large(64, 2, 2),
    "xLSTMLarge E=256 4 heads 4 blocks": lambda: large(256, 4, 4),
}


def package_stepper(model):
    state = None
    if isinstance(model, xLSTMLarge):
        def step(tok):
            nonlocal state
            logits, state = model(tok, state)
            return logits
    else:
        def step(tok):
            nonlocal state
            logits, state = model.step(tok, state)
            return logits
    return step


def time_per_token(fn, tokens) -> float:
    start = time.perf_counter()
    for tok in tokens:
        fn(tok)
    return (time.perf_counter() - start) / len(tokens)


def bench(name, model, steps: int, repeats: int, workdir: Path) -> dict:
    path = export_onnx(model, workdir / "model.onnx", mode="step")
    session = StreamingSession(path, threads=1, native="off")
    ids = np.random.default_rng(0).integers(0, VOCAB, steps)
    torch_tokens = [torch.tensor([[int(t)]]) for t in ids]
    onnx_tokens = [np.array([t], np.int64) for t in ids]
    pkg = package_stepper(model)
    with torch.no_grad():
        for tok in torch_tokens[:10]:  # warm-up both
            pkg(tok)
        for tok in onnx_tokens[:10]:
            session.step(tok)
        pkg_times, ort_times = [], []
        for _ in range(repeats):
            pkg_times.append(time_per_token(pkg, torch_tokens))
            ort_times.append(time_per_token(session.step, onnx_tokens))
    p, o = statistics.median(pkg_times), statistics.median(ort_times)
    return {"model": name, "parameters": sum(t.numel() for t in model.parameters()), "package_step_ms": p * 1e3,
            "onnx_step_ms": o * 1e3, "speedup": p / o, "op_path": session.op_path}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, make in MODELS.items():
            rows.append(bench(name, make(), args.steps, args.repeats, Path(d)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"per-token latency, batch 1, 1 thread, {args.steps} tokens x {args.repeats} rounds (median)")
    print(f"{'model':<36} {'params':>10} {'xlstm step':>12} {'ONNX step':>11} {'speedup':>8}")
    for r in rows:
        print(f"{r['model']:<36} {r['parameters']:>10,} {r['package_step_ms']:>9.3f} ms {r['onnx_step_ms']:>8.3f} ms "
              f"{r['speedup']:>7.1f}x")
    print(f"ONNX path: {rows[0]['op_path']} (onnxruntime CPUExecutionProvider)")


if __name__ == "__main__":
    main()
