"""Generated data sets (nothing is downloaded): tasks whose answer needs long-range memory."""
from __future__ import annotations

from typing import Tuple

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
