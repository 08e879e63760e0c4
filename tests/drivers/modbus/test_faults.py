"""Real-bus faults: a dead unit among five on one bus, and the server killed and restarted mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from typing import Any

import pytest

from drivers.base import DEGRADED, UP
from drivers.modbus.config import ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from edge.reading import BAD, GOOD

from .peers import ScheduleResult, ServerProcess, SilentGateway, poll_on_schedule

POINTS: list[dict[str, Any]] = [
    {"name": "a", "address": 0, "type": "float32"},
    {"name": "b", "address": 10, "type": "uint16"},
    {"name": "c", "table": "coil", "address": 0},
]


def unit_on(port: int, unit: int, **keys: Any) -> ModbusDriver:
    return ModbusDriver(ModbusTcpDevice(
        name=f"u{unit}", driver="modbus-tcp", host="127.0.0.1", port=port, unit=unit, point=POINTS, **keys,
    ))  # type: ignore[arg-type]


INTERVAL = 0.25
BACKOFF_MAX = 2.0
DEAD_FOR = 5.0
RUN_FOR = 9.0
MARGIN = 0.75  # scheduling slack on a shared 2-core machine


async def test_dead_unit_does_not_slow_the_others_and_recovers(gateway: SilentGateway) -> None:
    keys = {"interval": INTERVAL, "timeout": 0.2, "retries": 1, "backoff_initial": 0.5, "backoff_max": BACKOFF_MAX}
    drivers = [unit_on(gateway.port, u, **keys) for u in range(1, 6)]
    for d in drivers:
        await d.start()
    gateway.dead.add(3)
    results = {d.name: ScheduleResult() for d in drivers}
    started = time.monotonic()
    seen: dict[str, Any] = {}

    async def revive() -> None:
        await asyncio.sleep(DEAD_FOR)
        seen["state"] = drivers[2].status.state
        seen["dropped"] = gateway.dropped
        gateway.dead.clear()
        seen["revived"] = time.monotonic() - started

    try:
        await asyncio.gather(revive(), *(poll_on_schedule(d, RUN_FOR, results[d.name]) for d in drivers))
    finally:
        for d in drivers:
            await d.stop()

    configured = RUN_FOR / INTERVAL
    for name in ("u1", "u2", "u4", "u5"):
        cycles = results[name].cycles
        assert len(cycles) >= 0.9 * configured, f"{name}: {len(cycles)} polls of {configured:.0f}"
        assert all(r.quality == GOOD for c in cycles for r in c.readings), name
    dead = results["u3"].cycles
    assert all(len(c.readings) == len(POINTS) for c in dead)  # every poll reported, none silently missing
    assert seen["state"] == DEGRADED and seen["dropped"] >= 2
    while_dead = [c for c in dead if c.tick < seen["revived"] - 0.3]
    assert while_dead and all(r.quality == BAD for c in while_dead for r in c.readings)
    assert "no response" in (while_dead[0].readings[0].error or "")
    back = next(c.tick for c in dead if c.tick > seen["revived"] and c.readings[0].quality == GOOD)
    assert back - seen["revived"] <= BACKOFF_MAX + INTERVAL + MARGIN
    assert all(r.quality == GOOD for c in dead if c.tick >= back for r in c.readings)
    assert drivers[2].status.state == UP


KILL_AT = 1.5
DOWN_FOR = 2.0
RESTART_INTERVAL = 0.2
RESTART_BACKOFF_MAX = 0.5
GOOD_AFTER_RESTART = 1.0  # seconds of good polls to see before stopping
RESTART_DEADLINE = 30.0  # a restart under heavy load may take long; the test waits, then checks


async def test_server_killed_and_restarted(server_process: ServerProcess) -> None:
    d = unit_on(server_process.port, 1, interval=RESTART_INTERVAL, timeout=0.3, backoff_initial=0.2,
                backoff_max=RESTART_BACKOFF_MAX)
    await d.start()
    marks: dict[str, float] = {}
    stop = asyncio.Event()
    started = time.monotonic()

    async def kill_and_restart() -> None:
        await asyncio.sleep(KILL_AT)
        server_process.kill()
        marks["killed"] = time.monotonic() - started
        await asyncio.sleep(DOWN_FOR)
        await server_process.start()
        marks["restarted"] = time.monotonic() - started
        while d.status.state != UP:
            await asyncio.sleep(0.05)
        await asyncio.sleep(GOOD_AFTER_RESTART)
        stop.set()

    try:
        result, _ = await asyncio.gather(poll_on_schedule(d, RESTART_DEADLINE, stop=stop), kill_and_restart())
    finally:
        await d.stop()
    cycles = result.cycles
    ticks = int(cycles[-1].tick / RESTART_INTERVAL + 0.5) + 1
    skipped = sum(c.missed_after for c in cycles[:-1])
    assert len(cycles) + skipped == ticks  # every tick polled or counted as an overrun
    assert all(len(c.readings) == len(POINTS) for c in cycles)  # no reading silently missing
    before = [c for c in cycles if c.tick < marks["killed"] - 0.1]
    between = [c for c in cycles if marks["killed"] + 0.05 < c.tick < marks["restarted"] - 0.05]
    assert before and all(r.quality == GOOD for c in before for r in c.readings)
    assert between and all(r.quality == BAD and r.error for c in between for r in c.readings)
    back = next(c.tick for c in cycles if c.tick > marks["restarted"] and c.readings[0].quality == GOOD)
    assert back - marks["restarted"] <= RESTART_BACKOFF_MAX + RESTART_INTERVAL + MARGIN
    assert all(r.quality == GOOD for c in cycles if c.tick >= back for r in c.readings)
    assert d.status.state == UP and d.status.reconnects >= 1


async def test_an_answer_that_cannot_be_decoded_is_named_and_logs_no_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """A gateway that garbles its answers (byte count 4, two bytes of data). No real server does that, so the
    peer here is a raw TCP socket answering every request with that frame: the lowest layer."""

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                await reader.readexactly(length - 1)
                writer.write(struct.pack(">HHHB", tid, 0, 5, unit) + bytes([3, 4, 0, 1]))

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = ModbusDriver(ModbusTcpDevice(name="gw", driver="modbus-tcp", host="127.0.0.1", port=port, timeout=0.5,
                                          point=[{"name": "a", "address": 0}]))  # type: ignore[list-item]
    await driver.start()
    try:
        for _ in range(2):
            [reading] = await driver.poll()
            assert reading.quality == BAD and "closed after an answer that cannot be decoded" in (reading.error or "")
            assert "0001000000050103040001" in (reading.error or "")
    finally:
        await driver.stop()
        server.close()
    assert not [r for r in caplog.records if r.name == "asyncio" and "Fatal error" in r.getMessage()]
