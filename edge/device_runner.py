"""One device at run time: its driver, its poll schedule on the monotonic clock, and its latest values."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from drivers.base import DOWN, Driver
from edge.pipeline import Pipeline
from edge.reading import BAD, Reading
from edge.store import Store

log = logging.getLogger("edge.device")

POLL_WATCHDOG_INTERVALS = 10  # a poll running longer than this many intervals (and ≥ POLL_WATCHDOG_MIN) is cut
POLL_WATCHDOG_MIN = 30.0


class DeviceRunner:
    """Polls (or, for push drivers, listens to) one device and feeds the pipeline and the store.

    The schedule is fixed on the monotonic clock: tick n is at start + n·interval. A poll that runs past
    its next tick skips the missed ticks and counts them as overruns; polls never queue up or drift.
    """

    def __init__(self, driver: Driver, pipeline: Pipeline, store: Store) -> None:
        self.driver = driver
        self.pipeline = pipeline
        self.store = store
        self.latest: dict[str, Reading] = {}
        self.readings_in = 0

    @property
    def name(self) -> str:
        return self.driver.name

    @property
    def interval(self) -> float:
        return float(self.driver.config.interval)

    async def run(self) -> None:
        """Start the driver and run it until cancelled; a driver exception propagates (supervisor restarts)."""
        try:
            await self.driver.start()
            if self.driver.push:
                await self.driver.run(self.publish)
            else:
                await self._poll_forever()
        except BaseException as e:
            if not isinstance(e, asyncio.CancelledError):
                self.driver.status.state = DOWN
                self.driver.status.last_error = f"{type(e).__name__}: {e}"
                await self.publish(self.driver.bad_cycle(f"driver crashed: {type(e).__name__}: {e}"))
            raise
        finally:
            try:
                await asyncio.shield(self.driver.stop())
            except Exception:
                log.exception("device %s: driver stop failed", self.name)

    async def publish(self, readings: list[Reading]) -> None:
        """Pipeline then store; awaiting the store is the backpressure that slows a device down.

        Counts the cycle in the device status: the runner owns polls, poll_errors and last_poll; drivers set
        only state, last_error, reconnects and their extras.
        """
        status = self.driver.status
        status.last_poll = time.time()
        status.polls += 1
        latest = self.latest
        bad = False
        for r in readings:
            if r.quality == BAD:
                bad = True
            latest[r.point] = r
        if bad:
            status.poll_errors += 1
        out = self.pipeline.process(readings, self.driver.name)
        self.readings_in += len(out)
        await self.store.append(out)

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        watchdog = max(POLL_WATCHDOG_MIN, interval * POLL_WATCHDOG_INTERVALS)
        status = self.driver.status
        next_tick = loop.time()
        while True:
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(watchdog):  # no extra task per poll, unlike wait_for()
                    readings = await self.driver.poll()
            except TimeoutError:
                readings = self.driver.bad_cycle(f"poll did not finish within {watchdog:.0f}s")
            await self.publish(readings)
            next_tick += interval
            now = loop.time()
            if now >= next_tick:
                missed = int((now - next_tick) // interval) + 1
                status.overruns += missed
                next_tick += missed * interval

    def info(self) -> dict[str, Any]:
        """What /v1/devices shows for this device."""
        cfg = self.driver.config
        return {
            "name": cfg.name,
            "driver": cfg.driver,
            "interval": cfg.interval,
            "status": self.driver.status.to_dict(),
            "readings": self.readings_in,
            # seq only once stored (0 before the commit, and for a reading the deadband did not store)
            "points": {name: {k: v for k, v in r.to_dict().items()
                              if k not in ("device", "point") and (k != "seq" or v)}
                       for name, r in self.latest.items()},
        }
