"""A daemon that accepts a request and then does not answer: the TUI's keys keep working meanwhile, and the answer,
the timeout or an unexpected answer is shown when it comes. The peer is a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from textual.widgets import DataTable, Input, Static
from tui_fakes import FakeClient
from tui_pilot import wait_for

from edge import client
from edge.client import AdminClient, ApiError
from tui.app import EdgeApp
from tui.screens.device import DeviceScreen, ReadNowScreen, WriteScreen
from tui.screens.discover import DiscoverScreen

SIZE = (100, 30)
CLIENT_TIMEOUT = 12.0  # the admin client's request timeout in these tests (30 s in use)
# Keys pressed while a request hangs take effect within this: before the hung request's timeout, which the
# old code waited for. Generous, since Textual's pilot waits for an idle process after each key: up to ~2.2 s
# per step measured on a 2-core machine with both cores busy.
RESPONSIVE = 8.0
READ_PATH = "/v1/devices/oven/read"
WRITE_PATH = "/v1/devices/oven/points/setpoint"
READINGS = {"readings": [{"point": "zone1_temp", "value": 204.6, "unit": "degC", "quality": "good",
                          "ts": "2026-11-21T22:26:39.600Z"}]}
UNANSWERED = "table=holding address=99 type=uint16"  # a register whose test read the daemon never answers


class SlowDaemon:
    """Answers like edge (tui_fakes' documents), except that the requests `hang(method, path, body)` picks wait
    until `release` is set; `broken` answers test reads with a document the TUI does not expect."""

    def __init__(self) -> None:
        self.hang: Callable[[str, str, Any], bool] = lambda method, path, body: False
        self.release = asyncio.Event()
        self.hung: list[tuple[str, str]] = []  # the held requests, as they arrived
        self.broken = False
        self.fake = FakeClient()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def answer(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        body = await request.json() if request.can_read_body else None
        if self.hang(request.method, request.path, body):
            self.hung.append(key)
            await self.release.wait()
        if key == ("POST", READ_PATH):
            return web.json_response({"readings": [{"value": 1}]} if self.broken else READINGS)
        if key == ("POST", WRITE_PATH):
            return web.json_response({"written": body["value"], "read_back": body["value"]})
        try:
            return web.json_response(await self.fake.arequest(request.method, request.path_qs, body))
        except ApiError as e:
            return web.json_response({"error": e.message}, status=e.status)

    async def start(self) -> SlowDaemon:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.release.set()  # held handlers finish, so the server's shutdown does not wait for them
        if self.runner:
            await self.runner.cleanup()


@pytest.fixture
async def slow_daemon(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlowDaemon]:
    monkeypatch.setattr(client, "TIMEOUT", CLIENT_TIMEOUT)  # read at each request
    daemon = await SlowDaemon().start()
    yield daemon
    await daemon.stop()


def tui(daemon: SlowDaemon, tmp_path: Path) -> EdgeApp:
    return EdgeApp(AdminClient(url=daemon.url, token="t"), target=daemon.url, refresh_interval=0.2,
                   report_dir=tmp_path / "reports")


def text_of(static: Static) -> str:
    return str(static.render())


def notices(app: EdgeApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def open_device(pilot: Any) -> DeviceScreen:
    app = pilot.app
    await wait_for(lambda: app.state.devices, pilot)
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, DeviceScreen) and screen.device == "oven"
    return screen


async def open_read_form(pilot: Any) -> ReadNowScreen:
    await open_device(pilot)
    await pilot.press("t")
    form = pilot.app.screen
    assert isinstance(form, ReadNowScreen)
    return form


async def test_a_test_read_the_daemon_never_answers_is_replaced_by_the_next_and_times_out_visibly(
        slow_daemon: SlowDaemon, tmp_path: Path) -> None:
    slow_daemon.hang = lambda method, path, body: path == READ_PATH and bool(body.get("point"))
    app = tui(slow_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_read_form(pilot)
        spec = form.query_one("#spec", Input)
        status = form.query_one("#status", Static)
        result = form.query_one("#result", DataTable)
        spec.value = UNANSWERED
        loop = asyncio.get_running_loop()
        pressed = loop.time()
        await pilot.press("enter")
        await wait_for(lambda: slow_daemon.hung, pilot)
        spec.value = ""
        await pilot.press("enter")  # its configured points instead: answered at once
        await wait_for(lambda: result.row_count == 1, pilot, RESPONSIVE)
        assert loop.time() - pressed < RESPONSIVE, "the second Enter waited for the hung read"
        assert "read 1 values at 2026-11-21T22:26:39.600Z" in text_of(status)
        assert str(result.get_row_at(0)[1]) == "204.6"

        spec.value = UNANSWERED
        await pilot.press("enter")
        await wait_for(lambda: "cannot reach the daemon" in text_of(status), pilot, CLIENT_TIMEOUT + 5)
        assert f"cannot reach the daemon at {slow_daemon.url}: no answer in time" in text_of(status)
        assert len(slow_daemon.hung) == 2 and app.is_running
        await pilot.press("escape")
        assert isinstance(app.screen, DeviceScreen)


async def test_a_report_waiting_for_a_hung_daemon_does_not_block_other_keys(slow_daemon: SlowDaemon,
                                                                            tmp_path: Path) -> None:
    slow_daemon.hang = lambda method, path, body: (method, path) == ("GET", "/v1/config")
    app = tui(slow_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.state.devices, pilot)
        loop = asyncio.get_running_loop()
        pressed = loop.time()
        await pilot.press("r")
        await wait_for(lambda: slow_daemon.hung, pilot, RESPONSIVE)
        await pilot.press("r")  # ignored while the first report waits
        await pilot.press("d")
        await wait_for(lambda: isinstance(app.screen, DiscoverScreen), pilot, RESPONSIVE)
        assert loop.time() - pressed < RESPONSIVE, "r held the other keys"
        assert app.last_report is None

        slow_daemon.release.set()
        await wait_for(lambda: app.last_report is not None, pilot)
        await wait_for(lambda: any("report written to" in n for n in notices(app)), pilot)
        assert slow_daemon.hung == [("GET", "/v1/config")], "the second r made no second report"
    assert app.last_report is not None
    assert "- config file: /etc/edge/edge.toml" in app.last_report.read_text()  # from the late answer


async def test_a_write_still_waiting_when_its_form_is_closed_reports_its_result(slow_daemon: SlowDaemon,
                                                                               tmp_path: Path) -> None:
    slow_daemon.hang = lambda method, path, body: (method, path) == ("POST", WRITE_PATH)
    app = tui(slow_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        device = await open_device(pilot)
        await wait_for(lambda: "setpoint" in device.writable, pilot)
        await pilot.press("down", "down", "down", "down", "w")
        form = app.screen
        assert isinstance(form, WriteScreen) and form.point == "setpoint"
        await pilot.press(*"215", "enter")
        loop = asyncio.get_running_loop()
        pressed = loop.time()
        await pilot.press("y")
        await wait_for(lambda: slow_daemon.hung, pilot, RESPONSIVE)
        assert loop.time() - pressed < RESPONSIVE, "y held the keys until the write was answered"
        assert "writing 215 to oven/setpoint" in text_of(form.query_one("#status", Static))
        await pilot.press("y", "escape")  # the second y is ignored; Esc closes the form
        await wait_for(lambda: app.screen is device, pilot, RESPONSIVE)
        assert loop.time() - pressed < RESPONSIVE, "y held the other keys"

        slow_daemon.release.set()
        await wait_for(lambda: any("oven/setpoint = 215 (read back 215)" in n for n in notices(app)), pilot)
        assert slow_daemon.hung == [("POST", WRITE_PATH)], "written once"
        assert app.screen is device


async def test_an_unexpected_answer_to_a_key_action_is_shown_not_fatal(slow_daemon: SlowDaemon,
                                                                       tmp_path: Path) -> None:
    slow_daemon.broken = True
    app = tui(slow_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_read_form(pilot)
        await pilot.press("enter")
        await wait_for(lambda: any("test read of oven failed: KeyError" in n for n in notices(app)), pilot)
        assert app.is_running
        await pilot.press("escape")
        assert isinstance(app.screen, DeviceScreen)
