"""The MQTT sink: QoS 1 publishes of batches to a topic template, a window in flight, cursor over PUBACKs."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from sync.defaults import (
    DRAIN_TIMEOUT,
    IDLE_WAIT,
    MQTT_REPLAY_TIMEOUT,
    MQTT_THROTTLE_MAX,
    MQTT_THROTTLE_MIN,
    STOP_WAIT,
)
from sync.delivery import DeliverySink
from sync.mqtt_config import MqttSinkConfig
from sync.mqtt_link import MqttLink
from sync.outage import OutageLog
from sync.pacing import Backoff
from sync.waiting import wait_done
from sync.window import AckWindow, OutMessage

if TYPE_CHECKING:
    from edge.store import DeadLetter, Store

log = logging.getLogger("edge.sync")

REASON_FAILURE = 0x80  # MQTT 5 PUBACK reason codes from here on mean "refused"
QUOTA_EXCEEDED = 0x97  # PUBACK: the broker throttles (AWS IoT, EMQX...): pause and send again, never dead-letter
REPLAY_RECHECK = 0.05  # s: a replay waiting for room in the window looks again this often


def too_large(message: OutMessage, link: MqttLink) -> str:
    """Why a message of one reading cannot be sent on this connection (its dead letter's error)."""
    return (f"one reading encodes to {len(message.payload)} bytes, more than the broker accepts in a packet "
            f"({link.max_packet} bytes)")


class MqttSink(DeliverySink):
    """Publishes the contract's payload to an MQTT broker, at least once, in order per device."""

    config: MqttSinkConfig

    def __init__(self, config: MqttSinkConfig, *, edge_id: str, store: Store, data_dir: str, **kw: Any) -> None:
        super().__init__(config, edge_id=edge_id, store=store, data_dir=data_dir, **kw)
        self.topic = config.topic.replace("{edge}", edge_id)
        self.link: MqttLink | None = None
        self._by_mid: dict[int, OutMessage] = {}  # published on the current connection, not yet PUBACKed
        self._resend: deque[OutMessage] = deque()  # left unacked by a lost connection; go out before new ones
        self._waiters: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._refused: list[tuple[OutMessage, str]] = []
        self._refused_event = asyncio.Event()
        self._past_retries = 0  # connection retries of links before the current one
        self._throttled = 0  # messages the broker answered "quota exceeded" (sent again after a pause)
        self._pause_until = 0.0  # monotonic: no publish before this (the broker throttles us)
        self._throttle = Backoff(MQTT_THROTTLE_MIN, MQTT_THROTTLE_MAX)
        self._throttle_log = OutageLog(config.name)

    @property
    def per_device(self) -> bool:
        return self.config.per_device

    def topic_for(self, device: str | None) -> str:
        return self.topic.replace("{device}", device or "")

    # -- delivering -----------------------------------------------------------------------------------

    async def _deliver(self, window: AckWindow) -> None:
        self._by_mid.clear()
        self._resend.clear()
        if self.link is not None:
            self._past_retries += self.link.attempts
        link = MqttLink(self.config, edge_id=self.edge_id, outage=self.outage, on_ack=self._on_ack,
                        on_state=self._on_state)
        self.link = link
        tasks = [asyncio.create_task(link.maintain(), name=f"sink-{self.name}-link"),
                 asyncio.create_task(self._dead_letter_refused(window), name=f"sink-{self.name}-refused"),
                 asyncio.create_task(self._publish_loop(window, link), name=f"sink-{self.name}-publish")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            tasks[2].cancel()
            await self._drain(window, link)
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=STOP_WAIT)
            await link.close(status=True)

    async def _drain(self, window: AckWindow, link: MqttLink) -> None:
        """Give outstanding PUBACKs a moment to arrive (fewer duplicates after a restart)."""
        if not link.connected:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT
        while window.unacked and link.connected and loop.time() < deadline:
            await window.wait_changed_or(deadline - loop.time())

    async def _publish_loop(self, window: AckWindow, link: MqttLink) -> None:
        while not self.stopping:
            chunk = await self.next_chunk()
            await window.wait_room(len(chunk.messages))
            for i, m in enumerate(chunk.messages):
                await self.pacer.take(m.count, len(m.payload))
                await self._wait_turn(link)  # then publish at once: no await between the check and the publish
                window.add(m, chunk.covered_after(i))
                self._publish(link, window, m)
            window.skip_to(chunk.taken)

    async def _wait_turn(self, link: MqttLink) -> None:
        """Until connected, every earlier message is out again, and there is room in the broker's receive maximum."""
        while True:
            await link.wait_connected()
            if self._has_turn(link):
                return
            if self._resend:  # normally sent by a PUBACK, a reconnect or the end of a pause; never left behind
                self._resend_some(link)
            if self.window is not None:
                await self.window.wait_changed_or(IDLE_WAIT)

    def _on_state(self, up: bool) -> None:
        """Connected (before any new publish may go out) or lost."""
        self.connected = up
        if up and (self._by_mid or self._resend) and self.link is not None:
            pending = sorted([*self._by_mid.values(), *self._resend], key=lambda m: m.first_seq)
            self._by_mid.clear()
            self._resend = deque(pending)
            # once per outage: a link flapping within one failure streak says it at debug level
            (log.info if self.outage.failures <= 1 else log.debug)(
                "sink %s: %d unacknowledged messages (seq %d..%d) go out again after reconnecting",
                self.name, len(pending), pending[0].first_seq, pending[-1].last_seq)
            self._resend_some(self.link)

    def _has_turn(self, link: MqttLink) -> bool:
        """Connected, nothing left to send again, and room in the broker's receive maximum."""
        return (link.connected and not self._resend and self._in_flight() < link.data_room
                and time.monotonic() >= self._pause_until)

    def _in_flight(self) -> int:
        """Publishes of ours on this connection without a PUBACK yet: data messages and dead-letter replays."""
        return len(self._by_mid) + len(self._waiters)

    def _resend_some(self, link: MqttLink) -> None:
        """Send again, in seq order, what the last connection left unacked, as far as the receive maximum allows."""
        while (self._resend and self._in_flight() < link.data_room and link.connected
               and time.monotonic() >= self._pause_until and self.window is not None):
            self._publish(link, self.window, self._resend.popleft())

    def _publish(self, link: MqttLink, window: AckWindow, m: OutMessage) -> None:
        """Publish a message that is in the window. One larger than the broker takes in a packet is split in
        the window and its parts go out first, through the resend queue; a single reading too large is refused."""
        topic = self.topic_for(m.device)
        limit = link.max_payload(topic)
        if limit is not None and len(m.payload) > limit:
            parts = self.fit(m, limit)
            if len(parts) > 1:
                window.replace(m, parts)
                self._resend.extendleft(reversed(parts))
                self._resend_some(link)
            else:
                self._refused.append((m, too_large(m, link)))
                self._refused_event.set()
            return
        m.attempts += 1
        self._by_mid[link.publish(topic, m.payload)] = m

    def stats(self) -> dict[str, Any]:
        if self.link is not None:
            self.retries = self._past_retries + self.link.attempts + self._throttled
        stats = super().stats()
        if stats["last_error"] is None:
            stats["last_error"] = self._throttle_log.last_error
        return stats

    def _on_ack(self, mid: int, code: int, reason: str) -> None:
        """A PUBACK (on the event loop): ack the message, or queue it for dead-lettering when refused."""
        waiter = self._waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((code, reason))
        message = self._by_mid.pop(mid, None)
        window = self.window
        if message is not None and window is not None:
            if code == QUOTA_EXCEEDED:
                self._pause_for_quota(message, reason)
            elif code >= REASON_FAILURE:
                self._refused.append((message, f"PUBACK reason {reason} (0x{code:02x})"))
                self._refused_event.set()
            else:
                self.acked(window, message)
                if self._throttle_log.failures and time.monotonic() >= self._pause_until:
                    self._throttle.reset()
                    self._throttle_log.recovered(f"publishing to {self.config.url}")
        if self._resend and self.link is not None:  # any PUBACK makes room, a replay's too
            self._resend_some(self.link)

    def _pause_for_quota(self, message: OutMessage, reason: str) -> None:
        """The broker refused a message for now: send it again, before anything newer, after a pause.

        Messages already in flight behind it may still be accepted, so the throttled one can arrive after
        them: at least once holds, the order per device may not (a dead letter would break it as well)."""
        bisect.insort(self._resend, message, key=lambda m: m.first_seq)
        self._throttled += 1
        delay = self._throttle.next()
        until = time.monotonic() + delay
        if until > self._pause_until:
            self._pause_until = until
            asyncio.get_running_loop().call_later(delay, self._after_pause)
        self._throttle_log.failed(f"publishing to {self.config.url}",
                                  f"the broker throttles: PUBACK {reason} (0x{QUOTA_EXCEEDED:02x}) for seq "
                                  f"{message.first_seq}..{message.last_seq}; sending again in {delay:.1f} s")

    def _after_pause(self) -> None:
        link = self.link
        if link is not None and time.monotonic() >= self._pause_until:
            self._resend_some(link)

    async def _dead_letter_refused(self, window: AckWindow) -> None:
        while not self.stopping:
            await self._refused_event.wait()
            self._refused_event.clear()
            while self._refused:
                message, error = self._refused.pop(0)
                await self.dead_letter(window, message, error)

    # -- closing and replay ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Wait briefly for outstanding PUBACKs, write the cursor, say "offline", disconnect."""
        link, window = self.link, self.window
        if link is not None and window is not None:
            await self._drain(window, link)
        await super().close()
        if link is not None:
            await link.close(status=True)

    async def replay(self, dead_letter: DeadLetter) -> None:
        """Publish a dead letter's stored payload again (the caller removes it from the table once PUBACKed)."""
        link = self.link
        if link is None or not link.connected:
            raise RuntimeError(f"sink {self.name}: not connected to {self.config.url}; cannot replay now")
        device = None
        if self.per_device:
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                device = json.loads(dead_letter.payload)["readings"][0]["device"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MQTT_REPLAY_TIMEOUT
        while not self._has_turn(link):  # checked right before the publish: it counts against the broker's limit
            if not link.connected or loop.time() > deadline:
                raise RuntimeError(f"sink {self.name}: no room to publish to {self.config.url} within "
                                   f"{MQTT_REPLAY_TIMEOUT} s (not connected, or the window stayed full)")
            await asyncio.sleep(REPLAY_RECHECK)
        mid = link.publish(self.topic_for(device), dead_letter.payload)
        fut: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._waiters[mid] = fut
        try:
            if not await wait_done(fut, MQTT_REPLAY_TIMEOUT):
                raise RuntimeError(f"sink {self.name}: no PUBACK for the replayed dead letter {dead_letter.id} "
                                   f"within {MQTT_REPLAY_TIMEOUT} s")
            code, reason = fut.result()
        finally:
            self._waiters.pop(mid, None)
        if code >= REASON_FAILURE:
            raise RuntimeError(f"sink {self.name}: broker refused dead letter {dead_letter.id} again: {reason}")
        self.replayed(dead_letter)
