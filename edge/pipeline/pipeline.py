"""Per-point processing between a driver and the store: scale/offset, deadband, then user transforms."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import DeviceConfig, PointConfig
from edge.pipeline.transforms import TransformSet
from edge.reading import BAD, Reading

NUMBERS = (int, float)  # the value types a deadband compares (bool is not one of them)


@dataclass
class PointSpec:
    """The pipeline's view of one point, and its deadband memory."""

    scale: float
    offset: float
    deadband: float
    unit: str | None
    last_value: object = None
    last_quality: str | None = None

    @property
    def linear(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    @classmethod
    def of(cls, p: PointConfig) -> PointSpec:
        return cls(p.scale, p.offset, p.deadband, p.unit)


def _points(device: DeviceConfig) -> list[PointConfig]:
    all_points = getattr(device, "all_points", None)
    return list(all_points()) if callable(all_points) else list(device.point)


class Pipeline:
    """Processes each poll cycle in place; returns what goes to the store."""

    def __init__(self, devices: list[DeviceConfig], transforms: TransformSet | None = None) -> None:
        self.specs: dict[str, dict[str, PointSpec]] = {}
        self.plain: set[str] = set()  # devices whose points need no scaling, unit, or deadband
        self.transforms = transforms or TransformSet()
        self.suppressed = 0  # readings held back by deadband
        for d in devices:
            self.add_device(d)

    def add_device(self, device: DeviceConfig) -> None:
        old = self.specs.get(device.name, {})
        specs = {}
        for p in _points(device):
            spec = PointSpec.of(p)
            if p.name in old and old[p.name].deadband == spec.deadband:
                spec.last_value, spec.last_quality = old[p.name].last_value, old[p.name].last_quality
            specs[p.name] = spec
        self.specs[device.name] = specs
        if all(not s.linear and s.unit is None and s.deadband == 0.0 for s in specs.values()):
            self.plain.add(device.name)
        else:
            self.plain.discard(device.name)

    def remove_device(self, name: str) -> None:
        self.specs.pop(name, None)
        self.plain.discard(name)

    def process(self, readings: list[Reading], device: str | None = None) -> list[Reading]:
        """The readings to store. `device`: every reading is of this device (lets a plain device skip the work)."""
        if device is not None and device in self.plain and not self.transforms:
            return list(readings)
        out: list[Reading] = []
        append = out.append
        transforms = self.transforms
        by_device = self.specs
        for r in readings:
            specs = by_device.get(r.device)
            spec = specs.get(r.point) if specs else None
            if spec is not None:
                v = r.value
                if spec.linear and r.quality != BAD:
                    t = type(v)
                    if t is int or t is float:
                        v = r.value = v * spec.scale + spec.offset
                if r.unit is None:
                    r.unit = spec.unit
                if spec.deadband > 0.0 and r.quality != BAD:
                    last = spec.last_value
                    if (spec.last_quality == r.quality and type(v) in NUMBERS and type(last) in NUMBERS
                            and abs(v - last) <= spec.deadband):  # type: ignore[operator,unused-ignore]
                        self.suppressed += 1
                        continue
                    spec.last_value, spec.last_quality = v, r.quality
                elif spec.deadband > 0.0:
                    spec.last_value, spec.last_quality = None, BAD
            if transforms:
                out.extend(transforms.apply(r))
            else:
                append(r)
        return out
