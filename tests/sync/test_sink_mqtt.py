"""The MQTT sink against a real mosquitto: payload, topics, window, cursor, status, filters, limits."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from sink_helpers import EDGE, SinkRunner, eventually, fill
from sink_peers import Broker, Subscriber, check_order
from tcp_proxy import BlackholeProxy

from edge.reading import Reading
from edge.store import DeadLetter, Store
from sync.mqtt import MqttSink
from sync.mqtt_config import MqttSinkConfig
from sync.mqtt_link import MqttLink
from sync.pacing import Backoff
from sync.registry import create_sink


def mqtt_sink(store: Store, tmp_path: Path, port: int, **keys: Any) -> MqttSink:
    cfg = MqttSinkConfig(name=keys.pop("name", "cloud"), type="mqtt", url=f"mqtt://127.0.0.1:{port}", **keys)
    sink = create_sink(cfg, edge_id=EDGE, store=store, data_dir=str(tmp_path))
    assert isinstance(sink, MqttSink)
    return sink


async def replay_once_allowed(sink: MqttSink, dead_letter: DeadLetter, timeout: float = 10.0) -> None:
    """Replay until the broker has re-read its ACL (SIGHUP takes effect whenever mosquitto gets to it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await sink.replay(dead_letter)
            return
        except RuntimeError:  # refused again: the dead letter stays; try once more
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_backlog_arrives_in_order_with_the_contract_payload(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 2000)
    sink = mqtt_sink(store, tmp_path, broker.port, batch_max=100)
    runner.start(sink)
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 10)
    topic, first = subscriber.messages[0]
    assert topic == f"edge/{EDGE}/readings"
    assert first["edge"] == EDGE
    assert first["readings"][0] == {"seq": seqs[0], "device": "plc1", "point": "temperature",
                                     "ts": first["readings"][0]["ts"], "value": 0.0, "unit": "degC",
                                     "quality": "good"}
    assert all(len(m["readings"]) <= 100 for _, m in subscriber.messages)
    assert subscriber.seqs() == seqs  # one connection, no outage: exactly once, in order
    await eventually(lambda: store.cursor_sync("cloud") == seqs[-1])
    stats = sink.stats()
    assert stats["connected"] is True and stats["sent"] == 2000 and stats["backlog_readings"] == 0
    assert stats["last_ack"] is not None and stats["send_rate"] > 0
    assert subscriber.status[f"edge/{EDGE}/status"] == b"online"


@pytest.mark.parametrize("inflight", [1, 32])
async def test_per_device_topics_hold_one_device_each(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        inflight: int) -> None:
    seqs = await fill(store, 900, devices=("plc1", "plc2", "plc3"))
    sink = mqtt_sink(store, tmp_path, broker.port, topic="plant/{edge}/{device}", batch_max=50,
                     protocol="3.1.1", inflight=inflight)
    runner.start(sink)
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 10)
    for topic, message in subscriber.messages:
        devices = {r["device"] for r in message["readings"]}
        assert devices == {topic.rsplit("/", 1)[1]} and topic.startswith(f"plant/{EDGE}/")
        assert len(message["readings"]) <= 50
    assert not check_order(subscriber.readings())
    await eventually(lambda: store.cursor_sync("cloud") == seqs[-1])


