"""Dead letters have a size budget of their own: beyond it the oldest are dropped (counted, one event and one
warning per maintenance pass); they never make max_bytes drop or refuse readings; their totals need no query."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from edge.reading import Reading
from edge.store import Store, StoreOptions
from edge.store.writer import dead_letter_footprint

MiB = 1024 * 1024
PAYLOAD = 64 * 1024  # bytes of one dead letter's payload (a batch of ~500 readings)


def letter() -> bytes:
    return os.urandom(PAYLOAD)


async def add_letters(store: Store, sink: str, n: int, start: int = 0) -> list[int]:
    """n dead letters of one sink, committed; their ids."""
    ids = await asyncio.gather(*(store.add_dead_letter(sink, (start + i) * 500 + 1, (start + i) * 500 + 500, 500,
                                                       "HTTP 401: token expired", letter()) for i in range(n)))
    await store.flush()
    return list(ids)


async def maintain(store: Store) -> None:
    await asyncio.get_running_loop().run_in_executor(None, store.maintain_sync)


def drop_events(store: Store) -> list[dict[str, object]]:
    return [e.data or {} for e in store.events_sync(kind="dead_letter_drop", limit=1000)]


def totals_by_query(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path / "store.sqlite")
    try:
        batches, readings = con.execute("SELECT count(*), coalesce(sum(count), 0) FROM dead_letters").fetchone()
    finally:
        con.close()
    return {"batches": batches, "readings": readings}


async def test_beyond_the_budget_the_oldest_are_dropped_counted_and_one_event_per_pass(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open(tmp_path, StoreOptions(commit_interval=0.02, maintenance_interval=3600,
                                              dead_letter_max_bytes=1 * MiB))
    try:
        caplog.set_level(logging.WARNING, logger="edge.store")
        ids = await add_letters(store, "erp", 40)  # ~2.6 MiB
        assert store.stats_sync()["dead_letters"]["bytes"] > 2 * MiB
        await maintain(store)

        kept = [x.id for x in store.dead_letters_sync(payloads=False)]
        dropped = len(ids) - len(kept)
        assert kept == ids[dropped:], "the oldest go first, the newest stay"
        dead = store.stats_sync()["dead_letters"]
        low_water = int(0.9 * MiB)  # dropped down to 90 % of the budget: not a drop every pass in a steady stream
        assert dead["bytes"] <= low_water < dead["bytes"] + dead_letter_footprint(PAYLOAD, 4096)  # not more
        assert dead["batches"] == len(kept) and dead["readings"] == 500 * len(kept) and dead["max_bytes"] == MiB
        counters = store.stats_sync()["counters"]
        assert counters["dead_letters_dropped"] == dropped and counters["dead_letter_readings_dropped"] == 500 * dropped
        [event] = drop_events(store)
        assert event == {"reason": "dead_letter_max_bytes", "count": dropped, "readings": 500 * dropped,
                         "bytes": event["bytes"], "first_id": ids[0], "last_id": ids[dropped - 1],
                         "max_bytes": MiB, "sinks": {"erp": dropped}}
        warnings = [r.getMessage() for r in caplog.records if "dead letters" in r.getMessage()]
        assert len(warnings) == 1 and f"id {ids[0]}..{ids[dropped - 1]}" in warnings[0]
        assert all(r.levelno == logging.WARNING for r in caplog.records if "dead letters" in r.getMessage())

        await maintain(store)  # within the budget now: no drop, no event
        assert len(drop_events(store)) == 1 and store.stats_sync()["counters"]["dead_letters_dropped"] == dropped

        more = await add_letters(store, "erp", 10, start=40)
        await maintain(store)
        _, second = drop_events(store)
        assert second["first_id"] == kept[0] and second["count"] == 10  # the next oldest, as many as came in
        assert [x.id for x in store.dead_letters_sync(payloads=False)] == (kept + more)[10:]
        total = store.stats_sync()["counters"]["dead_letters_dropped"]
        assert total == dropped + 10
    finally:
        await store.aclose()

    reopened = Store.open(tmp_path, StoreOptions(dead_letter_max_bytes=1 * MiB))  # counted for good
    try:
        assert reopened.stats_sync()["counters"]["dead_letters_dropped"] == total
        assert {k: v for k, v in reopened.stats_sync()["dead_letters"].items() if k != "bytes" and k != "max_bytes"} \
            == totals_by_query(tmp_path)
    finally:
        reopened.close()


async def test_dead_letters_do_not_make_max_bytes_drop_another_sinks_readings(tmp_path: Path) -> None:
    """The readings' max_bytes excludes the dead letters: 4 MiB of one sink's dead letters next to 0.3 MiB of
    readings another sink still needs, max_bytes 2 MiB: nothing of those readings is dropped."""
    store = Store.open(tmp_path, StoreOptions(commit_interval=0.02, maintenance_interval=3600, max_bytes=2 * MiB,
                                              dead_letter_max_bytes=8 * MiB))
    try:
        await store.register("plant", kind="sink", start=0)  # another sink, offline: it needs every reading
        await store.append([Reading("plc1", f"p{i % 30}", float(i), 1.7e9 + i, unit="degC") for i in range(5000)])
        await add_letters(store, "erp", 64)  # 4 MiB, within their own 8 MiB budget
        await maintain(store)
        stats = store.stats_sync()
        assert stats["counters"].get("dropped_max_bytes", 0) == 0, stats["counters"]
        assert stats["readings"] == 5000 and stats["first_seq"] == 1
        assert stats["dead_letters"]["batches"] == 64 and "dead_letters_dropped" not in stats["counters"]
    finally:
        await store.aclose()


async def test_dead_letters_do_not_make_reject_new_refuse_readings(tmp_path: Path) -> None:
    store = Store.open(tmp_path, StoreOptions(commit_interval=0.02, maintenance_interval=3600, max_bytes=2 * MiB,
                                              full_policy="reject_new", dead_letter_max_bytes=8 * MiB))
    try:
        await store.register("plant", kind="sink", start=0)
        await add_letters(store, "erp", 64)
        await store.append([Reading("plc1", "t", float(i), 1.7e9 + i) for i in range(1000)])
        await store.flush()
        stats = store.stats_sync()
        assert stats["readings"] == 1000 and not stats["full"]
        assert stats["counters"].get("rejected_full", 0) == 0
    finally:
        await store.aclose()


async def test_readings_beyond_max_bytes_are_still_dropped_with_dead_letters_around(tmp_path: Path) -> None:
    """The other way round: what max_bytes limits is the readings, whatever the dead letters take."""
    store = Store.open(tmp_path, StoreOptions(commit_interval=0.02, maintenance_interval=3600, max_bytes=1 * MiB,
                                              dead_letter_max_bytes=8 * MiB))
    try:
        await store.register("plant", kind="sink", start=0)
        await add_letters(store, "erp", 16)
        for k in range(10):
            await store.append([Reading("plc1", f"p{i % 30}", float(i), 1.7e9 + i, error="x" * 40)
                                for i in range(k * 5000, (k + 1) * 5000)])
        await store.flush()
        await maintain(store)
        stats = store.stats_sync()
        assert stats["counters"]["dropped_max_bytes"] > 0 and stats["dead_letters"]["batches"] == 16
    finally:
        await store.aclose()


async def test_totals_follow_every_change_without_a_query(tmp_path: Path) -> None:
    """stats and the per-sink count come from the writer's committed totals: right after adds, a delete and a
    drop, the same as a count over the table, and stats_sync runs no statement on the dead-letter table."""
    store = Store.open(tmp_path, StoreOptions(commit_interval=0.02, maintenance_interval=3600,
                                              dead_letter_max_bytes=2 * MiB))
    try:
        erp = await add_letters(store, "erp", 20)
        await add_letters(store, "plant", 20, start=20)
        assert store.dead_letter_count_sync("erp") == 20 and store.dead_letter_count_sync() == 40
        assert await store.delete_dead_letter(erp[5]) and not await store.delete_dead_letter(erp[5])
        await maintain(store)  # 39 letters of ~64 KiB against 2 MiB: the oldest erp ones go
        dead = store.stats_sync()["dead_letters"]
        assert {"batches": dead["batches"], "readings": dead["readings"]} == totals_by_query(tmp_path)
        con = sqlite3.connect(tmp_path / "store.sqlite")
        by_sink = dict(con.execute("SELECT sink, count(*) FROM dead_letters GROUP BY sink").fetchall())
        con.close()
        assert store.dead_letter_count_sync("erp") == by_sink.get("erp", 0)
        assert store.dead_letter_count_sync("plant") == by_sink["plant"]

        statements: list[str] = []
        store._reader().set_trace_callback(statements.append)  # this thread's reader connection
        store.stats_sync()
        store.dead_letter_count_sync("erp")
        assert statements and not [q for q in statements if "dead_letters" in q], statements
    finally:
        await store.aclose()


async def test_the_bytes_counted_are_the_pages_the_dead_letters_take(tmp_path: Path) -> None:
    """What the writer counts for the dead letters is what they add to the file's used pages (within 10 %),
    for small payloads kept in leaf pages and large ones spilling to overflow pages."""
    for size in (300, 3000, 30_000, 200_000):
        store = Store.open(tmp_path / str(size), StoreOptions(commit_interval=0.02, dead_letter_max_bytes=1 << 40))
        try:
            await store.flush()
            before = store._writer.used_bytes()
            n = max(20, 4 * MiB // size)
            await asyncio.gather(*(store.add_dead_letter("erp", i * 100 + 1_000_000, i * 100 + 1_000_099, 100,
                                                         "HTTP 400: bad request", os.urandom(size))
                                   for i in range(n)))
            await store.flush()
            grown = store._writer.used_bytes() - before
            counted = store.stats_sync()["dead_letters"]["bytes"]
            assert 0.9 * grown <= counted <= 1.1 * grown, (size, grown, counted)
        finally:
            await store.aclose()


def test_a_store_reopened_counts_what_it_holds_and_drops_at_a_lower_budget(tmp_path: Path) -> None:
    async def fill() -> None:
        store = Store.open(tmp_path, StoreOptions(dead_letter_max_bytes=64 * MiB))
        try:
            await add_letters(store, "erp", 30)
        finally:
            await store.aclose()

    asyncio.run(fill())
    store = Store.open(tmp_path, StoreOptions(maintenance_interval=3600, dead_letter_max_bytes=1 * MiB))
    try:
        assert store.stats_sync()["dead_letters"]["batches"] == 30  # counted at open
        store.maintain_sync()
        stats = store.stats_sync()
        assert stats["dead_letters"]["bytes"] <= MiB and stats["counters"]["dead_letters_dropped"] > 0
        [event] = store.events_sync(kind="dead_letter_drop")
        assert event.data is not None and event.data["first_id"] == 1 and event.data["sinks"] == {"erp": 16}
        assert event.message.startswith("16 oldest dead letters (8000 readings, ")
    finally:
        store.close()
