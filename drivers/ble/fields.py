"""Byte fields: the Modbus type names (plus int8/uint8/int24/uint24) decoded from and encoded to BLE bytes."""

from __future__ import annotations

import math
import struct
from typing import Final, Literal

FieldType = Literal[
    "bool", "int8", "uint8", "int16", "uint16", "int24", "uint24", "int32", "uint32",
    "int64", "uint64", "float32", "float64", "string",
]
ByteOrder = Literal["big", "little"]

FIELD_SIZES: Final[dict[str, int]] = {
    "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int24": 3, "uint24": 3,
    "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "float32": 4, "float64": 8,
}
FLOAT_FORMATS: Final[dict[str, str]] = {"float32": "f", "float64": "d"}

Value = bool | int | float | str


class FieldError(ValueError):
    """The bytes do not hold the field (too short) or a value does not fit the type."""


def field_size(type_: str, length: int | None) -> int | None:
    """Bytes the field takes; None for a string without a length (the rest of the data)."""
    if type_ == "string":
        return length
    return FIELD_SIZES[type_]


def decode_field(data: bytes, offset: int, type_: str, byte_order: ByteOrder = "little",
                 length: int | None = None) -> Value:
    """The value of one field at `offset`. Raises FieldError when the data is too short."""
    size = field_size(type_, length)
    end = len(data) if size is None else offset + size
    if offset < 0 or end > len(data) or offset > end:
        raise FieldError(f"{type_} at byte {offset} needs {end - offset} bytes, the data has {len(data)}")
    chunk = data[offset:end]
    if type_ == "string":
        return chunk.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if type_ == "bool":
        return chunk[0] != 0
    if type_ in FLOAT_FORMATS:
        prefix = ">" if byte_order == "big" else "<"
        return float(struct.unpack(prefix + FLOAT_FORMATS[type_], chunk)[0])
    return int.from_bytes(chunk, byte_order, signed=not type_.startswith("u"))


def encode_field(value: Value, type_: str, byte_order: ByteOrder = "little", length: int | None = None) -> bytes:
    """The bytes of one value. Raises FieldError when the value does not fit the type."""
    if type_ == "string":
        raw = str(value).encode("utf-8")
        if length is not None:
            if len(raw) > length:
                raise FieldError(f"string of {len(raw)} bytes does not fit length {length}")
            raw = raw.ljust(length, b"\x00")
        return raw
    if type_ == "bool":
        return b"\x01" if value else b"\x00"
    if isinstance(value, str):
        raise FieldError(f"expected a number for {type_}, found {value!r}")
    if type_ in FLOAT_FORMATS:
        prefix = ">" if byte_order == "big" else "<"
        try:
            return struct.pack(prefix + FLOAT_FORMATS[type_], float(value))
        except OverflowError as e:
            raise FieldError(f"{value!r} does not fit {type_}") from e
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(f"{value!r} does not fit {type_}")
    number = round(value)
    size = FIELD_SIZES[type_]
    try:
        return int(number).to_bytes(size, byte_order, signed=not type_.startswith("u"))
    except OverflowError as e:
        raise FieldError(f"{value!r} does not fit {type_}") from e