async def test_live_readings_flow_and_cursor_follows(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    sink = mqtt_sink(store, tmp_path, broker.port)
    runner.start(sink)
    await eventually(lambda: sink.connected)
    sent: list[int] = []
    for _ in range(10):
        sent += await fill(store, 7)
        await asyncio.sleep(0.02)
    assert not await asyncio.to_thread(subscriber.wait_for, set(sent), 5)
    await eventually(lambda: store.cursor_sync("cloud") == sent[-1])


async def test_filter_skips_but_cursor_moves_past(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 400, devices=("plc1", "plc2"))
    runner.start(mqtt_sink(store, tmp_path, broker.port, filter=["plc2/*"]))
    wanted = seqs[1::2]
    assert not await asyncio.to_thread(subscriber.wait_for, set(wanted), 10)
    await eventually(lambda: store.cursor_sync("cloud") == seqs[-1])
    assert set(subscriber.seqs()) == set(wanted)


async def test_max_age_expires_old_readings(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    old = await fill(store, 300, ts=time.time() - 3600)
    new = await fill(store, 200)
    sink = mqtt_sink(store, tmp_path, broker.port, max_age="10m")
    runner.start(sink)
    assert not await asyncio.to_thread(subscriber.wait_for, set(new), 10)
    await eventually(lambda: store.cursor_sync("cloud") == new[-1])
    assert not set(subscriber.seqs()) & set(old)
    await eventually(lambda: sink.stats()["expired"] == 300)  # counted once the cursor passed them, just after
    await eventually(lambda: store.stats_sync()["counters"].get("sink.cloud.expired") == 300)


async def test_max_rate_paces_sending(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 600)
    runner.start(mqtt_sink(store, tmp_path, broker.port, max_rate=400, batch_max=50))
    t0 = time.monotonic()
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 10)
    took = time.monotonic() - t0
    # 400 readings pass at once (one second's burst), the other 200 at 400/s
    assert 0.35 < took < 4, took


async def test_max_bytes_per_s_paces_sending(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 300)
    runner.start(mqtt_sink(store, tmp_path, broker.port, max_bytes_per_s="20kB", batch_max=50))
    t0 = time.monotonic()
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 15)
    took = time.monotonic() - t0  # ~300 × 120 B = 36 kB: one burst of 20 kB, then 20 kB/s
    assert 0.5 < took < 6, took


