"""Discover: run zeroconf or a driver's scan with a progress bar, then turn a finding into a configured device."""

from __future__ import annotations

import logging
import time
import tomllib
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, ProgressBar, Select, SelectionList, Static

from tui import config_edit
from tui.background import start
from tui.scans import DEFAULT_TIMEOUT, DEFAULT_UNITS, Finding, point_name
from tui.screens.base import EdgeScreen

if TYPE_CHECKING:
    from tui.app import EdgeApp

log = logging.getLogger("edge.tui")

PROGRESS_TICK = 0.1  # seconds between progress bar updates while a scan runs
DEFAULT_NEW_INTERVAL = "1s"
DEFAULT_MODBUS_POINT = {"name": "hr0", "table": "holding", "address": 0, "type": "uint16"}


def parse_units(text: str) -> list[int]:
    from edge.cli import _parse_units

    return _parse_units(text or DEFAULT_UNITS)


def discovery_interfaces(config_text: str) -> list[str]:
    """Where the daemon's own config says to browse: [discovery] interfaces, else the API's listen address."""
    from edge.discovery import interfaces_for

    doc = tomllib.loads(config_text)
    listen = str(doc.get("api", {}).get("listen", "127.0.0.1:8470"))
    found = interfaces_for(listen.rpartition(":")[0], list(doc.get("discovery", {}).get("interfaces", [])))
    return found if isinstance(found, list) else []


