"""OPC-UA drivers: `OpcuaSubscribeDriver` (push, monitored items) and `OpcuaPollDriver` (one Read per cycle).

Both keep one DeviceSession; on any loss they close it, back off and open a fresh one (node ids resolved
again). The subscribe driver also rebuilds a subscription that stays silent past its keep-alive.

Sessions and start()/stop(): the device's session is used from start() to stop(); stop() closes it for good, so a
poll or write arriving after it (a reload or shutdown overlapping a read-now or a write) is refused (bad readings,
WriteError) and one under way opens nothing more. A driver never started (a disabled device read or written
through the API) opens a session of its own for the one request and closes it when done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from asyncua import Client, ua

from drivers.base import DEGRADED, UP, DeviceConfig, Driver, Publish, WriteError
from drivers.opcua.config import OpcuaDevice, OpcuaPoint
from drivers.opcua.session import Backoff, DeviceSession, SessionLost
from drivers.opcua.subscription import SubscriptionFeed
from drivers.opcua.values import ReadingMaker, plain_value, status_name
from drivers.opcua.writing import to_variant
from edge.reading import Reading

log = logging.getLogger(__name__)

WATCH_TICK = 0.25
"""How often the subscribe loop checks the session and the subscription when no data arrives."""
PUBLISH_BATCH_MAX = 5000
"""Readings handed to the pipeline in one publish() call at most."""


class _OpcuaDriver(Driver):
    """What both modes share: the session, point lookup, reading conversion and writes."""

    def __init__(self, config: DeviceConfig) -> None:
        super().__init__(config)
        self.device = cast(OpcuaDevice, config)
        self.session = DeviceSession(self.device, self.status)
        self.backoff = Backoff(self.device.reconnect_max)
        self.maker = ReadingMaker(self.device)
        self.points: dict[str, OpcuaPoint] = {p.name: p for p in self.device.point}
        self._failures = 0  # consecutive failed connects: the first is logged loudly, repeats quietly
        self._delivered = False  # the current session has delivered (subscription made, or a read answered)
        self._started = False  # start() was called: requests use self.session (else a session of their own)
        self._stopped = False  # stop() was called (and start() not since): nothing opens a session any more

    async def start(self) -> None:
        """Use the device's session from now on (it opens on the first poll, or in run()). Also after a stop()."""
        self._started, self._stopped = True, False
        self.session.reopen()

    async def stop(self) -> None:
        """Close the session for good: polls and writes are refused from now on, one under way opens nothing."""
        self._stopped = True
        await self.session.close(for_good=True)

    def _own_session(self) -> DeviceSession:
        """A session for one request of a driver never started, closed by the caller when done."""
        return DeviceSession(self.device, self.status)

    @staticmethod
    async def _close_own(session: DeviceSession) -> None:
        """Close a request's own session, also when the request is cancelled (e.g. the read-now timeout)."""
        await asyncio.shield(session.close(for_good=True))

    def _log_failure(self, what: str, error: BaseException | str) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "opcua %s: %s: %s", self.name, what, error)

    def _unresolved(self, session: DeviceSession, ts: float) -> list[Reading]:
        return [
            Reading.bad(self.name, name, err, ts, self.points[name].unit)
            for name, err in session.points.errors.items()
        ]

    async def _open(self) -> None:
        """Open the session. Not yet a successful attempt: that waits for `_delivering()`."""
        self._delivered = False
        await self.session.open()
        self.status.last_error = None
        if self.session.points.errors:
            self.status.state = DEGRADED

    def _delivering(self) -> None:
        """The device delivers (subscription and items created, or a read answered): the reconnect attempt
        succeeded, so the backoff and the failure count start over. Anything failing between opening the session
        and this point is a failed attempt: it backs off up to reconnect_max and logs loudly only once."""
        if not self._delivered:
            self._delivered = True
            self.backoff.succeeded()
            self._failures = 0

    async def write(self, point: str, value: Any) -> Any:
        """Write an engineering value (scale/offset undone), then read it back; raises WriteError.

        Started: on the device's session, refused when it is not connected. Never started: on a session of its
        own, closed when done. Stopped: refused."""
        cfg = cast(OpcuaPoint, self.point_config(point))
        if not cfg.writable:
            raise WriteError(f"point {point!r} of device {self.name!r} is not writable")
        if self._stopped:
            raise WriteError(f"{self._stopped_error()}: write to {self.name}.{point} refused")
        if self._started:
            client = self.session.client
            if client is None or not self.session.healthy:
                raise WriteError(f"device {self.name!r} is not connected: {self.status.last_error or 'no session'}")
            return await self._write(self.session, client, cfg, value)
        session = self._own_session()
        try:
            try:
                client = await session.open()
            except Exception as e:
                raise WriteError(f"device {self.name!r} is not connected: {_describe(e)}") from e
            return await self._write(session, client, cfg, value)
        finally:
            await self._close_own(session)

    async def _write(self, session: DeviceSession, client: Client, cfg: OpcuaPoint, value: Any) -> Any:
        point = cfg.name
        node_id = session.points.node_ids.get(point)
        if node_id is None:
            raise WriteError(session.points.errors.get(point, f"point {point!r} has no node id"))
        raw = _to_raw(value, cfg)
        step = "refused"  # how far the write got: refused (nothing sent), interrupted (sent), written
        try:
            current = (await client.uaclient.read(_read_params([node_id])))[0]
            if current.Value is None or current.Value.VariantType == ua.VariantType.Null:
                raise WriteError(
                    f"point {point!r}: cannot tell the node's data type ({status_name(current.StatusCode)})"
                )
            variant = to_variant(raw, current.Value.VariantType, bool(current.Value.is_array))
            params = ua.WriteParameters()
            wv = ua.WriteValue()
            wv.NodeId = node_id
            wv.AttributeId = ua.AttributeIds.Value
            wv.Value = ua.DataValue(variant)
            params.NodesToWrite = [wv]
            step = "interrupted"
            result = (await client.uaclient.write(params))[0]
            if not result.is_good():
                raise WriteError(f"point {point!r}: server refused the write: {status_name(result)}")
            step = "written"
            back = (await client.uaclient.read(_read_params([node_id])))[0]
        except (ValueError, TypeError) as e:
            raise WriteError(f"point {point!r}: {e}") from e
        except (ConnectionError, TimeoutError, ua.UaError) as e:
            if self._stopped and session is self.session:  # stop() closed the session under this write
                where = f"{self.name}.{point}"
                what = {"refused": f"write to {where} refused",
                        "interrupted": f"write to {where} interrupted, it may or may not have been made ({e!r})",
                        "written": f"{where} was written but not read back"}[step]
                raise WriteError(f"{self._stopped_error()}: {what}") from e
            raise WriteError(f"point {point!r}: {e!r}") from e
        reading = self.maker.reading(cfg, back)
        if reading.value is None:
            raise WriteError(f"point {point!r}: read back failed: {reading.error}")
        return _from_raw(reading.value, cfg)


