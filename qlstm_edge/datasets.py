"""Data sets: generated tasks whose answer needs long-range memory and real time series that ship inside a PyPI
package (statsmodels, an optional extra), nothing downloaded; and the data sets by name (``load_data``) that
``qlstm-edge train`` and the samples train on, as :class:`TaskData`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .text import Vocabulary, encode_documents, imdb_tensors, tokenize

TASKS = ("classify", "regress")

POSITIVE, NEGATIVE = 1, 2  # sentiment token ids; 0 is padding, 3.. are neutral words


def long_range_sentiment(n: int, length: int = 64, vocab_size: int = 64, seed: int = 0,
                         cue_fraction: float = 0.25) -> Tuple[torch.Tensor, torch.Tensor]:
    """Documents of neutral tokens with one sentiment cue in the first ``cue_fraction`` of the text.

    The label (1 positive, 0 negative) is the cue's polarity, so it depends on a token far from the end
    of the document: a classifier reading the last step must carry it across the whole sequence.
    Returns (x [n, length] int64, y [n] int64).
    """
    if vocab_size < 5 or length < 4 or not 0 < cue_fraction <= 1:
        raise ValueError("need vocab_size >= 5, length >= 4 and 0 < cue_fraction <= 1")
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, vocab_size, (n, length), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, max(1, int(length * cue_fraction)), (n,), generator=g)
    x[torch.arange(n), pos] = torch.where(y == 1, POSITIVE, NEGATIVE)
    return x, y


# -- a harder, text-based long-range sentiment task ------------------------------------------------------

POSITIVE_WORDS = ("good", "great", "excellent", "wonderful", "brilliant", "enjoyable", "superb", "moving",
                  "charming", "delightful")
NEGATIVE_WORDS = ("bad", "awful", "boring", "terrible", "dull", "poor", "weak", "tedious", "clumsy",
                  "dreadful")
NEGATORS = ("not", "never", "hardly")
NEUTRAL_WORDS = tuple("""
the a an and of to in on at for with by from as this that these those it its is was are were be been has had
have movie film story plot scene scenes actor actors actress cast director camera script music score sound
screen shot shots character characters dialogue ending opening sequence minute minutes hour time year years
part role roles set sets light color colour city house street room night day morning evening car train
window door table chair book letter phone dog cat friend friends family brother sister mother father son
daughter man woman men women child children people crowd audience ticket theater cinema studio release
version cut edit frame frames lens budget producer writer writers novel chapter season episode
series trailer poster festival award critic critics review reviews then later after before during while
when where which who what how also just only very quite rather some many most more less about around into
over under again once twice first second third last next other another same each every both either
""".split())


def sentiment_documents(n: int, length: int = 100, n_cues: int = 3, cue_fraction: float = 0.6,
                        negation_rate: float = 0.3, distractor_rate: float = 0.03,
                        seed: int = 0) -> Tuple[List[str], List[int]]:
    """Generated review-like documents whose label needs long-range memory and negation.

    Each document is ``length`` words. The label (1 positive, 0 negative) is drawn first; ``n_cues``
    sentiment cues that all express it sit at random, non-adjacent places in the document's first
    ``cue_fraction``. A cue is a sentiment word (:data:`POSITIVE_WORDS` / :data:`NEGATIVE_WORDS`) or, with
    probability ``negation_rate``, a negator ("not", "never", "hardly") followed by a word of the opposite
    polarity ("not good" for a negative review). The rest of the document is neutral words, with negators
    sprinkled before neutral words at ``distractor_rate`` so that a negator alone means nothing. Counting
    sentiment words while ignoring negation is right only when most cues are un-negated (about 78% of
    documents with the defaults), and a classifier that reads the last step must carry the evidence across
    at least ``(1 - cue_fraction) * length`` words. Returns (texts, labels); the texts go through
    :mod:`qlstm_edge.text` like IMDB reviews.
    """
    if n < 1 or n_cues < 1:
        raise ValueError(f"need n >= 1 and n_cues >= 1, got n={n}, n_cues={n_cues}")
    if not 0 < cue_fraction <= 1 or not 0 <= negation_rate <= 1 or not 0 <= distractor_rate < 1:
        raise ValueError("need 0 < cue_fraction <= 1, 0 <= negation_rate <= 1 and 0 <= distractor_rate < 1")
    region = int(length * cue_fraction)
    if region < 2 * n_cues:
        raise ValueError(f"the first {cue_fraction:g} of a {length}-word document ({region} words) cannot hold "
                         f"{n_cues} cues with their negators; use a longer document or a larger cue_fraction")
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    slots = np.arange(1, region, 2)  # odd positions: a cue's negator (position - 1) never overlaps another cue
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(NEUTRAL_WORDS, size=length))
        for p in np.flatnonzero(rng.random(length) < distractor_rate):
            words[p] = NEGATORS[rng.integers(len(NEGATORS))]
        for p in rng.choice(slots, size=n_cues, replace=False):
            negated = rng.random() < negation_rate
            positive = bool(label) != negated
            words[p] = (POSITIVE_WORDS if positive else NEGATIVE_WORDS)[rng.integers(len(POSITIVE_WORDS))]
            if negated:
                words[p - 1] = NEGATORS[rng.integers(len(NEGATORS))]
            elif words[p - 1] in NEGATORS:
                words[p - 1] = NEUTRAL_WORDS[rng.integers(len(NEUTRAL_WORDS))]
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


# -- real time series shipped inside a PyPI package (statsmodels), for streaming forecasting ----------------

SERIES = {
    "co2": "weekly atmospheric CO2 at Mauna Loa, ppm, 1958-2001 (2,284 weeks; 59 missing weeks interpolated)",
    "sunspots": "yearly mean sunspot number, 1700-2008 (309 years)",
    "elnino": "monthly sea surface temperature in the Nino 1+2 region, deg C, 1950-2010 (732 months)",
}
PERIODS = {"co2": 365.25 / 7, "sunspots": None, "elnino": 12.0}  # seasonal period in steps (None: none)


class MissingExtraError(ImportError):
    """An optional dependency (an extra of qlstm-edge) is needed and not installed."""


def load_series(name: str) -> np.ndarray:
    """A real univariate time series from statsmodels' bundled data sets (no download): float64 [T].

    Needs ``statsmodels`` (``pip install 'qlstm-edge[samples]'``). Names: see :data:`SERIES`.
    """
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; choose one of {sorted(SERIES)}")
    try:
        from statsmodels import datasets as sm_datasets
    except ImportError:
        raise MissingExtraError(f"the {name!r} series comes from statsmodels, which is not installed: "
                                f"pip install 'qlstm-edge[samples]' (or pip install statsmodels)") from None
    if name == "co2":
        values = sm_datasets.co2.load_pandas().data["co2"].interpolate(method="linear").to_numpy()
    elif name == "sunspots":
        values = sm_datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    else:
        values = sm_datasets.elnino.load_pandas().data.drop(columns="YEAR").to_numpy().reshape(-1)
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"series {name!r} has non-finite values after loading")
    return values


def windows(x: np.ndarray, y: np.ndarray, length: int, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Overlapping training windows of a per-step task: x [T, D], y [T, O] -> ([N, length, D], [N, length, O])."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if length < 1 or stride < 1 or length > len(x):
        raise ValueError(f"need 1 <= length <= {len(x)} and stride >= 1, got length={length}, stride={stride}")
    starts = range(0, len(x) - length + 1, stride)
    xs = np.stack([x[s:s + length] for s in starts]).astype(np.float32)
    ys = np.stack([y[s:s + length] for s in starts]).astype(np.float32)
    return torch.from_numpy(xs), torch.from_numpy(ys)


@dataclass
class ForecastTask:
    """One-step-ahead forecasting of a series, as a per-step regression a streaming model can run.

    At step t the model reads ``features[t]`` = [(v[t+1] - v[t]) / scale, and for a seasonal series
    sin and cos of the season's phase at t+1] and predicts ``targets[t]`` = (v[t+2] - v[t+1]) / scale,
    so the forecast of v[t+2] is v[t+1] + scale * prediction. Steps ``< split`` are the training part
    (``scale`` is measured there only); the rest is held out.
    """

    name: str
    values: np.ndarray  # the raw series v [T]
    features: np.ndarray  # [T - 2, D] float32
    targets: np.ndarray  # [T - 2, 1] float32
    scale: float
    split: int

    def forecast(self, predictions: np.ndarray) -> np.ndarray:
        """Per-step predictions [T - 2] (normalised differences) -> forecasts of v[2:] in the series' units."""
        return self.values[1:-1] + self.scale * np.asarray(predictions, dtype=np.float64).reshape(-1)

    def rmse(self, forecasts: np.ndarray, part: str = "test") -> float:
        """RMSE of forecasts of v[2:] against the truth, over the ``"train"`` or ``"test"`` steps."""
        sl = slice(self.split, None) if part == "test" else slice(0, self.split)
        err = np.asarray(forecasts, dtype=np.float64).reshape(-1)[sl] - self.values[2:][sl]
        return float(np.sqrt(np.mean(err ** 2)))


def forecast_task(name: str, train_fraction: float = 0.7, values: Optional[np.ndarray] = None) -> ForecastTask:
    """Build :class:`ForecastTask` for a :data:`SERIES` name (loaded with :func:`load_series`), or for your
    own ``values`` (then ``name`` is only a label and the series is not seasonal unless it is in PERIODS)."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    v = load_series(name) if values is None else np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) < 10:
        raise ValueError(f"series {name!r} is too short to forecast ({len(v)} values; need at least 10)")
    if not np.isfinite(v).all():
        raise ValueError(f"series {name!r} has non-finite values")
    d = np.diff(v)
    split = int((len(v) - 2) * train_fraction)
    scale = float(d[:split + 1].std()) or 1.0
    cols = [d[:-1] / scale]
    period = PERIODS.get(name)
    if period:
        phase = 2 * np.pi * np.arange(1, len(v) - 1) / period
        cols += [np.sin(phase), np.cos(phase)]
    return ForecastTask(name=name, values=v, features=np.stack(cols, axis=1).astype(np.float32),
                        targets=(d[1:] / scale)[:, None].astype(np.float32), scale=scale, split=split)


# -- formal languages over {0, 1}, with a label for every prefix (length generalisation) ------------------

FORMAL_TASKS = {
    "parity": "1 where the prefix has an odd number of 1s, else 0",
    "even-pairs": "1 where the prefix has as many '01' as '10' pairs (its first and last symbols agree), else 0",
}


def formal_language(task: str, n: int, length: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniform random binary strings of ``length`` symbols, labelled at every prefix.

    ``y[i, t]`` is the label of the prefix ``x[i, :t + 1]`` (see :data:`FORMAL_TASKS`), so a model with a
    per-position head learns from every length 1 .. ``length`` at once, and is evaluated on longer strings
    by generating them with a larger ``length``. Returns (x [n, length] int64 in {0, 1}, y [n, length]
    int64 in {0, 1}).
    """
    if task not in FORMAL_TASKS:
        raise ValueError(f"unknown formal-language task {task!r}; choose one of {sorted(FORMAL_TASKS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or isinstance(length, bool) \
            or not isinstance(length, int) or length < 1:
        raise ValueError(f"need integers n >= 1 and length >= 1, got n={n!r}, length={length!r}")
    x = torch.randint(0, 2, (n, length), generator=torch.Generator().manual_seed(seed))
    if task == "parity":
        y = torch.cumsum(x, dim=1) % 2
    else:  # the '01' and '10' pairs alternate, so they are equally many exactly when the ends agree
        y = (x == x[:, :1]).long()
    return x, y


# -- what a model trains on, and the data sets by name -------------------------------------------------------

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


def _opts(name: str, options: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"data {name!r}: unknown option(s) {unknown}; it takes {sorted(defaults)}")
    return {**defaults, **options}


def _long_range_sentiment(arg, options) -> TaskData:
    o = _opts("long-range-sentiment", options,
              {"n": 3000, "eval_n": 500, "length": 64, "vocab_size": 64, "cue_fraction": 0.25, "seed": 0})
    x, y = long_range_sentiment(o["n"], o["length"], o["vocab_size"], o["seed"], o["cue_fraction"])
    xe, ye = long_range_sentiment(o["eval_n"], o["length"], o["vocab_size"], o["seed"] + 1, o["cue_fraction"])
    return TaskData("long-range-sentiment", "classify", x, y, xe, ye,
                    description=f"one sentiment cue in the first {o['cue_fraction']:g} of {o['length']}-token "
                                f"documents (generated)")


def _sentiment_documents(arg, options) -> TaskData:
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
    if not arg:
        raise ValueError("data 'imdb' needs the folder: imdb:PATH/TO/aclImdb")
    o = _opts("imdb", options, {"vocab_size": 20000, "length": 256, "limit": None, "keep": "head"})
    x, y, xe, ye, vocab = imdb_tensors(arg, o["vocab_size"], o["length"], o["limit"], o["keep"])
    return TaskData("imdb", "classify", x, y, xe, ye, vocab=vocab,
                    description=f"IMDB reviews from {arg}, first {o['length']} tokens")


def _forecast(arg, options) -> TaskData:
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
