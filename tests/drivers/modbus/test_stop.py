"""Bus references around stop(): a request overlapping a reload's stop(), a stopped driver, a driver never started.

Real peers: the pymodbus server behind a counting proxy (SilentGateway, nothing silenced) for TCP, a pymodbus
serial server on a socat pty pair for RTU. The races are made deterministic by holding a link call (the lowest
layer, below the bus) on an asyncio.Event the test sets, never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest
from hold import Hold

from drivers.base import WriteError
from drivers.modbus.bus import BUSES
from drivers.modbus.config import ModbusRtuDevice, ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import SimulatorServer, start_serial_simulator
from edge.reading import BAD, GOOD

from .peers import PtyPair, SilentGateway, mbpoll_read_hex

WAIT = 10.0  # at most this long for a peer to see a close (a deadline, not a timing assertion)
SETPOINT = [{"name": "sp", "table": "holding", "address": 0, "type": "uint16", "writable": True}]

async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g}s: {what}")
        await asyncio.sleep(0.01)


async def released(key: str, gateway: SilentGateway, accepted: int | None = None) -> None:
    """No bus is registered for key and the server saw its connections closed (and, given, how many it took)."""
    assert BUSES.get(key) is None
    await until(lambda: gateway.open == 0, "the server saw the connection closed")
    if accepted is not None:
        assert gateway.accepted == accepted


def tcp(port: int, unit: int = 1, name: str = "plc") -> ModbusDriver:
    return ModbusDriver(ModbusTcpDevice(name=name, driver="modbus-tcp", host="127.0.0.1", port=port, unit=unit,
                                        timeout=0.5, point=SETPOINT))


async def quiet(gw: SilentGateway) -> int:
    """Connections the gateway accepted so far, once the fixture's readiness probe has closed."""
    await until(lambda: gw.open == 0, "the readiness probe's connection closed")
    return gw.accepted


