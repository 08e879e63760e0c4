"""Reading values back into OPC-UA Variants for writes, typed like the node's current value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from edge.reading import parse_ts

_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOATS = (ua.VariantType.Float, ua.VariantType.Double)


def _scalar(value: Any, vt: ua.VariantType) -> Any:
    if vt == ua.VariantType.Boolean:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, found {value!r}")
        return value
    if vt in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not value.is_integer()  # also ±inf (int() would raise OverflowError)
        ):
            raise ValueError(f"expected an integer for {vt.name}, found {value!r}")
        lo, hi = _INT_RANGES[vt]
        if not lo <= int(value) <= hi:
            raise ValueError(f"{value} is out of range for {vt.name} ({lo}..{hi})")
        return int(value)
    if vt in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number for {vt.name}, found {value!r}")
        return float(value)
    if vt == ua.VariantType.String:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, found {value!r}")
        return value
    if vt == ua.VariantType.DateTime:
        if not isinstance(value, str):
            raise ValueError(f"expected an RFC 3339 timestamp string, found {value!r}")
        return datetime.fromtimestamp(parse_ts(value), UTC)
    raise ValueError(f"writing {vt.name} values is not supported")


def to_variant(value: Any, vt: ua.VariantType, is_array: bool) -> ua.Variant:
    """A Variant of type `vt` (an array when the node holds one) from a JSON-like value. Raises ValueError."""
    if is_array:
        if not isinstance(value, list):
            raise ValueError(f"expected an array for this {vt.name} array node, found {value!r}")
        return ua.Variant([_scalar(v, vt) for v in value], vt, is_array=True)
    return ua.Variant(_scalar(value, vt), vt)
