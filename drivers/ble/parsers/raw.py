"""Generic advert fields: a typed value at a byte offset in manufacturer data or service data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from drivers.ble.fields import ByteOrder, FieldError, decode_field
from drivers.ble.parsers import Advert, Decoded

FORMAT: Final = "raw"
Source = Literal["manufacturer_data", "service_data"]


@dataclass(frozen=True)
class RawField:
    """Where one value sits: the source, its key (company id or service UUID), offset, type, byte order."""

    name: str
    source: Source
    type: str
    byte_offset: int = 0
    byte_order: ByteOrder = "little"
    length: int | None = None
    company_id: int | None = None
    service_uuid: str | None = None  # full 128-bit form


def _payload(advert: Advert, f: RawField) -> bytes | None:
    if f.source == "manufacturer_data":
        if f.company_id is None:
            return next(iter(advert.manufacturer_data.values()), None)
        return advert.manufacturer_data.get(f.company_id)
    if f.service_uuid is None:
        return next(iter(advert.service_data.values()), None)
    return advert.service_data.get(f.service_uuid)


def parse_raw(advert: Advert, fields: list[RawField]) -> Decoded | None:
    """The fields found in the advert; None when it holds none of their sources. Never raises."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    found = False
    for f in fields:
        data = _payload(advert, f)
        if data is None:
            continue
        found = True
        try:
            values[f.name] = decode_field(data, f.byte_offset, f.type, f.byte_order, f.length)
        except FieldError as e:
            errors.append(f"{f.name}: {e}")
    if not found:
        return None
    return Decoded(FORMAT, values, error="; ".join(errors) or None)
