"""The daemon's logging setup keeps libraries' per-request noise out of the journal."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from edge import logs


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("pymodbus", "asyncua")})
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_pymodbus_errors_stay_out_unless_debugging(restored: None) -> None:
    """pymodbus logs each timeout at ERROR with frame dumps; setup() had raised its level to WARNING only."""
    logs.setup("info")
    assert not logging.getLogger("pymodbus").isEnabledFor(logging.ERROR)
    assert logging.getLogger("asyncua").isEnabledFor(logging.WARNING)
    logs.setup("debug")
    assert logging.getLogger("pymodbus").isEnabledFor(logging.WARNING)
