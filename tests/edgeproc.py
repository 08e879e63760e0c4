"""Test helpers: free ports, config files, and `edge run` daemons as real subprocesses stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

READY_TIMEOUT = 20.0
EDGE = [sys.executable, "-m", "edge"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, body: str, *, edge_id: str = "test", port: int | None = None,
                 data_dir: Path | None = None, store: str = "") -> Path:
    """A config file with [edge], [store] and [api] filled in, followed by `body` (devices, sinks…)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = data_dir or folder / "data"
    text = (f'[edge]\nid = "{edge_id}"\ndata_dir = "{data}"\n\n'
            f'[store]\n{"" if "commit_interval" in store else "commit_interval = " + chr(34) + "50ms" + chr(34)}\n'
            f'{store}\n'
            f'[api]\nlisten = "127.0.0.1:{port if port is not None else free_port()}"\n\n'
            f'[discovery]\nadvertise = false\n\n{body}')
    path = folder / "edge.toml"
    path.write_text(text)
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll predicate until it returns something truthy (and return that); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


class EdgeProcess:
    """`edge run -c CONFIG` in a subprocess; `start()` waits for /v1/health, `kill()` sends SIGKILL."""

    def __init__(self, config: Path, log: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log or config.with_suffix(".log")
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        text = config.read_text()
        self.port = int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])
        self.data_dir = Path(text.split('data_dir = "', 1)[1].split('"', 1)[0])
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = READY_TIMEOUT) -> EdgeProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*EDGE, "run", "-c", str(self.config)], stdout=out, stderr=out,
                                         env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.get("/v1/health", auth=False)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise TimeoutError(f"edge not ready within {timeout}s:\n{self.log.read_text()[-3000:]}")

    @property
    def token(self) -> str:
        for line in (self.data_dir / "tokens").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                return line.strip()
        raise RuntimeError("no token")

    def request(self, method: str, path: str, body: Any = None, auth: bool = True,
                timeout: float = 10.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw.decode()

    def get(self, path: str, auth: bool = True) -> Any:
        return self.request("GET", path, auth=auth)

    def all_readings(self) -> list[dict[str, Any]]:
        """Every reading the pull API serves now, paging through /v1/readings."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.get(f"/v1/readings?after={after}&limit=10000")
            if not page["readings"]:
                return out
            out += page["readings"]
            after = page["next"]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if not self.proc:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)
