"""Test helpers: device configs from dicts, a publish that stores into a real Store, waiting for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from drivers.base import Driver
from drivers.ble.config import BleDevice
from drivers.registry import create_driver
from edge.reading import Reading
from edge.store import Store

WAIT_TIMEOUT = 10.0
WAIT_STEP = 0.02
CANCEL_TIMEOUT = 5.0


def ble_device(**keys: Any) -> BleDevice:
    points = keys.pop("point", [])
    return BleDevice.model_validate({"driver": "ble", "name": keys.pop("name", "dev"), **keys, "point": points})


def make_driver(**keys: Any) -> Driver:
    return create_driver(ble_device(**keys))


async def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(WAIT_STEP)


class StoredReadings:
    """What the daemon does with published readings, reduced to the store: append, then read back by seq."""

    def __init__(self, data_dir: Path) -> None:
        self.store = Store.open(data_dir)
        self.published: list[Reading] = []

    async def publish(self, readings: list[Reading]) -> None:
        self.published.extend(readings)
        await self.store.append(readings)

    def good(self, device: str, point: str) -> list[Any]:
        return [r.value for r in self.published if r.device == device and r.point == point and r.error is None]

    def bad(self, device: str) -> list[Reading]:
        return [r for r in self.published if r.device == device and r.error is not None]

    async def stored(self) -> list[Reading]:
        await self.store.flush()
        return await self.store.read(0, 10_000)

    def close(self) -> None:
        self.store.close()


@contextlib.asynccontextmanager
async def running(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run coroutines as tasks for the block; cancel them (bounded) afterwards and surface their crashes."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        done, _ = await asyncio.wait(tasks, timeout=CANCEL_TIMEOUT)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
