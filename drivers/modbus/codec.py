"""Registers ⇄ typed values for every type × word order × byte order, plus register bits and strings.

On the wire a register is two bytes, high byte first. `byte_order = "little"` means the device stores the
two bytes of each word swapped; `word_order = "little"` means the least significant word comes first.
Decoders are built once per kind of point (`decoder_for`; points of the same type, orders, bit and length
share one) and read straight from the bytes of a whole read.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

from drivers.modbus.config import TYPE_REGISTERS, ModbusPoint

Decoder = Callable[[bytes, int], Any]
"""Decodes one point from the bytes of a read at a byte offset."""

_FORMATS: dict[str, str] = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}
INT_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}
FLOAT_TYPES: frozenset[str] = frozenset({"float32", "float64"})


class DecodeError(ValueError):
    """Registers that do not hold a value of the point's type (e.g. a string that is not UTF-8)."""


class EncodeError(ValueError):
    """A value that does not fit the point's type (out of range, too long, not a number)."""


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """The wire bytes of a run of registers (each big-endian)."""
    return struct.pack(f">{len(registers)}H", *registers)


def bytes_to_registers(data: bytes) -> list[int]:
    """Registers from wire bytes (even length)."""
    return list(struct.unpack(f">{len(data) // 2}H", data))


def reorder(data: bytes, word_order: str, byte_order: str) -> bytes:
    """Wire bytes ⇄ big-endian value bytes. Its own inverse: swapping words and bytes are involutions."""
    if byte_order == "little":
        swapped = bytearray(len(data))
        swapped[0::2] = data[1::2]
        swapped[1::2] = data[0::2]
        data = bytes(swapped)
    if word_order == "little" and len(data) > 2:
        data = b"".join(data[i : i + 2] for i in range(len(data) - 2, -1, -2))
    return data


def decoder_for(point: ModbusPoint) -> Decoder:
    """A function decoding `point` from the wire bytes of a register read, at a byte offset."""
    return _decoder(point.type, point.word_order, point.byte_order, point.bit, point.length)


@functools.cache  # a few dozen distinct keys at most; 2,500 points of one type used to make 2,500 closures
def _decoder(kind: str, wo: str, bo: str, bit: int | None, length: int) -> Decoder:
    if kind == "string":
        size = length * 2

        def decode_string(buf: bytes, off: int) -> str:
            raw = reorder(buf[off : off + size], wo, bo).rstrip(b"\x00")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"string is not UTF-8: {raw!r}") from exc

        return decode_string
    if kind == "bool":
        word = struct.Struct("<H" if bo == "little" else ">H")
        if bit is None:
            return lambda buf, off: word.unpack_from(buf, off)[0] != 0
        return lambda buf, off: bool((word.unpack_from(buf, off)[0] >> bit) & 1)
    fmt = _FORMATS[kind]
    if TYPE_REGISTERS[kind] == 1 or wo == bo:
        # The common cases: plain big-endian (ABCD) or fully reversed (DCBA) read in one struct call.
        unpack = struct.Struct(("<" if bo == "little" else ">") + fmt).unpack_from
        return lambda buf, off: unpack(buf, off)[0]
    size = TYPE_REGISTERS[kind] * 2
    big = struct.Struct(">" + fmt).unpack

    def decode_mixed(buf: bytes, off: int) -> Any:
        return big(reorder(buf[off : off + size], wo, bo))[0]

    return decode_mixed


def decode(point: ModbusPoint, registers: Sequence[int]) -> Any:
    """The typed (unscaled) value of a point from exactly its registers."""
    return decoder_for(point)(registers_to_bytes(registers), 0)


def encode(point: ModbusPoint, raw: Any) -> list[int]:
    """The registers holding a typed (unscaled) value; raises EncodeError when it does not fit."""
    kind = point.type
    if kind == "string":
        if not isinstance(raw, str):
            raise EncodeError(f"expected a string, found {type(raw).__name__}")
        data = raw.encode("utf-8")
        if len(data) > point.length * 2:
            raise EncodeError(f"expected at most {point.length * 2} bytes of UTF-8, found {len(data)}")
        padded = data.ljust(point.length * 2, b"\x00")
        return bytes_to_registers(reorder(padded, point.word_order, point.byte_order))
    if kind == "bool":
        if point.bit is not None:
            raise EncodeError("a bit inside a register is written with encode_bit")
        return bytes_to_registers(reorder(struct.pack(">H", 1 if raw else 0), "big", point.byte_order))
    fmt = _FORMATS[kind]
    if kind in FLOAT_TYPES:
        try:
            data = struct.pack(">" + fmt, float(raw))
        except (OverflowError, struct.error, TypeError, ValueError) as exc:
            raise EncodeError(f"expected a number that fits {kind}, found {raw!r}") from exc
    else:
        value = to_int(raw, kind)
        data = struct.pack(">" + fmt, value)
    return bytes_to_registers(reorder(data, point.word_order, point.byte_order))


def to_int(raw: Any, kind: str) -> int:
    """An integer in the range of `kind`, rounding floats; raises EncodeError."""
    try:
        value = raw if isinstance(raw, int) else round(float(raw))
    except (OverflowError, TypeError, ValueError) as exc:
        raise EncodeError(f"expected a number that fits {kind}, found {raw!r}") from exc
    low, high = INT_RANGES[kind]
    if not low <= value <= high:
        raise EncodeError(f"expected a value in {kind} range {low}..{high}, found {value}")
    return int(value)


def encode_bit(point: ModbusPoint, register: int, value: bool) -> int:
    """The register with the point's bit set to `value`, the other bits kept (read-modify-write)."""
    assert point.bit is not None
    swap = point.byte_order == "little"
    word = ((register & 0xFF) << 8 | register >> 8) if swap else register
    word = word | (1 << point.bit) if value else word & ~(1 << point.bit)
    return ((word & 0xFF) << 8 | word >> 8) if swap else word


def parse_bool(value: Any) -> bool:
    """A bool from true/false, 1/0, on/off (any case); raises EncodeError for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "off", "no"):
        return False
    raise EncodeError(f"expected true/false or 1/0, found {value!r}")


def to_raw(point: ModbusPoint, value: Any) -> Any:
    """The typed value to write for an engineering value: the inverse of `raw * scale + offset`."""
    if point.type == "bool":
        return parse_bool(value)
    if point.type == "string":
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError as exc:
                raise EncodeError(f"expected a number, found {text!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(f"expected a number, found {value!r}")
    if point.scale == 1.0 and point.offset == 0.0:
        return value  # keeps int64 values exact
    raw = (value - point.offset) / point.scale
    if not math.isfinite(raw):
        raise EncodeError(f"expected a finite number, found {value!r}")
    return raw


def to_engineering(point: ModbusPoint, raw: Any) -> Any:
    """The engineering value of a typed value: `raw * scale + offset` for numbers, as the pipeline does."""
    if point.type in ("bool", "string") or (point.scale == 1.0 and point.offset == 0.0):
        return raw
    return raw * point.scale + point.offset
