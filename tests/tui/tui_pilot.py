"""TUI test steps: wait for a condition with the pilot (never a fixed sleep); open a screen and wait for it.

In a module of its own, not in conftest.py: `from conftest import …` picks whichever test folder's
conftest was loaded last when several folders are run together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

WAIT_STEP = 0.05
WAIT_LIMIT = 10.0


async def wait_for(check: Callable[[], Any], pilot: Any = None, limit: float = WAIT_LIMIT) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `limit` seconds.

    With a pilot, the failure message includes what the app's header says (errors show there).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if loop.time() > end:
            seen = f"; header: {pilot.app.sub_title!r}; screen: {pilot.app.screen!r}" if pilot else ""
            raise AssertionError(f"condition not met within {limit}s: {check.__code__.co_firstlineno}{seen}")
        if pilot is not None:
            await pilot.pause(WAIT_STEP)
        else:
            await asyncio.sleep(WAIT_STEP)


CONFIG_SECTIONS = 7  # rows of the config tables once the test config is loaded (edge … device, sink)


async def open_config(pilot: Any) -> tuple[Any, Any]:
    """Press c; return the ConfigScreen and its #tables DataTable once the config is listed."""
    from textual.widgets import DataTable

    from tui.screens.config import ConfigScreen

    await pilot.press("c")
    screen = pilot.app.screen
    assert isinstance(screen, ConfigScreen)
    tables = screen.query_one("#tables", DataTable)
    await wait_for(lambda: tables.row_count >= CONFIG_SECTIONS, pilot)
    return screen, tables


async def open_discover(pilot: Any) -> Any:
    """Press d; return the DiscoverScreen."""
    from tui.screens.discover import DiscoverScreen

    await pilot.press("d")
    screen = pilot.app.screen
    assert isinstance(screen, DiscoverScreen)
    return screen
