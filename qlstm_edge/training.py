"""A small, seeded, CPU-friendly training loop for sequence classifiers and per-step regressors.

``fit`` trains any module with the families' interface ``forward(x) -> (y [B, T, O], state)``;
``train_model`` builds a registered family by name from a JSON-style config, fills in the sizes the
data implies, and fits it. ``qlstm-edge train`` and the samples' ``train.py`` scripts use ``train_model``.
The same seed on the same machine and library versions gives bit-identical weights.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, TextIO

import numpy as np
import torch
from torch import nn

from . import families as _families  # noqa: F401  (registers the built-in families)
from .config import ConfigError
from .registry import Family, get_family
from .text import Vocabulary

TASKS = ("classify", "regress")
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


class Progress:
    """Training progress on a stream (stderr): a live bar with rate and ETA on a terminal, one line per
    epoch otherwise (logs and CI stay readable)."""

    WIDTH = 30

    def __init__(self, epochs: int, steps_per_epoch: int, task: str, stream: Optional[TextIO] = None,
                 enabled: bool = True):
        self.epochs, self.steps_per_epoch, self.task = epochs, steps_per_epoch, task
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, epoch: int, k: int, mean_loss: float) -> None:
        if not self.live:
            return
        done = int(self.WIDTH * k / self.steps_per_epoch)
        elapsed = time.perf_counter() - self.t0
        total = epoch * self.steps_per_epoch + k
        eta = elapsed / total * (self.epochs * self.steps_per_epoch - total)
        print(f"\repoch {epoch + 1}/{self.epochs} [{'#' * done}{'.' * (self.WIDTH - done)}] {k}/"
              f"{self.steps_per_epoch} loss {mean_loss:.4f} {total / elapsed:.1f} it/s eta {eta:.0f}s ",
              end="", file=self.stream, flush=True)

    def epoch(self, epoch: int, loss: float, metric: Optional[float]) -> None:
        if not self.enabled:
            return
        name = "acc" if self.task == "classify" else "rmse"
        text = f"epoch {epoch + 1}/{self.epochs} loss {loss:.4f}" + (
            f"  eval {name} {metric:.4f}" if metric is not None else "") + \
            f"  ({time.perf_counter() - self.t0:.0f}s)"
        print(("\r" + text.ljust(self.WIDTH + 60)) if self.live else text, file=self.stream, flush=True)


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

@dataclass
class TaskData:
    """What a model is trained and evaluated on.

    ``classify``: x [N, T] int64 token ids (or [N, T, D] float32 features), y [N] class ids.
    ``regress``: x [N, T, D] float32 features, y [N, T, O] float32 targets.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: Optional[torch.Tensor] = None
    y_eval: Optional[torch.Tensor] = None
    vocab: Optional[Vocabulary] = None
    description: str = ""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for part, (x, y) in (("train", (self.x_train, self.y_train)), ("eval", (self.x_eval, self.y_eval))):
            if x is None and y is None and part == "eval":
                continue
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise TypeError(f"{self.name}: {part} inputs and targets must be torch tensors")
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(f"{self.name}: {part} part has {len(x)} inputs and {len(y)} targets "
                                 f"(need the same number, at least one)")
            if x.dtype == torch.int64:
                if x.dim() != 2:
                    raise ValueError(f"{self.name}: token inputs must be [N, T], got {list(x.shape)}")
            elif x.dtype != torch.float32 or x.dim() != 3:
                raise ValueError(f"{self.name}: inputs must be int64 token ids [N, T] or float32 features "
                                 f"[N, T, D], got {x.dtype} {list(x.shape)}")
            if self.task == "classify" and (y.dtype != torch.int64 or y.dim() != 1):
                raise ValueError(f"{self.name}: classification targets must be int64 class ids [N], "
                                 f"got {y.dtype} {list(y.shape)}")
            if self.task == "regress" and (y.dtype != torch.float32 or y.dim() != 3 or y.shape[:2] != x.shape[:2]):
                raise ValueError(f"{self.name}: regression targets must be float32 [N, T, O] matching the "
                                 f"inputs' [N, T], got {y.dtype} {list(y.shape)}")

    @property
    def tokens(self) -> bool:
        return self.x_train.dtype == torch.int64

    def implied_config(self) -> Dict[str, int]:
        """The model sizes this data fixes: vocab_size or input_size, and output_size."""
        if self.tokens:
            seen = int(max(self.x_train.max(), self.x_eval.max() if self.x_eval is not None else 0)) + 1
            size = {"vocab_size": max(seen, len(self.vocab) if self.vocab is not None else 0)}
        else:
            size = {"input_size": int(self.x_train.shape[-1])}
        if self.task == "classify":
            labels = [self.y_train] + ([self.y_eval] if self.y_eval is not None else [])
            size["output_size"] = int(max(int(t.max()) for t in labels)) + 1
        else:
            size["output_size"] = int(self.y_train.shape[-1])
        return size


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


