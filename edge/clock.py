"""Notices when the system clock is stepped (NTP setting a Pi that booted without a real-time clock, an
operator setting the time) and records each step as an event: reading timestamps jump with it, seqs do not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.store import Store

CHECK_EVERY = 5.0  # seconds between looks at the clock
STEP_THRESHOLD = 2.0  # seconds; NTP slewing moves the clock at most 0.5 ms/s, far below this per check


def describe(step: float) -> str:
    """+3h 12m 5.0s / -0.8s: a step in words a technician reads at a glance."""
    sign = "+" if step >= 0 else "-"
    rest = abs(step)
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{int(days)}d"] if days else []
    parts += [f"{int(hours)}h"] if hours or days else []
    parts += [f"{int(minutes)}m"] if minutes or hours or days else []
    parts.append(f"{seconds:.1f}s")
    return sign + " ".join(parts)


class ClockWatch:
    """Compares the wall clock with the monotonic clock; a change in their difference is a step."""

    def __init__(self, store: Store, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, threshold: float = STEP_THRESHOLD) -> None:
        self.store = store
        self.wall = wall
        self.monotonic = monotonic
        self.threshold = threshold
        self.steps = 0
        self._offset = wall() - monotonic()

    def check(self) -> float | None:
        """The step since the last check, in seconds (positive: the clock moved forward), or None."""
        offset = self.wall() - self.monotonic()
        step = offset - self._offset
        self._offset = offset
        return step if abs(step) >= self.threshold else None

    async def record(self, step: float) -> None:
        self.steps += 1
        message = (f"system clock stepped {describe(step)}: readings from now on carry the new time "
                   f"(seq order is unaffected)")
        await self.store.add_event("clock_step", message, {"step_s": round(step, 3)})

    async def run(self, every: float = CHECK_EVERY) -> None:
        while True:
            await asyncio.sleep(every)
            step = self.check()
            if step is not None:
                await self.record(step)
