"""Waiting between attempts and between sends: exponential backoff with jitter, and a token bucket."""

from __future__ import annotations

import asyncio
import random
import time

from sync.defaults import BACKOFF_MAX, BACKOFF_MIN, JITTER


class Backoff:
    """Delays that double from `minimum` up to `maximum`, each with a random part; `reset()` after success."""

    def __init__(self, minimum: float = BACKOFF_MIN, maximum: float = BACKOFF_MAX, jitter: float = JITTER) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.jitter = jitter
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt (and count one failure)."""
        base = min(self.maximum, self.minimum * (2 ** min(self.failures, 32)))
        self.failures += 1
        return base * (1 - self.jitter) + base * self.jitter * random.random()

    def reset(self) -> None:
        self.failures = 0


class TokenBucket:
    """Allows `rate` units per second on average with bursts of up to one second's worth.

    `take(n)` may overdraw the bucket (a message is never split), then later callers wait for the debt.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def delay(self, n: float) -> float:
        """Take n units; the time to wait before using them."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        self.tokens -= n
        return wait

    async def take(self, n: float) -> None:
        wait = self.delay(n)
        if wait > 0:
            await asyncio.sleep(wait)


class SendPacer:
    """The per-sink `max_rate` (readings/s) and `max_bytes_per_s` limits; no limit when both are None."""

    def __init__(self, max_rate: float | None, max_bytes_per_s: int | None) -> None:
        self.readings = TokenBucket(max_rate) if max_rate else None
        self.bytes = TokenBucket(float(max_bytes_per_s)) if max_bytes_per_s else None

    async def take(self, readings: int, size: int) -> None:
        wait = 0.0
        if self.readings is not None:
            wait = max(wait, self.readings.delay(readings))
        if self.bytes is not None:
            wait = max(wait, self.bytes.delay(size))
        if wait > 0:
            await asyncio.sleep(wait)
