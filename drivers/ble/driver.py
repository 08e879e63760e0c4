"""BLE drivers: advertisement devices (push, shared scanner) and GATT devices (poll, or push with notifications).

`BleDevice.driver_class` names the class for a device's mode; the registry uses it.

GATT connections and start()/stop(): a started device keeps its connection (and its adapter slot) as its mode
says; stop() closes the link for good, so a poll or write arriving after it (a reload or shutdown overlapping a
read-now or a write) is refused (bad readings, WriteError) and one under way connects no more; the stop then
disconnects and frees the slot. A driver never started (a disabled device read or written through the API)
connects for the one request and disconnects, freeing the slot, when done.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any, Final, cast

from drivers.base import DEGRADED, DOWN, UP, Driver, Publish, WriteError
from drivers.ble.config import RSSI_FIELD, BleDevice, BlePoint
from drivers.ble.errors import BleUnavailable, device_errors, explain
from drivers.ble.fields import FieldError, Value, decode_field, encode_field
from drivers.ble.gatt import Backoff, GattLink, LinkDown
from drivers.ble.parsers import Advert, Decoded
from drivers.ble.parsers.bthome import parse_bthome
from drivers.ble.parsers.raw import RawField, parse_raw
from drivers.ble.parsers.ruuvi import parse_ruuvi
from drivers.ble.scanner import AdvertFilter, shared_scanner
from drivers.ble.uuids import short_uuid
from edge.quantities import format_duration
from edge.reading import BAD, GOOD, UNCERTAIN, Reading

log = logging.getLogger("edge.drivers.ble")

ADVERT_QUEUE_SIZE: Final = 256  # adverts waiting for decoding per device; the oldest are dropped beyond it
RSSI_UNIT: Final = "dBm"
NUMERIC_TYPES: Final = frozenset(("int8", "uint8", "int16", "uint16", "int24", "uint24", "int32", "uint32",
                                  "int64", "uint64", "float32", "float64"))


def _points(config: BleDevice) -> list[BlePoint]:
    return cast(list[BlePoint], config.point)


def _value_reading(device: str, point: str, value: Value, ts: float, unit: str | None) -> Reading:
    """A decoded value's reading: `good`, but a NaN or ±inf float is `uncertain` and says so.

    As in the Modbus and OPC-UA drivers, the value stays a float (the payload shows null) rather than
    becoming text, so a deadband can still compare the next number with it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return Reading(device, point, value, ts, UNCERTAIN, f"not a finite number ({value})", unit)
    return Reading(device, point, value, ts, GOOD, None, unit)


# -- advertisement devices ------------------------------------------------------------------------------