class OpcuaPollDriver(_OpcuaDriver):
    """Poll mode: every interval one Read request for all points; reconnects between polls when needed."""

    async def poll(self) -> list[Reading]:
        if self._stopped:
            return self.bad_cycle(self._stopped_error())
        if not self._started:
            return await self._poll_once()
        if not self.session.healthy:
            if self.session.client is not None:
                reason = self.session.lost_reason or "connection lost"
                self.session.set_down(reason)
                await self.session.close()
            if self._stopped:  # stop() came while the lost session closed
                return self.bad_cycle(self._stopped_error())
            if not self.backoff.due():
                return self.bad_cycle(self.status.last_error or "not connected")
            try:
                await self._open()
            except Exception as e:
                if self._stopped:  # stop() came first: the session opened nothing (SessionClosed)
                    return self.bad_cycle(self._stopped_error())
                self.backoff.failed()
                self._log_failure("connect failed", e)
                self.session.set_down(_describe(e))
                return self.bad_cycle(_describe(e))
        return await self._read_all(self.session)

    async def _poll_once(self) -> list[Reading]:
        """A poll of a driver never started (a read-now of a disabled device): on a session of its own, closed after."""
        session = self._own_session()
        try:
            try:
                await session.open()
            except Exception as e:
                self._log_failure("connect failed", e)
                session.set_down(_describe(e))
                return self.bad_cycle(_describe(e))
            return await self._read_all(session)
        finally:
            await self._close_own(session)

    _plan: tuple[object, list[str], list[ua.ReadParameters]] | None = None  # (for these points, names, requests)

    def _read_plan(self, session: DeviceSession) -> tuple[list[str], list[ua.ReadParameters]]:
        """The point names and Read requests, built once per session (the points resolve anew on reconnect)."""
        points = session.points
        if self._plan is None or self._plan[0] is not points:
            node_ids = list(points.node_ids.values())
            per_request = session.max_nodes_per_read or len(node_ids)  # one Read, unless the server caps it
            self._plan = (points, list(points.node_ids),
                          [_read_params(node_ids[i : i + per_request]) for i in range(0, len(node_ids), per_request)])
        return self._plan[1], self._plan[2]

    async def _read_all(self, session: DeviceSession) -> list[Reading]:
        """One Read cycle on `session`: the device's (then it also keeps the backoff) or a request's own."""
        client = session.client
        if client is None:  # closed by stop() since this poll opened it
            return self.bad_cycle(self._stopped_error() if self._stopped else "not connected")
        names, requests = self._read_plan(session)
        local = time.time()
        readings = self._unresolved(session, local)
        if not names:
            return readings
        mismatch: str | None = None
        try:
            values: list[ua.DataValue | str] = []  # per point: its DataValue, or why the server gave none
            for params in requests:
                results = await client.uaclient.read(params)
                if len(results) == len(params.NodesToRead):
                    values += results
                else:
                    # Results pair with nodes by position only (OPC-UA Part 4: same size and order as the nodes
                    # to read), so with the count wrong no result can be trusted to be its node's: every point
                    # of this request gets a bad reading that says why, and none is left without a reading.
                    mismatch = f"server returned {len(results)} results for {len(params.NodesToRead)} nodes"
                    values += [mismatch] * len(params.NodesToRead)
        except ua.UaStatusCodeError as e:  # the server answered: the session is fine, the request was not
            error = f"read refused: {_describe(e)}"
            self._log_failure("read refused", e)
            self.status.state = DEGRADED
            self.status.last_error = error
            return self.bad_cycle(error)
        except Exception as e:
            if self._stopped and session is self.session:  # stop() closed the session under this read
                return self.bad_cycle(self._stopped_error())
            error = f"read failed: {_describe(e)}"
            self._log_failure("read failed", e)
            session.mark_lost(error)
            session.set_down(error)
            await session.close()
            if session is self.session:
                self.backoff.failed()
            return self.bad_cycle(error)
        local = time.time()
        for name, dv in zip(names, values, strict=True):
            if isinstance(dv, str):
                readings.append(Reading.bad(self.name, name, dv, local, self.points[name].unit))
            else:
                readings.append(self.maker.reading(self.points[name], dv, local))
        if self._stopped and session is self.session:  # read before stop() closed the session: no news of it
            return readings
        if mismatch is None and session is self.session:
            self._delivering()
        if mismatch is not None:  # the server answered: the session is fine, its answer was not
            self._log_failure("read answered wrongly", mismatch)
            self.status.state = DEGRADED
            self.status.last_error = f"read failed: {mismatch}"
        elif self.status.state == DEGRADED and not session.points.errors:
            self.status.state = UP  # a refused or wrong read before this one is over
        return readings


