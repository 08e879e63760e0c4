"""Store settings with their defaults, in one place."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3
DAY = 86400.0
DEAD_LETTER_SHARE = 10  # without dead_letter_max_bytes, dead letters get 1/10 of max_bytes on top of it


@dataclass(frozen=True)
class StoreOptions:
    max_bytes: int = 1 * GiB  # retention by size: oldest readings are dropped (counted) beyond this
    max_age: float = 30 * DAY  # retention by age for readings no sink or consumer still needs
    full_policy: str = "drop_oldest"  # drop_oldest | reject_new, when max_bytes or the disk is full
    commit_interval: float = 0.1  # readings become durable (one fsync) in batches at most this far apart
    max_pending: int = 100_000  # readings queued for the writer before append() waits (backpressure)
    max_batch: int = 100_000  # readings per transaction at most (bounds memory and commit time)
    maintenance_interval: float = 1.0  # how often acknowledged rows are removed and retention applied
    gc_chunk: int = 200_000  # rows deleted per maintenance transaction at most
    max_events: int = 10_000  # the event log keeps this many newest events
    seq_reserve: int = 1_000_000  # seqs reserved ahead in a side file so a store reset never reuses one
    # The dead letters' own size budget, apart from max_bytes (which is the readings' budget): the oldest
    # dead letters are dropped (counted, one event per maintenance pass) beyond it. None: max_bytes / 10.
    dead_letter_max_bytes: int | None = None

    @property
    def dead_letter_budget(self) -> int:
        """The bytes dead letters may take (dead_letter_max_bytes, or its default share of max_bytes)."""
        if self.dead_letter_max_bytes is not None:
            return self.dead_letter_max_bytes
        return self.max_bytes // DEAD_LETTER_SHARE
