"""BTHome v2 service data (UUID 0xFCD2): the object table, plain and AES-CCM encrypted payloads (bthome.io)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from drivers.ble.parsers import Advert, Decoded

SERVICE_UUID: Final = "0000fcd2-0000-1000-8000-00805f9b34fb"
UUID16_LE: Final = b"\xd2\xfc"  # 0xFCD2 as it appears in the nonce
FORMAT: Final = "bthome"

ENCRYPTED_FLAG: Final = 0x01
TRIGGER_FLAG: Final = 0x04
VERSION_SHIFT: Final = 5
SUPPORTED_VERSION: Final = 2
COUNTER_LEN: Final = 4
MIC_LEN: Final = 4
KEY_LEN: Final = 16
MAC_LEN: Final = 6


@dataclass(frozen=True)
class ObjectType:
    """One BTHome object id: its field name, size, sign and factor (or a special kind)."""

    name: str
    size: int = 1
    signed: bool = False
    factor: float = 1.0
    unit: str | None = None
    kind: str = "number"  # number | binary | button | dimmer | text | raw | firmware


def _n(name: str, size: int, factor: float = 1.0, unit: str | None = None, signed: bool = False) -> ObjectType:
    return ObjectType(name, size, signed, factor, unit)


def _b(name: str) -> ObjectType:
    return ObjectType(name, 1, kind="binary")


OBJECTS: Final[dict[int, ObjectType]] = {
    0x00: _n("packet_id", 1),
    0x01: _n("battery", 1, unit="%"),
    0x02: _n("temperature", 2, 0.01, "degC", signed=True),
    0x03: _n("humidity", 2, 0.01, "%"),
    0x04: _n("pressure", 3, 0.01, "hPa"),
    0x05: _n("illuminance", 3, 0.01, "lx"),
    0x06: _n("mass", 2, 0.01, "kg"),
    0x07: _n("mass_lb", 2, 0.01, "lb"),
    0x08: _n("dew_point", 2, 0.01, "degC", signed=True),
    0x09: _n("count", 1),
    0x0A: _n("energy", 3, 0.001, "kWh"),
    0x0B: _n("power", 3, 0.01, "W"),
    0x0C: _n("voltage", 2, 0.001, "V"),
    0x0D: _n("pm25", 2, unit="ug/m3"),
    0x0E: _n("pm10", 2, unit="ug/m3"),
    0x0F: _b("generic_boolean"),
    0x10: _b("power_on"),
    0x11: _b("opening"),
    0x12: _n("co2", 2, unit="ppm"),
    0x13: _n("tvoc", 2, unit="ug/m3"),
    0x14: _n("moisture", 2, 0.01, "%"),
    0x15: _b("battery_low"),
    0x16: _b("battery_charging"),
    0x17: _b("carbon_monoxide"),
    0x18: _b("cold"),
    0x19: _b("connectivity"),
    0x1A: _b("door"),
    0x1B: _b("garage_door"),
    0x1C: _b("gas_detected"),
    0x1D: _b("heat"),
    0x1E: _b("light"),
    0x1F: _b("lock"),
    0x20: _b("moisture_detected"),
    0x21: _b("motion"),
    0x22: _b("moving"),
    0x23: _b("occupancy"),
    0x24: _b("plug"),
    0x25: _b("presence"),
    0x26: _b("problem"),
    0x27: _b("running"),
    0x28: _b("safety"),
    0x29: _b("smoke"),
    0x2A: _b("sound"),
    0x2B: _b("tamper"),
    0x2C: _b("vibration"),
    0x2D: _b("window"),
    0x2E: _n("humidity", 1, unit="%"),
    0x2F: _n("moisture", 1, unit="%"),
    0x3A: ObjectType("button", 1, kind="button"),
    0x3C: ObjectType("dimmer", 2, kind="dimmer"),
    0x3D: _n("count", 2),
    0x3E: _n("count", 4),
    0x3F: _n("rotation", 2, 0.1, "deg", signed=True),
    0x40: _n("distance_mm", 2, unit="mm"),
    0x41: _n("distance_m", 2, 0.1, "m"),
    0x42: _n("duration", 3, 0.001, "s"),
    0x43: _n("current", 2, 0.001, "A"),
    0x44: _n("speed", 2, 0.01, "m/s"),
    0x45: _n("temperature", 2, 0.1, "degC", signed=True),
    0x46: _n("uv_index", 1, 0.1),
    0x47: _n("volume", 2, 0.1, "L"),
    0x48: _n("volume_ml", 2, unit="mL"),
    0x49: _n("volume_flow_rate", 2, 0.001, "m3/h"),
    0x4A: _n("voltage", 2, 0.1, "V"),
    0x4B: _n("gas", 3, 0.001, "m3"),
    0x4C: _n("gas", 4, 0.001, "m3"),
    0x4D: _n("energy", 4, 0.001, "kWh"),
    0x4E: _n("volume", 4, 0.001, "L"),
    0x4F: _n("water", 4, 0.001, "L"),
    0x50: _n("timestamp", 4, unit="s"),
    0x51: _n("acceleration", 2, 0.001, "m/s2"),
    0x52: _n("gyroscope", 2, 0.001, "deg/s"),
    0x53: ObjectType("text", 0, kind="text"),
    0x54: ObjectType("raw", 0, kind="raw"),
    0x55: _n("volume_storage", 4, 0.001, "L"),
    0x56: _n("conductivity", 2, unit="uS/cm"),
    0x57: _n("temperature", 1, 1.0, "degC", signed=True),
    0x58: _n("temperature", 1, 0.35, "degC", signed=True),
    0x59: _n("count", 1, signed=True),
    0x5A: _n("count", 2, signed=True),
    0x5B: _n("count", 4, signed=True),
    0x5C: _n("power", 4, 0.01, "W", signed=True),
    0x5D: _n("current", 2, 0.001, "A", signed=True),
    0x5E: _n("direction", 2, 0.01, "deg"),
    0x5F: _n("precipitation", 2, 0.1, "mm"),
    0x60: _n("channel", 1),
    0x61: _n("rotational_speed", 2, unit="rpm"),
    0xF0: _n("device_type_id", 2),
    0xF1: ObjectType("firmware_version", 4, kind="firmware"),
    0xF2: ObjectType("firmware_version", 3, kind="firmware"),
}

BUTTON_EVENTS: Final = {
    0x00: "none", 0x01: "press", 0x02: "double_press", 0x03: "triple_press", 0x04: "long_press",
    0x05: "long_double_press", 0x06: "long_triple_press", 0x80: "hold_press",
}
DIMMER_LEFT: Final = 0x01
DIMMER_RIGHT: Final = 0x02

FIELD_NAMES: Final = frozenset(o.name for o in OBJECTS.values())
"""Every field name a BTHome point may use (repeats of a field are `name_2`, `name_3`, …)."""


def _decimals(factor: float) -> int:
    text = f"{factor:.6f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def _value(obj: ObjectType, chunk: bytes) -> Any:
    if obj.kind == "binary":
        return chunk[0] != 0
    if obj.kind == "button":
        return BUTTON_EVENTS.get(chunk[0], f"unknown_0x{chunk[0]:02x}")
    if obj.kind == "dimmer":
        event, steps = chunk[0], chunk[1]
        return -steps if event == DIMMER_LEFT else steps if event == DIMMER_RIGHT else 0
    if obj.kind == "text":
        return chunk.decode("utf-8", "replace")
    if obj.kind == "raw":
        return chunk.hex()
    if obj.kind == "firmware":
        return ".".join(str(b) for b in reversed(chunk))
    raw = int.from_bytes(chunk, "little", signed=obj.signed)
    if obj.factor == 1.0:
        return raw
    return round(raw * obj.factor, _decimals(obj.factor))


def parse_objects(payload: bytes) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """Values and units from a plain object list; the error says where and why parsing stopped."""
    values: dict[str, Any] = {}
    units: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        object_id = payload[pos]
        obj = OBJECTS.get(object_id)
        if obj is None:
            return values, units, f"unknown BTHome object id 0x{object_id:02x} at byte {pos}"
        pos += 1
        size = obj.size
        if obj.kind in ("text", "raw"):
            if pos >= len(payload):
                return values, units, f"object 0x{object_id:02x} has no length byte"
            size = payload[pos]
            pos += 1
        if pos + size > len(payload):
            return values, units, f"object 0x{object_id:02x} ({obj.name}) truncated at byte {pos}"
        key = obj.name
        n = 2
        while key in values:
            key = f"{obj.name}_{n}"
            n += 1
        values[key] = _value(obj, payload[pos:pos + size])
        if obj.unit:
            units[key] = obj.unit
        pos += size
    return values, units, None


def mac_bytes(address: str) -> bytes | None:
    """The 6 address bytes of 'AA:BB:CC:DD:EE:FF' (the order the nonce uses), or None."""
    try:
        raw = bytes.fromhex(address.replace(":", "").replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == MAC_LEN else None


def decrypt(data: bytes, address: str, key: bytes) -> bytes:
    """The plain object list of an encrypted BTHome v2 service data payload. Raises ValueError."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    mac = mac_bytes(address)
    if mac is None:
        raise ValueError(f"cannot build the nonce: {address!r} is not a MAC address")
    if len(key) != KEY_LEN:
        raise ValueError(f"bind key must be {KEY_LEN} bytes, found {len(key)}")
    if len(data) < 1 + COUNTER_LEN + MIC_LEN:
        raise ValueError("encrypted payload too short")
    ciphertext = data[1:-(COUNTER_LEN + MIC_LEN)]
    counter = data[-(COUNTER_LEN + MIC_LEN):-MIC_LEN]
    mic = data[-MIC_LEN:]
    nonce = mac + UUID16_LE + data[:1] + counter
    try:
        return AESCCM(key, tag_length=MIC_LEN).decrypt(nonce, ciphertext + mic, None)
    except InvalidTag as e:
        raise ValueError("decryption failed: wrong bindkey or corrupted payload") from e


