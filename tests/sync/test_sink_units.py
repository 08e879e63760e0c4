"""The sinks' pure parts: payload encoding, the ack window, pacing, config validation."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.reading import Reading
from sync.http_config import HttpSinkConfig
from sync.mqtt_config import MqttSinkConfig
from sync.pacing import Backoff, TokenBucket
from sync.payload import PayloadEncoder
from sync.window import AckWindow, OutMessage

NAMES = st.text("abcXYZ09._-", min_size=1, max_size=12)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
                   st.text(max_size=20), st.lists(st.floats(allow_nan=False), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def expected(edge: str, readings: list[Reading]) -> dict[str, object]:
    def finite(v: object) -> object:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    out = []
    for r in readings:
        d = r.to_dict()
        d["value"] = finite(d["value"])
        out.append(d)
    return {"edge": edge, "readings": out}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(
    Reading, device=NAMES, point=NAMES, value=VALUES,
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    quality=st.sampled_from(["good", "uncertain", "bad"]), error=st.one_of(st.none(), st.text(max_size=20)),
    unit=st.one_of(st.none(), st.sampled_from(["degC", "%", "µS/cm", 'quo"te'])), seq=st.integers(1, 2**53)),
    max_size=20))
def test_payload_is_the_contract_json_of_to_dict(readings: list[Reading]) -> None:
    enc = PayloadEncoder("site-ä")
    assert json.loads(enc.encode(readings)) == expected("site-ä", readings)
    assert json.loads(enc.encode(readings)) == expected("site-ä", readings)  # again, from the caches


def test_payload_bad_reading_has_null_value_and_error() -> None:
    r = Reading.bad("plc1", "temp", "timeout", ts=1_700_000_000.5)
    r.seq = 7
    [d] = json.loads(PayloadEncoder("e").encode([r]))["readings"]
    assert d == {"seq": 7, "device": "plc1", "point": "temp", "ts": "2023-11-14T22:13:20.500Z", "value": None,
                 "quality": "bad", "error": "timeout"}


def msg(first: int, last: int) -> OutMessage:
    return OutMessage(first, last, last - first + 1, b"", 0.0)


async def test_parts_of_a_split_message_never_cover_another_devices_unsent_readings() -> None:
    # chunk: plc1 has seqs 1, 3, 5, 7 (message a), plc2 has 2, 4, 6, 8 (message b); a is split in two
    w = AckWindow(limit=8, cursor=0)
    a, a1, a2 = msg(1, 7), msg(1, 3), msg(5, 7)
    a.count = 4
    a1.count = a2.count = 2
    w.add(a, 1)  # the whole of a covers up to 1 (b starts at 2)
    w.replace(a, [a1, a2])  # the broker wanted it smaller
    w.ack(a1)
    w.ack(a2)
    assert w.ackable() == 1  # not 4: plc2's seq 2 and 4 are in b, which is not even sent yet
    b = msg(2, 8)
    w.add(b, 8)
    assert w.ackable() == 1
    w.ack(b)
    assert w.ackable() == 8


async def test_a_split_message_sent_after_another_devices_message_does_not_pass_it() -> None:
    # plc1: 1, 3, ..., 39 (message a); plc2: 2, 4, ..., 40 (message b) is already out when a is split
    w = AckWindow(limit=8, cursor=0)
    a, b = msg(1, 39), msg(2, 40)
    w.add(a, 1)
    w.add(b, 40)
    a1, a2 = msg(1, 19), msg(21, 39)
    w.replace(a, [a1, a2])
    w.ack(a1)
    assert w.ackable() == 1, "plc2's 2..40 are unacked"
    w.ack(b)
    assert w.ackable() == 20
    w.ack(a2)
    assert w.ackable() == 40


async def test_window_cursor_stops_below_the_oldest_unacked_message() -> None:
    w = AckWindow(limit=3, cursor=10)
    a, b, c = msg(11, 15), msg(12, 18), msg(19, 20)  # a and b interleave (two devices)
    w.add(a, 11)
    w.add(b, 18)
    w.add(c, 20)
    assert w.free == 0 and w.ackable() == 10
    w.ack(b)
    w.ack(c)
    assert w.ackable() == 10  # a is still out
    w.ack(a)
    assert w.ackable() == 20
    w.skip_to(25)  # filtered readings after the last message
    assert w.ackable() == 25
    w.made_durable(25)
    assert len(w) == 0 and w.free == 3


async def test_window_never_covers_seqs_of_messages_not_added_yet() -> None:
    w = AckWindow(limit=4, cursor=0)
    a = msg(1, 99)  # device 1: odd seqs; device 2's message starts at 2 and is not added yet
    w.add(a, covered=1)
    w.ack(a)
    assert w.ackable() == 1
    w.made_durable(w.ackable())
    assert len(w) == 1  # a (up to 99) is not covered by the cursor yet: it still counts


async def test_window_keeps_acked_messages_until_the_cursor_covers_them() -> None:
    w = AckWindow(limit=2, cursor=0)
    a, b = msg(1, 5), msg(2, 6)
    w.add(a, 1)
    w.add(b, 6)
    w.ack(a)
    w.made_durable(w.ackable())  # cursor 1: a's seqs 3, 5 are not covered yet
    assert len(w) == 2
    w.ack(b)
    w.made_durable(w.ackable())
    assert len(w) == 0


async def test_window_room_for_a_whole_read() -> None:
    w = AckWindow(limit=2, cursor=0)
    w.add(msg(1, 3), 3)
    waiter = asyncio.ensure_future(w.wait_room(2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    w.ack(w.messages[0])
    w.made_durable(w.ackable())
    await asyncio.wait_for(waiter, 1)


def test_backoff_doubles_with_jitter_and_resets() -> None:
    b = Backoff(0.2, 2.0, jitter=0.5)
    delays = [b.next() for _ in range(6)]
    for d, base in zip(delays, [0.2, 0.4, 0.8, 1.6, 2.0, 2.0], strict=True):
        assert base / 2 <= d <= base
    b.reset()
    assert b.next() <= 0.2


def test_token_bucket_allows_one_second_burst_then_the_rate() -> None:
    bucket = TokenBucket(100)
    assert bucket.delay(100) == 0
    assert bucket.delay(50) == 0  # the bucket may go into debt by one message
    wait = bucket.delay(1)
    assert 0.3 < wait <= 0.5  # 50 in debt at 100/s, less what refilled since


@pytest.mark.parametrize(("keys", "message"), [
    ({"qos": 0}, "at least once"),
    ({"qos": 2}, "QoS 2"),
    ({"url": "http://h"}, "mqtt://"),
    ({"url": "mqtt://h:99999"}, "port"),
    ({"topic": "a/{site}"}, "{site}"),
    ({"topic": "a/#"}, "wildcards"),
    ({"password": "x"}, "username"),
    ({"ca_file": "/ca.pem"}, "mqtts://"),
    ({"key_file": "/k.pem", "url": "mqtts://h"}, "cert_file"),
    ({"protocol": "4"}, "protocol"),
    ({"inflight": 0}, "inflight"),
])
def test_mqtt_config_refuses(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        MqttSinkConfig(**{"name": "c", "type": "mqtt", "url": "mqtt://h", **keys})


def test_mqtt_config_defaults() -> None:
    c = MqttSinkConfig(name="c", type="mqtt", url="mqtts://broker.example")
    assert (c.host, c.port, c.tls, c.qos, c.protocol, c.per_device) == ("broker.example", 8883, True, 1, "5", False)
    assert MqttSinkConfig(name="c", type="mqtt", url="mqtt://h", topic="x/{edge}/{device}").per_device


@pytest.mark.parametrize(("keys", "message"), [
    ({"url": "ftp://h"}, "http://"),
    ({"token": "t", "username": "u"}, "either token"),
    ({"retry_min": "10s", "retry_max": "1s"}, "retry_max"),
    ({"cert_file": "/c.pem"}, "https://"),
])
def test_http_config_refuses(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpSinkConfig(**{"name": "c", "type": "http", "url": "http://h/in", **keys})


async def test_wait_done_cancelled_cancels_what_it_waits_for() -> None:
    """As its docstring says: close()'s final cursor write must not outlive a close() that was cut short."""
    from sync.waiting import wait_done

    work = asyncio.ensure_future(asyncio.sleep(60))
    waiting = asyncio.ensure_future(wait_done(work, 30))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(work, 1)


