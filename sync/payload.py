"""The contract's message JSON, `{"edge": ..., "readings": [...]}`, encoded fast for large backlogs.

Equivalent to `json.dumps({"edge": edge, "readings": [r.to_dict() for r in readings]})` (same keys and
values), but it caches each series' JSON fragment and each second's timestamp prefix, which makes it
several times faster: a backlog drain spends most of its time here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
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
        self._clock = (-1, "")  # (a second since the epoch, its text): one attribute, so replaced atomically

    def encode(self, readings: Sequence[Reading]) -> bytes:
        """The message for these readings (in the order given)."""
        series = self._series
        second, second_text = self._clock
        parts: list[str] = []
        append = parts.append
        for r in readings:
            frag = series.get((r.device, r.point, r.unit))
            if frag is None:
                frag = self._fragments((r.device, r.point, r.unit))
            secs, msec = divmod(round(r.ts * 1000), 1000)
            if secs != second:
                second = secs
                second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
            v = r.value
            t = type(v)
            if t is float:
                value = repr(v) if v - v == 0 else "null"  # NaN and ±inf are not JSON
            elif t is int:
                value = str(v)
            elif v is None:
                value = "null"
            else:
                value = _json_value(v)
            tail = frag[1]
            if r.quality != GOOD or r.error is not None:
                tail = self._odd_tail(r, tail)
            append(f'{{"seq":{r.seq},{frag[0]},"ts":"{second_text}.{msec:03d}Z","value":{value}{tail}}}')
        self._clock = (second, second_text)
        return self._head + ",".join(parts).encode() + b"]}"

    @staticmethod
    def _odd_tail(r: Reading, tail: str) -> str:
        """The tail of a reading that is not good or carries an error."""
        if r.quality != GOOD:
            tail = ',"quality":' + _dumps(r.quality) + tail[len(',"quality":"good"'):]
        if r.error is not None:
            tail += ',"error":' + _dumps(r.error)
        return tail

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
