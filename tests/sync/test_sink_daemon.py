"""Daemon-level delivery through faults: `edge run` with simulator devices and an MQTT sink.

- outage: the broker is stopped for 30 s while polling continues, then started on the same port;
- crashes: the daemon is SIGKILLed at random moments while a backlog drains.
An independent paho subscriber records every (edge, seq); the store's seqs are the oracle (they are
contiguous from 1, so "every seq the store assigned" is 1..last_seq).
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sink_helpers import EDGE, readings
from sink_peers import Broker, Receiver, Subscriber, check_order

from edge.store import Store

EDGE_BIN = Path(sys.executable).with_name("edge")
OUTAGE = 30.0  # s the broker stays down
CRASHES = 20
BATCH_MAX = 50
INFLIGHT = 8
WINDOW_READINGS = BATCH_MAX * INFLIGHT  # the most a crash may duplicate
BACKLOG = 300_000  # readings stored before the first run: enough to still be draining at the last crash
STOP_TIMEOUT = 10.0
RECONNECT_WITHIN = 4.0  # s from the broker's restart to the first new reading at the subscriber
SIGTERM_STOP_LIMIT = 5.0  # s: the contract's bound from SIGTERM to the process's exit


def config(data_dir: Path, port: int, *, devices: int, interval: str = "100ms", batch_max: int = BATCH_MAX,
           inflight: int = INFLIGHT, sink: str | None = None) -> str:
    text = f"""
[edge]
id = "{EDGE}"
data_dir = "{data_dir}"

[store]
commit_interval = "50ms"

[api]
listen = "127.0.0.1:0"

[discovery]
advertise = false
"""
    for i in range(devices):
        text += f'\n[[device]]\nname = "sim{i + 1}"\ndriver = "simulator"\ninterval = "{interval}"\n'
    if sink is not None:
        return text + sink
    text += f"""
[[sink]]
name = "cloud"
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
topic = "edge/{{edge}}/{{device}}"
batch_max = {batch_max}
inflight = {inflight}
"""
    return text


class EdgeProcess:
    """`edge run -c FILE` as a child process."""

    def __init__(self, tmp: Path, text: str, name: str = "edge") -> None:
        self.conf = tmp / f"{name}.toml"
        self.conf.write_text(text)
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EdgeProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(EDGE_BIN), "run", "-c", str(self.conf)], stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def wait_running(self) -> None:
        """Until the daemon logged that it runs (its SIGTERM handler is installed only then)."""
        wait_until(lambda: "running:" in self.log.read_text(errors="replace"), STOP_TIMEOUT, "daemon start")

    def stop(self) -> int:
        assert self.proc is not None
        self.wait_running()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def last_seq_and_cursor(data_dir: Path, sink: str = "cloud") -> tuple[int, int]:
    store = Store.open(data_dir)
    try:
        return store.durable_seq, store.cursor_sync(sink) or 0
    finally:
        store.close()


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_broker_outage_of_30s_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "mosquitto", persistence=True).start()  # keeps the subscriber's session
    sub = Subscriber(broker.port, topic=f"edge/{EDGE}/+", client_id="outage-oracle")
    data = tmp_path / "data"
    edge = EdgeProcess(tmp_path, config(data, broker.port, devices=2)).start()
    drain: EdgeProcess | None = None
    try:
        wait_until(lambda: len(sub.seqs()) >= 50, 15, "first readings")
        broker.stop()
        before = max(sub.seqs())
        time.sleep(OUTAGE)  # the devices keep polling into the store
        assert edge.proc is not None and edge.proc.poll() is None
        restarted = time.monotonic()
        broker.start()
        wait_until(lambda: max(sub.seqs()) > before, 10, "first reading after the outage")
        back_after = time.monotonic() - restarted
        print(f"first reading {back_after:.2f} s after the broker restarted")
        assert back_after < RECONNECT_WITHIN, back_after  # reconnect_max = 2 s, plus jitter and the subscriber
        # 2 devices × 4 points × 10 polls/s × 30 s ≈ 2400 readings were stored during the outage
        wait_until(lambda: max(sub.seqs()) > before + 2000, 20, "catch-up after outage")
        assert time.monotonic() - restarted < 10
        assert edge.stop() == 0
        last, _ = last_seq_and_cursor(data)
        # what was stored just before the stop and not sent yet goes out with the next run (no devices)
        drain = EdgeProcess(tmp_path, config(data, broker.port, devices=0), "drain").start()
        wait_until(lambda: set(range(1, last + 1)) <= set(sub.seqs()), 20, "all seqs")
        assert drain.stop() == 0
        got = sub.readings()
        assert not check_order(got)
        assert set(range(1, last + 1)) <= {r["seq"] for r in got}
    finally:
        edge.ensure_dead()
        if drain is not None:
            drain.ensure_dead()
        sub.close()
        broker.stop()


@pytest.mark.slow
def test_sigkill_while_draining_every_seq_arrives_duplicates_bounded(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "mosquitto").start()
    sub = Subscriber(broker.port, topic=f"edge/{EDGE}/+", client_id="crash-oracle")
    data = tmp_path / "data"
    store = Store.open(data)  # a backlog before the first start
    for _ in range(BACKLOG // 10_000):
        store.append_nowait(readings(10_000, devices=("plc1", "plc2", "plc3")))
    store.close()
    small_window = config(data, broker.port, devices=1)
    rng = random.Random(4)
    duplicates: list[int] = []
    edge: EdgeProcess | None = None
    try:
        for crash in range(CRASHES):
            edge = EdgeProcess(tmp_path, small_window, f"crash{crash}").start()
            count = len(sub.seqs())
            wait_until(lambda c=count: len(sub.seqs()) > c, 15,  # type: ignore[misc]
                                    f"delivery in run {crash}")
            time.sleep(rng.uniform(0.0, 0.6))
            edge.kill()
            time.sleep(0.3)  # what the broker still had in flight reaches the subscriber
            received = set(sub.seqs())
            _, cursor = last_seq_and_cursor(data)
            # the next run starts after the durable cursor: whatever above it was received comes again
            duplicates.append(sum(1 for s in received if s > cursor))
        last, _ = last_seq_and_cursor(data)
        edge = EdgeProcess(tmp_path, config(data, broker.port, devices=0, batch_max=500, inflight=32), "final").start()
        wait_until(lambda: set(range(1, last + 1)) <= set(sub.seqs()), 60, "final drain")
        assert edge.stop() == 0
        got = sub.seqs()
        missing = set(range(1, last + 1)) - set(got)
        assert not missing, f"{len(missing)} seqs never arrived, e.g. {sorted(missing)[:10]}"
        print("duplicates per crash", duplicates, "last", last, "received", len(got))
        assert max(duplicates) <= WINDOW_READINGS, duplicates
        assert len(got) - len(set(got)) <= (CRASHES + 1) * WINDOW_READINGS
        assert not check_order(sub.readings())
    finally:
        if edge is not None:
            edge.ensure_dead()
        sub.close()
        broker.stop()



async def test_edge_run_posts_to_an_http_receiver_and_stops_cleanly(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    data = tmp_path / "data"
    sink = f"""
