"""Values and objects the store must take without losing anything else: ints beyond SQLite's 64 bits, text
SQLite refuses, a Reading object appended again, a batch that fails. Every other reading in the batch stays."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge.reading import BAD, GOOD, Reading
from edge.store import Store, StoreOptions
from sync.payload import PayloadEncoder


@pytest.fixture
def store(tmp_path: Path) -> Any:
    st = Store.open(tmp_path / "data", StoreOptions(commit_interval=0.01))
    yield st
    st.close()


def test_ints_beyond_64_bits_are_stored_exactly_and_cost_nothing_else(store: Store) -> None:
    values = [2**64 - 1, 2**63, -(2**63) - 1, 2**63 - 1, -(2**63), 10**30]
    store.append_nowait([Reading("meter", f"e{i}", v, 1000.0) for i, v in enumerate(values)]
                        + [Reading("plc", "t", 21.5, 1000.0)])
    assert store.flush_sync() == len(values) + 1
    back = store.read_sync(0, 100)
    assert [r.value for r in back] == [*values, 21.5] and all(r.quality == GOOD for r in back)
    assert [type(r.value) for r in back[:-1]] == [int] * len(values)
    message = json.loads(PayloadEncoder("e").encode(back))
    assert [r["value"] for r in message["readings"]] == [*values, 21.5]
    assert "dropped_write_error" not in store.stats_sync()["counters"]


def test_text_sqlite_refuses_becomes_a_bad_reading_and_the_batch_is_kept(store: Store) -> None:
    store.append_nowait([Reading("plc", "a", 1.0, 1000.0), Reading("ble", "name", "ab\udcff", 1000.0),
                         Reading("plc", "b", 2.0, 1000.0, error="odd \udc80 error", quality="uncertain")])
    assert store.flush_sync() == 3
    a, name, b = store.read_sync(0, 10)
    assert (a.value, b.value) == (1.0, 2.0)
    assert name.quality == BAD and name.value is None and "unstorable value 'ab\\udcff'" in (name.error or "")
    assert (b.quality, b.error) == ("uncertain", "odd \\udc80 error")  # its error text, escaped
    json.loads(PayloadEncoder("e").encode([a, name, b]))


def test_an_object_appended_again_keeps_its_seq_and_readers_miss_nothing(store: Store) -> None:
    again = Reading("plc", "x", 1.0, 1000.0)
    store.append_nowait([Reading("plc", "a", 0.0, 1000.0), again])
    assert store.flush_sync() == 2
    release = threading.Event()
    store.append_nowait([Reading("plc", "c", 3.0, 1000.0), Reading("plc", "d", 4.0, 1000.0), again])
    store.block_writer(release)  # the writer holds the batch uncommitted while we read
    time.sleep(0.2)
    try:
        page = store.read_sync(0, 10)
        assert [(r.point, r.seq) for r in page] == [("a", 1), ("x", 2)], "nothing uncommitted, nothing changed"
    finally:
        release.set()
    assert store.flush_sync() == 5
    assert again.seq == 2
    assert [(r.point, r.seq) for r in store.read_sync(2, 10)] == [("c", 3), ("d", 4), ("x", 5)]


def test_a_failed_batch_takes_its_seqs_back_and_its_loss_is_counted_durably(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data", StoreOptions(commit_interval=0.01))
    writer = store._writer
    try:
        store.append_nowait([Reading("plc", "a", 0.0, 1000.0)])
        assert store.flush_sync() == 1
        real = writer._op_append

        def failing(readings: list[Reading]) -> int:
            real(readings)
            raise sqlite3.OperationalError("disk I/O error")

        writer._op_append = failing  # type: ignore[method-assign]
        lost = [Reading("plc", "b", float(i), 1000.0) for i in range(3)]
        store.append_nowait(lost)
        with pytest.raises(sqlite3.OperationalError):
            store.flush_sync()
        del writer._op_append
        assert [r.seq for r in lost] == [0, 0, 0], "the seqs they had in the failed attempt are given again"
        store.append_nowait([Reading("plc", "c", 1.0, 1000.0)])
        assert store.flush_sync() == 2
    finally:
        store.close()
    reopened = Store.open(tmp_path / "data", StoreOptions())
    try:
        assert reopened.stats_sync()["counters"]["dropped_write_error"] == 3
    finally:
        reopened.close()
