"""A stepped system clock (NTP fixing a Pi that booted without a real-time clock) is an event in the store.

The clock itself cannot be stepped here (it is the machine's), so the watcher is handed the two clock
functions, the lowest layer; the store it records into is the real one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.clock import ClockWatch, describe
from edge.store import Store, StoreOptions


class Clocks:
    def __init__(self) -> None:
        self.wall_s = 1_000.0  # a Pi after a power cut: the clock timesyncd saved, long ago
        self.mono_s = 50.0

    def wall(self) -> float:
        return self.wall_s

    def monotonic(self) -> float:
        return self.mono_s

    def tick(self, seconds: float, slew: float = 0.0) -> None:
        self.mono_s += seconds
        self.wall_s += seconds + slew


@pytest.mark.parametrize(("step", "text"), [
    (3 * 3600 + 12 * 60 + 5, "+3h 12m 5.0s"), (-0.84, "-0.8s"), (2 * 86400 + 7, "+2d 0h 0m 7.0s"), (61, "+1m 1.0s"),
])
def test_steps_are_described_for_a_technician(step: float, text: str) -> None:
    assert describe(step) == text


def test_slewing_is_not_a_step_but_a_jump_is_both_ways(tmp_path: Path) -> None:
    clocks = Clocks()
    watch = ClockWatch(None, wall=clocks.wall, monotonic=clocks.monotonic)  # type: ignore[arg-type]
    clocks.tick(5, slew=0.0025)  # NTP slewing at its fastest, 500 ppm
    assert watch.check() is None
    clocks.tick(5, slew=11_520.0)  # NTP sets the clock: +3h 12m
    assert watch.check() == pytest.approx(11_520.0)
    clocks.tick(5)
    assert watch.check() is None  # measured from the new time on
    clocks.tick(5, slew=-30.0)
    assert watch.check() == pytest.approx(-30.0)


def test_a_step_is_recorded_as_an_event(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store.open(tmp_path, StoreOptions())
        try:
            clocks = Clocks()
            watch = ClockWatch(store, wall=clocks.wall, monotonic=clocks.monotonic)
            task = asyncio.create_task(watch.run(every=0.01))
            clocks.tick(1, slew=11_520.0)
            while watch.steps == 0:
                await asyncio.sleep(0.01)
            task.cancel()
            await store.flush()
            events = store.events_sync(kind="clock_step")
            assert [(e.message, e.data) for e in events] == [(
                "system clock stepped +3h 12m 0.0s: readings from now on carry the new time (seq order is unaffected)",
                {"step_s": 11_520.0})]
        finally:
            await store.aclose()

    asyncio.run(scenario())
