"""Snapshots of every screen at 80×24 and 120×40, on the fake daemon (fixed data, fixed clock)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tui_fakes import fake_app

from tui.app import EdgeApp

SIZES = [(80, 24), (120, 40)]
HISTORY_POLLS = 12  # refreshes before the device screen, so its sparklines have a shape


async def _overview(pilot: Any) -> None:
    await pilot.pause()


async def _device(pilot: Any) -> None:
    app: EdgeApp = pilot.app
    for _ in range(HISTORY_POLLS):
        await app.refresh_state()
    await pilot.press("enter")
    await pilot.pause()


async def _write(pilot: Any) -> None:
    await _device(pilot)
    await pilot.press("down", "down", "down", "down", "w", *"215", "enter")
    await pilot.pause()


async def _discover(pilot: Any) -> None:
    await pilot.press("d", "enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.press("down")
    await pilot.pause()


async def _add_device(pilot: Any) -> None:
    await _discover(pilot)
    await pilot.press("a")
    await pilot.pause()


async def _config(pilot: Any) -> None:
    await pilot.press("c")
    await pilot.pause()
    await pilot.press("down", "down", "down", "down")
    await pilot.pause()


async def _events(pilot: Any) -> None:
    await pilot.press("e")
    await pilot.pause()


SCREENS: dict[str, Callable[[Any], Awaitable[None]]] = {
    "overview": _overview, "device": _device, "write": _write, "discover": _discover,
    "add_device": _add_device, "config": _config, "events": _events,
}


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare: Any, screen: str, size: tuple[int, int], tmp_path: Path) -> None:
    assert snap_compare(fake_app(tmp_path), terminal_size=size, run_before=SCREENS[screen])