# -- data sets by name, for `qlstm-edge train` and the samples -----------------------------------------------

def _opts(name: str, options: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"data {name!r}: unknown option(s) {unknown}; it takes {sorted(defaults)}")
    return {**defaults, **options}


def _long_range_sentiment(arg, options) -> TaskData:
    from .datasets import long_range_sentiment

    o = _opts("long-range-sentiment", options,
              {"n": 3000, "eval_n": 500, "length": 64, "vocab_size": 64, "cue_fraction": 0.25, "seed": 0})
    x, y = long_range_sentiment(o["n"], o["length"], o["vocab_size"], o["seed"], o["cue_fraction"])
    xe, ye = long_range_sentiment(o["eval_n"], o["length"], o["vocab_size"], o["seed"] + 1, o["cue_fraction"])
    return TaskData("long-range-sentiment", "classify", x, y, xe, ye,
                    description=f"one sentiment cue in the first {o['cue_fraction']:g} of {o['length']}-token "
                                f"documents (generated)")


def _sentiment_documents(arg, options) -> TaskData:
    from .datasets import sentiment_documents
    from .text import encode_documents, tokenize

    o = _opts("sentiment-documents", options,
              {"n": 8000, "eval_n": 1000, "length": 100, "n_cues": 3, "cue_fraction": 0.6, "negation_rate": 0.3,
               "distractor_rate": 0.03, "vocab_size": 1000, "seed": 0})
    gen = {k: o[k] for k in ("length", "n_cues", "cue_fraction", "negation_rate", "distractor_rate")}
    texts, labels = sentiment_documents(o["n"], seed=o["seed"], **gen)
    eval_texts, eval_labels = sentiment_documents(o["eval_n"], seed=o["seed"] + 1, **gen)
    tokens = [tokenize(t) for t in texts]
    vocab = Vocabulary.build(tokens, max_size=o["vocab_size"])
    x = encode_documents(tokens, vocab, o["length"])
    xe = encode_documents([tokenize(t) for t in eval_texts], vocab, o["length"])
    return TaskData("sentiment-documents", "classify", x, torch.tensor(labels), xe, torch.tensor(eval_labels),
                    vocab=vocab,
                    description=f"{o['n_cues']} sentiment cues (some negated) that all express the label, in the "
                                f"first {o['cue_fraction']:g} of {o['length']}-word generated reviews")


def _imdb(arg, options) -> TaskData:
    from .text import imdb_tensors

    if not arg:
        raise ValueError("data 'imdb' needs the folder: imdb:PATH/TO/aclImdb")
    o = _opts("imdb", options, {"vocab_size": 20000, "length": 256, "limit": None, "keep": "head"})
    x, y, xe, ye, vocab = imdb_tensors(arg, o["vocab_size"], o["length"], o["limit"], o["keep"])
    return TaskData("imdb", "classify", x, y, xe, ye, vocab=vocab,
                    description=f"IMDB reviews from {arg}, first {o['length']} tokens")


