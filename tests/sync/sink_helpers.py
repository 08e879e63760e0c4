"""Helpers for the sink tests: readings to store, a task runner for sinks, polling for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from edge.reading import Reading
from edge.store import Store
from sync.base import Sink

EDGE = "site-a"
FAST_COMMIT = 0.02  # s: the tests' store commits this often


def readings(n: int, devices: tuple[str, ...] = ("plc1", "plc2"), ts: float | None = None) -> list[Reading]:
    """n readings spread over devices, with values 0..n-1."""
    now = time.time() if ts is None else ts
    return [Reading(devices[i % len(devices)], "temperature", float(i), now, unit="degC") for i in range(n)]


async def fill(store: Store, n: int, **kw: Any) -> list[int]:
    """Append n readings and wait until they are durable; their seqs."""
    rs = readings(n, **kw)
    await store.append(rs)
    await store.flush()
    return [r.seq for r in rs]


class SinkRunner:
    """Runs a sink's run() as a task; stops it (cancel + close) at the end of the test."""

    def __init__(self) -> None:
        self.running: list[tuple[Sink, asyncio.Task[None]]] = []

    def start(self, sink: Sink) -> asyncio.Task[None]:
        task = asyncio.create_task(sink.run())
        self.running.append((sink, task))
        return task

    async def stop(self, sink: Sink) -> None:
        for s, t in list(self.running):
            if s is sink:
                self.running.remove((s, t))
                await s.close()
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def eventually(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll check() until it returns something truthy; fail with its last value after timeout."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(step)
        value = check()
    return value