async def test_resumes_after_restart_from_its_cursor(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    first = await fill(store, 100)
    sink = mqtt_sink(store, tmp_path, broker.port)
    runner.start(sink)
    assert not await asyncio.to_thread(subscriber.wait_for, set(first), 5)
    await eventually(lambda: store.cursor_sync("cloud") == first[-1])
    await runner.stop(sink)
    # The broker has "offline" (close() waited for its PUBACK); the subscriber gets it a moment later.
    await eventually(lambda: subscriber.status.get(f"edge/{EDGE}/status") == b"offline")
    second = await fill(store, 100)
    runner.start(mqtt_sink(store, tmp_path, broker.port))
    assert not await asyncio.to_thread(subscriber.wait_for, set(second), 5)
    assert subscriber.seqs() == first + second


async def test_a_newer_message_never_overtakes_an_unacked_one_after_reconnect(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Message A is lost with its connection; B is ready when the next CONNACK comes. paho's network thread is
    held up right after the CONNACK (as a busy machine may do): B must still not reach the broker before A."""
    original = MqttLink._on_connect

    def slow_on_connect(self: MqttLink, *args: Any) -> None:
        original(self, *args)
        time.sleep(0.3)  # on paho's thread: the event loop runs meanwhile

    monkeypatch.setattr(MqttLink, "_on_connect", slow_on_connect)
    first = await fill(store, 4, devices=("plc1",))
    proxy = await BlackholeProxy(broker.port).start()
    sink = mqtt_sink(store, tmp_path, proxy.port, reconnect_min="10ms", reconnect_max="20ms")
    runner.start(sink)
    try:
        assert not await asyncio.to_thread(subscriber.wait_for, set(first), 5)
        proxy.cut()
        a = await fill(store, 4, devices=("plc1",))  # sent into the void: no PUBACK
        await eventually(lambda: sink.window is not None and sink.window.unacked == 1)
        proxy.heal()  # the connection is closed; the next one works
        b = await fill(store, 4, devices=("plc1",))  # ready before the sink is connected again
        assert not await asyncio.to_thread(subscriber.wait_for, set(a + b), 10)
    finally:
        await proxy.stop()
    got = subscriber.seqs()
    assert got.index(a[0]) < got.index(b[0]), got
    assert not check_order(subscriber.readings())


@pytest.mark.slow
async def test_a_link_that_goes_dark_is_detected_by_keepalive_and_nothing_is_lost(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    """A cellular link that stops passing bytes without any reset: the connection looks open, publishes
    vanish. The keepalive finds it dead, the sink reconnects once bytes flow again, and delivers everything."""
    first = await fill(store, 100)
    proxy = await BlackholeProxy(broker.port).start()
    sink = mqtt_sink(store, tmp_path, proxy.port, keepalive="5s", reconnect_min="50ms", reconnect_max="200ms")
    runner.start(sink)
    try:
        assert not await asyncio.to_thread(subscriber.wait_for, set(first), 5)
        proxy.cut()
        dark = await fill(store, 300)  # published into the void: no PUBACK comes back
        await eventually(lambda: not sink.stats()["connected"], timeout=20)  # within ~2 keepalives
        assert "connection lost" in sink.stats()["last_error"]
        assert store.cursor_sync("cloud") < dark[0]
        proxy.heal()
        assert not await asyncio.to_thread(subscriber.wait_for, set(dark), 15)
    finally:
        await proxy.stop()
    assert not check_order(subscriber.readings())
    await eventually(lambda: store.cursor_sync("cloud") == dark[-1])


async def test_never_more_in_flight_than_the_brokers_receive_maximum(
        store: Store, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker's CONNACK says how many QoS 1 messages it takes unacknowledged (brokers such as EMQX or AWS IoT
    disconnect a client that sends more). Counted on the wire side of paho, status messages included, also
    while a full window goes out again after a reconnect."""
    strict = Broker(tmp_path / "strict", extra=["max_inflight_messages 3"]).start()  # its Receive Maximum
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    publish, on_publish, on_connect = MqttLink.publish, MqttLink._on_publish, MqttLink._on_connect

    def counted_publish(self: MqttLink, *args: Any, **kw: Any) -> int:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        return publish(self, *args, **kw)

    def counted_ack(self: MqttLink, *args: Any) -> None:
        with lock:
            state["now"] -= 1
        on_publish(self, *args)

    def counted_connect(self: MqttLink, *args: Any) -> None:
        with lock:
            state["now"] = 0  # a new connection: nothing of it is in flight yet
        on_connect(self, *args)

    monkeypatch.setattr(MqttLink, "publish", counted_publish)
    monkeypatch.setattr(MqttLink, "_on_publish", counted_ack)
    monkeypatch.setattr(MqttLink, "_on_connect", counted_connect)
    sub = Subscriber(strict.port)
    proxy = await BlackholeProxy(strict.port).start()
    try:
        sink = mqtt_sink(store, tmp_path, proxy.port, batch_max=5, inflight=8, reconnect_min="10ms",
                         reconnect_max="20ms")
        first = await fill(store, 100)
        runner.start(sink)
        assert not await asyncio.to_thread(sub.wait_for, set(first), 10)
        assert sink.link is not None and sink.link.receive_maximum == 3
        proxy.cut()
        dark = await fill(store, 100)
        await eventually(lambda: len(sink._by_mid) == 2)  # the most data it may have out: 3, less 1 for status
        proxy.heal()
        assert not await asyncio.to_thread(sub.wait_for, set(dark), 10)
        assert not check_order(sub.readings())
    finally:
        await proxy.stop()
        sub.close()
        strict.stop()
    assert state["most"] <= 3, state


async def test_messages_over_the_brokers_maximum_packet_size_are_split_and_an_oversized_reading_dead_lettered(
        store: Store, runner: SinkRunner, tmp_path: Path) -> None:
    """A broker that announces a Maximum Packet Size drops a client that sends more (and it would send the same
    message again after reconnecting, forever): the sink splits batches to fit instead."""
    small = Broker(tmp_path / "small", extra=["max_packet_size 2000"]).start()
    sub = Subscriber(small.port)
    try:
        seqs = await fill(store, 95)
        oversized = Reading("plc1", "log", "x" * 5000, time.time())
        await store.append([oversized])
        seqs += await fill(store, 20)
        sink = mqtt_sink(store, tmp_path, small.port, batch_max=100)
        runner.start(sink)
        await eventually(lambda: store.cursor_sync("cloud") == seqs[-1])
        assert not await asyncio.to_thread(sub.wait_for, set(seqs), 5)
        assert sub.seqs() == seqs  # once each, in order: the connection was never dropped
        assert sink.stats()["retries"] == 0
        assert all(len(json.dumps(m)) < 2000 for _, m in sub.messages)
        [dl] = store.dead_letters_sync(sink="cloud")
        assert (dl.first_seq, dl.count) == (oversized.seq, 1) and "2000 bytes" in dl.error
    finally:
        sub.close()
        small.stop()


async def test_a_window_resent_to_a_broker_with_a_smaller_packet_limit_is_split(
        store: Store, runner: SinkRunner, tmp_path: Path) -> None:
    """Unacked 100-reading messages wait for a reconnect; the broker behind the URL is now one that takes at most
    2,000-byte packets: they go out again split, in order, none dead-lettered."""
    first = Broker(tmp_path / "first").start()
    proxy = await BlackholeProxy(first.port).start()
    second = sub = None
    try:
        sink = mqtt_sink(store, tmp_path, proxy.port, batch_max=100, reconnect_min="10ms", reconnect_max="50ms")
        runner.start(sink)
        await eventually(lambda: sink.connected)
        proxy.cut()
        seqs = await fill(store, 300)
        await eventually(lambda: sink.window is not None and sink.window.unacked == 3)  # sent into the void
        first.stop()
        second = Broker(tmp_path / "second", port=first.port, extra=["max_packet_size 2000"]).start()
        sub = Subscriber(second.port)
        proxy.heal()
        assert not await asyncio.to_thread(sub.wait_for, set(seqs), 10)
        assert sub.seqs() == seqs
        assert not store.dead_letters_sync(sink="cloud")
    finally:
        await proxy.stop()
        if sub is not None:
            sub.close()
        for b in (first, second):
            if b is not None:
                b.stop()


FLAPS = 25
FLAP_BATCH = 20
FLAP_INFLIGHT = 8


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_link_flaps_while_draining_keep_order_and_lose_nothing(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        protocol: str) -> None:
    """Every connection is reset mid-stream, again and again, with messages in flight: after each reconnect
    the unacked messages go out again before any newer one (a newer batch must never overtake them)."""
    seqs = await fill(store, 40_000)
    proxy = await BlackholeProxy(broker.port).start()
    sink = mqtt_sink(store, tmp_path, proxy.port, topic="edge/{edge}/{device}", batch_max=FLAP_BATCH,
                     inflight=FLAP_INFLIGHT, reconnect_min="10ms", reconnect_max="50ms", protocol=protocol)
    runner.start(sink)
    rng = random.Random(7)
    try:
        for _ in range(FLAPS):
            target = len(subscriber.seqs()) + rng.randint(50, 400)
            await eventually(lambda t=target: sink.connected and len(subscriber.seqs()) > t)
            proxy.reset()
        missing = await asyncio.to_thread(subscriber.wait_for, set(seqs), 120)  # ~16 s on a loaded 2-core box
    finally:
        await proxy.stop()
    assert not missing, f"{len(missing)} readings missing"
    got = subscriber.readings()
    assert not check_order(got)
    duplicates = len(got) - len(seqs)
    assert duplicates <= FLAPS * FLAP_INFLIGHT * FLAP_BATCH, duplicates
    assert sink.stats()["retries"] >= FLAPS


async def test_username_password_reach_the_broker(store: Store, tmp_path: Path, runner: SinkRunner) -> None:
    pw = tmp_path / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "edge", "s3cret"], check=True)
    b = Broker(tmp_path / "auth", extra=["allow_anonymous false", f"password_file {pw}"]).start()
    try:
        bad = mqtt_sink(store, tmp_path, b.port, name="bad", username="edge", password="wrong")
        runner.start(bad)
        await eventually(lambda: bad.stats()["last_error"], timeout=5)
        assert "refused" in bad.stats()["last_error"] and not bad.connected
        good = mqtt_sink(store, tmp_path, b.port, name="good", username="edge", password="s3cret")
        runner.start(good)
        await eventually(lambda: good.connected, timeout=5)
    finally:
        await runner.stop(bad)
        b.stop()