class BleAdvertisementDriver(Driver):
    """A sensor that only advertises: decoded adverts in, readings out; `bad` "not seen" when it goes quiet."""

    push = True

    def __init__(self, config: BleDevice) -> None:
        super().__init__(config)
        self.ble = config
        self.filter = AdvertFilter(config.address, config.match_name, config.match_service_uuid)
        self._bindkey = bytes.fromhex(config.bindkey) if config.bindkey else None
        self._raw_fields = [
            RawField(p.name, p.source, p.type, p.byte_offset, p.byte_order, p.length, p.company_id, p.service_uuid)
            for p in _points(config) if p.source is not None and p.type is not None
        ]
        self._queue: asyncio.Queue[Advert] = asyncio.Queue(ADVERT_QUEUE_SIZE)
        self._last_key: Any = None
        self._last_publish = 0.0
        self._seen_names: list[str] = []

    def decode(self, advert: Advert) -> Decoded | None:
        """The advert decoded with this device's format (None: it carries none of that format's data)."""
        if self.ble.format == "bthome":
            return parse_bthome(advert, self._bindkey)
        if self.ble.format == "ruuvi":
            return parse_ruuvi(advert)
        return parse_raw(advert, self._raw_fields)

    def readings(self, advert: Advert, decoded: Decoded, ts: float) -> list[Reading]:
        """One reading per configured point found in this advert (all decoded values when none are configured)."""
        values = dict(decoded.values)
        units = dict(decoded.units)
        if advert.rssi is not None:
            values[RSSI_FIELD] = advert.rssi
            units[RSSI_FIELD] = RSSI_UNIT
        out: list[Reading] = []
        if not self.config.point:
            for key, value in values.items():
                out.append(_value_reading(self.name, key, value, ts, units.get(key)))
            for key, why in decoded.invalid.items():
                out.append(Reading.bad(self.name, key, why, ts))
            self._seen_names = list(values) + list(decoded.invalid)
            return out
        for p in _points(self.ble):
            key = p.source_field
            if key in values:
                out.append(_value_reading(self.name, p.name, values[key], ts, p.unit or units.get(key)))
            elif key in decoded.invalid:
                out.append(Reading.bad(self.name, p.name, decoded.invalid[key], ts, p.unit))
            elif decoded.error:
                out.append(Reading.bad(self.name, p.name, decoded.error, ts, p.unit))
        return out

    def _on_advert(self, advert: Advert) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(advert)

    def _bad(self, error: str) -> list[Reading]:
        if self.config.point:
            return self.bad_cycle(error)
        ts = time.time()
        return [Reading.bad(self.name, n, error, ts) for n in self._seen_names]

    async def run(self, publish: Publish) -> None:
        """Subscribe to the shared scanner and publish decoded adverts until cancelled; never raises for BLE trouble."""
        retry = Backoff(self.ble.reconnect_delay)
        while True:
            try:
                sub = await shared_scanner(self.ble.adapter).subscribe(self._on_advert, self.filter)
            except BleUnavailable as e:
                self._set(DOWN, str(e))
                log.warning("ble: %s: %s", self.name, e)
                await publish(self._bad(str(e)))
                retry.failed()
                await asyncio.sleep(retry.delay)
                continue
            retry.succeeded()
            try:
                await self._pump(publish)
            finally:
                await sub.close()

    async def _pump(self, publish: Publish) -> None:
        scanner = shared_scanner(self.ble.adapter)
        stale_after = self.ble.stale_after
        last_seen = time.monotonic()
        last_stale_report: float | None = None
        heard = False
        while True:
            deadline = (last_stale_report or last_seen) + stale_after
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    advert = await self._queue.get()
            except TimeoutError:
                quiet = format_duration(round(time.monotonic() - last_seen, 1))
                error = f"not seen for {quiet}" if heard else f"not seen since start ({quiet})"
                try:
                    await scanner.restart_if_silent(stale_after)
                except BleUnavailable as e:
                    error = f"{error}; scanning stopped: {e}"
                self._set(DOWN, error)
                await publish(self._bad(error))
                last_stale_report = time.monotonic()
                self._last_key = None
                continue
            last_seen, last_stale_report, heard = time.monotonic(), None, True
            await self._handle(advert, publish)

    async def _handle(self, advert: Advert, publish: Publish) -> None:
        decoded = self.decode(advert)
        self.status.extra["rssi"] = advert.rssi
        if decoded is None:
            return
        key = (repr(sorted(decoded.values.items())), decoded.error)  # repr: nan == nan, which values are not
        now = time.monotonic()
        if key == self._last_key and now - self._last_publish < self.config.interval:
            return  # a repeat of the same payload within the interval
        self._last_key, self._last_publish = key, now
        ts = time.time()
        readings = self.readings(advert, decoded, ts)
        if decoded.error:
            self._set(DEGRADED, decoded.error)
        else:
            self._set(UP, None)
        if readings:
            await publish(readings)

    def _set(self, state: str, error: str | None) -> None:
        self.status.state = state
        if error is not None:
            self.status.last_error = error


# -- GATT devices ---------------------------------------------------------------------------------------

def _engineering(p: BlePoint, raw: Value) -> Value:
    if p.type in NUMERIC_TYPES and not isinstance(raw, bool | str):
        return raw * p.scale + p.offset
    return raw


def _decode_point(p: BlePoint, data: bytes) -> Value:
    assert p.type is not None
    return decode_field(data, p.byte_offset, p.type, p.byte_order, p.length)


