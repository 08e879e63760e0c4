"""Exponential backoff with full jitter, shared by reconnect loops and the task supervisor."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


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
        return min(self.maximum, self.initial * self.factor**self.attempts)

    def delay(self) -> float:
        base = self.peek()
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempts = 0
