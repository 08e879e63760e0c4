"""The HTTP sink against a real aiohttp receiver: acks, retries with backoff and Retry-After, dead letters."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sink_helpers import EDGE, SinkRunner, eventually, fill
from sink_peers import Received, Receiver
from tcp_proxy import BlackholeProxy

from edge.reading import Reading
from edge.store import Store
from sync.http import HttpSink, retry_after
from sync.http_config import HttpSinkConfig
from sync.registry import create_sink


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


def http_sink(store: Store, tmp_path: Path, url: str, **keys: Any) -> HttpSink:
    cfg = HttpSinkConfig(name=keys.pop("name", "erp"), type="http", url=url, **keys)
    sink = create_sink(cfg, edge_id=EDGE, store=store, data_dir=str(tmp_path))
    assert isinstance(sink, HttpSink)
    return sink


async def test_batches_posted_in_order_with_idempotency_key_and_bearer(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 1200)
    sink = http_sink(store, tmp_path, receiver.url, token="t0ken", batch_max=500)
    runner.start(sink)
    await eventually(lambda: receiver.delivered() == seqs)
    keys = [q.headers["Idempotency-Key"] for q in receiver.requests]
    assert keys == [f"{EDGE}-{seqs[0]}-{seqs[499]}", f"{EDGE}-{seqs[500]}-{seqs[999]}",
                    f"{EDGE}-{seqs[1000]}-{seqs[1199]}"]
    first = receiver.requests[0]
    assert first.headers["Authorization"] == "Bearer t0ken"
    assert first.headers["Content-Type"] == "application/json"
    assert first.payload["edge"] == EDGE and len(first.payload["readings"]) == 500
    await eventually(lambda: store.cursor_sync("erp") == seqs[-1])
    st = sink.stats()
    assert st["sent"] == 1200 and st["connected"] and st["retries"] == 0 and st["backlog_readings"] == 0


async def test_gzip_and_basic_auth(store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 50)
    runner.start(http_sink(store, tmp_path, receiver.url, gzip=True, username="edge", password="pw",
                           headers={"X-Site": "a"}))
    await eventually(lambda: receiver.delivered() == seqs)
    h = receiver.requests[0].headers
    assert h["Content-Encoding"] == "gzip" and h["Authorization"].startswith("Basic ") and h["X-Site"] == "a"


async def test_500_then_200_retries_with_growing_backoff(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    receiver.responder = lambda req, i: (500 if i < 3 else 200, {})
    seqs = await fill(store, 10)
    sink = http_sink(store, tmp_path, receiver.url, retry_min="200ms", retry_max="5s")
    runner.start(sink)
    await eventually(lambda: receiver.delivered() == seqs)
    t = [q.at for q in receiver.requests]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    # backoff 0.2, 0.4, 0.8 s with up to half of each random: at least 0.1, 0.2, 0.4 s
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39, gaps
    assert gaps[2] > gaps[0]
    assert len({q.headers["Idempotency-Key"] for q in receiver.requests}) == 1  # the same batch each time
    assert sink.stats()["retries"] == 3 and sink.stats()["dead_letters"] == 0


async def test_429_waits_for_retry_after(store: Store, receiver: Receiver, runner: SinkRunner,
                                         tmp_path: Path) -> None:
    receiver.responder = lambda req, i: (429, {"Retry-After": "1"}) if i == 0 else (200, {})
    seqs = await fill(store, 10)
    runner.start(http_sink(store, tmp_path, receiver.url, retry_min="50ms"))
    await eventually(lambda: receiver.delivered() == seqs, timeout=5)
    gap = receiver.requests[1].at - receiver.requests[0].at
    assert 0.95 <= gap < 3.0, gap  # not the 50 ms backoff: the server said 1 s


@pytest.mark.parametrize("header", ["0", "Wed, 21 Oct 2015 07:28:00 GMT", "\u00b2"])
async def test_a_retry_after_of_zero_past_or_garbled_still_backs_off(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path, header: str) -> None:
    """0 s, a date already past (a clock running ahead) or a digit float() refuses: not a tight loop, no crash."""
    receiver.responder = lambda req, i: (503, {"Retry-After": header}) if i < 3 else (200, {})
    seqs = await fill(store, 10)
    sink = http_sink(store, tmp_path, receiver.url, retry_min="200ms", retry_max="5s")
    runner.start(sink)
    await eventually(lambda: receiver.delivered() == seqs)
    gaps = [b.at - a.at for a, b in itertools.pairwise(receiver.requests)]
    assert len(receiver.requests) == 4 and min(gaps) >= 0.09, gaps  # the backoff: 0.2 s, half of it random


def test_retry_after_header_forms() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None and retry_after("\u00b2") is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(1_000_030))
    assert retry_after(date, now=1_000_000) == pytest.approx(30.0)


async def test_400_dead_letters_the_batch_moves_on_and_replay_delivers(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    seqs = await fill(store, 300)
    bad = seqs[150]

    def refuse_one(req: Received, i: int) -> tuple[int, dict[str, str]]:
        return (400, {}) if any(r["seq"] == bad for r in req.payload["readings"]) else (200, {})

    receiver.responder = refuse_one
    sink = http_sink(store, tmp_path, receiver.url, batch_max=100)
    runner.start(sink)
    await eventually(lambda: store.cursor_sync("erp") == seqs[-1])
    assert receiver.delivered() == seqs[:100] + seqs[200:]
    assert [q.status for q in receiver.requests] == [200, 400, 200]  # refused once, not retried
    [dl] = store.dead_letters_sync(sink="erp")
    assert (dl.first_seq, dl.last_seq, dl.count) == (seqs[100], seqs[199], 100)
    assert "HTTP 400" in dl.error
    assert [r["seq"] for r in json.loads(dl.payload)["readings"]] == seqs[100:200]
    assert sink.stats()["dead_letters"] == 1

    receiver.responder = lambda req, i: (200, {})
    await sink.replay(dl)
    assert receiver.requests[-1].headers["Idempotency-Key"] == f"{EDGE}-{seqs[100]}-{seqs[199]}"
    assert sorted(receiver.delivered()) == seqs
    assert len(store.dead_letters_sync(sink="erp")) == 1  # the API's replay deletes it, once, after this
    assert sink.stats()["dead_letters"] == 1  # what the store holds
    assert await store.delete_dead_letter(dl.id)
    assert sink.stats()["dead_letters"] == 0


async def test_413_sends_the_batch_again_in_smaller_parts_and_dead_letters_only_an_oversized_reading(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    """A receiver that takes at most 10 readings per body (and no value over 1,000 characters)."""
    seqs = await fill(store, 95)
    oversized = Reading("plc1", "log", "x" * 5000, time.time())
    await store.append([oversized])
    seqs += await fill(store, 20)
    huge = oversized.seq  # given by the store's writer (durable by now)

    def limited(req: Received, i: int) -> tuple[int, dict[str, str]]:
        rs = req.payload["readings"]
        too_big = len(rs) > 10 or any(len(str(r["value"])) > 1000 for r in rs)
        return (413, {}) if too_big else (200, {})

    receiver.responder = limited
    sink = http_sink(store, tmp_path, receiver.url, batch_max=100)
    runner.start(sink)
    await eventually(lambda: store.cursor_sync("erp") == huge + 20)
    assert receiver.delivered() == seqs  # every other reading, once, in order
    [dl] = store.dead_letters_sync(sink="erp")
    assert (dl.first_seq, dl.last_seq, dl.count) == (huge, huge, 1) and "HTTP 413" in dl.error


async def test_replay_failure_raises_and_keeps_the_dead_letter(
        store: Store, receiver: Receiver, tmp_path: Path) -> None:
    await store.add_dead_letter("erp", 1, 2, 2, "HTTP 400", b'{"edge":"site-a","readings":[]}')
    [dl] = store.dead_letters_sync(sink="erp")
    receiver.responder = lambda req, i: (422, {})
    sink = http_sink(store, tmp_path, receiver.url)
    with pytest.raises(RuntimeError, match="HTTP 422"):
        await sink.replay(dl)
    assert store.dead_letters_sync(sink="erp") != []


async def test_receiver_down_then_up(store: Store, runner: SinkRunner, tmp_path: Path) -> None:
    receiver = Receiver()
    seqs = await fill(store, 20, ts=time.time() - 60)
    sink = http_sink(store, tmp_path, receiver.url, retry_min="50ms", retry_max="300ms")
    runner.start(sink)
    await eventually(lambda: sink.stats()["retries"] >= 2)
    st = sink.stats()
    assert st["connected"] is False and "refused" in st["last_error"] and st["backlog_readings"] == 20
    assert st["oldest_unsent_age_s"] >= 59 and st["backlog_bytes"] > 20 * 50 and st["last_ack"] is None
    assert store.cursor_sync("erp") == 0
    await receiver.start()
    try:
        await eventually(lambda: receiver.delivered() == seqs, timeout=5)
        await eventually(lambda: sink.stats()["connected"])
    finally:
        await receiver.stop()



async def test_a_link_that_goes_dark_times_out_retries_and_delivers_in_order(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    """Bytes stop flowing with no reset: the POST times out (`timeout`), is retried, and once the link is back
    every batch arrives, in order; nothing was acked while dark."""
    proxy = await BlackholeProxy(receiver.port).start()
    first = await fill(store, 20)
    sink = http_sink(store, tmp_path, f"http://127.0.0.1:{proxy.port}/ingest", batch_max=10, timeout="1s",
                     retry_min="50ms", retry_max="200ms")
    runner.start(sink)
    try:
        await eventually(lambda: set(first) <= set(receiver.delivered()))
        proxy.cut()
        dark = await fill(store, 30)
        await eventually(lambda: sink.stats()["retries"] >= 2, timeout=10)
        st = sink.stats()
        assert st["connected"] is False and "timed out" in st["last_error"].lower(), st["last_error"]
        assert store.cursor_sync("erp") < dark[0]
        proxy.heal()
        await eventually(lambda: set(dark) <= set(receiver.delivered()), timeout=10)
    finally:
        await proxy.stop()
    got = receiver.delivered()
    assert sorted(set(got)) == first + dark
    assert [s for i, s in enumerate(got) if s not in got[:i]] == first + dark  # first arrivals in seq order


async def test_signed_payloads_verify_and_a_missing_key_is_explained(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    from edge.identity import init_keys, load_public_signing_key
    from edge.signing import verify_payload

    unsigned = http_sink(store, tmp_path, receiver.url, sign=True)
    with pytest.raises(OSError, match="sign = true but the signing key is unusable"):
        await unsigned.run()
    assert "edge keys init" in unsigned.stats()["last_error"]
    init_keys(tmp_path, EDGE)
    seqs = await fill(store, 20)
    runner.start(http_sink(store, tmp_path, receiver.url, sign=True))
    await eventually(lambda: receiver.delivered() == seqs)
    payload = receiver.requests[0].payload
    assert payload["sig"]["alg"] == "ed25519"
    assert verify_payload(payload, load_public_signing_key(tmp_path))


async def test_a_redirect_is_not_taken_for_delivery(store: Store, runner: SinkRunner, tmp_path: Path) -> None:
    """A POST redirected with 301/302/303 would be repeated as a GET without its body: that is no ack."""
    from aiohttp import web

    posted: list[bytes] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/new")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="a web page, not the ingest endpoint")

    async def ingest(request: web.Request) -> web.Response:
        posted.append(await request.read())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/old", moved)
    app.router.add_get("/new", page)
    app.router.add_post("/new", ingest)
    site_runner = web.AppRunner(app)
    await site_runner.setup()
    site = web.TCPSite(site_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await fill(store, 10)
        sink = http_sink(store, tmp_path, f"http://127.0.0.1:{port}/old", retry_min="50ms", retry_max="200ms")
        runner.start(sink)
        await eventually(lambda: sink.stats()["retries"] >= 2)
        assert store.cursor_sync("erp") == 0 and sink.stats()["sent"] == 0 and not posted
        assert "301" in sink.stats()["last_error"] and "/new" in sink.stats()["last_error"]
    finally:
        await site_runner.cleanup()


async def test_sign_without_keys_fails_the_sink_run_not_a_reload(
        receiver: Receiver, tmp_path: Path) -> None:
    """A reload that turns signing on before `edge keys init` keeps the daemon whole: the sink says why."""
    from edge.config import load_config
    from edge.daemon import Daemon

    path = tmp_path / "edge.toml"
    path.write_text(f"""
