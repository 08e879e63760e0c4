"""Device: its points with live values, units, quality and sparklines; test-read now; write with confirmation."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, Sparkline, Static

from tui import format as fmt
from tui.background import busy, start
from tui.screens.base import EdgeScreen, fill_table

if TYPE_CHECKING:
    from tui.app import EdgeApp

TREND_WIDTH = 16  # characters of the per-point sparkline column
VALUE_WIDTH = 12


def parse_point_spec(text: str) -> dict[str, Any] | None:
    """`table=holding address=12 type=uint16` (or `node=ns=2;s=X`) → an ad-hoc point; empty → None."""
    if not text.strip():
        return None
    spec: dict[str, Any] = {"name": "test"}
    for part in text.split():
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, found {part!r}")
        try:
            spec[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            spec[key] = raw
    return spec


class ReadNowScreen(ModalScreen[None]):
    """Read the device now: its configured points, or any register/node typed as key=value pairs."""

    DEFAULT_CSS = """
    ReadNowScreen { align: center middle; }
    ReadNowScreen > Vertical { width: 76; height: auto; max-height: 22; border: thick $accent; padding: 0 1;
                                background: $surface; }
    ReadNowScreen #result { height: auto; max-height: 12; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Test read {self.device}[/] — Enter reads now. Empty: its configured points;\n"
                        "or one register/node, e.g.  table=holding address=12 type=uint16  or  node=ns=2;s=X")
            yield Input(placeholder="point keys (optional)", id="spec")
            yield DataTable(id="result", show_cursor=False)
            yield Static(id="status")

    def on_mount(self) -> None:
        self.query_one("#result", DataTable).add_columns("Point", "Value", "Unit", "Quality", "Error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        status = self.query_one("#status", Static)
        try:
            spec = parse_point_spec(event.value)
        except ValueError as e:
            status.update(f"[red]{escape(str(e))}[/]")
            return
        status.update("reading…")
        # Enter again (say, with another register typed) replaces a read still under way: the newest wins.
        # Esc closes the form and cancels it.
        start(self, "read", lambda: self._read(spec), replace=True, what=f"test read of {self.device}")

    async def _read(self, spec: dict[str, Any] | None) -> None:
        from tui.app import DaemonError, EdgeApp

        app = self.app
        assert isinstance(app, EdgeApp)
        status = self.query_one("#status", Static)
        try:
            answer = await app.call("POST", f"/v1/devices/{self.device}/read", {"point": spec} if spec else {})
        except DaemonError as e:
            status.update(f"[red]{escape(str(e))}[/]")
            return
        table = self.query_one("#result", DataTable)
        table.clear()
        for r in answer["readings"]:
            table.add_row(r["point"], Text(fmt.value(r.get("value"))), Text(r.get("unit") or ""),
                          r.get("quality", ""), Text(r.get("error") or ""))  # Text: "[kWh]" is no markup
        status.update(f"[green]read {len(answer['readings'])} values at {answer['readings'][0]['ts']}[/]"
                      if answer["readings"] else "no points")


class WriteScreen(ModalScreen[None]):
    """Type a value, then confirm with y: the write goes to the device through the daemon (audited)."""

    DEFAULT_CSS = """
    WriteScreen { align: center middle; }
    WriteScreen > Vertical { width: 64; height: auto; border: thick $warning; padding: 0 1; background: $surface; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("y", "confirm", "Yes, write", show=False),
                Binding("n", "dismiss", "No", show=False)]

    def __init__(self, device: str, point: str, current: str) -> None:
        super().__init__()
        self.device, self.point, self.current = device, point, current
        self.pending: Any = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Write {self.device}/{self.point}[/] (now {escape(self.current)})")
            yield Input(placeholder="new value, then Enter", id="value")
            yield Static(id="status")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from edge.cli import _parse_value

        if not event.value.strip():
            return
        self.pending = _parse_value(event.value)
        self.query_one("#status", Static).update(
            f"[b yellow]Write {escape(repr(self.pending))} to {self.device}/{self.point}?  y = write, n = cancel[/]")
        self.query_one("#value", Input).disabled = True
        self.focus()

    def action_confirm(self) -> None:
        from tui.app import EdgeApp

        if self.pending is None:
            return
        app = self.app
        assert isinstance(app, EdgeApp)
        value = self.pending
        self.query_one("#status", Static).update(f"writing {escape(repr(value))} to {self.device}/{self.point}…")
        # On the app, not this form: Esc may close the form, but a write under way still reports how it went.
        # y again while it runs is ignored: the point is written once.
        start(app, "write", lambda: self._write(app, value), replace=False, what=f"write of {self.device}/{self.point}")

    async def _write(self, app: EdgeApp, value: Any) -> None:
        from tui.app import DaemonError

        try:
            answer = await app.call("POST", f"/v1/devices/{self.device}/points/{self.point}", {"value": value})
        except DaemonError as e:
            if not self.is_current:  # the form was closed meanwhile
                app.notify(f"{self.device}/{self.point}: write refused: {e}", severity="error", markup=False)
                return
            self.query_one("#status", Static).update(f"[red]write refused: {escape(str(e))}[/]")
            self.pending = None
            self.query_one("#value", Input).disabled = False
            return
        app.notify(f"{self.device}/{self.point} = {answer['written']!r} (read back {answer['read_back']!r})",
                   title="Written")
        if self.is_current:
            self.dismiss()


class DeviceScreen(EdgeScreen):
    """One device's points, live. Escape goes back."""

    DEFAULT_CSS = """
    DeviceScreen #summary { padding: 0 1; height: auto; }
    DeviceScreen #points { height: 1fr; }
    DeviceScreen #trend-label { padding: 0 1; color: $text-muted; }
    DeviceScreen #trend { height: 3; margin: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("t", "test_read", "Test read"),
        Binding("w", "write", "Write"),
    ]

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        self.writable: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="summary")
        yield DataTable(id="points", cursor_type="row", zebra_stripes=True)
        yield Static(id="trend-label")
        yield Sparkline([], id="trend")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one("#points", DataTable)
        for label, key, width in (("Point", "name", None), ("Value", "value", VALUE_WIDTH), ("Unit", "unit", None),
                                  ("Quality", "quality", None), ("Trend", "trend", TREND_WIDTH),
                                  ("W", "writable", None)):
            table.add_column(label, key=key, width=width)
        await self.update_view()
        # Once per screen; Esc closes the screen and cancels it.
        start(self, "writable", self._load_writable, replace=True, what=f"reading the config of {self.device}")

    async def _load_writable(self) -> None:
        """Which points may be written, from the config file's [[device.point]] tables; then mark them."""
        from tui.app import DaemonError

        try:
            text = (await self.edge.call("GET", "/v1/config"))["text"]
            doc = tomllib.loads(text)
        except (DaemonError, tomllib.TOMLDecodeError, KeyError):
            return
        for dev in doc.get("device", []):
            if dev.get("name") == self.device:
                self.writable = {p["name"] for p in dev.get("point", []) if p.get("writable")}
        await self.update_view()

    async def update_view(self) -> None:
        if not self.query_one("#points", DataTable).columns:
            return  # not mounted yet
        state = self.edge.state
        dev = state.device(self.device)
        summary = self.query_one("#summary", Static)
        if dev is None:
            summary.update(f"[red]device {self.device} is not configured (any more)[/]")
            return
        st = dev["status"]
        extra = f" · last error: [red]{escape(st['last_error'])}[/]" if st.get("last_error") else ""
        summary.update(f"[b]{dev['name']}[/] · {dev.get('driver')} · {st['state']} · every {dev.get('interval')}s"
                       f" · last poll {fmt.ago(st.get('last_poll'), self.edge.clock())} · {st.get('polls', 0)} polls"
                       f" · {st.get('poll_errors', 0)} errors{extra}")
        table = self.query_one("#points", DataTable)
        rows = []
        for point, r in (dev.get("points") or {}).items():
            quality = r.get("quality", "")
            q = {"good": "[green]good[/]", "bad": "[red]bad[/]"}.get(quality, f"[yellow]{quality}[/]")
            value = escape(fmt.value(r.get("value"))) if quality != "bad" else \
                f"[red]{escape(r.get('error', 'bad'))}[/]"
            rows.append((point, [point, value, Text(r.get("unit") or ""), q,  # Text: "[kWh]" is no markup
                                 fmt.sparkline(state.history.get((self.device, point), []), TREND_WIDTH),
                                 "W" if point in self.writable else ""]))
        fill_table(table, rows)
        self._show_trend()

    def _selected_point(self) -> str | None:
        table = self.query_one("#points", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _show_trend(self) -> None:
        point = self._selected_point()
        values = list(self.edge.state.history.get((self.device, point or ""), []))
        label = self.query_one("#trend-label", Static)
        if point is None or not values:
            label.update("trend: no numeric values yet")
            self.query_one("#trend", Sparkline).data = []
            return
        label.update(f"trend of {point}: last {len(values)} values, min {fmt.value(min(values))}, "
                     f"max {fmt.value(max(values))}")
        self.query_one("#trend", Sparkline).data = values

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_trend()

    def action_test_read(self) -> None:
        self.app.push_screen(ReadNowScreen(self.device))

    def action_write(self) -> None:
        point = self._selected_point()
        if point is None:
            return
        if point not in self.writable and busy(self, "writable"):
            self.notify("still reading which points are writable from the config: try again in a moment",
                        severity="warning")
            return
        if point not in self.writable:
            self.notify(f"{self.device}/{point} is not writable (set writable = true in its config)",
                        severity="warning")
            return
        dev = self.edge.state.device(self.device) or {}
        current = fmt.value(((dev.get("points") or {}).get(point) or {}).get("value"))
        self.app.push_screen(WriteScreen(self.device, point, current))
