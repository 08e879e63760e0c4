"""OPC-UA DataValues to readings: value types, status code → quality, which timestamp is kept."""

from __future__ import annotations

import enum
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from drivers.opcua.config import OpcuaDevice, OpcuaPoint
from edge.reading import BAD, GOOD, UNCERTAIN, Reading, format_ts

_SEVERITY_MASK = 0xC0000000
_SEVERITY_UNCERTAIN = 0x40000000
_INFO_TYPE_MASK = 0x00000C00  # StatusCode bits 10-11 (OPC-UA Part 4, 7.39): 01 = the InfoBits are DataValue bits
_INFO_TYPE_DATA_VALUE = 0x00000400
_OVERFLOW = 0x00000080  # DataValue InfoBit 7: the monitored item's queue overflowed, values were discarded
OVERFLOW_NOTE = "the server's queue overflowed: values were lost before this one"


def status_name(code: ua.StatusCode | int | None) -> str:
    """The symbolic name of a status code, e.g. 'BadNodeIdUnknown' (a missing code is Good)."""
    if code is None:
        return "Good"
    value = code.value if isinstance(code, ua.StatusCode) else int(code)
    name, _ = ua.status_codes.get_name_and_doc(value & 0xFFFF0000)
    return name if name not in ("Good", "Uncertain", "Bad") or value == 0 else f"{name} (0x{value:08X})"


def quality_of(code: ua.StatusCode | None) -> str:
    """Good/Uncertain/Bad from the two severity bits of a status code (a missing code is Good)."""
    if code is None:
        return GOOD
    severity = code.value & _SEVERITY_MASK
    if severity == 0:
        return GOOD
    if severity == _SEVERITY_UNCERTAIN:
        return UNCERTAIN
    return BAD


def overflowed(code: ua.StatusCode | None) -> bool:
    """The Overflow InfoBit: the server discarded values of this monitored item before this one."""
    if code is None:
        return False
    return code.value & _INFO_TYPE_MASK == _INFO_TYPE_DATA_VALUE and bool(code.value & _OVERFLOW)


_NULLABLE_TEXT = (ua.VariantType.String, ua.VariantType.ByteString)


def _noted(error: str, note: str | None) -> str:
    return error if note is None else f"{error}; {note}"


def plain_value(value: Any) -> Any:
    """A JSON-ready value: numbers, bool, str; datetimes as RFC 3339; arrays as lists."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return format_ts(_epoch(value))
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""  # no text is an empty text, not a missing value
    if isinstance(value, ua.QualifiedName):
        return f"{value.NamespaceIndex}:{value.Name}"
    if isinstance(value, ua.NodeId):
        return value.to_string()
    if isinstance(value, ua.StatusCode):
        return status_name(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


# The latest timestamp a reading may carry: OPC-UA's "maximum" DateTime, 9999-12-31T23:59:59Z (the largest
# value it encodes; asyncua decodes anything beyond it to this), is a marker like the null DateTime, not a time.
_LAST_REAL_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def _real_epoch(dt: datetime | None) -> float | None:
    """The timestamp in seconds since the epoch, or None when it is missing or is no real time.

    Missing as well (our choice): the OPC-UA null DateTime (encoded 0, decoded as 1601-01-01T00:00:00Z, what a
    server or device sends for a timestamp it does not have), anything else at or before 1970-01-01T00:00:00Z
    (a Unix clock at 0, or earlier: no value read now was measured then), and the maximum DateTime marker. Such
    a timestamp is treated like an absent one, so the next configured timestamp (server, then local) is used.
    """
    if dt is None:
        return None
    ts = _epoch(dt)
    return ts if 0 < ts < _LAST_REAL_TS else None


class ReadingMaker:
    """Turns DataValues of one device's points into readings, per the device's timestamp choice."""

    def __init__(self, device: OpcuaDevice) -> None:
        self.device = device.name
        self._order = {
            "source": ("source", device.timestamp_fallback),
            "server": ("server", "local"),
            "local": ("local",),
        }[device.timestamp]

    def timestamp(self, dv: ua.DataValue, local: float) -> float:
        """The first available of the configured timestamps (local time is always available).

        A null or absurd timestamp (see _real_epoch) counts as not available.
        """
        for which in self._order:
            if which == "source" and (ts := _real_epoch(dv.SourceTimestamp)) is not None:
                return ts
            if which == "server" and (ts := _real_epoch(dv.ServerTimestamp)) is not None:
                return ts
        return local

    def reading(self, point: OpcuaPoint, dv: ua.DataValue | None, local: float | None = None) -> Reading:
        """One reading: Bad codes carry no value and the status name; Uncertain keeps the value.

        A value with the Overflow InfoBit (the server's queue for the item overflowed) is at best Uncertain, and
        its error says that values were lost.
        """
        now = time.time() if local is None else local
        if dv is None:
            return Reading.bad(self.device, point.name, "no value returned", now, point.unit)
        ts = self.timestamp(dv, now)
        quality = quality_of(dv.StatusCode)
        note = OVERFLOW_NOTE if overflowed(dv.StatusCode) else None
        if quality == BAD:
            return Reading.bad(self.device, point.name, _noted(status_name(dv.StatusCode), note), ts, point.unit)
        raw = dv.Value.Value if dv.Value is not None else None
        if raw is None and dv.Value is not None and dv.Value.VariantType in _NULLABLE_TEXT:
            raw = "" if dv.Value.VariantType == ua.VariantType.String else b""  # a null string is a legal value
        if raw is None:
            return Reading.bad(self.device, point.name, _noted("empty value (null variant)", note), ts, point.unit)
        error = status_name(dv.StatusCode) if quality == UNCERTAIN else None
        if note is not None:
            error = _noted(error, note) if error else note
            quality = UNCERTAIN
        if isinstance(raw, float) and not math.isfinite(raw):
            # as the Modbus driver does: uncertain, and still a number (the payload shows null), never the
            # text "nan" that plain_value() gives, which a deadband cannot compare with the next number
            error = f"not a finite number ({raw})" + (f"; {error}" if error else "")
            return Reading(self.device, point.name, raw, ts, UNCERTAIN, error, point.unit)
        return Reading(self.device, point.name, plain_value(raw), ts, quality, error, point.unit)
