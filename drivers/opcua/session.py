"""The one session a device holds with its server: open (secured, nodes resolved), watch, close, reopen.

Recovery is ours, not asyncua's: the client runs with `auto_reconnect=False`, its supervisor only reports a
lost connection (socket closed or the periodic server-state probe failing) through `lost`. Whoever owns the
DeviceSession then closes it and opens a fresh one after `Backoff`, so there is never more than one session
per device, and node ids and subscriptions are rebuilt against whatever server came back.
A session closed for good (the device stopped) opens nothing until reopened: an open queued behind the close,
or still under way when it came, gets SessionClosed, so nothing leaves a session on the server that no one closes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from drivers.base import DOWN, UP, DeviceStatus
from drivers.opcua.config import OpcuaDevice
from drivers.opcua.nodes import ResolvedPoints, resolve
from drivers.opcua.orphan import OrphanedSession, close_orphan
from drivers.opcua.security import secure

log = logging.getLogger(__name__)

ASYNCUA_SESSION_LOGGER = "asyncua.client.ua_session.UaSession"
"""The logger of asyncua's UaSession (its publish loop and close_session)."""
_PUBLISH_CRASHED = "Publish iteration crashed"
_CLOSE_ON_CLOSED = (
    "close_session was called but connection is closed",
    "close_session but connection wasn't established",
)
_OUTAGE_CODES = frozenset({
    ua.StatusCodes.BadConnectionClosed, ua.StatusCodes.BadSecureChannelClosed, ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadServerNotConnected, ua.StatusCodes.BadShutdown, ua.StatusCodes.BadCommunicationError,
})


def _outage(exc: BaseException | None) -> bool:
    """An exception that only says the connection (or the session with it) is gone."""
    if isinstance(exc, ConnectionError):
        return True
    return isinstance(exc, ua.UaStatusCodeError) and exc.code in _OUTAGE_CODES


class _ExpectedOutageRecords(logging.Filter):
    """On every lost connection asyncua's publish loop logs "Publish iteration crashed; retrying in 1s" with a
    15-line traceback ending in `ConnectionError: Connection is closed`, and closing the dead session logs
    "close_session was called but connection is closed": about 17 lines a flap in the journal. The session
    reports the loss itself (`connection_lost_callback`, then the driver's "session lost"), so these records
    are dropped, or shortened to one debug line when the OPC-UA driver logs at debug. Only these messages, and a
    publish crash only on an outage error: asyncua's other records, and a publish loop crashing on anything
    else, pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg in _CLOSE_ON_CLOSED:
            return self._shortened(record, msg)
        if msg.startswith(_PUBLISH_CRASHED):
            exc = record.exc_info[1] if record.exc_info else None
            if _outage(exc):
                return self._shortened(record, f"asyncua: publish loop stopped by the lost connection ({exc!r})")
        return True

    @staticmethod
    def _shortened(record: logging.LogRecord, text: str) -> bool:
        if not log.isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = text, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def _quiet_asyncua_outages() -> None:
    """Install the filter once on asyncua's session logger (the lowest layer: whatever handlers the process has)."""
    logger = logging.getLogger(ASYNCUA_SESSION_LOGGER)
    if not any(type(f).__name__ == _ExpectedOutageRecords.__name__ for f in logger.filters):  # also if re-imported
        logger.addFilter(_ExpectedOutageRecords())


_quiet_asyncua_outages()

CONNECT_TIMEOUT = 10.0
"""Whole connect sequence (endpoints, channel, session, activation, node resolution) at most this long."""
CLOSE_TIMEOUT = 2.0
"""CloseSession on a live channel at most this long; a dead channel is dropped at once."""
RECONNECT_INITIAL = 0.5
"""First reconnect delay; doubles per failed attempt up to the device's `reconnect_max`."""


class SessionLost(Exception):
    """The session is gone (server stopped, network cut, probe failed); reopen it."""


class SessionClosed(SessionLost):
    """The session was closed for good (the device stopped); it opens no more until reopen()."""


class Backoff:
    """Exponential reconnect delay: RECONNECT_INITIAL doubling to `maximum`; reset after a success."""

    def __init__(self, maximum: float) -> None:
        self.maximum = maximum
        self.delay = RECONNECT_INITIAL
        self.not_before = 0.0  # monotonic time before which no attempt is made

    def failed(self) -> float:
        """Record a failed attempt; returns the delay until the next one."""
        delay = self.delay
        self.not_before = time.monotonic() + delay
        self.delay = min(self.delay * 2, self.maximum)
        return delay

    def succeeded(self) -> None:
        self.delay = RECONNECT_INITIAL
        self.not_before = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.not_before


