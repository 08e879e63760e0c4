"""OPC-UA test peers: asyncua servers in their own processes, and helpers to drive the drivers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from drivers.base import Driver
from drivers.opcua.pki import make_certificate
from edge.reading import Reading

SERVER_SCRIPT = Path(__file__).with_name("opcua_testserver.py")
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
SERVER_URI = "urn:edge:test-server"


def free_port() -> int:
    """A TCP port nobody listens on right now (bind port 0, read it, close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """The test server (opcua_testserver.py) in a subprocess; its stdout lines are collected."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.extra = list(extra)
        self.url = f"opc.tcp://127.0.0.1:{self.port}/edge/"
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def start(self) -> ServerProcess:
        self._ready.clear()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--port", str(self.port), *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(READY_TIMEOUT):
            self.stop()
            raise RuntimeError(f"test OPC-UA server did not start; output: {self.lines[-5:]}")
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("READY"):
                self._ready.set()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def session_counts(self, device: str | None = None) -> list[int]:
        """Every session count the server reported; with `device`, only sessions of that device of ours."""
        counts = []
        for line in list(self.lines):
            if line.startswith("SESSIONS"):
                _, _, names = line.partition(" ")[2].partition(" ")
                listed = [n for n in names.split("|") if n]
                counts.append(len([n for n in listed if device is None or n.startswith(f"edge {device} ")]))
        return counts


def make_server_pki(folder: Path) -> tuple[Path, Path]:
    """A server certificate (DER) and key (PEM) for the test server's application URI."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = make_certificate(key, SERVER_URI, server=True)
    cert_path, key_path = folder / "server_cert.der", folder / "server_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Collector:
    """Starts a push driver and runs its run(publish) in a task, like the daemon's DeviceRunner; keeps what it
    publishes. Leaving the block cancels run() and stops the driver."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.readings: list[Reading] = []
        self.task: asyncio.Task[None] | None = None

    async def _publish(self, readings: list[Reading]) -> None:
        self.readings.extend(readings)

    async def __aenter__(self) -> Collector:
        await self.driver.start()
        self.task = asyncio.create_task(self.driver.run(self._publish))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.driver.stop()

    def of(self, point: str, good: bool = True) -> list[Reading]:
        return [r for r in self.readings if r.point == point and (r.quality == "good" or not good)]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.task is not None and self.task.done():
                self.task.result()
                raise AssertionError("driver run() returned")
            if time.monotonic() > deadline:
                last = self.readings[-3:]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last readings {last}")
            await asyncio.sleep(0.05)
