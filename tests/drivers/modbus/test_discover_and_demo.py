"""Discovery scans (TCP through a gateway with silent units, RTU over ptys) and the demo simulator."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus.config import ModbusTcpDevice
from drivers.modbus.discover import scan_serial, scan_tcp
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import demo_devices, start_serial_simulator, start_simulator
from edge.reading import GOOD

from .peers import PtyPair, SilentGateway, free_port, mbpoll_write_registers


async def test_scan_tcp_lists_only_units_that_answer(gateway: SilentGateway) -> None:
    gateway.dead.update({2, 4})
    await mbpoll_write_registers(gateway.upstream_port, 5, 0, [11, 22, 33, 44])
    found = await scan_tcp("127.0.0.1", gateway.port, [1, 2, 3, 4, 5, 6], 0.2)
    units = [f["unit"] for f in found]
    assert units[:3] == [1, 3, 5]
    assert found[2]["holding"] == [11, 22, 33, 44] and found[2]["input"] == [0, 0, 0, 0]
    # unit 6 is not configured: pymodbus answers with an exception, which still proves a responder
    assert units[3:] == [6] and "exception" in found[3]["holding"]


async def test_scan_tcp_unreachable_raises_connection_error() -> None:
    with pytest.raises(ConnectionError, match="cannot connect"):
        await scan_tcp("127.0.0.1", free_port(), [1], 0.2)


async def test_scan_serial(pty_pair: PtyPair) -> None:
    server = await start_serial_simulator(pty_pair.server_end, baudrate=19200, units=(7,), live=False)
    try:
        found = await scan_serial(pty_pair.client_end, 19200, [7], 0.3)
    finally:
        await server.stop()
    assert found == [{"unit": 7, "holding": [0, 0, 0, 0], "input": [0, 0, 0, 0]}]


async def test_demo_simulator_values_change_and_demo_devices_poll_it() -> None:
    sim = await start_simulator()
    drivers = [ModbusDriver(ModbusTcpDevice(**d)) for d in demo_devices(sim.port)]
    assert len(drivers) == 3 and sim.port > 0
    try:
        for d in drivers:
            await d.start()
        first = [{r.point: r for r in await d.poll()} for d in drivers]
        await asyncio.sleep(1.1)
        second = [{r.point: r for r in await d.poll()} for d in drivers]
        for a, b in zip(first, second, strict=True):
            assert all(r.quality == GOOD for r in a.values())
            assert a["sine"].value != b["sine"].value and b["counter"].value > a["counter"].value
            assert 150 < a["temperature"].value < 300  # int16 ×10, scaled by the pipeline
        assert await drivers[0].write("setpoint", 55) == 55
        assert {r.point: r.value for r in await drivers[1].poll()}["setpoint"] == 0
    finally:
        for d in drivers:
            await d.stop()
        await sim.stop()
