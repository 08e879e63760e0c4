"""GATT devices through bleak's BlueZ backend against the BlueZ model: read, write, notify, loss and return, slots."""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path

import pytest

from drivers.base import WriteError
from drivers.ble.scanner import shared_scanner
from drivers.ble.slots import connection_slots

from .fake_bluez import Characteristic, FakeBluez
from .helpers import StoredReadings, make_driver, running, wait_until

ENV_SENSING = "0000181a-0000-1000-8000-00805f9b34fb"
TEMPERATURE = "00002a6e-0000-1000-8000-00805f9b34fb"
HUMIDITY = "00002a6f-0000-1000-8000-00805f9b34fb"
SETPOINT = "0000ff01-0000-1000-8000-00805f9b34fb"
PACKED = "0000ff02-0000-1000-8000-00805f9b34fb"
MAC = "AA:BB:CC:DD:EE:01"


@pytest.fixture
def sink(tmp_path: Path):
    s = StoredReadings(tmp_path / "store")
    yield s
    s.close()


def instrument(bluez: FakeBluez, mac: str = MAC) -> dict[str, str]:
    bluez.add_device(mac, "instrument")
    return bluez.add_gatt(mac, ENV_SENSING, [
        Characteristic(TEMPERATURE, (3408).to_bytes(2, "little"), ("read", "notify")),
        Characteristic(HUMIDITY, (5120).to_bytes(2, "little"), ("read",)),
        Characteristic(SETPOINT, (1500).to_bytes(2, "little", signed=True), ("read", "write")),
        Characteristic(PACKED, bytes.fromhex("01" "0000c841" "ff"), ("read",)),
    ])


POINTS = [
    {"name": "temperature", "uuid": "2a6e", "type": "int16", "scale": 0.01, "unit": "degC"},
    {"name": "humidity", "uuid": "2A6F", "type": "uint16", "scale": 0.01},
    {"name": "setpoint", "uuid": SETPOINT, "type": "int16", "scale": 0.01, "writable": True},
    {"name": "flag", "uuid": PACKED, "type": "bool"},
    {"name": "level", "uuid": PACKED, "type": "float32", "byte_offset": 1},
    {"name": "trailer", "uuid": PACKED, "type": "int8", "byte_offset": 5},
]


async def advertise_when_scanning(bluez: FakeBluez, *macs: str) -> None:
    """Real devices advertise all the time; the model advertises on demand, so do it while a lookup scans."""
    scanner = shared_scanner(None)
    await wait_until(lambda: scanner.running, what="a scan")
    for mac in macs:
        bluez.advertise(mac)


async def test_poll_reads_every_point_by_uuid(bluez: FakeBluez) -> None:
    instrument(bluez)
    drv = make_driver(name="meter", mode="gatt", address=MAC, point=POINTS)
    assert type(drv).__name__ == "BleGattPollDriver"
    await drv.start()  # a running device (an enabled one the daemon started) keeps its connection
    poll = asyncio.create_task(drv.poll())
    await advertise_when_scanning(bluez, MAC)
    readings = {r.point: r for r in await poll}
    assert {p: r.value for p, r in readings.items()} == {
        "temperature": 3408, "humidity": 5120, "setpoint": 1500, "flag": True, "level": 25.0, "trailer": -1}
    assert all(r.quality == "good" for r in readings.values())
    assert drv.status.state == "up" and bluez.connected(MAC)
    again = await drv.poll()  # the connection is kept between polls
    assert [r.value for r in again][:2] == [3408, 5120]
    await drv.stop()
    assert not bluez.connected(MAC)


async def test_write_then_read_back(bluez: FakeBluez) -> None:
    paths = instrument(bluez)
    drv = make_driver(name="meter", mode="gatt", address=MAC, point=POINTS)
    task = asyncio.create_task(drv.write("setpoint", 21.5))
    await advertise_when_scanning(bluez, MAC)
    assert await task == pytest.approx(21.5)
    assert bluez.value(paths[SETPOINT]) == (2150).to_bytes(2, "little", signed=True)
    with pytest.raises(WriteError, match="not writable"):
        await drv.write("humidity", 1)
    with pytest.raises(WriteError, match="does not fit"):
        await drv.write("setpoint", 1000.0)
    with pytest.raises(WriteError, match="no point"):
        await drv.write("nope", 1)
    await drv.stop()


