"""Guards against non-finite losses and rewards in training loops.

One NaN batch (an fp16 overflow, a degenerate path) should not end a long federated run, but a
model that keeps producing NaN has diverged, and skipping its batches forever would hide that.
`NonFiniteGuard` draws the line: a loop asks it about every loss, skips the step when the loss is
not finite, and stops with `NonFiniteLossError` once more than `max_skips` were skipped. Skips
are counted where the caller can see them (a round log's counters).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

#: Default number of non-finite losses a training loop may skip before it stops. Small on
#: purpose: an isolated bad batch is tolerated, a diverged model is not.
DEFAULT_MAX_NONFINITE_SKIPS = 3

#: Counter name under which skipped batches appear in a round log.
NONFINITE_COUNTER = "nonfinite_skipped"


class CountSink(Protocol):
    """Anything that counts named events, e.g. `lada.hosts.base.RoundLog`."""

    def count(self, name: str, value: float = 1.0) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """More non-finite losses (or rewards) than allowed in one loop; the model likely diverged."""

    def __init__(self, where: str, skipped: int, max_skips: int, last_value: float) -> None:
        super().__init__(
            f"{where}: non-finite value ({last_value}) in {skipped} batches, more than "
            f"max_skips={max_skips}; the model has likely diverged (lower the learning rate, or "
            "check the data)"
        )
        self.where = where
        self.skipped = skipped
        self.max_skips = max_skips
        self.last_value = last_value

    def __reduce__(self) -> tuple[type[NonFiniteLossError], tuple[str, int, int, float]]:
        return (type(self), (self.where, self.skipped, self.max_skips, self.last_value))


class NonFiniteGuard:
    """Counts non-finite values in one loop and stops the loop after more than `max_skips`.

    Use one guard per loop (one training call, one reward update): `check(loss, where)` returns
    True when the value is finite (go ahead), False when the caller must skip it. Each skip adds
    one to `log`'s `counter` when a log is given.
    """

    def __init__(
        self, max_skips: int, *, log: CountSink | None = None, counter: str = NONFINITE_COUNTER
    ) -> None:
        if max_skips < 0:
            raise ValueError(f"max_skips: must be >= 0, got {max_skips}")
        self.max_skips = max_skips
        self.log = log
        self.counter = counter
        self.skipped = 0

    def check(self, value: torch.Tensor | float, where: str) -> bool:
        """True when `value` is finite; else count the skip (raise once over the limit)."""
        number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if math.isfinite(number):
            return True
        self.skipped += 1
        if self.log is not None:
            self.log.count(self.counter)
        if self.skipped > self.max_skips:
            raise NonFiniteLossError(where, self.skipped, self.max_skips, number)
        return False
