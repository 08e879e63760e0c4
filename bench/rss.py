"""Idle memory of `edge demo`: starts it, lets it run, prints its RSS (and peak) against the 60 MB budget.

    .venv/bin/python bench/rss.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

BUDGET_MB = 60.0


def status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-rss-") as data:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--listen", "127.0.0.1:0", "--data-dir", data],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("  config:"):
                break
        samples = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(1.0)
            samples.append(status(proc.pid)["VmRSS"] / 1024)
        final = status(proc.pid)
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(10)
    rss = final["VmRSS"] / 1024
    print(f"edge demo idle for {args.seconds:.0f} s: RSS {rss:.1f} MB "
          f"(min {min(samples):.1f}, max {max(samples):.1f}), peak {final['VmHWM'] / 1024:.1f} MB, "
          f"{final['Threads']} threads")
    print(f"ratio to the {BUDGET_MB:.0f} MB budget: {rss / BUDGET_MB:.2f}")


if __name__ == "__main__":
    main()
