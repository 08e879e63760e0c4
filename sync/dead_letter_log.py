"""A sink's dead letters in the log: the first of a streak in full, then one summary per interval.

A receiver that refuses everything (an expired token: HTTP 401 to every batch) dead-letters several batches
a second. One ERROR line each would bury the rest of the log, so the first dead letter of a streak is logged
at ERROR with all its details, the next ones at debug level, and every DEAD_LETTER_LOG_INTERVAL seconds one
ERROR line sums them up (how many, their readings and seq range, the last error). An interval without a new
dead letter ends the streak: the next one is logged in full again. The dead letters themselves are all in the
store (`edge dead-letters list`); the log says that they happen, and why.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("edge.sync")

DEAD_LETTER_LOG_INTERVAL = 60.0  # s: a streak of dead letters is summarized at most this often


class DeadLetterLog:
    """Logs one sink's dead letters without flooding."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self._timer: asyncio.TimerHandle | None = None  # set while a streak is open
        self._since = 0.0  # monotonic time of the last line at ERROR
        self._reset()

    def _reset(self) -> None:
        self.batches = 0  # dead letters since the last line at ERROR, not in it yet
        self.readings = 0
        self.first_seq = 0
        self.last_seq = 0
        self.last_error = ""
        self.errors_differ = False

    def refused(self, first_seq: int, last_seq: int, count: int, error: str) -> None:
        """A message was dead-lettered (call on the event loop)."""
        if self._timer is None:
            log.error("sink %s: seq %d..%d (%d readings) refused and dead-lettered: %s (kept in the store: "
                      "`edge dead-letters list`; more of this sink's dead letters are summarized every %.0f s)",
                      self.sink, first_seq, last_seq, count, error, DEAD_LETTER_LOG_INTERVAL)
            self._arm()
            return
        log.debug("sink %s: seq %d..%d (%d readings) refused and dead-lettered: %s", self.sink, first_seq,
                  last_seq, count, error)
        if self.batches and error != self.last_error:
            self.errors_differ = True
        self.first_seq = first_seq if self.batches == 0 else min(self.first_seq, first_seq)
        self.batches += 1
        self.readings += count
        self.last_seq = max(self.last_seq, last_seq)
        self.last_error = error

    def _arm(self) -> None:
        self._since = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(DEAD_LETTER_LOG_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.batches:  # the streak goes on: sum up, and keep summarizing
            self.flush()
            self._arm()

    def flush(self) -> None:
        """Log the summary of the dead letters not logged at ERROR yet, if any."""
        if not self.batches:
            return
        errors = "errors varied, the last" if self.errors_differ else "error"
        log.error("sink %s: %d more batches (%d readings, seq %d..%d) refused and dead-lettered in the last "
                  "%.0f s; %s: %s", self.sink, self.batches, self.readings, self.first_seq, self.last_seq,
                  time.monotonic() - self._since, errors, self.last_error)
        self._reset()

    def close(self) -> None:
        """Sum up what is pending now and end the streak (the sink stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
