"""sd_notify against a real datagram socket owned by the test (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.sdnotify import notify, watchdog_period

RECV_TIMEOUT_S = 2.0


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT_S)
    if request.param == "path":
        path = str(tmp_path / "notify")
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
    else:
        name = f"edge-test-notify-{os.getpid()}-{id(sock)}"
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def test_notify_sends_one_datagram_with_all_states(notify_socket: socket.socket) -> None:
    assert notify("READY=1", "STATUS=polling 3 devices")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=polling 3 devices"
    assert notify("WATCHDOG=1")
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


def test_notify_outside_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_to_a_vanished_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert notify("READY=1") is False


def test_watchdog_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_period() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_period() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_period() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_period() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert watchdog_period() is None


async def test_watchdog_pings_only_while_progress_is_reported(notify_socket: socket.socket) -> None:
    import asyncio

    from edge.sdnotify import Watchdog

    notify_socket.setblocking(False)
    dog = Watchdog(period=0.2)
    task = asyncio.ensure_future(dog.run())
    try:
        for _ in range(4):  # progressing: one ping per half period
            dog.progress()
            await asyncio.sleep(0.1)
        got = []
        while True:
            try:
                got.append(notify_socket.recv(64))
            except BlockingIOError:
                break
        assert got and set(got) == {b"WATCHDOG=1"}
        pings = dog.pings
        await asyncio.sleep(0.5)  # stalled: no progress, no pings
        assert dog.pings <= pings + 1  # at most the one for progress made just before the stall
    finally:
        task.cancel()


async def test_watchdog_without_systemd_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.sdnotify import Watchdog

    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await Watchdog().run()