class OpcuaSubscribeDriver(_OpcuaDriver):
    """Subscribe mode: one subscription (publishing interval = `interval`) with a monitored item per point."""

    push = True

    async def run(self, publish: Publish) -> None:
        """Connect, subscribe, deliver until cancelled; recover from whatever the server or network does."""
        reported_down = False
        try:
            while True:
                try:
                    await self._open()
                except Exception as e:
                    error = _describe(e)
                    self._log_failure("connect failed", e)
                    self.session.set_down(error)
                    if not reported_down:
                        await publish(self.bad_cycle(error))
                        reported_down = True
                    await asyncio.sleep(self.backoff.failed())
                    continue
                feed = SubscriptionFeed(self.device, self.session, self.maker, self.status)
                try:
                    first = await feed.start()
                    self._delivering()
                    reported_down = False
                    first.extend(self._unresolved(self.session, time.time()))
                    if first:
                        await publish(first)
                    await self._pump(feed, publish)
                except Exception as e:  # session trouble of any kind: report (once per outage), close, reconnect
                    error = _describe(e)
                    self._log_failure("session lost" if self._delivered else "subscribing failed", e)
                    self.session.set_down(error)
                    if not reported_down:
                        await publish(self.bad_cycle(error))
                        reported_down = True
                finally:
                    await self.session.close()
                await asyncio.sleep(self.backoff.failed())
        finally:
            await self.session.close()

    async def _pump(self, feed: SubscriptionFeed, publish: Publish) -> None:
        """Move notifications to the pipeline; watch the session and the subscription's liveness."""
        while True:
            batch = await feed.next_batch(WATCH_TICK, PUBLISH_BATCH_MAX)
            if batch:
                await publish(batch)  # the daemon's DeviceRunner counts it in the device status
            self.session.check()
            if feed.silent():
                await feed.rebuild()


def _read_params(node_ids: list[ua.NodeId]) -> ua.ReadParameters:
    params = ua.ReadParameters()
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    for nid in node_ids:
        rv = ua.ReadValueId()
        rv.NodeId = nid
        rv.AttributeId = ua.AttributeIds.Value
        params.NodesToRead.append(rv)
    return params


def _to_raw(value: Any, point: OpcuaPoint) -> Any:
    if (point.scale, point.offset) == (1.0, 0.0) or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return (value - point.offset) / point.scale


def _from_raw(value: Any, point: OpcuaPoint) -> Any:
    if (point.scale, point.offset) == (1.0, 0.0) or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return value * point.scale + point.offset


def _describe(e: BaseException) -> str:
    """A one-line error for readings and status: the status name for OPC-UA errors, else the message."""
    if isinstance(e, ua.UaStatusCodeError):
        return f"{status_name(e.code)}: {e}"
    if isinstance(e, TimeoutError):
        return "timed out"
    text = str(e) or type(e).__name__
    return text if isinstance(e, SessionLost | WriteError) else f"{type(e).__name__}: {text}"


__all__ = ["OpcuaPollDriver", "OpcuaSubscribeDriver", "plain_value"]
