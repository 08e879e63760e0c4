"""Both modes against a real asyncua server: every supported type, quality from status codes, timestamps, writes."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import pytest
from opcua_peers import Collector, ServerProcess

from drivers.base import WriteError
from drivers.opcua.config import OpcuaDevice
from drivers.opcua.driver import OpcuaPollDriver, OpcuaSubscribeDriver
from drivers.registry import create_driver
from edge.reading import Reading

FIXED_SOURCE_TS = 1577934245.678  # 2020-01-02T03:04:05.678Z, the test server's Line1.Stamped
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

TYPED = ["Double", "Float", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Boolean",
         "String", "DateTime", "ByteString", "DoubleArray", "Int32Array", "StringArray"]


def device(url: str, mode: str, **extra: Any) -> OpcuaDevice:
    points: list[dict[str, Any]] = [{"name": t.lower(), "node": f"ns=2;s=Line1.{t}"} for t in TYPED]
    points += [
        {"name": "counter_by_path", "browse_path": "2:Line1/2:Counter"},
        {"name": "counter_numeric", "node": "ns=2;i=1001"},
        {"name": "double_by_uri", "node": "nsu=urn:edge:test;s=Line1.Double"},
        {"name": "uncertain", "node": "ns=2;s=Line1.Uncertain"},
        {"name": "bad", "node": "ns=2;s=Line1.Bad"},
        {"name": "stamped", "node": "ns=2;s=Line1.Stamped"},
        {"name": "missing", "node": "ns=2;s=No.Such.Node"},
        {"name": "missing_path", "browse_path": "2:Line1/2:Nope"},
        {"name": "setpoint", "node": "ns=2;s=Line1.Setpoint", "writable": True},
        {"name": "setpoint_scaled", "node": "ns=2;s=Line1.Setpoint", "writable": True, "scale": 2.0},
        {"name": "flags", "node": "ns=2;s=Line1.Flags", "writable": True},
    ]
    return OpcuaDevice.model_validate(
        {"name": "line1", "driver": "opcua", "url": url, "mode": mode, "interval": "200ms", "point": points, **extra}
    )


def check_types(latest: dict[str, Reading]) -> None:
    """What a user sees for each OPC-UA type."""
    assert isinstance(latest["double"].value, float)
    assert isinstance(latest["float"].value, float)
    for name in ("sbyte", "byte", "int16", "uint16", "int32", "uint32", "int64", "uint64"):
        assert type(latest[name].value) is int, name
    assert latest["int64"].value < -(2**40) and latest["uint64"].value > 2**40
    assert isinstance(latest["boolean"].value, bool)
    assert latest["string"].value.startswith("tick-")
    assert RFC3339.match(latest["datetime"].value)
    assert re.fullmatch(r"[0-9a-f]{2}0102", latest["bytestring"].value)
    assert latest["doublearray"].value[2] == -1.25 and len(latest["doublearray"].value) == 3
    n = latest["int32array"].value[0]
    assert latest["int32array"].value == [n, n + 1, n + 2]
    assert latest["stringarray"].value[0] == "a"
    assert type(latest["counter_by_path"].value) is int
    assert type(latest["counter_numeric"].value) is int
    assert isinstance(latest["double_by_uri"].value, float)
    unc = latest["uncertain"]
    assert (unc.quality, unc.value, unc.error) == ("uncertain", 1.5, "UncertainLastUsableValue")
    bad = latest["bad"]
    assert (bad.quality, bad.value, bad.error) == ("bad", None, "BadSensorFailure")
    assert latest["stamped"].ts == pytest.approx(FIXED_SOURCE_TS, abs=0.001)
    assert latest["missing"].quality == "bad" and "BadNodeIdUnknown" in (latest["missing"].error or "")
    assert latest["missing_path"].quality == "bad" and "BadNoMatch" in (latest["missing_path"].error or "")


def test_registry_picks_the_class_by_mode(plain_server: ServerProcess) -> None:
    assert type(create_driver(device(plain_server.url, "subscribe"))) is OpcuaSubscribeDriver
    assert type(create_driver(device(plain_server.url, "poll"))) is OpcuaPollDriver
    assert OpcuaSubscribeDriver.push and not OpcuaPollDriver.push


async def test_subscribe_mode_delivers_every_type_as_it_changes(plain_server: ServerProcess) -> None:
    driver = create_driver(device(plain_server.url, "subscribe"))
    async with Collector(driver) as c:
        changing = ["double", "int32", "boolean", "string", "datetime", "int32array", "counter_by_path"]
        await c.wait_for(lambda: all(len({repr(r.value) for r in c.of(p)}) >= 2 for p in changing), 10,
                         "two distinct values of every changing point")
        latest = {r.point: r for r in c.readings}
        check_types(latest)
        assert driver.status.state in ("up", "degraded")


async def test_poll_mode_reads_every_point_in_one_request_per_cycle(plain_server: ServerProcess) -> None:
    driver = create_driver(device(plain_server.url, "poll"))
    assert isinstance(driver, OpcuaPollDriver)
    cycles = []
    await driver.start()
    try:
        for _ in range(3):
            cycles.append({r.point: r for r in await driver.poll()})
            await asyncio.sleep(0.25)
        # this server caps a Read at 10 nodes, so the 26 resolved points took 3 requests
        assert driver.session.max_nodes_per_read == 10
    finally:
        await driver.stop()
    for cycle in cycles:
        assert set(cycle) == {p.name for p in driver.config.point}
        check_types(cycle)
    assert cycles[0]["counter_numeric"].value < cycles[2]["counter_numeric"].value


async def test_local_timestamp_when_asked(plain_server: ServerProcess) -> None:
    driver = create_driver(device(plain_server.url, "poll", timestamp="local"))
    try:
        stamped = {r.point: r for r in await driver.poll()}["stamped"]
    finally:
        await driver.stop()
    assert stamped.ts > FIXED_SOURCE_TS + 10**8


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_a_null_source_timestamp_is_no_timestamp(plain_server: ServerProcess, mode: str) -> None:
    """OPC-UA's null DateTime (0 on the wire, 1601-01-01) means "none sent": the fallback, server time, is used."""
    cfg = OpcuaDevice.model_validate({
        "name": "stamps", "driver": "opcua", "url": plain_server.url, "mode": mode, "interval": "200ms",
        "point": [{"name": "null_source", "node": "ns=2;s=Line1.NullSourceTime"},
                  {"name": "stamped", "node": "ns=2;s=Line1.Stamped"}],
    })
    driver = create_driver(cfg)
    before = time.time()
    if isinstance(driver, OpcuaPollDriver):
        try:
            latest = {r.point: r for r in await driver.poll()}
        finally:
            await driver.stop()
    else:
        async with Collector(driver) as c:
            await c.wait_for(lambda: c.of("null_source") and c.of("stamped"), 10, "both points")
        latest = {r.point: r for r in c.readings}
    null_source = latest["null_source"]
    assert (null_source.value, null_source.quality, null_source.error) == (8.0, "good", None)
    # the server's timestamp: when the session's test server stored the value, so before this test; neither
    # 1601 nor our local time of receipt (which the server timestamp comes first of)
    assert FIXED_SOURCE_TS < null_source.ts < before
    assert latest["stamped"].ts == pytest.approx(FIXED_SOURCE_TS, abs=0.001)  # a real source timestamp is kept


