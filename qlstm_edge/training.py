"""A small, seeded, CPU-friendly training loop for sequence classifiers and per-step regressors.

``fit`` trains any module with the families' interface ``forward(x) -> (y [B, T, O], state)``;
``train_model`` builds a registered family by name from a JSON-style config, fills in the sizes the
data implies, and fits it on a :class:`~qlstm_edge.datasets.TaskData` (``load_data`` gives one by name).
``qlstm-edge train`` and the samples' ``train.py`` scripts use ``train_model``.
The same seed on the same machine and library versions gives bit-identical weights.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

import numpy as np
import torch
from torch import nn

from .config import ConfigError
from .datasets import TASKS, TaskData, load_data
from .progress import Progress
from .registry import Family, get_family

# TaskData and load_data live in datasets and belong to this API too: train_model(family, config, load_data(spec))
__all__ = ["TrainConfig", "History", "TrainResult", "fit", "evaluate", "seed_everything", "train_model",
           "build_model", "model_config_for", "config_fields", "TaskData", "load_data", "Progress"]

DATA_FIELDS = ("vocab_size", "input_size", "output_size")  # model config fields the data determines


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    task: str = "classify"  # "classify": label from the last step; "regress": per-step targets (MSE)
    max_steps: Optional[int] = None  # stop after this many optimiser steps in total (None: all epochs)
    # torch intra-op threads while training (restored afterwards). 1 suits small recurrent models, whose
    # time goes to many small ops, and stays fast on a busy machine; None keeps torch's own setting.
    threads: Optional[int] = 1

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be 'classify' or 'regress', got {self.task!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0 or self.clip < 0:
            raise ValueError(f"weight_decay and clip must be >= 0, got {self.weight_decay} and {self.clip}")


@dataclass
class History:
    loss: List[float] = field(default_factory=list)
    eval_metric: List[float] = field(default_factory=list)  # accuracy (classify) or RMSE (regress)
    steps: int = 0  # optimiser steps taken
    seconds: float = 0.0


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
    cfg.validate()
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many targets as inputs (and at least one): got {len(x)} inputs, {len(y)} targets")
    if (x_eval is None) != (y_eval is None):
        raise ValueError("give both x_eval and y_eval, or neither")
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(model, x, y, cfg, x_eval, y_eval, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(model, x, y, cfg: TrainConfig, x_eval, y_eval, progress: bool) -> History:
    seed_everything(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = History()
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    bar = Progress(cfg.epochs, steps_per_epoch, cfg.task, enabled=progress)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total, taken = 0.0, 0
        for k in range(steps_per_epoch):
            if cfg.max_steps is not None and hist.steps >= cfg.max_steps:
                break
            idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            out = _outputs(model, x[idx])
            if cfg.task == "classify":
                loss = nn.functional.cross_entropy(out[:, -1], y[idx])
            else:
                loss = nn.functional.mse_loss(out, y[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss.item()} at epoch {epoch + 1}, step "
                                         f"{k + 1}: lower the learning rate (lr={cfg.lr}) or keep clip > 0")
            opt.zero_grad()
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            total += loss.item()
            taken += 1
            hist.steps += 1
            bar.step(epoch, k + 1, total / taken)
        if taken == 0:
            break
        hist.loss.append(total / taken)
        if x_eval is not None:
            hist.eval_metric.append(evaluate(model, x_eval, y_eval, cfg.task))
        bar.epoch(epoch, hist.loss[-1], hist.eval_metric[-1] if hist.eval_metric else None)
    hist.seconds = time.perf_counter() - t0
    model.eval()
    return hist


# -- training a registered family from a config ------------------------------------------------------------

def config_fields(family: Family) -> Set[str]:
    """The config field names a family accepts (its config dataclass, or its constructor's keywords)."""
    config_class = getattr(family.module, "config_class", None)
    if config_class is not None and dataclasses.is_dataclass(config_class):
        return {f.name for f in dataclasses.fields(config_class)}
    return set(inspect.signature(family.module.__init__).parameters) - {"self"}


def model_config_for(family: Family, config: Dict[str, Any], data: TaskData) -> Dict[str, Any]:
    """``config`` completed with the sizes ``data`` implies; a conflicting or missing size is a ConfigError."""
    if not isinstance(config, dict):
        raise ConfigError(f"the model config must be a JSON object, got {type(config).__name__}")
    accepted = config_fields(family)
    implied = data.implied_config()
    out = dict(config)
    for key in DATA_FIELDS:
        if key not in accepted:
            continue
        if key in implied:
            if key in out and out[key] is not None and out[key] != implied[key]:
                if key == "vocab_size" and isinstance(out[key], int) and out[key] > implied[key]:
                    continue  # a larger embedding table than the data needs is allowed
                raise ConfigError(f"config {key}={out[key]!r} does not fit the data {data.name!r}, which "
                                  f"implies {key}={implied[key]}; leave {key} out to have it filled in")
            out.setdefault(key, implied[key])
            if out[key] is None:
                out[key] = implied[key]
        elif out.get(key) is not None and key in ("vocab_size", "input_size"):
            kind = "token ids" if data.tokens else "feature vectors"
            raise ConfigError(f"config sets {key}={out[key]!r} but the data {data.name!r} is {kind}; "
                              f"leave {key} out")
    needed = {"vocab_size", "input_size"} & accepted
    if needed and not (set(implied) & needed):
        raise ConfigError(f"family {family.name!r} cannot read the data {data.name!r}: it takes "
                          f"{sorted(needed)}, the data implies {sorted(implied)}")
    return out


def build_model(family: str, config: Dict[str, Any], data: TaskData, seed: int = 0) -> nn.Module:
    """Build a registered family from ``config`` (completed from ``data``) with seeded initial weights."""
    fam = get_family(family)
    full = model_config_for(fam, config, data)
    seed_everything(seed)
    model = fam.build(full)
    _check_interface(fam, model, data)
    return model


def _check_interface(fam: Family, model: nn.Module, data: TaskData) -> None:
    x = data.x_train[:2, :3]
    with torch.no_grad():
        out = model(x)
    y = out[0] if isinstance(out, (tuple, list)) else None
    want_o = data.implied_config()["output_size"]
    if not isinstance(y, torch.Tensor) or y.dim() != 3 or tuple(y.shape[:2]) != tuple(x.shape[:2]) \
            or y.shape[-1] != want_o:
        got = list(y.shape) if isinstance(y, torch.Tensor) else type(out).__name__
        raise ConfigError(f"family {fam.name!r} cannot be trained on {data.name!r}: training needs a model "
                          f"whose forward(x) returns (outputs [B, T, {want_o}], state); for x of shape "
                          f"{list(x.shape)} it returned {got}")


@dataclass
class TrainResult:
    model: nn.Module
    history: History
    config: Dict[str, Any]  # the full model config (with the sizes the data implied)
    train: TrainConfig  # the settings used (task taken from the data)

    def summary(self) -> Dict[str, Any]:
        return {"loss": self.history.loss, "eval_metric": self.history.eval_metric, "steps": self.history.steps,
                "seconds": round(self.history.seconds, 2)}


def train_model(family: str, config: Dict[str, Any], data: TaskData, train: Optional[TrainConfig] = None,
                progress: bool = True) -> TrainResult:
    """Build ``family`` (a registry name) from ``config``, fit it on ``data``, return it in eval mode.

    ``train.task`` is taken from the data. The seed fixes the initial weights and the batch order, so the
    same call gives bit-identical weights on the same machine and library versions.
    """
    train = dataclasses.replace(train or TrainConfig(), task=data.task)
    train.validate()
    model = build_model(family, config, data, seed=train.seed)
    hist = fit(model, data.x_train, data.y_train, train, data.x_eval, data.y_eval, progress=progress)
    return TrainResult(model, hist, get_family(family).config_of(model), train)
