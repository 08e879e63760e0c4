"""Events and dead letters: the daemon's event log, and batches a sink gave up on, with replay."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from tui.background import start
from tui.screens.base import EdgeScreen

EVENTS_SHOWN = 200
EVENTS_PAGE = 1000  # the API's largest page
LETTERS_SHOWN = 100  # the oldest dead letters listed (fetched each refresh, so not all of a flood)


class EventsScreen(EdgeScreen):
    """Newest events first; below, dead letters. `p` replays the selected dead letter, `x` discards it."""

    DEFAULT_CSS = """
    EventsScreen .heading { text-style: bold; color: $accent; padding: 0 1; }
    EventsScreen #events { height: 1fr; }
    EventsScreen #event-detail { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    EventsScreen #dead { height: auto; max-height: 8; }
    EventsScreen #dead-status { height: auto; padding: 0 1; }
    """
    BINDINGS = [Binding("p", "replay", "Replay"), Binding("x", "discard", "Discard"),
                Binding("g", "fetch", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.letters: list[dict[str, Any]] = []
        self._fetching = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("Events (newest first)", classes="heading")
        yield DataTable(id="events", cursor_type="row", zebra_stripes=True)
        yield Static(id="event-detail")
        yield Static("Dead letters", classes="heading")
        yield DataTable(id="dead", cursor_type="row")
        yield Static(id="dead-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#events", DataTable).add_columns("Time (UTC)", "Kind", "Message")
        self.query_one("#dead", DataTable).add_columns("Id", "Sink", "Seq", "Count", "Error")
        self.action_fetch()

    async def update_view(self) -> None:
        if self.query_one("#events", DataTable).columns:
            self.action_fetch()

    def action_fetch(self) -> None:
        """Fetch new events and the dead letters in a worker (the daemon may be slow)."""
        # Ignored while a fetch is under way (g, or the refresh after each poll): its answer is just as fresh.
        start(self, "fetch", self._fetch, replace=False, what="reading events")

    async def _fetch(self) -> None:
        async with self._fetching:  # one fetch at a time: two would both add the same new events
            await self._fetch_once()

    async def _fetch_once(self) -> None:
        from tui.app import DaemonError

        try:
            fresh = await self._new_events()
            letters = (await self.edge.call("GET", f"/v1/dead-letters?limit={LETTERS_SHOWN}"))["dead_letters"]
        except DaemonError as err:
            self.query_one("#dead-status", Static).update(f"[red]{escape(str(err))}[/]")
            return
        events = (list(reversed(fresh)) + self.events)[:EVENTS_SHOWN]
        if [e["id"] for e in events] != [e["id"] for e in self.events]:
            self.events = events
            table = self.query_one("#events", DataTable)
            table.clear()
            for e in events:
                table.add_row(e["ts"][:19].replace("T", " "), e["kind"], Text(e["message"]), key=str(e["id"]))
        if [x["id"] for x in letters] != [x["id"] for x in self.letters]:
            self.letters = letters
            dead = self.query_one("#dead", DataTable)
            dead.clear()
            for x in letters:
                dead.add_row(str(x["id"]), x["sink"], f"{x['first_seq']}..{x['last_seq']}", str(x["count"]),
                             Text(x["error"]), key=str(x["id"]))
            if not letters:
                dead.add_row("", "(none)", "", "", "", key="none")
            if len(letters) >= LETTERS_SHOWN:
                self.query_one("#dead-status", Static).update(
                    f"the oldest {LETTERS_SHOWN} shown; `edge dead-letters list` lists them all")

    async def _new_events(self) -> list[dict[str, Any]]:
        """Events after the newest one shown, oldest first (paging through the log on the first call)."""
        after = self.events[0]["id"] if self.events else 0
        out: list[dict[str, Any]] = []
        while True:
            page = (await self.edge.call("GET", f"/v1/events?after={after}&limit={EVENTS_PAGE}"))["events"]
            out = (out + page)[-EVENTS_SHOWN:]
            if len(page) < EVENTS_PAGE:
                return out
            after = page[-1]["id"]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted event's whole message (the table cuts long ones)."""
        if event.data_table.id == "events" and 0 <= event.cursor_row < len(self.events):
            e = self.events[event.cursor_row]
            self.query_one("#event-detail", Static).update(Text(f"{e['kind']}: {e['message']}"))

    def _selected_letter(self) -> dict[str, Any] | None:
        dead = self.query_one("#dead", DataTable)
        if not self.letters or dead.cursor_row >= len(self.letters):
            return None
        return self.letters[dead.cursor_row]

    def action_replay(self) -> None:
        self._act("POST", "replay", "replayed through its sink")

    def action_discard(self) -> None:
        self._act("DELETE", "", "discarded")

    def _act(self, method: str, suffix: str, done: str) -> None:
        status = self.query_one("#dead-status", Static)
        letter = self._selected_letter()
        if letter is None:
            status.update("no dead letter selected")
            return
        # p or x again while the daemon replays or discards is ignored: a dead letter is acted on once at a time.
        start(self, "dead-letter", lambda: self._act_on(letter, method, suffix, done), replace=False,
              what=f"dead letter {letter['id']}")

    async def _act_on(self, letter: dict[str, Any], method: str, suffix: str, done: str) -> None:
        from tui.app import DaemonError

        status = self.query_one("#dead-status", Static)
        path = f"/v1/dead-letters/{letter['id']}" + (f"/{suffix}" if suffix else "")
        try:
            await self.edge.call(method, path)
        except DaemonError as e:
            status.update(f"[b red]dead letter {letter['id']} not {done.split()[0]}:[/] {escape(str(e))}")
            return
        status.update(f"[green]dead letter {letter['id']} ({letter['count']} readings) {done}[/]")
        await self._fetch()
