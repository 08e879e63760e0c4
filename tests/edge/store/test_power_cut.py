"""Power cut: the store of a real daemon lives on a filesystem that loses every write not yet fsynced.

A consumer reads the pull API continuously and records every (seq -> reading) it was served. At a random
moment the power is cut (daemon frozen, filesystem killed, daemon killed, unmounted); the store is then
opened straight from the backing folder, which holds exactly what was fsynced, and checked: integrity ok,
seqs contiguous, and no seq that was ever served is missing or holds different content. Then the daemon
and the filesystem start again on the same folder, and the next cut follows.

It also measures the loss window: the age of the newest reading that survived a cut (readings polled
after it were appended but not yet durable, so nobody had seen them). docs/store.md quotes the figures.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from edgeproc import EDGE, EdgeProcess, write_config
from faults.lossy_fs import LossyMount

from edge.reading import parse_ts
from edge.store import Store, StoreOptions

pytestmark = pytest.mark.slow

CUTS = 20
RUN_BEFORE_CUT = (0.3, 1.2)  # s the daemon runs (after it answers) before the power is cut, uniformly
EARLY_CUTS = 5  # more cuts while the daemon starts (imports, store open, WAL recovery), before it answers
START_BEFORE_CUT = (0.05, 0.8)  # s after the daemon was spawned (some land before it answers)
COMMIT_INTERVAL = "50ms"
SIMULATOR = """
[[device]]
name = "sim"
driver = "simulator"
interval = "20ms"
points = 50
"""
PAGE_LIMIT = 10_000
CONSUMER_PAUSE = 0.005  # s between empty pages
ACK_EVERY = 5  # pages between acknowledgements (PUT /v1/cursors/reader)


@dataclass
class Consumer:
    """Reads the pull API from `after` on, in a thread, and records what it was served."""

    url: str
    token: str
    after: int
    served: dict[int, dict[str, Any]]
    acked: int = 0  # the highest seq whose acknowledgement was answered
    stop: threading.Event = field(default_factory=threading.Event)
    pages: int = 0

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            return json.loads(resp.read())

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                page = self.call("GET", f"/v1/readings?after={self.after}&limit={PAGE_LIMIT}")
                if self.pages % ACK_EVERY == 0 and self.after > self.acked:
                    self.acked = self.call("PUT", "/v1/cursors/reader", {"seq": self.after})["seq"]
            except (OSError, urllib.error.URLError, ValueError):
                return  # the power is gone
            self.pages += 1
            for r in page["readings"]:
                seq = r["seq"]
                if seq in self.served:
                    assert self.served[seq] == r, f"seq {seq} served twice with different content"
                self.served[seq] = r
            if page["readings"]:
                assert page["next"] == page["readings"][-1]["seq"] > self.after
                self.after = page["next"]
            else:
                time.sleep(CONSUMER_PAUSE)


@dataclass
class Cut:
    at: float  # time.time() when the daemon was frozen
    served_max: int
    reported_durable: int  # /v1/stats last_seq just before the cut
    durable_max: int  # newest seq in the store after the cut
    newest_age: float  # s between the newest surviving reading's ts and the cut


class OutsideTokenEdge(EdgeProcess):
    """The daemon with its tokens file outside the data folder."""

    tokens_file: Path

    @property
    def token(self) -> str:
        return next(line.strip() for line in self.tokens_file.read_text().splitlines()
                    if line.strip() and not line.startswith("#"))


def store_after_cut(backing: Path) -> tuple[dict[int, dict[str, Any]], dict[str, int]]:
    """Open the store from the backing folder like the next start would; every reading by seq, the cursors."""
    con = sqlite3.connect(backing / "data" / "store.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    store = Store.open(backing / "data", StoreOptions())
    try:
        cursors = {name: c["seq"] for name, c in store.cursors_sync().items()}
        rows: dict[int, dict[str, Any]] = {}
        after = 0
        while True:
            page = store.read_sync(after, 50_000)
            if not page:
                break
            for r in page:
                # The same encoding as the pull API.
                rows[r.seq] = json.loads(json.dumps(r.to_dict()))
            after = page[-1].seq
    finally:
        store.close()
    return rows, cursors


def check_after_cut(what: str, backing: Path, served: dict[int, dict[str, Any]],
                    acked: int) -> dict[int, dict[str, Any]]:
    """Integrity, contiguous seqs, every served reading unchanged, every answered acknowledgement kept."""
    rows, cursors = store_after_cut(backing)
    assert cursors.get("keeper") == 0
    assert cursors.get("reader", 0) >= acked, f"{what}: an answered acknowledgement (seq {acked}) was lost"
    seqs = sorted(rows)
    missing = [s for s in served if s not in rows]
    assert not missing, (f"{what}: {len(missing)} served seqs lost by the power cut: {min(missing)}.."
                         f"{max(missing)}; the store holds {len(seqs)} readings")
    changed = [s for s in served if rows[s] != served[s]]
    assert not changed, f"{what}: served seqs now hold other readings: {changed[:10]}…"
    assert seqs == list(range(1, len(seqs) + 1)), f"{what}: seqs not contiguous from 1"
    return rows


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[LossyMount]:
    if os.geteuid() != 0:
        pytest.skip("mounting a FUSE filesystem needs root here (the fault tests run as root in CI)")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    import ctypes.util

    if ctypes.util.find_library("fuse3") is None:
        pytest.skip("libfuse3 is not installed (apt-get install fuse3 libfuse3-dev)")
    mount = LossyMount(tmp_path / "backing", tmp_path / "mnt")
    yield mount
    mount.stop()


def test_power_cuts_lose_nothing_that_was_served(tmp_path: Path, lossy: LossyMount) -> None:
    rng = random.Random(20261122)
    config = write_config(
        tmp_path / "conf", SIMULATOR, data_dir=lossy.mountpoint / "data",
        store=f'commit_interval = "{COMMIT_INTERVAL}"\n',
    )
    # The token and the admin socket live outside the lossy filesystem: the store is what is under test.
    text = config.read_text().replace("[api]\n", f'[api]\ntokens_file = "{tmp_path / "tokens"}"\nadmin_socket = ""\n')
    config.write_text(text)
    served: dict[int, dict[str, Any]] = {}
    cuts: list[Cut] = []
    after = acked = 0
    spawned: list[subprocess.Popen[bytes]] = []  # every daemon, killed by PID at the end whatever happens
    try:
        for n in range(CUTS + EARLY_CUTS):
            lossy.start()
            if n % ((CUTS + EARLY_CUTS) // EARLY_CUTS) == 1:
                with open(tmp_path / "early.log", "ab") as out:
                    proc = subprocess.Popen([*EDGE, "run", "-c", str(config)], stdout=out, stderr=out)
                spawned.append(proc)
                time.sleep(rng.uniform(*START_BEFORE_CUT))
                lossy.cut(proc.pid)
                proc.wait(10)
                check_after_cut(f"cut {n} (starting)", lossy.backing, served, acked)
                continue
            edge = OutsideTokenEdge(config)
            edge.tokens_file = tmp_path / "tokens"
            try:
                edge.start()
            finally:
                if edge.proc is not None:
                    spawned.append(edge.proc)
            assert edge.proc is not None
            consumer = Consumer(edge.url, edge.token, after, served, acked)
            if n == 0:  # a consumer that never acknowledges: every reading stays, so every served one can be checked
                consumer.call("PUT", "/v1/cursors/keeper", {"seq": 0})
            thread = threading.Thread(target=consumer.run, name=f"consumer-{n}", daemon=True)
            thread.start()
            time.sleep(rng.uniform(*RUN_BEFORE_CUT))
            reported = edge.get("/v1/stats")["store"]["last_seq"]
            cut_at = time.time()
            lossy.cut(edge.proc.pid)
            edge.proc.wait(10)
            consumer.stop.set()
            thread.join(10)
            after, acked = consumer.after, consumer.acked

            rows = check_after_cut(f"cut {n}", lossy.backing, served, acked)
            seqs = sorted(rows)
            assert seqs[-1] >= reported, (f"cut {n}: the API said seq {reported} "
                                         f"was durable, the store ends at {seqs[-1]}")
            newest = rows[seqs[-1]]
            cuts.append(Cut(cut_at, max(served, default=0), reported, seqs[-1], cut_at - parse_ts(newest["ts"])))

    finally:
        for proc in spawned:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    assert len(cuts) == CUTS
    assert served, "the consumer was served readings"
    assert all(c.served_max <= c.durable_max for c in cuts)
    ages = sorted(c.newest_age for c in cuts)
    lag = [c.durable_max - c.served_max for c in cuts]
    print(f"\npower cuts: {CUTS} running + {EARLY_CUTS} starting, readings served: {len(served)}; "
          f"loss window = age of the newest surviving "
          f"reading at the cut: median {statistics.median(ages) * 1000:.0f} ms, 90th percentile "
          f"{ages[int(0.9 * (len(ages) - 1))] * 1000:.0f} ms, max {ages[-1] * 1000:.0f} ms (commit_interval "
          f"{COMMIT_INTERVAL}); durable but not yet served at the cut: median {statistics.median(lag)} readings; "
          f"all ages (ms): {[round(a * 1000) for a in ages]}")
