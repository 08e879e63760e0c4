"""`edge discover --ble`: listen to adverts for a while and list devices, recognised formats and decoded values."""

from __future__ import annotations

import asyncio
from typing import Any

from drivers.ble.parsers import Advert, Decoded
from drivers.ble.parsers.bthome import parse_bthome
from drivers.ble.parsers.ruuvi import parse_ruuvi
from drivers.ble.scanner import AdvertFilter, shared_scanner
from drivers.ble.uuids import normalize_uuid, short_uuid


def recognise(advert: Advert) -> Decoded | None:
    """The first built-in format that understands this advert (BTHome, then Ruuvi), or None."""
    return parse_bthome(advert) or parse_ruuvi(advert)


def describe(advert: Advert, adapter: str | None = None) -> dict[str, Any]:
    """One discovered device: address, name, RSSI, format and values if recognised, raw data, a config stub."""
    decoded = recognise(advert)
    entry: dict[str, Any] = {
        "address": advert.address,
        "name": advert.name,
        "rssi": advert.rssi,
        "format": decoded.format if decoded else None,
        "values": dict(decoded.values) if decoded else {},
        "units": dict(decoded.units) if decoded else {},
        "manufacturer_data": {f"0x{k:04x}": v.hex() for k, v in advert.manufacturer_data.items()},
        "service_data": {short_uuid(k): v.hex() for k, v in advert.service_data.items()},
        "service_uuids": [short_uuid(u) for u in advert.service_uuids],
    }
    if decoded and decoded.error:
        entry["error"] = decoded.error
    if decoded and decoded.encrypted:
        entry["encrypted"] = True
    device: dict[str, Any] = {"driver": "ble", "mode": "advertisement", "address": advert.address,
                              "format": decoded.format if decoded else "raw"}
    if adapter:
        device["adapter"] = adapter
    entry["device"] = device
    return entry


async def scan(timeout: float, adapter: str | None = None, *, name: str | None = None,
               service_uuid: str | None = None) -> list[dict[str, Any]]:
    """Devices heard within `timeout` seconds, strongest first. Raises BleUnavailable with the reason and fix.

    Args:
        timeout: seconds to listen.
        adapter: "hci0", …; None for BlueZ's default adapter.
        name: only devices whose advertised name matches this glob, e.g. "ATC_*".
        service_uuid: only devices advertising this service UUID ("fcd2" or the full form).
    """
    latest: dict[str, Advert] = {}

    def heard(advert: Advert) -> None:
        latest[advert.address] = advert

    where = AdvertFilter(name=name, service_uuid=normalize_uuid(service_uuid) if service_uuid else None)
    sub = await shared_scanner(adapter).subscribe(heard, where)
    try:
        await asyncio.sleep(timeout)
    finally:
        await sub.close()
    found = [describe(a, adapter) for a in latest.values()]
    found.sort(key=lambda d: (d["rssi"] is None, -(d["rssi"] or 0), d["address"]))
    return found
