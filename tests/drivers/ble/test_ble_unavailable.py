"""No D-Bus, no BlueZ, no permission, no adapter: BLE devices report a clear `bad` status fast, others keep working."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.ble.discover import scan
from drivers.ble.errors import BleUnavailable
from edge.config.loader import parse_text
from edge.daemon import Daemon
from edge.reading import Reading

from .fake_bluez import DENY_BLUEZ_POLICY, FakeBluez, PrivateSystemBus
from .helpers import make_driver, running, wait_until

FAST_FAIL = 3.0  # seconds: an unusable Bluetooth stack must be reported within this, never hang


class Published:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def __call__(self, readings: list[Reading]) -> None:
        self.readings.extend(readings)


async def first_errors(*, adapter: str | None = None) -> dict[str, str]:
    """The first error each kind of BLE device reports, and discovery's error, in the current environment."""
    adv = make_driver(name="adv", address="AA:BB:CC:DD:EE:01", format="ruuvi", adapter=adapter,
                      point=[{"name": "temperature"}])
    notify = make_driver(name="notify", mode="gatt", address="AA:BB:CC:DD:EE:02", adapter=adapter,
                         connect_timeout="1s", point=[{"name": "t", "uuid": "2a6e", "type": "int16", "notify": True}])
    poll = make_driver(name="poll", mode="gatt", address="AA:BB:CC:DD:EE:03", adapter=adapter, connect_timeout="1s",
                       point=[{"name": "t", "uuid": "2a6e", "type": "int16"}])
    out = Published()
    started = time.monotonic()
    async with running(adv.run(out), notify.run(out)):
        polled = await asyncio.wait_for(poll.poll(), FAST_FAIL)
        await wait_until(lambda: {r.device for r in out.readings} >= {"adv", "notify"}, FAST_FAIL, "bad readings")
    assert time.monotonic() - started < FAST_FAIL
    errors = {r.device: r.error or "" for r in reversed(out.readings)}
    errors["poll"] = polled[0].error or ""
    assert all(r.quality == "bad" and r.value is None for r in [*out.readings, *polled])
    for drv in (adv, notify, poll):
        assert drv.status.state == "down"
    with pytest.raises(BleUnavailable) as caught:
        await asyncio.wait_for(scan(0.1, adapter), FAST_FAIL)
    errors["discover"] = str(caught.value)
    await poll.stop()
    return errors


async def test_no_dbus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no_bus_here")
    errors = await first_errors()
    for where, error in errors.items():
        assert error.startswith("D-Bus system bus not reachable at unix:path="), where
        assert "systemctl start dbus" in error


async def test_no_bluez(system_bus: PrivateSystemBus) -> None:
    errors = await first_errors()
    for where, error in errors.items():
        assert error.startswith("BlueZ is not running"), (where, error)
        assert "apt install bluez" in error


@pytest.fixture
def denying_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateSystemBus]:
    bus = PrivateSystemBus(tmp_path, extra_policy=DENY_BLUEZ_POLICY)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    yield bus
    bus.stop()


async def test_permission_denied_names_the_group(denying_bus: PrivateSystemBus) -> None:
    fake = FakeBluez(denying_bus.address)
    try:
        fake.add_adapter("hci0")
        errors = await first_errors()
    finally:
        fake.stop()
    for where, error in errors.items():
        assert error.startswith("permission denied by D-Bus"), (where, error)
        assert "'bluetooth' group" in error and "send_destination=\"org.bluez\"" in error


async def test_unknown_adapter(bluez: FakeBluez) -> None:
    errors = await first_errors(adapter="hci7")
    for where, error in errors.items():
        assert error.startswith("Bluetooth adapter hci7 not found"), (where, error)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_daemon_runs_other_devices_while_ble_is_unusable(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no_bus_here")
    config = parse_text(f"""
[edge]
id = "site-a"
data_dir = "{tmp_path / 'data'}"
[api]
listen = "127.0.0.1:{free_port()}"
admin_socket = ""
[discovery]
advertise = false

[[device]]
name = "sim"
driver = "simulator"
interval = "50ms"

[[device]]
name = "cold-room"
driver = "ble"
address = "CB:B8:33:4C:88:4F"
format = "ruuvi"
  [[device.point]]
  name = "temperature"

[[device]]
name = "meter"
driver = "ble"
mode = "gatt"
address = "AA:BB:CC:DD:EE:03"
interval = "100ms"
  [[device.point]]
  name = "t"
  uuid = "2a6e"
  type = "int16"
""", "<string>")
    daemon = Daemon(config)
    await daemon.start()
    try:
        def info() -> dict[str, dict]:
            return {d["name"]: d for d in daemon.devices_info()}

        await wait_until(lambda: info()["sim"]["readings"] >= 20 and info()["cold-room"]["points"]
                         and info()["meter"]["points"], what="simulator readings and BLE bad readings")
        devices = info()
        for name in ("cold-room", "meter"):
            assert devices[name]["status"]["state"] == "down"
            assert "D-Bus system bus not reachable" in devices[name]["status"]["last_error"]
            assert all(p["quality"] == "bad" for p in devices[name]["points"].values())
        assert devices["sim"]["status"]["state"] != "down"
    finally:
        await daemon.stop()
