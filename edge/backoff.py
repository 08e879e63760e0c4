"""Exponential backoff with full jitter, shared by reconnect loops and the task supervisor."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_EXPONENT = 64  # factor**64 is past any maximum worth waiting, and finite for any factor below ~6e4


@dataclass
class Backoff:
    """delay() grows initial·factorⁿ up to maximum, randomised in [delay·(1-jitter), delay]; reset() on success."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    attempts: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def peek(self) -> float:
        """The upper bound of the next delay, without consuming an attempt."""
        # The exponent is capped: 2.0**1024 overflows, i.e. after ~7.5 h of 1 s -> 30 s retries a float
        # OverflowError broke every loop using this (a bus reconnecting on every poll, supervised tasks gone).
        return min(self.maximum, self.initial * self.factor ** min(self.attempts, MAX_EXPONENT))

    def delay(self) -> float:
        base = self.peek()
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempts = 0
