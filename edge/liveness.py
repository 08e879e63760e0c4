"""Tells systemd the daemon is ready, and pings its watchdog only while the pipeline makes progress.

Progress means the store committed since the last check, or there was nothing to commit (idle). A store
writer that is stuck with readings waiting stops the pings, so systemd restarts the service.
`EDGE_DEBUG_STALL_AFTER=N` (tests only) blocks the store writer N seconds after start to prove it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING

from edge import sdnotify

if TYPE_CHECKING:
    from edge.store import Store

log = logging.getLogger("edge.liveness")

STALL_ENV = "EDGE_DEBUG_STALL_AFTER"
CHECKS_PER_PERIOD = 4  # progress is sampled this often per watchdog period; pings go at half the period


class Liveness:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.watchdog = sdnotify.Watchdog()
        self._last_commits = -1

    def ready(self, status: str) -> None:
        sdnotify.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        sdnotify.notify("STOPPING=1")

    def _sample(self) -> None:
        commits = self.store.commits
        if commits != self._last_commits or self.store.pending == 0:
            self.watchdog.progress()
        self._last_commits = commits

    async def run(self) -> None:
        """Feed and ping the watchdog until cancelled (returns at once when not under a systemd watchdog)."""
        stall = os.environ.get(STALL_ENV)
        tasks = []
        if stall:
            tasks.append(asyncio.create_task(self._stall_after(float(stall))))
        if self.watchdog.period:
            tasks.append(asyncio.create_task(self.watchdog.run()))
            tasks.append(asyncio.create_task(self._feed(self.watchdog.period / CHECKS_PER_PERIOD)))
        if tasks:
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

    async def _feed(self, every: float) -> None:
        while True:
            self._sample()
            await asyncio.sleep(every)

    async def _stall_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        log.error("%s is set: blocking the store writer to simulate a stalled pipeline", STALL_ENV)
        self.store.block_writer(threading.Event())
