"""Advertisement devices end to end: fake BlueZ adverts → bleak → shared scanner → driver → a real Store."""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path

import pytest

from drivers.ble.parsers.bthome import SERVICE_UUID, encrypt
from drivers.ble.scanner import shared_scanner
from edge.reading import Reading

from .fake_bluez import FakeBluez
from .helpers import StoredReadings, make_driver, running, wait_until

RUUVI_MAC = "CB:B8:33:4C:88:4F"
BTHOME_MAC = "54:48:E6:8F:80:A5"
RAW_MAC = "AA:BB:CC:00:00:01"
RUUVI_VECTOR = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
BINDKEY = "231d39c1d7cc1ab1aee224cd096db932"


@pytest.fixture
def sink(tmp_path: Path):
    s = StoredReadings(tmp_path / "store")
    yield s
    s.close()


async def test_ruuvi_bthome_and_raw_adverts_reach_the_store(bluez: FakeBluez, sink: StoredReadings) -> None:
    for mac in (RUUVI_MAC, BTHOME_MAC, RAW_MAC):
        bluez.add_device(mac)
    ruuvi = make_driver(name="cold-room", address=RUUVI_MAC, format="ruuvi", adapter="hci0", point=[
        {"name": "temperature", "unit": "degC"}, {"name": "humidity"}, {"name": "battery", "field": "battery_voltage"},
        {"name": "signal", "field": "rssi"}])
    bthome = make_driver(name="door", address=BTHOME_MAC, format="bthome", bindkey=BINDKEY, adapter="hci0",
                         point=[{"name": "temperature"}, {"name": "humidity"}])
    raw = make_driver(name="tank", address=RAW_MAC, format="raw", adapter="hci0", point=[
        {"name": "level", "source": "manufacturer_data", "company_id": 0xFFFF, "byte_offset": 2,
         "type": "uint16", "byte_order": "big", "scale": 0.1}])
    async with running(ruuvi.run(sink.publish), bthome.run(sink.publish), raw.run(sink.publish)):
        scanner = shared_scanner("hci0")
        await wait_until(lambda: scanner.running and scanner.subscribers == 3, what="one shared scanner")
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR}, rssi=-71)
        bluez.advertise(BTHOME_MAC, service_data={SERVICE_UUID: encrypt(
            bytes.fromhex("02ca0903bf13"), BTHOME_MAC, bytes.fromhex(BINDKEY), counter=1)})
        bluez.advertise(RAW_MAC, manufacturer_data={0xFFFF: bytes.fromhex("0102" "03e8")})
        await wait_until(lambda: sink.good("cold-room", "temperature") and sink.good("door", "humidity")
                         and sink.good("tank", "level"), what="readings from all three sensors")
    assert not scanner.running, "the last subscriber leaving stops the scan"

    stored = {(r.device, r.point): r for r in await sink.stored()}
    assert stored["cold-room", "temperature"].value == 24.3
    assert stored["cold-room", "temperature"].unit == "degC"
    assert stored["cold-room", "humidity"].value == 53.49
    assert stored["cold-room", "battery"].value == 2977
    assert stored["cold-room", "signal"].value == -71
    assert stored["door", "temperature"].value == 25.06
    assert stored["door", "humidity"].value == 50.55
    assert stored["tank", "level"].value == 1000  # the pipeline, not the driver, applies scale
    assert all(r.seq > 0 and r.quality == "good" for r in stored.values())
    assert ruuvi.status.state == "up"


