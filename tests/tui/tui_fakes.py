"""Fixed daemon answers and discovery findings for snapshot tests and the guide's screenshots (no clocks, no I/O)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.client import ApiError
from tui.app import EdgeApp
from tui.scans import Finding, Scanner

NOW = 1795300000.0  # 2026-11-21 22:26:40 UTC, the fake wall clock
SPARK_VALUES = [20.0, 21.5, 23.1, 24.6, 25.9, 27.0, 27.8, 28.3, 28.4, 28.1, 27.4, 26.3, 25.0, 23.5, 22.0, 20.6]

CONFIG_TEXT = """\
# Bakery line 2 — installed by J. Doe, 2026-11-20
[edge]
id = "bakery-2"
data_dir = "/var/lib/edge"

[store]
max_bytes = "1GiB"
max_age = "30d"

[api]
listen = "0.0.0.0:8470"

[discovery]
advertise = true

[[device]]
name = "oven"                 # the tunnel oven's PLC
driver = "modbus-tcp"
host = "10.0.0.21"
port = 502
unit = 1
interval = "1s"

  [[device.point]]
  name = "setpoint"             # zone 2 setpoint, written from the line's HMI too
  table = "holding"
  address = 10
  type = "uint16"
  unit = "degC"
  writable = true

[[device]]
name = "proofer"
driver = "modbus-tcp"
host = "10.0.0.22"
unit = 3
interval = "5s"

[[device]]
name = "line"
driver = "simulator"
interval = "500ms"

