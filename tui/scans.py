"""Discovery for the Discover screen: zeroconf and the driver scans that are installed, as uniform findings."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

from drivers.modbus.defaults import DEFAULT_BAUDRATE, DEFAULT_TCP_PORT

DEFAULT_TIMEOUT = 2.0  # seconds a zeroconf browse listens; per unit id for Modbus scans
DEFAULT_UNITS = "1-10"
MAX_CANDIDATE_POINTS = 16  # registers/nodes offered as points in the add-device form


@dataclass(frozen=True)
class ScanKind:
    """One way of finding devices: its label, what to type as target, and the module that does it."""

    key: str
    label: str
    target_hint: str
    module: str


KINDS = (
    ScanKind("zeroconf", "Zeroconf (mDNS)", "interfaces, e.g. 127.0.0.1 (empty: the daemon's)", "edge.discovery"),
    ScanKind("modbus-tcp", "Modbus TCP unit scan", "HOST[:PORT]", "drivers.modbus.discover"),
    ScanKind("modbus-rtu", "Modbus RTU unit scan", "serial port, e.g. /dev/ttyUSB0", "drivers.modbus.discover"),
    ScanKind("opcua", "OPC-UA browse", "opc.tcp://HOST:PORT", "drivers.opcua.discover"),
    ScanKind("ble", "BLE scan", "(no target needed)", "drivers.ble.discover"),
)


@dataclass
class Finding:
    """Something discovery found; `device` is a draft [[device]] table when it can become a device."""

    kind: str
    name: str
    address: str
    detail: str
    device: dict[str, Any] | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def point_name(text: str) -> str:
    """A valid point name made from a browse name or register label."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    return (cleaned or "point")[:64]


def _txt(txt: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in txt.items())


def from_zeroconf(found: dict[str, Any]) -> Finding:
    where = f"{found['address']}:{found['port']}"
    service, txt = found["service"], found.get("txt") or {}
    base = Finding(service, found["name"], where, _txt(txt))
    if service == "_modbus._tcp":
        unit = int(txt["unit"]) if str(txt.get("unit", "")).isdigit() else 1
        base.device = {"driver": "modbus-tcp", "host": found["address"], "port": found["port"], "unit": unit}
    elif service == "_opcua-tcp._tcp":
        base.device = {"driver": "opcua", "url": f"opc.tcp://{where}{txt.get('path', '')}"}
    elif service == "_edge._tcp":
        base.note = f"another edge appliance: attach with  edge tui --url http://{where}  --token …"
    return base


def from_modbus(found: dict[str, Any], host: str | None, port: int | None, serial: str | None) -> Finding:
    unit = int(found["unit"])
    points: list[dict[str, Any]] = []
    shown = []
    for table in ("holding", "input"):
        values = found.get(table)
        if isinstance(values, list):
            shown.append(f"{table} {values[:4]}")
            for address, raw in enumerate(values[:MAX_CANDIDATE_POINTS // 2]):
                points.append({"name": f"{table[0]}r{address}", "table": table, "address": address,
                               "type": "uint16", "_seen": raw})
        elif values:
            shown.append(f"{table}: {values}")
    if serial:
        device = {"driver": "modbus-rtu", "serial": serial, "baudrate": DEFAULT_BAUDRATE, "unit": unit}
        where = f"{serial} unit {unit}"
    else:
        device = {"driver": "modbus-tcp", "host": host, "port": port, "unit": unit}
        where = f"{host}:{port} unit {unit}"
    return Finding("modbus", f"unit {unit}", where, "; ".join(shown), device, points)


def from_opcua(url: str, nodes: list[dict[str, Any]]) -> list[Finding]:
    points: list[dict[str, Any]] = [
        {"name": point_name(str(n.get("name") or n.get("browse_name") or n.get("node"))),
         "node": str(n.get("node") or n.get("node_id")), "_seen": n.get("value")}
        for n in nodes if n.get("node") or n.get("node_id")][:MAX_CANDIDATE_POINTS]
    seen: set[str] = set()
    for p in points:  # point names must be unique within a device
        base, n = p["name"], 2
        while p["name"] in seen:
            p["name"], n = f"{base[:60]}_{n}", n + 1
        seen.add(p["name"])
    detail = f"{len(nodes)} variables"
    return [Finding("opcua", url.split("//", 1)[-1], url, detail, {"driver": "opcua", "url": url}, points)]


def from_ble(found: dict[str, Any]) -> Finding:
    address = str(found.get("address", ""))
    values = found.get("values") or {}
    device = dict(found.get("device") or {"driver": "ble", "mode": "advertisement", "address": address,
                                          "format": found.get("format") or "raw"})
    points = [{"name": point_name(str(k)), "_seen": v} for k, v in values.items()][:MAX_CANDIDATE_POINTS]
    detail = f"rssi {found.get('rssi')} {found.get('format') or 'unrecognised'} " + \
        " ".join(f"{k}={v}" for k, v in values.items())
    return Finding("ble", str(found.get("name") or address), address, detail.strip(), device, points)


class Scanner:
    """Runs one kind of discovery; a kind whose driver is not installed says so instead."""

    def kinds(self) -> tuple[ScanKind, ...]:
        return KINDS

    def missing(self, kind: str) -> str | None:
        """Why this kind of discovery cannot run here, or None when it can."""
        spec = next(k for k in KINDS if k.key == kind)
        try:
            importlib.import_module(spec.module)
        except ImportError as e:
            return (f"{spec.label} is not available in this build: module {e.name or spec.module} is missing "
                    f"(the {kind} driver is not installed)")
        return None

    async def run(self, kind: str, target: str, units: list[int], timeout: float,
                  interfaces: list[str]) -> list[Finding]:
        """Findings of one scan. Raises ImportError (driver missing), OSError or ValueError (bad target)."""
        spec = next(k for k in KINDS if k.key == kind)
        mod = importlib.import_module(spec.module)
        if kind == "zeroconf":
            ifaces = target.replace(",", " ").split() or interfaces
            return [from_zeroconf(x) for x in await mod.browse(timeout, ifaces)]
        if kind == "modbus-tcp":
            host, _, port_text = target.strip().partition(":")
            if not host:
                raise ValueError("type the host to scan, e.g. 192.168.1.20 or 192.168.1.20:502")
            port = int(port_text) if port_text else DEFAULT_TCP_PORT
            return [from_modbus(x, host, port, None) for x in await mod.scan_tcp(host, port, units, timeout)]
        if kind == "modbus-rtu":
            if not target.strip():
                raise ValueError("type the serial port to scan, e.g. /dev/ttyUSB0")
            found = await mod.scan_serial(target.strip(), DEFAULT_BAUDRATE, units, timeout)
            return [from_modbus(x, None, None, target.strip()) for x in found]
        if kind == "opcua":
            if not target.strip().startswith("opc.tcp://"):
                raise ValueError("type the server's URL, e.g. opc.tcp://10.0.0.5:4840")
            return from_opcua(target.strip(), list(await mod.browse(target.strip(), timeout)))
        return [from_ble(x) for x in await mod.scan(timeout)]
