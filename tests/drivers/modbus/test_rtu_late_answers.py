"""A unit that sometimes answers after the timeout, on RTU (no transaction id): its late answer must never
pass for the answer to the next request. The real pymodbus serial server sits behind a line that delays
its answers (two socat pty pairs and a relay between them)."""

from __future__ import annotations

import asyncio
import itertools
import os
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.modbus.config import ModbusRtuDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import start_serial_simulator
from edge.reading import BAD, GOOD

from .peers import open_pty_pair

BAUD = 19200
TIMEOUT = 0.3
# the server's answers are held this long, in turn: on time, on time, late (after the driver's timeout)
DELAYS = (0.0, 0.0, TIMEOUT + 0.05)
EXPECTED = {"a0": 11, "a1": 12, "b0": 21, "b1": 22, "c0": 31, "c1": 32}
ADDRESSES = {"a0": 0, "a1": 1, "b0": 100, "b1": 101, "c0": 200, "c1": 201}


class SlowLine:
    """Relays bytes between the driver's pty and the server's; server-to-driver frames wait `next(delays)`."""

    def __init__(self, driver_side: str, server_side: str) -> None:
        self.fds = [os.open(p, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK) for p in (driver_side, server_side)]
        for fd in self.fds:
            tty.setraw(fd)
        self.delays: Iterator[float] = itertools.repeat(0.0)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.fds[0], self._forward, self.fds[0], self.fds[1], False)
        self.loop.add_reader(self.fds[1], self._forward, self.fds[1], self.fds[0], True)

    def _forward(self, src: int, dst: int, delayed: bool) -> None:
        data = os.read(src, 4096)
        delay = next(self.delays) if delayed else 0.0
        if delay:
            self.loop.call_later(delay, os.write, dst, data)
        else:
            os.write(dst, data)

    def close(self) -> None:
        for fd in self.fds:
            self.loop.remove_reader(fd)
            os.close(fd)


@pytest.fixture
async def slow_line(tmp_path: Path) -> AsyncIterator[tuple[str, SlowLine]]:
    with open_pty_pair(tmp_path / "driver") as driver_pair, open_pty_pair(tmp_path / "server") as server_pair:
        server = await start_serial_simulator(server_pair.server_end, baudrate=BAUD, units=(1,), live=False)
        line = SlowLine(driver_pair.server_end, server_pair.client_end)
        try:
            yield driver_pair.client_end, line
        finally:
            line.close()
            await server.stop()


async def test_a_late_answer_never_passes_for_the_next_read(slow_line: tuple[str, SlowLine]) -> None:
    serial, line = slow_line
    driver = ModbusDriver(ModbusRtuDevice(
        name="meter", driver="modbus-rtu", serial=serial, baudrate=BAUD, unit=1, timeout=TIMEOUT, retries=1,
        max_gap=0, point=[{"name": n, "address": a, "writable": True} for n, a in ADDRESSES.items()]))
    await driver.start()
    try:
        for name, value in EXPECTED.items():  # three reads of two registers each, all alike but the address
            assert await driver.write(name, value) == value
        line.delays = itertools.cycle(DELAYS)
        good = 0
        for _ in range(8):
            for r in await driver.poll():
                if r.quality == GOOD:
                    assert r.value == EXPECTED[r.point], f"{r.point} got another read's answer: {r.value}"
                    good += 1
                else:
                    assert r.quality == BAD and r.value is None
        assert good > 0, "the on-time answers were taken"
    finally:
        await driver.stop()