[[sink]]
name = "erp"
type = "http"
url = "{receiver.url}"
token = "t0ken"
gzip = true
batch_max = 20
"""
    edge = EdgeProcess(tmp_path, config(data, 0, devices=1, interval="50ms", sink=sink)).start()
    try:
        deadline = time.monotonic() + STOP_TIMEOUT
        while len(receiver.delivered()) < 100:
            assert time.monotonic() < deadline, edge.log.read_text()
            await asyncio.sleep(0.05)
        await asyncio.to_thread(edge.wait_running)
        assert await asyncio.to_thread(edge.stop) == 0
    finally:
        edge.ensure_dead()
        await receiver.stop()
    got = receiver.delivered()
    assert got == list(range(1, len(got) + 1))  # in order, no gaps, no duplicates
    assert all(q.headers["Authorization"] == "Bearer t0ken" for q in receiver.requests)
    assert all(q.headers["Idempotency-Key"].startswith(f"{EDGE}-") for q in receiver.requests)
    _, cursor = last_seq_and_cursor(data, "erp")
    # The stop wrote the cursor of everything acknowledged. A POST the receiver took but whose 200 the stop cut
    # off is not acknowledged (at least once: it is sent again after a restart), so the cursor may be one batch
    # (batch_max 20) behind, always at the end of a request.
    assert got[-1] - cursor <= 20 and cursor in {q.payload["readings"][-1]["seq"] for q in receiver.requests}, cursor


def test_sigterm_stops_within_5s_while_a_tls_connect_hangs(tmp_path: Path) -> None:
    """A peer that accepts TCP and never answers the TLS handshake must not hold up the daemon's exit."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(STOP_TIMEOUT)
    port = silent.getsockname()[1]
    sink = f"""
[[sink]]
name = "cloud"
type = "mqtt"
url = "mqtts://127.0.0.1:{port}"
"""
    edge = EdgeProcess(tmp_path, config(tmp_path / "data", 0, devices=1, sink=sink)).start()
    try:
        edge.wait_running()
        conn, _ = silent.accept()  # the sink's connect is now waiting for the server's TLS hello
        assert edge.proc is not None
        sent = time.monotonic()
        edge.proc.send_signal(signal.SIGTERM)
        assert edge.proc.wait(STOP_TIMEOUT) == 0
        took = time.monotonic() - sent
        assert took < SIGTERM_STOP_LIMIT, f"exit {took:.1f} s after SIGTERM"
        conn.close()
    finally:
        edge.ensure_dead()
        silent.close()
