"""Discover screen against real peers on loopback: a zeroconf-announced Modbus gateway and a Modbus unit scan."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Select, SelectionList, Static
from tui_pilot import open_discover, wait_for
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from drivers.modbus import simserver
from edge.daemon import Daemon
from tui import scans
from tui.app import EdgeApp
from tui.screens.discover import AddDeviceScreen, DiscoverScreen

SIZE = (80, 24)
LOOPBACK = "127.0.0.1"
SCAN_LIMIT = 15.0


@pytest.fixture
async def modbus_sim() -> AsyncIterator[Any]:
    server = await simserver.start_simulator(LOOPBACK, 0)
    yield server
    await server.stop()


@pytest.fixture
async def announced_gateway(modbus_sim: Any) -> AsyncIterator[str]:
    """The simulator announced as `_modbus._tcp` on loopback, as a gateway with mDNS would do."""
    zc = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo("_modbus._tcp.local.", "gw-plc-1._modbus._tcp.local.",
                            addresses=[socket.inet_aton(LOOPBACK)], port=modbus_sim.port,
                            properties={"unit": "2"}, server="gw-plc-1.local.")
    await (await zc.async_register_service(info))
    yield "gw-plc-1"
    await zc.async_unregister_all_services()
    await zc.async_close()


def row_of(screen: DiscoverScreen, name: str) -> int:
    return next(i for i, f in enumerate(screen.findings) if f.name == name)


async def added_and_polling(daemon: Daemon, name: str) -> bool:
    runner = daemon.runners.get(name)
    return bool(runner and runner.driver.status.state == "up" and runner.latest
                and all(r.quality == "good" for r in runner.latest.values()))


async def test_a_zeroconf_modbus_gateway_becomes_a_configured_device(
        make_app: Callable[..., EdgeApp], daemon: Daemon, announced_gateway: str, modbus_sim: Any) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_discover(pilot)
        await pilot.press("enter")  # empty target: the daemon's own interfaces (its API is on 127.0.0.1)
        found = await wait_for(lambda: not screen.scanning and screen.findings, pilot, SCAN_LIMIT)
        assert [(f.kind, f.name) for f in found] == [("_modbus._tcp", announced_gateway)]
        assert "found 1" in str(screen.query_one("#scan-status", Static).render())

        table = screen.query_one("#found", DataTable)
        table.move_cursor(row=row_of(screen, announced_gateway))
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddDeviceScreen)
        assert form.query_one("#name", Input).value == announced_gateway
        form.query_one("#interval", Input).value = "250ms"
        await pilot.press("ctrl+s")
        await wait_for(lambda: isinstance(app.screen, DiscoverScreen), pilot)
        await wait_for(lambda: added_and_polling(daemon, announced_gateway), pilot)

    text = daemon.config.source.read_text()
    assert "# added from discovery (_modbus._tcp 127.0.0.1:" in text
    dev = next(d for d in daemon.config.devices if d.name == announced_gateway)
    assert (dev.host, dev.port, dev.unit, dev.interval) == (LOOPBACK, modbus_sim.port, 2, 0.25)
    assert [p.name for p in dev.point] == ["hr0"]


async def test_a_modbus_unit_scan_offers_registers_as_points(make_app: Callable[..., EdgeApp], daemon: Daemon,
                                                             modbus_sim: Any) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_discover(pilot)
        screen.query_one("#kind", Select).value = "modbus-tcp"
        screen.query_one("#units", Input).value = "1-3"
        target = screen.query_one("#target", Input)
        target.focus()
        await pilot.press(*f"{LOOPBACK}:{modbus_sim.port}", "enter")
        found = await wait_for(lambda: not screen.scanning and screen.findings, pilot, SCAN_LIMIT)
        assert [f.name for f in found] == ["unit 1", "unit 2", "unit 3"]

        screen.query_one("#found", DataTable).move_cursor(row=2)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddDeviceScreen)
        assert form.query_one("#name", Input).value == "unit3"
        points = form.query_one("#points", SelectionList)
        assert points.selected == [0, 1]
        await pilot.press("ctrl+s")
        await wait_for(lambda: added_and_polling(daemon, "unit3"), pilot)
    dev = next(d for d in daemon.config.devices if d.name == "unit3")
    assert [(p.name, p.table, p.address) for p in dev.point] == [("hr0", "holding", 0), ("hr1", "holding", 1)]


async def test_a_discovery_kind_without_its_driver_says_so(make_app: Callable[..., EdgeApp],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = tuple(scans.ScanKind(k.key, k.label, k.target_hint, "drivers.ble.not_installed") if k.key == "ble"
                  else k for k in scans.KINDS)
    monkeypatch.setattr(scans, "KINDS", kinds)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_discover(pilot)
        screen.query_one("#kind", Select).value = "ble"
        await pilot.pause()
        note = str(screen.query_one("#note", Static).render())
        assert "BLE scan is not available in this build" in note and "drivers.ble.not_installed" in note
        await pilot.press("enter")
        await pilot.pause()
        assert screen.findings == []


OPCUA_SERVER = Path(__file__).resolve().parents[1] / "drivers" / "opcua" / "opcua_testserver.py"
OPCUA_START_LIMIT = 20.0


@pytest.fixture
def opcua_server() -> Iterator[str]:
    """The OPC-UA driver's test server in a subprocess; yields its endpoint URL."""
    if not OPCUA_SERVER.exists():
        pytest.skip(f"the OPC-UA test server ({OPCUA_SERVER}) is not in this tree")
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(OPCUA_SERVER), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        end = time.monotonic() + OPCUA_START_LIMIT
        line = ""
        while "READY" not in line and time.monotonic() < end:
            line = proc.stdout.readline()
        assert "READY" in line, "the OPC-UA test server did not start"
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_an_opcua_browse_offers_variables_as_points(make_app: Callable[..., EdgeApp], daemon: Daemon,
                                                          opcua_server: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_discover(pilot)
        screen.query_one("#kind", Select).value = "opcua"
        screen.query_one("#target", Input).focus()
        await pilot.press(*opcua_server, "enter")
        found = await wait_for(lambda: not screen.scanning and screen.findings, pilot, SCAN_LIMIT)
        assert len(found) == 1 and found[0].device == {"driver": "opcua", "url": opcua_server}
        assert len(found[0].points) >= 2 and all(p["node"].startswith("ns=") for p in found[0].points)

        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddDeviceScreen)
        form.query_one("#name", Input).value = "packer"
        chosen = [found[0].points[i]["name"] for i in form.query_one("#points", SelectionList).selected]
        await pilot.press("ctrl+s")
        await wait_for(lambda: added_and_polling(daemon, "packer"), pilot, SCAN_LIMIT)
    dev = next(d for d in daemon.config.devices if d.name == "packer")
    assert [p.name for p in dev.point] == chosen


async def test_a_wrong_interface_in_the_config_is_shown_not_fatal(make_app: Callable[..., EdgeApp],
                                                                  daemon: Daemon) -> None:
    """The daemon runs with a [discovery] interface that does not exist here: the scan says so, the TUI stays."""
    source = daemon.config.source
    source.write_text(source.read_text().replace("[discovery]\n", '[discovery]\ninterfaces = ["nosuchif0"]\n'))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_discover(pilot)
        await pilot.press("enter")  # empty target: the interfaces of the daemon's config
        note = screen.query_one("#note", Static)
        await wait_for(lambda: "nosuchif0" in str(note.render()), pilot)
        assert not screen.scanning and screen.findings == []
        assert app.is_running
