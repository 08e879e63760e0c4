"""What the TUI knows about the daemon: the latest /v1/devices and /v1/stats, poll rates and value history."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tui.format import numeric

HISTORY_LEN = 60  # values kept per point for sparklines (the TUI's own memory, from repeated polls)
STORE_ALARM_FRACTION = 0.8  # store fuller than this raises an alarm


@dataclass
class DaemonState:
    """The latest documents from the daemon plus what the TUI derives from watching them change."""

    health: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    history: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    _last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    _last_polls: dict[str, tuple[float, int]] = field(default_factory=dict)

    def device(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.devices if d["name"] == name), None)

    def update(self, devices: list[dict[str, Any]], stats: dict[str, Any], now: float) -> None:
        """Take new documents; append new values to the history and measure poll rates."""
        self.devices, self.stats, self.error = devices, stats, None
        for dev in devices:
            name = dev["name"]
            polls = int(dev["status"].get("polls", 0))
            prev = self._last_polls.get(name)
            if prev is not None and now > prev[0] and polls >= prev[1]:
                self.rates[name] = (polls - prev[1]) / (now - prev[0])
            self._last_polls[name] = (now, polls)
            for point, reading in dev.get("points", {}).items():
                key = (name, point)
                if self._last_seq.get(key) == reading.get("seq"):
                    continue
                self._last_seq[key] = reading.get("seq", 0)
                x = numeric(reading.get("value"))
                if x is not None:
                    self.history.setdefault(key, deque(maxlen=HISTORY_LEN)).append(x)

    def poll_rate(self, dev: dict[str, Any]) -> float:
        """Measured polls per second, or the configured rate until two samples exist."""
        measured = self.rates.get(dev["name"])
        if measured is not None:
            return measured
        interval = float(dev.get("interval") or 0)
        return 1.0 / interval if interval > 0 else 0.0

    def alarms(self) -> list[str]:
        """What needs the technician's attention, worst first."""
        out: list[str] = []
        for dev in self.devices:
            st = dev["status"]
            if st["state"] == "down":
                out.append(f"device {dev['name']} is down: {st.get('last_error') or 'no answer'}")
            elif st["state"] == "degraded":
                out.append(f"device {dev['name']} is degraded: {st.get('last_error') or ''}".rstrip(": "))
        for name, sink in (self.stats.get("sinks") or {}).items():
            if sink.get("connected") is False:
                out.append(f"sink {name} is not connected: {sink.get('last_error') or 'waiting to reconnect'}")
        store = self.stats.get("store") or {}
        if store.get("max_bytes") and store.get("bytes", 0) > STORE_ALARM_FRACTION * store["max_bytes"]:
            out.append(f"store is {store['bytes'] / store['max_bytes']:.0%} full")
        if store.get("full"):
            out.append("store is full: retention is dropping or rejecting readings")
        dead = (self.stats.get("dead_letters") or {}).get("batches", 0)
        if dead:
            out.append(f"{dead} dead-lettered batches wait for replay (press e)")
        return out
