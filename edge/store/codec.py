"""Turning readings into store rows and back: value kinds and quality packed into one flags integer."""

from __future__ import annotations

import json
from typing import Any

from edge.reading import BAD, GOOD, UNCERTAIN, Reading

Q_CODE = {GOOD: 0, UNCERTAIN: 1, BAD: 2}
Q_NAME = (GOOD, UNCERTAIN, BAD)
KIND_PLAIN = 0
KIND_BOOL = 4  # 1 << 2
KIND_JSON = 8  # 2 << 2

SQLITE_INT_MIN, SQLITE_INT_MAX = -(2**63), 2**63 - 1  # larger ints are kept as JSON text (read back exactly)

Row = tuple[int, float, int, Any, int, str | None]  # seq, ts, series, value, flags, error


def encode_value(value: Any) -> tuple[Any, int]:
    """(value as SQLite stores it, kind bits)."""
    t = type(value)
    if t is float or t is str or value is None:
        return value, KIND_PLAIN
    if t is int:
        return (value, KIND_PLAIN) if SQLITE_INT_MIN <= value <= SQLITE_INT_MAX else (str(value), KIND_JSON)
    if t is bool:
        return int(value), KIND_BOOL
    if isinstance(value, int):  # subclasses (IntEnum...)
        return encode_value(int(value))
    if isinstance(value, float | str):
        return value, KIND_PLAIN
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex(), KIND_PLAIN
    return json.dumps(value, default=str, separators=(",", ":")), KIND_JSON


def decode_value(value: Any, flags: int) -> Any:
    kind = flags & 12
    if kind == KIND_PLAIN:
        return value
    if kind == KIND_BOOL:
        return bool(value)
    return json.loads(value)


def row_to_reading(row: Row, series: dict[int, tuple[str, str, str | None]]) -> Reading:
    seq, ts, sid, value, flags, error = row
    device, point, unit = series[sid]
    return Reading(device, point, decode_value(value, flags), ts, Q_NAME[flags & 3], error, unit, seq)
