"""GATT connections and adapter slots around stop(): a poll or write overlapping a reload's stop(), a stopped
driver, a driver never started (a disabled device read or written through the API).

bleak's BlueZ backend against the BlueZ model (python-dbusmock on a private bus): `bluez.connected` is what
BlueZ says about the link, `slots.in_use` the adapter's connection slots. Races are made deterministic by holding
a bleak call (the lowest layer in this process) on an asyncio.Event the test sets, never by sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bleak import BleakClient
from hold import Hold

from drivers.base import WriteError
from drivers.ble.driver import BleGattNotifyDriver, BleGattPollDriver

from .fake_bluez import FakeBluez
from .helpers import make_driver, running
from .test_ble_gatt import MAC, POINTS, SETPOINT, instrument, keep_advertising

TEMPERATURE_POINT, HUMIDITY_POINT, SETPOINT_POINT = POINTS[0], POINTS[1], POINTS[2]
STOPPED = "device '{}' is stopped (reloaded, restarting or shutting down)"

def gatt_driver(notify: bool, name: str = "meter", points: list[dict[str, Any]] | None = None) -> Any:
    points = points or [{**TEMPERATURE_POINT, "notify": notify}, SETPOINT_POINT]
    drv = make_driver(name=name, mode="gatt", address=MAC, point=points)
    assert isinstance(drv, BleGattNotifyDriver if notify else BleGattPollDriver)
    return drv


def released(bluez: FakeBluez, drv: Any) -> bool:
    """Nothing kept: BlueZ has no link to the device, and the adapter's slots are all free."""
    return not bluez.connected(MAC) and drv.link.slots.in_use == 0


@pytest.mark.parametrize("notify", [False, True], ids=["poll", "notify"])
async def test_stopped_driver_refuses_writes_and_polls_and_connects_nothing(bluez: FakeBluez, notify: bool) -> None:
    paths = instrument(bluez)
    drv = gatt_driver(notify)
    async with running(keep_advertising(bluez, [MAC])):
        await drv.start()
        assert await drv.write("setpoint", 20.0) == pytest.approx(20.0)
        assert bluez.connected(MAC) and drv.link.slots.in_use == 1  # a started device keeps its connection
        await drv.stop()  # what the runner's finally does when a reload stops the device
        assert released(bluez, drv)
        late = await asyncio.gather(drv.write("setpoint", 22.0), return_exceptions=True)  # a write just after it
        assert released(bluez, drv), "the write after stop() connected again"
        assert isinstance(late[0], WriteError)
        assert str(late[0]) == f"{STOPPED.format('meter')}: write to meter.setpoint refused"
        if not notify:
            readings = await drv.poll()  # a read-now just after it
            assert released(bluez, drv), "the poll after stop() connected again"
            assert [(r.quality, r.error) for r in readings] == [("bad", STOPPED.format("meter"))] * 2
        assert drv.link.connects == 1
        assert bluez.value(paths[SETPOINT]) == (2000).to_bytes(2, "little", signed=True)

        await drv.start()  # the supervisor restarting a crashed runner starts the same driver again
        try:
            assert await drv.write("setpoint", 23.0) == pytest.approx(23.0)
            assert bluez.connected(MAC) and drv.link.slots.in_use == 1
        finally:
            await drv.stop()
        assert released(bluez, drv)


@pytest.mark.parametrize("notify", [False, True], ids=["poll", "notify"])
async def test_never_started_driver_connects_for_the_request_and_lets_go(bluez: FakeBluez, notify: bool) -> None:
    paths = instrument(bluez)
    drv = gatt_driver(notify)
    async with running(keep_advertising(bluez, [MAC])):
        if not notify:
            readings = {r.point: r for r in await drv.poll()}  # POST /v1/devices/{device}/read of a disabled device
            assert released(bluez, drv), "the read kept the connection and its slot"
            assert [(r.value, r.quality) for r in readings.values()] == [(3408, "good"), (1500, "good")]
        assert await drv.write("setpoint", 19.5) == pytest.approx(19.5)  # a disabled device written through the API
        assert released(bluez, drv), "the write kept the connection and its slot"
        assert bluez.value(paths[SETPOINT]) == (1950).to_bytes(2, "little", signed=True)
        assert drv.link.connects == (1 if notify else 2)


async def test_requests_waiting_for_the_link_when_stop_comes_are_refused_and_connect_nothing(
    bluez: FakeBluez, monkeypatch: pytest.MonkeyPatch
) -> None:
    instrument(bluez)
    drv = gatt_driver(False, points=[TEMPERATURE_POINT, HUMIDITY_POINT, SETPOINT_POINT])
    async with running(keep_advertising(bluez, [MAC])):
        await drv.start()
        await drv.poll()
        hold = Hold()
        monkeypatch.setattr(BleakClient, "read_gatt_char", hold.before(BleakClient.read_gatt_char))
        poll = asyncio.create_task(drv.poll())  # e.g. the device's own poll ...
        await hold.reached.wait()  # ... reading, holding the link
        write = asyncio.create_task(drv.write("setpoint", 24.0))  # an API write queues for the link
        await asyncio.sleep(0)
        stop = asyncio.create_task(drv.stop())  # a reload stops the device
        await asyncio.sleep(0)
        hold.go.set()
        readings, late, _ = await asyncio.gather(poll, write, stop, return_exceptions=True)
        assert released(bluez, drv), "a request after stop() connected again"
        assert drv.link.connects == 1
        assert isinstance(late, WriteError)
        assert str(late) == f"{STOPPED.format('meter')}: write to meter.setpoint refused"
        assert [(r.point, r.quality, r.error) for r in readings] == [
            ("temperature", "good", None),  # read before the stop: its value stands
            ("humidity", "bad", STOPPED.format("meter")), ("setpoint", "bad", STOPPED.format("meter"))]


async def test_write_connecting_when_stop_comes_keeps_no_connection_and_no_slot(
    bluez: FakeBluez, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = instrument(bluez)
    drv = gatt_driver(True)  # a notify device: its run() would own the connection; here stop() comes first
    async with running(keep_advertising(bluez, [MAC])):
        await drv.start()
        hold = Hold()
        monkeypatch.setattr(BleakClient, "connect", hold.after(BleakClient.connect))
        write = asyncio.create_task(drv.write("setpoint", 25.0))
        await hold.reached.wait()  # connected, in the slot it took, not yet written
        stop = asyncio.create_task(drv.stop())
        await asyncio.sleep(0)
        hold.go.set()
        late, _ = await asyncio.gather(write, stop, return_exceptions=True)
        assert released(bluez, drv), "the write kept a connection after stop()"
        assert isinstance(late, WriteError)
        assert str(late) == f"{STOPPED.format('meter')}: write to meter.setpoint refused"
        assert bluez.value(paths[SETPOINT]) == (1500).to_bytes(2, "little", signed=True)  # nothing was written