[[sink]]
name = "cloud"
type = "mqtt"
url = "mqtts://broker.example.com:8883"
"""


def _reading(seq: int, value: Any, unit: str | None = None, quality: str = "good",
             error: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"seq": seq, "ts": "2026-11-21T22:26:39.600Z", "value": value, "quality": quality}
    if unit:
        r["unit"] = unit
    if error:
        r["error"] = error
    return r


def devices_doc(step: int) -> list[dict[str, Any]]:
    """The devices document after `step` polls (values follow SPARK_VALUES so sparklines are fixed)."""
    v = SPARK_VALUES[step % len(SPARK_VALUES)]
    base = 90000 + step * 10
    return [
        {"name": "oven", "driver": "modbus-tcp", "interval": 1.0,
         "status": {"state": "up", "last_poll": NOW - 0.4, "last_error": None, "polls": 86400 + step,
                    "poll_errors": 2, "overruns": 0, "reconnects": 1},
         "readings": 518400, "points": {
             "zone1_temp": _reading(base + 1, round(180 + v, 1), "degC"),
             "zone2_temp": _reading(base + 2, round(200 + v / 2, 1), "degC"),
             "belt_speed": _reading(base + 3, round(1.2 + v / 100, 3), "m/min"),
             "burner_on": _reading(base + 4, step % 3 != 0),
             "setpoint": _reading(base + 5, 210, "degC")}},
        {"name": "proofer", "driver": "modbus-tcp", "interval": 5.0,
         "status": {"state": "down", "last_poll": NOW - 2.1, "last_error": "ConnectionRefusedError: 10.0.0.22:502",
                    "polls": 17280, "poll_errors": 41, "overruns": 0, "reconnects": 12},
         "readings": 34000, "points": {
             "humidity": _reading(base + 6, None, "%", "bad", "connection refused"),
             "temperature": _reading(base + 7, None, "degC", "bad", "connection refused")}},
        {"name": "line", "driver": "simulator", "interval": 0.5,
         "status": {"state": "up", "last_poll": NOW - 0.1, "last_error": None, "polls": 172800 + step,
                    "poll_errors": 0, "overruns": 0, "reconnects": 0},
         "readings": 691200, "points": {
             "sine": _reading(base + 8, round(v, 2), "degC"),
             "ramp": _reading(base + 9, float(step * 5), "%")}},
    ]


STATS = {
    "edge": "bakery-2", "version": "0.1.0", "uptime_s": 93784.0, "reloads": 2,
    "store": {"path": "/var/lib/edge/store.sqlite", "bytes": 51_380_224, "max_bytes": 1_073_741_824,
              "readings": 402113, "first_seq": 601234, "last_seq": 1003346, "pending": 0, "full": False},
    "sinks": {"cloud": {"type": "mqtt", "connected": True, "backlog_readings": 0, "oldest_unsent_age_s": 0.0,
                        "last_ack": NOW - 0.8, "last_error": None},
              "archive": {"type": "http", "connected": False, "backlog_readings": 1520,
                          "oldest_unsent_age_s": 95.0, "last_ack": NOW - 96.0,
                          "last_error": "HTTP 503 from archive.example.com"}},
    "consumers": {}, "dead_letters": {"batches": 1, "readings": 500}, "devices": {},
}

EVENTS = [
    {"id": 1, "ts": "2026-11-20T19:43:36.120Z", "kind": "started",
     "message": "edge 0.1.0 started with 3 devices, 2 sinks", "data": {}},
    {"id": 2, "ts": "2026-11-21T06:02:11.455Z", "kind": "reconnect", "message": "oven: reconnected to 10.0.0.21:502",
     "data": {}},
    {"id": 3, "ts": "2026-11-21T14:30:02.004Z", "kind": "reloaded", "message": "config reloaded (3 devices, 2 sinks)",
     "data": {}},
    {"id": 4, "ts": "2026-11-21T20:15:47.981Z", "kind": "write",
     "message": "oven/setpoint = 210 (read back 210) by admin-socket", "data": {}},
    {"id": 5, "ts": "2026-11-21T21:40:05.310Z", "kind": "dead_letter",
     "message": "archive: batch seq 1001001..1001500 dead-lettered: HTTP 400", "data": {}},
]

DEAD_LETTERS = [{"id": 7, "sink": "archive", "first_seq": 1001001, "last_seq": 1001500, "count": 500,
                 "ts": "2026-11-21T21:40:05.310Z", "error": "HTTP 400: payload rejected"}]


class FakeClient:
    """Answers the admin API's GETs from the fixed documents above; each /v1/devices call advances one poll."""

    def __init__(self) -> None:
        self.step = 0
        self.requests: list[tuple[str, str, Any]] = []

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        self.requests.append((method, path, body))
        route = path.split("?")[0]
        if method == "GET" and route == "/v1/health":
            return {"status": "ok", "edge": "bakery-2", "version": "0.1.0"}
        if method == "GET" and route == "/v1/devices":
            self.step += 1
            return {"devices": devices_doc(self.step)}
        if method == "GET" and route == "/v1/stats":
            return copy.deepcopy(STATS)
        if method == "GET" and route == "/v1/config":
            return {"path": "/etc/edge/edge.toml", "text": CONFIG_TEXT}
        if method == "GET" and route == "/v1/events":
            after = int(parse_qs(urlsplit(path).query).get("after", ["0"])[0])
            return {"events": [copy.deepcopy(e) for e in EVENTS if e["id"] > after]}
        if method == "GET" and route == "/v1/dead-letters":
            return {"dead_letters": copy.deepcopy(DEAD_LETTERS)}
        raise ApiError(404, f"the fake daemon has no {method} {route}")


class FakeScanner(Scanner):
    """Finds the same three things every time, at once."""

    async def run(self, kind: str, target: str, units: list[int], timeout: float,
                  interfaces: list[str]) -> list[Finding]:
        return [
            Finding("_edge._tcp", "bakery-1", "10.0.0.5:8470", "id=bakery-1 version=0.1.0 api=/v1",
                    note="another edge appliance: attach with  edge tui --url http://10.0.0.5:8470  --token …"),
            Finding("_modbus._tcp", "gw-mixer", "10.0.0.31:502", "unit=4",
                    {"driver": "modbus-tcp", "host": "10.0.0.31", "port": 502, "unit": 4}),
            Finding("_opcua-tcp._tcp", "packer", "10.0.0.40:4840", "path=/",
                    {"driver": "opcua", "url": "opc.tcp://10.0.0.40:4840/"}),
        ]


def fake_app(report_dir: Path | None = None) -> EdgeApp:
    """The TUI on the fake daemon: fixed clock, no polling (snapshots call refresh_state themselves)."""
    return EdgeApp(FakeClient(), target="/run/edge/admin.sock", refresh_interval=0, clock=lambda: NOW,
                   scanner=FakeScanner(), report_dir=report_dir)