class _GattDriver(Driver):
    """What GATT poll and notify devices share: the link, reading points, writes."""

    def __init__(self, config: BleDevice) -> None:
        super().__init__(config)
        self.ble = config
        self.link = GattLink(config, on_lost=self._on_lost)
        self._errors = device_errors()
        self._started = False  # start() was called: connections are kept as the mode says (else one per request)
        self._stopped = False  # stop() was called (and start() not since): nothing connects any more

    async def start(self) -> None:
        """Nothing connects yet (the first poll, or run(), does). Also after a stop()."""
        self._started, self._stopped = True, False
        self.link.reopen()

    async def stop(self) -> None:
        """Refuse polls and writes from now on; once one under way has let go of the link, disconnect (slot freed)."""
        self._stopped = True
        await self.link.close(self._stopped_error())

    def _connects_for_itself(self) -> bool:
        """Whether a poll or write (holding link.lock) connects for itself and must disconnect when done: on a
        driver never started, unless something else connected the link (a run() without start())."""
        return not self._started and not self.link.connected

    async def _done_with_link(self, own: bool) -> None:
        """After a poll or write, holding link.lock: a request of a driver never started disconnects (slot freed)."""
        if own:
            await self.link.disconnect()
        else:
            await self._after_use()

    def _on_lost(self) -> None:
        self.status.state = DOWN
        self.status.last_error = "disconnected"

    async def _connect(self) -> None:
        before = self.link.connects
        await self.link.connect()
        if self.link.connects > before:
            if before > 0:
                self.status.reconnects += 1
            self.status.state = UP

    async def _read(self, points: Iterable[BlePoint]) -> list[Reading]:
        """Read each characteristic once and decode every point on it; failures become bad readings."""
        ts = time.time()
        raw: dict[str, bytes | str] = {}
        out: list[Reading] = []
        for p in points:
            assert p.uuid is not None
            if p.uuid not in raw:
                try:
                    raw[p.uuid] = await self.link.read(p.uuid)
                except LinkDown as e:
                    raw[p.uuid] = str(e)
                except TimeoutError:
                    raw[p.uuid] = f"read of {short_uuid(p.uuid)} timed out after {format_duration(self.ble.timeout)}"
                except self._errors as e:
                    raw[p.uuid] = explain(e, self.ble.adapter)
            out.append(self._reading(p, raw[p.uuid], ts))
        errors = [r.error for r in out if r.error]  # bad readings, and uncertain ones (a NaN read)
        if self._stopped:  # stop() came during this read: its failures say nothing about the device
            pass
        elif errors:
            self.status.state = DOWN if all(r.quality == BAD for r in out) else DEGRADED
            self.status.last_error = errors[0]
        elif out:
            self.status.state = UP
        return out

    def _reading(self, p: BlePoint, data: bytes | str, ts: float) -> Reading:
        if isinstance(data, str):
            return Reading.bad(self.name, p.name, data, ts, p.unit)
        try:
            return _value_reading(self.name, p.name, _decode_point(p, data), ts, p.unit)
        except FieldError as e:
            return Reading.bad(self.name, p.name, f"{short_uuid(p.uuid or '')}: {e}", ts, p.unit)

    async def write(self, point: str, value: Any) -> Any:
        """Write an engineering value (scale/offset undone) and return the engineering value read back."""
        p = cast(BlePoint, self.point_config(point))
        if not p.writable:
            raise WriteError(f"point {point!r} of {self.name!r} is not writable (set writable = true)")
        assert p.uuid is not None and p.type is not None
        raw: Any = value
        if p.type in NUMERIC_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float) or p.scale == 0:
                raise WriteError(f"point {point!r}: expected a number, found {value!r}")
            raw = (value - p.offset) / p.scale
        try:
            encoded = encode_field(raw, p.type, p.byte_order, p.length)
        except FieldError as e:
            raise WriteError(f"point {point!r}: {e}") from e
        where = f"{self.name}.{point}"
        if self._stopped:
            raise WriteError(f"{self._stopped_error()}: write to {where} refused")
        async with self.link.lock:
            if self._stopped:  # stop() came while this write waited for the link
                raise WriteError(f"{self._stopped_error()}: write to {where} refused")
            own = self._connects_for_itself()
            written = False
            try:
                await self._connect()
                await self._write_only(p, encoded)
                written = True
                back = await self._read_back(p)
            except LinkDown as e:
                if self._stopped:  # stop() closed the link under this write
                    what = f"{where} was written but not read back" if written else f"write to {where} refused"
                    raise WriteError(f"{self._stopped_error()}: {what}") from e
                raise WriteError(f"{self.name}: not connected: {e}") from e
            except self._errors as e:
                raise WriteError(f"{self.name}: write to {short_uuid(p.uuid)} failed: "
                                 f"{explain(e, self.ble.adapter)}") from e
            finally:
                await self._done_with_link(own)
        return _engineering(p, back) if back is not None else value

    async def _write_only(self, p: BlePoint, encoded: bytes) -> None:
        assert p.uuid is not None
        data = encoded
        if p.byte_offset:
            current = await self.link.read(p.uuid)
            current = current.ljust(p.byte_offset + len(encoded), b"\x00")
            data = current[:p.byte_offset] + encoded + current[p.byte_offset + len(encoded):]
        await self.link.write(p.uuid, data)

    async def _read_back(self, p: BlePoint) -> Value | None:
        assert p.uuid is not None
        if "read" not in self.link.properties(p.uuid):
            return None
        try:
            return _decode_point(p, await self.link.read(p.uuid))
        except FieldError as e:
            raise WriteError(f"point {p.name!r}: read-back: {e}") from e

    async def _after_use(self) -> None:
        """Hook, holding link.lock after a poll or write of a started device: poll devices give their slot up here
        when others wait; notify devices keep the connection (their run() owns it)."""


