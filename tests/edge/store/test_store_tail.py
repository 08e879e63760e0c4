"""The writer's in-memory tail of committed readings: reads served from it equal reads from SQLite."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from edge.reading import GOOD, Reading
from edge.store import Store, StoreOptions

OPTIONS = StoreOptions(commit_interval=0.01, maintenance_interval=3600.0)


def key(r: Reading) -> tuple[Any, ...]:
    return (r.seq, r.device, r.point, r.value, r.quality, r.error, r.unit, r.ts)


def from_sqlite(store: Store, after: int, limit: int, upto: int | None = None) -> list[Reading]:
    writer = store._writer
    with writer.tail_lock:
        saved = list(writer.tail)
        writer.tail.clear()
    try:
        return store.read_sync(after, limit, upto)
    finally:
        with writer.tail_lock:
            writer.tail.extend(saved)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.open(tmp_path, OPTIONS)
    yield s
    s.close()


def test_tail_reads_equal_sqlite_reads(store: Store) -> None:
    for cycle in range(20):
        store.append_nowait([Reading(f"d{cycle % 3}", f"p{i}", cycle * 100 + i, 1000.0 + cycle, GOOD, None,
                                     "V" if i % 2 else None) for i in range(7)])
        if cycle % 4 == 0:
            store.flush_sync()
    store.flush_sync()
    assert store._writer.tail  # the readings are there to be taken
    last = store.durable_seq
    for after in (0, 1, 6, 7, 50, last - 1, last):
        for limit in (1, 5, 7, 13, 1000):
            for upto in (None, after + 3, last):
                got = store.read_sync(after, limit, upto)
                assert [key(r) for r in got] == [key(r) for r in from_sqlite(store, after, limit, upto)]


async def test_async_read_takes_the_tail(store: Store) -> None:
    store.append_nowait([Reading("d", f"p{i}", i, 1.0) for i in range(10)])
    store.flush_sync()
    got = await store.read(3, 4)
    assert [r.seq for r in got] == [4, 5, 6, 7]
    assert [key(r) for r in got] == [key(r) for r in from_sqlite(store, 3, 4)]


def test_values_sqlite_would_change_are_read_from_sqlite(store: Store) -> None:
    store.append_nowait([Reading("d", "nan", math.nan, 1.0), Reading("d", "json", (1, 2), 1.0),
                         Reading("d", "flag", True, 1.0)])
    store.flush_sync()
    got = {r.point: r.value for r in store.read_sync(0, 10)}
    assert got["nan"] is None and got["json"] == [1, 2] and got["flag"] is True


def test_a_reading_appended_twice_is_two_rows(store: Store) -> None:
    r = Reading("d", "p", 1, 1.0)
    store.append_nowait([r])
    store.flush_sync()
    store.append_nowait([r])
    store.flush_sync()
    assert [x.seq for x in store.read_sync(0, 10)] == [1, 2]


def test_reads_before_the_retained_rows_skip_what_was_dropped(store: Store) -> None:
    store.append_nowait([Reading("d", f"p{i}", i, 1.0) for i in range(10)])
    store.flush_sync()
    store.set_cursor_sync("c", 6)
    store.maintain_sync()  # removes seq 1..6, acknowledged by the only cursor
    assert [r.seq for r in store.read_sync(0, 10)] == [7, 8, 9, 10]