@pytest.mark.parametrize(("model", "url"), [(MqttSinkConfig, "mqtts://edge:s3cret@broker:8883"),
                                            (HttpSinkConfig, "https://edge:s3cret@erp.example/in")])
def test_credentials_in_the_url_are_refused_without_echoing_them(model: type, url: str) -> None:
    """They would be logged and shown in /v1/stats with every connection error; the keys are not."""
    with pytest.raises(ValidationError, match="username and password") as refused:
        model(name="c", type=model.model_fields["type"].annotation.__args__[0], url=url)
    assert all("s3cret" not in e["msg"] for e in refused.value.errors())  # what `edge check` prints


@pytest.mark.parametrize(("model", "keys", "message"), [
    (MqttSinkConfig, {"url": "mqtt://h", "password": "p"}, "password: expected together with username"),
    (HttpSinkConfig, {"url": "http://h/x", "password": "p"}, "password: expected together with username"),
    (MqttSinkConfig, {"url": "mqtt://h", "ca_file": "/ca.pem"}, "need an mqtts:// url"),
    (HttpSinkConfig, {"url": "http://h/x", "insecure_skip_verify": True}, "need an https:// url"),
])
def test_login_and_tls_keys_are_checked_alike_by_both_sinks(model: Any, keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model(name="s", type="mqtt" if model is MqttSinkConfig else "http", **keys)
    model(name="s", type="mqtt" if model is MqttSinkConfig else "http",
          **{**keys, "username": "u"} if "password" in keys else {**keys, "url": keys["url"].replace("://", "s://", 1)})


async def test_acks_are_forgotten_after_the_rate_window_even_when_nobody_asks_for_stats(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ack was kept until stats() ran: with no scraper and no TUI, a sink grew ~120 B per message for good."""
    import types

    import sync.delivery as delivery
    from edge.store import Store, StoreOptions
    from sync.http import HttpSink

    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(delivery, "time", types.SimpleNamespace(monotonic=lambda: clock.now, time=lambda: clock.now))
    store = Store.open(tmp_path, StoreOptions())
    try:
        sink = HttpSink(HttpSinkConfig(name="erp", type="http", url="http://127.0.0.1:9/x"), edge_id="e",
                        store=store, data_dir=str(tmp_path))
        window = AckWindow(limit=100_000, cursor=0)
        for seq in range(1, 20_001):  # 20,000 messages over 2,000 s, nobody reading stats
            m = msg(seq, seq)
            window.add(m, seq)
            sink.acked(window, m)
            clock.now += 0.1
        assert len(sink._acks) <= 101  # the last 10 s
        assert sink.stats()["send_rate"] == pytest.approx(10.0, rel=0.02)
    finally:
        await store.aclose()
