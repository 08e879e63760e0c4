"""Ruuvi RAWv2 (data format 5) manufacturer data, company id 0x0499, per docs.ruuvi.com."""

from __future__ import annotations

from typing import Any, Final

from drivers.ble.parsers import Advert, Decoded

COMPANY_ID: Final = 0x0499
FORMAT: Final = "ruuvi"
DATA_FORMAT_5: Final = 0x05
RAWV2_LEN: Final = 24

TEMPERATURE_STEP: Final = 0.005  # degC per bit
HUMIDITY_STEP: Final = 0.0025  # % per bit
PRESSURE_BASE: Final = 50000  # Pa
ACCELERATION_STEP: Final = 0.001  # g per bit (mG)
BATTERY_BASE_MV: Final = 1600
TX_POWER_BASE: Final = -40
TX_POWER_STEP: Final = 2

INVALID_I16: Final = -0x8000
INVALID_U16: Final = 0xFFFF
INVALID_BATTERY: Final = 0x7FF
INVALID_TX: Final = 0x1F
INVALID_U8: Final = 0xFF
INVALID_MAC: Final = b"\xff" * 6
INVALID_REASON: Final = "invalid: the sensor sent its 'not available' value"

UNITS: Final = {
    "temperature": "degC", "humidity": "%", "pressure": "Pa", "acceleration_x": "g", "acceleration_y": "g",
    "acceleration_z": "g", "battery_voltage": "mV", "tx_power": "dBm",
}
FIELD_NAMES: Final = frozenset(
    ("temperature", "humidity", "pressure", "acceleration_x", "acceleration_y", "acceleration_z",
     "battery_voltage", "tx_power", "movement_counter", "measurement_sequence", "mac")
)


def _i16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 2], "big", signed=True)


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 2], "big")


def parse_rawv2(data: bytes) -> Decoded:
    """Values of a data format 5 payload (starting at the format byte); fields sent as "invalid" are in `invalid`."""
    if len(data) < RAWV2_LEN:
        return Decoded(FORMAT, error=f"RAWv2 payload has {len(data)} bytes, expected {RAWV2_LEN}")
    values: dict[str, Any] = {}
    invalid: dict[str, str] = {}

    def put(name: str, raw: int | bytes, marker: int | bytes, value: Any) -> None:
        if raw == marker:
            invalid[name] = INVALID_REASON
        else:
            values[name] = value

    t = _i16(data, 1)
    put("temperature", t, INVALID_I16, round(t * TEMPERATURE_STEP, 3))
    h = _u16(data, 3)
    put("humidity", h, INVALID_U16, round(h * HUMIDITY_STEP, 4))
    p = _u16(data, 5)
    put("pressure", p, INVALID_U16, p + PRESSURE_BASE)
    for axis, pos in (("x", 7), ("y", 9), ("z", 11)):
        a = _i16(data, pos)
        put(f"acceleration_{axis}", a, INVALID_I16, round(a * ACCELERATION_STEP, 3))
    power = _u16(data, 13)
    put("battery_voltage", power >> 5, INVALID_BATTERY, (power >> 5) + BATTERY_BASE_MV)
    put("tx_power", power & 0x1F, INVALID_TX, TX_POWER_BASE + (power & 0x1F) * TX_POWER_STEP)
    put("movement_counter", data[15], INVALID_U8, data[15])
    sequence = _u16(data, 16)
    put("measurement_sequence", sequence, INVALID_U16, sequence)
    mac = data[18:24]
    put("mac", mac, INVALID_MAC, ":".join(f"{b:02X}" for b in mac))
    return Decoded(FORMAT, values, {k: u for k, u in UNITS.items() if k in values}, invalid=invalid)


def parse_ruuvi(advert: Advert) -> Decoded | None:
    """Ruuvi values in the advert, or None when it carries no Ruuvi manufacturer data. Never raises."""
    data = advert.manufacturer_data.get(COMPANY_ID)
    if data is None:
        return None
    if not data:
        return Decoded(FORMAT, error="empty Ruuvi manufacturer data")
    if data[0] != DATA_FORMAT_5:
        return Decoded(FORMAT, error=f"Ruuvi data format {data[0]} is not supported (only 5, RAWv2)")
    return parse_rawv2(data)
