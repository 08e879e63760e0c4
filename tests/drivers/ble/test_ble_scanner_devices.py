"""The shared scanner's `devices` (the BLEDevice per address GATT links connect to) stays bounded: phones nearby
rotate random addresses every ~15 min, so keeping every address ever heard grew it by thousands a day."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.ble.parsers import Advert
from drivers.ble.scanner import AdvertFilter, shared_scanner

from .fake_bluez import FakeBluez
from .helpers import StoredReadings, make_driver, running, wait_until

RUUVI_MAC = "CB:B8:33:4C:88:4F"
RUUVI_VECTOR = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
APPLE = 0x004C
PHONES = [f"5A:00:00:00:00:{i:02X}" for i in range(20)]  # random (resolvable private) addresses


@pytest.fixture
def sink(tmp_path: Path):
    s = StoredReadings(tmp_path / "store")
    yield s
    s.close()


def add_phones(bluez: FakeBluez) -> None:
    for mac in PHONES:
        bluez.add_device(mac, "")


def phones_advertise(bluez: FakeBluez) -> None:
    for mac in PHONES:
        assert bluez.advertise(mac, manufacturer_data={APPLE: b"\x10\x05\x01"})


async def test_adverts_no_subscriber_wants_are_not_kept(bluez: FakeBluez, sink: StoredReadings) -> None:
    bluez.add_device(RUUVI_MAC)
    add_phones(bluez)
    drv = make_driver(name="fridge", address=RUUVI_MAC, format="ruuvi", adapter="hci0",
                      point=[{"name": "temperature"}])
    async with running(drv.run(sink.publish)):
        scanner = shared_scanner("hci0")
        await wait_until(lambda: scanner.running, what="the scan")
        phones_advertise(bluez)
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR})  # after the phones' (in order)
        await wait_until(lambda: sink.good("fridge", "temperature"), what="the sensor's reading")
        assert set(scanner.devices) == {RUUVI_MAC}


async def test_a_broad_subscriber_keeps_what_it_hears_until_it_goes_quiet(
        bluez: FakeBluez, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan that wants everything (`edge discover --ble`) hears every address and the scanner keeps them while
    they are heard; an address quiet for DEVICE_FORGET_AFTER is dropped at the next prune."""
    bluez.add_device(RUUVI_MAC)
    add_phones(bluez)
    scanner = shared_scanner("hci0")
    heard: dict[str, Advert] = {}
    sub = await scanner.subscribe(lambda a: heard.setdefault(a.address, a), AdvertFilter())
    try:
        phones_advertise(bluez)
        await wait_until(lambda: len(heard) == len(PHONES), what="every phone heard")
        assert set(scanner.devices) == set(PHONES)

        # every address heard before now counts as quiet, and the next advert prunes (raising=False: the old code
        # has neither setting, and must fail on the assertion below)
        monkeypatch.setattr("drivers.ble.scanner.DEVICE_FORGET_AFTER", 0.0, raising=False)
        monkeypatch.setattr("drivers.ble.scanner.DEVICE_PRUNE_EVERY", 0.0, raising=False)
        bluez.advertise(RUUVI_MAC, manufacturer_data={0x0499: RUUVI_VECTOR})
        await wait_until(lambda: RUUVI_MAC in heard, what="the sensor heard")
    finally:
        await sub.close()
    assert set(scanner.devices) == {RUUVI_MAC}
    assert not scanner.running
