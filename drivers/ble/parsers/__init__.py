"""Advertisement payload parsers: what an advert holds (`Advert`), what a parser makes of it (`Decoded`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMATS = ("bthome", "ruuvi", "raw")


@dataclass(frozen=True)
class Advert:
    """One advertisement as received, independent of bleak: service data keyed by full 128-bit UUID."""

    address: str
    name: str | None = None
    rssi: int | None = None
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decoded:
    """Values a parser found, and why it stopped when it could not read everything (`error`)."""

    format: str
    values: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    encrypted: bool = False
    invalid: dict[str, str] = field(default_factory=dict)  # fields the payload marks as having no value → why
