"""Bluetooth UUIDs: short forms ("fcd2", "0x2A6E") expanded to the full 128-bit lower-case form bleak uses."""

from __future__ import annotations

import re
from typing import Final

BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
_SHORT = re.compile(r"^(?:0x)?([0-9a-fA-F]{4}|[0-9a-fA-F]{8})$")
_FULL = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def normalize_uuid(text: str) -> str:
    """The 128-bit lower-case UUID for a 16-bit, 32-bit or full UUID. Raises ValueError."""
    text = text.strip()
    m = _SHORT.match(text)
    if m:
        return m.group(1).lower().rjust(8, "0") + BASE_UUID_SUFFIX
    if _FULL.match(text):
        return text.lower()
    raise ValueError(f"expected a UUID like '2a6e' or '0000fcd2-0000-1000-8000-00805f9b34fb', found {text!r}")


def short_uuid(uuid: str) -> str:
    """'2a6e' for a UUID on the Bluetooth base, else the full UUID."""
    if uuid.endswith(BASE_UUID_SUFFIX) and uuid.startswith("0000"):
        return uuid[4:8]
    return uuid
