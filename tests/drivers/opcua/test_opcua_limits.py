"""A server with limits: fewer monitored items per call than edge would ask for, subscriptions it refuses.

The test server runs in this process so that its subscription service can enforce what a real server does and
asyncua's does not: a CreateMonitoredItems request above the published MaxMonitoredItemsPerCall is refused as a
whole with BadTooManyOperations, and CreateSubscription can be refused with BadTooManySubscriptions.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.server.subscription_service import SubscriptionService
from opcua_peers import Collector, free_port
from opcua_testserver import build

from drivers.opcua.config import OpcuaDevice
from drivers.opcua.driver import OpcuaSubscribeDriver
from drivers.registry import create_driver

ITEMS = 150
LIMIT = 100


class LimitedServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.item_calls: list[int] = []  # items per CreateMonitoredItems request
        self.subscription_calls: list[float] = []  # when CreateSubscription was asked (monotonic)
        self.refuse_subscriptions = False


@pytest.fixture
async def limited(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LimitedServer]:
    port = free_port()
    server = await build(port, None, None, None, ITEMS, max_monitored_items_per_call=LIMIT)
    peer = LimitedServer(f"opc.tcp://127.0.0.1:{port}/edge/")
    create_items = SubscriptionService.create_monitored_items
    create_subscription = SubscriptionService.create_subscription

    async def items(self: SubscriptionService, params: ua.CreateMonitoredItemsParameters) -> Any:
        peer.item_calls.append(len(params.ItemsToCreate))
        if len(params.ItemsToCreate) > LIMIT:
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)
        return await create_items(self, params)

    async def subscription(self: SubscriptionService, *args: Any, **kwargs: Any) -> Any:
        peer.subscription_calls.append(time.monotonic())
        if peer.refuse_subscriptions:
            raise ServiceError(ua.StatusCodes.BadTooManySubscriptions)
        return await create_subscription(self, *args, **kwargs)

    monkeypatch.setattr(SubscriptionService, "create_monitored_items", items)
    monkeypatch.setattr(SubscriptionService, "create_subscription", subscription)
    async with server:
        yield peer


def subscribe_driver(url: str, points: list[dict[str, Any]], **extra: Any) -> OpcuaSubscribeDriver:
    driver = create_driver(OpcuaDevice.model_validate({
        "name": "limited", "driver": "opcua", "url": url, "mode": "subscribe", "interval": "200ms",
        "point": points, **extra,
    }))
    assert isinstance(driver, OpcuaSubscribeDriver)
    return driver


async def test_monitored_items_are_created_within_the_servers_per_call_limit(limited: LimitedServer) -> None:
    """150 points on a server that takes at most 100 items per call: two requests, every point delivers."""
    points = [{"name": f"b{i}", "node": f"ns=2;s=Bench.{i}"} for i in range(ITEMS)]
    driver = subscribe_driver(limited.url, points)
    async with Collector(driver) as c:
        await c.wait_for(lambda: len({r.point for r in c.readings if r.quality == "good"}) == ITEMS, 10,
                         "a good value of every point")
    assert limited.item_calls == [LIMIT, ITEMS - LIMIT]
    assert driver.session.max_monitored_items_per_call == LIMIT
    assert not [r for r in c.readings if r.quality != "good"]
    assert driver.status.reconnects == 0


async def test_a_failure_after_connecting_backs_off_and_reports_once(
    limited: LimitedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The session opens but the server refuses the subscription: that is a failed attempt like a refused
    connection. The retries back off to reconnect_max, the points get one bad reading for the whole outage and
    one WARNING is logged; once the server accepts the subscription, values flow."""
    limited.refuse_subscriptions = True
    points = [{"name": "double", "node": "ns=2;s=Line1.Double"}, {"name": "counter", "node": "ns=2;i=1001"}]
    driver = subscribe_driver(limited.url, points, reconnect_max="1s")
    caplog.set_level(logging.DEBUG, logger="drivers.opcua")
    async with Collector(driver) as c:
        await c.wait_for(lambda: len(limited.subscription_calls) >= 5, 15, "five refused subscriptions")
        refused = list(limited.subscription_calls)
        bad = [(r.point, r.error) for r in c.readings]
        limited.refuse_subscriptions = False
        await c.wait_for(lambda: len(c.of("double")) >= 1 and len(c.of("counter")) >= 1, 10, "values again")
    gaps = [b - a for a, b in itertools.pairwise(refused)]
    assert 0.4 < gaps[0] < 0.9, gaps  # the first retry after 0.5 s ...
    assert all(g >= 0.95 for g in gaps[1:]), gaps  # ... then 1 s (reconnect_max), not 0.5 s forever
    error = ("BadTooManySubscriptions: The server has reached its maximum number of subscriptions."
             "(BadTooManySubscriptions)")
    assert bad == [("double", error), ("counter", error)], "one bad reading per point for the outage"
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name == "drivers.opcua.driver"]
    assert len(warnings) == 1 and "subscribing failed" in warnings[0], warnings
