"""Per-token streaming latency of xLSTM models: the xlstm package's own step on CPU vs StreamingSession.step.

Batch 1, one thread everywhere (torch.set_num_threads(1); onnxruntime intra-op threads 1), the whole process pinned to
one CPU (--cpu; on a VM the same step can take 10% longer on one virtual CPU than on another, which would otherwise
decide between runs). Sides, all timed in this run, interleaved, median of --repeats rounds of --steps tokens:

- package: its recurrent step API (``xLSTMLMModel.step``, sLSTM backend "vanilla"; ``xLSTMLarge.forward(x_t,
  state)`` in inference mode with the native step kernel);
- body:    the step-mode export through the custom ops' function bodies (stock onnxruntime);
- native:  the same file with the native op library (StreamingSession, native="auto");
- floor:   the step's matrix products alone (``matrix_floor``): one onnxruntime MatMul node per weight matrix of
           the model, at its own shape, in one graph run once per token. The floor is onnxruntime's GEMV over the
           same weights, which an exact fp32 step must read every token, with one node's cost per matrix and one
           ``run`` per token: nothing a step of this runtime could drop. ``native / floor`` is what the step
           pays beyond its products; ``package / floor`` is the most an fp32 step could gain over the package.

Small models are bound by per-node overhead (Python and torch dispatch on the package side, onnxruntime's
per-node cost on ours), large ones by the matrix-vector products, so the ratio shrinks with model size.

    python benchmarks/bench_xlstm.py [--steps 200] [--repeats 5] [--only TEXT] [--cpu N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                   xLSTMLMModel, xLSTMLMModelConfig)
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

from qlstm_edge.exporters import export_onnx
from qlstm_edge.families.xlstm.layers import SMALL_HEAD
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
    "xLSTMLM mLSTM only E=256 2 blocks": lambda: lm(256, 4, 2, []),
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


def floor_matrices(model) -> List[np.ndarray]:
    """The weight matrices of one step, each as the [K, N] (or stacked [G, K, N]) operand its product reads.

    Every parameter of rank >= 2 but the embedding tables (a step gathers one row) and the depthwise conv taps
    (a size-1 axis: element-wise work). torch stores [N, K] (stacked [G, N, K]); stacks of heads with at most
    ``SMALL_HEAD`` inputs become one dense [G K, N] product over the same weights, since onnxruntime's batched
    MatMul pays per head.
    """
    out = []
    for name, p in model.named_parameters():
        w = p.detach().float().numpy()
        if w.ndim < 2 or "embedding" in name or 1 in w.shape[-2:]:
            continue
        w = np.ascontiguousarray(np.swapaxes(w.reshape(-1, *w.shape[-2:]), -1, -2))  # [G, K, N]
        if w.shape[0] == 1:
            w = w[0]
        elif w.shape[1] <= SMALL_HEAD:
            w = w.reshape(-1, w.shape[2])
        out.append(w)
    return out


def matrix_floor(model) -> Tuple[Callable[[object], object], int]:
    """The step's matrix products alone: one onnxruntime MatMul node per weight matrix of ``model`` (``floor_matrices``),
    each reading a constant vector, all in one graph run once per token; returns the stepper and the node count.

    This is the floor of an exact fp32 step in this runtime: the same weights, read at their own shapes by
    onnxruntime's own GEMV, with one node's cost per matrix and one ``run`` call per token, and nothing else.
    """
    nodes, inits, outs = [], [], []
    for j, w in enumerate(floor_matrices(model)):
        x = np.ones((*w.shape[:-2], 1, w.shape[-2]), np.float32)
        inits += [numpy_helper.from_array(w, f"W{j}"), numpy_helper.from_array(x, f"x{j}")]
        nodes.append(helper.make_node("MatMul", [f"x{j}", f"W{j}"], [f"y{j}"]))
        outs.append(helper.make_tensor_value_info(f"y{j}", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "matrix_floor", [], outs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the products: no folding
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return (lambda _tok: sess.run(None, {})), len(nodes)


def bench(name, model, steps: int, repeats: int, workdir: Path) -> dict:
    path = export_onnx(model, workdir / "model.onnx", mode="step")
    body = StreamingSession(path, threads=1, native="off")
    native = StreamingSession(path, threads=1, native="auto")
    floor, products = matrix_floor(model)
    ids = np.random.default_rng(0).integers(0, VOCAB, steps)
    torch_tokens = [torch.tensor([[int(t)]]) for t in ids]
    onnx_tokens = [np.array([t], np.int64) for t in ids]
    sides = {"package": (package_stepper(model), torch_tokens), "body": (body.step, onnx_tokens),
             "native": (native.step, onnx_tokens), "floor": (floor, onnx_tokens)}
    times = {k: [] for k in sides}
    with torch.no_grad():
        for fn, tokens in sides.values():  # warm-up
            for tok in tokens[:10]:
                fn(tok)
        for _ in range(repeats):
            for k, (fn, tokens) in sides.items():
                times[k].append(time_per_token(fn, tokens))
    us = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    return {"model": name, "parameters": sum(t.numel() for t in model.parameters()), "floor_products": products,
            **{f"{k}_us": v for k, v in us.items()}, "native_op_path": native.op_path,
            "native_vs_floor": us["native"] / us["floor"], "native_vs_package": us["package"] / us["native"],
            "ceiling_vs_package": us["package"] / us["floor"]}


def pin(cpu):
    """Pins this process to ``cpu`` (None: the lowest CPU it may run on; -1: leaves it); returns the CPU or None."""
    if cpu == -1 or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if cpu is None else cpu
    if cpu not in allowed:
        raise SystemExit(f"--cpu {cpu}: this process may run on CPUs {allowed}")
    os.sched_setaffinity(0, {cpu})
    return cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="the models whose name contains this text (default: all)")
    ap.add_argument("--cpu", type=int, default=None,
                    help="the CPU to pin the process to (default: the lowest this process may run on; -1: no pinning)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cpu = pin(args.cpu)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, make in MODELS.items():
            if args.only in name:
                rows.append(bench(name, make(), args.steps, args.repeats, Path(d)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    where = "not pinned" if cpu is None else f"pinned to CPU {cpu}"
    print(f"per-token latency in us, batch 1, 1 thread, {where}, {args.steps} tokens x {args.repeats} rounds (median)")
    print(f"{'model':<36} {'params':>10} {'package':>8} {'body':>8} {'native':>8} {'floor':>8} {'products':>8} "
          f"{'native/floor':>12} {'package/native':>14} {'package/floor':>13}")
    for r in rows:
        print(f"{r['model']:<36} {r['parameters']:>10,} " + " ".join(f"{r[k + '_us']:>8.1f}" for k in
              ("package", "body", "native", "floor")) + f" {r['floor_products']:>8} {r['native_vs_floor']:>11.2f}x"
              f" {r['native_vs_package']:>13.1f}x {r['ceiling_vs_package']:>12.1f}x")
    paths = sorted({r["native_op_path"] for r in rows})
    print(f"native column op path: {', '.join(paths)}; floor: the step's matrix products alone, one MatMul node "
          f"per weight matrix ('products' of them) in one graph; package/floor is the most an exact fp32 step "
          f"could gain in onnxruntime")


if __name__ == "__main__":
    main()
