"""`edge demo`: a real daemon on an embedded default — simulated devices, a local store, the pull API."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path
from typing import Any

import tomlkit

from edge.config import Config, load_config

DEMO_EDGE_ID = "demo"
DEMO_MODBUS_REGISTERS = 64  # the demo devices use the first few; pymodbus's simulator costs memory per register


def _port_free(host: str, port: int) -> bool:
    if port == 0:
        return True
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def demo_config_text(data_dir: Path, listen: str, modbus_devices: list[dict[str, Any]]) -> str:
    """The demo's config file, written into the data dir so that users can read, edit and reload it."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("edge demo config: edit and `kill -HUP` the demo (or POST /v1/reload) to apply"))
    doc["edge"] = {"id": DEMO_EDGE_ID, "data_dir": str(data_dir)}
    doc["store"] = {"max_bytes": "256MiB", "max_age": "7d", "commit_interval": "100ms"}
    doc["api"] = {"listen": listen}
    doc["discovery"] = {"advertise": False}
    devices = tomlkit.aot()
    devices.append(tomlkit.item({"name": "sim-boiler", "driver": "simulator", "interval": "1s"}))
    devices.append(tomlkit.item({
        "name": "sim-line", "driver": "simulator", "interval": "500ms",
        "point": [
            {"name": "speed", "signal": "sine", "center": 1200.0, "amplitude": 300.0, "period": "30s", "unit": "rpm"},
            {"name": "count", "signal": "counter", "unit": "parts"},
            {"name": "setpoint", "signal": "constant", "center": 42.0, "writable": True, "unit": "degC"},
        ],
    }))
    for d in modbus_devices:
        devices.append(tomlkit.item(d))
    doc["device"] = devices
    return tomlkit.dumps(doc)


async def _start_modbus_simulator() -> tuple[Any, list[dict[str, Any]]]:
    """The in-process Modbus TCP simulator and the devices that poll it (empty if the driver is absent)."""
    try:
        from drivers.modbus import simserver
    except ImportError:
        return None, []
    server = await simserver.start_simulator("127.0.0.1", 0, registers=DEMO_MODBUS_REGISTERS)
    return server, simserver.demo_devices(server.port)


async def run_demo(data_dir: str | None, listen: str) -> int:
    from edge.api.tokens import first_token
    from edge.cli import _run_daemon

    folder = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="edge-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    host, _, port = listen.rpartition(":")
    if not _port_free(host, int(port)):
        print(f"port {port} is busy; using a free port instead")
        listen = f"{host}:0"
    sim, modbus_devices = await _start_modbus_simulator()
    config_path = folder / "edge.toml"
    config_path.write_text(demo_config_text(folder, listen, modbus_devices), encoding="utf-8")
    cfg: Config = load_config(config_path)

    def announce(daemon: Any) -> None:
        token = first_token(cfg.tokens_path)
        url = daemon.api_url
        print(f"edge demo running: {len(cfg.devices)} devices, data in {folder}")
        print(f"  API:    {url}")
        print(f"  token:  {token}")
        print(f"  try:    curl -s -H 'Authorization: Bearer {token}' '{url}/v1/readings?after=0&limit=5'")
        print(f"  config: {config_path}   (Ctrl-C stops the demo)", flush=True)

    try:
        return await _run_daemon(cfg, announce)
    finally:
        if sim is not None:
            await asyncio.shield(sim.stop())
