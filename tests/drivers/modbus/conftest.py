"""Fixtures starting real Modbus peers (see peers.py) and stopping them at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.modbus.simserver import SimulatorServer, start_simulator

from .peers import (
    TEST_REGISTERS,
    PtyPair,
    ServerProcess,
    SilentGateway,
    free_port,
    open_pty_pair,
    wait_connectable,
)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A pymodbus TCP server with units 1-5, plain memory (no live registers), on a free port."""
    server = await start_simulator("127.0.0.1", 0, (1, 2, 3, 4, 5), registers=TEST_REGISTERS, live=False)
    await wait_connectable(server.port)
    yield server
    await server.stop()


@pytest.fixture
async def gateway(sim: SimulatorServer) -> AsyncIterator[SilentGateway]:
    gw = SilentGateway(sim.port)
    await gw.start()
    await wait_connectable(gw.port)
    yield gw
    await gw.stop()


@pytest.fixture
async def server_process() -> AsyncIterator[ServerProcess]:
    server = ServerProcess(free_port())
    await server.start()
    yield server
    server.kill()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    """Two linked pseudo-terminals; socat is killed last, at teardown."""
    with open_pty_pair(tmp_path) as pair:
        yield pair
