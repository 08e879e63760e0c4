"""Opening the store: a corrupt file is moved aside (never deleted), seqs are never reused, schema versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.reading import Reading
from edge.store import Store, StoreLocked, StoreOptions
from edge.store.schema import VERSION, SchemaTooNew

FAST = StoreOptions(commit_interval=0.01, seq_reserve=100)


def fill(store: Store, n: int) -> None:
    store.append_nowait([Reading("d", f"p{i}", float(i)) for i in range(n)])
    store.flush_sync()


def test_corrupt_store_is_moved_aside_and_seqs_continue(tmp_path: Path) -> None:
    store = Store.open(tmp_path, FAST)
    fill(store, 250)  # crosses two seq reservations of 100
    store.close()
    db = tmp_path / "store.sqlite"
    db.write_bytes(b"this is not a database" + db.read_bytes()[100:])
    store = Store.open(tmp_path, FAST)
    try:
        assert store.moved_aside is not None and store.moved_aside.exists()
        assert store.moved_aside.name.startswith("store.sqlite.corrupt-")
        events = {e.kind: e for e in store.events_sync()}
        assert "store_reset" in events and "seq_jump" in events
        fill(store, 3)
        seqs = [r.seq for r in store.read_sync(0, 10)]
        assert seqs[0] > 250 and seqs == list(range(seqs[0], seqs[0] + 3))
    finally:
        store.close()


def test_store_in_use_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path, FAST)
    try:
        with pytest.raises(StoreLocked, match="in use by another process"):
            Store.open(tmp_path, FAST)
    finally:
        store.close()


def test_schema_version_and_newer_schema_refused(tmp_path: Path) -> None:
    Store.open(tmp_path, FAST).close()
    con = sqlite3.connect(tmp_path / "store.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == VERSION
    con.execute(f"PRAGMA user_version = {VERSION + 1}")
    con.close()
    with pytest.raises(SchemaTooNew):
        Store.open(tmp_path, FAST)
    assert (tmp_path / "store.sqlite").exists()  # refused, not moved aside or touched


def test_readings_are_durable_and_visible_only_after_commit(tmp_path: Path) -> None:
    store = Store.open(tmp_path, StoreOptions(commit_interval=5.0))
    try:
        store.append_nowait([Reading("d", "p", 1.0)])
        assert store.read_sync(0, 10) == []  # queued, not yet committed: not served
        store.flush_sync()
        assert [r.value for r in store.read_sync(0, 10)] == [1.0]
    finally:
        store.close()