async def test_writes_convert_to_the_node_type_and_read_back(plain_server: ServerProcess) -> None:
    driver = create_driver(device(plain_server.url, "poll"))
    await driver.start()
    try:
        await driver.poll()
        assert await driver.write("setpoint", 42) == 42.0
        assert await driver.write("setpoint_scaled", 30.0) == 30.0  # 15.0 on the wire
        assert {r.point: r for r in await driver.poll()}["setpoint"].value == 15.0
        assert await driver.write("flags", [4, 5]) == [4, 5]
        with pytest.raises(WriteError, match="not writable"):
            await driver.write("double", 1.0)
        with pytest.raises(WriteError, match="expected a number"):
            await driver.write("setpoint", "hot")
        with pytest.raises(WriteError, match="out of range for Int16"):
            await driver.write("flags", [70000])
        with pytest.raises(WriteError, match="no point"):
            await driver.write("nope", 1)
    finally:
        await driver.stop()


async def test_unreachable_server_gives_bad_readings_not_exceptions() -> None:
    from opcua_peers import free_port

    driver = create_driver(device(f"opc.tcp://127.0.0.1:{free_port()}/", "poll"))
    await driver.start()
    readings = await driver.poll()
    assert readings and all(r.quality == "bad" and r.error for r in readings)
    assert driver.status.state == "down"
    assert (await driver.poll())[0].quality == "bad"  # within the backoff: no new attempt, still bad


async def test_server_side_deadband_filters_at_the_source(plain_server: ServerProcess) -> None:
    cfg = OpcuaDevice.model_validate({
        "name": "filtered", "driver": "opcua", "url": plain_server.url, "interval": "100ms",
        "point": [
            {"name": "every", "node": "ns=2;i=1001"},
            {"name": "by5", "node": "ns=2;i=1001", "deadband_type": "absolute", "server_deadband": 5},
            {"name": "pct", "node": "ns=2;s=Line1.Double", "deadband_type": "percent", "server_deadband": 10},
        ],
    })
    driver = create_driver(cfg)
    async with Collector(driver) as c:
        await c.wait_for(lambda: len(c.of("every")) >= 25, 10, "25 counter changes")
    every = [r.value for r in c.of("every")]
    by5 = [r.value for r in c.of("by5")]
    assert len(by5) < len(every) / 3
    assert all(b - a > 5 for a, b in itertools.pairwise(by5)), by5
    assert c.of("pct"), "the percent filter was accepted (whether it needs an EURange is up to the server)"