def _forecast(arg, options) -> TaskData:
    from .datasets import SERIES, forecast_task, windows

    if arg not in SERIES:
        raise ValueError(f"data 'forecast' needs a series name: forecast:NAME with NAME one of {sorted(SERIES)}")
    o = _opts("forecast", options, {"window": 156, "stride": 13, "train_fraction": 0.7})
    ft = forecast_task(arg, o["train_fraction"])
    x, y = windows(ft.features[:ft.split], ft.targets[:ft.split], o["window"], o["stride"])
    held = len(ft.targets) - ft.split
    xe, ye = windows(ft.features[ft.split:], ft.targets[ft.split:], min(o["window"], held), min(o["window"], held))
    return TaskData(f"forecast:{arg}", "regress", x, y, xe, ye,
                    description=f"one-step-ahead forecasting of {SERIES[arg]}; normalised differences")


def _npz(arg, options) -> TaskData:
    if not arg:
        raise ValueError("data 'npz' needs a file: npz:PATH.npz (arrays x_train, y_train, optionally x_eval, y_eval)")
    _opts("npz", options, {})
    try:
        with np.load(arg, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{arg}: not a readable .npz file ({e})") from None
    missing = sorted({"x_train", "y_train"} - set(arrays))
    if missing:
        raise ValueError(f"{arg}: missing array(s) {missing} (need x_train, y_train; optionally x_eval, y_eval)")
    if ("x_eval" in arrays) != ("y_eval" in arrays):
        raise ValueError(f"{arg}: give both x_eval and y_eval, or neither")
    task = "classify" if np.issubdtype(arrays["y_train"].dtype, np.integer) else "regress"

    def tensor(a: np.ndarray) -> torch.Tensor:
        if np.issubdtype(a.dtype, np.integer):
            return torch.from_numpy(a.astype(np.int64))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    t = {k: tensor(v) for k, v in arrays.items() if k in ("x_train", "y_train", "x_eval", "y_eval")}
    return TaskData(f"npz:{arg}", task, t["x_train"], t["y_train"], t.get("x_eval"), t.get("y_eval"),
                    description=f"arrays from {arg}")


def _formal_language(arg, options) -> TaskData:
    from .datasets import FORMAL_TASKS, formal_language

    if arg not in FORMAL_TASKS:
        raise ValueError(f"data 'formal-language' needs a task: formal-language:NAME with NAME one of "
                         f"{sorted(FORMAL_TASKS)}")
    o = _opts("formal-language", options, {"n": 2000, "length": 32, "eval_n": 200, "eval_length": 128, "seed": 0})
    x, y = formal_language(arg, o["n"], o["length"], o["seed"])
    xe, ye = formal_language(arg, o["eval_n"], o["eval_length"], o["seed"] + 1)

    def targets(labels: torch.Tensor) -> torch.Tensor:  # per-prefix label 1 -> +1, 0 -> -1
        return (2.0 * labels - 1.0).to(torch.float32)[..., None]

    return TaskData(f"formal-language:{arg}", "regress", x, targets(y), xe, targets(ye),
                    description=f"{arg} of binary strings, a +-1 target at every prefix ({FORMAL_TASKS[arg]}); "
                                f"trained on length {o['length']}, evaluated on length {o['eval_length']}")


DATASETS = {
    "long-range-sentiment": (_long_range_sentiment, "generated: one cue early in a 64-token document"),
    "sentiment-documents": (_sentiment_documents, "generated reviews: majority of negatable cues, far from the end"),
    "imdb": (_imdb, "imdb:PATH, the aclImdb folder (train/ and test/ with pos/ and neg/)"),
    "forecast": (_forecast, "forecast:co2|sunspots|elnino, a statsmodels series (needs the samples extra)"),
    "formal-language": (_formal_language, "formal-language:parity|even-pairs, binary strings labelled at every prefix"),
    "npz": (_npz, "npz:PATH, arrays x_train, y_train[, x_eval, y_eval]"),
}


def load_data(spec: str, options: Optional[Dict[str, Any]] = None) -> TaskData:
    """A data set by name: ``NAME`` or ``NAME:ARG`` (see :data:`DATASETS`), with builder ``options``."""
    name, _, arg = spec.partition(":")
    if name not in DATASETS:
        raise ValueError(f"unknown data {spec!r}; choose one of: " +
                         "; ".join(f"{k} ({v[1]})" for k, v in DATASETS.items()))
    return DATASETS[name][0](arg, dict(options or {}))