[edge]
id = "{EDGE}"
data_dir = "{tmp_path / 'data'}"

[api]
listen = "127.0.0.1:0"

[discovery]
advertise = false

[[device]]
name = "sim"
driver = "simulator"
interval = "100ms"

[[sink]]
name = "erp"
type = "http"
url = "{receiver.url}"
""")
    daemon = Daemon(load_config(path))
    await daemon.start()
    try:
        await eventually(lambda: receiver.delivered())
        path.write_text(path.read_text() + "sign = true\n")
        assert await daemon.reload() == []
        assert daemon.config.sinks[0].sign and "erp" in daemon.sinks
        await eventually(lambda: "signing key is unusable" in (daemon.sinks_info()["erp"].get("last_error") or ""))
        assert daemon.runners["sim"].driver.status.state == "up"
    finally:
        await daemon.stop("test over")


async def test_expired_readings_are_counted_once_when_the_cursor_passes_them(
        store: Store, receiver: Receiver, runner: SinkRunner, tmp_path: Path) -> None:
    """A fresh reading the receiver refuses for now, then 20 older than max_age: restarts read them again
    (the cursor is still before them), but they are counted only once, when the cursor passes them."""
    accept = False
    receiver.responder = lambda req, i: (200 if accept else 503, {})
    [fresh] = await fill(store, 1)
    old = await fill(store, 20, ts=time.time() - 7200)
    for _ in range(3):
        sink = http_sink(store, tmp_path, receiver.url, max_age="1h", batch_max=1, retry_min="50ms")
        runner.start(sink)
        await eventually(lambda: len(receiver.requests) >= 2)
        await runner.stop(sink)
        receiver.requests.clear()
    assert store.cursor_sync("erp") == fresh - 1
    assert "sink.erp.expired" not in store.stats_sync()["counters"]
    accept = True
    sink = http_sink(store, tmp_path, receiver.url, max_age="1h", batch_max=1, retry_min="50ms")
    runner.start(sink)
    await eventually(lambda: store.cursor_sync("erp") == old[-1])
    await eventually(lambda: store.stats_sync()["counters"].get("sink.erp.expired") == 20)
    assert sink.stats()["expired"] == 20 and receiver.delivered() == [fresh]