class AddDeviceScreen(ModalScreen[None]):
    """The short form that makes a finding a device: name, interval, points; applied through PUT /v1/config."""

    DEFAULT_CSS = """
    AddDeviceScreen { align: center middle; }
    AddDeviceScreen > VerticalScroll { width: 76; height: auto; max-height: 22; border: thick $accent;
                                       padding: 0 1; background: $surface; }
    AddDeviceScreen SelectionList { height: auto; max-height: 8; }
    AddDeviceScreen Input { width: 1fr; }
    AddDeviceScreen .row { height: auto; }
    AddDeviceScreen .row Label { width: 10; padding: 1 0 0 0; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("ctrl+s", "apply", "Add device")]

    def __init__(self, finding: Finding, taken: set[str]) -> None:
        super().__init__()
        self.finding = finding
        self.taken = taken

    def _suggested_name(self) -> str:
        base = point_name(self.finding.name.replace(" ", "-")) if self.finding.kind != "modbus" else \
            f"unit{(self.finding.device or {}).get('unit', 1)}"
        name, n = base, 2
        while name in self.taken:
            name, n = f"{base}-{n}", n + 1
        return name

    def compose(self) -> ComposeResult:
        device = self.finding.device or {}
        with VerticalScroll():
            yield Label(f"[b]Add {device.get('driver')} device[/] at {self.finding.address}")
            with Horizontal(classes="row"):
                yield Label("Name")
                yield Input(self._suggested_name(), id="name")
            with Horizontal(classes="row"):
                yield Label("Interval")
                yield Input(DEFAULT_NEW_INTERVAL, id="interval")
            if not self.finding.points and device.get("driver") in ("modbus-tcp", "modbus-rtu"):
                yield Label("Point: hr0 (holding 0, uint16); add more later in Config")
            if self.finding.points:
                yield Label("Points (space toggles):")
                yield SelectionList[int](*[
                    (f"{p['name']}  {' '.join(f'{k}={v}' for k, v in p.items() if k not in ('name', '_seen'))}"
                     f"  (seen {p.get('_seen')})", i, i < 2)
                    for i, p in enumerate(self.finding.points)], id="points")
            elif device.get("driver") == "opcua":
                with Horizontal(classes="row"):
                    yield Label("Node")
                    yield Input(placeholder="node id of a first point, e.g. ns=2;s=Line1.Temp", id="node")
            yield Static("ctrl+s adds the device (validated and applied by the daemon), Esc cancels", id="status")

    def draft(self) -> dict[str, Any]:
        """The [[device]] table the form describes."""
        device: dict[str, Any] = {"name": self.query_one("#name", Input).value.strip(),
                                  **(self.finding.device or {}),
                                  "interval": self.query_one("#interval", Input).value.strip()}
        points: list[dict[str, Any]] = []
        if self.finding.points:
            chosen = self.query_one("#points", SelectionList).selected
            points = [{k: v for k, v in self.finding.points[i].items() if k != "_seen"} for i in sorted(chosen)]
        elif device.get("driver") == "opcua":
            node = self.query_one("#node", Input).value.strip()
            if node:
                points = [{"name": point_name(node.rpartition("=")[2]), "node": node}]
        elif device.get("driver") in ("modbus-tcp", "modbus-rtu"):
            points = [dict(DEFAULT_MODBUS_POINT)]
        if points:
            device["point"] = points
        return device

    def action_apply(self) -> None:
        from tui.app import EdgeApp

        app = self.app
        assert isinstance(app, EdgeApp)
        device = self.draft()
        self.query_one("#status", Static).update(f"adding {escape(str(device['name']))}…")
        # On the app, not this form: Esc may close the form, but a config change under way still reports how it
        # went. ctrl+s again while it runs is ignored: the device is added once.
        start(app, "add-device", lambda: self._apply(app, device), replace=False,
              what=f"adding device {device['name']}")

    async def _apply(self, app: EdgeApp, device: dict[str, Any]) -> None:
        from tui.app import DaemonError

        try:
            current = (await app.call("GET", "/v1/config"))["text"]
            text = config_edit.add_device(current, device, f"added from discovery ({self.finding.kind} "
                                                           f"{self.finding.address})")
            await app.call("PUT", "/v1/config", {"text": text})
        except config_edit.EditError as e:
            self._refused(app, device, f"[red]{escape(str(e))}[/]", str(e))
            return
        except DaemonError as e:
            why = "\n".join(e.problems) if e.problems else str(e)
            self._refused(app, device, "[red]refused:[/] " + escape(why), f"refused: {why}")
            return
        app.notify(f"device {device['name']} added and the config reloaded", title="Discover")
        await app.refresh_state()
        if self.is_current:
            self.dismiss()

    def _refused(self, app: EdgeApp, device: dict[str, Any], status: str, message: str) -> None:
        """Say why the device was not added: in the form, or in a notification when the form was closed."""
        if self.is_current:
            self.query_one("#status", Static).update(status)
        else:
            app.notify(f"device {device['name']} not added: {message}", severity="error", markup=False)


class DiscoverScreen(EdgeScreen):
    """Pick a kind of discovery, type a target if it needs one, Enter scans; `a` adds the selected finding."""

    DEFAULT_CSS = """
    DiscoverScreen #controls { height: auto; }
    DiscoverScreen #controls Horizontal { height: auto; }
    DiscoverScreen #kind { width: 30; }
    DiscoverScreen #target { width: 1fr; }
    DiscoverScreen #units { width: 12; }
    DiscoverScreen #progress-row { height: 1; padding: 0 1; }
    DiscoverScreen #progress { width: 30; }
    DiscoverScreen #scan-status { width: 1fr; padding: 0 1; }
    DiscoverScreen #found { height: 1fr; }
    DiscoverScreen #note { height: auto; padding: 0 1; }
    """
    AUTO_FOCUS = "#target"
    BINDINGS = [Binding("f5", "scan", "Scan"), Binding("a", "add", "Add device"),
                Binding("escape", "app.switch_mode('overview')", "Back", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[Finding] = []
        self.scanning = False

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="controls"):
            with Horizontal():
                kinds = self.edge.scanner.kinds()
                yield Select([(k.label, k.key) for k in kinds], value=kinds[0].key, allow_blank=False, id="kind")
                yield Input(placeholder=kinds[0].target_hint, id="target")
                yield Input(DEFAULT_UNITS, placeholder="units", id="units", tooltip="Modbus unit ids to probe")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=100, show_eta=False, id="progress")
            yield Static("Enter (or F5) scans", id="scan-status")
        yield DataTable(id="found", cursor_type="row", zebra_stripes=True)
        yield Static(id="note")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#found", DataTable)
        table.add_columns("Kind", "Name", "Address", "Detail")
        self._show_availability()

    def _kind(self) -> str:
        return str(self.query_one("#kind", Select).value)

    def _show_availability(self) -> None:
        kind = self._kind()
        spec = next(k for k in self.edge.scanner.kinds() if k.key == kind)
        self.query_one("#target", Input).placeholder = spec.target_hint
        missing = self.edge.scanner.missing(kind)
        self.query_one("#note", Static).update(f"[yellow]{escape(missing)}[/]" if missing else "")

    def on_select_changed(self, event: Select.Changed) -> None:
        self._show_availability()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_scan()

    def action_scan(self) -> None:
        # Ignored while a scan runs; a press while the daemon's config is still being read replaces that start.
        if not self.scanning:
            start(self, "scan", self._scan, replace=True, what=f"{self._kind()} scan")

    async def _scan(self) -> None:
        from tui.app import DaemonError

        kind = self._kind()
        note = self.query_one("#note", Static)
        status = self.query_one("#scan-status", Static)
        missing = self.edge.scanner.missing(kind)
        if missing:
            note.update(f"[yellow]{escape(missing)}[/]")
            return
        try:
            units = parse_units(self.query_one("#units", Input).value)
        except ValueError as e:
            note.update(f"[red]units: {escape(str(e))}[/]")
            return
        target = self.query_one("#target", Input).value
        interfaces: list[str] = []
        if kind == "zeroconf" and not target.strip():  # a typed target names the interfaces itself
            try:
                interfaces = discovery_interfaces((await self.edge.call("GET", "/v1/config"))["text"])
            except (DaemonError, tomllib.TOMLDecodeError, KeyError):
                interfaces = []
            except (OSError, ValueError) as e:  # an interface or host of the config that this machine lacks
                note.update(f"[red]the daemon's discovery interfaces: {escape(str(e))}; "
                            "type the interfaces to browse on as the target[/]")
                return
        timeout = DEFAULT_TIMEOUT
        expected = timeout * (len(units) if kind.startswith("modbus") else 1)
        self.scanning = True
        self.findings = []
        table = self.query_one("#found", DataTable)
        table.clear()
        progress = self.query_one("#progress", ProgressBar)
        progress.update(total=100, progress=0)
        status.update("scanning…")
        note.update("")
        started = time.monotonic()
        wall_start = self.edge.clock()

        def tick() -> None:
            progress.update(progress=min(99.0, (time.monotonic() - started) / max(expected, 0.1) * 100))

        ticker = self.set_interval(PROGRESS_TICK, tick)
        try:
            found = await self.edge.scanner.run(kind, target, units, timeout, interfaces)
        except (TimeoutError, ImportError, OSError, ValueError) as e:
            note.update(f"[red]{type(e).__name__}: {escape(str(e))}[/]")
            found = []
        except Exception as e:  # a scan's unexpected failure is shown; it must not end the technician's session
            log.exception("%s scan of %r failed", kind, target)
            note.update(f"[red]scan failed: {type(e).__name__}: {escape(str(e))}[/]")
            found = []
        finally:
            ticker.stop()
            self.scanning = False
        progress.update(progress=100)
        self.findings = found
        for f in found:
            table.add_row(f.kind, Text(f.name), Text(f.address), Text(f.detail))
        took = self.edge.clock() - wall_start
        status.update(f"found {len(found)} in {took:.1f}s — select one, press a to add it" if found
                      else f"nothing found in {took:.1f}s")
        if found:
            table.focus()

    def selected(self) -> Finding | None:
        table = self.query_one("#found", DataTable)
        if not table.row_count or table.cursor_row >= len(self.findings):
            return None
        return self.findings[table.cursor_row]

    def action_add(self) -> None:
        finding = self.selected()
        if finding is None:
            self.notify("nothing selected: scan first", severity="warning")
            return
        if finding.device is None:
            self.query_one("#note", Static).update(escape(finding.note or "this finding cannot become a device"))
            return
        taken = {d["name"] for d in self.edge.state.devices}
        self.app.push_screen(AddDeviceScreen(finding, taken))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        finding = self.selected()
        if finding is not None:
            self.query_one("#note", Static).update(escape(finding.note))