async def test_a_sensor_that_goes_quiet_gets_bad_not_seen_then_recovers(bluez: FakeBluez,
                                                                       sink: StoredReadings) -> None:
    bluez.add_device(RUUVI_MAC)
    drv = make_driver(name="fridge", address=RUUVI_MAC, format="ruuvi", stale_after="300ms", interval="50ms",
                      point=[{"name": "temperature"}])
    async with running(drv.run(sink.publish)):
        await wait_until(lambda: shared_scanner(None).running)
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR})
        await wait_until(lambda: sink.good("fridge", "temperature"), what="first reading")
        await wait_until(lambda: sink.bad("fridge"), what="a bad reading once the sensor is quiet")
        bad = sink.bad("fridge")[0]
        assert bad.value is None and bad.error is not None and bad.error.startswith("not seen for")
        assert drv.status.state == "down"
        count = len(sink.good("fridge", "temperature"))
        warmer = bytearray(RUUVI_VECTOR)
        warmer[1:3] = (5000).to_bytes(2, "big")  # 25.0 degC
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: bytes(warmer)})
        await wait_until(lambda: len(sink.good("fridge", "temperature")) > count, what="readings after return")
        assert sink.good("fridge", "temperature")[-1] == 25.0
        assert drv.status.state == "up"


async def test_wrong_bindkey_gives_bad_readings_that_say_so(bluez: FakeBluez, sink: StoredReadings) -> None:
    bluez.add_device(BTHOME_MAC)
    drv = make_driver(name="door", address=BTHOME_MAC, format="bthome", bindkey="00" * 16,
                      point=[{"name": "temperature"}])
    async with running(drv.run(sink.publish)):
        await wait_until(lambda: shared_scanner(None).running)
        bluez.advertise(BTHOME_MAC, service_data={SERVICE_UUID: bytes.fromhex("41a47266c95f730011223378237214")})
        await wait_until(lambda: sink.bad("door"), what="a bad reading")
    assert "wrong bindkey" in (sink.bad("door")[0].error or "")
    assert drv.status.state == "degraded"


async def test_device_without_points_publishes_every_decoded_field(bluez: FakeBluez, sink: StoredReadings) -> None:
    bluez.add_device(BTHOME_MAC)
    drv = make_driver(name="plug", address=BTHOME_MAC, format="bthome")
    async with running(drv.run(sink.publish)):
        await wait_until(lambda: shared_scanner(None).running)
        bluez.advertise(BTHOME_MAC, service_data={SERVICE_UUID: bytes.fromhex("40" "0b021b00" "2101")}, rssi=-50)
        await wait_until(lambda: sink.good("plug", "power"), what="readings")
    by_point = {r.point: r for r in sink.published}
    assert by_point["power"].value == 69.14 and by_point["power"].unit == "W"
    assert by_point["motion"].value is True
    assert by_point["rssi"].value == -50


async def test_other_addresses_and_name_filters(bluez: FakeBluez, sink: StoredReadings) -> None:
    bluez.add_device(RUUVI_MAC, name="Ruuvi 884F")
    bluez.add_device("CB:B8:33:4C:88:50", name="Other")
    drv = make_driver(name="by-name", match_name="Ruuvi *", format="ruuvi", point=[{"name": "temperature"}])
    async with running(drv.run(sink.publish)):
        await wait_until(lambda: shared_scanner(None).running)
        other = bytearray(RUUVI_VECTOR)
        other[1:3] = (0).to_bytes(2, "big")
        bluez.advertise("CB:B8:33:4C:88:50", manufacturer_data={0x0499: bytes(other)})
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR})
        await wait_until(lambda: sink.good("by-name", "temperature"), what="a reading")
    assert set(sink.good("by-name", "temperature")) == {24.3}


async def test_scan_recovers_when_bluez_restarts(bluez: FakeBluez, system_bus, sink: StoredReadings) -> None:
    bluez.add_device(RUUVI_MAC)
    drv = make_driver(name="tag", address=RUUVI_MAC, format="ruuvi", stale_after="300ms", interval="50ms",
                      point=[{"name": "temperature"}])
    async with running(drv.run(sink.publish)):
        await wait_until(lambda: shared_scanner(None).running)
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR})
        await wait_until(lambda: sink.good("tag", "temperature"), what="first reading")
        bluez.stop()  # bluetoothd dies and comes back with a fresh state
        restarted = FakeBluez(system_bus.address)
        try:
            restarted.add_adapter("hci0")
            restarted.add_device(RUUVI_MAC)
            await wait_until(lambda: sink.bad("tag"), what="not seen while BlueZ was away")
            count = len(sink.good("tag", "temperature"))

            async def tag_keeps_advertising() -> None:
                while True:
                    restarted.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR})
                    await asyncio.sleep(0.1)

            async with running(tag_keeps_advertising()):
                await wait_until(lambda: len(sink.good("tag", "temperature")) > count, what="readings again")
        finally:
            restarted.stop()


