"""The Textual application: screens as modes, one refresh loop against the admin API, global keys."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from textual.app import App, ScreenStackError
from textual.binding import Binding

from tui.background import start
from tui.report import site_report, write_report
from tui.scans import Scanner
from tui.screens.config import ConfigScreen
from tui.screens.discover import DiscoverScreen
from tui.screens.events import EventsScreen
from tui.screens.overview import OverviewScreen
from tui.state import DaemonState

log = logging.getLogger("edge.tui")

REFRESH_INTERVAL = 1.0  # seconds between /v1/devices + /v1/stats polls
REQUEST_ERRORS = (OSError, asyncio.TimeoutError)


class Client(Protocol):
    """What the TUI needs from a daemon connection (edge.client.AdminClient, or a fake in snapshot tests)."""

    async def arequest(self, method: str, path: str, body: Any = None) -> Any: ...


class DaemonError(Exception):
    """The daemon refused a request or could not be reached; `problems` holds config problems if any."""

    def __init__(self, message: str, status: int = 0, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []


class EdgeApp(App[None]):
    """The technician's TUI.

    Args:
        client: the daemon connection.
        target: where the daemon is, shown in the header.
        refresh_interval: seconds between state polls (0 or less: no polling, e.g. for snapshots).
        report_dir: where the site report is written.
        clock: wall-clock time source (fixed in snapshot tests).
        scanner: runs discovery (a fake in snapshot tests).
    """

    TITLE = "edge"
    ENABLE_COMMAND_PALETTE = False
    MODES = {"overview": OverviewScreen, "discover": DiscoverScreen, "config": ConfigScreen, "events": EventsScreen}
    BINDINGS = [
        Binding("o", "switch_mode('overview')", "Overview"),
        Binding("d", "switch_mode('discover')", "Discover"),
        Binding("c", "switch_mode('config')", "Config"),
        Binding("e", "switch_mode('events')", "Events"),
        Binding("r", "report", "Report"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, client: Client, *, target: str = "", refresh_interval: float = REFRESH_INTERVAL,
                 report_dir: Path | None = None, clock: Callable[[], float] = time.time,
                 scanner: Scanner | None = None) -> None:
        super().__init__()
        self.client = client
        self.target = target
        self.refresh_interval = refresh_interval
        self.report_dir = report_dir or Path.cwd()
        self.clock = clock
        self.scanner = scanner or Scanner()
        self.state = DaemonState()
        self.last_report: Path | None = None
        self._refreshing = False

    # -- talking to the daemon ------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API request; raises DaemonError with a message fit for the screen."""
        from edge.client import ApiError

        try:
            answer = await self.client.arequest(method, path, body)
        except ApiError as e:
            body_doc = getattr(e, "body", None)
            problems = [str(p) for p in body_doc.get("problems", [])] if isinstance(body_doc, dict) else []
            raise DaemonError(f"{e.status}: {e.message}", e.status, problems) from e
        except REQUEST_ERRORS as e:
            detail = str(e) or ("no answer in time" if isinstance(e, TimeoutError) else type(e).__name__)
            raise DaemonError(f"cannot reach the daemon at {self.target or 'its socket'}: {detail}") from e
        except Exception as e:  # aiohttp client errors and the like: shown, never fatal
            raise DaemonError(f"request {method} {path} failed: {type(e).__name__}: {e}") from e
        if not isinstance(answer, dict):  # every endpoint the TUI uses answers a JSON object
            raise DaemonError(f"{method} {path}: the answer is not edge's JSON ({str(answer)[:60]!r}): is "
                              f"{self.target or 'the socket'} an edge API?")
        return answer

    async def refresh_state(self) -> None:
        """Fetch devices and stats; the current screen redraws from them."""
        try:
            if not self.state.health:
                self.state.health = await self.call("GET", "/v1/health")
            devices = (await self.call("GET", "/v1/devices"))["devices"]
            stats = await self.call("GET", "/v1/stats")
        except DaemonError as e:
            self.state.error = str(e)
            self.sub_title = f"⚠ {e}"
        else:
            self.state.update(devices, stats, self.clock())
            self.sub_title = f"{self.state.health.get('edge', '?')} · {self.target}".rstrip(" ·")
        try:
            screen = self.screen
        except ScreenStackError:
            return  # starting up or shutting down
        update = getattr(screen, "update_view", None)
        if update is not None and screen.is_mounted:
            await update()

    async def on_mount(self) -> None:
        await self.refresh_state()
        await self.switch_mode("overview")
        if self.refresh_interval > 0:
            self.set_interval(self.refresh_interval, self._tick)

    def _tick(self) -> None:
        """Start a refresh unless the previous one is still waiting for a slow daemon."""
        if not self._refreshing:
            self.run_worker(self._guarded_refresh(), group="refresh")

    async def _guarded_refresh(self) -> None:
        self._refreshing = True
        try:
            await self.refresh_state()
        except Exception as e:  # a display glitch must never end the technician's session
            log.exception("refresh failed")
            self.sub_title = f"⚠ display error: {type(e).__name__}: {e}"
        finally:
            self._refreshing = False

    # -- global actions -------------------------------------------------------------------------------

    def action_report(self) -> None:
        """Write the site handover report to a Markdown file and say where (in a worker: the daemon may be slow)."""
        # A second r while a report is being made is ignored: the one under way answers with its path.
        start(self, "report", self._write_report, replace=False, what="site report")

    async def _write_report(self) -> None:
        await self.refresh_state()
        config_path = None
        try:
            config_path = (await self.call("GET", "/v1/config")).get("path")
        except DaemonError:
            pass
        now = self.clock()
        text = site_report(self.state.health, self.state.devices, self.state.stats, now, config_path)
        edge_id = str(self.state.health.get("edge", "edge"))
        try:
            self.last_report = write_report(self.report_dir, text, edge_id, now)
        except OSError as e:
            self.notify(f"report not written: {e}", severity="error", markup=False)
            return
        self.notify(f"report written to {self.last_report}", title="Site report", markup=False)
