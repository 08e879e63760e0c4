"""One paho-mqtt client kept connected: connect with backoff and jitter, PUBACKs handed to asyncio.

paho's network loop runs in its own thread only while a connection is up (`loop_start`); every callback
goes back to the event loop with `call_soon_threadsafe`. What a lost connection left unacked is not resent
by paho: the sink republishes it itself, in seq order, before anything newer (see `_on_connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sync.defaults import (
    MQTT_CONNECT_TIMEOUT,
    MQTT_STABLE_CONNECTION,
    MQTT_STATUS_OFFLINE,
    MQTT_STATUS_ONLINE,
    MQTT_STATUS_WAIT,
)
from sync.mqtt_config import MqttSinkConfig
from sync.outage import OutageLog, describe_error
from sync.pacing import Backoff
from sync.tls import ssl_context
from sync.waiting import wait_done, wait_event

log = logging.getLogger("edge.sync")

AckHandler = Callable[[int, int, str], None]  # (mid, reason code value, reason text), on the event loop


class ConnectFailed(Exception):
    """A connection attempt failed; the message says why in a user's words."""


class MqttLink:
    """The connection of one MQTT sink. `maintain()` runs until cancelled; `publish()` while `connected`."""

    def __init__(self, config: MqttSinkConfig, *, edge_id: str, outage: OutageLog, on_ack: AckHandler,
                 on_state: Callable[[bool], None]) -> None:
        self.config = config
        self.outage = outage
        self.on_ack = on_ack
        self.on_state = on_state
        self.connected = False
        self.attempts = 0  # failed connects and lost connections
        self.receive_maximum = 65535  # what the broker accepts in flight (MQTT 5 CONNACK)
        self.max_packet: int | None = None  # the largest packet the broker accepts (MQTT 5 CONNACK), if it says
        self.status_topic = config.status_topic.replace("{edge}", edge_id) if config.status_topic else ""
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[None] | None = None
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._up = asyncio.Event()
        self._stopping = False
        v5 = config.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"edge-{edge_id}-{config.name}",
            clean_session=None if v5 else True,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        c = self.client
        c.connect_timeout = MQTT_CONNECT_TIMEOUT
        c.max_inflight_messages_set(0)  # no limit in paho: the sink's window is the one bound on what is in flight
        c.max_queued_messages_set(0)
        if config.username is not None:
            c.username_pw_set(config.username, config.password)
        if config.tls:
            c.tls_set_context(ssl_context(config, config.name))
            if config.insecure_skip_verify:
                c.tls_insecure_set(True)
        if self.status_topic:
            c.will_set(self.status_topic, MQTT_STATUS_OFFLINE, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.backoff = Backoff(config.reconnect_min, config.reconnect_max)

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # -- paho thread → event loop ---------------------------------------------------------------------

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        max_packet = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        if not reason.is_failure:
            # Right after this callback paho would resend what the last connection left unacked, on this
            # thread, while the event loop may already publish newer messages: a newer batch could overtake
            # an older one. Drop paho's copies; the sink republishes its unacked messages first, in order.
            client.drop_out_messages()
        self._post(self._connack_received, not reason.is_failure, str(reason), receive_max, max_packet)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Properties | None) -> None:
        self._post(self._connection_lost, str(reason))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        self._post(self.on_ack, mid, reason.value, str(reason))

    # -- event loop side ------------------------------------------------------------------------------

    def _connack_received(self, ok: bool, reason: str, receive_max: int | None, max_packet: int | None) -> None:
        # per connection: a different broker may answer behind the same URL
        self.receive_maximum = int(receive_max) if receive_max else 65535
        self.max_packet = int(max_packet) if max_packet else None
        fut = self._connack
        if fut is not None and not fut.done():
            if ok:
                fut.set_result(None)
            else:
                fut.set_exception(ConnectFailed(f"broker refused the connection: {reason}"))

    def _connection_lost(self, reason: str) -> None:
        fut = self._connack
        if fut is not None and not fut.done():
            hint = ""
            if self.config.tls:
                hint = (" (over TLS this is usually the broker refusing the client certificate, or wanting one: "
                        "check cert_file/key_file)")
            fut.set_exception(ConnectFailed(f"the broker closed the connection before CONNACK: {reason}{hint}"))
        self._lost_reason = reason
        self._lost.set()

    @property
    def data_room(self) -> int:
        """How many data messages may be unacknowledged at once: the broker's receive maximum, less one kept
        for the status message (a broker that enforces the maximum disconnects a client that exceeds it)."""
        return max(1, self.receive_maximum - (1 if self.status_topic else 0))

    def max_payload(self, topic: str) -> int | None:
        """The largest payload a PUBLISH to topic may carry on this connection (None: no limit announced)."""
        if self.max_packet is None:
            return None
        # fixed header (up to 5 bytes), topic (2 + its bytes), packet id (2), MQTT 5 properties length (1)
        return self.max_packet - 10 - len(topic.encode())

    async def wait_connected(self) -> None:
        await self._up.wait()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Queue a QoS 1 publish; its mid (the PUBACK comes to on_ack)."""
        return self.client.publish(topic, payload, qos=1, retain=retain).mid

    async def maintain(self) -> None:
        """Stay connected: reconnect after every failure or loss, with backoff and jitter.

        A failure streak (logged as a warning at its first failure, at debug after) ends, and the backoff starts
        over, only when a connection has lasted MQTT_STABLE_CONNECTION: a link that drops every few seconds stays
        one outage in the log instead of a warning and a "works again" line per flap."""
        url = self.config.url
        try:
            while not self._stopping:
                try:
                    await self._connect_once()
                except ConnectFailed as e:
                    self.attempts += 1
                    self.outage.failed(f"connect to {url}", str(e))
                    await asyncio.sleep(self.backoff.next())
                    continue
                up_at = time.monotonic()
                in_streak = self.outage.failures > 0
                if in_streak:
                    self.outage.resumed()
                else:
                    log.info("sink %s: connected to %s", self.config.name, url)
                self.connected = True
                self.on_state(True)  # first: the sink republishes what is unacked before anything new goes out
                self._up.set()
                if self.status_topic:
                    self.publish(self.status_topic, MQTT_STATUS_ONLINE.encode(), retain=True)
                if not await wait_event(self._lost, MQTT_STABLE_CONNECTION):  # still up: the connection holds
                    # Only now, not at the CONNACK: a broker that takes the connection and drops it at once
                    # (another client with our client id, a quota) must meet a growing delay, not reconnect_min.
                    self.backoff.reset()
                    if in_streak:
                        self.outage.recovered(f"connection to {url}", at=up_at)  # the streak is over
                await self._lost.wait()
                self.connected = False
                self._up.clear()
                self.on_state(False)
                self.attempts += 1
                self.outage.failed(f"connection to {url}", f"connection lost ({self._lost_reason})")
                await self._loop.run_in_executor(None, self.client.loop_stop)
                await asyncio.sleep(self.backoff.next())
        finally:
            self.connected = False
            self._up.clear()

    async def _connect_once(self) -> None:
        self._lost = asyncio.Event()
        self._connack = self._loop.create_future()
        c = self.config
        try:
            await self._in_daemon_thread(self._connect_blocking)
        except (OSError, ValueError) as e:
            raise ConnectFailed(describe_error(e)) from e
        if not await wait_done(self._connack, MQTT_CONNECT_TIMEOUT):
            await self._loop.run_in_executor(None, self._drop)
            raise ConnectFailed(f"no CONNACK from {self.where} within {MQTT_CONNECT_TIMEOUT} s")
        if self._connack.exception() is not None:
            await self._loop.run_in_executor(None, self._drop)
            raise self._connack.exception()  # type: ignore[misc]
        if c.tls and c.insecure_skip_verify:
            log.warning("sink %s: connected to %s WITHOUT verifying its certificate", c.name, c.url)

    async def _in_daemon_thread(self, blocking: Callable[[], None]) -> None:
        """Run a blocking call in a thread of its own that does not hold up the process's exit.

        A connect to a peer that never answers blocks for up to MQTT_CONNECT_TIMEOUT; in the loop's
        executor that thread is joined when asyncio.run() ends, which kept a stopped daemon alive past
        its 5 s. Cancelling the caller leaves the call to finish on its own (close() makes it let go).
        """
        done: asyncio.Future[None] = self._loop.create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def target() -> None:
            try:
                blocking()
            except BaseException as e:  # handed to the awaiting task
                self._post(settle, e)
            else:
                self._post(settle, None)

        threading.Thread(target=target, name=f"edge-mqtt-connect-{self.config.name}", daemon=True).start()
        await done

    def _connect_blocking(self) -> None:
        """TCP (+TLS) connect and CONNECT sent; then the network thread reads the CONNACK."""
        c = self.config
        self.client.connect(c.host, c.port, keepalive=int(c.keepalive), clean_start=True
                            if c.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY)
        if self._stopping:  # close() ran while this thread waited for a slow peer
            self.client.disconnect()
            raise ConnectionAbortedError("the sink is stopping")
        self.client.loop_start()

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    async def close(self, status: bool = True) -> None:
        """Publish the retained "offline" status (when connected), disconnect and stop the network thread."""
        if self._stopping:
            return
        self._stopping = True
        if self.connected and status and self.status_topic:
            info = self.client.publish(self.status_topic, MQTT_STATUS_OFFLINE, qos=1, retain=True)
            with contextlib.suppress(Exception):
                await self._loop.run_in_executor(None, info.wait_for_publish, MQTT_STATUS_WAIT)
        await self._loop.run_in_executor(None, self._drop)
        self.connected = False
