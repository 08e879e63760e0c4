"""The contract's message JSON, `{"edge": ..., "readings": [...]}`, encoded fast for large backlogs.

Equivalent to `json.dumps({"edge": edge, "readings": [r.to_dict() for r in readings]})` (same keys and
values), but it caches each series' JSON fragment and each second's timestamp prefix, which makes it
several times faster: a backlog drain spends most of its time here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from edge.reading import GOOD, Reading

SERIES_CACHE_MAX = 100_000  # series fragments kept; cleared (not evicted one by one) when exceeded

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class PayloadEncoder:
    """Encodes batches of readings of one edge into the contract's message bytes."""

    def __init__(self, edge_id: str) -> None:
        self.edge_id = edge_id
        self._head = ('{"edge":' + _dumps(edge_id) + ',"readings":[').encode()
        self._series: dict[tuple[str, str, str | None], tuple[str, str]] = {}
        self._second = -1
        self._second_text = ""

    def encode(self, readings: Sequence[Reading]) -> bytes:
        """The message for these readings (in the order given)."""
        # One loop with locals rather than a call per reading, and the timestamp text computed once per
        # distinct ts (all readings of a poll cycle share it): this runs for every reading delivered.
        series = self._series
        parts: list[str] = []
        append = parts.append
        last_ts: float | None = None
        ts_text = ""
        for r in readings:
            frag = series.get((r.device, r.point, r.unit))
            if frag is None:
                frag = self._fragments((r.device, r.point, r.unit))
            ts = r.ts
            if ts != last_ts:
                last_ts = ts
                ts_text = self._ts_text(ts)
            v = r.value
            t = type(v)
            if t is int:
                value = str(v)
            elif t is float:
                value = repr(v) if math.isfinite(v) else "null"
            elif v is None:
                value = "null"
            else:
                value = _json_value(v)
            if r.quality == GOOD and r.error is None:
                append(f'{{"seq":{r.seq},{frag[0]},"ts":"{ts_text}","value":{value}{frag[1]}}}')
            else:
                append(self._odd_reading(r, frag, ts_text, value))
        return self._head + ",".join(parts).encode() + b"]}"

    def encode_many(self, batches: Iterable[Sequence[Reading]]) -> list[bytes]:
        return [self.encode(b) for b in batches]

    def _ts_text(self, ts: float) -> str:
        ms = round(ts * 1000)
        secs, msec = divmod(ms, 1000)
        if secs != self._second:
            self._second = secs
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        return f"{self._second_text}.{msec:03d}Z"

    @staticmethod
    def _odd_reading(r: Reading, frag: tuple[str, str], ts_text: str, value: str) -> str:
        """A reading that is not good or carries an error."""
        tail = frag[1]
        if r.quality != GOOD:
            tail = ',"quality":' + _dumps(r.quality) + frag[1][len(',"quality":"good"'):]
        if r.error is not None:
            tail += ',"error":' + _dumps(r.error)
        return f'{{"seq":{r.seq},{frag[0]},"ts":"{ts_text}","value":{value}{tail}}}'

    def _fragments(self, key: tuple[str, str, str | None]) -> tuple[str, str]:
        if len(self._series) >= SERIES_CACHE_MAX:
            self._series.clear()
        device, point, unit = key
        head = f'"device":{_dumps(device)},"point":{_dumps(point)}'
        tail = ',"quality":"good"' + ("" if unit is None else f',"unit":{_dumps(unit)}')
        self._series[key] = (head, tail)
        return head, tail


def _json_value(v: Any) -> str:
    try:
        return _dumps(v)
    except ValueError:  # NaN/inf inside a structure: JSON has no such numbers
        return _dumps(_finite(v))
    except TypeError:
        return _dumps(str(v))


def _finite(v: Any) -> Any:
    """v with every non-finite float replaced by None (JSON null)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v
