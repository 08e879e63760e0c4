"""Log lines per link flap of a subscription: asyncua's expected-during-outage tracebacks are dropped at their
logger, so a flap costs the driver's own "session lost" and "session open" lines, not ~20."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opcua_peers import Collector, ServerProcess
from tcp_proxy import BlackholeProxy

import drivers.opcua.session  # noqa: F401  (installs the filter, as creating an OPC-UA driver does)
from drivers.opcua.config import OpcuaDevice
from drivers.registry import create_driver

ASYNCUA_SESSION_LOGGER = "asyncua.client.ua_session.UaSession"  # asyncua's own name for it, not ours
FLAPS = 3
WAIT = 15.0


def device(url: str) -> OpcuaDevice:
    return OpcuaDevice.model_validate({
        "name": "flappy", "driver": "opcua", "url": url, "mode": "subscribe", "interval": "100ms",
        "reconnect_max": "500ms", "point": [{"name": "counter", "node": "ns=2;i=1001"}],
    })


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= level]


async def test_a_flap_logs_the_session_loss_not_asyncuas_tracebacks(
        plain_server: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.WARNING, logger="asyncua")  # as the daemon runs it (edge.logs.setup)
    proxy = await BlackholeProxy(plain_server.port).start()
    driver = create_driver(device(f"opc.tcp://127.0.0.1:{proxy.port}/edge/"))
    try:
        async with Collector(driver) as c:
            await c.wait_for(lambda: c.of("counter"), WAIT, "values")
            caplog.clear()
            for flap in range(1, FLAPS + 1):
                seen = len(c.readings)
                proxy.reset()  # every connection through the proxy closed at once; new ones work
                await c.wait_for(lambda n=flap: driver.status.reconnects == n, WAIT, f"reconnect {flap}")  # type: ignore[misc]
                await c.wait_for(lambda n=seen: [r for r in c.readings[n:] if r.quality == "good"], WAIT,  # type: ignore[misc]
                                 f"values after flap {flap}")
    finally:
        await proxy.stop()
    logged = messages(caplog)
    assert not [m for m in logged if "Publish iteration crashed" in m or "close_session" in m], logged
    assert not [r for r in caplog.records if r.exc_info], logged  # no traceback at all
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == FLAPS and all("session lost" in m for m in warnings), warnings
    assert len(logged) <= 2 * FLAPS + 1, logged  # per flap "session lost" and "session open" (+ the stop)


def publish_crash(exc: BaseException) -> None:
    try:
        raise exc
    except BaseException:
        logging.getLogger(ASYNCUA_SESSION_LOGGER).exception("Publish iteration crashed; retrying in 1s")


def test_only_the_expected_outage_records_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    session_log = logging.getLogger(ASYNCUA_SESSION_LOGGER)
    publish_crash(ConnectionError("Connection is closed"))
    session_log.warning("close_session was called but connection is closed")
    assert not caplog.records
    unexpected: list[Any] = [ValueError("bad payload"), KeyError(7)]
    for exc in unexpected:
        publish_crash(exc)
    session_log.warning("Received data for unknown subscription %s active are %s", 7, [])
    assert [(r.getMessage(), r.levelno, r.exc_info is not None) for r in caplog.records] == [
        ("Publish iteration crashed; retrying in 1s", logging.ERROR, True),
        ("Publish iteration crashed; retrying in 1s", logging.ERROR, True),
        ("Received data for unknown subscription 7 active are []", logging.WARNING, False),
    ]


def test_at_debug_an_expected_outage_record_is_one_short_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    publish_crash(ConnectionError("Connection is closed"))
    [record] = caplog.records
    assert record.levelno == logging.DEBUG and record.exc_info is None and "\n" not in caplog.text.strip()
    assert "publish loop stopped by the lost connection" in record.getMessage()