async def test_refused_publish_is_dead_lettered_and_replay_delivers(
        store: Store, tmp_path: Path, runner: SinkRunner) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite edge/{EDGE}/status\ntopic readwrite edge/{EDGE}/plc1\ntopic read #\n")
    b = Broker(tmp_path / "acl-broker", extra=[f"acl_file {acl}"]).start()
    sub = Subscriber(b.port)
    try:
        seqs = await fill(store, 200, devices=("plc1", "plc2"))
        sink = mqtt_sink(store, tmp_path, b.port, topic="edge/{edge}/{device}", batch_max=50)  # MQTT 5
        runner.start(sink)
        await eventually(lambda: store.cursor_sync("cloud") == seqs[-1])  # moved on past the refusals
        plc1, plc2 = seqs[0::2], seqs[1::2]
        assert not await asyncio.to_thread(sub.wait_for, set(plc1), 5)
        dead = store.dead_letters_sync(sink="cloud")
        assert len(dead) == 2 and all("Not authorized" in d.error for d in dead)
        assert sorted(r["seq"] for d in dead for r in json.loads(d.payload)["readings"]) == plc2
        assert sink.stats()["dead_letters"] == 2

        acl.write_text(f"topic readwrite edge/{EDGE}/#\ntopic read #\n")
        b.reload()
        for d in dead:
            await replay_once_allowed(sink, d)
        assert not await asyncio.to_thread(sub.wait_for, set(seqs), 5)
        assert sink.stats()["dead_letters"] == len(dead)  # the API's replay deletes the rows, once, after this
        for d in dead:
            assert await store.delete_dead_letter(d.id)
        assert sink.stats()["dead_letters"] == 0
    finally:
        await runner.stop(sink)
        sub.close()
        b.stop()


