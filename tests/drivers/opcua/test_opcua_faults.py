"""A server that breaks the protocol: Read responses with more or fewer results than nodes asked for.

The test server runs in this process so that its answers can be altered on their way to the wire: the
ReadResponse is changed just before it is encoded, so everything from the bytes on (asyncua's client and
the driver) runs as it would against such a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import ua
from asyncua.server.uaprocessor import UaProcessor
from opcua_peers import free_port
from opcua_testserver import build

from drivers.opcua.config import OpcuaDevice
from drivers.opcua.driver import OpcuaPollDriver
from drivers.registry import create_driver

POINTS = ["Double", "Int32", "String"]


class ShortReads:
    """An in-process test server whose Read responses to `nodes` nodes get `change` results more or fewer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nodes = 0
        self.change = 0

    def alter(self, response: Any) -> None:
        if not isinstance(response, ua.ReadResponse) or len(response.Results) != self.nodes or not self.change:
            return
        results = response.Results
        response.Results = results[: self.change] if self.change < 0 else results + results[-1:] * self.change


@pytest.fixture
async def faulty(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ShortReads]:
    port = free_port()
    server = await build(port, None, None, None, 0, max_nodes_per_read=2)
    fault = ShortReads(f"opc.tcp://127.0.0.1:{port}/edge/")
    send_response = UaProcessor.send_response

    def altered(self: UaProcessor, handle: Any, seqhdr: Any, response: Any, *args: Any) -> None:
        fault.alter(response)
        send_response(self, handle, seqhdr, response, *args)

    monkeypatch.setattr(UaProcessor, "send_response", altered)
    async with server:
        yield fault


def poll_driver(url: str) -> OpcuaPollDriver:
    driver = create_driver(OpcuaDevice.model_validate({
        "name": "short", "driver": "opcua", "url": url, "mode": "poll", "interval": "200ms",
        "point": [{"name": p.lower(), "node": f"ns=2;s=Line1.{p}", "unit": "u"} for p in POINTS],
    }))
    assert isinstance(driver, OpcuaPollDriver)
    return driver


async def test_a_read_with_the_wrong_number_of_results_gives_every_point_a_bad_reading(faulty: ShortReads) -> None:
    """Results pair with nodes by position only: with the count wrong, no point of that request gets a value
    (none can be trusted to be its own) and none is left without a reading; the other request is unaffected."""
    driver = poll_driver(faulty.url)
    faulty.nodes = 2  # the server caps a Read at 2 nodes: the 3 points take requests of 2 and 1
    await driver.start()
    try:
        for change in (-1, +1, -2):
            faulty.change = change
            readings = await driver.poll()
            error = f"server returned {2 + change} results for 2 nodes"
            assert [(r.point, r.value, r.quality, r.error, r.unit) for r in readings] == [
                ("double", None, "bad", error, "u"), ("int32", None, "bad", error, "u"),
                ("string", "tick-0", "good", None, "u")], change
            assert (driver.status.state, driver.status.last_error) == ("degraded", f"read failed: {error}")
            assert driver.session.healthy, "the server answered: the session is kept"

            faulty.change = 0
            readings = await driver.poll()
            assert [(r.point, r.value, r.quality) for r in readings] == [
                ("double", 0.0, "good"), ("int32", -100000, "good"), ("string", "tick-0", "good")]
            assert driver.status.state == "up"
    finally:
        await driver.stop()
