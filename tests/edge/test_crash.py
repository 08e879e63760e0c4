"""Crash test: a daemon polling at a high rate is SIGKILLed at random moments, 20 times, and restarted.

A pull-API consumer that acknowledges as it reads must have received every seq at least once, with no
page skipping ahead, and the store's seqs must be contiguous afterwards.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from edgeproc import EdgeProcess, write_config

KILLS = 20
RUN_MIN, RUN_MAX = 0.3, 1.5  # seconds a daemon runs before it is killed
DEVICES = """
[[device]]
name = "fast1"
driver = "simulator"
interval = "20ms"
points = 100

[[device]]
name = "fast2"
driver = "simulator"
interval = "30ms"
points = 100
"""


class AckingConsumer(threading.Thread):
    """Reads pages after its cursor, records every seq, PUTs its cursor; retries through daemon deaths."""

    def __init__(self, edge: EdgeProcess) -> None:
        super().__init__(daemon=True)
        self.edge = edge
        self.cursor = 0
        self.received: set[int] = set()
        self.skips: list[tuple[int, int]] = []
        self.pages = 0
        self.stop = threading.Event()

    def _call(self, method: str, path: str, body: object = None) -> dict:  # type: ignore[type-arg]
        req = urllib.request.Request(self.edge.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", f"Bearer {self.edge.token}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                page = self._call("GET", f"/v1/readings?after={self.cursor}&limit=5000")
                seqs = [r["seq"] for r in page["readings"]]
                if seqs and seqs[0] != self.cursor + 1:
                    self.skips.append((self.cursor, seqs[0]))
                self.received.update(seqs)
                if seqs:
                    self._call("PUT", "/v1/cursors/oracle", {"seq": page["next"]})
                    self.cursor = page["next"]
                    self.pages += 1
                else:
                    time.sleep(0.02)
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                time.sleep(0.02)  # the daemon is down or restarting: try again


@pytest.mark.slow
def test_sigkill_twenty_times_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    edge = EdgeProcess(write_config(tmp_path, DEVICES, store='commit_interval = "100ms"\n'))
    edge.start()
    consumer = AckingConsumer(edge)
    consumer.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(RUN_MIN, RUN_MAX))
            edge.kill()
            edge.start()
        deadline = time.monotonic() + 60
        caught_up = False
        while time.monotonic() < deadline and not caught_up:
            served = edge.get("/v1/stats")["store"]["last_seq"]
            caught_up = consumer.cursor >= served
            time.sleep(0.1)
        assert caught_up, f"consumer at {consumer.cursor}, store at {served}"
    finally:
        consumer.stop.set()
        consumer.join(10)
        code = edge.stop()
    assert code == 0
    db = sqlite3.connect(edge.data_dir / "store.sqlite")
    first, last, count = db.execute("SELECT min(seq), max(seq), count(*) FROM readings").fetchone()
    meta_last = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    if count:
        assert count == last - first + 1, "store seqs are not contiguous"
    assert consumer.skips == []
    assert consumer.pages > KILLS
    missing = set(range(1, consumer.cursor + 1)) - consumer.received
    assert not missing, f"{len(missing)} seqs never received, e.g. {sorted(missing)[:5]}"
    assert consumer.cursor <= meta_last
    log = edge.log.read_text()
    assert "Traceback" not in log, log[-3000:]
