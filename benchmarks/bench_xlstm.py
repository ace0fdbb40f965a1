"""Per-token streaming latency of xLSTM models: the xlstm package's own step on CPU vs StreamingSession.step.

Batch 1, one thread everywhere (torch.set_num_threads(1); onnxruntime intra-op threads 1). Sides, all timed in
this run, interleaved, median of --repeats rounds of --steps tokens:

- package: its recurrent step API (``xLSTMLMModel.step``, sLSTM backend "vanilla"; ``xLSTMLarge.forward(x_t,
  state)`` in inference mode with the native step kernel);
- body:    the step-mode export through the custom ops' function bodies (stock onnxruntime);
- native:  the same file with the native op library (fused sLSTM / mLSTM cell kernels);
- floor:   one onnxruntime MatMul of a vector with a matrix holding as many float32 weights as the model's
           matrices (every parameter of rank >= 2 but the embedding table): the memory-bound matrix-vector
           work any exact fp32 step must do. ``package / floor`` is the most an fp32 implementation could gain.

Small models are bound by per-node overhead (Python and torch dispatch on the package side, onnxruntime's
per-node cost on ours), large ones by the matrix-vector products, so the ratio shrinks with model size.

    python benchmarks/bench_xlstm.py [--steps 200] [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                   xLSTMLMModel, xLSTMLMModelConfig)
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

from qlstm_edge.exporters import export_onnx
from qlstm_edge.runtime import StreamingSession

VOCAB = 1000


def lm(embedding_dim: int, heads: int, blocks: int, slstm_at, vocab: int = VOCAB):
    cfg = xLSTMLMModelConfig(
        vocab_size=vocab, embedding_dim=embedding_dim, num_blocks=blocks, context_length=256, slstm_at=slstm_at,
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4,
                                                            num_heads=heads)),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=heads, conv1d_kernel_size=4),
                                     feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")))
    return xLSTMLMModel(cfg).eval()


def large(embedding_dim: int, heads: int, blocks: int, vocab: int = VOCAB):
    cfg = xLSTMLargeConfig(embedding_dim=embedding_dim, num_heads=heads, num_blocks=blocks, vocab_size=vocab,
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


def matrix_floor(model, rows: int = 512) -> Callable[[object], object]:
    """One matrix-vector product over as many float32 weights as ``model``'s matrices hold (see the module doc).

    The weights (every parameter of rank >= 2 but the embedding table, zero padded) are laid out as one
    [rows, N] matrix, so the floor is one onnxruntime node streaming the same bytes through its GEMV.
    """
    flat = np.concatenate([p.detach().float().numpy().ravel() for name, p in model.named_parameters()
                           if p.ndim >= 2 and "embedding" not in name])
    w = np.zeros(rows * -(-flat.size // rows), np.float32)
    w[:flat.size] = flat
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "matrix_floor", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w.reshape(rows, -1), "W"),
                               numpy_helper.from_array(np.ones((1, rows), np.float32), "x")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the product: no folding
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda _tok: sess.run(None, {})


def bench(name, model, steps: int, repeats: int, workdir: Path) -> dict:
    path = export_onnx(model, workdir / "model.onnx", mode="step")
    body = StreamingSession(path, threads=1, native="off")
    native = StreamingSession(path, threads=1, native="auto")
    ids = np.random.default_rng(0).integers(0, VOCAB, steps)
    torch_tokens = [torch.tensor([[int(t)]]) for t in ids]
    onnx_tokens = [np.array([t], np.int64) for t in ids]
    sides = {"package": (package_stepper(model), torch_tokens), "body": (body.step, onnx_tokens),
             "native": (native.step, onnx_tokens), "floor": (matrix_floor(model), onnx_tokens)}
    times = {k: [] for k in sides}
    with torch.no_grad():
        for fn, tokens in sides.values():  # warm-up
            for tok in tokens[:10]:
                fn(tok)
        for _ in range(repeats):
            for k, (fn, tokens) in sides.items():
                times[k].append(time_per_token(fn, tokens))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"model": name, "parameters": sum(t.numel() for t in model.parameters()),
            **{f"{k}_ms": v for k, v in ms.items()}, "native_op_path": native.op_path,
            "body_vs_package": ms["package"] / ms["body"], "native_vs_package": ms["package"] / ms["native"],
            "ceiling_vs_package": ms["package"] / ms["floor"]}


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
    print(f"per-token latency, batch 1, 1 thread, {args.steps} tokens x {args.repeats} rounds (median); "
          f"speed-ups are package time / our time")
    print(f"{'model':<36} {'params':>10} {'package':>10} {'body':>10} {'native':>10} {'floor':>10} "
          f"{'body':>6} {'native':>7} {'ceiling':>8}")
    for r in rows:
        print(f"{r['model']:<36} {r['parameters']:>10,} " + " ".join(f"{r[k + '_ms']:>7.3f} ms" for k in
              ("package", "body", "native", "floor")) + f" {r['body_vs_package']:>5.1f}x {r['native_vs_package']:>6.1f}x"
              f" {r['ceiling_vs_package']:>7.1f}x")
    paths = sorted({r["native_op_path"] for r in rows})
    print(f"native column op path: {', '.join(paths)}; ceiling = package / floor, the most an exact fp32 step "
          f"could gain (its matrix-vector products alone)")

if __name__ == "__main__":
    main()
