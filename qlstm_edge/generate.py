"""Greedy decoding of an exported language model through ``StreamingSession`` (no PyTorch needed)."""
from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from .runtime import StreamingSession


def greedy_generate(session: Union[StreamingSession, str, os.PathLike], prompt_ids: Union[Sequence[int], np.ndarray],
                    max_new_tokens: int) -> np.ndarray:
    """Feed ``prompt_ids`` and then, ``max_new_tokens`` times, append the argmax of the last logits.

    ``prompt_ids``: token ids [S] (one stream) or [B, S] (B streams of equal length), S >= 1.
    Returns the generated ids, [max_new_tokens] or [B, max_new_tokens] (int64). The session's stream is
    restarted first; afterwards it holds the state after the prompt and every generated token but the
    last, which is not fed (as the xlstm package's ``generate_tokens``): continue a stream by feeding it.
    Ties go to the lowest id (``argmax``), as ``torch.argmax``.
    """
    if not isinstance(session, StreamingSession):
        session = StreamingSession(session)
    x_spec, y_spec = session.metadata.inputs[0], session.metadata.outputs[0]
    out_dims = y_spec.shape[2:] if session.mode == "sequence" else y_spec.shape[1:]
    if x_spec.range is None or x_spec.dtype != "int64" or len(out_dims) != 1:
        raise ValueError(f"{session.path} is not a language model: greedy generation needs token-id input and "
                         f"per-step logits [vocab] (this file takes {x_spec.dtype} {x_spec.shape} and returns "
                         f"{y_spec.shape})")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    prompt = np.asarray(prompt_ids)
    if prompt.dtype.kind not in "iu":
        raise ValueError(f"prompt ids must be integers, got an array of {prompt.dtype}")
    single = prompt.ndim == 1
    prompt = prompt[None] if single else prompt
    if prompt.ndim != 2 or prompt.shape[1] == 0 or prompt.shape[0] == 0:
        raise ValueError(f"prompt ids must be a non-empty [S] or [B, S] array, got shape {list(np.shape(prompt_ids))}")
    session.reset(batch_size=prompt.shape[0])
    logits = session.run(prompt.astype(np.int64))[:, -1]
    generated = np.empty((prompt.shape[0], max_new_tokens), np.int64)
    for t in range(max_new_tokens):
        generated[:, t] = np.argmax(logits, axis=-1)
        if t + 1 < max_new_tokens:
            logits = session.step(generated[:, t].copy())
    return generated[0] if single else generated
