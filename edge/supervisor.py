"""Supervised tasks: a task that raises is logged, reported as an event, and restarted with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edge.backoff import Backoff

log = logging.getLogger("edge.supervisor")

HEALTHY_AFTER = 30.0  # a task that ran this long before failing starts its backoff afresh


@dataclass
class TaskInfo:
    name: str
    restarts: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Runs named coroutine factories forever (until cancelled), restarting them when they fail."""

    def __init__(self, on_crash: Callable[[str, BaseException, int], Awaitable[None]] | None = None) -> None:
        self.tasks: dict[str, TaskInfo] = {}
        self._on_crash = on_crash

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]],
              backoff: Backoff | None = None) -> TaskInfo:
        if name in self.tasks and self.tasks[name].task and not self.tasks[name].task.done():  # type: ignore[union-attr]
            raise RuntimeError(f"task {name} is already running")
        info = TaskInfo(name)
        info.task = asyncio.create_task(self._keep(info, factory, backoff or Backoff(1.0, 60.0)), name=name)
        self.tasks[name] = info
        return info

    async def _keep(self, info: TaskInfo, factory: Callable[[], Awaitable[None]], backoff: Backoff) -> None:
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if time.monotonic() - started > HEALTHY_AFTER:
                    backoff.reset()
                info.restarts += 1
                info.last_error = f"{type(e).__name__}: {e}"
                delay = backoff.delay()
                log.error("task %s crashed (%s); restart #%d in %.1fs", info.name, info.last_error,
                          info.restarts, delay, exc_info=info.restarts <= 3)
                if self._on_crash is not None:
                    try:
                        await self._on_crash(info.name, e, info.restarts)
                    except Exception:
                        log.exception("crash handler failed for %s", info.name)
                await asyncio.sleep(delay)

    async def stop(self, name: str, timeout: float = 2.0) -> None:
        info = self.tasks.pop(name, None)
        if info and info.task:
            info.task.cancel()
            await asyncio.wait([info.task], timeout=timeout)

    async def stop_all(self, timeout: float = 2.0) -> None:
        tasks = [i.task for i in self.tasks.values() if i.task]
        self.tasks.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
