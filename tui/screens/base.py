"""What every TUI screen shares: the app's state and client, a header and footer, redraw on refresh."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.widgets import DataTable

if TYPE_CHECKING:
    from tui.app import EdgeApp


class EdgeScreen(Screen[None]):
    """A screen that redraws itself from `EdgeApp.state` whenever the app has refreshed it."""

    @property
    def edge(self) -> EdgeApp:
        return cast("EdgeApp", self.app)

    async def update_view(self) -> None:
        """Redraw from the app's latest state (called after every refresh and when the screen shows)."""

    async def on_screen_resume(self) -> None:
        await self.update_view()


def fill_table(table: DataTable[Any], rows: list[tuple[str, list[str]]]) -> None:
    """Show rows of (key, cells): update the cells in place when the keys are the same (keeps the cursor),
    else rebuild the table."""
    if [str(r.value) for r in table.rows] == [k for k, _ in rows]:
        for key, cells in rows:
            for column, cell in zip(table.columns, cells, strict=False):
                table.update_cell(key, column, cell)
        return
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