async def test_quota_exceeded_is_retried_after_a_pause_never_dead_lettered(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Brokers that throttle (AWS IoT Core, EMQX) answer PUBACK 0x97 "Quota exceeded", typically while a backlog
    drains after an outage. mosquitto never does, so the reason code of three PUBACKs is rewritten where paho
    hands it over (the messages did reach the broker: the subscriber sees them twice)."""
    sinks: list[MqttSink] = []
    rewritten: list[int] = []
    on_publish = MqttLink._on_publish

    def throttling(self: MqttLink, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if len(rewritten) < 3 and sinks and mid in sinks[0]._by_mid:
            rewritten.append(mid)
            reason = ReasonCode(PacketTypes.PUBACK, "Quota exceeded")
        on_publish(self, client, userdata, mid, reason, props)

    monkeypatch.setattr(MqttLink, "_on_publish", throttling)
    seqs = await fill(store, 1000)
    sink = mqtt_sink(store, tmp_path, broker.port, batch_max=50)
    sink._throttle = Backoff(0.05, 0.2)  # the shipped pause starts at 1 s
    sinks.append(sink)
    runner.start(sink)
    await eventually(lambda: store.cursor_sync("cloud") == seqs[-1])
    assert len(rewritten) == 3
    assert not store.dead_letters_sync(sink="cloud")
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 5)
    assert sink.stats()["retries"] >= 3 and sink.stats()["dead_letters"] == 0


def test_qos0_is_refused() -> None:
    with pytest.raises(ValueError, match="at least once"):
        MqttSinkConfig(name="c", type="mqtt", url="mqtt://h", qos=0)
