"""Tiny PR-LSTM models: the examples every family-wide test builds (registry.Example)."""
from functools import partial

import torch

from ...registry import Example
from .model import PRLSTMConfig, PRLSTMModel


def tiny(tokens: bool) -> PRLSTMModel:
    """Two layers of 8 units, 3 outputs, 8 stack levels (a stream holds 255 steps: long enough for the tests, and
    a limit they can reach); 40 token ids or 5 features in."""
    torch.manual_seed(0)
    inputs = {"vocab_size": 40} if tokens else {"input_size": 5}
    return PRLSTMModel(PRLSTMConfig(hidden_size=8, num_layers=2, output_size=3, stack_levels=8, **inputs)).eval()


EXAMPLES = (Example("prlstm-tokens", "tokens", partial(tiny, True)),
            Example("prlstm-features", "features", partial(tiny, False)))
