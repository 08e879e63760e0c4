"""Config: the file's sections, devices and sinks as forms; validated and applied by the daemon, comments kept."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from tui import config_edit
from tui.background import start
from tui.screens.base import EdgeScreen

READ_ONLY_KEYS = frozenset({"name", "driver", "type"})  # identity keys: change them by adding a new table
SECRET_KEYS = frozenset({"password", "token", "bindkey"})  # shown masked in the form (still editable)


class ConfigScreen(EdgeScreen):
    """Left: what can be edited. Right: its keys. ctrl+s sends the edited file to the daemon (PUT /v1/config)."""

    DEFAULT_CSS = """
    ConfigScreen #tables { width: 26; height: 1fr; }
    ConfigScreen #form { width: 1fr; height: 1fr; padding: 0 1; }
    ConfigScreen .field { height: auto; }
    ConfigScreen .field { margin: 0 0 1 0; }
    ConfigScreen .field Label { width: 16; padding: 0 1 0 0; }
    ConfigScreen .field Input { width: 1fr; border: none; height: 1; padding: 0 1; background: $boost; }
    ConfigScreen .field Input:focus { background: $accent 30%; }
    ConfigScreen #result { height: auto; max-height: 8; padding: 0 1; }
    """
    BINDINGS = [Binding("ctrl+s", "apply", "Apply"), Binding("f5", "reload_file", "Re-read file")]

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.path = ""
        self.entries: list[tuple[str, str, dict[str, Any]]] = []
        self.current: tuple[str, str, dict[str, Any]] | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal():
            yield DataTable(id="tables", cursor_type="row", show_header=False)
            yield VerticalScroll(id="form")
        yield Static(id="result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tables", DataTable).add_column("table", key="table")
        self.action_reload_file()

    def action_reload_file(self) -> None:
        """Fetch the file from the daemon and list its tables (in a worker: the daemon may be slow)."""
        # F5 again while the file is on its way is ignored: that answer is just as fresh.
        start(self, "load", self._load, replace=False, what="reading the config")

    async def _load(self) -> None:
        from tui.app import DaemonError

        result = self.query_one("#result", Static)
        try:
            doc = await self.edge.call("GET", "/v1/config")
            self.text, self.path = doc["text"], doc["path"]
            self.entries = config_edit.tables(self.text)
        except (DaemonError, config_edit.EditError) as e:
            result.update(f"[red]{escape(str(e))}[/]")
            return
        table = self.query_one("#tables", DataTable)
        selected = self.current[:2] if self.current else None
        self.current = None  # the form is rebuilt from the file just read
        table.clear()
        for kind, name, _ in self.entries:
            table.add_row(escape(self._label(kind, name)), key=f"{kind}:{name}")
        index = next((i for i, e in enumerate(self.entries) if e[:2] == selected), 0)
        table.move_cursor(row=index)
        await self._show(index)
        result.update(f"{escape(self.path)} · select a table, edit, ctrl+s applies (validated, reloaded, backup kept)")

    @staticmethod
    def _label(kind: str, name: str) -> str:
        if kind == "section":
            return f"[{name}]"
        if kind == "point":
            return f"  · {name.partition('/')[2]}"
        return f"{kind} {name}"

    async def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "tables":
            await self._show(event.cursor_row)

    async def _show(self, index: int) -> None:
        if not 0 <= index < len(self.entries):
            return
        entry = self.entries[index]
        if self.current is not None and self.current[:2] == entry[:2] and self.query("#form Input"):
            return
        self.current = entry
        form = self.query_one("#form", VerticalScroll)
        await form.remove_children()
        kind, name, values = entry
        fields: list[Any] = [Label(f"[b]{escape('[' + name + ']' if kind == 'section' else kind + ' ' + name)}[/]")]
        for key, value in values.items():
            field_input = Input(config_edit.value_text(value), id=f"field-{key}", password=key in SECRET_KEYS,
                                disabled=kind != "section" and key in READ_ONLY_KEYS)
            fields.append(Horizontal(Label(key), field_input, classes="field"))
        if not values:
            fields.append(Label("(no keys in the file: defaults apply)"))
        fields.append(Horizontal(Label("add a key"), Input(placeholder='key = value, e.g. timeout = "2s"',
                                                            id="new-key"), classes="field"))
        await form.mount_all(fields)

    def edited(self) -> dict[str, Any]:
        """The form's keys whose text differs from the file, as values of the same kind."""
        if self.current is None:
            return {}
        out: dict[str, Any] = {}
        for key, old in self.current[2].items():
            text = self.query_one(f"#field-{key}", Input).value
            if text != config_edit.value_text(old):
                out[key] = config_edit.value_from_text(text, old)
        out.update(config_edit.parse_assignment(self.query_one("#new-key", Input).value))
        return out

    def action_apply(self) -> None:
        """Write the edited keys into the file's text (tomlkit) and PUT it: the daemon validates and reloads."""
        result = self.query_one("#result", Static)
        try:
            changes = self.edited()
        except config_edit.EditError as e:
            result.update(f"[red]{escape(str(e))}[/]")
            return
        if self.current is None or not changes:
            result.update("nothing changed")
            return
        kind, name, _ = self.current
        try:
            text = config_edit.set_values(self.text, kind, name, changes)
        except config_edit.EditError as e:
            result.update(f"[red]{escape(str(e))}[/]")
            return
        result.update("applying…")
        # ctrl+s again while the daemon checks and applies the file is ignored: one edit is sent once.
        start(self, "apply", lambda: self._apply(text, changes), replace=False, what="applying the config")

    async def _apply(self, text: str, changes: dict[str, Any]) -> None:
        from tui.app import DaemonError

        result = self.query_one("#result", Static)
        try:
            answer = await self.edge.call("PUT", "/v1/config", {"text": text})
        except DaemonError as e:
            lines = e.problems or [str(e)]
            result.update("[b red]refused, nothing changed:[/]\n" + escape("\n".join(lines)))
            return
        changed = ", ".join(f"{k} = {config_edit.value_text(v)}" for k, v in changes.items())
        await self._load()
        later = answer.get("restart_needed") or []
        if later:  # saved, but the running daemon goes on with the old values of these
            result.update(f"[b yellow]saved: {escape(changed)}; {escape(', '.join(later))} changes take effect at "
                          f"the next restart (sudo systemctl restart edge)[/] "
                          f"(previous file kept as {escape(self.path)}.bak)")
        else:
            result.update(f"[green]applied and reloaded: {escape(changed)}[/] "
                          f"(previous file kept as {escape(self.path)}.bak)")
        await self.edge.refresh_state()
