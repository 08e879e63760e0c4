"""Modbus RTU over a socat pty pair: a pymodbus serial server on one end, the driver (and mbpoll) on the other."""

from __future__ import annotations

import asyncio
import os
import tty
from typing import Any

from drivers.base import DEGRADED, DOWN, UP
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


def crc16(frame: bytes) -> int:
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


async def test_rtu_crc_errors_are_bad_readings_that_say_so(pty_pair: PtyPair) -> None:
    """A slave that answers with a corrupted CRC: the reading is bad and the error names the framing."""
    fd = os.open(pty_pair.server_end, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    answers = 0

    def on_request() -> None:
        nonlocal answers
        request = os.read(fd, 256)
        if len(request) >= 8:  # FC 3 request: unit, 3, address, count, crc
            payload = bytes([request[0], 3, 2, 0x12, 0x34])
            crc = crc16(payload) ^ 0xFFFF  # deliberately wrong
            os.write(fd, payload + crc.to_bytes(2, "little"))
            answers += 1

    loop = asyncio.get_running_loop()
    loop.add_reader(fd, on_request)
    d = rtu(pty_pair.client_end, 1, [{"name": "x", "address": 0}], timeout=0.2, retries=0)
    await d.start()
    try:
        (reading,) = await d.poll()
    finally:
        await d.stop()
        loop.remove_reader(fd)
        os.close(fd)
    assert answers >= 1
    assert reading.quality == BAD
    assert "CRC or framing error" in (reading.error or ""), reading.error


async def test_missing_serial_port_is_down_not_a_crash(tmp_path: Any) -> None:
    d = rtu(str(tmp_path / "ttyUSB9"), 1, [{"name": "x", "address": 0}], backoff_initial="5s", backoff_max="5s")
    await d.start()
    try:
        (first,) = await d.poll()
        (second,) = await d.poll()
    finally:
        await d.stop()
    assert first.quality == BAD and "cannot connect" in (first.error or "")
    assert "next connect attempt" in (second.error or "")
    assert d.status.state == DOWN
