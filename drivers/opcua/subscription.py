"""One OPC-UA subscription turned into batches of readings, with a liveness check and an in-place rebuild.

We talk to the session's raw services (CreateSubscription/CreateMonitoredItems with our own publish
callback) instead of asyncua's Subscription class: notifications become readings once per Publish response,
the callback's `await queue.put` is the backpressure, and asyncua's own stale-subscription recovery never
touches a subscription we own.
"""

from __future__ import annotations

import asyncio
import logging
import time

from asyncua import ua

from drivers.base import DeviceStatus
from drivers.opcua.config import OpcuaDevice, OpcuaPoint
from drivers.opcua.session import DeviceSession, SessionLost
from drivers.opcua.values import ReadingMaker, status_name
from edge.reading import Reading

log = logging.getLogger(__name__)

LIFETIME_KEEPALIVES = 6
"""Requested lifetime count = this × keep-alive count (the spec wants at least 3)."""
SILENT_MARGIN = 1.5
"""A subscription is silent after this × its keep-alive period (interval × keep-alive count) ..."""
SILENT_GRACE = 1.0
"""... plus this many seconds, without any Publish response (data or keep-alive)."""
QUEUE_BATCHES = 256
"""Publish responses buffered between asyncua's publish loop and the pipeline; beyond that we stop asking."""
ITEMS_PER_REQUEST = 500
"""Monitored items created per CreateMonitoredItems request, unless the server's MaxMonitoredItemsPerCall is lower
(a server refuses a whole request above its limit with BadTooManyOperations)."""
DELETE_TIMEOUT = 2.0
"""Deleting a silent subscription at most this long (best effort)."""


