"""Log lines of an MQTT link that flaps (real mosquitto behind tests/tcp_proxy.py): one failure streak for the
whole flapping, not a warning, a "works again" and a resend line per flap; the streak ends once a connection
has lasted MQTT_STABLE_CONNECTION."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sink_helpers import EDGE, SinkRunner, eventually, fill
from sink_peers import Broker, Subscriber
from tcp_proxy import BlackholeProxy

from edge.store import Store
from sync.mqtt import MqttSink
from sync.mqtt_config import MqttSinkConfig
from sync.registry import create_sink

FLAPS = 4


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge.sync" and r.levelno == level]


async def test_a_flapping_link_is_one_outage_in_the_log(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="edge.sync")
    proxy = await BlackholeProxy(broker.port).start()
    cfg = MqttSinkConfig(name="cloud", type="mqtt", url=f"mqtt://127.0.0.1:{proxy.port}",
                         reconnect_min="10ms", reconnect_max="20ms")
    sink = create_sink(cfg, edge_id=EDGE, store=store, data_dir=str(tmp_path))
    assert isinstance(sink, MqttSink)
    runner.start(sink)

    async def flap(n: int) -> list[int]:
        """A flap with a message in flight: it goes out again on the next connection."""
        proxy.cut()
        lost = await fill(store, 4, devices=("plc1",))  # published into the void: no PUBACK
        await eventually(lambda: sink.window is not None and sink.window.unacked >= 1)
        proxy.heal()  # the connection is closed; the next one works
        await eventually(lambda: sink.link is not None and sink.link.connected and sink.link.attempts >= n)
        return lost

    try:
        await eventually(lambda: sink.connected)
        caplog.clear()
        sent: list[int] = []
        for n in range(1, FLAPS + 1):  # each connection lasts far less than MQTT_STABLE_CONNECTION
            sent += await flap(n)
        [lost] = records(caplog, logging.WARNING)  # the first failure; the others at debug
        assert "connection lost" in lost
        [resent] = records(caplog, logging.INFO)  # after the first flap only
        assert "go out again after reconnecting" in resent
        assert sink.stats()["last_error"] is None  # connected: no current failure, though the streak goes on

        monkeypatch.setattr("sync.mqtt_link.MQTT_STABLE_CONNECTION", 0.0)  # the next connection lasts long enough
        sent += await flap(FLAPS + 1)
        await eventually(lambda: len(records(caplog, logging.WARNING)) == 2)
        assert not await asyncio.to_thread(subscriber.wait_for, set(sent), 10)  # nothing lost meanwhile
    finally:
        await proxy.stop()
    back = records(caplog, logging.WARNING)[1]
    assert f"works again after {FLAPS + 1} failures" in back, back
    assert len(records(caplog, logging.INFO)) == 1


async def test_two_links_with_one_client_id_back_off_instead_of_kicking_each_other_at_reconnect_min(
        store: Store, broker: Broker, runner: SinkRunner, tmp_path: Path) -> None:
    """A cloned appliance (same client id): the broker drops one connection for the other, again and again. The
    backoff used to start over at every CONNACK, so each reconnected every reconnect_min; it now grows until a
    connection lasts MQTT_STABLE_CONNECTION."""
    sinks = []
    for name in ("a", "b"):
        cfg = MqttSinkConfig(name=name, type="mqtt", url=f"mqtt://127.0.0.1:{broker.port}", client_id="twin",
                             reconnect_min="50ms", reconnect_max="1s")
        sink = create_sink(cfg, edge_id=EDGE, store=store, data_dir=str(tmp_path))
        assert isinstance(sink, MqttSink)
        runner.start(sink)
        sinks.append(sink)
    try:
        # The old code never got past 1: each connect reset it, each kick counted one.
        await eventually(lambda: any(s.link is not None and s.link.backoff.failures >= 4 for s in sinks), 30)
    finally:
        for sink in sinks:
            await runner.stop(sink)
