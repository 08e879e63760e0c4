"""User transforms: plain Python functions in files under `transforms_dir`, bound to readings by glob.

A transform receives a Reading and returns it (changed or not), a list of Readings, or None to drop it.
An exception or a wrong return type marks the reading `uncertain` with the error; it never stops the daemon.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edge.reading import BAD, UNCERTAIN, Reading

log = logging.getLogger("edge.pipeline")

TransformFn = Callable[[Reading], Any]


class TransformError(Exception):
    """A transform could not be loaded (missing file or function, import error); the message says which."""


@dataclass(frozen=True)
class Transform:
    name: str  # "file.function"
    fn: TransformFn
    match: tuple[str, ...]  # "device/point" globs

    def applies(self, device: str, point: str) -> bool:
        key = f"{device}/{point}"
        return any(fnmatch.fnmatchcase(key, m) or fnmatch.fnmatchcase(device, m) for m in self.match)


def _load_module(path: Path, generation: int) -> ModuleType:
    name = f"edge_transforms_{generation}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TransformError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise TransformError(f"{path}: failed to import: {type(e).__name__}: {e}") from e
    return module


_generation = 0


def load_transforms(folder: Path, specs: list[tuple[str, list[str]]]) -> TransformSet:
    """Load `file.function` transforms from folder (fresh modules on every call, so reload picks up edits)."""
    global _generation
    _generation += 1
    modules: dict[str, ModuleType] = {}
    transforms = []
    for function, match in specs:
        file, _, attr = function.partition(".")
        if file not in modules:
            path = folder / f"{file}.py"
            if not path.is_file():
                raise TransformError(f"transform {function!r}: expected a file {path}, found none")
            modules[file] = _load_module(path, _generation)
        fn = getattr(modules[file], attr, None)
        if not callable(fn):
            raise TransformError(f"transform {function!r}: expected a function {attr!r} in {folder / file}.py")
        transforms.append(Transform(function, fn, tuple(match)))
    return TransformSet(transforms)


class TransformSet:
    """The ordered transforms, with a per-(device, point) cache of which ones apply."""

    def __init__(self, transforms: list[Transform] | None = None) -> None:
        self.transforms = transforms or []
        self._cache: dict[tuple[str, str], tuple[Transform, ...]] = {}
        self.errors = 0

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def for_point(self, device: str, point: str) -> tuple[Transform, ...]:
        key = (device, point)
        found = self._cache.get(key)
        if found is None:
            found = tuple(t for t in self.transforms if t.applies(device, point))
            self._cache[key] = found
        return found

    def apply(self, reading: Reading) -> list[Reading]:
        """Run every applicable transform in order; each may change, fan out or drop the reading."""
        current = [reading]
        for t in self.for_point(reading.device, reading.point):
            nxt: list[Reading] = []
            for r in current:
                nxt.extend(self._call(t, r))
            current = nxt
            if not current:
                break
        return current

    def _call(self, t: Transform, r: Reading) -> list[Reading]:
        original = r.replace()
        try:
            out = t.fn(r)
        except Exception as e:
            return [self._failed(t, original, f"{type(e).__name__}: {e}")]
        if out is None:
            return []
        if isinstance(out, Reading):
            return [out]
        if isinstance(out, list | tuple) and all(isinstance(x, Reading) for x in out):
            return list(out)
        return [self._failed(t, original, f"returned {type(out).__name__}, expected a Reading, a list or None")]

    def _failed(self, t: Transform, r: Reading, why: str) -> Reading:
        self.errors += 1
        if self.errors <= 10 or self.errors % 1000 == 0:
            log.warning("transform %s failed on %s/%s: %s (error #%d)", t.name, r.device, r.point, why, self.errors)
        if r.quality != BAD:
            r.quality = UNCERTAIN
        r.error = f"transform {t.name}: {why}"
        return r
