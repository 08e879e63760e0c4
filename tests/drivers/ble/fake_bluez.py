"""A BlueZ model for tests: a private system bus, dbusmock's `bluez5` template, helpers to fake adverts and GATT.

Nothing here touches the machine's real system bus: the bus is a `dbus-daemon` on a socket in a tmp dir, and
only the test process (through `DBUS_SYSTEM_BUS_ADDRESS`, set by the fixture) and the mock talk to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dbus

BUS_READY_TIMEOUT = 5.0
POLL_STEP = 0.02
STOP_TIMEOUT = 3.0

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_type="method_call"/>
<allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>{extra}</policy></busconfig>
"""
# What a system without the 'bluetooth' group policy does to an unprivileged process: BlueZ's objects are refused.
DENY_BLUEZ_POLICY = ('<deny send_destination="org.bluez" send_interface="org.freedesktop.DBus.ObjectManager"/>'
                     '<deny send_destination="org.bluez" send_interface="org.bluez.Adapter1"/>')

MOCK_IFACE = "org.freedesktop.DBus.Mock"
BLUEZ_MOCK_IFACE = "org.bluez.Mock"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"

# The template's Connect never sets ServicesResolved (bleak waits for it); a blocked device models "out of range".
CONNECT_CODE = (
    "if self.Get('org.bluez.Device1', 'Blocked'):\n"
    "    raise dbus.exceptions.DBusException('Host is down', name='org.bluez.Error.Failed')\n"
    "self.UpdateProperties('org.bluez.Device1', {'Connected': dbus.Boolean(True),"
    " 'ServicesResolved': dbus.Boolean(True)})"
)
DISCONNECT_CODE = (
    "self.UpdateProperties('org.bluez.Device1', {'Connected': dbus.Boolean(False),"
    " 'ServicesResolved': dbus.Boolean(False)})"
)
READ_CODE = "ret = self.Get('org.bluez.GattCharacteristic1', 'Value')"
WRITE_CODE = "self.UpdateProperties('org.bluez.GattCharacteristic1', {'Value': dbus.Array(args[0], signature='y')})"
NOTIFY_ON_CODE = "self.UpdateProperties('org.bluez.GattCharacteristic1', {'Notifying': dbus.Boolean(True)})"
NOTIFY_OFF_CODE = "self.UpdateProperties('org.bluez.GattCharacteristic1', {'Notifying': dbus.Boolean(False)})"


def _bytes(data: bytes) -> dbus.Array:
    return dbus.Array([dbus.Byte(b) for b in data], signature="y")


