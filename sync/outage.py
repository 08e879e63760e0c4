"""Logging of a peer's failures: the first failure loudly, repeats quietly, the recovery once."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("edge.sync")


class OutageLog:
    """Tracks one failure streak of a sink's peer and logs it without flooding."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.failures = 0
        self.since: float | None = None
        self.last_error: str | None = None

    def failed(self, what: str, error: str) -> None:
        self.last_error = f"{what}: {error}"
        if self.failures == 0:
            self.since = time.monotonic()
            log.warning("sink %s: %s failed: %s (retrying with backoff; repeats are logged at debug level)",
                        self.sink, what, error)
        else:
            log.debug("sink %s: %s failed again (%d): %s", self.sink, what, self.failures + 1, error)
        self.failures += 1

    def recovered(self, what: str) -> None:
        if self.failures:
            took = time.monotonic() - (self.since or time.monotonic())
            log.warning("sink %s: %s works again after %d failures in %.1f s", self.sink, what, self.failures, took)
        self.failures = 0
        self.since = None
        self.last_error = None