async def test_notifications_are_pushed_and_other_points_polled(bluez: FakeBluez, sink: StoredReadings) -> None:
    paths = instrument(bluez)
    points = [{**POINTS[0], "notify": True}, POINTS[1]]
    drv = make_driver(name="live", mode="gatt", address=MAC, interval="200ms", point=points)
    assert drv.push
    async with running(drv.run(sink.publish)):
        await advertise_when_scanning(bluez, MAC)
        await wait_until(lambda: bluez.notifying(paths[TEMPERATURE]), what="StartNotify")
        await wait_until(lambda: sink.good("live", "temperature"), what="the initial read")
        for value in (3500, 3600, 3700):
            bluez.set_value(paths[TEMPERATURE], value.to_bytes(2, "little"))
        await wait_until(lambda: sink.good("live", "temperature")[-1:] == [3700], what="notifications")
        await wait_until(lambda: len(sink.good("live", "humidity")) >= 3, what="the polled point, each interval")
    temps = sink.good("live", "temperature")
    assert temps[0] == 3408 and [t for t in temps if t >= 3500][:3] == [3500, 3600, 3700]
    stored = [r for r in await sink.stored() if r.point == "temperature"]
    assert [r.value for r in stored] == temps and stored[0].unit == "degC"


async def test_device_that_disappears_and_returns(bluez: FakeBluez, sink: StoredReadings) -> None:
    paths = instrument(bluez)
    drv = make_driver(name="roaming", mode="gatt", address=MAC, interval="100ms", reconnect_delay="100ms",
                      connect_timeout="1s", point=[{**POINTS[0], "notify": True}])
    async with running(drv.run(sink.publish)):
        await advertise_when_scanning(bluez, MAC)
        await wait_until(lambda: sink.good("roaming", "temperature"), what="connected")
        bluez.go_away(MAC)
        await wait_until(lambda: sink.bad("roaming"), what="bad readings after the link drops")
        assert drv.status.state == "down"
        bluez.set_value(paths[TEMPERATURE], (4000).to_bytes(2, "little"))
        await wait_until(lambda: any("Host is down" in (r.error or "") for r in sink.bad("roaming")),
                         what="a connection attempt failing with BlueZ's reason while it is away")
        bluez.come_back(MAC)
        async with running(keep_advertising(bluez, [MAC])):  # back in range, it advertises again
            await wait_until(lambda: 4000 in sink.good("roaming", "temperature"), what="readings after return",
                             timeout=8.0)
        assert drv.status.reconnects >= 1 and drv.status.state == "up"
    errors = {r.error for r in sink.bad("roaming")}
    assert "disconnected" in errors
    assert any("Host is down" in e for e in errors if e), "attempts while away fail with BlueZ's reason"


async def test_more_devices_than_connection_slots_take_turns(bluez: FakeBluez) -> None:
    macs = [f"AA:BB:CC:DD:EE:{i:02X}" for i in range(1, 5)]
    for mac in macs:
        instrument(bluez, mac)
    drivers = [make_driver(name=f"m{i}", mode="gatt", address=mac, max_connections=2, connect_timeout="3s",
                           point=POINTS[:2]) for i, mac in enumerate(macs)]
    slots = connection_slots(None, 2)
    most = 0
    for d in drivers:
        await d.start()

    def watch() -> bool:
        nonlocal most
        most = max(most, slots.in_use, sum(bluez.connected(m) for m in macs))
        return False

    async def rounds(drv, n: int = 3) -> list[list[object]]:
        out = []
        for _ in range(n):
            out.append([r.value for r in await drv.poll()])
            watch()
        return out

    scanning = asyncio.create_task(keep_advertising(bluez, macs))
    try:
        results = await asyncio.wait_for(asyncio.gather(*(rounds(d) for d in drivers)), 20)
    finally:
        scanning.cancel()
    assert all(r == [3408, 5120] for per_device in results for r in per_device)
    assert 0 < most <= 2
    assert sum(d.link.connects for d in drivers) > len(drivers), "idle holders gave their slots to waiters"
    for d in drivers:
        await d.stop()
    assert slots.in_use == 0


