"""Disk full: a real daemon whose store lives on a small tmpfs polls a fast simulator until the disk is full.

Checked through the public surface (pull API, /metrics, /v1/events) and then in the store file itself: the
daemon keeps answering, raises the store_full event and the edge_store_full metric, applies full_policy
(drop_oldest drops the oldest readings, reject_new refuses new ones), resumes when the tmpfs is made larger,
PRAGMA integrity_check stays ok, and every reading that went missing is counted. Also max_bytes retention
without disk pressure, and the store alone on a disk that another program filled to the last byte.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from edgeproc import EdgeProcess, write_config
from faults.mounts import MiB, free_bytes, resize_tmpfs, tmpfs

from edge.reading import Reading
from edge.store import Store, StoreOptions

pytestmark = pytest.mark.slow

SMALL_DISK = 12 * MiB  # the tmpfs: spare file (4 MiB) + low-water mark (2 MiB) + a few MiB of readings
BIG_DISK = 96 * MiB  # after "space frees"
FILL_TIMEOUT = 60.0  # s until the simulator has filled SMALL_DISK
SETTLE_TIMEOUT = 20.0  # s for the daemon to report a state change
FAST_SIMULATOR = """
[[device]]
name = "sim"
driver = "simulator"
interval = "10ms"
points = 400
"""


def eventually(what: str, check: Callable[[], Any], timeout: float = SETTLE_TIMEOUT) -> Any:
    """Poll check() until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(0.1)


def store_stats(edge: EdgeProcess) -> dict[str, Any]:
    stats: dict[str, Any] = edge.get("/v1/stats")["store"]
    return stats


