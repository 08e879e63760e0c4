"""A receiver that refuses everything (HTTP 401) does not flood the log: the first dead letter of the streak is
logged at ERROR in full, the others at debug level and summed up in one ERROR line per interval (and when the
sink stops); the sink's dead-letter count follows the store when the store drops the oldest."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sink_helpers import EDGE, FAST_COMMIT, SinkRunner, eventually, fill
from sink_peers import Receiver

import sync.dead_letter_log
from edge.store import Store, StoreOptions
from sync.http import HttpSink
from sync.http_config import HttpSinkConfig
from sync.registry import create_sink

SUMMARY = re.compile(r"sink erp: (\d+) more batches \((\d+) readings, seq (\d+)\.\.(\d+)\) refused and dead-lettered")


@pytest.fixture
async def refusing() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    r.responder = lambda req, i: (401, {})  # an expired token: every batch is refused for good
    yield r
    await r.stop()


def http_sink(store: Store, tmp_path: Path, url: str) -> HttpSink:
    sink = create_sink(HttpSinkConfig(name="erp", type="http", url=url, batch_max=10), edge_id=EDGE, store=store,
                       data_dir=str(tmp_path))
    assert isinstance(sink, HttpSink)
    return sink


def dead_letter_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "edge.sync" and r.levelno == level and "dead-lettered" in r.getMessage()]


def summarized(lines: list[str]) -> int:
    return sum(int(m.group(1)) for line in lines if (m := SUMMARY.search(line)))


async def test_one_error_line_for_a_streak_then_a_summary_when_the_sink_stops(
        store: Store, refusing: Receiver, runner: SinkRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync.dead_letter_log, "DEAD_LETTER_LOG_INTERVAL", 3600.0)
    caplog.set_level(logging.DEBUG, logger="edge.sync")
    seqs = await fill(store, 300)
    sink = http_sink(store, tmp_path, refusing.url)
    runner.start(sink)
    await eventually(lambda: store.cursor_sync("erp") == seqs[-1])
    assert store.dead_letter_count_sync("erp") == 30

    [first] = dead_letter_lines(caplog, logging.ERROR)  # not 30 of them
    assert f"seq {seqs[0]}..{seqs[9]} (10 readings) refused and dead-lettered: HTTP 401" in first
    assert "edge dead-letters list" in first
    assert len(dead_letter_lines(caplog, logging.DEBUG)) == 29  # each one is still there at debug level

    await runner.stop(sink)
    [_, summary] = dead_letter_lines(caplog, logging.ERROR)
    assert SUMMARY.search(summary) and f"29 more batches (290 readings, seq {seqs[10]}..{seqs[-1]})" in summary
    assert summary.endswith("error: HTTP 401: {\"ok\": false}"), summary


async def test_a_long_streak_is_summed_up_every_interval(
        store: Store, refusing: Receiver, runner: SinkRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync.dead_letter_log, "DEAD_LETTER_LOG_INTERVAL", 0.2)
    caplog.set_level(logging.INFO, logger="edge.sync")
    await fill(store, 300)
    runner.start(http_sink(store, tmp_path, refusing.url))

    def accounted() -> int:  # every dead letter is in a line at ERROR: in full, or in a summary
        lines = dead_letter_lines(caplog, logging.ERROR)
        return summarized(lines) + len([x for x in lines if not SUMMARY.search(x)])

    await eventually(lambda: accounted() == 30)  # without the sink stopping: the interval's summaries say it
    lines = dead_letter_lines(caplog, logging.ERROR)
    assert len(lines) < 30 and summarized(lines) > 0, lines


async def test_the_sinks_count_follows_the_store_dropping_the_oldest(
        tmp_path: Path, refusing: Receiver, runner: SinkRunner) -> None:
    store = Store.open(tmp_path / "data", StoreOptions(commit_interval=FAST_COMMIT, maintenance_interval=3600,
                                                       dead_letter_max_bytes=16 * 1024))
    sink = http_sink(store, tmp_path, refusing.url)
    try:
        seqs = await fill(store, 300)
        runner.start(sink)
        await eventually(lambda: store.cursor_sync("erp") == seqs[-1])
        assert sink.stats()["dead_letters"] == 30
        store.maintain_sync()  # the store keeps 16 KiB of them
        kept = store.dead_letter_count_sync("erp")
        assert 0 < kept < 30
        assert sink.stats()["dead_letters"] == kept  # at once, not only at the sink's next dead letter
        seqs = await fill(store, 10)
        await eventually(lambda: store.cursor_sync("erp") == seqs[-1])
        assert sink.stats()["dead_letters"] == kept + 1 == store.dead_letter_count_sync("erp")
    finally:
        await runner.stop(sink)
        await store.aclose()
