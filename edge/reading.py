"""The reading: one value of one point at one time, with its quality; what flows driver → store → sink."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any, Final

GOOD: Final = "good"
UNCERTAIN: Final = "uncertain"
BAD: Final = "bad"
QUALITIES: Final = (GOOD, UNCERTAIN, BAD)


class Reading:
    """One reading. `seq` is 0 until the store assigns it; `ts` is seconds since the epoch (UTC).

    Plain slotted class, not a dataclass: millions are made per minute and construction cost matters.
    """

    __slots__ = ("device", "error", "point", "quality", "seq", "ts", "unit", "value")

    def __init__(
        self,
        device: str,
        point: str,
        value: Any,
        ts: float | None = None,
        quality: str = GOOD,
        error: str | None = None,
        unit: str | None = None,
        seq: int = 0,
    ) -> None:
        self.device = device
        self.point = point
        self.value = value
        self.ts = time.time() if ts is None else ts
        self.quality = quality
        self.error = error
        self.unit = unit
        self.seq = seq

    @classmethod
    def bad(cls, device: str, point: str, error: str, ts: float | None = None, unit: str | None = None) -> Reading:
        """A reading that failed: no value, the reason in `error`."""
        return cls(device, point, None, ts, BAD, error, unit)

    def replace(self, **changes: Any) -> Reading:
        """A copy with some fields changed (for transforms that fan out)."""
        r = Reading(self.device, self.point, self.value, self.ts, self.quality, self.error, self.unit, self.seq)
        for k, v in changes.items():
            setattr(r, k, v)
        return r

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape of one reading."""
        d: dict[str, Any] = {
            "seq": self.seq,
            "device": self.device,
            "point": self.point,
            "ts": format_ts(self.ts),
            "value": self.value if type(self.value) is not float or math.isfinite(self.value) else None,
            "quality": self.quality,
        }
        if self.unit is not None:
            d["unit"] = self.unit
        if self.error is not None:
            d["error"] = self.error
        return d

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reading):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return (
            f"Reading({self.device!r}, {self.point!r}, {self.value!r}, ts={self.ts!r}, "
            f"quality={self.quality!r}, error={self.error!r}, unit={self.unit!r}, seq={self.seq})"
        )


def format_ts(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-21T22:45:00.123Z."""
    ms = round(ts * 1000)
    secs, msec = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{msec:03d}Z"


def parse_ts(text: str) -> float:
    """Inverse of format_ts (accepts any RFC 3339 timestamp)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()
