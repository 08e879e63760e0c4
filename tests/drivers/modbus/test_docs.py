"""The configuration example in docs/modbus.md is valid and polls a real server as documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from drivers.modbus.config import ModbusRtuDevice, ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import SimulatorServer
from edge.reading import GOOD

from .peers import mbpoll_write_registers

DOC = Path(__file__).parents[3] / "docs" / "modbus.md"


def example() -> dict[str, Any]:
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, "docs/modbus.md lost its toml example"
    return tomllib.loads(block.group(1))


async def test_documented_example_validates_and_polls(sim: SimulatorServer) -> None:
    boiler, meter = example()["device"]
    ModbusRtuDevice(**meter)
    cfg = ModbusTcpDevice(**{**boiler, "port": sim.port})
    # 21.5 degC in CDAB, 18.5 as tenths, status word with bit 0 set
    await mbpoll_write_registers(sim.port, 1, 0, [0x0000, 0x41AC, 0, 0, 185, 0, 0x0001])
    driver = ModbusDriver(cfg)
    await driver.start()
    try:
        readings = {r.point: r for r in await driver.poll()}
        assert all(r.quality == GOOD for r in readings.values())
        assert readings["flow_temperature"].value == 21.5
        assert readings["return_temperature"].value == 185  # the pipeline applies scale = 0.1
        assert readings["burner_on"].value is True
        assert await driver.write("setpoint", 55) == 55
        assert len(driver.plan.reads) == 2  # holding 0..10 in one read (gaps ≤ 8), coil 3
    finally:
        await driver.stop()
