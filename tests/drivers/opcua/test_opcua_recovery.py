"""Recovery: a server process restarted after ≥ 10 s, and a subscription that goes silent on a live session."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from opcua_peers import Collector, ServerProcess
from tcp_proxy import BlackholeProxy

from drivers.opcua.config import OpcuaDevice
from drivers.opcua.driver import OpcuaPollDriver
from drivers.registry import create_driver
from edge.reading import Reading

DOWN_FOR = 10.5
RESUME_WITHIN = 10.0


def device(name: str, url: str, mode: str, **extra: Any) -> OpcuaDevice:
    return OpcuaDevice.model_validate({
        "name": name, "driver": "opcua", "url": url, "mode": mode, "interval": "200ms",
        "point": [{"name": "counter", "node": "ns=2;i=1001"},
                  {"name": "by_path", "browse_path": "2:Line1/2:Double"},
                  {"name": "stall", "node": "ns=2;s=Test.Stall", "writable": True}],
        **extra,
    })


class Poller:
    """Polls a poll driver every interval in a task, like the daemon does."""

    def __init__(self, driver: OpcuaPollDriver) -> None:
        self.driver = driver
        self.readings: list[Reading] = []
        self.task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.readings.extend(await self.driver.poll())
            await asyncio.sleep(0.2)

    def good_since(self, t: float) -> list[Reading]:
        return [r for r in self.readings if r.point == "counter" and r.quality == "good" and r.ts >= t]


@pytest.mark.slow
async def test_values_resume_after_the_server_restarts_with_one_session_at_a_time() -> None:
    first = ServerProcess().start()
    sub_driver = create_driver(device("sub", first.url, "subscribe"))
    poll_driver = create_driver(device("poll", first.url, "poll"))
    assert isinstance(poll_driver, OpcuaPollDriver)
    poller = Poller(poll_driver)
    second: ServerProcess | None = None
    await poll_driver.start()
    try:
        async with Collector(sub_driver) as c:
            poller.task = asyncio.create_task(poller._loop())
            await c.wait_for(lambda: len(c.of("counter")) >= 3 and poller.good_since(0), 10, "values before")

            first.stop()
            stopped = time.time()
            await c.wait_for(lambda: sub_driver.status.state == "down", 5, "the subscriber to notice")
            assert [r for r in c.readings if r.ts >= stopped and r.quality == "bad"], "the outage is reported"
            await asyncio.sleep(DOWN_FOR - (time.time() - stopped))
            assert poller.readings[-1].quality == "bad"

            second = ServerProcess(first.port).start()  # a new process, same port and node ids
            back = time.time()
            await c.wait_for(lambda: [r for r in c.of("counter") if r.ts >= back], RESUME_WITHIN,
                             "subscribed values from the new server")
            await c.wait_for(lambda: [r for r in c.of("by_path") if r.ts >= back], 2, "browse path re-resolved")
            sub_resumed = time.time() - back
            await c.wait_for(lambda: poller.good_since(back), RESUME_WITHIN - (time.time() - back), "polled values")
            assert sub_driver.status.reconnects >= 1 and sub_driver.status.state == "up"
            print(f"subscription resumed {sub_resumed:.1f}s after the server returned")
    finally:
        if poller.task:
            poller.task.cancel()
        await poll_driver.stop()
        first.stop()
        if second is not None:
            await asyncio.sleep(0.3)  # let the server print the closed sessions
            second.stop()
    for server in (first, second):
        assert server is not None
        assert max(server.session_counts("sub")) == 1, server.session_counts("sub")
        assert max(server.session_counts("poll")) == 1, server.session_counts("poll")
    assert second is not None and second.session_counts()[-1] == 0, "sessions closed on stop"


async def test_a_silent_subscription_is_detected_and_rebuilt(plain_server: ServerProcess) -> None:
    driver = create_driver(device("silent", plain_server.url, "subscribe", keepalive_count=5))
    async with Collector(driver) as c:
        await c.wait_for(lambda: len(c.of("counter")) >= 3, 10, "values")
        sub_id = driver.status.extra["subscription_id"]
        assert driver.status.extra["keepalive_period"] == pytest.approx(1.0)
        await driver.write("stall", True)  # the server stops publishing this subscription: no data, no keep-alive
        stalled = time.time()
        await c.wait_for(lambda: driver.status.extra["subscription_rebuilds"] >= 1, 6, "a rebuild")
        detected = time.time() - stalled
        await c.wait_for(lambda: [r for r in c.of("counter") if r.ts > stalled + detected], 3, "values again")
        assert driver.status.extra["subscription_id"] != sub_id
        assert driver.status.reconnects == 0  # the session stayed; only the subscription was rebuilt
        assert 1.0 < detected < 4.5, detected


@pytest.mark.slow
async def test_a_network_cut_leaves_no_second_session_on_the_server(plain_server: ServerProcess) -> None:
    proxy = await BlackholeProxy(plain_server.port).start()
    url = f"opc.tcp://127.0.0.1:{proxy.port}/edge/"
    driver = create_driver(device("cut", url, "subscribe", watchdog_interval="500ms", reconnect_max="1s"))
    try:
        async with Collector(driver) as c:
            await c.wait_for(lambda: len(c.of("counter")) >= 3, 10, "values")
            proxy.cut()  # no FIN, no RST: the server keeps our session
            await c.wait_for(lambda: driver.status.state == "down", 6, "the watchdog to notice")
            await asyncio.sleep(2)
            proxy.heal()
            healed = time.time()
            await c.wait_for(lambda: [r for r in c.of("counter") if r.ts >= healed], 10, "values after the cut")
            assert driver.status.extra["orphaned_sessions_closed"] == 1
        await asyncio.sleep(0.3)
    finally:
        await proxy.stop()
    counts = plain_server.session_counts("cut")
    assert max(counts) == 1, counts
    assert counts[-1] == 0


async def test_a_slow_pipeline_is_backpressure_not_a_silent_subscription(
    plain_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("drivers.opcua.subscription.QUEUE_BATCHES", 2)
    driver = create_driver(device("slow", plain_server.url, "subscribe", keepalive_count=5))
    got: list[Reading] = []
    stalls = [3.5]  # the first delivery takes longer than the silence limit (1.5 x 1 s + 1 s)

    async def slow_publish(readings: list[Reading]) -> None:
        if stalls:
            await asyncio.sleep(stalls.pop())
        got.extend(readings)

    task = asyncio.create_task(driver.run(slow_publish))
    try:
        deadline = time.monotonic() + 10
        while len([r for r in got if r.point == "counter"]) < 15 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.stop()
    assert len([r for r in got if r.point == "counter"]) >= 15
    assert driver.status.extra["subscription_rebuilds"] == 0 and driver.status.reconnects == 0
