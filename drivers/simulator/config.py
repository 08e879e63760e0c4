"""Simulator device and point keys; a device with no points gets one of each signal."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from drivers.base import DeviceConfig, PointConfig
from edge.quantities import Duration

Signal = Literal["sine", "ramp", "random_walk", "step", "counter", "constant", "bool"]


class SimulatorPoint(PointConfig):
    signal: Signal = "sine"
    period: Duration = Field(default=60.0, gt=0)  # sine/ramp/step period
    amplitude: float = 1.0
    center: float = 0.0
    step: float = 0.1  # random walk step size
    fail_every: int = Field(default=0, ge=0)  # every Nth poll of this point is bad (0 = never)


def default_points() -> list[SimulatorPoint]:
    return [
        SimulatorPoint(name="sine", signal="sine", amplitude=10.0, center=20.0, period=60.0, unit="degC"),
        SimulatorPoint(name="ramp", signal="ramp", amplitude=100.0, period=120.0, unit="%"),
        SimulatorPoint(name="walk", signal="random_walk", center=50.0, step=0.5, unit="bar"),
        SimulatorPoint(name="step", signal="step", amplitude=1.0, period=30.0),
    ]


class SimulatorDevice(DeviceConfig):
    driver: Literal["simulator"]
    point: list[SimulatorPoint] = Field(default_factory=default_points)  # type: ignore[assignment]
    points: int = Field(default=0, ge=0, le=100_000)  # add this many generated sine points (benchmarks)
    seed: int | None = None
    poll_delay: Duration = 0.0  # each poll takes this long (to exercise overruns and backpressure)
    crash_every: int = Field(default=0, ge=0)  # every Nth poll raises (to exercise supervision; 0 = never)

    @field_validator("point")
    @classmethod
    def _unique(cls, points: list[SimulatorPoint]) -> list[SimulatorPoint]:
        seen: set[str] = set()
        for p in points:
            if p.name in seen:
                raise ValueError(f"expected point names unique within the device, found {p.name!r} twice")
            seen.add(p.name)
        return points or default_points()

    def all_points(self) -> list[SimulatorPoint]:
        extra = [SimulatorPoint(name=f"p{i}", signal="sine", period=10.0 + i % 50, amplitude=1.0 + i % 7)
                 for i in range(self.points)]
        return list(self.point) + extra
