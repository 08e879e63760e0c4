"""OPC-UA subscribe-mode throughput: 1,000 monitored items changing every 100 ms, driver → publish().

Starts the test server (tests/drivers/opcua/opcua_testserver.py) in its own process, so the CPU and RSS
figures are the driver's alone. Prints notifications/s received vs values/s produced, CPU seconds per 100k
values and RSS. Run: `.venv/bin/python bench/opcua.py [--items 1000] [--seconds 12]` (about 15 s in all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "drivers" / "opcua")]

from conftest import ServerProcess  # noqa: E402

from drivers.opcua.config import OpcuaDevice  # noqa: E402
from drivers.registry import create_driver  # noqa: E402
from edge.reading import Reading  # noqa: E402

WARMUP = 2.0
"""Seconds after the first notification before measuring (initial values and ramp-up excluded)."""
PUBLISHING_INTERVAL = "100ms"
SAMPLING_INTERVAL = "100ms"
QUEUE_SIZE = 4
"""Server-side queue per item: with queue 1, two changes inside one publishing interval (timer jitter) keep only
the newest, which is OPC-UA semantics but shows up as a few percent 'lost'."""


def rss_mib() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def produced(server: ServerProcess) -> int:
    lines = [line for line in list(server.lines) if line.startswith("PRODUCED")]
    return int(lines[-1].split()[1]) if lines else 0


async def bench(items: int, seconds: float) -> None:
    server = ServerProcess(None, "--items", str(items)).start()
    cfg = OpcuaDevice.model_validate(
        {
            "name": "bench",
            "driver": "opcua",
            "url": server.url,
            "mode": "subscribe",
            "interval": PUBLISHING_INTERVAL,
            "point": [
                {
                    "name": f"b{i}",
                    "node": f"ns=2;s=Bench.{i}",
                    "sampling_interval": SAMPLING_INTERVAL,
                    "queue_size": QUEUE_SIZE,
                }
                for i in range(items)
            ],
        }
    )
    driver = create_driver(cfg)
    received = 0

    async def publish(readings: list[Reading]) -> None:
        nonlocal received
        received += len(readings)

    task = asyncio.create_task(driver.run(publish))
    try:
        while received == 0:
            await asyncio.sleep(0.05)
        await asyncio.sleep(WARMUP)
        r0, p0, cpu0, t0 = received, produced(server), time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        r1, p1, cpu1, t1 = received, produced(server), time.process_time(), time.monotonic()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.stop()
        server.stop()
    wall = t1 - t0
    got, made = r1 - r0, p1 - p0
    print(
        f"items: {items}, publishing/sampling interval {PUBLISHING_INTERVAL}/{SAMPLING_INTERVAL}, "
        f"queue_size {QUEUE_SIZE}, "
        f"measured {wall:.1f} s"
    )
    print(f"produced: {made / wall:,.0f} values/s (server writes)")
    print(f"received: {got / wall:,.0f} notifications/s ({got / made:.1%} of produced)" if made else "produced: 0")
    print(
        f"cpu:      {(cpu1 - cpu0) / got * 100_000:.2f} CPU s per 100k values ({(cpu1 - cpu0) / wall:.0%} of one core)"
        if got
        else "cpu: nothing received"
    )
    print(f"rss:      {rss_mib():.0f} MiB")
    print(f"status:   {driver.status.to_dict()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=12.0)
    args = ap.parse_args()
    asyncio.run(bench(args.items, args.seconds))


if __name__ == "__main__":
    main()
