"""A small, seeded, CPU-friendly training loop for sequence classifiers and per-step regressors."""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
from torch import nn


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    task: str = "classify"  # "classify": label from the last step; "regress": per-step targets (MSE)


@dataclass
class History:
    loss: List[float] = field(default_factory=list)
    eval_metric: List[float] = field(default_factory=list)  # accuracy (classify) or RMSE (regress)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)[0]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, batch_size: int = 256) -> float:
    """Accuracy (classify: argmax of the last step) or RMSE (regress: every step)."""
    model.eval()
    hits, sq, n = 0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = _outputs(model, x[i:i + batch_size])
            if task == "classify":
                hits += (out[:, -1].argmax(-1) == y[i:i + batch_size]).sum().item()
                n += len(out)
            else:
                sq += ((out - y[i:i + batch_size]) ** 2).sum().item()
                n += out.numel()
    return hits / n if task == "classify" else (sq / n) ** 0.5


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
        x_eval: Optional[torch.Tensor] = None, y_eval: Optional[torch.Tensor] = None,
        progress: bool = True) -> History:
    """Train with Adam; ``x`` [N, T, ...], ``y`` [N] class ids (classify) or [N, T, O] targets (regress)."""
    if cfg.task not in ("classify", "regress"):
        raise ValueError(f"task must be 'classify' or 'regress', got {cfg.task!r}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many targets as inputs (and at least one): got {len(x)} inputs, {len(y)} targets")
    seed_everything(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = History()
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            out = _outputs(model, x[idx])
            if cfg.task == "classify":
                loss = nn.functional.cross_entropy(out[:, -1], y[idx])
            else:
                loss = nn.functional.mse_loss(out, y[idx])
            opt.zero_grad()
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            total += loss.item()
            if progress and sys.stderr.isatty():
                done = int(30 * (k + 1) / steps_per_epoch)
                print(f"\repoch {epoch + 1}/{cfg.epochs} [{'#' * done}{'.' * (30 - done)}] loss {total / (k + 1):.4f}",
                      end="", file=sys.stderr, flush=True)
        hist.loss.append(total / steps_per_epoch)
        if x_eval is not None:
            hist.eval_metric.append(evaluate(model, x_eval, y_eval, cfg.task))
        if progress:
            if not sys.stderr.isatty():
                print(f"epoch {epoch + 1}/{cfg.epochs} loss {hist.loss[-1]:.4f}", end="", file=sys.stderr)
            metric = f"  eval {'acc' if cfg.task == 'classify' else 'rmse'} {hist.eval_metric[-1]:.4f}" \
                if hist.eval_metric else ""
            print(metric, file=sys.stderr, flush=True)
    model.eval()
    return hist
