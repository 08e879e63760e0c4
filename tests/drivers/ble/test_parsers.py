"""Advert parsers against the published BTHome v2 and Ruuvi RAWv2 vectors, plus random bytes that must never raise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.fields import FieldError, decode_field, encode_field
from drivers.ble.parsers import Advert
from drivers.ble.parsers.bthome import SERVICE_UUID, encrypt, parse_bthome, parse_objects
from drivers.ble.parsers.raw import RawField, parse_raw
from drivers.ble.parsers.ruuvi import COMPANY_ID, FIELD_NAMES, parse_ruuvi

MAC = "54:48:E6:8F:80:A5"  # the address of the bthome.io encryption example
BINDKEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def bthome(data: bytes, address: str = MAC) -> Advert:
    return Advert(address, service_data={SERVICE_UUID: data})


def ruuvi(hex_payload: str) -> Advert:
    return Advert("CB:B8:33:4C:88:4F", manufacturer_data={COMPANY_ID: bytes.fromhex(hex_payload)})


# -- Ruuvi RAWv2 (docs.ruuvi.com, data format 5 test vectors) ------------------------------------------

def test_ruuvi_valid_vector() -> None:
    d = parse_ruuvi(ruuvi("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"))
    assert d is not None and d.error is None
    assert d.values == {
        "temperature": 24.3, "humidity": 53.49, "pressure": 100044,
        "acceleration_x": 0.004, "acceleration_y": -0.004, "acceleration_z": 1.036,
        "battery_voltage": 2977, "tx_power": 4, "movement_counter": 66, "measurement_sequence": 205,
        "mac": "CB:B8:33:4C:88:4F",
    }
    assert d.units["temperature"] == "degC" and d.units["pressure"] == "Pa"


def test_ruuvi_maximum_vector() -> None:
    d = parse_ruuvi(ruuvi("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F"))
    assert d is not None
    assert d.values["temperature"] == 163.835
    assert d.values["humidity"] == 163.835
    assert d.values["pressure"] == 115534
    assert d.values["acceleration_x"] == d.values["acceleration_z"] == 32.767
    assert d.values["battery_voltage"] == 3646 and d.values["tx_power"] == 20
    assert d.values["movement_counter"] == 254 and d.values["measurement_sequence"] == 65534


def test_ruuvi_minimum_vector() -> None:
    d = parse_ruuvi(ruuvi("058001000000008001800180010000000000CBB8334C884F"))
    assert d is not None
    assert d.values["temperature"] == -163.835 and d.values["humidity"] == 0.0
    assert d.values["pressure"] == 50000 and d.values["acceleration_y"] == -32.767
    assert d.values["battery_voltage"] == 1600 and d.values["tx_power"] == -40
    assert d.values["movement_counter"] == 0 and d.values["measurement_sequence"] == 0


def test_ruuvi_invalid_vector_leaves_every_field_out() -> None:
    d = parse_ruuvi(ruuvi("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF"))
    assert d is not None and d.values == {} and d.error is None
    assert set(d.invalid) == FIELD_NAMES  # each one named, for a bad reading instead of silence


def test_ruuvi_other_format_and_short_payloads_are_errors() -> None:
    d3 = parse_ruuvi(ruuvi("03291A1ECE1EFC18F94202CA0B53"))
    assert d3 is not None and "format 3" in (d3.error or "")
    short = parse_ruuvi(ruuvi("0512FC"))
    assert short is not None and "expected 24" in (short.error or "")
    assert parse_ruuvi(Advert("CB:B8:33:4C:88:4F", manufacturer_data={0x004C: b"\x02\x15"})) is None


# -- BTHome v2 (bthome.io format examples) ------------------------------------------------------------

@pytest.mark.parametrize(("hex_objects", "expected"), [
    ("02CA09", {"temperature": 25.06}),
    ("03BF13", {"humidity": 50.55}),
    ("01 61", {"battery": 97}),
    ("04138A01", {"pressure": 1008.83}),
    ("05138A14", {"illuminance": 13460.67}),
    ("0C020C", {"voltage": 3.074}),
    ("0B021B00", {"power": 69.14}),
    ("0A138A14", {"energy": 1346.067}),
    ("08CA06", {"dew_point": 17.38}),
    ("12E204", {"co2": 1250}),
    ("2101", {"motion": True}),
    ("1A00", {"door": False}),
    ("2D01", {"window": True}),
    ("3A01", {"button": "press"}),
    ("3A04", {"button": "long_press"}),
    ("3C0103", {"dimmer": -3}),
    ("3C0203", {"dimmer": 3}),
    ("3D0960", {"count": 24585}),
    ("450101", {"temperature": 25.7}),
    ("57EA", {"temperature": -22}),
    ("583F", {"temperature": 22.05}),
    ("2E23", {"humidity": 35}),
    ("3F020C", {"rotation": 307.4}),
    ("0D120C", {"pm25": 3090}),
    ("530C48656C6C6F20576F726C6421", {"text": "Hello World!"}),
    ("540CFFFF", None),  # raw with a length beyond the data: truncated
    ("F0010002", None),  # device type then an unknown byte: stops with an error
    ("F100010204", {"firmware_version": "4.2.1.0"}),
    ("F2000106", {"firmware_version": "6.1.0"}),
    ("5CFEFFFFFF", {"power": -0.02}),
])
def test_bthome_objects(hex_objects: str, expected: dict[str, object] | None) -> None:
    d = parse_bthome(bthome(bytes.fromhex("40" + hex_objects.replace(" ", ""))))
    assert d is not None
    if expected is None:
        assert d.error
    else:
        assert d.error is None
        assert d.values == expected


def test_bthome_several_objects_and_repeats() -> None:
    # packet id, battery, temperature, humidity, then a second temperature: the repeat is temperature_2
    d = parse_bthome(bthome(bytes.fromhex("40 00 09 01 64 02 CA 09 03 BF 13 02 10 FF".replace(" ", ""))))
    assert d is not None and d.error is None
    assert d.values == {"packet_id": 9, "battery": 100, "temperature": 25.06, "humidity": 50.55,
                        "temperature_2": -2.4}
    assert d.units == {"battery": "%", "temperature": "degC", "humidity": "%", "temperature_2": "degC"}


def test_bthome_unknown_object_keeps_what_came_before() -> None:
    values, _, error = parse_objects(bytes.fromhex("02CA09EE0102"))
    assert values == {"temperature": 25.06}
    assert error == "unknown BTHome object id 0xee at byte 3"


def test_bthome_trigger_based_flag_is_accepted() -> None:
    d = parse_bthome(bthome(bytes.fromhex("44" + "3A02")))
    assert d is not None and d.values == {"button": "double_press"}


def test_bthome_other_versions_are_refused() -> None:
    d = parse_bthome(bthome(bytes.fromhex("0202CA09")))  # v1-style first byte
    assert d is not None and d.values == {} and "version 0" in (d.error or "")


def test_bthome_published_encrypted_example() -> None:
    """bthome.io: key 231d39c1…, MAC 54:48:E6:8F:80:A5, counter 00112233 → temperature 25.06, humidity 50.55."""
    data = bytes.fromhex("41" + "a47266c95f73" + "00112233" + "78237214")
    d = parse_bthome(bthome(data), BINDKEY)
    assert d is not None and d.encrypted and d.error is None
    assert d.values == {"temperature": 25.06, "humidity": 50.55}


def test_bthome_encrypt_then_decode_round_trip() -> None:
    objects = bytes.fromhex("00 2A 01 55 02 C4 F6 21 01".replace(" ", ""))
    data = encrypt(objects, "A4:C1:38:00:11:22", BINDKEY, counter=7)
    d = parse_bthome(bthome(data, "A4:C1:38:00:11:22"), BINDKEY)
    assert d is not None and d.error is None
    assert d.values == {"packet_id": 42, "battery": 85, "temperature": -23.64, "motion": True}
    assert encrypt(bytes.fromhex("02ca0903bf13"), MAC, BINDKEY, counter=0x33221100) == bytes.fromhex(
        "41a47266c95f730011223378237214")


def test_bthome_encrypted_without_or_with_wrong_key() -> None:
    data = bytes.fromhex("41a47266c95f730011223378237214")
    no_key = parse_bthome(bthome(data))
    assert no_key is not None and no_key.error == "payload is encrypted: set bindkey"
    wrong = parse_bthome(bthome(data), bytes(16))
    assert wrong is not None and "wrong bindkey" in (wrong.error or "") and wrong.values == {}
    other_mac = parse_bthome(bthome(data, "54:48:E6:8F:80:A6"), BINDKEY)
    assert other_mac is not None and other_mac.error


def test_bthome_absent_is_none() -> None:
    assert parse_bthome(Advert(MAC, manufacturer_data={1: b"x"})) is None


# -- raw fields --------------------------------------------------------------------------------------

def test_raw_fields_from_manufacturer_and_service_data() -> None:
    advert = Advert("AA:BB:CC:DD:EE:FF",
                    manufacturer_data={0xFFFF: bytes.fromhex("01 e803 00004842 fe".replace(" ", ""))},
                    service_data={"0000181a-0000-1000-8000-00805f9b34fb": bytes.fromhex("0102")})
    fields = [
        RawField("flag", "manufacturer_data", "bool", 0, company_id=0xFFFF),
        RawField("level", "manufacturer_data", "uint16", 1, company_id=0xFFFF),
        RawField("temp", "manufacturer_data", "float32", 3, "little", company_id=0xFFFF),
        RawField("delta", "manufacturer_data", "int8", 7, company_id=0xFFFF),
        RawField("be", "service_data", "uint16", 0, "big", service_uuid="0000181a-0000-1000-8000-00805f9b34fb"),
        RawField("gone", "manufacturer_data", "uint32", 6, company_id=0xFFFF),
    ]
    d = parse_raw(advert, fields)
    assert d is not None
    assert d.values == {"flag": True, "level": 1000, "temp": 50.0, "delta": -2, "be": 258}
    assert d.error and d.error.startswith("gone: uint32 at byte 6 needs 4 bytes")
    assert parse_raw(Advert("AA:BB:CC:DD:EE:FF"), fields) is None


@pytest.mark.parametrize("type_", ["int8", "uint8", "int16", "uint16", "int24", "uint24", "int32", "uint32",
                                   "int64", "uint64"])
@pytest.mark.parametrize("order", ["big", "little"])
def test_integer_fields_round_trip(type_: str, order: str) -> None:
    for value in (0, 1, 100, -1 if not type_.startswith("u") else 255):
        raw = encode_field(value, type_, order)  # type: ignore[arg-type]
        assert decode_field(raw, 0, type_, order) == value  # type: ignore[arg-type]


def test_field_encoding_refuses_what_does_not_fit() -> None:
    with pytest.raises(FieldError):
        encode_field(300, "uint8")
    with pytest.raises(FieldError):
        encode_field(-1, "uint16")
    with pytest.raises(FieldError):
        encode_field("x", "int16")
    with pytest.raises(FieldError):
        encode_field("too long", "string", length=3)
    assert encode_field("ab", "string", length=4) == b"ab\x00\x00"
    assert decode_field(b"ab\x00\x00", 0, "string", length=4) == "ab"


# -- nothing raises on random bytes ------------------------------------------------------------------

FUZZ_EXAMPLES = 300


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=40), st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
       st.sampled_from([MAC, "not-a-mac", "AA:BB"]))
def test_bthome_never_raises(data: bytes, key: bytes | None, address: str) -> None:
    d = parse_bthome(bthome(data, address), key)
    assert d is not None
    assert isinstance(d.values, dict)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=40))
def test_bthome_encrypted_random_never_raises(body: bytes) -> None:
    assert parse_bthome(bthome(b"\x41" + body), BINDKEY) is not None


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=40))
def test_ruuvi_never_raises(data: bytes) -> None:
    assert parse_ruuvi(Advert("CB:B8:33:4C:88:4F", manufacturer_data={COMPANY_ID: data})) is not None


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=24), st.integers(min_value=0, max_value=30),
       st.sampled_from(["bool", "int8", "uint16", "int24", "uint32", "int64", "float32", "float64", "string"]),
       st.sampled_from(["big", "little"]), st.one_of(st.none(), st.integers(min_value=0, max_value=30)))
def test_raw_never_raises(data: bytes, offset: int, type_: str, order: str, length: int | None) -> None:
    f = RawField("v", "manufacturer_data", type_, offset, order, length, company_id=1)  # type: ignore[arg-type]
    assert parse_raw(Advert("AA:BB:CC:DD:EE:FF", manufacturer_data={1: data}), [f]) is not None