class BleGattPollDriver(_GattDriver):
    """A GATT device read on each poll; it keeps its connection unless other devices wait for a slot."""

    async def poll(self) -> list[Reading]:
        if self._stopped:
            return self.bad_cycle(self._stopped_error())
        async with self.link.lock:
            if self._stopped:  # stop() came while this poll waited for the link
                return self.bad_cycle(self._stopped_error())
            own = self._connects_for_itself()
            try:
                try:
                    await self._connect()
                except LinkDown as e:
                    if self._stopped:
                        return self.bad_cycle(self._stopped_error())
                    self.status.state = DOWN
                    self.status.last_error = str(e)
                    return self.bad_cycle(str(e))
                return await self._read(_points(self.ble))
            finally:
                await self._done_with_link(own)

    async def _after_use(self) -> None:
        if self.link.connected and self.link.slots.contended:
            await self.link.disconnect()


class BleGattNotifyDriver(_GattDriver):
    """A GATT device that pushes: notify points are subscribed, the others read every `interval`."""

    push = True

    def __init__(self, config: BleDevice) -> None:
        super().__init__(config)
        self._events: asyncio.Queue[list[Reading] | None] = asyncio.Queue()

    def _on_lost(self) -> None:
        super()._on_lost()
        self._events.put_nowait(None)

    def _notified(self, uuid: str, data: bytes) -> None:
        ts = time.time()
        readings = [self._reading(p, data, ts) for p in _points(self.ble) if p.notify and p.uuid == uuid]
        if readings:
            self._events.put_nowait(readings)

    async def run(self, publish: Publish) -> None:
        """Connect, subscribe, publish; on loss publish bad readings and reconnect with backoff.

        Never raises for BLE trouble."""
        try:
            while True:
                await asyncio.sleep(self.link.backoff.wait_left())
                try:
                    async with self.link.lock:
                        await self._connect()
                        await self._subscribe()
                except LinkDown as e:
                    if self._stopped:  # stop() came while run() still runs (its runner cancels it first): no spin
                        await asyncio.sleep(self.ble.reconnect_delay)
                        continue
                    self.status.state = DOWN
                    self.status.last_error = str(e)
                    await publish(self.bad_cycle(str(e)))
                    continue
                except self._errors as e:
                    error = explain(e, self.ble.adapter)
                    self.status.state, self.status.last_error = DOWN, error
                    await publish(self.bad_cycle(error))
                    self.link.backoff.failed()
                    await self._disconnect()
                    continue
                try:
                    await self._session(publish)
                    error = self.link.last_error or "disconnected"
                except LinkDown as e:
                    error = str(e)
                except self._errors as e:
                    error = explain(e, self.ble.adapter)
                self.status.state, self.status.last_error = DOWN, error
                await self._disconnect()
                await publish(self.bad_cycle(error))
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        """Drop the connection, waiting for a write under way (it may be connecting) to let go of the link."""
        async with self.link.lock:
            await self.link.disconnect()

    async def _subscribe(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        for uuid in dict.fromkeys(p.uuid for p in _points(self.ble) if p.notify and p.uuid):
            await self.link.start_notify(uuid, self._notified)

    async def _session(self, publish: Publish) -> None:
        """Until the link drops: notifications as they come, the other points every interval."""
        initial = [p for p in _points(self.ble) if not p.notify
                   or (p.uuid is not None and "read" in self.link.properties(p.uuid))]
        polled = [p for p in _points(self.ble) if not p.notify]
        batch = initial
        next_read = time.monotonic()
        while True:
            if batch:
                async with self.link.lock:
                    readings = await self._read(batch)
                await publish(readings)
                if not self.link.connected:
                    return
            batch = []
            next_read += self.ble.interval
            while time.monotonic() < next_read or not polled:
                try:
                    async with asyncio.timeout(max(0.0, next_read - time.monotonic()) if polled else None):
                        event = await self._events.get()
                except TimeoutError:
                    break
                if event is None:
                    return
                await publish(event)
            batch = polled
