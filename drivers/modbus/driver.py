"""The Modbus TCP/RTU driver: runs a device's ReadPlan on its shared bus and turns answers into readings.

A unit that stops answering is retried `retries` times, then backed off (degraded): until its next probe,
polls return `bad` readings at once without touching the bus, so it never delays the other units.

Bus references: start() joins the shared bus and stop() leaves it; nothing else takes the driver's reference.
A poll or write takes the bus once and uses it throughout. On a driver never started (a disabled device read
or written through the API) it takes a reference of its own and releases it when done. After stop() polls
give `bad` readings and writes are refused without touching any bus, and one still running when the bus closes
gets no further request onto it (BusClosed), so nothing reopens a connection that no device holds.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from drivers.base import DEGRADED, DOWN, UP, Driver, WriteError
from drivers.modbus import defaults
from drivers.modbus.bus import BUSES, Bus, BusClosed, BusDown
from drivers.modbus.codec import (
    FLOAT_TYPES,
    DecodeError,
    EncodeError,
    decoder_for,
    encode,
    encode_bit,
    registers_to_bytes,
    to_engineering,
    to_raw,
)
from drivers.modbus.config import BIT_TABLES, ModbusDevice, ModbusPoint, ModbusRtuDevice, ModbusTcpDevice
from drivers.modbus.link import GATEWAY_NO_RESPONSE, ExceptionResponse, LinkError, ModbusLink, NoResponse
from drivers.modbus.planner import Read, ReadPlan, plan_for
from edge.backoff import Backoff
from edge.reading import BAD, GOOD, UNCERTAIN, Reading

log = logging.getLogger(__name__)


def _backoff(config: ModbusDevice) -> Backoff:
    return Backoff(
        initial=config.backoff_initial, maximum=config.backoff_max,
        factor=defaults.BACKOFF_FACTOR, jitter=defaults.BACKOFF_JITTER,
    )


def open_bus(config: ModbusDevice) -> Bus:
    """The shared bus for a device's endpoint, created on first use."""

    def create() -> Bus:
        if isinstance(config, ModbusRtuDevice):
            link = ModbusLink.serial(
                config.serial, baudrate=config.baudrate, parity=config.parity,
                stopbits=config.stopbits, bytesize=config.bytesize,
            )
            return Bus(config.bus_key, link, frame_gap=config.frame_gap, backoff=_backoff(config),
                       stale_after_timeouts=None)
        assert isinstance(config, ModbusTcpDevice)
        return Bus(config.bus_key, ModbusLink.tcp(config.host, config.port), backoff=_backoff(config))

    bus = BUSES.acquire(config.bus_key, create)
    if bus.users > 1:
        log.debug("%s: shared by %d devices; line settings of the first one apply", bus.key, bus.users)
    return bus


class UnitHealth:
    """Whether a unit answers; while it does not, when to probe it next (exponential backoff)."""

    def __init__(self, name: str, backoff: Backoff) -> None:
        self.name = name
        self.backoff = backoff
        self.responding = True
        self.next_probe = 0.0
        self.last_error: str | None = None

    def failed(self, error: str) -> float:
        """Record a unit that did not answer; returns the delay until the next probe."""
        self.responding = False
        self.last_error = error
        delay = self.backoff.delay()
        self.next_probe = time.monotonic() + delay
        return delay

    def answered(self) -> None:
        if not self.responding:
            log.info("%s: answering again (after: %s)", self.name, self.last_error)
        self.responding = True
        self.last_error = None
        self.backoff.reset()

    def probe_in(self, now: float) -> float:
        return max(0.0, self.next_probe - now)


