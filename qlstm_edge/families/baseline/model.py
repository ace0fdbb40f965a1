"""``LSTMModel``: QLLSTMModel's shape and interface on torch.nn.LSTM / GRU, for parameter/accuracy comparison."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ...config import ConfigError, ModelConfig

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class LSTMConfig(ModelConfig):
    hidden_size: int = 128
    num_layers: int = 1
    vocab_size: Optional[int] = None
    input_size: Optional[int] = None
    embed_size: Optional[int] = None
    output_size: int = 2
    cell: str = "lstm"
    bidirectional: bool = False
    dropout: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.cell not in CELLS:
            raise ConfigError(f"LSTMConfig.cell must be one of {sorted(CELLS)}, got {self.cell!r}")


class LSTMModel(nn.Module):
    """Input map -> torch.nn.LSTM/GRU -> per-step head; ``forward(x, state=None) -> (y[B,T,O], state)``."""

    config_class = LSTMConfig

    def __init__(self, config: LSTMConfig):
        super().__init__()
        config.validate()
        self.config = config
        e = config.embed_size or config.hidden_size
        if config.vocab_size is not None:
            self.embedding = nn.Embedding(config.vocab_size, e)
        else:
            self.input_map = nn.Linear(config.input_size, e)
        self.rnn = CELLS[config.cell](e, config.hidden_size, config.num_layers, batch_first=True,
                                      dropout=config.dropout if config.num_layers > 1 else 0.0,
                                      bidirectional=config.bidirectional)
        self.head = nn.Linear(config.hidden_size * (2 if config.bidirectional else 1), config.output_size)

    def forward(self, x: torch.Tensor, state=None):
        e = self.embedding(x) if self.config.vocab_size is not None else self.input_map(x)
        y, state = self.rnn(e, state)
        return self.head(y), state
