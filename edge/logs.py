"""Process logging: one line per record, journald-friendly (syslog priority prefixes under systemd)."""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s %(levelname)s: %(message)s" if journal else "%(asctime)s %(name)s %(levelname)s: %(message)s"
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
            return "\n".join(prefix + line for line in text.splitlines())
        return text


def setup(level: str = "info") -> None:
    """Configure the root logger once; under systemd (JOURNAL_STREAM set) lines carry <N> priorities."""
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncua", "aiohttp.access", "bleak", "zeroconf"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # pymodbus logs every timeout at ERROR with frame dumps of the whole bus; the Modbus driver reports each
    # failure itself, once. Only log_level = "debug" lets its warnings through.
    logging.getLogger("pymodbus").setLevel(logging.WARNING if root.level <= logging.DEBUG else logging.CRITICAL)
