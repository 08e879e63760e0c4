"""Human durations ("500ms", "1s", "5m", "30d") and sizes ("64MiB", "1GiB"): one parser, used everywhere."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE_UNITS = {
    "b": 1, "": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_duration(value: Any) -> float:
    """Seconds from "500ms", "1s", "5m", "1h30m", "30d", or a bare number of seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '500ms', '1s', '5m', '30d'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a duration >= 0")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration like '500ms', '1s', '5m', '30d'")
    text = value.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos and text[pos:m.start()].strip():
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"expected a duration like '500ms', '1s', '5m', '30d', found {value!r}")
    return total


def parse_size(value: Any) -> int:
    """Bytes from "64MiB", "1GiB", "500kB", "10M" (binary for bare K/M/G), or a bare number. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size like '64MiB', '1GiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a size >= 0")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size like '64MiB', '1GiB'")
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"expected a size like '64MiB', '1GiB', found {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def format_duration(seconds: float) -> str:
    """The shortest exact human form of a duration: 0.5 → '500ms', 300 → '5m'."""
    for unit in ("d", "h", "m", "s"):
        n = seconds / _DURATION_UNITS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{round(seconds * 1000)}ms"


def format_size(n: int) -> str:
    """A human size: 1073741824 → '1GiB'."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
"""A pydantic field type: seconds, accepting human durations."""

ByteSize = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]
"""A pydantic field type: bytes, accepting human sizes."""
