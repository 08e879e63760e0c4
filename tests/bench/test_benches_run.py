"""The benchmarks still run and print their figures (tiny sizes: this checks the scripts, not the speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / name), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_sync_bench_prints_the_sink_raw_paho_and_the_bounds() -> None:
    out = run_bench("sync.py", "--readings", "4000", "--batch-max", "100", "--inflight", "8")
    for line in ("sink:", "raw paho:", "ratio sink/raw", "already encoded", "cursor never written",
                 "read + JSON encode", "plain tuples"):
        assert line in out, out


def test_ingest_bench_prints_its_ratio() -> None:
    out = run_bench("ingest.py", "--readings", "20000")
    assert "ratio" in out, out
