"""The driver interface every protocol implements, and the config shape every device and point shares."""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from edge.quantities import Duration
from edge.reading import Reading

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
"""Names of the edge, devices, points and sinks: [A-Za-z0-9._-]{1,64}."""

DEFAULT_INTERVAL = 1.0
DEFAULT_TIMEOUT = 1.0


class PointConfig(BaseModel):
    """Keys every point has, whatever its driver. Drivers subclass it to add their own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    unit: str | None = None
    # Finite only: a NaN or infinite factor would turn every value into null while its quality stays good.
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    deadband: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    writable: bool = False


class DeviceConfig(BaseModel):
    """Keys every device has. Drivers subclass it with `driver: Literal[...]` and their own point type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    driver: str
    interval: Duration = Field(default=DEFAULT_INTERVAL, gt=0)
    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0)
    enabled: bool = True
    point: list[PointConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_points(self) -> DeviceConfig:
        seen: set[str] = set()
        for i, p in enumerate(self.point):
            if p.name in seen:
                raise ValueError(f"point[{i}].name: expected a name unique within the device, found {p.name!r} twice")
            seen.add(p.name)
        return self


# -- runtime status -----------------------------------------------------------------------------------

UP = "up"
DEGRADED = "degraded"
DOWN = "down"
STARTING = "starting"
DISABLED = "disabled"


@dataclass
class DeviceStatus:
    """What a device looks like from outside: shown by /v1/devices, metrics and the TUI."""

    state: str = STARTING
    last_poll: float | None = None  # wall-clock time of the last completed poll
    last_error: str | None = None
    polls: int = 0
    poll_errors: int = 0  # polls that produced at least one bad reading or raised
    overruns: int = 0  # ticks skipped because the previous poll was still running
    reconnects: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_poll": self.last_poll,
            "last_error": self.last_error,
            "polls": self.polls,
            "poll_errors": self.poll_errors,
            "overruns": self.overruns,
            "reconnects": self.reconnects,
            **self.extra,
        }


class WriteError(Exception):
    """A write was refused (unknown or unwritable point, bad value, device error); the message says why."""


Publish = Callable[[list[Reading]], Awaitable[None]]
"""How a push driver hands readings to the pipeline; awaiting it is the backpressure."""


class Driver(abc.ABC):  # noqa: B024 - hooks are optional, poll or run is needed
    """One device (or one protocol endpoint serving a device).

    Poll drivers implement `poll()`; the daemon calls it every `interval` on the monotonic clock.
    Push drivers (subscriptions, advertisements) set `push = True` and implement `run(publish)`.
    Drivers never raise out of `poll()` for device trouble: they return `bad` readings with the error.
    An exception out of `poll()`/`run()` is treated as a driver crash: logged, counted, restarted with backoff.
    """

    push: ClassVar[bool] = False

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.status = DeviceStatus()

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare (open sockets lazily is fine); must not block on an unreachable device."""

    async def poll(self) -> list[Reading]:
        """One read cycle: a reading for every point (bad ones carry the error)."""
        raise NotImplementedError

    async def run(self, publish: Publish) -> None:
        """Push drivers: deliver readings through `publish` until cancelled."""
        raise NotImplementedError

    async def write(self, point: str, value: Any) -> Any:
        """Write an engineering value to a writable point; returns the value read back. Raises WriteError."""
        raise WriteError(f"driver {self.config.driver!r} does not support writes")

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called on shutdown and reload."""

    def _stopped_error(self) -> str:
        """Why a poll or write after stop() (a reload, a restart, the shutdown) is refused."""
        return f"device {self.name!r} is stopped (reloaded, restarting or shutting down)"

    def bad_cycle(self, error: str) -> list[Reading]:
        """A bad reading for every point: what a failed cycle produces so that no poll is silently missing."""
        ts = time.time()
        return [Reading.bad(self.name, p.name, error, ts, p.unit) for p in self.config.point]

    def point_config(self, point: str) -> PointConfig:
        for p in self.config.point:
            if p.name == point:
                return p
        raise WriteError(f"device {self.name!r} has no point {point!r}")
