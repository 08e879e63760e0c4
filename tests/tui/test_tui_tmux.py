"""End to end: `edge tui` in a real terminal (tmux, own socket) against `edge demo`, read off the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EDGE_BIN = Path(sys.executable).with_name("edge")
SCREEN_LIMIT = 15.0
POLL = 0.2

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """A tmux session on its own server socket."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True,
                              check=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        for key in keys:  # one at a time: an Escape followed at once by a key would read as Alt+key
            self.tmux("send-keys", "-t", "tui", key)
            time.sleep(POLL)

    def wait_for(self, check: Callable[[str], bool], what: str) -> str:
        end = time.monotonic() + SCREEN_LIMIT
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > end:
                raise AssertionError(f"screen never showed {what}:\n{text}")
            time.sleep(POLL)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    t = Terminal(tmp_path / "tmux.sock")
    yield t
    subprocess.run(["tmux", "-S", str(t.socket), "kill-server"], capture_output=True)


def test_edge_tui_in_a_terminal_against_edge_demo(demo: Path, terminal: Terminal, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    terminal.tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "30",
                  f"{EDGE_BIN} tui -c {demo / 'edge.toml'} --report-dir {reports}")
    overview = terminal.wait_for(lambda s: "sim-boiler" in s and "plc3" in s and " up " in s, "the devices, up")
    assert "Devices" in overview and "Sinks" in overview and "no alarms" in overview
    assert "o Overview" in overview and "q Quit" in overview

    terminal.keys("Enter")
    device = terminal.wait_for(lambda s: "trend of sine" in s, "the device screen")
    assert "sim-boiler · simulator · up" in device
    for point in ("sine", "ramp", "walk", "step"):
        assert f" {point} " in device

    terminal.keys("Escape")  # then wait: read together with the next key (a busy app) it would be Alt+e
    terminal.wait_for(lambda s: "trend of sine" not in s and "Sinks" in s, "the overview again")
    terminal.keys("e")
    terminal.wait_for(lambda s: "Events (newest first)" in s and "started" in s, "the event log")

    terminal.keys("r")
    terminal.wait_for(lambda s: "report written to" in s, "the report notice")
    written = list(reports.glob("edge-report-demo-*.md"))
    assert len(written) == 1 and "| sim-boiler | simulator | up |" in written[0].read_text()

    terminal.keys("q")
    end = time.monotonic() + SCREEN_LIMIT
    while "tui" in subprocess.run(["tmux", "-S", str(terminal.socket), "ls"], capture_output=True,
                                  text=True).stdout:
        assert time.monotonic() < end, "q did not quit"
        time.sleep(POLL)
