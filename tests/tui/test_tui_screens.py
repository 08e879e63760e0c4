"""Pilot tests of each screen's main flows against a real daemon on simulated devices, through the admin socket."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from textual.widgets import DataTable, Input, Static
from tui_pilot import open_config, wait_for

from edge.daemon import Daemon
from tui.app import EdgeApp
from tui.screens.device import DeviceScreen, ReadNowScreen, WriteScreen
from tui.screens.events import EventsScreen
from tui.screens.overview import OverviewScreen

SIZE = (80, 24)
EDGE_BIN = Path(sys.executable).with_name("edge")


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


def text_of(static: Static) -> str:
    return str(static.render())


async def all_seqs(app: EdgeApp) -> list[int]:
    seqs: list[int] = []
    after = 0
    while True:
        page = await app.call("GET", f"/v1/readings?after={after}&limit=10000")
        seqs += [r["seq"] for r in page["readings"]]
        if not page["readings"]:
            return seqs
        after = page["next"]


async def test_overview_lists_devices_and_a_device_shows_live_values(make_app: Callable[..., EdgeApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, OverviewScreen)
        devices = app.screen.query_one("#devices", DataTable)
        await wait_for(lambda: devices.row_count == 2 and "up" in cell(devices, "boiler", "state"), pilot)
        assert [str(k.value) for k in devices.rows] == ["boiler", "line"]
        sinks = app.screen.query_one("#sinks", DataTable)
        assert cell(sinks, "web", "type") == "http"
        assert "Store" in text_of(app.screen.query_one("#store", Static))

        await pilot.press("enter")
        assert isinstance(app.screen, DeviceScreen) and app.screen.device == "boiler"
        points = app.screen.query_one("#points", DataTable)
        await wait_for(lambda: points.row_count == 4, pilot)
        first = cell(points, "ramp", "value")
        await wait_for(lambda: cell(points, "ramp", "value") != first, pilot)
        await wait_for(lambda: len(cell(points, "ramp", "trend")) >= 3, pilot)
        assert "up" in text_of(app.screen.query_one("#summary", Static))

        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)


async def test_test_read_and_a_confirmed_write(make_app: Callable[..., EdgeApp], daemon: Daemon) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "enter")
        screen = app.screen
        assert isinstance(screen, DeviceScreen) and screen.device == "line"
        points = screen.query_one("#points", DataTable)
        await wait_for(lambda: points.row_count == 2, pilot)

        await pilot.press("t")
        assert isinstance(app.screen, ReadNowScreen)
        await pilot.press("enter")
        result = app.screen.query_one("#result", DataTable)
        await wait_for(lambda: result.row_count == 2, pilot)
        await pilot.press(*"type=bogus", "enter")
        await wait_for(lambda: "400" in text_of(app.screen.query_one("#status", Static)), pilot)
        await pilot.press("escape")

        await pilot.press("w")  # speed is not writable
        assert app.screen is screen
        await pilot.press("down", "w")
        assert isinstance(app.screen, WriteScreen) and app.screen.point == "setpoint"
        await pilot.press(*"55.5", "enter")
        assert "Write 55.5 to line/setpoint?" in text_of(app.screen.query_one("#status", Static))
        await pilot.press("y")
        await wait_for(lambda: app.screen is screen, pilot)
        await wait_for(lambda: cell(points, "setpoint", "value") == "55.5", pilot)
    events = await daemon.store.run_read(lambda s: s.events_sync(0, 100, "write"))
    assert [e.data["value"] for e in events] == [55.5]
    assert events[0].data["source"] == "admin-socket"


async def test_config_edit_keeps_comments_applies_and_loses_nothing(make_app: Callable[..., EdgeApp],
                                                                    daemon: Daemon) -> None:
    path = daemon.config.source
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, tables = await open_config(pilot)
        await app.call("PUT", "/v1/cursors/continuity-check", {"seq": 0})  # keeps what the sink already has
        seqs_before = await all_seqs(app)
        tables.focus()
        await pilot.press("down", "down", "down", "down")  # edge, store, api, discovery → device boiler
        await wait_for(lambda: screen.current is not None and screen.current[:2] == ("device", "boiler"), pilot)
        field = screen.query_one("#field-interval", Input)
        assert field.value == "200ms"
        field.value = "300ms"
        await pilot.press("ctrl+s")
        result = screen.query_one("#result", Static)
        await wait_for(lambda: "applied" in text_of(result), pilot)
        assert "interval = 300ms" in text_of(result)
        boiler = next(d for d in daemon.config.devices if d.name == "boiler")
        assert boiler.interval == 0.3
        assert daemon.reloads == 1

        text = path.read_text()
        assert "# site config for the TUI tests — these comments must survive edits made in the TUI" in text
        assert 'interval = "300ms"       # fast, for tests' in text
        assert "# the boiler room" in text and "writable = true        # the technician may change it" in text
        assert path.with_name("edge.toml.bak").read_text().count('interval = "200ms"') == 2

        await wait_for(lambda: daemon.runners["boiler"].readings_in > 0, pilot)
        await pilot.pause(0.5)
        seqs_after = await all_seqs(app)
        assert seqs_after[: len(seqs_before)] == seqs_before
        assert seqs_after == list(range(seqs_after[0], seqs_after[0] + len(seqs_after))), "no seq lost"
        assert len(seqs_after) > len(seqs_before)

        tables.focus()
        await pilot.press("down", "down", "down")  # line, · speed, · setpoint
        await wait_for(lambda: screen.current is not None and screen.current[:2] == ("point", "line/setpoint"),
                       pilot)
        screen.query_one("#field-unit", Input).value = "degF"
        screen.query_one("#new-key", Input).value = "deadband = 0.5"
        await pilot.press("ctrl+s")
        await wait_for(lambda: "applied" in text_of(result) and "deadband" in text_of(result), pilot)
        line = next(d for d in daemon.config.devices if d.name == "line")
        setpoint = next(p for p in line.point if p.name == "setpoint")
        assert (setpoint.unit, setpoint.deadband, setpoint.writable) == ("degF", 0.5, True)
        assert "writable = true        # the technician may change it" in path.read_text()


async def test_an_invalid_edit_is_refused_with_edge_checks_message(make_app: Callable[..., EdgeApp],
                                                                   daemon: Daemon, tmp_path: Path) -> None:
    path = daemon.config.source
    original = path.read_text()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, tables = await open_config(pilot)
        tables.focus()
        await pilot.press("down", "down", "down", "down")
        await wait_for(lambda: screen.current is not None and screen.current[:2] == ("device", "boiler"), pilot)
        screen.query_one("#field-interval", Input).value = "fast"
        await pilot.press("ctrl+s")
        result = screen.query_one("#result", Static)
        await wait_for(lambda: "refused" in text_of(result), pilot)
        shown = text_of(result)

    assert path.read_text() == original, "a refused edit leaves the file alone"
    assert daemon.reloads == 0
    bad = original.replace('interval = "200ms"       # fast', 'interval = "fast"       # fast')
    copy = tmp_path / "copy.toml"
    copy.write_text(bad)
    check = subprocess.run([str(EDGE_BIN), "check", "-c", str(copy)], capture_output=True, text=True)
    assert check.returncode == 1
    expected = [line.replace(str(copy), str(path)) for line in check.stdout.splitlines()]
    assert expected and all(line in shown for line in expected), (expected, shown)
    assert "device[0].interval" in shown


async def test_events_and_dead_letter_replay(make_app: Callable[..., EdgeApp], daemon: Daemon,
                                             receiver: object) -> None:
    assert daemon.store is not None
    payload = json.dumps({"edge": "tui-test", "readings": [{"seq": 1, "device": "boiler", "point": "sine",
                                                            "ts": "2026-11-21T22:45:00.123Z", "value": 1.5,
                                                            "quality": "good"}]}).encode()
    ident = await daemon.store.add_dead_letter("web", 1, 1, 1, "HTTP 500 from the receiver", payload)
    orphan = await daemon.store.add_dead_letter("gone", 2, 2, 1, "sink removed", payload)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        events = screen.query_one("#events", DataTable)
        dead = screen.query_one("#dead", DataTable)
        await wait_for(lambda: dead.row_count == 2, pilot)
        assert "started" in [str(events.get_row_at(i)[1]) for i in range(events.row_count)]
        assert cell(dead, str(ident), dead.ordered_columns[1].key) == "web"

        dead.focus()
        await pilot.press("down", "p")  # the orphan's sink is not configured: a clear 409
        status = screen.query_one("#dead-status", Static)
        await wait_for(lambda: "409" in text_of(status), pilot)
        assert f"dead letter {orphan} not replayed" in text_of(status)
        assert "sink 'gone' is not configured" in text_of(status)

        await pilot.press("up", "p")
        await wait_for(lambda: f"dead letter {ident} (1 readings) replayed" in text_of(status), pilot)
        await wait_for(lambda: dead.row_count == 1, pilot)
        assert any(b"HTTP 500" not in body and b'"value":1.5' in body.replace(b" ", b"")
                   for body in receiver.bodies)  # type: ignore[attr-defined]
        await wait_for(lambda: any(str(events.get_row_at(i)[1]) == "dead_letter_replayed"
                                   for i in range(events.row_count)), pilot)


async def test_r_writes_the_site_report(make_app: Callable[..., EdgeApp], tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.state.devices and app.state.devices[0]["points"], pilot)
        await pilot.press("r")
        await wait_for(lambda: app.last_report is not None, pilot)
    assert app.last_report is not None and app.last_report.parent == tmp_path / "reports"
    report = app.last_report.read_text()
    assert report.startswith("# Site report: tui-test")
    for needle in ("## Devices", "| boiler | simulator | up |", "### line", "| setpoint | 42 | degC | good |",
                   "## Sinks", "| web | http |", "## Store", "edge version: 0.1.0",
                   "## Versions", "- edge (the daemon): 0.1.0", "textual 8."):
        assert needle in report, needle


async def test_secrets_in_the_config_form_are_masked(make_app: Callable[..., EdgeApp], daemon: Daemon) -> None:
    """A sink token or password is not shown on the technician's screen (or in a screenshot of it)."""
    path = daemon.config.source
    path.write_text(path.read_text().replace('type = "http"\n', 'type = "http"\ntoken = "t0ps3cret"\n'))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, tables = await open_config(pilot)
        tables.move_cursor(row=next(i for i, e in enumerate(screen.entries) if e[:2] == ("sink", "web")))
        await wait_for(lambda: screen.query("#field-token"), pilot)
        token = screen.query_one("#field-token", Input)
        assert token.value == "t0ps3cret" and token.password
        assert not screen.query_one("#field-url", Input).password


async def test_an_edit_the_daemon_applies_only_at_restart_says_so(make_app: Callable[..., EdgeApp],
                                                                  daemon: Daemon) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, tables = await open_config(pilot)
        tables.focus()
        await pilot.press("down")  # edge → store
        await wait_for(lambda: screen.current is not None and screen.current[:2] == ("section", "store"), pilot)
        screen.query_one("#new-key", Input).value = 'max_bytes = "10MiB"'
        await pilot.press("ctrl+s")
        result = screen.query_one("#result", Static)
        await wait_for(lambda: "saved" in text_of(result) or "refused" in text_of(result), pilot)
        assert "[store] changes take effect at the next restart" in text_of(result), text_of(result)
        assert "applied and reloaded" not in text_of(result)
