"""Benchmark the Modbus driver: N devices × M registers polled on the daemon's fixed-rate schedule.

The simulator runs in a subprocess (so its CPU is not counted as ours); devices are spread over a few
TCP endpoints, each a bus shared by up to `--units-per-endpoint` unit ids. Prints points/s achieved vs
configured, CPU seconds per 100k points (this process), RSS, and overruns.

    .venv/bin/python bench/poll.py                      # both default scenarios
    .venv/bin/python bench/poll.py --devices 50 --registers 100 --interval 1 --seconds 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.modbus.config import ModbusTcpDevice  # noqa: E402
from drivers.modbus.driver import ModbusDriver  # noqa: E402
from edge.reading import GOOD  # noqa: E402

SCENARIOS = [(50, 100, 1.0), (10, 1000, 0.1)]
"""(devices, registers per device, poll interval in s): the issue's two reference loads."""
DEFAULT_SECONDS = 12.0
WARMUP = 1.0
UNITS_PER_ENDPOINT = 10
READY_TIMEOUT = 15.0
POLL_TIMEOUT = 1.0


@dataclass
class Result:
    devices: int
    registers: int
    interval: float
    seconds: float
    points: int
    bad: int
    overruns: int
    cpu: float
    server_cpu: float
    rss_mib: float

    @property
    def configured(self) -> float:
        return self.devices * self.registers / self.interval

    @property
    def achieved(self) -> float:
        return self.points / self.seconds

    def line(self) -> str:
        return (
            f"{self.devices} devices × {self.registers} registers @ {self.interval:g}s: "
            f"{self.achieved:,.0f} points/s of {self.configured:,.0f} configured "
            f"({100 * self.achieved / self.configured:.1f}%), "
            f"CPU {self.cpu / max(self.points, 1) * 100_000:.2f}s per 100k points "
            f"({100 * self.cpu / self.seconds:.0f}% of a core; simulator {100 * self.server_cpu / self.seconds:.0f}%), "
            f"RSS {self.rss_mib:.0f} MiB, bad {self.bad}, overruns {self.overruns}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(ports: list[int], units: int, registers: int) -> None:
    """Subprocess mode: one simulator per port, each with `units` unit ids of `registers` registers."""
    from drivers.modbus.simserver import start_simulator

    for port in ports:
        await start_simulator("127.0.0.1", port, tuple(range(1, units + 1)), registers=registers, live=False)
    print("READY", flush=True)
    await asyncio.Event().wait()


def start_server(ports: list[int], units: int, registers: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--serve", ",".join(map(str, ports)), str(units), str(registers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + READY_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        if proc.stdout.readline().strip() == "READY":
            return proc
    proc.kill()
    raise RuntimeError("simulator did not start")


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Tally:
    """What the polls of one scenario produced after the warm-up."""

    measure_from: float
    points: int = 0
    bad: int = 0
    overruns: int = 0


async def poll_on_schedule(driver: ModbusDriver, interval: float, until: float, tally: Tally) -> None:
    """The daemon's schedule: tick n at start + n·interval; a late poll skips ticks (overruns)."""
    next_tick = time.monotonic()
    while next_tick < until:
        delay = next_tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        readings = await driver.poll()
        if next_tick >= tally.measure_from:
            good = sum(1 for r in readings if r.quality == GOOD)
            tally.points += good
            tally.bad += len(readings) - good
        next_tick += interval
        now = time.monotonic()
        if now > next_tick:
            missed = int((now - next_tick) // interval) + 1
            if next_tick >= tally.measure_from:
                tally.overruns += missed
            next_tick += missed * interval


async def run_scenario(devices: int, registers: int, interval: float, seconds: float, per_endpoint: int) -> Result:
    endpoints = (devices + per_endpoint - 1) // per_endpoint
    ports = [free_port() for _ in range(endpoints)]
    server = start_server(ports, min(devices, per_endpoint), registers)
    drivers: list[ModbusDriver] = []
    try:
        for i in range(devices):
            cfg = ModbusTcpDevice(
                name=f"d{i}", driver="modbus-tcp", host="127.0.0.1", port=ports[i // per_endpoint],
                unit=i % per_endpoint + 1, interval=interval, timeout=POLL_TIMEOUT,
                point=[{"name": f"r{a}", "address": a, "type": "uint16"} for a in range(registers)],
            )
            drivers.append(ModbusDriver(cfg))
        for d in drivers:
            await d.start()
        measure_from = time.monotonic() + WARMUP
        tally = Tally(measure_from)
        until = measure_from + seconds
        cpu0 = server_cpu0 = 0.0

        async def mark() -> None:
            nonlocal cpu0, server_cpu0
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            cpu0, server_cpu0 = time.process_time(), process_cpu(server.pid)

        await asyncio.gather(mark(), *(poll_on_schedule(d, interval, until, tally) for d in drivers))
        cpu = time.process_time() - cpu0
        server_cpu = process_cpu(server.pid) - server_cpu0
        # Polls ticked in [measure_from, until) are counted: the window is exactly `seconds` of schedule.
        return Result(devices, registers, interval, seconds, tally.points, tally.bad,
                      tally.overruns, cpu, server_cpu, rss_mib())
    finally:
        for d in drivers:
            await d.stop()
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int)
    parser.add_argument("--registers", type=int)
    parser.add_argument("--interval", type=float)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--units-per-endpoint", type=int, default=UNITS_PER_ENDPOINT)
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument("--serve", nargs=3, metavar=("PORTS", "UNITS", "REGISTERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        ports, units, registers = args.serve
        asyncio.run(serve([int(p) for p in ports.split(",")], int(units), int(registers)))
        return
    scenarios = SCENARIOS if args.devices is None else [(args.devices, args.registers or 100, args.interval or 1.0)]
    for devices, registers, interval in scenarios:
        result = asyncio.run(run_scenario(devices, registers, interval, args.seconds, args.units_per_endpoint))
        if args.json:
            print(json.dumps({**result.__dict__, "configured": result.configured, "achieved": result.achieved}))
        else:
            print(result.line(), flush=True)


if __name__ == "__main__":
    main()
