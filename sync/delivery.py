"""What every delivering sink shares: read after the cursor, filter, expire, batch, window, durable acks, stats.

A transport subclass implements `_deliver()` (send the messages of each `next_chunk()`, call `acked()`);
this class reads ahead, and keeps the cursor moving over the contiguous acked prefix, durably.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.reading import Reading
from sync.base import Sink, SinkConfig
from sync.dead_letter_log import DeadLetterLog
from sync.defaults import (
    BACKLOG_REFRESH,
    CLOSE_TIMEOUT,
    IDLE_WAIT,
    INFLIGHT,
    RATE_WINDOW,
    READ_AHEAD,
    READ_BATCHES,
    STOP_WAIT,
)
from sync.outage import OutageLog
from sync.pacing import SendPacer
from sync.payload import PayloadEncoder
from sync.waiting import wait_done
from sync.window import AckWindow, OutMessage

if TYPE_CHECKING:
    from edge.store import DeadLetter, Store

log = logging.getLogger("edge.sync")

BYTES_PER_READING_GUESS = 120.0  # backlog_bytes estimate before any message was encoded
EWMA_WEIGHT = 0.1  # how fast the bytes-per-reading estimate follows new messages


@dataclass
class Chunk:
    """What one store read gave: messages to send (first_seq order), and the highest seq it covers."""

    messages: list[OutMessage]
    taken: int

    def covered_after(self, i: int) -> int:
        """Every seq up to this one is in messages[:i + 1] or skipped."""
        return self.messages[i + 1].first_seq - 1 if i + 1 < len(self.messages) else self.taken


def expired_counter(sink: str) -> str:
    """The store counter holding how many readings this sink skipped because they were older than max_age."""
    return f"sink.{sink}.expired"


def payload_signer(data_dir: str) -> Callable[[bytes], bytes]:
    """Encoded payload → the same payload with its Ed25519 `sig`; raises OSError when the key is unusable."""
    from edge.identity import payload_signer as signer_of

    sign_dict = signer_of(data_dir, "sign")

    def sign(payload: bytes) -> bytes:
        signed = sign_dict(json.loads(payload))
        return json.dumps(signed, ensure_ascii=False, separators=(",", ":")).encode()

    return sign


class DeliverySink(Sink):
    """A sink that sends batches of readings and advances its durable cursor over what was acked."""

    def __init__(self, config: SinkConfig, *, edge_id: str, store: Store, data_dir: str, **kw: Any) -> None:
        super().__init__(config, edge_id=edge_id, store=store, data_dir=data_dir, **kw)
        self.encoder = PayloadEncoder(edge_id)
        self.signer: Callable[[bytes], bytes] | None = None  # loaded by run(): a missing key fails the run
        self.pacer = SendPacer(config.max_rate, config.max_bytes_per_s)
        self.outage = OutageLog(config.name)
        self.dead_log = DeadLetterLog(config.name)  # the first dead letter of a streak in full, then summaries
        self.window: AckWindow | None = None
        self.connected = False
        self.sent = 0  # readings acked since start
        self.retries = 0
        self.expired = 0
        self.last_ack: float | None = None
        self._acks: deque[tuple[float, int]] = deque()  # (monotonic time, readings) for send_rate
        self._bytes_per_reading = BYTES_PER_READING_GUESS
        self._head_ts: float | None = None  # ts of the oldest reading not yet acked (refreshed)
        self._head_checked = 0.0
        self.stopping = False  # run() is ending: the delivery loops must end too
        self._chunks: asyncio.Queue[Chunk] = asyncio.Queue(READ_AHEAD)
        self._cursor_lock = asyncio.Lock()  # cursor writes in order: a later, smaller one must not win
        self._expired_ahead: deque[tuple[int, int]] = deque()  # (chunk's last seq, expired in it) not yet passed

    # -- what a transport provides ----------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return int(getattr(self.config, "inflight", INFLIGHT))

    @property
    def per_device(self) -> bool:
        """Whether each message holds one device's readings only."""
        return False

    @abc.abstractmethod
    async def _deliver(self, window: AckWindow) -> None:
        """For each `next_chunk()`: `window.wait_room(len(messages))`, then send its messages in order, each
        added first with `window.add(m, chunk.covered_after(i))`, then `window.skip_to(chunk.taken)`; call
        `acked` for each acknowledged message. Until cancelled."""

    # -- running ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.config.sign and self.signer is None:
            # here, not in the constructor: a reload that turns signing on before `edge keys init` must not
            # fail half-applied; a failed run is logged, shown in stats and retried by the supervisor
            try:
                self.signer = payload_signer(self.data_dir)
            except OSError as e:
                self.outage.failed("signing", str(e))
                raise
        cursor = await self.store.register(self.name, kind="sink")
        window = AckWindow(self.inflight, cursor)
        self.window = window
        await self._load_counters()
        log.info("sink %s (%s) starting after seq %d", self.name, self.config.type, cursor)
        self._chunks = asyncio.Queue(READ_AHEAD)
        self._expired_ahead.clear()
        tasks = [asyncio.create_task(self._read_ahead(window.taken), name=f"sink-{self.name}-read"),
                 asyncio.create_task(self._deliver(window), name=f"sink-{self.name}-deliver"),
                 asyncio.create_task(self._keep_cursor(window), name=f"sink-{self.name}-cursor")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            self.stopping = True  # loops check it too: a cancellation can get lost inside a timed wait
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=STOP_WAIT)
            await self._save_cursor(window)
            self.stopping = False

    async def _load_counters(self) -> None:
        name = self.name

        def load(store: Store) -> int:
            return int(store.stats_sync()["counters"].get(expired_counter(name), 0))

        self.expired = await self.store.run_read(load)

    async def _keep_cursor(self, window: AckWindow) -> None:
        """Write the acked prefix to the store's cursor whenever it moves; keep the backlog figures fresh."""
        while not self.stopping:
            await window.wait_dirty(BACKLOG_REFRESH)
            await self._save_cursor(window)
            now = time.monotonic()
            if now - self._head_checked >= BACKLOG_REFRESH:
                self._head_checked = now
                head = await self.store.read(window.ackable(), 1)
                self._head_ts = head[0].ts if head else None

    async def _save_cursor(self, window: AckWindow) -> None:
        """Make the acked prefix the durable cursor. While a backlog drains (or the window is full) the sender
        waits for exactly this, so the store commits at once instead of at its next commit interval."""
        async with self._cursor_lock:
            target = window.ackable()
            if target <= window.durable:
                return
            write = self.store.set_cursor(self.name, target, kind="sink")
            if self.store.durable_seq > window.taken or window.free == 0:
                seq, _ = await asyncio.gather(write, self.store.flush())
            else:
                seq = await write
            window.made_durable(seq)
            await self._count_expired(window.durable)

    async def _count_expired(self, durable: int) -> None:
        """Count the expired readings the durable cursor has passed: counted once, not again after a restart
        that reads them again."""
        n = 0
        while self._expired_ahead and self._expired_ahead[0][0] <= durable:
            n += self._expired_ahead.popleft()[1]
        if n:
            self.expired += n
            await self.store.count(expired_counter(self.name), n)

    async def _read_ahead(self, after: int) -> None:
        """Read, filter, batch and encode ahead of the sender (a few chunks at most)."""
        while not self.stopping:
            chunk = await self._read_chunk(after)
            if chunk is None:
                await self.store.wait_for_data(after, IDLE_WAIT)
                continue
            await self._chunks.put(chunk)
            after = chunk.taken

    async def next_chunk(self) -> Chunk:
        """The next chunk in seq order (waits for new readings)."""
        return await self._chunks.get()

    async def _read_chunk(self, after: int) -> Chunk | None:
        """The messages for the readings after `after` (a few); None when there are none.

        Readings up to `chunk.taken` that are in no message were filtered out or expired.
        """
        found = await self.store.run_read(self._prepare, after)
        if found is None:
            return None
        chunk, expired = found
        if expired:
            self._expired_ahead.append((chunk.taken, expired))  # counted when the cursor passes them
        return chunk

    def _prepare(self, store: Store, after: int) -> tuple[Chunk, int] | None:
        """Read, batch and encode on the store's reader thread (keeps the event loop free); (chunk, expired)."""
        most = min(READ_BATCHES, self.inflight)  # a chunk enters the window whole
        readings = store.read_sync(after, self.config.batch_max * most)
        if not readings:
            return None
        groups, taken, expired = self._group(readings, most)
        return Chunk([self._message(g) for g in groups], taken), expired

    def _group(self, readings: list[Reading], max_messages: int) -> tuple[list[list[Reading]], int, int]:
        """Readings → batches (per device when the topic is), skipping filtered and expired ones.

        Stops before the reading that would need message max_messages + 1, so every reading up to the
        returned `taken` seq is in a batch or skipped, and none after it is.
        """
        cfg = self.config
        batch_max = cfg.batch_max
        matches = cfg.matches if cfg.filter else None
        oldest = time.time() - cfg.max_age if cfg.max_age else None
        per_device = self.per_device
        open_groups: dict[str | None, list[Reading]] = {}
        groups: list[list[Reading]] = []
        taken = readings[0].seq - 1
        expired = 0
        for r in readings:
            if (matches is not None and not matches(r)) or (oldest is not None and r.ts < oldest):
                if matches is None or matches(r):
                    expired += 1
                taken = r.seq
                continue
            key = r.device if per_device else None
            g = open_groups.get(key)
            if g is None or len(g) >= batch_max:
                if len(groups) >= max_messages:
                    break
                g = []
                open_groups[key] = g
                groups.append(g)
            g.append(r)
            taken = r.seq
        return groups, taken, expired

    def _message(self, readings: list[Reading]) -> OutMessage:
        payload = self.encoder.encode(readings)
        if self.signer is not None:
            payload = self.signer(payload)
        n = len(readings)
        self._bytes_per_reading += EWMA_WEIGHT * (len(payload) / n - self._bytes_per_reading)
        return OutMessage(readings[0].seq, readings[-1].seq, n, payload, min(r.ts for r in readings),
                          readings[0].device if self.per_device else None, readings=readings)

    def fit(self, message: OutMessage, max_bytes: int) -> list[OutMessage]:
        """The message's readings in messages of at most max_bytes, in seq order: a message too large for its
        peer is split in halves until the parts fit. A single reading larger on its own stays as it is."""
        if len(message.payload) <= max_bytes or message.readings is None or message.count <= 1:
            return [message]
        half = message.count // 2
        return [*self.fit(self._message(message.readings[:half]), max_bytes),
                *self.fit(self._message(message.readings[half:]), max_bytes)]

    # -- acks -----------------------------------------------------------------------------------------

    def acked(self, window: AckWindow, message: OutMessage) -> None:
        """The peer has the message (or it was dead-lettered): it counts for the cursor."""
        if message.acked:
            return
        window.ack(message)
        message.readings = None  # kept only in case the peer wants it split; let them go now
        now = time.monotonic()
        self.sent += message.count
        self.last_ack = time.time()
        self._acks.append((now, message.count))
        self._forget_acks(now)  # here, not only in stats(): with nobody asking for stats it grew for ever

    async def dead_letter(self, window: AckWindow, message: OutMessage, error: str) -> None:
        """Keep the refused message in the store's dead-letter table and move on past it."""
        await self.store.add_dead_letter(self.name, message.first_seq, message.last_seq, message.count, error,
                                         message.payload)
        self.dead_log.refused(message.first_seq, message.last_seq, message.count, error)
        window.ack(message)
        message.readings = None

    @property
    def dead_letters(self) -> int:
        """Dead letters of this sink in the store now (replays delete them, the budget drops the oldest)."""
        return self.store.dead_letter_count_sync(self.name)

    def replayed(self, dead_letter: DeadLetter) -> None:
        """A dead letter was delivered by replay() (its caller deletes the row)."""
        log.info("sink %s: dead letter %d (seq %d..%d) replayed", self.name, dead_letter.id,
                 dead_letter.first_seq, dead_letter.last_seq)

    async def close(self) -> None:
        """Write the last acked position (the transport closes its connection in its own close())."""
        self.dead_log.close()
        if self.window is not None:
            with contextlib.suppress(Exception):
                await wait_done(asyncio.ensure_future(self._save_cursor(self.window)), CLOSE_TIMEOUT)

    # -- stats ----------------------------------------------------------------------------------------

    def _forget_acks(self, now: float) -> None:
        """Keep only the acks of the last RATE_WINDOW seconds (what send_rate averages)."""
        acks = self._acks
        while acks and now - acks[0][0] > RATE_WINDOW:
            acks.popleft()

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        self._forget_acks(now)
        window = self.window
        durable_seq = self.store.durable_seq
        position = window.ackable() if window is not None else durable_seq
        backlog = max(0, durable_seq - position)
        oldest = window.oldest_unacked_ts() if window is not None else None
        if self._head_ts is not None and backlog:
            oldest = self._head_ts if oldest is None else min(oldest, self._head_ts)
        return {
            "type": self.config.type,
            "connected": self.connected,
            "backlog_readings": backlog,
            "backlog_bytes": int(backlog * self._bytes_per_reading),
            "oldest_unsent_age_s": round(max(0.0, time.time() - oldest), 3) if oldest is not None and backlog
            else 0.0,
            "last_ack": self.last_ack,
            "send_rate": round(sum(n for _, n in self._acks) / RATE_WINDOW, 1),
            "retries": self.retries,
            "dead_letters": self.dead_letters,
            "expired": self.expired,
            "sent": self.sent,
            "cursor": window.durable if window is not None else None,
            "inflight": len(window) if window is not None else 0,
            "last_error": self.outage.last_error,
        }
