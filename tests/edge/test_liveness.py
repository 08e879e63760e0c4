"""sd_notify from a real daemon: READY after start-up, watchdog pings while it works, none once it stalls."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from edgeproc import EdgeProcess, write_config

DEVICE = '[[device]]\nname = "a"\ndriver = "simulator"\ninterval = "50ms"\n'


def collect(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        out += [(time.monotonic(), line) for line in data.splitlines()]
    return out


def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


def test_ready_then_watchdog_pings_then_silence_when_stalled(tmp_path: Path) -> None:
    sock, path = notify_socket(tmp_path)
    edge = EdgeProcess(write_config(tmp_path, DEVICE),
                       env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "EDGE_DEBUG_STALL_AFTER": "3"})
    edge.start()
    try:
        started = time.monotonic()
        messages = collect(sock, 5.5)
        lines = [m for _, m in messages]
        assert lines[0] == "READY=1" and lines[1].startswith("STATUS=1 devices")
        pings = [t - started for t, m in messages if m == "WATCHDOG=1"]
        assert len([t for t in pings if t < 2.5]) >= 3, pings  # every 0.5 s while polling goes on
        assert not [t for t in pings if t > 4.5], pings  # the writer stalled at 3 s: no more pings
    finally:
        edge.kill()
        sock.close()


def test_idle_daemon_keeps_pinging_and_says_stopping(tmp_path: Path) -> None:
    sock, path = notify_socket(tmp_path)
    edge = EdgeProcess(write_config(tmp_path, ""), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"})
    edge.start()
    try:
        lines = [m for _, m in collect(sock, 2.0)]
        assert lines.count("WATCHDOG=1") >= 4
    finally:
        assert edge.stop() == 0
    assert "STOPPING=1" in [m for _, m in collect(sock, 1.0)]
    sock.close()
