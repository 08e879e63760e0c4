"""Modbus RTU over a socat pty pair: a pymodbus serial server on one end, the driver (and mbpoll) on the other."""

from __future__ import annotations

import asyncio
from typing import Any

from drivers.base import DEGRADED, UP
from drivers.modbus.config import ModbusRtuDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import start_serial_simulator
from edge.reading import BAD, GOOD

from .peers import PtyPair, run_tool

BAUD = 19200


def rtu(serial: str, unit: int, points: list[dict[str, Any]], **keys: Any) -> ModbusDriver:
    return ModbusDriver(ModbusRtuDevice(
        name=f"meter{unit}", driver="modbus-rtu", serial=serial, baudrate=BAUD, unit=unit,
        timeout=keys.pop("timeout", 0.5), point=points, **keys,  # type: ignore[arg-type]
    ))


POINTS = [
    {"name": "energy", "address": 0, "type": "float32", "word_order": "little"},
    {"name": "setpoint", "address": 4, "type": "uint16", "writable": True},
    {"name": "relay", "table": "coil", "address": 2, "writable": True},
]


async def test_rtu_poll_and_write_two_units_one_line(pty_pair: PtyPair) -> None:
    # mbpoll (libmodbus, RTU) writes a float in its default CDAB layout before the driver opens the line.
    server = await start_serial_simulator(pty_pair.server_end, baudrate=BAUD, units=(1, 2), live=False)
    try:
        await run_tool(["mbpoll", "-m", "rtu", "-b", str(BAUD), "-P", "none", "-a", "1", "-0", "-r", "0",
                        "-t", "4:float", "-1", pty_pair.client_end, "--", "230.5"])
        a, b = rtu(pty_pair.client_end, 1, POINTS), rtu(pty_pair.client_end, 2, POINTS)
        await a.start()
        await b.start()
        try:
            assert a.bus is b.bus and a.bus.frame_gap > 0
            first = {r.point: r for r in await a.poll()}
            assert first["energy"].value == 230.5 and first["energy"].quality == GOOD
            assert await b.write("setpoint", 1234) == 1234
            assert await b.write("relay", True) is True
            second = {r.point: r.value for r in await b.poll()}
            assert second == {"energy": 0.0, "setpoint": 1234, "relay": True}
            assert {r.point: r.value for r in await a.poll()}["setpoint"] == 0  # unit 1 untouched
            assert a.status.state == UP and b.status.state == UP
        finally:
            await a.stop()
            await b.stop()
    finally:
        await server.stop()


async def test_rtu_unit_silent_then_back(pty_pair: PtyPair) -> None:
    """No answer on the line: bad readings and degraded; the unit resumes by itself when it answers again."""
    server = await start_serial_simulator(pty_pair.server_end, baudrate=BAUD, units=(1,), live=False)
    d = rtu(pty_pair.client_end, 1, POINTS, timeout=0.2, retries=1, backoff_initial="300ms", backoff_max="600ms")
    await d.start()
    try:
        assert all(r.quality == GOOD for r in await d.poll())
        await server.stop()
        silent = await d.poll()
        assert [r.quality for r in silent] == [BAD] * 3
        assert "no response" in (silent[0].error or "")
        assert d.status.state == DEGRADED
        server = await start_serial_simulator(pty_pair.server_end, baudrate=BAUD, units=(1,), live=False)
        for _ in range(20):
            await asyncio.sleep(0.1)
            if all(r.quality == GOOD for r in await d.poll()):
                break
        assert d.status.state == UP
    finally:
        await d.stop()
        await server.stop()
