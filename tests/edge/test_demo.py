"""`edge demo` as a new user runs it: the printed URL and token give readings within 5 s; files are private."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def test_demo_prints_url_and_token_that_serve_readings(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        printed: dict[str, str] = {}
        for line in proc.stdout:
            key, _, value = line.strip().partition(":")
            printed[key.strip()] = value.strip()
            if key.strip() == "config":
                break
        url, token = printed["API"], printed["token"]
        assert url.startswith("http://127.0.0.1:") and len(token) >= 32
        deadline = time.monotonic() + 5.0
        readings: list[dict] = []  # type: ignore[type-arg]
        while not readings:
            assert time.monotonic() < deadline, "no readings within 5 s"
            req = urllib.request.Request(f"{url}/v1/readings?after=0&limit=100",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                readings = json.load(resp)["readings"]
            time.sleep(0.1)
        devices = {r["device"] for r in readings}
        assert {"sim-boiler", "sim-line"} <= devices
        assert stat.S_IMODE(os.stat(data / "tokens").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data / "admin.sock").st_mode) == 0o600
        # the demo polls an in-process Modbus TCP simulator with at least 3 units
        deadline = time.monotonic() + 5.0
        while True:
            req = urllib.request.Request(f"{url}/v1/devices", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                modbus = [d for d in json.load(resp)["devices"] if d["driver"] == "modbus-tcp"]
            if len(modbus) >= 3 and all(d["status"]["polls"] > 0 for d in modbus):
                break
            assert time.monotonic() < deadline, modbus
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