class DeviceSession:
    """Owns at most one asyncua Client (and so one server session) for one device."""

    def __init__(self, device: OpcuaDevice, status: DeviceStatus) -> None:
        self.device = device
        self.status = status
        self.client: Client | None = None
        self.points = ResolvedPoints()
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self.opened = 0  # sessions opened so far (the first is not a reconnect)
        self.max_nodes_per_read = 0  # the server's OperationLimits.MaxNodesPerRead (0: no limit)
        self.max_monitored_items_per_call = 0  # its OperationLimits.MaxMonitoredItemsPerCall (0: no limit)
        self.orphan: OrphanedSession | None = None  # a session we dropped that the server may still hold
        self.closed = False  # closed for good (close(for_good=True)) and not reopened since: open() refuses
        self._lock = asyncio.Lock()
        status.extra.setdefault("orphaned_sessions_closed", 0)

    @property
    def healthy(self) -> bool:
        """Connected, and nothing has reported a loss since."""
        return (
            self.client is not None and not self.lost.is_set() and self.client.uaclient.state is UaClientState.CONNECTED
        )

    def _new_client(self) -> Client:
        client = Client(
            self.device.url,
            timeout=self.device.timeout,
            watchdog_intervall=self.device.watchdog_interval,
            auto_reconnect=False,
        )
        client.session_timeout = int(self.device.session_timeout * 1000)
        return client

    async def open(self) -> Client:
        """Close any previous session (also one left on the server), then connect, secure, activate, resolve.

        Raises SessionClosed once closed for good, also when that happened while this open was under way."""
        async with self._lock:
            self._raise_if_closed()
            await self._close()
            await self._close_orphan()
            client = self._new_client()
            client.connection_lost_callback = self._on_lost
            self.lost = asyncio.Event()
            self.lost_reason = None
            self.client = client
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await secure(client, self.device)
                    await client.connect()
                    self.points = await resolve(client, self.device.point)
                    self.max_nodes_per_read = await _operation_limit(client, _MAX_NODES_PER_READ)
                    self.max_monitored_items_per_call = await _operation_limit(client, _MAX_MONITORED_ITEMS_PER_CALL)
            except BaseException:
                await self._close()
                raise
            if self.closed:  # closed for good while this open was under way: what it opened goes too
                await self._close()
                self._raise_if_closed()
            self.opened += 1
            if self.opened > 1:
                self.status.reconnects += 1
            self.status.state = UP
            self.status.extra["session"] = "connected"
            log.info("opcua %s: session open to %s (%s)", self.device.name, self.device.url, self.device.security)
            return client

    async def _on_lost(self, exc: Exception) -> None:
        self.mark_lost(f"connection lost: {exc!r}")

    def mark_lost(self, reason: str) -> None:
        """Report the session as unusable; the owner closes and reopens it."""
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    def check(self) -> None:
        """Raise SessionLost when the session is no longer usable."""
        if self.client is None:
            raise SessionLost("not connected")
        if self.lost.is_set():
            raise SessionLost(self.lost_reason or "connection lost")
        if self.client.uaclient.state is not UaClientState.CONNECTED:
            raise SessionLost(f"connection {self.client.uaclient.state.value}")

    async def close(self, for_good: bool = False) -> None:
        """CloseSession (bounded by CLOSE_TIMEOUT) and drop the socket; safe to call repeatedly.

        `for_good` (the device stops): no open() succeeds any more until reopen(), not even one already waiting
        for the lock or under way (it closes what it opened and raises SessionClosed)."""
        if for_good:
            self.closed = True  # before the lock: an open() queued ahead of this close must not open either
        async with self._lock:
            await self._close()

    def reopen(self) -> None:
        """Allow open() again after a close for good (the device is started again)."""
        self.closed = False

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise SessionClosed(f"the session of {self.device.name!r} is closed: the device is stopped")

    async def _close(self) -> None:
        """CloseSession if the connection is open; if that fails, remember the session as an orphan."""
        client, self.client = self.client, None
        if client is None:
            return
        self.status.extra["session"] = "closed"
        protocol = client.uaclient.protocol
        connection_open = protocol is not None and not protocol.is_closed
        closed = False
        left = OrphanedSession.left_by(client)  # before CloseSession marks it closed locally
        if connection_open and left is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.close_session()
                closed = True
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.close_secure_channel()
            except (Exception, TimeoutError) as e:
                log.debug("opcua %s: close was not clean: %r", self.device.name, e)
            if not closed:
                # the server did not answer: it may hold the session until its timeout; close it from the next
                # connection. (A connection the server closed is not an orphan: the server went away with it.)
                self.orphan = left
        client.disconnect_socket()
        try:  # stops asyncua's tasks; with the socket gone nothing more is sent
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await client.close_session()
        except (Exception, TimeoutError):
            log.debug("opcua %s: asyncua teardown", self.device.name, exc_info=True)

    async def _close_orphan(self) -> None:
        orphan = self.orphan
        if orphan is None:
            return
        if orphan.expired(self.device.session_timeout):
            self.orphan = None
            return
        reclaimer = self._new_client()
        try:
            await secure(reclaimer, self.device)
            if await close_orphan(reclaimer, orphan, self.device, CONNECT_TIMEOUT):
                self.status.extra["orphaned_sessions_closed"] += 1
                log.warning("opcua %s: closed the session left on the server by the lost connection", self.device.name)
            self.orphan = None
        except (Exception, TimeoutError) as e:  # no new session while the old one may live: retry later
            raise SessionLost(f"the previous session is not closed yet: {e!r}") from e

    def set_down(self, error: str) -> None:
        self.status.state = DOWN
        self.status.last_error = error
        self.status.extra["session"] = "down"


_MAX_NODES_PER_READ = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
_MAX_MONITORED_ITEMS_PER_CALL = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall


async def _operation_limit(client: Client, object_id: int) -> int:
    """One of the server's OperationLimits, e.g. nodes per Read (0 when it sets none or does not say)."""
    try:
        value = await client.get_node(ua.NodeId(ua.Int32(object_id))).read_value()
    except (ua.UaError, ValueError):
        return 0
    return int(value) if isinstance(value, int) and value > 0 else 0
