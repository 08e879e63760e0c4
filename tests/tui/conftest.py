"""Fixtures for the TUI tests: a real daemon on simulated devices (in-process), an HTTP receiver for its sink."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))

from edge.client import AdminClient
from edge.config import load_config
from edge.daemon import Daemon
from tui.app import EdgeApp

FAST_REFRESH = 0.2  # the TUI's poll period in tests
DEMO_START_LIMIT = 20.0
EDGE_BIN = Path(sys.executable).with_name("edge")


class Receiver:
    """An HTTP endpoint for the daemon's http sink: records every body it accepts."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Receiver:
        async def ingest(request: web.Request) -> web.Response:
            self.bodies.append(await request.read())
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/ingest", ingest)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


def config_text(data_dir: Path, receiver_port: int) -> str:
    return textwrap.dedent(f"""\
        # site config for the TUI tests — these comments must survive edits made in the TUI
        [edge]
        id = "tui-test"          # the appliance id
        data_dir = "{data_dir}"

        [store]
        commit_interval = "50ms"

        [api]
        listen = "127.0.0.1:0"

        [discovery]
        advertise = false        # tests browse on loopback explicitly

        # the boiler room
        [[device]]
        name = "boiler"
        driver = "simulator"
        interval = "200ms"       # fast, for tests

        [[device]]
        name = "line"
        driver = "simulator"
        interval = "200ms"

          [[device.point]]
          name = "speed"
          signal = "ramp"
          amplitude = 100.0
          period = "10s"
          unit = "rpm"

          [[device.point]]
          name = "setpoint"
          signal = "constant"
          center = 42.0
          writable = true        # the technician may change it
          unit = "degC"

        [[sink]]
        name = "web"
        type = "http"
        url = "http://127.0.0.1:{receiver_port}/ingest"
        """)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def daemon(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Daemon]:
    path = tmp_path / "edge.toml"
    path.write_text(config_text(tmp_path / "data", receiver.port), encoding="utf-8")
    d = Daemon(load_config(path))
    await d.start()
    yield d
    await d.stop("test over")


@pytest.fixture
def make_app(daemon: Daemon, tmp_path: Path) -> Callable[..., EdgeApp]:
    def make(**kwargs: Any) -> EdgeApp:
        client = AdminClient(socket=daemon.config.admin_socket_path)
        kwargs.setdefault("refresh_interval", FAST_REFRESH)
        kwargs.setdefault("report_dir", tmp_path / "reports")
        return EdgeApp(client, target="test", **kwargs)

    return make


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Path]:
    """`edge demo` on a free port; yields its data dir (config edge.toml and admin.sock inside)."""
    data = tmp_path / "demo"
    proc = subprocess.Popen([str(EDGE_BIN), "demo", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + DEMO_START_LIMIT
        assert proc.stdout is not None
        for line in proc.stdout:
            if "config:" in line or time.monotonic() > end:
                break
        assert (data / "admin.sock").exists(), "edge demo did not start"
        yield data
    finally:
        proc.terminate()
        proc.wait(timeout=10)
