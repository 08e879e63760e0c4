"""Turn D-Bus/BlueZ/bleak failures into messages that say what is wrong and what to change (group, policy, service)."""

from __future__ import annotations

import os
from typing import Final

SYSTEM_BUS_DEFAULT: Final = "unix:path=/var/run/dbus/system_bus_socket"

PERMISSION_HINT: Final = (
    "permission denied by D-Bus: run edge as a user in the 'bluetooth' group (usermod -aG bluetooth <user>, "
    "then restart edge) or allow it in a D-Bus policy such as /etc/dbus-1/system.d/edge-bluetooth.conf "
    "(<policy user=\"<user>\"><allow send_destination=\"org.bluez\"/></policy>)"
)


class BleUnavailable(OSError):
    """Bluetooth cannot be used at all (no D-Bus, no BlueZ, no adapter, no permission); the message says why."""


def bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS_DEFAULT)


def explain(error: BaseException, adapter: str | None = None) -> str:
    """A one-line reason for a Bluetooth failure, with the fix where one is known."""
    text = str(error) or type(error).__name__
    dbus_name = getattr(error, "dbus_error", None) or ""
    lowered = f"{dbus_name} {text}".lower()
    where = adapter or "the default adapter"
    if isinstance(error, BleUnavailable):
        return text
    if isinstance(error, PermissionError) or "accessdenied" in lowered or "not authorized" in lowered \
            or "denied_by" in lowered or "authentication" in lowered:
        return f"{PERMISSION_HINT} ({text})"
    if isinstance(error, FileNotFoundError | ConnectionRefusedError) or "noserver" in lowered:
        return (f"D-Bus system bus not reachable at {bus_address()}: is dbus installed and running? "
                f"(apt install dbus; systemctl start dbus) ({text})")
    if "serviceunknown" in lowered or "org.bluez was not provided" in lowered or "name has no owner" in lowered:
        return ("BlueZ is not running (org.bluez is not on the system bus): apt install bluez; "
                "systemctl enable --now bluetooth")
    if "no bluetooth adapters" in lowered or "no_bluetooth" in lowered:
        return "no Bluetooth adapter found: check 'bluetoothctl list' and 'rfkill list'"
    if "not found" in lowered and "adapter" in lowered:
        return f"Bluetooth adapter {where} not found: check 'bluetoothctl list' and the device's adapter key"
    if "powered_off" in lowered or "not ready" in lowered or "powered off" in lowered:
        return f"Bluetooth adapter {where} is powered off: rfkill unblock bluetooth; bluetoothctl power on"
    if isinstance(error, TimeoutError):
        return f"timed out: {text}" if str(error) else "timed out"
    return text


def device_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this device failed now" (bleak/D-Bus errors, timeouts, a dropped socket)."""
    from bleak.exc import BleakError

    return (BleakError, TimeoutError, OSError, EOFError, BleUnavailable)