def encrypt(objects: bytes, address: str, key: bytes, counter: int, device_info: int = 0x41) -> bytes:
    """An encrypted BTHome v2 service data payload (for tests and simulators)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    mac = mac_bytes(address)
    if mac is None:
        raise ValueError(f"{address!r} is not a MAC address")
    info = bytes([device_info | ENCRYPTED_FLAG])
    count = counter.to_bytes(COUNTER_LEN, "little")
    sealed = AESCCM(key, tag_length=MIC_LEN).encrypt(mac + UUID16_LE + info + count, objects, None)
    return info + sealed[:-MIC_LEN] + count + sealed[-MIC_LEN:]


def parse_bthome(advert: Advert, bindkey: bytes | None = None) -> Decoded | None:
    """BTHome values in the advert, or None when it carries no BTHome service data. Never raises."""
    data = advert.service_data.get(SERVICE_UUID)
    if data is None:
        return None
    if not data:
        return Decoded(FORMAT, error="empty BTHome service data")
    info = data[0]
    version = info >> VERSION_SHIFT
    if version != SUPPORTED_VERSION:
        return Decoded(FORMAT, error=f"BTHome version {version} is not supported (only v2)")
    encrypted = bool(info & ENCRYPTED_FLAG)
    if encrypted:
        if bindkey is None:
            return Decoded(FORMAT, error="payload is encrypted: set bindkey", encrypted=True)
        try:
            payload = decrypt(data, advert.address, bindkey)
        except ValueError as e:
            return Decoded(FORMAT, error=str(e), encrypted=True)
    else:
        payload = data[1:]
    values, units, error = parse_objects(payload)
    return Decoded(FORMAT, values, units, error, encrypted)
