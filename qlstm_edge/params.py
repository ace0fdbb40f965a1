"""Parameter counts, for the comparison with an equally sized torch.nn.LSTM that the seed paper makes."""
from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters plus fixed buffers that are part of the maths (e.g. a fixed alpha)."""
    return sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for name, b in model.named_buffers() if name.endswith("alpha"))


def lstm_layer_parameters(input_size: int, hidden_size: int) -> int:
    """torch.nn.LSTM layer: W_ih [4H,D], W_hh [4H,H], b_ih and b_hh [4H] = 4H(D+H) + 8H."""
    return 4 * hidden_size * (input_size + hidden_size) + 8 * hidden_size


def lstm_parameter_count(model: nn.Module) -> int:
    """Parameters of the same model with each recurrent layer replaced by an equally sized torch.nn.LSTM."""
    rnn = getattr(model, "rnn", model)
    non_recurrent = count_parameters(model) - count_parameters(rnn)
    sizes = [(c.input_size, c.hidden_size) for c in rnn.cells]
    return non_recurrent + sum(lstm_layer_parameters(d, h) for d, h in sizes)
