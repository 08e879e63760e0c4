"""docs/opcua.md: every TOML example is a valid config, and the first and the write example run for real."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from opcua_peers import ServerProcess

from drivers.opcua.config import OpcuaDevice
from drivers.opcua.driver import OpcuaPollDriver
from drivers.registry import create_driver

DOC = Path(__file__).resolve().parents[3] / "docs" / "opcua.md"


def examples() -> list[list[dict[str, Any]]]:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.DOTALL)
    return [tomllib.loads(b)["device"] for b in blocks]


def test_every_example_is_a_valid_device() -> None:
    devices = [d for block in examples() for d in block]
    assert len(devices) >= 4
    for d in devices:
        OpcuaDevice.model_validate(d)


def on(server: ServerProcess, d: dict[str, Any]) -> OpcuaDevice:
    return OpcuaDevice.model_validate({**d, "url": server.url, "mode": "poll"})


async def test_the_first_example_reads_from_a_server(plain_server: ServerProcess) -> None:
    driver = create_driver(on(plain_server, examples()[0][0]))
    try:
        readings = {r.point: r for r in await driver.poll()}
    finally:
        await driver.stop()
    assert readings["counter"].quality == "good"
    assert readings["temperature"].error == "BadNodeIdUnknown"  # the test server has no Line1.Temp


async def test_the_write_example_writes(plain_server: ServerProcess) -> None:
    dosing = next(d for block in examples() for d in block if d["name"] == "dosing")
    driver = create_driver(on(plain_server, dosing))
    assert isinstance(driver, OpcuaPollDriver)
    try:
        await driver.poll()
        assert await driver.write("setpoint", 21.5) == 21.5
    finally:
        await driver.stop()
