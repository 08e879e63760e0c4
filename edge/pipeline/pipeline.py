"""Per-point processing between a driver and the store: scale/offset, deadband, then user transforms."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import DeviceConfig, PointConfig
from edge.pipeline.transforms import TransformSet
from edge.reading import BAD, Reading

NUMBERS = (int, float)  # the value types a deadband compares (bool is not one of them)
# Device keys that change no reading's value: a device changed only in these keeps its points' deadband memory.
SCHEDULE_KEYS = frozenset({"name", "interval", "timeout", "enabled", "point"})
POINT_KEYS_IGNORED = frozenset({"writable"})  # the point keys that change no value


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


def _keys(config: DeviceConfig | PointConfig, ignored: frozenset[str]) -> dict[str, object]:
    return {k: v for k, v in vars(config).items() if k not in ignored}


def _same_values(old: DeviceConfig | PointConfig, new: DeviceConfig | PointConfig, ignored: frozenset[str]) -> bool:
    """Whether the two configs read and compute the same values: equal but for keys that change no value."""
    return type(old) is type(new) and _keys(old, ignored) == _keys(new, ignored)


class Pipeline:
    """Processes each poll cycle in place; returns what goes to the store."""

    def __init__(self, devices: list[DeviceConfig], transforms: TransformSet | None = None) -> None:
        self.specs: dict[str, dict[str, PointSpec]] = {}
        self.devices: dict[str, DeviceConfig] = {}  # the config each device's specs were made from
        self.plain: set[str] = set()  # devices whose points need no scaling, unit, or deadband
        self._transforms = transforms or TransformSet()
        self.suppressed = 0  # readings held back by deadband
        for d in devices:
            self.add_device(d)

    @property
    def transforms(self) -> TransformSet:
        return self._transforms

    @transforms.setter
    def transforms(self, transforms: TransformSet) -> None:
        """New transforms (a reload). When they differ, the deadband memory goes: otherwise a steady value stays
        suppressed, and the store keeps the last value as the old transforms made it."""
        if transforms.transforms != self._transforms.transforms:  # an unchanged file gives the same functions
            for specs in self.specs.values():
                for spec in specs.values():
                    spec.last_value = spec.last_quality = None
        self._transforms = transforms

    def add_device(self, device: DeviceConfig) -> None:
        """Add a device, or replace it with a changed config. Its points keep their deadband memory only when
        nothing that makes their values changed (scale, offset, unit, deadband, type, address, host...): the first
        reading after such a change is always stored, so the store never keeps a value made the old way."""
        old = self.specs.get(device.name, {})
        old_device = self.devices.get(device.name)
        old_points = ({p.name: p for p in _points(old_device)}
                      if old and old_device is not None and _same_values(old_device, device, SCHEDULE_KEYS) else {})
        specs = {}
        for p in _points(device):
            spec = PointSpec.of(p)
            before = old_points.get(p.name)
            if before is not None and p.name in old and _same_values(before, p, POINT_KEYS_IGNORED):
                spec.last_value, spec.last_quality = old[p.name].last_value, old[p.name].last_quality
            specs[p.name] = spec
        self.specs[device.name] = specs
        self.devices[device.name] = device
        if all(not s.linear and s.unit is None and s.deadband == 0.0 for s in specs.values()):
            self.plain.add(device.name)
        else:
            self.plain.discard(device.name)

    def remove_device(self, name: str) -> None:
        self.specs.pop(name, None)
        self.devices.pop(name, None)
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
