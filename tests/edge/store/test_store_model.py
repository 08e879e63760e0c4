"""Property test: the store against a simple in-memory model, through random sequences of operations.

Operations: append, read, ack (consumer cursors), retention (max_bytes, max_age), close-and-reopen.
Checked: seqs strictly increasing and contiguous, order and content preserved, nothing acknowledged by
every cursor is returned again, nothing unacknowledged is lost except by retention that was counted.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.reading import BAD, GOOD, UNCERTAIN, Reading
from edge.store import Store, StoreOptions

OPTIONS = StoreOptions(commit_interval=0.01, maintenance_interval=3600.0, max_age=10 * 365 * 86400.0)
NOW = time.time()

values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=20),
    st.none(),
    st.lists(st.integers(-1000, 1000), max_size=4),
)
readings = st.builds(
    lambda dev, point, value, q, age, unit: Reading(dev, point, value, NOW - age,
                                                     BAD if value is None else q,
                                                     "boom" if value is None else None, unit),
    st.sampled_from(["plc1", "plc2", "line-3"]),
    st.sampled_from(["t", "p", "flow.rate"]),
    values,
    st.sampled_from([GOOD, UNCERTAIN]),
    st.floats(min_value=0, max_value=1000),
    st.sampled_from([None, "degC", "bar"]),
)


def key(r: Reading) -> tuple[Any, ...]:
    return (r.device, r.point, r.value, r.quality, r.error, r.unit, r.ts)


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="edge-store-model-")
        self.store = Store.open(self.dir, OPTIONS)
        self.model: dict[int, tuple[Any, ...]] = {}  # seq -> content, for everything ever appended
        self.last_seq = 0
        self.first = 1  # lowest seq the store may still hold
        self.cursors: dict[str, int] = {}
        self.dropped_seen = 0  # counted retention drops so far

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- operations -----------------------------------------------------------------------------------

    @rule(batch=st.lists(readings, min_size=1, max_size=30))
    def append(self, batch: list[Reading]) -> None:
        contents = [key(r) for r in batch]
        self.store.append_nowait(batch)
        self.store.flush_sync()
        seqs = [r.seq for r in batch]
        assert seqs == list(range(self.last_seq + 1, self.last_seq + 1 + len(batch))), seqs
        for s, c in zip(seqs, contents, strict=True):
            self.model[s] = c
        self.last_seq = seqs[-1]

    @rule(after=st.integers(0, 400), limit=st.integers(1, 50))
    def read(self, after: int, limit: int) -> None:
        got = self.store.read_sync(after, limit)
        seqs = [r.seq for r in got]
        start = max(after + 1, self.first)
        expected = list(range(start, min(self.last_seq, start + limit - 1) + 1))
        assert seqs == expected, (after, limit, seqs[:5], expected[:5])
        for r in got:
            assert key(r) == self.model[r.seq]

    @precondition(lambda self: self.last_seq > 0)
    @rule(consumer=st.sampled_from(["central", "historian"]), frac=st.floats(0, 1))
    def ack(self, consumer: str, frac: float) -> None:
        seq = int(self.last_seq * frac)
        stored = self.store.set_cursor_sync(consumer, seq)
        assert stored == seq
        self.cursors[consumer] = seq
        self._maintain_and_check()

    @rule(consumer=st.sampled_from(["central", "historian"]))
    def unregister(self, consumer: str) -> None:
        fut = self.store._call("drop_cursor", consumer)
        assert fut.result(10) == (consumer in self.cursors)
        self.cursors.pop(consumer, None)

    @rule(fraction=st.floats(0.1, 0.9))
    def retention_by_size(self, fraction: float) -> None:
        writer = self.store._writer
        writer.opt = dataclasses.replace(OPTIONS, max_bytes=int(writer.used_bytes() * fraction))
        try:
            self._maintain_and_check()
        finally:
            writer.opt = OPTIONS

    @rule(max_age=st.floats(1, 1000))
    def retention_by_age(self, max_age: float) -> None:
        writer = self.store._writer
        writer.opt = dataclasses.replace(OPTIONS, max_age=max_age + (time.time() - NOW))
        try:
            self._maintain_and_check()
        finally:
            writer.opt = OPTIONS

    @rule()
    def close_and_reopen(self) -> None:
        self.store.close()
        self.store = Store.open(self.dir, OPTIONS)
        assert self.store.durable_seq == self.last_seq
        stats = self.store.stats_sync()
        assert stats["first_seq"] == self.first
        assert {n: c["seq"] for n, c in stats["cursors"].items()} == self.cursors

    # -- checks ---------------------------------------------------------------------------------------

    def _maintain_and_check(self) -> None:
        before = self.first
        first = self.store.maintain_sync()
        counters = self.store.stats_sync()["counters"]
        dropped = sum(v for k, v in counters.items() if k.startswith("dropped_"))
        acked_by_all = min(self.cursors.values()) if self.cursors else 0
        removed = first - before
        removed_acked = max(0, min(acked_by_all, first - 1) - before + 1)
        # Every row that left the store unacknowledged was counted as a retention drop.
        assert dropped - self.dropped_seen == removed - removed_acked, (dropped, self.dropped_seen, removed,
                                                                       removed_acked)
        # Nothing acknowledged by every cursor is served again.
        if self.cursors:
            assert first > acked_by_all or first > self.last_seq
        self.dropped_seen = dropped
        self.first = first

    @invariant()
    def contiguous(self) -> None:
        stats = self.store.stats_sync()
        assert stats["last_seq"] == self.last_seq
        assert stats["first_seq"] == self.first
        assert stats["readings"] == max(0, self.last_seq - self.first + 1)


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
