"""The TUI pointed at something that is not edge's API: it says so in the header and keeps running."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from tui_pilot import wait_for

from edge.client import AdminClient
from tui.app import EdgeApp


@pytest.fixture(params=["<html>login</html>", "[]"])
async def not_edge(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A real HTTP server on a free port answering 200 with a body that is no edge JSON object."""
    body = request.param

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html" if body.startswith("<") else "application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_200_that_is_not_edge_json_is_an_error_in_the_header(not_edge: str) -> None:
    app = EdgeApp(AdminClient(url=not_edge, token="t"), target=not_edge, refresh_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: "not edge's JSON" in str(app.sub_title), pilot)
        assert app.is_running