class ModbusDriver(Driver):
    """One Modbus unit (a `[[device]]` with driver modbus-tcp or modbus-rtu)."""

    config: ModbusDevice

    def __init__(self, config: ModbusDevice) -> None:
        super().__init__(config)
        self.plan: ReadPlan = plan_for(config)
        self.health = UnitHealth(config.name, _backoff(config))
        self._bus: Bus | None = None  # the driver's own reference, from start() to stop()
        self._stopped = False  # stop() was called (and start() not since): no bus is used any more
        self._decoders = [self._decoding(read) for read in self.plan.reads]
        self.status.extra.update(
            {"bus": config.bus_key, "unit": config.unit, "reads_per_poll": len(self.plan.reads)}
        )

    @property
    def bus(self) -> Bus:
        """The bus joined by start(). Never opens one: RuntimeError when the driver is not started."""
        if self._bus is None:
            raise RuntimeError(f"{self.name}: not started, or stopped: it holds no bus")
        return self._bus

    async def start(self) -> None:
        """Join the shared bus; the connection itself opens on the first request. Also after a stop()."""
        self._stopped = False
        if self._bus is None:
            self._bus = open_bus(self.config)

    async def stop(self) -> None:
        """Leave the bus (the last device to leave closes it); polls and writes are refused from now on."""
        self._stopped = True
        bus, self._bus = self._bus, None
        if bus is not None:
            BUSES.release(bus)

    def _take_bus(self) -> tuple[Bus, bool]:
        """The bus for one poll or write, and whether it is a reference of its own that the caller must release
        (a driver never started); the driver's reference while started. Not to be called after stop()."""
        if self._bus is not None:
            return self._bus, False
        return open_bus(self.config), True

    # -- polling ---------------------------------------------------------------------------------------
    async def poll(self) -> list[Reading]:
        """One read cycle: a reading for every point; trouble gives `bad` readings, never an exception."""
        if self._stopped:
            return self.bad_cycle(self._stopped_error())
        try:
            bus, own = self._take_bus()
            try:
                return await self._poll(bus)
            finally:
                if own:
                    BUSES.release(bus)
        except Exception as exc:  # supervision boundary: a bug here must not kill the poll loop
            log.exception("%s: poll failed", self.name)
            self.status.state = DEGRADED
            self.status.last_error = f"internal error: {exc!r}"
            return self.bad_cycle(f"internal error: {exc!r}")

    async def _poll(self, bus: Bus) -> list[Reading]:
        cfg = self.config
        now = time.monotonic()
        readings: list[Reading] = []
        failure: str | None = None  # once set, the remaining reads are skipped with this error
        bus_down = False
        if bus.down_for(now) > 0:
            bus_down = True
            failure = f"{bus.key} down ({bus.last_error}); next connect attempt in {bus.down_for(now):.1f}s"
        elif not self.health.responding:
            wait = self.health.probe_in(now)
            if wait > 0:
                failure = (
                    f"unit {cfg.unit} not responding ({self.health.last_error}); next probe in {wait:.1f}s"
                )
        probing = not self.health.responding
        any_bad = False
        for read, decoding in zip(self.plan.reads, self._decoders, strict=True):
            if failure is not None:
                readings.extend(self._bad(read, failure))
                any_bad = True
                continue
            try:
                values = await bus.run(
                    lambda link, r=read: link.read(r.table, cfg.unit, r.address, r.count, cfg.timeout),  # type: ignore[misc]
                    timeout=cfg.timeout, pause=cfg.pause_between_requests,
                    retries=0 if probing else cfg.retries,
                )
            except BusDown as exc:
                failure, bus_down = str(exc), True
            except BusClosed:  # stop() closed the bus while this poll ran
                failure = self._stopped_error()
            except NoResponse as exc:
                failure = self._not_responding(str(exc))
            except ExceptionResponse as exc:
                if exc.code == GATEWAY_NO_RESPONSE:
                    failure = self._not_responding(str(exc))
                else:  # the unit is alive; only the points of this read are bad
                    self.health.answered()
                    probing = False
                    readings.extend(self._bad(read, str(exc)))
                    any_bad = True
                    continue
            except LinkError as exc:
                bus_down = not bus.link.connected
                failure = str(exc)
            else:
                self.health.answered()
                probing = False
                bad = self._decode(read, decoding, values, time.time(), readings)
                any_bad = any_bad or bad
                continue
            readings.extend(self._bad(read, failure))
            any_bad = True
        if not self._stopped:  # a poll overlapping stop() says nothing about the device
            self._update_status(bus, readings, any_bad, bus_down)
        return readings

    def _not_responding(self, error: str) -> str:
        first = self.health.responding
        delay = self.health.failed(error)
        (log.warning if first else log.debug)("%s: %s; next probe in %.1fs", self.name, error, delay)
        return f"{error} (unit backing off, next probe in {delay:.1f}s)"

    def _bad(self, read: Read, error: str) -> list[Reading]:
        ts = time.time()
        name = self.name
        return [Reading(name, pp.point.name, None, ts, BAD, error, pp.point.unit) for pp in read.points]

    @staticmethod
    def _decoding(read: Read) -> list[tuple[str, str | None, int, int, Any]]:
        """Per point of a register read: (name, unit, register offset, how, decoder), worked out once.

        how: 0 a big-endian uint16 (the register itself), 1 a big-endian int16, 2 the decoder, 3 the decoder
        and a float that must be finite. The first two need neither the read's bytes nor a decoder call.
        """
        out: list[tuple[str, str | None, int, int, Any]] = []
        for pp in read.points:
            p = pp.point
            if p.type == "uint16" and p.byte_order == "big":
                how = 0
            elif p.type == "int16" and p.byte_order == "big":
                how = 1
            else:
                how = 3 if p.type in FLOAT_TYPES else 2
            out.append((p.name, p.unit, pp.offset, how, pp.decode))
        return out

    def _decode(self, read: Read, decoding: list[tuple[str, str | None, int, int, Any]], values: list[Any],
                ts: float, out: list[Reading]) -> bool:
        """Append the readings of one read; returns True if any came out bad or uncertain."""
        name = self.name
        trouble = False
        if read.table in BIT_TABLES:
            for pp in read.points:
                p = pp.point
                out.append(Reading(name, p.name, bool(values[pp.offset]), ts, GOOD, None, p.unit))
            return False
        buf = b""
        append = out.append
        for point, unit, offset, how, decode in decoding:
            if how == 0:
                append(Reading(name, point, values[offset], ts, GOOD, None, unit))
                continue
            if how == 1:
                value = values[offset]
                append(Reading(name, point, value - 0x10000 if value >= 0x8000 else value, ts, GOOD, None, unit))
                continue
            if not buf:
                buf = registers_to_bytes(values)
            try:
                value = decode(buf, offset * 2)
            except (DecodeError, ValueError) as exc:
                append(Reading(name, point, None, ts, BAD, f"decode error: {exc}", unit))
                trouble = True
                continue
            if how == 3 and not math.isfinite(value):
                error = f"not a finite number ({value})"
                append(Reading(name, point, value, ts, UNCERTAIN, error, unit))
                trouble = True
                continue
            append(Reading(name, point, value, ts, GOOD, None, unit))
        return trouble

    def _update_status(self, bus: Bus, readings: list[Reading], any_bad: bool, bus_down: bool) -> None:
        st = self.status  # polls, poll_errors and last_poll are counted by the daemon's DeviceRunner
        st.reconnects = bus.reconnects
        if bus_down:
            st.state = DOWN
        elif not self.health.responding or any_bad:
            st.state = DEGRADED
        else:
            st.state = UP
        if any_bad:
            st.last_error = next((r.error for r in readings if r.error), None)
        st.extra["bus_state"] = bus.state
        st.extra["unit_responding"] = self.health.responding

    # -- writing ---------------------------------------------------------------------------------------
    async def write(self, point: str, value: Any) -> Any:
        """Write an engineering value (inverse scale/offset; FC 5/6/16), read back, return it engineered."""
        p = self.point_config(point)
        assert isinstance(p, ModbusPoint)
        where = f"{self.name}.{point}"
        if not p.writable:
            raise WriteError(f"point {where} is not writable (its config has writable = false)")
        cfg = self.config
        try:
            raw = to_raw(p, value)
            registers = None if p.table == "coil" or p.bit is not None else encode(p, raw)
        except EncodeError as exc:
            raise WriteError(f"cannot write {value!r} to {where} ({p.type}): {exc}") from exc

        async def write_op(link: ModbusLink) -> None:
            if p.table == "coil":
                await link.write_coil(cfg.unit, p.address, bool(raw), cfg.timeout)
            elif p.bit is not None:  # read-modify-write of one register, holding the bus throughout
                (current,) = await link.read("holding", cfg.unit, p.address, 1, cfg.timeout)
                changed = encode_bit(p, current, bool(raw))
                await link.write_registers(cfg.unit, p.address, [changed], cfg.timeout)
            else:
                assert registers is not None
                await link.write_registers(cfg.unit, p.address, registers, cfg.timeout)

        if self._stopped:
            raise WriteError(f"{self._stopped_error()}: write to {where} refused")
        bus, own = self._take_bus()
        written = False
        try:
            await bus.run(write_op, timeout=cfg.timeout, pause=cfg.pause_between_requests)
            written = True
            values = await bus.run(
                lambda link: link.read(p.table, cfg.unit, p.address, p.registers, cfg.timeout),
                timeout=cfg.timeout, pause=cfg.pause_between_requests, retries=cfg.retries,
            )
        except LinkError as exc:
            if bus.closed:  # stop() closed the bus under this write; it was not reopened
                what = (f"{where} was written but not read back" if written
                        else f"write to {where} refused" if isinstance(exc, BusClosed)
                        else f"write to {where} interrupted, it may or may not have been made ({exc})")
                raise WriteError(f"{self._stopped_error()}: {what}") from exc
            raise WriteError(f"write to {where} failed: {exc}") from exc
        finally:
            if own:
                BUSES.release(bus)
        self.health.answered()
        if p.table in BIT_TABLES:
            return bool(values[0])
        try:
            read_back = decoder_for(p)(registers_to_bytes(values), 0)
        except DecodeError as exc:
            raise WriteError(f"wrote {where} but could not decode the read-back: {exc}") from exc
        return to_engineering(p, read_back)
