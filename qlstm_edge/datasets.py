"""Data sets with nothing downloaded: generated tasks whose answer needs long-range memory, and real time
series that ship inside a PyPI package (statsmodels, an optional extra)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

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
