"""Sessions around stop(): a poll or write overlapping a reload's stop(), a stopped driver, a driver never started.

Against the real asyncua test server (the session-wide `plain_server`), which prints its session list whenever it
changes; `sessions_of` reads the server's own count of a device's sessions. Races are made deterministic by holding
an asyncua call (the lowest layer, below the driver and its DeviceSession) on an asyncio.Event, never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from asyncua import Client
from asyncua.client.ua_client import UaClient
from hold import Hold
from opcua_peers import ServerProcess

from drivers.base import WriteError
from drivers.opcua.config import OpcuaDevice
from drivers.opcua.driver import OpcuaPollDriver, OpcuaSubscribeDriver
from drivers.registry import create_driver
from edge.reading import BAD, GOOD, Reading

WAIT = 10.0  # at most this long for the server to list a session (a deadline, not a timing assertion)
STOPPED = "device '{}' is stopped (reloaded, restarting or shutting down)"

def driver_for(server: ServerProcess, name: str, mode: str = "poll") -> Any:
    cfg = OpcuaDevice.model_validate({
        "name": name, "driver": "opcua", "url": server.url, "mode": mode, "interval": "200ms",
        "point": [{"name": "counter", "node": "ns=2;i=1001"},
                  {"name": "setpoint", "node": "ns=2;s=Line1.Setpoint", "writable": True}],
    })
    return create_driver(cfg)


def session_lists(server: ServerProcess) -> list[list[str]]:
    """Every session list the server printed (`SESSIONS <n> <name|name…>`), oldest first."""
    lists = []
    for line in list(server.lines):
        if line.startswith("SESSIONS "):
            names = line.partition(" ")[2].partition(" ")[2]
            lists.append([n for n in names.split("|") if n])
    return lists


async def sessions_of(server: ServerProcess, device: str) -> int:
    """How many sessions of our `device` the server holds now.

    A probe session of the test's own is opened and the first list the server prints with it is read: that list
    was taken after the probe opened, so after everything the test awaited before calling this."""
    probe_name = f"probe-{uuid.uuid4().hex[:12]}"
    probe = Client(server.url, timeout=5)
    probe.name = probe.description = probe_name
    await probe.connect()
    try:
        deadline = time.monotonic() + WAIT
        while True:
            found = [names for names in session_lists(server) if any(n.startswith(f"{probe_name} ") for n in names)]
            if found:
                return sum(1 for n in found[0] if n.startswith(f"edge {device} "))
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not list the probe session within {WAIT:g}s")
            await asyncio.sleep(0.01)
    finally:
        await probe.disconnect()


def values(readings: list[Reading]) -> dict[str, tuple[Any, str]]:
    return {r.point: (r.value, r.quality) for r in readings}


async def test_stopped_driver_refuses_polls_and_writes_and_leaves_no_session(plain_server: ServerProcess) -> None:
    name = "stop-late"
    driver = driver_for(plain_server, name)
    await driver.start()
    assert all(r.quality == GOOD for r in await driver.poll())
    assert await sessions_of(plain_server, name) == 1
    await driver.stop()  # what the runner's finally does when a reload stops the device
    readings = await driver.poll()  # e.g. a read-now landing just after it
    assert await sessions_of(plain_server, name) == 0
    assert [(r.quality, r.error) for r in readings] == [(BAD, STOPPED.format(name))] * 2
    with pytest.raises(WriteError, match=r"'stop-late' is stopped .*: write to stop-late\.setpoint refused"):
        await driver.write("setpoint", 5)
    assert driver.session.client is None
    assert await sessions_of(plain_server, name) == 0
    await driver.start()  # the supervisor restarting a crashed runner starts the same driver again
    try:
        assert all(r.quality == GOOD for r in await driver.poll())
        assert await driver.write("setpoint", 6) == 6.0
        assert await sessions_of(plain_server, name) == 1
    finally:
        await driver.stop()
    assert await sessions_of(plain_server, name) == 0


async def test_poll_reconnecting_when_stop_comes_opens_no_session(
    plain_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "stop-reconnect"
    driver = driver_for(plain_server, name)
    await driver.start()
    assert all(r.quality == GOOD for r in await driver.poll())
    client = driver.session.client
    hold = Hold()
    monkeypatch.setattr(client, "close_session", hold.before(client.close_session))
    driver.session.mark_lost("probe failed")  # what the watchdog reports: the next poll closes it, then reopens
    poll = asyncio.create_task(driver.poll())
    await hold.reached.wait()  # the poll is closing the lost session (it holds the session's lock) ...
    stop = asyncio.create_task(driver.stop())
    await asyncio.sleep(0)  # ... when a reload stops the device: stop() now waits for that lock
    hold.go.set()
    readings = await poll
    await stop
    assert await sessions_of(plain_server, name) == 0
    assert driver.session.client is None
    assert [(r.quality, r.error) for r in readings] == [(BAD, STOPPED.format(name))] * 2


async def test_write_overlapping_stop_is_refused_and_reopens_nothing(
    plain_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "stop-write"
    driver = driver_for(plain_server, name)
    await driver.start()
    await driver.poll()
    client = driver.session.client
    hold = Hold()
    monkeypatch.setattr(client.uaclient, "write", hold.after(client.uaclient.write))
    write = asyncio.create_task(driver.write("setpoint", 33.5))
    await hold.reached.wait()  # written, not yet read back
    await driver.stop()
    hold.go.set()
    with pytest.raises(WriteError, match=r"'stop-write' is stopped .*: stop-write\.setpoint was written but not read"):
        await write
    assert driver.session.client is None
    assert await sessions_of(plain_server, name) == 0
    check = driver_for(plain_server, "stop-write-check")  # the write itself was made
    assert values(await check.poll())["setpoint"] == (33.5, GOOD)


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_never_started_driver_reads_and_writes_on_a_session_of_its_own(
    plain_server: ServerProcess, mode: str
) -> None:
    """A disabled device (never started) written through the API, or read with POST /v1/devices/{d}/read."""
    name = f"disabled-{mode}"
    driver = driver_for(plain_server, name, mode)
    assert isinstance(driver, OpcuaPollDriver if mode == "poll" else OpcuaSubscribeDriver)
    if isinstance(driver, OpcuaPollDriver):
        got = values(await driver.poll())
        assert await sessions_of(plain_server, name) == 0
        assert got["counter"][1] == GOOD
    assert await driver.write("setpoint", 17.5) == 17.5
    assert await sessions_of(plain_server, name) == 0
    assert driver.session.client is None
    if isinstance(driver, OpcuaPollDriver):
        assert values(await driver.poll())["setpoint"] == (17.5, GOOD)
        assert await sessions_of(plain_server, name) == 0


async def test_never_started_read_cancelled_leaves_no_session(
    plain_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-now that times out (the API cancels the poll) closes the session it opened."""
    name = "disabled-cancelled"
    driver = driver_for(plain_server, name)
    hold = Hold()
    monkeypatch.setattr(UaClient, "read", hold.before(UaClient.read))  # the first Read of the session held
    poll = asyncio.create_task(driver.poll())
    await hold.reached.wait()
    assert await sessions_of(plain_server, name) == 1
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    assert await sessions_of(plain_server, name) == 0
