"""Fixtures for the BLE tests: a BlueZ model on a private system bus, reachable only from this test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fake_bluez import FakeBluez, PrivateSystemBus


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateSystemBus]:
    """A private dbus-daemon; DBUS_SYSTEM_BUS_ADDRESS points at it for this test only."""
    bus = PrivateSystemBus(tmp_path)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    yield bus
    bus.stop()


@pytest.fixture
def bluez(system_bus: PrivateSystemBus) -> Iterator[FakeBluez]:
    """BlueZ (python-dbusmock bluez5) with adapter hci0."""
    fake = FakeBluez(system_bus.address)
    fake.add_adapter("hci0")
    yield fake
    fake.stop()