async def keep_advertising(bluez: FakeBluez, macs: list[str]) -> None:
    while True:
        if shared_scanner(None).running:
            for mac in macs:
                bluez.advertise(mac)
        await asyncio.sleep(0.05)


async def test_notify_devices_beyond_the_limit_wait_for_a_freed_slot(bluez: FakeBluez, sink: StoredReadings) -> None:
    macs = [f"AA:BB:CC:DD:EE:{i:02X}" for i in range(1, 4)]
    for mac in macs:
        instrument(bluez, mac)
    drivers = [make_driver(name=f"n{i}", mode="gatt", address=mac, max_connections=2, connect_timeout="500ms",
                           reconnect_delay="100ms", point=[{**POINTS[0], "notify": True}])
               for i, mac in enumerate(macs)]
    async with running(keep_advertising(bluez, macs), *(d.run(sink.publish) for d in drivers)):
        await wait_until(lambda: sum(bool(sink.good(d.name, "temperature")) for d in drivers) == 2,
                         what="two devices connected")
        waiting = next(d for d in drivers if not sink.good(d.name, "temperature"))
        await wait_until(lambda: any("waiting for a connection slot" in (r.error or "")
                                     for r in sink.bad(waiting.name)), what="the third waits for a slot")
        assert sum(bluez.connected(m) for m in macs) == 2
        leaving = next(d for d in drivers if d is not waiting)
        bluez.go_away(leaving.ble.address)  # its slot goes to the device that waited
        await wait_until(lambda: sink.good(waiting.name, "temperature"), what="the waiting device connected")
        assert sum(bluez.connected(m) for m in macs) == 2


async def test_a_missing_characteristic_is_a_bad_point_not_a_bad_device(bluez: FakeBluez) -> None:
    instrument(bluez)
    drv = make_driver(name="meter", mode="gatt", address=MAC, point=[
        POINTS[0], {"name": "ghost", "uuid": "ffee", "type": "uint8"},
        {"name": "short", "uuid": HUMIDITY, "type": "uint32"}])
    poll = asyncio.create_task(drv.poll())
    await advertise_when_scanning(bluez, MAC)
    readings = {r.point: r for r in await poll}
    assert readings["temperature"].value == 3408
    assert readings["ghost"].quality == "bad" and "ffee" in (readings["ghost"].error or "").lower()
    assert readings["short"].error == "2a6f: uint32 at byte 0 needs 4 bytes, the data has 2"
    assert drv.status.state == "degraded"
    await drv.stop()


async def test_a_nan_or_inf_float_is_uncertain_not_good(bluez: FakeBluez) -> None:
    """As with Modbus and OPC-UA: the reading says the device sent no finite number, and stays a float."""
    bluez.add_device(MAC, "instrument")
    bluez.add_gatt(MAC, ENV_SENSING, [
        Characteristic(TEMPERATURE, (3408).to_bytes(2, "little"), ("read",)),
        Characteristic(PACKED, struct.pack("<f", math.nan) + struct.pack("<d", -math.inf), ("read",)),
    ])
    drv = make_driver(name="meter", mode="gatt", address=MAC, point=[
        POINTS[0], {"name": "level", "uuid": PACKED, "type": "float32", "unit": "m"},
        {"name": "flow", "uuid": PACKED, "type": "float64", "byte_offset": 4}])
    poll = asyncio.create_task(drv.poll())
    await advertise_when_scanning(bluez, MAC)
    readings = {r.point: r for r in await poll}
    await drv.stop()
    assert (readings["temperature"].value, readings["temperature"].quality) == (3408, "good")
    level, flow = readings["level"], readings["flow"]
    assert (level.quality, level.error, level.unit) == ("uncertain", "not a finite number (nan)", "m")
    assert (flow.quality, flow.error, flow.value) == ("uncertain", "not a finite number (-inf)", -math.inf)
    assert isinstance(level.value, float) and math.isnan(level.value)
    assert level.to_dict()["value"] is None
    assert (drv.status.state, drv.status.last_error) == ("degraded", "not a finite number (nan)")
