"""What every TUI screen shares: the app's state and client, a header and footer, redraw on refresh."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

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
