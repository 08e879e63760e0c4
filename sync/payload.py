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
        return self._head + ",".join(self._reading(r) for r in readings).encode() + b"]}"

    def encode_many(self, batches: Iterable[Sequence[Reading]]) -> list[bytes]:
        return [self.encode(b) for b in batches]

    def _reading(self, r: Reading) -> str:
        key = (r.device, r.point, r.unit)
        frag = self._series.get(key)
        if frag is None:
            frag = self._fragments(key)
        ms = round(r.ts * 1000)
        secs, msec = divmod(ms, 1000)
        if secs != self._second:
            self._second = secs
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        v = r.value
        t = type(v)
        if t is float:
            value = repr(v) if math.isfinite(v) else "null"
        elif t is int:
            value = str(v)
        elif v is None:
            value = "null"
        else:
            value = _json_value(v)
        tail = frag[1]
        if r.quality != GOOD:
            tail = ',"quality":' + _dumps(r.quality) + frag[1][len(',"quality":"good"'):]
        if r.error is not None:
            tail += ',"error":' + _dumps(r.error)
        return f'{{"seq":{r.seq},{frag[0]},"ts":"{self._second_text}.{msec:03d}Z","value":{value}{tail}}}'

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
