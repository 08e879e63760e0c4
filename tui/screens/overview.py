"""Overview: every device and sink at a glance, the store's fill level, and alarms."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from tui import format as fmt
from tui.screens.base import EdgeScreen, fill_table
from tui.screens.device import DeviceScreen

STATE_STYLE = {"up": "green", "degraded": "yellow", "down": "bold red", "starting": "cyan", "disabled": "dim"}


def styled_state(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


class OverviewScreen(EdgeScreen):
    """Devices (status, last poll, errors, poll rate), sinks (connected, backlog, oldest unsent, last ack),
    the store and alarms. Enter opens a device."""

    DEFAULT_CSS = """
    OverviewScreen #devices { height: auto; max-height: 12; }
    OverviewScreen #sinks { height: auto; max-height: 6; }
    OverviewScreen .heading { text-style: bold; color: $accent; padding: 0 1; }
    OverviewScreen #store { padding: 0 1; }
    OverviewScreen #alarms { padding: 0 1; height: auto; }
    """
    BINDINGS = [Binding("enter", "open_device", "Device", show=True)]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("Devices", classes="heading")
        yield DataTable(id="devices", cursor_type="row", zebra_stripes=True)
        yield Static("Sinks", classes="heading")
        yield DataTable(id="sinks", cursor_type="row", show_cursor=False)
        yield Static(id="store")
        yield Static(id="alarms")
        yield Footer()

    def on_mount(self) -> None:
        devices = self.query_one("#devices", DataTable)
        for label, key in (("Device", "name"), ("Driver", "driver"), ("State", "state"), ("Last poll", "last"),
                           ("Errors", "errors"), ("Rate", "rate")):
            devices.add_column(label, key=key)
        sinks = self.query_one("#sinks", DataTable)
        for label, key in (("Sink", "name"), ("Type", "type"), ("Connected", "connected"),
                           ("Backlog", "backlog"), ("Oldest unsent", "oldest"), ("Last ack", "ack")):
            sinks.add_column(label, key=key)

    async def update_view(self) -> None:
        if not self.query_one("#devices", DataTable).columns:
            return  # not mounted yet: on_mount adds the columns, then the next refresh fills them
        state = self.edge.state
        now = self.edge.clock()
        fill_table(self.query_one("#devices", DataTable), [
            (d["name"], [d["name"], d.get("driver", ""), styled_state(d["status"]["state"]),
                         fmt.ago(d["status"].get("last_poll"), now),
                         str(d["status"].get("poll_errors", 0)), f"{state.poll_rate(d):.1f}/s"])
            for d in state.devices])
        sinks: dict[str, Any] = state.stats.get("sinks") or {}
        fill_table(self.query_one("#sinks", DataTable), [
            (name, [name, s.get("type", ""),
                    "[green]yes[/]" if s.get("connected") else "[red]no[/]",
                    str(s.get("backlog_readings", "?")), fmt.duration(s.get("oldest_unsent_age_s")),
                    fmt.ago(s.get("last_ack"), now)])
            for name, s in sinks.items()] or [("-", ["(no sinks: pull API only)", "", "", "", "", ""])])
        store = state.stats.get("store") or {}
        used = store.get("bytes", 0) / store["max_bytes"] if store.get("max_bytes") else 0.0
        dead = (state.stats.get("dead_letters") or {}).get("batches", 0)
        self.query_one("#store", Static).update(
            f"[b]Store[/] {fmt.size(store.get('bytes'))} of {fmt.size(store.get('max_bytes'))} ({used:.1%})"
            f" · {store.get('readings', 0)} readings · seq {store.get('first_seq')}..{store.get('last_seq')}"
            f" · dead letters {dead}")
        alarms = state.alarms()
        if state.error:
            alarms.insert(0, state.error)
        self.query_one("#alarms", Static).update(
            "\n".join(f"[bold red]⚠ {escape(a)}[/]" for a in alarms) if alarms else "[green]✓ no alarms[/]")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "devices" and event.row_key.value:
            self.app.push_screen(DeviceScreen(str(event.row_key.value)))

    def action_open_device(self) -> None:
        table = self.query_one("#devices", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.app.push_screen(DeviceScreen(str(key)))