# -- TCP --------------------------------------------------------------------------------------------------
async def test_write_overlapping_stop_is_refused_and_reopens_nothing(
    sim: SimulatorServer, gateway: SilentGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await quiet(gateway)
    driver = tcp(gateway.port)
    await driver.start()
    bus = driver.bus
    hold = Hold()
    monkeypatch.setattr(bus.link, "write_registers", hold.after(bus.link.write_registers))
    write = asyncio.create_task(driver.write("sp", 5))
    await hold.reached.wait()  # written, not yet read back
    await driver.stop()  # what the runner's finally does when a reload stops the device
    hold.go.set()
    with pytest.raises(WriteError, match=r"'plc' is stopped .*: plc\.sp was written but not read back"):
        await write
    assert bus.users == 0 and bus.closed
    await released(bus.key, gateway, before + 1)  # the read-back did not connect again
    assert await mbpoll_read_hex(sim.port, 1, 0, 1) == [5]  # the write itself was made


async def test_request_waiting_for_the_bus_when_stop_closes_it_does_not_reconnect(
    gateway: SilentGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await quiet(gateway)
    driver = tcp(gateway.port)
    await driver.start()
    bus = driver.bus
    hold = Hold()
    monkeypatch.setattr(bus.link, "read", hold.before(bus.link.read))
    poll = asyncio.create_task(driver.poll())  # e.g. a read-now of the running device ...
    await hold.reached.wait()  # ... holding the bus
    write = asyncio.create_task(driver.write("sp", 9))  # queues for the bus (no await before its lock)
    await asyncio.sleep(0)
    await driver.stop()
    hold.go.set()
    assert all(r.quality == BAD for r in await poll)
    with pytest.raises(WriteError, match=r"'plc' is stopped .*: write to plc\.sp refused"):
        await write
    assert bus.users == 0
    await released(bus.key, gateway, before + 1)


async def test_stopped_driver_refuses_writes_and_polls_until_started_again(
    sim: SimulatorServer, gateway: SilentGateway
) -> None:
    before = await quiet(gateway)
    driver = tcp(gateway.port)
    await driver.start()
    key = driver.bus.key
    assert (await driver.poll())[0].quality == GOOD
    await driver.stop()
    await until(lambda: gateway.open == 0, "the server saw the connection closed")
    with pytest.raises(WriteError, match=r"'plc' is stopped .*: write to plc\.sp refused"):
        await driver.write("sp", 3)
    readings = await driver.poll()
    assert [(r.quality, r.error) for r in readings] == [
        (BAD, "device 'plc' is stopped (reloaded, restarting or shutting down)")]
    assert BUSES.get(key) is None and gateway.accepted == before + 1  # nothing opened after stop()
    await driver.start()  # the supervisor restarting a crashed runner starts the same driver again
    try:
        assert await driver.write("sp", 3) == 3
        assert (await driver.poll())[0].value == 3
        assert driver.bus.users == 1
    finally:
        await driver.stop()
    await released(key, gateway, before + 2)


async def test_never_started_driver_writes_and_reads_on_a_bus_of_its_own_then_releases_it(
    sim: SimulatorServer, gateway: SilentGateway
) -> None:
    """A disabled device (never started) written through the API, or read with POST /v1/devices/{d}/read."""
    before = await quiet(gateway)
    driver = tcp(gateway.port)
    key = driver.config.bus_key
    assert await driver.write("sp", 7) == 7
    await released(key, gateway)
    readings = await driver.poll()
    assert [(r.value, r.quality) for r in readings] == [(7, GOOD)]
    await released(key, gateway, before + 2)
    with pytest.raises(RuntimeError, match="not started"):
        _ = driver.bus  # the property never opens a bus


async def test_never_started_driver_joins_a_running_bus_and_leaves_it_running(
    sim: SimulatorServer, gateway: SilentGateway
) -> None:
    before = await quiet(gateway)
    running, disabled = tcp(gateway.port, 1, "a"), tcp(gateway.port, 2, "b")
    await running.start()
    try:
        bus = running.bus
        assert (await running.poll())[0].quality == GOOD
        assert await disabled.write("sp", 11) == 11
        assert (await disabled.poll())[0].value == 11
        assert BUSES.get(bus.key) is bus and bus.users == 1 and not bus.closed
        assert gateway.open == 1 and gateway.accepted == before + 1  # one connection, shared, still open
        assert (await running.poll())[0].value == 0  # unit 1 untouched
    finally:
        await running.stop()
    await released(bus.key, gateway)


# -- RTU --------------------------------------------------------------------------------------------------
def rtu(serial: str, baudrate: int) -> ModbusDriver:
    return ModbusDriver(ModbusRtuDevice(name="meter", driver="modbus-rtu", serial=serial, baudrate=baudrate,
                                        unit=1, timeout=0.5, point=SETPOINT))


def open_fds(path: str) -> list[str]:
    """This process's file descriptors open on `path` (a pty: the serial port)."""
    target = os.path.realpath(path)
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                fds.append(fd)
        except OSError:
            pass  # closed meanwhile (listdir's own fd)
    return fds


async def test_rtu_write_overlapping_stop_closes_the_port_so_a_reload_gets_its_new_line_settings(
    pty_pair: PtyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_serial_simulator(pty_pair.server_end, baudrate=19200, units=(1,), live=False)
    try:
        old = rtu(pty_pair.client_end, 19200)
        await old.start()
        bus = old.bus
        assert await old.write("sp", 1) == 1
        assert open_fds(pty_pair.client_end)
        hold = Hold()
        monkeypatch.setattr(bus.link, "write_registers", hold.after(bus.link.write_registers))
        write = asyncio.create_task(old.write("sp", 2))
        await hold.reached.wait()
        await old.stop()  # a reload changing the line settings: the old driver stops, ...
        hold.go.set()
        with pytest.raises(WriteError, match=r"'meter' is stopped .*: meter\.sp was written but not read back"):
            await write
        assert BUSES.get(bus.key) is None and bus.users == 0
        await until(lambda: not open_fds(pty_pair.client_end), "the serial port closed")
        new = rtu(pty_pair.client_end, 9600)  # ... and the new one starts on a bus of its own settings
        await new.start()
        try:
            assert new.bus is not bus and new.bus.users == 1
            assert new.bus.frame_gap > bus.frame_gap  # 3.5 characters at 9600 baud, not at 19200
        finally:
            await new.stop()
        assert BUSES.get(bus.key) is None
    finally:
        await server.stop()
