"""The model shape the toolkit's own families share: input map -> recurrent core -> per-step head.

Token ids go through an embedding, feature vectors through a linear map (exactly one of ``vocab_size`` and
``input_size`` is set); the head maps every step's output to ``output_size`` values (a classifier reads the
last step). Parameter names (``embedding.*`` / ``input_map.*``, ``rnn.*``, ``head.*``) are part of the
checkpoint contract. The export side of this shape is ``exporters.recipe.SequenceModelIO``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..config import ModelConfig


@dataclass
class SequenceModelConfig(ModelConfig):
    hidden_size: int = 128
    num_layers: int = 1
    vocab_size: Optional[int] = None
    input_size: Optional[int] = None
    embed_size: Optional[int] = None  # width of the embedding / input map; default hidden_size
    output_size: int = 2


class SequenceModel(nn.Module):
    """``forward(x, state=None) -> (y[B, T, output_size], state)``.

    ``make_rnn(embed_size)`` builds the core. Modules are created in the order input map, core, head, so a
    seeded model gets the same initial weights (and a training script the same checkpoint) in every release.
    """

    def __init__(self, config: SequenceModelConfig, make_rnn: Callable[[int], nn.Module], rnn_output_size: int):
        super().__init__()
        config.validate()
        self.config = config
        e = self.embed_size
        if config.vocab_size is not None:
            self.embedding = nn.Embedding(config.vocab_size, e)
        else:
            self.input_map = nn.Linear(config.input_size, e)
        self.rnn = make_rnn(e)
        self.head = nn.Linear(rnn_output_size, config.output_size)

    @property
    def embed_size(self) -> int:
        return self.config.embed_size or self.config.hidden_size

    @classmethod
    def from_config(cls, config: SequenceModelConfig) -> "SequenceModel":
        return cls(config)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) if self.config.vocab_size is not None else self.input_map(x)

    def forward(self, x: torch.Tensor, state=None):
        y, state = self.rnn(self.embed(x), state)
        return self.head(y), state
