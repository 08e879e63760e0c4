"""The driver against a real pymodbus TCP server: reads, quality, writes, a shared bus, an absent server."""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import pytest

from drivers.base import DEGRADED, DOWN, UP, WriteError
from drivers.modbus.bus import BUSES
from drivers.modbus.config import ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import SimulatorServer
from edge.reading import BAD, GOOD, UNCERTAIN

from .peers import free_port, mbpoll, mbpoll_read_hex, mbpoll_write_registers


def device(port: int, points: list[dict[str, Any]], **keys: Any) -> ModbusDriver:
    cfg = ModbusTcpDevice(name=keys.pop("name", "plc"), driver="modbus-tcp", host="127.0.0.1", port=port,
                          timeout=keys.pop("timeout", 0.5), point=points, **keys)  # type: ignore[arg-type]
    return ModbusDriver(cfg)


def by_point(readings: list[Any]) -> dict[str, Any]:
    return {r.point: r for r in readings}


POINTS = [
    {"name": "temp", "address": 0, "type": "int16", "scale": 0.1, "unit": "degC"},
    {"name": "flow", "address": 2, "type": "float32"},
    {"name": "total", "address": 6, "type": "uint32", "word_order": "little"},
    {"name": "alarm", "address": 9, "type": "bool", "bit": 2},
    {"name": "serial", "address": 12, "type": "string", "length": 4},
    {"name": "pressure", "table": "input", "address": 0, "type": "uint16"},
    {"name": "pump", "table": "coil", "address": 5},
    {"name": "door", "table": "discrete", "address": 7},
]


async def test_poll_decodes_every_table(sim: SimulatorServer) -> None:
    flow = struct.unpack(">HH", struct.pack(">f", 12.5))
    image = {0: 0xFF38, 2: flow[0], 3: flow[1], 6: 0x0002, 7: 0x0001, 9: 0b100,
             12: 0x4142, 13: 0x4344, 14: 0x4500}
    await mbpoll_write_registers(sim.port, 1, 0, [image.get(a, 0) for a in range(16)])
    await mbpoll(sim.port, 1, ["-r", "5", "-t", "0"], [1])
    driver = device(sim.port, POINTS)
    await driver.start()
    try:
        readings = by_point(await driver.poll())
    finally:
        await driver.stop()
    assert {k: r.value for k, r in readings.items()} == {
        "temp": -200,  # unscaled: the pipeline applies scale/offset
        "flow": 12.5, "total": 0x00010002, "alarm": True, "serial": "ABCDE",
        "pressure": 0, "pump": True, "door": False,
    }
    assert all(r.quality == GOOD and r.error is None for r in readings.values())
    assert readings["temp"].unit == "degC"
    assert driver.status.state == UP
    assert len(driver.plan.reads) == 4  # holding 0..15 in one request, input, coil, discrete


async def test_exception_nan_and_decode_errors_give_bad_or_uncertain(sim: SimulatorServer) -> None:
    nan = struct.unpack(">HH", struct.pack(">f", math.inf))
    await mbpoll_write_registers(sim.port, 2, 0, [*nan, 0xFFFE, 0xFF00])
    driver = device(sim.port, [
        {"name": "inf", "address": 0, "type": "float32"},
        {"name": "text", "address": 2, "type": "string", "length": 2},
        {"name": "missing", "address": 1000, "type": "uint16"},  # past the server's registers
        {"name": "ok", "table": "input", "address": 1},
    ], unit=2)
    await driver.start()
    try:
        readings = by_point(await driver.poll())
    finally:
        await driver.stop()
    assert readings["inf"].quality == UNCERTAIN and math.isinf(readings["inf"].value)
    assert readings["text"].quality == BAD and "decode error" in readings["text"].error
    assert readings["missing"].quality == BAD and readings["missing"].value is None
    assert "exception 2 (illegal data address)" in readings["missing"].error
    assert readings["ok"].quality == GOOD
    assert driver.status.state == DEGRADED and driver.status.last_error


async def test_writes_encode_inverse_scale_and_read_back(sim: SimulatorServer) -> None:
    driver = device(sim.port, [
        {"name": "setpoint", "address": 20, "type": "int16", "scale": 0.1, "offset": -10, "writable": True},
        {"name": "limit", "address": 22, "type": "float64", "word_order": "little", "writable": True},
        {"name": "flag", "address": 26, "type": "bool", "bit": 4, "writable": True},
        {"name": "label", "address": 27, "type": "string", "length": 3, "writable": True},
        {"name": "valve", "table": "coil", "address": 9, "writable": True},
        {"name": "readonly", "address": 30},
    ], unit=3)
    await mbpoll_write_registers(sim.port, 3, 26, [0x8001])
    await driver.start()
    try:
        assert await driver.write("setpoint", 21.5) == pytest.approx(21.5)
        assert await mbpoll_read_hex(sim.port, 3, 20, 1) == [315]  # (21.5 + 10) / 0.1
        assert await driver.write("limit", "-1.25e3") == -1250.0
        assert await driver.write("flag", True) is True
        assert await mbpoll_read_hex(sim.port, 3, 26, 1) == [0x8011]  # the other bits kept
        assert await driver.write("label", "hey") == "hey"
        assert await driver.write("valve", "on") is True
        assert "1" in await mbpoll(sim.port, 3, ["-r", "9", "-t", "0"])
        with pytest.raises(WriteError, match="not writable"):
            await driver.write("readonly", 1)
        with pytest.raises(WriteError, match="no point 'nope'"):
            await driver.write("nope", 1)
        with pytest.raises(WriteError, match="int16 range"):
            await driver.write("setpoint", 1e6)
        with pytest.raises(WriteError, match="at most 6 bytes"):
            await driver.write("label", "too long")
    finally:
        await driver.stop()


async def test_write_to_a_device_error_is_a_write_error(sim: SimulatorServer) -> None:
    driver = device(sim.port, [{"name": "far", "address": 1000, "writable": True}])
    await driver.start()
    try:
        with pytest.raises(WriteError, match="illegal data address"):
            await driver.write("far", 1)
    finally:
        await driver.stop()


async def test_devices_on_one_endpoint_share_one_bus(sim: SimulatorServer) -> None:
    a = device(sim.port, [{"name": "x", "address": 0}], name="a", unit=1)
    b = device(sim.port, [{"name": "x", "address": 0}], name="b", unit=2)
    await a.start()
    await b.start()
    assert a.bus is b.bus and a.bus.users == 2
    await a.poll()
    await b.poll()
    assert a.bus.requests == 2 and a.bus.reconnects == 0
    key = a.bus.key
    await a.stop()
    assert BUSES.get(key) is b.bus
    await b.stop()
    assert BUSES.get(key) is None


async def test_no_server_gives_bad_readings_fast_and_state_down() -> None:
    driver = device(free_port(), [{"name": "x", "address": 0}, {"name": "y", "table": "coil", "address": 0}],
                    backoff_initial="5s", backoff_max="10s")
    await driver.start()
    try:
        first = await driver.poll()
        started = time.monotonic()
        second = await driver.poll()  # backing off: answered without touching the network
        assert time.monotonic() - started < 0.1
    finally:
        await driver.stop()
    for readings in (first, second):
        assert [r.quality for r in readings] == [BAD, BAD]
        assert "cannot connect" in readings[0].error
    assert "next connect attempt in" in second[0].error
    assert driver.status.state == DOWN
