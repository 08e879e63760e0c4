"""Ingest benchmark: readings/s through pipeline + store, against raw sqlite3.executemany in the same run.

    .venv/bin/python bench/ingest.py [--readings 1000000] [--cycle 100]

Both sides write the same rows into the same table shape in WAL mode with synchronous=FULL; ours goes
through the pipeline (scale/offset, deadband check), the writer thread's batching and its durable
commits (one fsync per commit_interval), and counts as done only when everything is durable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time

from drivers.simulator.config import SimulatorDevice, SimulatorPoint
from edge.pipeline import Pipeline
from edge.reading import Reading
from edge.store import Store, StoreOptions
from edge.store.schema import MIGRATIONS

DEVICES = 50


def make_cycles(total: int, cycle: int) -> list[list[Reading]]:
    """Poll cycles as drivers hand them over: `cycle` readings of one device each."""
    now = time.time()
    cycles = []
    for c in range(total // cycle):
        device = f"plc{c % DEVICES}"
        cycles.append([Reading(device, f"p{i}", float(i + c), now + c * 0.001, unit="bar" if i % 2 else None)
                       for i in range(cycle)])
    return cycles


def pipeline_for(cycle: int) -> Pipeline:
    points = [SimulatorPoint(name=f"p{i}", scale=0.1 if i % 2 else 1.0, unit="bar" if i % 2 else None)
              for i in range(cycle)]
    return Pipeline([SimulatorDevice(name=f"plc{d}", driver="simulator", point=points) for d in range(DEVICES)])


async def ours(cycles: list[list[Reading]], folder: str) -> float:
    store = Store.open(folder, StoreOptions(commit_interval=0.1, maintenance_interval=3600))
    pipe = pipeline_for(len(cycles[0]))
    try:
        start = time.perf_counter()
        for batch in cycles:
            await store.append(pipe.process(batch))
        await store.flush()
        return time.perf_counter() - start
    finally:
        store.close()


def raw(cycles: list[list[Reading]], folder: str) -> float:
    """The baseline: pre-built row tuples, one executemany, one commit, into the same table."""
    con = sqlite3.connect(os.path.join(folder, "raw.sqlite"), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            con.execute(statement)
    rows = []
    seq = 0
    for batch in cycles:
        for r in batch:
            seq += 1
            rows.append((seq, r.ts, int(r.device[3:]) * 1000 + int(r.point[1:]), r.value, 0, None))
    start = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--cycle", type=int, default=100, help="readings per poll cycle")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as folder:
        raw_s = raw(make_cycles(args.readings, args.cycle), folder)
        cycles = make_cycles(args.readings, args.cycle)
        n = sum(len(c) for c in cycles)
        ours_s = asyncio.run(ours(cycles, folder))
    raw_rate, our_rate = n / raw_s, n / ours_s
    print(f"readings:                     {n:,} in cycles of {args.cycle}")
    print(f"raw sqlite3.executemany:      {raw_rate:12,.0f} readings/s ({raw_s:.2f} s)")
    print(f"edge pipeline + store:        {our_rate:12,.0f} readings/s ({ours_s:.2f} s, durable)")
    print(f"ratio (edge / raw):           {our_rate / raw_rate:12.2f}")


if __name__ == "__main__":
    main()