class SubscriptionFeed:
    """The device's subscription on the current session; `rebuild()` replaces it without a new session."""

    def __init__(
        self, device: OpcuaDevice, session: DeviceSession, maker: ReadingMaker, status: DeviceStatus
    ):
        self.device = device
        self.session = session
        self.maker = maker
        self.status = status
        self.queue: asyncio.Queue[list[Reading]] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        self.subscription_id: int | None = None
        self.keepalive_period = device.interval * device.keepalive_count
        self.last_publish = time.monotonic()
        self._by_handle: dict[int, OpcuaPoint] = {}
        self._rebuild_requested: str | None = None
        status.extra.setdefault("subscription_rebuilds", 0)

    async def start(self) -> list[Reading]:
        """Create the subscription and its monitored items; returns bad readings for refused items."""
        client = self.session.client
        if client is None:
            raise SessionLost("not connected")
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = self.device.interval * 1000
        params.RequestedMaxKeepAliveCount = self.device.keepalive_count
        params.RequestedLifetimeCount = self.device.keepalive_count * LIFETIME_KEEPALIVES
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0

        async def on_publish(result: ua.PublishResult) -> None:
            if result.SubscriptionId != self.subscription_id:
                return  # a replaced subscription still talking: ignore it
            await self._on_publish(result)

        response = await client.uaclient.create_subscription(params, on_publish)
        self.subscription_id = response.SubscriptionId  # set before the publish loop can run
        revised_interval = response.RevisedPublishingInterval / 1000 or self.device.interval
        self.keepalive_period = revised_interval * max(response.RevisedMaxKeepAliveCount, 1)
        self.last_publish = time.monotonic()
        self._rebuild_requested = None
        bad = await self._create_items(client.uaclient, response.SubscriptionId)
        self.status.extra["subscription_id"] = response.SubscriptionId
        self.status.extra["keepalive_period"] = self.keepalive_period
        return bad

    async def _create_items(self, uaclient: object, subscription_id: int) -> list[Reading]:
        points = [p for p in self.device.point if p.name in self.session.points.node_ids]
        self._by_handle = {i + 1: p for i, p in enumerate(points)}
        requests = [self._item_request(handle, p) for handle, p in self._by_handle.items()]
        bad: list[Reading] = []
        now = time.time()
        per_request = min(ITEMS_PER_REQUEST, self.session.max_monitored_items_per_call or ITEMS_PER_REQUEST)
        for start in range(0, len(requests), per_request):
            chunk = requests[start : start + per_request]
            params = ua.CreateMonitoredItemsParameters()
            params.SubscriptionId = subscription_id
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.ItemsToCreate = chunk
            results = await uaclient.create_monitored_items(params)  # type: ignore[attr-defined]
            for req, res in zip(chunk, results, strict=True):
                if not res.StatusCode.is_good():
                    p = self._by_handle[req.RequestedParameters.ClientHandle]
                    bad.append(
                        Reading.bad(self.device.name, p.name, status_name(res.StatusCode), now, p.unit)
                    )
        return bad

    def _item_request(self, handle: int, point: OpcuaPoint) -> ua.MonitoredItemCreateRequest:
        rv = ua.ReadValueId()
        rv.NodeId = self.session.points.node_ids[point.name]
        rv.AttributeId = ua.AttributeIds.Value
        mp = ua.MonitoringParameters()
        mp.ClientHandle = handle
        mp.SamplingInterval = point.sampling_interval * 1000 if point.sampling_interval is not None else -1.0
        mp.QueueSize = point.queue_size
        mp.DiscardOldest = True
        if point.deadband_type != "none":
            f = ua.DataChangeFilter()
            f.Trigger = ua.DataChangeTrigger.StatusValue
            f.DeadbandType = (
                ua.DeadbandType.Absolute if point.deadband_type == "absolute" else ua.DeadbandType.Percent
            )
            f.DeadbandValue = point.server_deadband
            mp.Filter = f
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = rv
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mp
        return req

    async def _on_publish(self, result: ua.PublishResult) -> None:
        self.last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        local = time.time()
        batch: list[Reading] = []
        reading = self.maker.reading
        by_handle = self._by_handle
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    point = by_handle.get(item.ClientHandle)
                    if point is not None:
                        batch.append(reading(point, item.Value, local))
            elif isinstance(notif, ua.StatusChangeNotification):
                name = status_name(notif.Status)
                # asyncua tells the subscriptions BadShutdown after a lost connection: the loss is logged already
                lost = self.session.lost.is_set()
                (log.debug if lost else log.warning)(
                    "opcua %s: subscription %s status %s", self.device.name, self.subscription_id, name
                )
                if not notif.Status.is_good():
                    self._rebuild_requested = name
        if batch:
            await self.queue.put(batch)

    async def next_batch(self, timeout: float, limit: int) -> list[Reading]:
        """The readings of the next Publish responses (up to about `limit`), or [] after `timeout`."""
        was_full = self.queue.full()
        try:
            async with asyncio.timeout(timeout):  # not wait_for(), which on 3.11 can swallow a cancellation
                batch = await self.queue.get()
        except TimeoutError:
            return []
        if was_full:  # the publish loop was blocked on us, not waiting on the server: restart the silence clock
            self.last_publish = time.monotonic()
        while len(batch) < limit and not self.queue.empty():
            batch.extend(self.queue.get_nowait())
        return batch

    def silent(self) -> bool:
        """No Publish response for longer than the keep-alive period allows, or the server said trouble."""
        if self._rebuild_requested is not None:
            return True
        if self.queue.full():
            return False  # the pipeline is the bottleneck (backpressure), not the server
        return time.monotonic() - self.last_publish > self.keepalive_period * SILENT_MARGIN + SILENT_GRACE

    async def rebuild(self) -> None:
        """Create a new subscription on the same session, then delete the silent one (best effort).

        Creating first keeps a subscription on the session at all times, so asyncua's publish loop (which
        stops on BadNoSubscription) keeps running.
        """
        reason = self._rebuild_requested or f"no publish for {time.monotonic() - self.last_publish:.1f}s"
        log.warning(
            "opcua %s: subscription %s is silent (%s); rebuilding",
            self.device.name,
            self.subscription_id,
            reason,
        )
        client = self.session.client
        if client is None:
            raise SessionLost("not connected")
        old = self.subscription_id
        self.status.extra["subscription_rebuilds"] = self.status.extra.get("subscription_rebuilds", 0) + 1
        bad = await self.start()
        if bad:
            await self.queue.put(bad)
        if old is not None:
            try:
                async with asyncio.timeout(DELETE_TIMEOUT):
                    await client.uaclient.delete_subscriptions([old])
            except Exception as e:
                log.debug("opcua %s: deleting subscription %s failed: %r", self.device.name, old, e)
        client.uaclient.ensure_publish_loop()