def test_a_field_the_sensor_marks_invalid_is_a_bad_reading_not_silence() -> None:
    """A Ruuvi tag with a failed humidity sensor sends 0xFFFF: the configured point must say so every advert."""
    from drivers.ble.parsers import Advert
    from drivers.ble.parsers.ruuvi import parse_ruuvi

    payload = bytearray(RUUVI_VECTOR)
    payload[3:5] = b"\xff\xff"  # humidity: "not available"
    advert = Advert(RUUVI_MAC, manufacturer_data={0x0499: bytes(payload)})
    drv = make_driver(name="cold-room", address=RUUVI_MAC, format="ruuvi",
                      point=[{"name": "temperature"}, {"name": "humidity"}])
    decoded = parse_ruuvi(advert)
    assert decoded is not None
    readings = {r.point: r for r in drv.readings(advert, decoded, 1.0)}  # type: ignore[attr-defined]
    assert readings["temperature"].value == 24.3
    assert readings["humidity"].quality == "bad" and "invalid" in (readings["humidity"].error or "")


async def test_a_nan_or_inf_float_in_an_advert_is_uncertain_not_good(bluez: FakeBluez) -> None:
    bluez.add_device(RAW_MAC)
    drv = make_driver(name="tank", address=RAW_MAC, format="raw", point=[
        {"name": "level", "source": "manufacturer_data", "company_id": 0xFFFF, "type": "uint16"},
        {"name": "temperature", "source": "manufacturer_data", "company_id": 0xFFFF, "byte_offset": 2,
         "type": "float32", "unit": "degC"}])
    published: list[Reading] = []

    async def publish(readings: list[Reading]) -> None:
        published.extend(readings)

    async with running(drv.run(publish)):
        await wait_until(lambda: shared_scanner(None).running)
        bluez.advertise(RAW_MAC, manufacturer_data={0xFFFF: (1000).to_bytes(2, "little") + struct.pack("<f", math.inf)})
        await wait_until(lambda: len(published) >= 2, what="readings")
    by_point = {r.point: r for r in published}
    assert (by_point["level"].value, by_point["level"].quality) == (1000, "good")
    temperature = by_point["temperature"]
    assert (temperature.value, temperature.quality, temperature.error, temperature.unit) == (
        math.inf, "uncertain", "not a finite number (inf)", "degC")
    assert temperature.to_dict()["value"] is None


def test_a_nan_decoded_without_configured_points_is_uncertain() -> None:
    from drivers.ble.parsers import Advert, Decoded

    drv = make_driver(name="plug", address=BTHOME_MAC, format="bthome")
    decoded = Decoded("bthome", values={"power": math.nan, "voltage": 230.1}, units={"power": "W"})
    readings = {r.point: r for r in drv.readings(Advert(BTHOME_MAC), decoded, 1.0)}  # type: ignore[attr-defined]
    assert (readings["power"].quality, readings["power"].error, readings["power"].unit) == (
        "uncertain", "not a finite number (nan)", "W")
    assert (readings["voltage"].value, readings["voltage"].quality) == (230.1, "good")


async def test_a_repeated_advert_holding_nan_is_throttled_like_any_other() -> None:
    from drivers.ble.parsers import Advert

    drv = make_driver(name="tank", address=RAW_MAC, format="raw", interval="10s", point=[
        {"name": "temperature", "source": "manufacturer_data", "company_id": 0xFFFF, "type": "float32"}])
    published: list[list[Reading]] = []

    async def publish(readings: list[Reading]) -> None:
        published.append(readings)

    for _ in range(3):  # a new NaN object each time, as from the air
        advert = Advert(RAW_MAC, manufacturer_data={0xFFFF: struct.pack("<f", math.nan)})
        await drv._handle(advert, publish)  # type: ignore[attr-defined]
    assert len(published) == 1
