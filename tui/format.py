"""Small text formatters shared by the screens: ages, sizes, values and unicode sparklines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
VALUE_DIGITS = 6  # significant digits shown for float values


def ago(ts: float | None, now: float) -> str:
    """'0.4s ago', '3m ago', '2h ago', or '—' when never."""
    if ts is None:
        return "—"
    age = max(0.0, now - ts)
    return f"{age:.1f}s ago" if age < 10 else f"{duration(age)} ago"


def duration(seconds: float | None) -> str:
    """'0s', '12s', '5m', '3h', '2d'."""
    if not seconds:
        return "0s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def size(n: float | None) -> str:
    """Bytes in binary units: '181 KiB', '256 MiB'."""
    if n is None:
        return "—"
    value = float(n)
    for unit in SIZE_UNITS:
        if value < 1024 or unit == SIZE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.0f} {SIZE_UNITS[-1]}"


def value(v: Any) -> str:
    """A reading's value for a table cell."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.{VALUE_DIGITS}g}"
    return str(v)


def sparkline(values: Sequence[float], width: int) -> str:
    """The last `width` values as unicode blocks, scaled between their min and max."""
    data = list(values)[-width:]
    if not data:
        return ""
    lo, hi = min(data), max(data)
    span = hi - lo
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[0 if span == 0 else round((x - lo) / span * top)] for x in data)


def numeric(v: Any) -> float | None:
    """A value usable in a sparkline (bools count as 0/1), or None."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    return None