def _wait(predicate: object, what: str, timeout: float = BUS_READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(POLL_STEP)
    raise TimeoutError(f"{what} not ready within {timeout}s")


def device_path(address: str, adapter: str = "hci0") -> str:
    return f"/org/bluez/{adapter}/dev_{address.replace(':', '_').upper()}"


@dataclass
class Characteristic:
    """One fake GATT characteristic for `FakeBluez.add_gatt`."""

    uuid: str
    value: bytes = b""
    flags: tuple[str, ...] = ("read", "write", "notify")


class PrivateSystemBus:
    """A dbus-daemon of type "system" on a socket in `folder`; stop() ends it by PID."""

    def __init__(self, folder: Path, extra_policy: str = "") -> None:
        self.socket = folder / "system_bus_socket"
        config = folder / "system-bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.socket, extra=extra_policy))
        self.address = f"unix:path={self.socket}"
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        _wait(self.socket.exists, "dbus-daemon socket")

    def stop(self) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


class FakeBluez:
    """python-dbusmock's bluez5 on a private bus, driven with dbus-python (blocking calls, ~ms each)."""

    def __init__(self, bus_address: str) -> None:
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus_address}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.bus = dbus.bus.BusConnection(bus_address)
        _wait(lambda: self.bus.name_has_owner("org.bluez"), "dbusmock bluez5")
        self.root = self.bus.get_object("org.bluez", "/")
        self.handles = 0x0A

    def stop(self) -> None:
        self.bus.close()
        _stop(self.proc)

    def _obj(self, path: str) -> dbus.proxies.ProxyObject:
        return self.bus.get_object("org.bluez", path)

    def add_adapter(self, name: str = "hci0") -> str:
        return str(self.root.AddAdapter(name, "edge-test", dbus_interface=BLUEZ_MOCK_IFACE))

    def add_device(self, address: str, name: str = "sensor", adapter: str = "hci0", rssi: int = -60) -> str:
        """A device BlueZ knows, with real BlueZ property types and a Connect that resolves services."""
        path = str(self.root.AddDevice(adapter, address, name, dbus_interface=BLUEZ_MOCK_IFACE))
        dev = self._obj(path)
        dev.UpdateProperties(DEVICE_IFACE, {
            "ManufacturerData": dbus.Dictionary({}, signature="qv"),
            "ServiceData": dbus.Dictionary({}, signature="sv"),
            "AdvertisingData": dbus.Dictionary({}, signature="yv"),
            "AdvertisingFlags": _bytes(b"\x06"),
            "RSSI": dbus.Int16(rssi),
        }, dbus_interface=MOCK_IFACE)
        dev.AddMethod(DEVICE_IFACE, "Connect", "", "", CONNECT_CODE, dbus_interface=MOCK_IFACE)
        dev.AddMethod(DEVICE_IFACE, "Disconnect", "", "", DISCONNECT_CODE, dbus_interface=MOCK_IFACE)
        return path

    def advertise(
        self,
        address: str,
        *,
        manufacturer_data: dict[int, bytes] | None = None,
        service_data: dict[str, bytes] | None = None,
        rssi: int = -60,
        adapter: str = "hci0",
    ) -> bool:
        """Fake one advert: BlueZ updates the device's properties, which bleak sees as an advertisement.

        Like BlueZ, the model reports adverts only while the adapter is discovering; False when it is not.
        """
        if not self.discovering(adapter):
            return False
        props: dict[str, object] = {"RSSI": dbus.Int16(rssi)}
        if manufacturer_data is not None:
            props["ManufacturerData"] = dbus.Dictionary(
                {dbus.UInt16(k): _bytes(v) for k, v in manufacturer_data.items()}, signature="qv")
        if service_data is not None:
            props["ServiceData"] = dbus.Dictionary(
                {dbus.String(k): _bytes(v) for k, v in service_data.items()}, signature="sv")
        self._obj(device_path(address, adapter)).UpdateProperties(DEVICE_IFACE, props, dbus_interface=MOCK_IFACE)
        return True

    def discovering(self, adapter: str = "hci0") -> bool:
        return bool(self._obj(f"/org/bluez/{adapter}").Get(
            "org.bluez.Adapter1", "Discovering", dbus_interface=dbus.PROPERTIES_IFACE))

    def add_gatt(self, address: str, service_uuid: str, chars: Iterable[Characteristic],
                 adapter: str = "hci0") -> dict[str, str]:
        """A primary service with characteristics under the device; returns uuid → characteristic path."""
        dev = device_path(address, adapter)
        svc = f"{dev}/service{self._next_handle():04x}"
        svc_props = {"UUID": dbus.String(service_uuid), "Primary": dbus.Boolean(True),
                     "Device": dbus.ObjectPath(dev), "Includes": dbus.Array([], signature="o")}
        self.root.AddObject(svc, SERVICE_IFACE, svc_props, [], dbus_interface=MOCK_IFACE)
        self._announce(svc, SERVICE_IFACE, svc_props)
        paths: dict[str, str] = {}
        for ch in chars:
            path = f"{svc}/char{self._next_handle():04x}"
            props = {"UUID": dbus.String(ch.uuid), "Service": dbus.ObjectPath(svc), "Value": _bytes(ch.value),
                     "Flags": dbus.Array(list(ch.flags), signature="s"), "Notifying": dbus.Boolean(False),
                     "MTU": dbus.UInt16(247)}
            methods = [("ReadValue", "a{sv}", "ay", READ_CODE), ("WriteValue", "aya{sv}", "", WRITE_CODE),
                       ("StartNotify", "", "", NOTIFY_ON_CODE), ("StopNotify", "", "", NOTIFY_OFF_CODE)]
            self.root.AddObject(path, CHAR_IFACE, props, methods, dbus_interface=MOCK_IFACE)
            self._announce(path, CHAR_IFACE, props)
            paths[ch.uuid] = path
        return paths

    def _next_handle(self) -> int:
        self.handles += 1
        return self.handles

    def _announce(self, path: str, iface: str, props: dict[str, object]) -> None:
        self.root.EmitSignal(OM_IFACE, "InterfacesAdded", "oa{sa{sv}}", [
            dbus.ObjectPath(path),
            dbus.Dictionary({iface: dbus.Dictionary(props, signature="sv")}, signature="sa{sv}"),
        ], dbus_interface=MOCK_IFACE)

    def set_value(self, char_path: str, value: bytes) -> None:
        """The peripheral changes a value; with notifications on, bleak receives it as a notification."""
        self._obj(char_path).UpdateProperties(CHAR_IFACE, {"Value": _bytes(value)}, dbus_interface=MOCK_IFACE)

    def value(self, char_path: str) -> bytes:
        return bytes(self._obj(char_path).Get(CHAR_IFACE, "Value", dbus_interface=dbus.PROPERTIES_IFACE))

    def notifying(self, char_path: str) -> bool:
        return bool(self._obj(char_path).Get(CHAR_IFACE, "Notifying", dbus_interface=dbus.PROPERTIES_IFACE))

    def connected(self, address: str, adapter: str = "hci0") -> bool:
        return bool(self._obj(device_path(address, adapter)).Get(
            DEVICE_IFACE, "Connected", dbus_interface=dbus.PROPERTIES_IFACE))

    def go_away(self, address: str, adapter: str = "hci0") -> None:
        """The device leaves radio range: the link drops and connection attempts fail."""
        dev = self._obj(device_path(address, adapter))
        dev.UpdateProperties(DEVICE_IFACE, {"Blocked": dbus.Boolean(True)}, dbus_interface=MOCK_IFACE)
        dev.UpdateProperties(DEVICE_IFACE, {"Connected": dbus.Boolean(False),
                                            "ServicesResolved": dbus.Boolean(False)}, dbus_interface=MOCK_IFACE)

    def come_back(self, address: str, adapter: str = "hci0") -> None:
        self._obj(device_path(address, adapter)).UpdateProperties(
            DEVICE_IFACE, {"Blocked": dbus.Boolean(False)}, dbus_interface=MOCK_IFACE)
