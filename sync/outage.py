"""A peer's failures in words and in the log: the first failure loudly, repeats quietly, the recovery once."""

from __future__ import annotations

import logging
import ssl
import time

log = logging.getLogger("edge.sync")


def describe_error(e: BaseException) -> str:
    """A clear one-line reason for a failed connect."""
    cause = getattr(e, "certificate_error", None) or getattr(e, "os_error", None)  # aiohttp wraps these
    if isinstance(cause, BaseException) and cause is not e:
        return describe_error(cause)
    if isinstance(e, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed: {e.verify_message or e} "
                "(is ca_file the CA that signed the server's certificate, and does the url's host match it?)")
    if isinstance(e, ssl.SSLError):
        return f"TLS handshake failed: {e.reason or e} (a client certificate may be required or refused)"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the server running and listening on this port?)"
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"


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

    def resumed(self) -> None:
        """The peer answers again, but the streak goes on until it has lasted (see MqttLink.maintain): no current
        failure to show, and the next failure is logged at debug level as part of the same streak."""
        self.last_error = None

    def recovered(self, what: str, at: float | None = None) -> None:
        """End the streak; `at` (monotonic) is when it ended, if earlier than now (a connection that had to last)."""
        if self.failures:
            took = (time.monotonic() if at is None else at) - (self.since or time.monotonic())
            log.warning("sink %s: %s works again after %d failures in %.1f s", self.sink, what, self.failures, took)
        self.failures = 0
        self.since = None
        self.last_error = None
