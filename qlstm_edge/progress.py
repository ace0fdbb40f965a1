"""Training progress on a stream (stderr): a live bar with rate and ETA on a terminal, one line per epoch
otherwise, so that logs and CI stay readable."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    """Training progress on a stream (stderr): a live bar with rate and ETA on a terminal, one line per
    epoch otherwise (logs and CI stay readable)."""

    WIDTH = 30

    def __init__(self, epochs: int, steps_per_epoch: int, task: str, stream: Optional[TextIO] = None,
                 enabled: bool = True):
        self.epochs, self.steps_per_epoch, self.task = epochs, steps_per_epoch, task
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, epoch: int, k: int, mean_loss: float) -> None:
        if not self.live:
            return
        done = int(self.WIDTH * k / self.steps_per_epoch)
        elapsed = time.perf_counter() - self.t0
        total = epoch * self.steps_per_epoch + k
        eta = elapsed / total * (self.epochs * self.steps_per_epoch - total)
        print(f"\repoch {epoch + 1}/{self.epochs} [{'#' * done}{'.' * (self.WIDTH - done)}] {k}/"
              f"{self.steps_per_epoch} loss {mean_loss:.4f} {total / elapsed:.1f} it/s eta {eta:.0f}s ",
              end="", file=self.stream, flush=True)

    def epoch(self, epoch: int, loss: float, metric: Optional[float]) -> None:
        if not self.enabled:
            return
        name = "acc" if self.task == "classify" else "rmse"
        text = f"epoch {epoch + 1}/{self.epochs} loss {loss:.4f}" + (
            f"  eval {name} {metric:.4f}" if metric is not None else "") + \
            f"  ({time.perf_counter() - self.t0:.0f}s)"
        print(("\r" + text.ljust(self.WIDTH + 60)) if self.live else text, file=self.stream, flush=True)
