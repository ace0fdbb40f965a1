"""Tiny QL-LSTM models: the examples every family-wide test builds (registry.Example)."""
from functools import partial

import torch

from ...registry import Example
from .model import QLLSTMConfig, QLLSTMModel


def tiny(tokens: bool) -> QLLSTMModel:
    """Two layers of 16 units, 3 outputs; 40 token ids or 5 features in."""
    torch.manual_seed(0)
    inputs = {"vocab_size": 40} if tokens else {"input_size": 5}
    return QLLSTMModel(QLLSTMConfig(hidden_size=16, num_layers=2, output_size=3, **inputs)).eval()


EXAMPLES = (Example("qllstm-tokens", "tokens", partial(tiny, True)),
            Example("qllstm-features", "features", partial(tiny, False)))
