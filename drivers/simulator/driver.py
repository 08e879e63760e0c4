"""Simulator driver: computes each point's signal from the wall clock on every poll."""

from __future__ import annotations

import asyncio
import math
import random
import time

from drivers.base import UP, Driver, WriteError
from drivers.simulator.config import SimulatorDevice, SimulatorPoint
from edge.reading import BAD, GOOD, Reading


class SimulatorDriver(Driver):
    """Never fails unless told to (`fail_every`); writes to any writable point set a held value."""

    config: SimulatorDevice

    def __init__(self, config: SimulatorDevice) -> None:
        super().__init__(config)
        self.points: list[SimulatorPoint] = config.all_points()
        self._rng = random.Random(config.seed)
        self._walk = {p.name: p.center for p in self.points}
        self._held: dict[str, float | bool] = {}
        self._polls = 0
        self._start = time.time()

    async def poll(self) -> list[Reading]:
        self._polls += 1
        n = self._polls
        if self.config.poll_delay:
            await asyncio.sleep(self.config.poll_delay)
        if self.config.crash_every and n % self.config.crash_every == 0:
            raise RuntimeError(f"simulated driver crash at poll {n}")
        now = time.time()
        name = self.config.name
        out = []
        for p in self.points:
            if p.fail_every and n % p.fail_every == 0:
                out.append(Reading(name, p.name, None, now, BAD, "simulated failure", p.unit))
                continue
            value = self._held.get(p.name)
            if value is None:
                value = self._value(p, now, n)
            out.append(Reading(name, p.name, value, now, GOOD, None, p.unit))
        self.status.state = UP
        return out

    def _value(self, p: SimulatorPoint, now: float, n: int) -> float | bool:
        s = p.signal
        if s == "sine":
            return round(p.center + p.amplitude * math.sin(2 * math.pi * now / p.period), 6)
        if s == "ramp":
            return round(p.center + p.amplitude * ((now % p.period) / p.period), 6)
        if s == "step":
            return p.center + (p.amplitude if int(now / (p.period / 2)) % 2 else 0.0)
        if s == "random_walk":
            v = self._walk[p.name] + self._rng.uniform(-p.step, p.step)
            self._walk[p.name] = v
            return round(v, 6)
        if s == "counter":
            return float(n)
        if s == "bool":
            return bool(int(now / (p.period / 2)) % 2)
        return p.center

    async def write(self, point: str, value: object) -> object:
        cfg = self.point_config(point)
        if not cfg.writable:
            raise WriteError(f"point {self.name}/{point} is not writable (set writable = true in its config)")
        if isinstance(value, bool):
            self._held[point] = value
        elif isinstance(value, int | float):
            self._held[point] = float(value)
        else:
            raise WriteError(f"expected a number or bool for {self.name}/{point}, found {value!r}")
        return self._held[point]
