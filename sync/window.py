"""The in-flight window: messages sent and not yet durable in the cursor, and the acked prefix of seqs.

A message is a batch of readings (not necessarily contiguous seqs when grouped per device). The cursor may
move to seq C only when every reading <= C was acked, skipped (filter) or expired; the window works that
out as "just below the lowest seq of any unacked message", or everything covered so far when all are
acked. A message leaves the window only once the cursor covering it is durable, so after a crash at most
`limit` messages are sent again. Messages of one store read interleave (one per device), so they enter
the window together (`wait_room(n)`), else acked ones could wait for coverage by ones that cannot enter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.waiting import wait_done, wait_event

if TYPE_CHECKING:
    from edge.reading import Reading

ROOM_RECHECK = 1.0  # s: wait_room looks again at least this often (it is woken by every change anyway)


@dataclass(eq=False)
class OutMessage:
    """One message to deliver: its readings' seq range and count, and the encoded payload."""

    first_seq: int  # lowest seq it carries
    last_seq: int  # highest seq it carries
    count: int
    payload: bytes
    oldest_ts: float  # the oldest reading's timestamp (for the oldest-unsent age)
    device: str | None = None  # set when the topic is per device
    acked: bool = False
    sent_at: float = 0.0
    attempts: int = field(default=0)
    readings: list[Reading] | None = field(default=None, repr=False)  # what it was encoded from (for a split)


class AckWindow:
    """Bounded window of OutMessages in first_seq order, with the contiguous acked prefix."""

    def __init__(self, limit: int, cursor: int) -> None:
        self.limit = limit
        self.messages: deque[OutMessage] = deque()
        self.taken = cursor  # every seq <= taken is in a message added here, or was skipped or expired
        self.durable = cursor  # highest seq the store's cursor durably holds
        self._dirty = asyncio.Event()  # the cursor may move (one consumer: the cursor writer)
        self._waiters: list[asyncio.Future[None]] = []  # anyone waiting for any change

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def free(self) -> int:
        return max(0, self.limit - len(self.messages))

    @property
    def unacked(self) -> int:
        return sum(1 for m in self.messages if not m.acked)

    def add(self, message: OutMessage, covered: int) -> None:
        """Record a message about to be sent (in first_seq order); `covered`: every seq up to it is now in
        the window or was skipped (the next message's first_seq - 1, or the read's last seq)."""
        self.messages.append(message)
        self.taken = max(self.taken, covered)

    def replace(self, message: OutMessage, parts: list[OutMessage]) -> None:
        """Put the parts of a message that was split (in seq order) where the message was."""
        i = self.messages.index(message)
        del self.messages[i]
        for k, part in enumerate(parts):
            self.messages.insert(i + k, part)

    def skip_to(self, seq: int) -> None:
        """Everything up to seq was taken (read, and sent, skipped or expired)."""
        if seq > self.taken:
            self.taken = seq
            self._notify()

    def ack(self, message: OutMessage) -> None:
        message.acked = True
        self._notify()

    def _notify(self) -> None:
        self._dirty.set()
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()

    def ackable(self) -> int:
        """The highest seq the cursor may move to: below the lowest seq of any unacked message, else all taken.
        Every message is looked at: per-device messages interleave, and the parts of a split one may stand
        after a message of another device with lower seqs."""
        lowest = min((m.first_seq for m in self.messages if not m.acked), default=None)
        return self.taken if lowest is None else min(lowest - 1, self.taken)

    def made_durable(self, seq: int) -> None:
        """The store now durably holds cursor = seq: messages wholly covered leave the window."""
        self.durable = max(self.durable, seq)
        if any(m.acked and m.last_seq <= self.durable for m in self.messages):
            self.messages = deque(m for m in self.messages if not (m.acked and m.last_seq <= self.durable))
        self._notify()

    def oldest_unacked_ts(self) -> float | None:
        return min((m.oldest_ts for m in self.messages if not m.acked), default=None)

    async def wait_room(self, n: int) -> None:
        """Until n more messages fit (n is at most the limit)."""
        n = min(n, self.limit)
        while len(self.messages) + n > self.limit:
            await self.wait_changed_or(ROOM_RECHECK)

    async def wait_dirty(self, timeout: float) -> None:
        """Until an ack or a skip happened since the last call, or the timeout (for the cursor writer)."""
        await wait_event(self._dirty, timeout)
        self._dirty.clear()

    async def wait_changed_or(self, timeout: float) -> None:
        """Until the next ack, skip or durable cursor write, or the timeout."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await wait_done(fut, timeout)
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
            fut.cancel()