def metrics(edge: EdgeProcess) -> dict[str, float]:
    """The Prometheus text as {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in str(edge.get("/metrics")).splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def events(edge: EdgeProcess, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = edge.get(f"/v1/events?kind={kind}&limit=1000")["events"]
    return found


def pull_seqs(edge: EdgeProcess, upto: int) -> list[int]:
    """Every seq the pull API serves from the start up to `upto`, page by page."""
    seqs: list[int] = []
    after = 0
    while after < upto:
        page = edge.get(f"/v1/readings?after={after}&limit=10000")
        seqs.extend(r["seq"] for r in page["readings"])
        if page["next"] == after:
            break
        after = page["next"]
    return [s for s in seqs if s <= upto]


def dropped(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("dropped_"))


def check_store_file(data_dir: Path) -> dict[str, int]:
    """After the daemon stopped: integrity ok, seqs contiguous; returns the persisted counters and seq range."""
    con = sqlite3.connect(data_dir / "store.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        first, last, count = con.execute("SELECT min(seq), max(seq), count(*) FROM readings").fetchone()
        assert count == last - first + 1, "seqs are not contiguous"
        counters = dict(con.execute("SELECT name, value FROM counters").fetchall())
    finally:
        con.close()
    return {"first": first, "last": last, **counters}


def store_stats_text(data_dir: Path) -> str:
    """The stored seq range and counters, for a failure report."""
    try:
        con = sqlite3.connect(data_dir / "store.sqlite")
        try:
            seqs = con.execute("SELECT min(seq), max(seq), count(*) FROM readings").fetchone()
            return f"store: seqs {seqs}, counters {dict(con.execute('SELECT name, value FROM counters'))}"
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"store unreadable: {e}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", SMALL_DISK) as mnt:
        yield mnt


def start_edge(tmp_path: Path, data_dir: Path, store: str, body: str = FAST_SIMULATOR) -> EdgeProcess:
    config = write_config(tmp_path / "conf", body, data_dir=data_dir, store=store)
    edge = EdgeProcess(config)
    try:
        return edge.start()
    except BaseException:
        edge.kill()  # by PID; a daemon that never answered must not outlive the test
        raise


@pytest.mark.parametrize("policy", ["drop_oldest", "reject_new"])
def test_full_disk_applies_policy_and_resumes(tmp_path: Path, small_disk: Path, policy: str) -> None:
    data = small_disk / "data"
    # max_bytes far above the disk: the disk is what fills up.
    edge = start_edge(tmp_path, data, f'max_bytes = "1GiB"\nfull_policy = "{policy}"\n')
    try:
        eventually("the store reports full", lambda: store_stats(edge)["full"], FILL_TIMEOUT)
        assert free_bytes(small_disk) < 8 * MiB
        m = metrics(edge)
        assert m["edge_store_full"] == 1.0
        if policy == "drop_oldest":
            eventually("oldest readings dropped", lambda: metrics(edge)['edge_readings_dropped_total{reason="full"}'])
        else:
            eventually("new readings refused",
                       lambda: metrics(edge)['edge_readings_dropped_total{reason="rejected_full"}'])
        [full_event] = events(edge, "store_full")
        assert full_event["data"]["policy"] == policy

        # Full for a while: the daemon keeps answering, and keeps applying the policy.
        before = store_stats(edge)
        time.sleep(2.0)
        assert edge.get("/v1/health", auth=False)["status"] == "ok"
        during = store_stats(edge)
        assert during["full"]
        if policy == "drop_oldest":
            assert during["last_seq"] > before["last_seq"], "drop_oldest must keep storing new readings"
            assert during["counters"]["dropped_full"] > before["counters"]["dropped_full"]
            assert events(edge, "retention_drop"), "every drop is logged as an event"
            # Running at capacity for good: everything held when it became full is replaced by newer readings.
            eventually("the whole store turned over while full",
                       lambda: store_stats(edge)["first_seq"] > before["last_seq"], FILL_TIMEOUT)
            assert store_stats(edge)["full"] and free_bytes(small_disk) > 0
        else:
            assert during["last_seq"] == before["last_seq"], "reject_new must not store new readings"
            assert during["counters"]["rejected_full"] > before["counters"]["rejected_full"]
            assert during["first_seq"] == 1 and "dropped_full" not in during["counters"]

        # Space frees: the store leaves the full state and stores everything again.
        resize_tmpfs(small_disk, BIG_DISK)
        eventually("the store has room again", lambda: not store_stats(edge)["full"])
        assert metrics(edge)["edge_store_full"] == 0.0
        assert events(edge, "store_resumed")
        resumed = store_stats(edge)
        eventually("new readings stored", lambda: store_stats(edge)["last_seq"] > resumed["last_seq"] + 1000)
        after = store_stats(edge)
        assert after["counters"].get("dropped_full", 0) == resumed["counters"].get("dropped_full", 0)
        assert after["counters"].get("rejected_full", 0) == resumed["counters"].get("rejected_full", 0)

        # The pull API's view: what is missing from the start is exactly what was counted as dropped.
        seqs = pull_seqs(edge, after["last_seq"])
        assert seqs == list(range(seqs[0], after["last_seq"] + 1)), "seqs served are contiguous"
        assert seqs[0] - 1 == dropped(store_stats(edge)["counters"])
        if policy == "reject_new":
            assert seqs[0] == 1
    finally:
        code = edge.stop()
        print(edge.log.read_text()[-4000:])  # shown when the test fails
        print(store_stats_text(data))
    assert code == 0
    assert "Traceback" not in edge.log.read_text()

    final = check_store_file(data)
    assert final["readings_in"] == final["last"], "every stored reading has its seq, none skipped"
    assert final["first"] - 1 == final.get("dropped_full", 0) + final.get("removed_acked", 0)
    if policy == "drop_oldest":
        assert final["dropped_full"] > 0
    else:
        assert final["rejected_full"] > 0 and final["first"] == 1


def test_max_bytes_retention_drops_are_counted_and_logged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    edge = start_edge(tmp_path, data, 'max_bytes = "1MiB"\n')
    try:
        eventually("max_bytes retention", lambda: store_stats(edge)["counters"].get("dropped_max_bytes", 0) > 0,
                   FILL_TIMEOUT)
        eventually("a second retention pass", lambda: len(events(edge, "retention_drop")) >= 2)
        stats = store_stats(edge)
        seqs = pull_seqs(edge, stats["last_seq"])
        assert seqs[0] >= stats["first_seq"]
        assert seqs == list(range(seqs[0], stats["last_seq"] + 1))
        assert not stats["full"]
    finally:
        code = edge.stop()
        print(edge.log.read_text()[-4000:])  # shown when the test fails
    assert code == 0
    final = check_store_file(data)
    assert final["first"] - 1 == final["dropped_max_bytes"]
    assert final["readings_in"] == final["last"]
    con = sqlite3.connect(data / "store.sqlite")
    try:
        logged = con.execute("SELECT data FROM events WHERE kind = 'retention_drop'").fetchall()
    finally:
        con.close()
    drops = [json.loads(d) for (d,) in logged]
    assert all(d["reason"] == "max_bytes" for d in drops)
    assert sum(d["count"] for d in drops) == final["dropped_max_bytes"], "every drop is in an event"
    # The drops are contiguous ranges from seq 1 on.
    assert [d["first_seq"] for d in drops] == [1] + [d["last_seq"] + 1 for d in drops[:-1]]


def fill(path: Path) -> None:
    """Another program takes the last byte of the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (MiB, 64 * 1024, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("policy", ["drop_oldest", "reject_new"])
def test_disk_filled_by_another_program(tmp_path: Path, policy: str) -> None:
    """SQLITE_FULL itself: the spare file gives the store the room to drop (or to refuse) and to checkpoint."""
    with tmpfs(tmp_path / "disk", 16 * MiB) as disk:
        store = Store.open(disk / "data", StoreOptions(full_policy=policy, commit_interval=0.01))
        try:
            n = 0

            def append(cycles: int) -> None:
                nonlocal n
                for _ in range(cycles):
                    store.append_nowait([Reading("plc", f"p{j}", float(n + j), time.time()) for j in range(100)])
                    n += 100
                store.flush_sync()

            append(300)
            fill(disk / "hog")
            assert free_bytes(disk) == 0
            before = store.stats_sync()
            append(300)
            full = store.stats_sync()
            assert full["full"]
            if policy == "drop_oldest":
                assert full["counters"]["dropped_full"] > 0
                assert full["last_seq"] == before["last_seq"] + 30_000, "every new reading stored"
            else:
                assert full["counters"]["rejected_full"] > 0
                assert full["last_seq"] + full["counters"]["rejected_full"] == before["last_seq"] + 30_000
            assert [e.kind for e in store.events_sync(kind="store_full")] == ["store_full"]
            if policy == "reject_new":
                # Acknowledged readings are still removed while full, and their room takes new readings.
                store.set_cursor_sync("consumer", full["last_seq"])
                store.maintain_sync()
                append(10)
                acked = store.stats_sync()
                assert acked["first_seq"] == full["last_seq"] + 1
                assert acked["last_seq"] == full["last_seq"] + 1000, "new readings fit where acked ones were"
                full = acked
            (disk / "hog").unlink()
            append(10)
            store.maintain_sync()
            resumed = store.stats_sync()
            assert not resumed["full"] and resumed["last_seq"] == full["last_seq"] + 1000
            assert (disk / "data" / "store.spare").exists(), "the spare file is back"
        finally:
            store.close()
        final = check_store_file(disk / "data")
        assert final["first"] - 1 == final.get("dropped_full", 0) + final.get("removed_acked", 0)
        assert final["last"] + final.get("rejected_full", 0) == n


def test_reject_new_applies_at_max_bytes(tmp_path: Path) -> None:
    """full_policy covers max_bytes too: reject_new keeps what is stored and refuses new readings until
    acknowledged readings make room again (drop_oldest drops the oldest instead, tested above)."""
    store = Store.open(tmp_path / "data", StoreOptions(full_policy="reject_new", max_bytes=256 * 1024,
                                                       commit_interval=0.01, maintenance_interval=3600.0))
    try:
        for i in range(200):  # one commit per poll cycle: a batch is checked before it is written
            store.append_nowait([Reading("plc", f"p{j}", float(i), time.time()) for j in range(100)])
            store.flush_sync()
        store.maintain_sync()
        full = store.stats_sync()
        assert full["full"] and full["first_seq"] == 1
        assert full["counters"]["rejected_full"] == 20_000 - full["last_seq"] > 0
        assert "dropped_max_bytes" not in full["counters"], "reject_new never drops stored readings"
        [event] = store.events_sync(kind="store_full")
        assert event.data is not None and event.data["why"] == "max_bytes reached"

        store.set_cursor_sync("consumer", full["last_seq"])  # everything acknowledged: room again
        store.maintain_sync()
        store.maintain_sync()
        assert not store.stats_sync()["full"]
        store.append_nowait([Reading("plc", "p0", 1.0, time.time())])
        assert store.flush_sync() == full["last_seq"] + 1, "the next seq follows on, refused ones got none"
    finally:
        store.close()


def test_readings_lost_to_a_write_error_are_counted(tmp_path: Path) -> None:
    """Not a full disk but a failing one (I/O error): the batch is lost, and every reading in it is counted."""
    store = Store.open(tmp_path / "data", StoreOptions(commit_interval=0.01))
    writer = store._writer
    try:
        store.append_nowait([Reading("plc", "p", 1.0, time.time())])
        assert store.flush_sync() == 1

        def failing(batch: list[Any], skip_readings: bool = False) -> list[Any]:
            raise sqlite3.OperationalError("disk I/O error")

        writer._transaction = failing  # type: ignore[method-assign]
        store.append_nowait([Reading("plc", "p", float(i), time.time()) for i in range(7)])
        with pytest.raises(sqlite3.OperationalError):
            store.flush_sync()
        del writer._transaction
        assert store.stats_sync()["counters"]["dropped_write_error"] == 7
        store.append_nowait([Reading("plc", "p", 2.0, time.time())])
        assert store.flush_sync() == 2, "the lost readings never had a seq"
    finally:
        store.close()


def test_full_disk_while_the_seq_reserve_is_renewed_is_a_full_store_not_a_lost_batch(tmp_path: Path) -> None:
    """The seq reserve file is on the same disk: failing to renew it is SQLITE_FULL's twin (full_policy applies)."""
    with tmpfs(tmp_path / "disk", 12 * MiB) as disk:
        store = Store.open(disk / "data", StoreOptions(seq_reserve=50, commit_interval=0.01))
        try:
            for _ in range(200):
                store.append_nowait([Reading("plc", f"p{j}", float(j), time.time()) for j in range(100)])
                store.flush_sync()
            fill(disk / "hog")
            before = store.stats_sync()["last_seq"]
            for _ in range(4):  # 30 readings cross the 50-seq reserve at least twice
                store.append_nowait([Reading("plc", "new", float(k), time.time()) for k in range(30)])
                store.flush_sync()
            full = store.stats_sync()
            assert full["full"] and full["last_seq"] == before + 120, "every new reading stored (drop_oldest)"
            assert "dropped_write_error" not in full["counters"] and full["counters"]["dropped_full"] > 0
        finally:
            store.close()
