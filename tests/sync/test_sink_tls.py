"""TLS for both sinks: a wrong CA fails clearly and acks nothing; a CA file and client certificates work."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from sink_helpers import EDGE, SinkRunner, eventually, fill
from sink_peers import Broker, Pki, Receiver, Subscriber

from edge.store import Store
from sync.http_config import HttpSinkConfig
from sync.mqtt_config import MqttSinkConfig
from sync.registry import create_sink


def sink(store: Store, tmp_path: Path, **keys: Any) -> Any:
    model = MqttSinkConfig if keys["type"] == "mqtt" else HttpSinkConfig
    return create_sink(model(name="s", **keys), edge_id=EDGE, store=store, data_dir=str(tmp_path))


async def test_mqtt_wrong_ca_fails_clearly_and_acks_nothing(
        store: Store, broker: Broker, pki: Pki, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path) -> None:
    await fill(store, 50)
    s = sink(store, tmp_path, type="mqtt", url=f"mqtts://localhost:{broker.tls_port}", ca_file=str(pki.other_ca))
    runner.start(s)
    await eventually(lambda: s.stats()["retries"] >= 2)
    st = s.stats()
    assert "certificate verif" in st["last_error"] and "ca_file" in st["last_error"]
    assert st["connected"] is False and st["sent"] == 0 and st["backlog_readings"] == 50
    assert store.cursor_sync("s") == 0 and subscriber.messages == []


async def test_mqtt_tls_with_ca_file(store: Store, broker: Broker, pki: Pki, subscriber: Subscriber,
                                     runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 50)
    runner.start(sink(store, tmp_path, type="mqtt", url=f"mqtts://localhost:{broker.tls_port}",
                      ca_file=str(pki.ca)))
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 10)


async def test_mqtt_client_certificate(store: Store, broker: Broker, pki: Pki, subscriber: Subscriber,
                                       runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 50)
    without = sink(store, tmp_path, type="mqtt", url=f"mqtts://127.0.0.1:{broker.mtls_port}", ca_file=str(pki.ca))
    runner.start(without)
    await eventually(lambda: without.stats()["retries"] >= 1)
    assert not without.connected and "cert_file" in without.stats()["last_error"]
    await runner.stop(without)
    with_cert = sink(store, tmp_path, type="mqtt", url=f"mqtts://127.0.0.1:{broker.mtls_port}",
                     ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    runner.start(with_cert)
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 10)


async def test_mqtt_insecure_skip_verify_connects_and_says_so(
        store: Store, broker: Broker, subscriber: Subscriber, runner: SinkRunner, tmp_path: Path,
        caplog: Any) -> None:
    seqs = await fill(store, 5)
    runner.start(sink(store, tmp_path, type="mqtt", url=f"mqtts://127.0.0.1:{broker.tls_port}",
                      insecure_skip_verify=True))
    assert not await asyncio.to_thread(subscriber.wait_for, set(seqs), 10)
    assert "VERIFICATION IS OFF" in caplog.text


def _server_context(pki: Pki, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if client_cert:
        ctx.load_verify_locations(pki.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def test_https_wrong_ca_fails_clearly_and_acks_nothing(
        store: Store, pki: Pki, runner: SinkRunner, tmp_path: Path) -> None:
    receiver = await Receiver(_server_context(pki, client_cert=False)).start()
    try:
        await fill(store, 20)
        s = sink(store, tmp_path, type="http", url=receiver.url, ca_file=str(pki.other_ca), retry_min="50ms",
                 retry_max="200ms")
        runner.start(s)
        await eventually(lambda: s.stats()["retries"] >= 2)
        assert "certificate verif" in s.stats()["last_error"]
        assert store.cursor_sync("s") == 0 and receiver.requests == []
    finally:
        await receiver.stop()


async def test_https_mutual_tls(store: Store, pki: Pki, runner: SinkRunner, tmp_path: Path) -> None:
    receiver = await Receiver(_server_context(pki, client_cert=True)).start()
    try:
        seqs = await fill(store, 20)
        url = receiver.url.replace("https://", "HTTPS://")  # the scheme is case-insensitive: same TLS keys apply
        s = sink(store, tmp_path, type="http", url=url, ca_file=str(pki.ca),
                 cert_file=str(pki.client_cert), key_file=str(pki.client_key))
        runner.start(s)
        await eventually(lambda: receiver.delivered() == seqs)
    finally:
        await receiver.stop()


async def test_ca_file_is_the_only_trust_not_an_addition_to_the_system_cas(
        store: Store, pki: Pki, runner: SinkRunner, tmp_path: Path, monkeypatch: Any) -> None:
    """ca_file names the CAs that may sign the server's certificate: one the system trusts is not enough."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # the system store trusts the server's CA...
    receiver = await Receiver(_server_context(pki, client_cert=False)).start()
    try:
        await fill(store, 20)
        s = sink(store, tmp_path, type="http", url=receiver.url, ca_file=str(pki.other_ca), retry_min="50ms",
                 retry_max="200ms")  # ...but the sink was told to trust only other_ca
        runner.start(s)
        await eventually(lambda: s.stats()["retries"] >= 2)
        assert "certificate verif" in s.stats()["last_error"]
        assert store.cursor_sync("s") == 0 and receiver.requests == []
    finally:
        await receiver.stop()
