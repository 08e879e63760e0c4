"""Fixtures for the sink tests: certificates, a mosquitto broker, a store, a recording subscriber."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sink_helpers import FAST_COMMIT, SinkRunner
from sink_peers import Broker, Pki, Subscriber, make_pki

from edge.store import Store, StoreOptions


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    b = Broker(tmp_path / "mosquitto", pki).start()
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    s = Subscriber(broker.port)
    yield s
    s.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store.open(tmp_path / "data", StoreOptions(commit_interval=FAST_COMMIT))
    yield s
    await s.aclose()


@pytest.fixture
async def runner() -> AsyncIterator[SinkRunner]:
    r = SinkRunner()
    yield r
    for sink, _ in list(r.running):
        await r.stop(sink)


