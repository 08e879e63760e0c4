"""The shared backoff keeps working after any number of failures (a device down for a weekend)."""

from __future__ import annotations

import random

from edge.backoff import Backoff


def test_thousands_of_failures_keep_the_delay_at_its_maximum() -> None:
    b = Backoff(1.0, 30.0, jitter=0.5, _rng=random.Random(1))
    delays = [b.delay() for _ in range(5_000)]  # 2.0**1024 overflowed a float at the 1025th
    assert all(15.0 <= d <= 30.0 for d in delays[10:])
    assert b.peek() == 30.0
    b.reset()
    assert b.peek() == 1.0
