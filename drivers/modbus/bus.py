"""One bus per TCP endpoint or serial port: requests serialized, pacing, and the connection state machine.

States: idle → connecting → up; a failed connect goes to backing-off (exponential, jittered) and the
next request after the wait connects again. A lost connection that had carried an answer goes back to idle
(reconnect at once, then back off); one lost before its first answer (a peer that accepts and drops at once:
a gateway at its connection limit, a wrong port behind a load balancer) counts as a failed connect and backs
off. The backoff is reset by the first answer on a connection, not by the connect itself, so such a peer gets
a connection at most every `backoff_max`, not one per poll.

Logging: a failure streak (connects failing, connections lost) logs its first failure as a warning, the others
at debug with a "still failing" summary at most every `FAILURE_SUMMARY_INTERVAL`, and one line at the first
answer that ends it. Several devices (unit ids) share a bus through `BUSES`, reference-counted by endpoint.
A bus the last device has left is closed for good: it never connects again (a request that still holds it
gets BusClosed), so a request overlapping a stop cannot leave a connection open that no device owns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from drivers.modbus import defaults
from drivers.modbus.link import ExceptionResponse, LinkError, ModbusLink, NoResponse, NotConnected
from edge.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

IDLE = "idle"
CONNECTING = "connecting"
UP = "up"
BACKING_OFF = "backing-off"


class BusDown(LinkError):
    """The bus has no connection (refused, unreachable, port missing) and is waiting to try again."""


class BusClosed(LinkError):
    """The bus was closed (the last device using it stopped); it does not connect again."""


class _Streak:
    """Failures since the bus last got an answer: when it began, how many, and what was last logged."""

    def __init__(self, now: float) -> None:
        self.since = now
        self.failures = 1
        self.summary_at = now  # when the first failure or the last summary was logged
        self.failures_at_summary = 1


class Bus:
    """The request queue of one physical bus; every request holds the bus alone, from send to answer."""

    def __init__(
        self,
        key: str,
        link: ModbusLink,
        *,
        frame_gap: float = 0.0,
        backoff: Backoff | None = None,
        stale_after_timeouts: int | None = defaults.TCP_STALE_AFTER_TIMEOUTS,
    ) -> None:
        self.key = key
        self.link = link
        self.frame_gap = frame_gap
        self.backoff = backoff or Backoff(
            initial=defaults.DEFAULT_BACKOFF_INITIAL, maximum=defaults.DEFAULT_BACKOFF_MAX,
            factor=defaults.BACKOFF_FACTOR, jitter=defaults.BACKOFF_JITTER,
        )
        self.stale_after_timeouts = stale_after_timeouts
        self.state = IDLE
        self.last_error: str | None = None
        self.retry_at = 0.0
        self.reconnects = 0
        self.requests = 0
        self.users = 0
        self.closed = False  # set by close(): the bus never connects again
        self._was_up = False
        self._answered = False  # the current connection has carried an answer (resets the backoff)
        self._streak: _Streak | None = None  # failing since the last answer
        self.summary_interval = defaults.FAILURE_SUMMARY_INTERVAL
        self._silent = 0  # consecutive timeouts since any unit last answered
        self._last_done = 0.0
        self._lock = asyncio.Lock()
        self.loop = _running_loop()

    def down_for(self, now: float | None = None) -> float:
        """Seconds until the next connect attempt while backing off, else 0."""
        if self.state != BACKING_OFF:
            return 0.0
        return max(0.0, self.retry_at - (time.monotonic() if now is None else now))

    async def run(
        self,
        op: Callable[[ModbusLink], Awaitable[T]],
        *,
        timeout: float,
        pause: float = 0.0,
        retries: int = 0,
    ) -> T:
        """Run one request on the link, alone on the bus; retries on timeout. Raises LinkError subclasses."""
        self._raise_if_closed()
        self._raise_if_backing_off()
        async with self._lock:
            try:
                return await self._run_locked(op, timeout, pause, retries)
            finally:
                if self.closed:  # closed while this request ran: whatever it (re)opened is closed too
                    self._reset(IDLE)

    async def _run_locked(
        self, op: Callable[[ModbusLink], Awaitable[T]], timeout: float, pause: float, retries: int
    ) -> T:
        self._raise_if_closed()
        self._raise_if_backing_off()
        if self.state != UP or not self.link.connected:
            await self._connect(timeout)
        attempt = 0
        while True:
            self._raise_if_closed()  # e.g. closed during a timed-out attempt: no retry
            gap = max(self.frame_gap, pause)
            if gap > 0:
                wait = self._last_done + gap - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self.requests += 1
            try:
                result = await op(self.link)
            except NoResponse:
                self._silent += 1
                if attempt < retries:
                    attempt += 1
                    continue
                if self.stale_after_timeouts and self._silent >= self.stale_after_timeouts:
                    log.info("%s: %d requests unanswered, reopening", self.key, self._silent)
                    self._reset(IDLE)
                raise
            except NotConnected as exc:
                self.last_error = str(exc)
                if self.closed:
                    log.debug("%s: %s", self.key, exc)
                    self._reset(IDLE)
                elif self._answered:  # a connection that worked: reopen it at once
                    self._failed(str(exc))
                    self._reset(IDLE)
                else:  # lost before its first answer: no better than a failed connect
                    delay = self._failed(str(exc), retry_in=True)
                    self._reset(BACKING_OFF)
                    self.retry_at = time.monotonic() + delay
                raise
            except ExceptionResponse:
                self._silent = 0  # the unit answered, if only with an exception
                self._got_answer()
                raise
            except LinkError:
                self._silent = 0  # something came back, if not a usable answer (e.g. one that does not decode)
                raise
            finally:
                self._last_done = time.monotonic()
            self._silent = 0
            self._got_answer()
            return result

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise BusClosed(f"{self.key} closed: no device uses it any more")

    def _raise_if_backing_off(self) -> None:
        if self.state == BACKING_OFF:
            left = self.down_for()
            if left > 0:
                raise BusDown(f"{self.key} down ({self.last_error}); next connect attempt in {left:.1f}s")

    async def _connect(self, timeout: float) -> None:
        self.state = CONNECTING
        try:
            await self.link.open(timeout)
        except NotConnected as exc:
            self.last_error = str(exc)
            delay = self._failed(str(exc), retry_in=True)
            self.state = BACKING_OFF
            self.retry_at = time.monotonic() + delay
            raise BusDown(f"{self.key} down ({exc}); next connect attempt in {delay:.1f}s") from exc
        if self._was_up:
            self.reconnects += 1
            log.debug("%s: connected again", self.key)  # "reconnected" is logged at its first answer
        self._was_up = True
        self.state = UP
        self.last_error = None
        self._silent = 0
        self._answered = False  # the backoff is reset by the first answer, not by the connect

    def _failed(self, error: str, *, retry_in: bool = False) -> float:
        """Count a failure in the streak and log it (the first one, then a summary now and then); returns the
        backoff delay to wait when `retry_in` (which consumes a backoff attempt), else 0."""
        delay = self.backoff.delay() if retry_in else 0.0
        then = f"; retrying in {delay:.1f}s" if retry_in else "; reconnecting"
        now = time.monotonic()
        streak = self._streak
        if streak is None:
            self._streak = _Streak(now)
            log.warning("%s: %s%s", self.key, error, then)
            return delay
        streak.failures += 1
        if now - streak.summary_at >= self.summary_interval:
            log.warning("%s: still failing: %d attempts in the last %.0fs (%s%s)", self.key,
                        streak.failures - streak.failures_at_summary, now - streak.summary_at, error, then)
            streak.summary_at, streak.failures_at_summary = now, streak.failures
        else:
            log.debug("%s: %s%s", self.key, error, then)
        return delay

    def _got_answer(self) -> None:
        """The first answer on a connection: it works, the backoff starts afresh and a failure streak ends."""
        if self._answered:
            return
        self._answered = True
        self.backoff.reset()
        streak, self._streak = self._streak, None
        if streak is not None:
            log.info("%s: reconnected (after %d failures in %.0fs)", self.key, streak.failures,
                     time.monotonic() - streak.since)

    def _reset(self, state: str) -> None:
        self.link.close()
        self.state = state

    def close(self) -> None:
        """Close the connection for good (when the last device using the bus stops); it never reopens."""
        self.closed = True
        self._reset(IDLE)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class BusRegistry:
    """Buses by key (endpoint or serial port): the first device opens one, the last one to leave closes it."""

    def __init__(self) -> None:
        self._buses: dict[str, Bus] = {}

    def acquire(self, key: str, create: Callable[[], Bus]) -> Bus:
        bus = self._buses.get(key)
        if bus is not None and bus.loop is not None and bus.loop is not _running_loop():
            log.warning("%s: left open by an earlier event loop; starting it afresh", key)
            bus.close()
            bus = None
        if bus is None:
            bus = self._buses[key] = create()
        bus.users += 1
        return bus

    def release(self, bus: Bus) -> None:
        bus.users -= 1
        if bus.users <= 0 and self._buses.get(bus.key) is bus:
            del self._buses[bus.key]
            bus.close()

    def get(self, key: str) -> Bus | None:
        return self._buses.get(key)


BUSES = BusRegistry()
"""The process-wide registry: devices on the same endpoint share one Bus."""
