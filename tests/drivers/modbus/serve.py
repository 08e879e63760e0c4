"""A Modbus TCP simulator in its own process, for tests that kill and restart the server.

Usage: python serve.py PORT UNITS (e.g. 1,2,3); prints READY once listening, runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

from drivers.modbus.simserver import start_simulator


async def main(port: int, units: tuple[int, ...]) -> None:
    server = await start_simulator("127.0.0.1", port, units, live=False)
    print(f"READY {server.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), tuple(int(u) for u in sys.argv[2].split(","))))
