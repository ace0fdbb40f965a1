"""``LSTMModel``: QLLSTMModel's shape and interface on torch.nn.LSTM / GRU, for parameter/accuracy comparison.

Two options make the baselines fair in a comparison, both off by default (older checkpoints load unchanged):

- ``forget_bias``: initialise the bias of the gate that keeps the old state to this value (LSTM: the forget
  gate f; GRU: the update gate z, as h = (1 - z) n + z h). 1.0 is the usual choice (Jozefowicz et al.,
  2015): the state is mostly kept at the start of training, so early tokens reach the loss. The input and
  hidden biases of that gate are set to ``forget_bias`` and 0 (their sum is what the gate sees). ``None``
  keeps PyTorch's initialisation. It only changes the initial weights.
- ``readout`` (bidirectional models): ``"step"`` gives position t the head of [forward h_t; backward h_t];
  ``"ends"`` gives it [forward h_t; backward h_0], so the last position reads the forward direction after
  the last token and the backward direction after the first: both have read the whole sequence. (With
  ``"step"`` the backward half of the last position has read one token.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ...config import ConfigError, ModelConfig

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
KEEP_GATE = {"lstm": 1, "gru": 1}  # index of the keep gate in torch's gate order: LSTM i, f, g, o; GRU r, z, n
READOUTS = ("step", "ends")


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
    forget_bias: Optional[float] = None  # initial keep-gate bias (LSTM f, GRU z); None: PyTorch's init
    readout: str = "step"  # bidirectional: "step" ([fwd h_t; bwd h_t]) or "ends" ([fwd h_t; bwd h_0])

    def validate(self) -> None:
        super().validate()
        if self.cell not in CELLS:
            raise ConfigError(f"LSTMConfig.cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        fb = self.forget_bias
        if fb is not None and (isinstance(fb, bool) or not isinstance(fb, (int, float)) or not math.isfinite(fb)):
            raise ConfigError(f"LSTMConfig.forget_bias must be a finite number or null, got {fb!r}")
        if self.readout not in READOUTS:
            raise ConfigError(f"LSTMConfig.readout must be one of {list(READOUTS)}, got {self.readout!r}")
        if self.readout == "ends" and not self.bidirectional:
            raise ConfigError("LSTMConfig.readout 'ends' is for bidirectional models (a one-directional model's "
                              "last step already reads the whole sequence); use readout 'step'")


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
        if config.forget_bias is not None:
            h, k = config.hidden_size, KEEP_GATE[config.cell]
            with torch.no_grad():
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias_"):
                        param[k * h:(k + 1) * h] = config.forget_bias if name.startswith("bias_ih") else 0.0

    def forward(self, x: torch.Tensor, state=None):
        e = self.embedding(x) if self.config.vocab_size is not None else self.input_map(x)
        y, state = self.rnn(e, state)
        if self.config.readout == "ends":
            h = self.config.hidden_size
            y = torch.cat([y[..., :h], y[:, :1, h:].expand(-1, y.shape[1], -1)], dim=-1)
        return self.head(y), state
