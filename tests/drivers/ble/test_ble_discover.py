"""Discovery: `scan()` lists what advertises with decoded values, and `edge discover --ble` prints it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from drivers.ble.discover import scan
from drivers.ble.parsers.bthome import SERVICE_UUID
from drivers.ble.scanner import shared_scanner

from .fake_bluez import FakeBluez, PrivateSystemBus
from .helpers import wait_until

RUUVI = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
CLI_TIMEOUT = 20.0
ADVERT_PERIOD = 0.05


def populate(bluez: FakeBluez) -> None:
    bluez.add_device("CB:B8:33:4C:88:4F", "Ruuvi 884F")
    bluez.add_device("54:48:E6:8F:80:A5", "SBHT-003C")
    bluez.add_device("AA:BB:CC:00:00:09", "Thing")


def advertise_all(bluez: FakeBluez) -> None:
    bluez.advertise("CB:B8:33:4C:88:4F", manufacturer_data={0x0499: RUUVI}, rssi=-70)
    bluez.advertise("54:48:E6:8F:80:A5", service_data={SERVICE_UUID: bytes.fromhex("4002CA0903BF13")}, rssi=-40)
    bluez.advertise("AA:BB:CC:00:00:09", manufacturer_data={0x1234: b"\x01\x02"}, rssi=-90)


async def test_scan_lists_devices_strongest_first_with_decoded_values(bluez: FakeBluez) -> None:
    populate(bluez)
    task = asyncio.create_task(scan(0.5, "hci0"))
    await wait_until(lambda: shared_scanner("hci0").running, what="the scan")
    advertise_all(bluez)
    found = await task
    assert [d["address"] for d in found] == ["54:48:E6:8F:80:A5", "CB:B8:33:4C:88:4F", "AA:BB:CC:00:00:09"]
    bthome, ruuvi, other = found
    assert bthome["format"] == "bthome" and bthome["values"] == {"temperature": 25.06, "humidity": 50.55}
    assert bthome["name"] == "SBHT-003C" and bthome["rssi"] == -40 and bthome["service_data"] == {
        "fcd2": "4002ca0903bf13"}
    assert ruuvi["format"] == "ruuvi" and ruuvi["values"]["temperature"] == 24.3
    assert ruuvi["device"] == {"driver": "ble", "mode": "advertisement", "address": "CB:B8:33:4C:88:4F",
                               "format": "ruuvi", "adapter": "hci0"}
    assert other["format"] is None and other["manufacturer_data"] == {"0x1234": "0102"}
    assert not shared_scanner("hci0").running


async def test_scan_filters_by_name_and_service_uuid(bluez: FakeBluez) -> None:
    populate(bluez)
    for keys, expected in (({"name": "Ruuvi *"}, ["CB:B8:33:4C:88:4F"]),
                           ({"service_uuid": "FCD2"}, ["54:48:E6:8F:80:A5"])):
        task = asyncio.create_task(scan(0.3, **keys))  # type: ignore[arg-type]
        await wait_until(lambda: shared_scanner(None).running, what="the scan")
        advertise_all(bluez)
        assert [d["address"] for d in await task] == expected


@pytest.mark.slow
def test_edge_discover_ble_command(bluez: FakeBluez, system_bus: PrivateSystemBus) -> None:
    populate(bluez)
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": system_bus.address}
    proc = subprocess.Popen([sys.executable, "-m", "edge", "discover", "--ble", "--timeout", "2", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + CLI_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        advertise_all(bluez)  # devices advertise continuously; the command scans for 2 s from whenever it starts
        time.sleep(ADVERT_PERIOD)
    out, err = proc.communicate(timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, err
    found = {d["address"]: d for d in json.loads(out)}
    assert found["CB:B8:33:4C:88:4F"]["values"]["humidity"] == 53.49
    assert found["54:48:E6:8F:80:A5"]["format"] == "bthome"


def test_edge_discover_ble_without_dbus_says_why(tmp_path) -> None:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/none"}
    proc = subprocess.run([sys.executable, "-m", "edge", "discover", "--ble", "--timeout", "1"],
                          env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert proc.returncode == 2
    assert "D-Bus system bus not reachable" in proc.stderr
