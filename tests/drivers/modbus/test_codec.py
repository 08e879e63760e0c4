"""Codec: known register images for every type × word order × byte order, and encode/decode round trips."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.codec import EncodeError, decode, encode, encode_bit, to_engineering, to_raw
from drivers.modbus.config import ModbusPoint

ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
"""(word_order, byte_order): ABCD, CDAB, BADC, DCBA."""


def point(kind: str, word: str = "big", byte: str = "big", **extra: Any) -> ModbusPoint:
    return ModbusPoint(name="p", address=0, type=kind, word_order=word, byte_order=byte, **extra)  # type: ignore[arg-type]


# float32 123.456 is 0x42F6E979 (ABCD); the four register images every Modbus manual lists:
FLOAT_IMAGES = {
    ("big", "big"): [0x42F6, 0xE979],
    ("little", "big"): [0xE979, 0x42F6],
    ("big", "little"): [0xF642, 0x79E9],
    ("little", "little"): [0x79E9, 0xF642],
}


@pytest.mark.parametrize(("word", "byte"), ORDERS)
def test_float32_known_images(word: str, byte: str) -> None:
    p = point("float32", word, byte)
    assert decode(p, FLOAT_IMAGES[(word, byte)]) == pytest.approx(123.456, rel=1e-6)
    assert encode(p, 123.456) == FLOAT_IMAGES[(word, byte)]


# 0x0102030405060708 as int64/uint64, registers per order:
INT64_IMAGES = {
    ("big", "big"): [0x0102, 0x0304, 0x0506, 0x0708],
    ("little", "big"): [0x0708, 0x0506, 0x0304, 0x0102],
    ("big", "little"): [0x0201, 0x0403, 0x0605, 0x0807],
    ("little", "little"): [0x0807, 0x0605, 0x0403, 0x0201],
}


@pytest.mark.parametrize(("word", "byte"), ORDERS)
@pytest.mark.parametrize("kind", ["int64", "uint64"])
def test_64bit_known_images(kind: str, word: str, byte: str) -> None:
    p = point(kind, word, byte)
    assert decode(p, INT64_IMAGES[(word, byte)]) == 0x0102030405060708
    assert encode(p, 0x0102030405060708) == INT64_IMAGES[(word, byte)]


@pytest.mark.parametrize(("word", "byte"), ORDERS)
def test_int16_ignores_word_order(word: str, byte: str) -> None:
    p = point("int16", word, byte)
    image = [0xFFFE] if byte == "big" else [0xFEFF]
    assert decode(p, image) == -2
    assert encode(p, -2) == image


VALUES = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "float32": st.floats(width=32, allow_nan=False),
    "float64": st.floats(allow_nan=False),
}


@pytest.mark.parametrize("kind", sorted(VALUES))
@pytest.mark.parametrize(("word", "byte"), ORDERS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(kind: str, word: str, byte: str, data: st.DataObject) -> None:
    value = data.draw(VALUES[kind])
    p = point(kind, word, byte)
    registers = encode(p, value)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(p, registers) == value


@pytest.mark.parametrize(("word", "byte"), ORDERS)
@settings(max_examples=40, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8))
def test_string_round_trip(word: str, byte: str, text: str) -> None:
    p = point("string", word, byte, length=16)
    assert decode(p, encode(p, text)) == text


def test_string_layout_and_limits() -> None:
    p = point("string", length=3)
    assert encode(p, "ABC") == [0x4142, 0x4300, 0x0000]
    assert decode(point("string", byte="little", length=2), [0x4241, 0x0043]) == "ABC"
    with pytest.raises(EncodeError, match="at most 6 bytes"):
        encode(p, "ABCDEFG")


def test_bits() -> None:
    p = point("bool", bit=3)
    assert decode(p, [0b1000]) is True
    assert decode(p, [0b0111]) is False
    assert encode_bit(p, 0xF0F0, True) == 0xF0F8
    assert encode_bit(p, 0xFFFF, False) == 0xFFF7
    swapped = point("bool", byte="little", bit=3)
    assert decode(swapped, [0x0800]) is True
    assert encode_bit(swapped, 0x0000, True) == 0x0800
    assert decode(point("bool"), [0x0100]) is True


def test_nan_decodes_and_out_of_range_refuses() -> None:
    assert math.isnan(decode(point("float32"), list(struct.unpack(">HH", struct.pack(">f", math.nan)))))
    with pytest.raises(EncodeError, match="int16 range"):
        encode(point("int16"), 40000)
    with pytest.raises(EncodeError, match="fits float32"):
        encode(point("float32"), 1e300)


def test_scale_offset_inverse() -> None:
    p = point("int16", scale=0.1, offset=-40)
    raw = to_raw(p, 21.5)
    assert round(raw) == 615
    assert to_engineering(p, 615) == pytest.approx(21.5)
    assert to_raw(point("int64"), "9007199254740993") == 9007199254740993  # exact, not via float
    assert to_raw(point("bool"), "on") is True
    with pytest.raises(EncodeError, match="expected a number"):
        to_raw(p, "warm")
