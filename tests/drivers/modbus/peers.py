"""Real Modbus peers for the driver tests: mbpoll, a gateway that silences chosen unit ids, a server in
its own process, a socat pty pair for RTU, and a poll loop shaped like the daemon's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import Driver
from edge.reading import Reading

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"
SOCAT = shutil.which("socat") or "/usr/bin/socat"
READY_TIMEOUT = 10.0
TOOL_TIMEOUT = 10.0
MBPOLL_CHUNK = 100
TEST_REGISTERS = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_connectable(port: int, timeout: float = READY_TIMEOUT) -> None:
    """Readiness: a TCP connect to the port succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


# -- mbpoll ---------------------------------------------------------------------------------------------
async def mbpoll(port: int, unit: int, args: list[str], values: list[Any] | None = None) -> str:
    """Run Debian's mbpoll (libmodbus) once against 127.0.0.1:port; returns stdout, raises on failure.

    Async, because the server under test usually runs in the test's own event loop.
    """
    cmd = [MBPOLL, "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-1", *args, "127.0.0.1"]
    if values is not None:
        cmd += ["--", *[str(v) for v in values]]
    return await run_tool(cmd)


async def run_tool(cmd: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), TOOL_TIMEOUT)
    assert proc.returncode == 0, f"{cmd}: {out.decode()}"
    return out.decode()


async def mbpoll_read_hex(port: int, unit: int, address: int, count: int, table: str = "4") -> list[int]:
    """Raw registers as mbpoll reads them."""
    out = await mbpoll(port, unit, ["-r", str(address), "-c", str(count), "-t", f"{table}:hex"])
    regs = [int(line.split(":")[1].strip(), 16) for line in out.splitlines() if line.startswith("[")]
    assert len(regs) == count, out
    return regs


async def mbpoll_write_registers(port: int, unit: int, address: int, registers: list[int]) -> None:
    """Write raw registers with mbpoll (FC 16), in chunks it accepts."""
    for i in range(0, len(registers), MBPOLL_CHUNK):
        chunk = registers[i : i + MBPOLL_CHUNK]
        await mbpoll(port, unit, ["-r", str(address + i), "-t", "4:hex"], [f"0x{r:04X}" for r in chunk])


# -- a gateway whose units can go silent ----------------------------------------------------------------
@dataclass
class SilentGateway:
    """A Modbus TCP proxy in front of a server that drops every request for the unit ids in `dead`,
    like a TCP→RTU gateway with a dead slave behind it (no exception response, no answer at all).

    It counts the connections it accepted and those still open (closed once it has seen the client's EOF)."""

    upstream_port: int
    dead: set[int] = field(default_factory=set)
    port: int = 0
    dropped: int = 0
    accepted: int = 0
    open: int = 0
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            await self._proxy(reader, writer)
        finally:
            self.open -= 1

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self._pipe(up_reader, writer))
        self._tasks.add(back)
        try:
            while True:
                header = await reader.readexactly(7)
                body = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                if header[6] in self.dead:
                    self.dropped += 1
                    continue
                up_writer.write(header + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            back.cancel()
            up_writer.close()
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


# -- a server in its own process (to kill) --------------------------------------------------------------
class ServerProcess:
    """tests/drivers/modbus/serve.py on a fixed port: start(), kill(), start() again on the same port."""

    def __init__(self, port: int, units: str = "1,2") -> None:
        self.port = port
        self.units = units
        self.proc: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), str(self.port), self.units],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        await wait_connectable(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


# -- RTU over a socat pty pair --------------------------------------------------------------------------
@dataclass
class PtyPair:
    server_end: str
    client_end: str


@contextlib.contextmanager
def open_pty_pair(folder: Path) -> Iterator[PtyPair]:
    """Two linked pseudo-terminals (`link=` names in folder); socat is killed when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "ttyA", folder / "ttyB"
    proc = subprocess.Popen(
        [SOCAT, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (a.exists() and b.exists()):
            assert proc.poll() is None, "socat exited"
            assert time.monotonic() < deadline, "socat did not create the pty pair"
            time.sleep(0.02)
        yield PtyPair(str(a), str(b))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- the daemon's poll schedule -------------------------------------------------------------------------
@dataclass
class Cycle:
    tick: float  # seconds since the schedule started
    readings: list[Reading]
    missed_after: int = 0  # ticks skipped because this poll ran late


@dataclass
class ScheduleResult:
    cycles: list[Cycle] = field(default_factory=list)
    overruns: int = 0


async def poll_on_schedule(
    driver: Driver, duration: float, result: ScheduleResult | None = None, stop: asyncio.Event | None = None
) -> ScheduleResult:
    """Poll like the daemon: tick n at start + n·interval; a poll running past ticks skips them (overruns).

    Runs for `duration` seconds, or until `stop` is set.
    """
    result = result or ScheduleResult()
    interval = float(driver.config.interval)
    start = time.monotonic()
    next_tick = start
    while next_tick - start < duration and not (stop is not None and stop.is_set()):
        delay = next_tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        readings = await driver.poll()
        result.cycles.append(Cycle(next_tick - start, readings))
        next_tick += interval
        now = time.monotonic()
        if now > next_tick:
            missed = int((now - next_tick) // interval) + 1
            result.overruns += missed
            result.cycles[-1].missed_after = missed
            next_tick += missed * interval
    return result
