"""systemd's sd_notify protocol without a dependency: datagrams to $NOTIFY_SOCKET, and the watchdog.

`notify("READY=1")` after start-up, `notify("STOPPING=1")` on shutdown; `Watchdog` sends `WATCHDOG=1` at
half the period only when progress was reported since the last ping. Outside systemd (no NOTIFY_SOCKET)
every call is a cheap no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

__all__ = ["Watchdog", "notify", "watchdog_period"]

log = logging.getLogger("edge.sdnotify")

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
SEND_TIMEOUT_S = 1.0
USEC_PER_S = 1_000_000


def _address(value: str) -> str | bytes | None:
    """Return the socket address for a NOTIFY_SOCKET value: a path, or an abstract name (leading @)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def notify(*states: str) -> bool:
    """Send states (e.g. "READY=1", "STATUS=polling 3 devices") to systemd; True when a datagram was sent."""
    target = os.environ.get(NOTIFY_SOCKET_ENV)
    if not target or not states:
        return False
    address = _address(target)
    if address is None:
        log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract (@) socket", target)
        return False
    message = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendto(message, address)
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", target, e)
        return False
    return True


def watchdog_period() -> float | None:
    """Return the watchdog period in seconds when systemd expects pings from this process, else None.

    Ping at half of it (`notify("WATCHDOG=1")`).
    """
    usec = os.environ.get(WATCHDOG_USEC_ENV)
    if not usec:
        return None
    pid = os.environ.get(WATCHDOG_PID_ENV)
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / USEC_PER_S if value > 0 else None


class Watchdog:
    """Pings systemd's watchdog at half its period, but only if `progress()` was called since the last ping.

    Call `progress()` from the loop whose liveness matters (e.g. after each pipeline/store cycle); run
    `run()` as a task. Without WATCHDOG_USEC (not under systemd, or no WatchdogSec=) `run()` returns at once.
    """

    def __init__(self, period: float | None = None) -> None:
        self.period = period if period is not None else watchdog_period()
        self._progressed = True  # start-up itself counts as progress
        self.pings = 0

    def progress(self) -> None:
        """Record that the pipeline moved."""
        self._progressed = True

    async def run(self) -> None:
        """Ping until cancelled."""
        if not self.period:
            return
        while True:
            await asyncio.sleep(self.period / 2)
            if self._progressed:
                self._progressed = False
                if notify("WATCHDOG=1"):
                    self.pings += 1
            else:
                log.warning("no pipeline progress for %.1f s: not pinging the watchdog", self.period / 2)
