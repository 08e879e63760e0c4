"""Connection slots: at most `limit` simultaneous GATT connections per adapter, the rest wait in a FIFO queue."""

from __future__ import annotations

import asyncio
from collections import deque


class ConnectionSlots:
    """A fair counting lock. Slots are handed over in arrival order; `contended` tells holders someone waits."""

    def __init__(self, adapter: str | None, limit: int) -> None:
        self.adapter = adapter
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def contended(self) -> bool:
        return any(not w.done() for w in self._waiters)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Take a slot, queueing behind earlier waiters. Cancellation (e.g. a timeout) leaves the queue cleanly."""
        if self.in_use < self.limit and not self.contended:
            self.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us just as we gave up: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back: straight to the longest waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_use = max(0, self.in_use - 1)


_slots: dict[tuple[asyncio.AbstractEventLoop, str | None], ConnectionSlots] = {}


def connection_slots(adapter: str | None, limit: int) -> ConnectionSlots:
    """The slots of this adapter for the running loop; the smallest `max_connections` asked for wins."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _slots if k[0].is_closed()]:
        del _slots[key]
    key = (loop, adapter)
    slots = _slots.get(key)
    if slots is None:
        slots = _slots[key] = ConnectionSlots(adapter, limit)
    slots.limit = min(slots.limit, limit)
    return slots
