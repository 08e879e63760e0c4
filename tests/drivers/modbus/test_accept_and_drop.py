"""A peer that accepts each TCP connection and drops it at once (a gateway at its connection limit, a wrong port
behind a load balancer): the bus backs off instead of opening a connection per poll, and logs the streak once.

The peer is tests/tcp_proxy.py's proxy with nothing listening behind it (it accepts, fails to reach its
upstream, closes); pointing it at the simulator afterwards is the recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tcp_proxy import BlackholeProxy

from drivers.base import DOWN, UP
from drivers.modbus.bus import BACKING_OFF
from drivers.modbus.config import ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import SimulatorServer
from edge.reading import BAD, GOOD

from .peers import free_port

BUS_LOGGER = "drivers.modbus.bus"
POLLS = 20
FAILURES = 10


@pytest.fixture
async def dropper() -> AsyncIterator[BlackholeProxy]:
    proxy = await BlackholeProxy(free_port()).start()
    yield proxy
    await proxy.stop()


def device(port: int, **keys: Any) -> ModbusDriver:
    return ModbusDriver(ModbusTcpDevice(
        name="gw", driver="modbus-tcp", host="127.0.0.1", port=port, timeout=0.5,
        point=[{"name": "a", "address": 0}], **keys,
    ))  # type: ignore[list-item]


def bus_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == BUS_LOGGER and r.levelno == level]


async def poll_when_due(driver: ModbusDriver) -> list[Any]:
    """Poll once the bus's backoff has run out, so that the poll reaches the peer."""
    await asyncio.sleep(driver.bus.down_for())
    return await driver.poll()


async def test_back_to_back_polls_open_one_connection_and_log_one_line(
        dropper: BlackholeProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus")
    d = device(dropper.port, backoff_initial="5s", backoff_max="10s")
    await d.start()
    try:
        for _ in range(POLLS):
            [reading] = await d.poll()
            assert reading.quality == BAD
    finally:
        await d.stop()
    assert dropper.accepted == 1  # the connect worked, but nothing answered on it: backed off like a failed one
    assert "lost reading holding 0..0" in (reading.error or "") and "next connect attempt in" in (reading.error or "")
    assert d.status.state == DOWN and d.status.extra["bus_state"] == BACKING_OFF
    warnings = [r for r in caplog.records if r.name.startswith("drivers.modbus") and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert not bus_records(caplog, logging.INFO)


async def test_a_streak_logs_its_first_failure_a_summary_and_its_end(
        dropper: BlackholeProxy, sim: SimulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus")
    d = device(dropper.port, backoff_initial="10ms", backoff_max="20ms")
    await d.start()
    bus = d.bus
    try:
        while dropper.accepted < FAILURES:
            [reading] = await poll_when_due(d)
            assert reading.quality == BAD
        assert d.bus.backoff.attempts == FAILURES  # every connection without an answer consumed a backoff step
        [first] = bus_records(caplog, logging.WARNING)
        assert "lost reading holding" in first.getMessage() and "retrying in" in first.getMessage()
        assert not bus_records(caplog, logging.INFO)

        d.bus.summary_interval = 0.0  # the next failure is due for a summary (60 s in production)
        while dropper.accepted == FAILURES:
            await poll_when_due(d)
        [_, summary] = bus_records(caplog, logging.WARNING)
        assert f"still failing: {FAILURES} attempts in the last" in summary.getMessage()

        dropper.upstream_port = sim.port  # the gateway takes connections again
        [reading] = await poll_when_due(d)
        assert reading.quality == GOOD, reading.error
    finally:
        await d.stop()
    assert d.status.state == UP and bus.backoff.attempts == 0  # the answer reset the backoff
    assert len(bus_records(caplog, logging.WARNING)) == 2
    [back] = bus_records(caplog, logging.INFO)
    assert f"reconnected (after {FAILURES + 1} failures in" in back.getMessage()


async def test_a_working_connection_that_is_lost_reconnects_at_once(
        sim: SimulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus")
    proxy = await BlackholeProxy(sim.port).start()
    d = device(proxy.port, backoff_initial="5s", backoff_max="10s")
    await d.start()
    try:
        [reading] = await d.poll()
        assert reading.quality == GOOD
        proxy.reset()  # a flap: the connection that carried answers is closed
        while (await d.poll())[0].quality == GOOD:  # until the bus notices
            pass
        [reading] = await d.poll()  # no backoff: the lost connection had answered
    finally:
        await d.stop()
        await proxy.stop()
    assert reading.quality == GOOD and proxy.accepted == 2
    assert len(bus_records(caplog, logging.WARNING)) == 1
    [back] = bus_records(caplog, logging.INFO)
    assert "reconnected (after 1 failures in" in back.getMessage()
