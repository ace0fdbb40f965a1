"""PR-LSTM (Parallel Recursive LSTM) in PyTorch: leaf encoder, one shared binary merge, unary refinements.

The equations and parameter names are those of DESIGN.md, section "PR-LSTM". The output at prefix length L
is the left fold of ``combine`` over the dyadic blocks of L, largest first (L in binary; the block of a set
bit 2^b is a perfectly balanced tree over 2^b tokens): P(7) = combine(combine(T(x0..x3), T(x4, x5)), x6).

Streaming state (``PRLSTMState``, one row per stream; K = ``stack_levels``):

- ``block_h``/``block_c`` [B, K, H]: level b holds the balanced-tree state of the block of 2^b tokens
  that bit b of ``count`` stands for (the binary-counter stack); zero where bit b of ``count`` is 0;
- ``prefix_h``/``prefix_c`` [B, K, H]: level b holds the left fold of the blocks at levels >= b, i.e.
  P(count with bits below b cleared); zero where bit b of ``count`` is 0. The lowest occupied level
  holds P(count), and a new prefix needs one merge: P(L) = combine(P(L - 2^b), block) for b the lowest
  set bit of L;
- ``count`` [B] int64: tokens consumed. A stream holds at most 2^K - 1 tokens.

``PRLSTM.forward`` evaluates a chunk with O(log T) batched merge rounds (see ``_chunk``), continuing
the streams from ``state``; the result does not depend on how a stream is cut into chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ...config import ConfigError
from ...runtime.errors import StreamLimitError
from ..common import SequenceModel, SequenceModelConfig

Node = Tuple[torch.Tensor, torch.Tensor]  # (h, c) of a tree node
MAX_STACK_LEVELS = 62  # count is int64


class PRLSTMState(NamedTuple):
    block_h: torch.Tensor
    block_c: torch.Tensor
    prefix_h: torch.Tensor
    prefix_c: torch.Tensor
    count: torch.Tensor


def overflow_message(max_steps: int, levels: int, count: int, steps: int) -> str:
    return (f"PR-LSTM stream overflow: a stack of {levels} levels holds at most {max_steps} tokens per stream; "
            f"a stream at {count} tokens cannot take {steps} more. Reset the stream, or use a model with a "
            f"larger stack_levels")


class PRLSTM(nn.Module):
    """Parallel Recursive LSTM: ``forward(x[B,T,D], state=None) -> (y[B,T,H], PRLSTMState)``.

    ``y[:, t]`` is h of the prefix state P(count + t + 1). ``num_layers`` counts the binary merge plus
    ``num_layers - 1`` unary refinements (as in the reference code). ``stack_levels`` (K) sizes the
    streaming state: a stream holds at most 2^K - 1 tokens.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, stack_levels: int = 24):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if isinstance(stack_levels, bool) or not isinstance(stack_levels, int) \
                or not 1 <= stack_levels <= MAX_STACK_LEVELS:
            raise ValueError(f"stack_levels must be an integer in [1, {MAX_STACK_LEVELS}], got {stack_levels!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.stack_levels = stack_levels
        self.leaf = nn.Linear(input_size, 3 * hidden_size)
        self.merge = nn.Linear(2 * hidden_size, 5 * hidden_size)
        self.unary = nn.ModuleList(nn.Linear(hidden_size, 4 * hidden_size) for _ in range(num_layers - 1))

    @property
    def config(self) -> dict:
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    stack_levels=self.stack_levels)

    @property
    def max_steps(self) -> int:
        return 2 ** self.stack_levels - 1

    # -- the cell ----------------------------------------------------------------------------------
    def encode_leaf(self, x: torch.Tensor) -> Node:
        """leaf(x): [i; g; o] = W_leaf x + b_leaf; c = sig(i) tanh(g); h = sig(o) tanh(c)."""
        i, g, o = self.leaf(x).chunk(3, dim=-1)
        c = torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def combine(self, left: Node, right: Node) -> Node:
        """merge(l, r) followed by the unary refinements; any leading dimensions."""
        (h_l, c_l), (h_r, c_r) = left, right
        i, g, o, f_l, f_r = self.merge(torch.cat([h_l, h_r], dim=-1)).chunk(5, dim=-1)
        c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f_l) * c_l + torch.sigmoid(f_r) * c_r
        h = torch.sigmoid(o) * torch.tanh(c)
        for layer in self.unary:
            i, g, o, f = layer(h).chunk(4, dim=-1)
            c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
            h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    # -- sequences ---------------------------------------------------------------------------------
    def zero_state(self, batch: int, device=None, dtype=None) -> PRLSTMState:
        z = torch.zeros(batch, self.stack_levels, self.hidden_size, device=device, dtype=dtype)
        return PRLSTMState(z, z.clone(), z.clone(), z.clone(), torch.zeros(batch, dtype=torch.int64, device=device))

    def forward(self, x: torch.Tensor, state: Optional[PRLSTMState] = None) -> Tuple[torch.Tensor, PRLSTMState]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"PRLSTM expects x of shape [B, T, {self.input_size}], got {list(x.shape)}")
        B, T = x.shape[0], x.shape[1]
        state = self.zero_state(B, x.device, x.dtype) if state is None else self._checked(PRLSTMState(*state), B)
        counts = state.count.tolist()
        worst = max(counts)
        if worst + T > self.max_steps:
            raise StreamLimitError(overflow_message(self.max_steps, self.stack_levels, worst, T))
        if T == 0:
            return x.new_zeros(B, 0, self.hidden_size), state
        leaves = self.encode_leaf(x)
        if len(set(counts)) == 1:
            return self._chunk(leaves, counts[0], state)
        # streams at different positions (e.g. one row was reset): each group has its own block alignment
        y = x.new_zeros(B, T, self.hidden_size)
        new = [t.clone() for t in state]
        for n in sorted(set(counts)):
            rows = torch.tensor([r for r, c in enumerate(counts) if c == n], device=x.device)
            y_n, st_n = self._chunk(tuple(t[rows] for t in leaves), n, PRLSTMState(*(t[rows] for t in state)))
            y = y.index_copy(0, rows, y_n)
            new = [t.index_copy(0, rows, s) for t, s in zip(new, st_n)]
        return y, PRLSTMState(*new)

    def _checked(self, state: PRLSTMState, batch: int) -> PRLSTMState:
        want = (batch, self.stack_levels, self.hidden_size)
        for name in ("block_h", "block_c", "prefix_h", "prefix_c"):
            got = tuple(getattr(state, name).shape)
            if got != want:
                raise ValueError(f"PRLSTM state {name} has shape {list(got)}, expected {list(want)}")
        if tuple(state.count.shape) != (batch,) or state.count.dtype != torch.int64:
            raise ValueError(f"PRLSTM state count must be int64 of shape [{batch}], got "
                             f"{state.count.dtype} {list(state.count.shape)}")
        if (state.count < 0).any():
            raise ValueError("PRLSTM state count must be non-negative")
        return state

    def _chunk(self, leaves: Node, n: int, state: PRLSTMState) -> Tuple[torch.Tensor, PRLSTMState]:
        """Tokens n .. n+T-1 of streams that have all consumed n tokens: O(log T) batched merge rounds.

        1. Blocks, bottom-up: ``levels[b][:, k]`` is the block of 2^b tokens with global index (n >> b) + k
           (it covers tokens [((n >> b) + k) 2^b, ((n >> b) + k + 1) 2^b)); level b+1 is ONE merge of the
           pairs of level b, the first pair completed by the stack's level-b block when bit b of n is set.
        2. Prefixes, top-down: round b computes, with ONE merge, every P(L) (n < L <= n+T) whose lowest set
           bit is b, as combine(P(L - 2^b), block of 2^b tokens ending at L); P(L - 2^b) has a higher lowest
           set bit (computed in an earlier round) or is at most n (then it is a stack prefix, or empty).
        3. The new stack: at each level set in n+T, the block ending that level's part and its prefix.
        """
        T = leaves[0].shape[1]
        levels = self._blocks(leaves, n, state)
        out_h, out_c = self._prefixes(levels, n, T, state)
        return out_h, self._next_state(levels, (out_h, out_c), n, T, state)

    def _blocks(self, leaves: Node, n: int, state: PRLSTMState) -> List[Node]:
        """Step 1 of ``_chunk``: the blocks of each level the chunk completes, bottom-up."""
        h, c = leaves
        end = n + h.shape[1]
        top = (n ^ end).bit_length()  # levels 0..top-1 gain blocks; above, n and n+T share their blocks
        levels: List[Node] = [(h, c)]
        for b in range(top - 1):
            lh, lc = levels[b]
            if (n >> b) & 1:  # the left sibling of the first block is the stack's level-b block
                lh = torch.cat([state.block_h[:, b:b + 1], lh], dim=1)
                lc = torch.cat([state.block_c[:, b:b + 1], lc], dim=1)
            pairs = lh.shape[1] // 2  # an unpaired last block has a parent that ends past the chunk
            levels.append(self.combine((lh[:, 0:2 * pairs:2], lc[:, 0:2 * pairs:2]),
                                       (lh[:, 1:2 * pairs:2], lc[:, 1:2 * pairs:2])))
        return levels

    def _prefixes(self, levels: List[Node], n: int, T: int, state: PRLSTMState) -> Node:
        """Step 2 of ``_chunk``: (h, c) of every prefix P(L), n < L <= n+T, at [:, L - n - 1], top-down."""
        h, c = levels[0]
        end = n + T
        out_h, out_c = torch.zeros_like(h), torch.zeros_like(c)  # out[:, L - n - 1] = P(L)
        for b in reversed(range((n ^ end).bit_length())):
            step = 2 << b
            first = ((n + (1 << b)) // step) * step + (1 << b)  # smallest L > n with lowest set bit b
            if first > end:
                continue
            Ls = torch.arange(first, end + 1, step, device=h.device)
            blk_idx = (Ls >> b) - 1 - (n >> b)
            bh, bc = levels[b][0][:, blk_idx], levels[b][1][:, blk_idx]
            before = Ls - (1 << b)  # P(before) is needed; all but possibly the first are > n
            ph, pc = out_h[:, (before - n - 1).clamp(min=0)], out_c[:, (before - n - 1).clamp(min=0)]
            first_before = int(before[0])
            empty_first = first_before == 0
            if 0 < first_before <= n:  # a prefix of the stack: the fold of n's blocks above level b
                lvl = (first_before & -first_before).bit_length() - 1
                ph = torch.cat([state.prefix_h[:, lvl:lvl + 1], ph[:, 1:]], dim=1)
                pc = torch.cat([state.prefix_c[:, lvl:lvl + 1], pc[:, 1:]], dim=1)
            nh, nc = self.combine((ph, pc), (bh, bc))
            if empty_first:  # P(2^b) is the block itself
                nh = torch.cat([bh[:, :1], nh[:, 1:]], dim=1)
                nc = torch.cat([bc[:, :1], nc[:, 1:]], dim=1)
            out_h = out_h.index_copy(1, Ls - n - 1, nh)
            out_c = out_c.index_copy(1, Ls - n - 1, nc)
        return out_h, out_c

    def _next_state(self, levels: List[Node], prefixes: Node, n: int, T: int, state: PRLSTMState) -> PRLSTMState:
        """The stack after the chunk: at each level b set in n+T, the block ending the stream's level-b part
        and the prefix it ends (unchanged where that block was already on the stack); zero elsewhere."""
        end = n + T
        new = [t.clone() for t in state[:4]]
        for b in range(self.stack_levels):
            if not (end >> b) & 1:
                for t in new:
                    t[:, b] = 0
                continue
            k = (end >> b) - 1 - (n >> b)  # index of the block ending the stream's level-b part
            if k >= 0:
                pos = ((end >> b) << b) - n - 1
                new[0][:, b], new[1][:, b] = levels[b][0][:, k], levels[b][1][:, k]
                new[2][:, b], new[3][:, b] = prefixes[0][:, pos], prefixes[1][:, pos]
        return PRLSTMState(*new, state.count + T)


@dataclass
class PRLSTMConfig(SequenceModelConfig):
    """Input (token ids via an embedding, or feature vectors via a linear map) -> PRLSTM -> per-position head.

    Exactly one of ``vocab_size`` and ``input_size`` is set. ``num_layers``: the binary merge plus
    ``num_layers - 1`` unary refinements. ``stack_levels`` (K): streams hold at most 2^K - 1 tokens; the
    streaming state (PyTorch and ONNX alike) has K levels.
    """

    num_layers: int = 2
    stack_levels: int = 24

    def validate(self) -> None:
        super().validate()
        k = self.stack_levels
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_STACK_LEVELS:
            raise ConfigError(f"PRLSTMConfig.stack_levels must be an integer in [1, {MAX_STACK_LEVELS}], got {k!r}")


class PRLSTMModel(SequenceModel):
    """Input map -> PRLSTM -> per-position head. ``forward(x, state=None) -> (y[B,T,O], PRLSTMState)``."""

    config_class = PRLSTMConfig

    def __init__(self, config: PRLSTMConfig):
        super().__init__(config, lambda e: PRLSTM(e, config.hidden_size, config.num_layers, config.stack_levels),
                         config.hidden_size)
