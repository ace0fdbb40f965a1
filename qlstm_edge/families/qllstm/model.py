"""QL-LSTM in PyTorch: PSUG (one shared matrix for all gates) + HGR-ASC (gated residual + skip).

The equations are those of DESIGN.md, section "QL-LSTM"; parameter names are the contract.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..common import SequenceModel, SequenceModelConfig

State = Tuple[torch.Tensor, torch.Tensor]


class QLLSTMCell(nn.Module):
    """One QL-LSTM step: ``forward(x[B,D], (h[B,H], c[B,H])) -> (h, c)``.

    ``alpha`` starts at 0: with alpha > 0 the update h = f h + (1-f) h~ + alpha h is expansive wherever
    f + alpha > 1, and a long stream can then grow without bound (``qlstm-edge info`` warns about it).
    """

    def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.0, learn_alpha: bool = True):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight = nn.Parameter(torch.empty(hidden_size, input_size + hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.gate_scale = nn.Parameter(torch.ones(4, hidden_size))
        self.gate_bias = nn.Parameter(torch.zeros(4, hidden_size))
        alpha_t = torch.tensor(float(alpha))
        if learn_alpha:
            self.alpha = nn.Parameter(alpha_t)
        else:
            self.register_buffer("alpha", alpha_t)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.hidden_size ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.ones_(self.gate_scale)
        nn.init.zeros_(self.gate_bias)
        with torch.no_grad():
            self.gate_bias[1].fill_(1.0)  # forget-gate bias of 1, the usual LSTM practice

    def forward(self, x: torch.Tensor, state: State) -> State:
        h, c = state
        u = torch.cat([x, h], dim=-1) @ self.weight.t() + self.bias  # u = W [x_t; h_{t-1}] + b
        z = self.gate_scale * u.unsqueeze(-2) + self.gate_bias  # [B, 4, H]
        i, f, o = torch.sigmoid(z[..., 0, :]), torch.sigmoid(z[..., 1, :]), torch.sigmoid(z[..., 3, :])
        g = torch.tanh(z[..., 2, :])
        c = f * c + i * g
        h_tilde = o * torch.tanh(c)
        h = f * h + (1 - f) * h_tilde + self.alpha * h  # HGR-ASC: gated residual plus alpha skip
        return h, c


def stability_warnings(model: nn.Module) -> List[str]:
    """Where h = f h + (1-f) h~ + alpha h can be expansive: |f + alpha| > 1 for some reachable f in (0, 1)."""
    warnings = []
    cells = [m for m in model.modules() if isinstance(m, QLLSTMCell)]
    for l, cell in enumerate(cells):
        a = float(cell.alpha.detach())
        if a > 0 or a < -1:
            edge = f"f > {1 - a:.4g}" if a > 0 else "any f"
            warnings.append(f"layer {l}: alpha = {a:.4g}, so the update h = f h + (1-f) h~ + alpha h is expansive "
                            f"where {edge}; a long stream can diverge once the forget gate saturates "
                            f"(a stable QL-LSTM keeps -1 <= alpha <= 0)")
    return warnings


class QLLSTM(nn.Module):
    """A stack of QL-LSTM layers with ``torch.nn.LSTM``'s interface.

    ``forward(x, state=None) -> (y, (h_n, c_n))`` with ``h_n``/``c_n`` shaped ``[num_layers, B, H]``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0, alpha: float = 0.0, learn_alpha: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout = batch_first, dropout
        self.alpha_init, self.learn_alpha = alpha, learn_alpha
        self.cells = nn.ModuleList(
            QLLSTMCell(input_size if l == 0 else hidden_size, hidden_size, alpha, learn_alpha)
            for l in range(num_layers))

    @property
    def config(self) -> dict:
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    batch_first=self.batch_first, dropout=self.dropout, alpha=self.alpha_init,
                    learn_alpha=self.learn_alpha)

    @classmethod
    def from_config(cls, config: dict) -> "QLLSTM":
        return cls(**config)

    def zero_state(self, batch: int, device=None, dtype=None) -> State:
        z = torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: Optional[State] = None):
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"QLLSTM expects x of shape [B, T, {self.input_size}] (batch_first) or "
                             f"[T, B, {self.input_size}], got {list(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        h0, c0 = state if state is not None else self.zero_state(x.shape[0], x.device, x.dtype)
        hs, cs = [], []
        for l, cell in enumerate(self.cells):
            h, c = h0[l], c0[l]
            ys = []
            for t in range(x.shape[1]):
                h, c = cell(x[:, t], (h, c))
                ys.append(h)
            x = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape[0], 0, self.hidden_size)
            if self.dropout and self.training and l < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
            hs.append(h)
            cs.append(c)
        y = x if self.batch_first else x.transpose(0, 1)
        return y, (torch.stack(hs), torch.stack(cs))


@dataclass
class QLLSTMConfig(SequenceModelConfig):
    """Input (token ids via an embedding, or feature vectors via a linear map) -> QL-LSTM stack -> head.

    Exactly one of ``vocab_size`` (token input) and ``input_size`` (feature input) is set. The head maps
    every step's hidden state to ``output_size`` values (a classifier reads the last step).
    """

    alpha: float = 0.0
    learn_alpha: bool = True
    dropout: float = 0.0


class QLLSTMModel(SequenceModel):
    """Input map -> QL-LSTM stack -> per-step head. ``forward(x, state=None) -> (y[B,T,O], (h_n, c_n))``."""

    config_class = QLLSTMConfig

    def __init__(self, config: QLLSTMConfig):
        super().__init__(config, lambda e: QLLSTM(e, config.hidden_size, config.num_layers, batch_first=True,
                                                  dropout=config.dropout, alpha=config.alpha,
                                                  learn_alpha=config.learn_alpha), config.hidden_size)
