"""User transforms: plain Python functions in files under `transforms_dir`, bound to readings by glob.

A transform receives a Reading and returns it (changed or not), a list of Readings, or None to drop it.
An exception or a wrong return type marks the reading `uncertain` with the error; it never stops the daemon.
A returned reading with a field the store cannot take (quality "Good", ts None or text, device None...) becomes a
`bad` reading of its device/point naming the transform and the field, or is dropped when device or point is
unusable; either way counted and logged, so one transform's mistake never costs the store's shared batch.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import logging
import numbers
import reprlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edge.reading import BAD, QUALITIES, UNCERTAIN, Reading

log = logging.getLogger("edge.pipeline")

_QUALITIES = frozenset(QUALITIES)
TS_MIN = -30610224000.0  # 1000-01-01T00:00:00Z: timestamps outside years 1000-9999 break formatting or parsing
TS_MAX = 253402300799.0  # 9999-12-31T23:59:59Z (a transform putting milliseconds into ts lands far beyond)
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_MISSING = object()
_FIELDS = (  # (field, may be None, in the store's series key, what it must be)
    ("device", False, True, "a non-empty str that UTF-8 can encode"),
    ("point", False, True, "a non-empty str that UTF-8 can encode"),
    ("ts", False, False, "seconds since the epoch as a finite int or float within years 1000-9999"),
    ("quality", False, False, "'good', 'uncertain' or 'bad'"),
    ("error", True, False, "None or a str"),
    ("unit", True, True, "None or a str that UTF-8 can encode"),
)


def _valid(r: Reading) -> bool:
    """Whether every field but value is what the store takes, checked fast (runs on each transform output)."""
    try:
        d, p, ts, q, e, u = r.device, r.point, r.ts, r.quality, r.error, r.unit
    except AttributeError:  # a Reading made without __init__
        return False
    return (type(d) is str and d != "" and (d.isascii() or _encodes(d)) and type(p) is str and p != ""
            and (p.isascii() or _encodes(p)) and type(ts) is float and TS_MIN <= ts < TS_MAX
            and type(q) is str and q in _QUALITIES and (e is None or type(e) is str)
            and (u is None or (type(u) is str and (u.isascii() or _encodes(u)))))


def _encodes(text: str) -> bool:
    """Whether SQLite can take the text (a lone surrogate, as from a bytes.decode(errors="surrogateescape"), not)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _ts(value: Any) -> float | None:
    """A timestamp as float, or None when it is not a finite real number within years 1000-9999."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        ts = float(value)
    except (OverflowError, TypeError, ValueError):  # an int beyond float
        return None
    return ts if TS_MIN <= ts < TS_MAX else None


def _text(value: Any, optional: bool, key: bool) -> str | None:
    """A str field's value as an exact str; raises ValueError when it is not one (or empty, unless optional).
    key: part of the store's series key (device, point, unit), so it must encode as UTF-8."""
    if value is None and optional:
        return None
    if isinstance(value, str) and (value or optional) and (not key or _encodes(value)):
        return str.__str__(value)
    raise ValueError


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


@dataclass
class _Loaded:
    """A transform file's module, imported from the content whose digest this is."""

    folder: Path  # resolved transforms folder it was loaded from (the file itself may be a link to elsewhere)
    digest: bytes
    module: ModuleType


# Resolved path of a transform file -> its module, for as long as the file's content stays the same. A reload (and
# the prepare() before it) takes the module from here instead of importing the file again: its state (a dict of
# last values...) is kept, and prepare() + reload() of one config import a changed file once, not twice.
_loaded: dict[Path, _Loaded] = {}
_imports = 0  # numbers the module names: each import gets a name of its own


def _digest(source: bytes) -> bytes:
    return hashlib.blake2b(source, digest_size=16).digest()


def _import(path: Path, source: bytes) -> ModuleType:
    """A new module executed from `source` (the file's content, read once: what is hashed is what runs)."""
    global _imports
    _imports += 1
    name = f"edge_transforms_{_imports}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise TransformError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # while it runs, as for any import (dataclasses, pickle look it up there)
    try:
        # compile() as the import system does (dont_inherit: not this file's __future__ flags), but from the bytes
        # hashed: a cached .pyc is checked by mtime and size only, and would run the old code of a same-size edit.
        exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    except BaseException as e:
        # Any BaseException: a module calling sys.exit() at import (a helper running argparse on the daemon's
        # command line) raises SystemExit; it, or KeyboardInterrupt or GeneratorExit raised by the module's code,
        # would end the daemon on a reload and crash-loop it at start. asyncio.CancelledError is the module's own
        # too: no await runs in here, so no cancellation of the caller's task can arrive inside the import
        # (Task.cancel() takes effect at the next await, and still does after this). In the daemon SIGINT is a
        # loop signal handler, never a KeyboardInterrupt; in `edge check` a Ctrl-C here ends as a failed check.
        sys.modules.pop(name, None)
        raise TransformError(f"{path}: failed to import: {_failure(e)}") from e
    return module


def _failure(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return (f"SystemExit: the module called sys.exit({e.code!r}) while being imported (argparse does on a "
                f"command line it does not accept); run command-line code only under `if __name__ == \"__main__\":`")
    return f"{type(e).__name__}: {e}"


def _forget(module: ModuleType) -> None:
    """Drop the cache's and sys.modules' references, so that the module goes once no transform uses it."""
    if sys.modules.get(module.__name__) is module:
        del sys.modules[module.__name__]


def _load_module(folder: Path, path: Path, fresh: bool) -> ModuleType:
    """The module of a transform file: the one already imported while the file's content is unchanged (unless
    fresh), else the file imported now, which replaces the old one (dropped: its state goes with it)."""
    try:
        source = path.read_bytes()
    except OSError as e:
        raise TransformError(f"{path}: failed to import: {type(e).__name__}: {e}") from e
    if fresh:
        module = _import(path, source)
        _forget(module)  # a one-off (edge.testing): nothing keeps it but the transforms made from it
        return module
    key = path.resolve()
    digest = _digest(source)
    loaded = _loaded.get(key)
    if loaded is not None and loaded.digest == digest:
        return loaded.module
    module = _import(path, source)  # a file that does not import leaves the module in use as it is
    if loaded is not None:
        _forget(loaded.module)
    _loaded[key] = _Loaded(folder.resolve(), digest, module)
    return module


def load_transforms(folder: Path, specs: list[tuple[str, list[str]]], *, fresh: bool = False) -> TransformSet:
    """Load `file.function` transforms from folder.

    A file whose content is unchanged since the last load keeps its module (and the module's state); a changed
    file is imported again and its old module dropped. `specs` are all the transforms of `folder` in use: the
    modules of the folder's other files are dropped too. fresh: import every file anew and cache nothing (for
    tests: each call starts from an empty module state).
    """
    modules: dict[str, ModuleType] = {}
    transforms = []
    for function, match in specs:
        file, _, attr = function.partition(".")
        if file not in modules:
            path = folder / f"{file}.py"
            if not path.is_file():
                raise TransformError(f"transform {function!r}: expected a file {path}, found none")
            modules[file] = _load_module(folder, path, fresh)
        fn = getattr(modules[file], attr, None)
        if not callable(fn):
            raise TransformError(f"transform {function!r}: expected a function {attr!r} in {folder / file}.py")
        transforms.append(Transform(function, fn, tuple(match)))
    if not fresh:
        _release(folder, {(folder / f"{file}.py").resolve() for file in modules})
    return TransformSet(transforms)


def _release(folder: Path, used: set[Path]) -> None:
    """Drop the cached modules of folder's files that the transforms no longer use (a transform taken out)."""
    where = folder.resolve()
    for key in [k for k, loaded in _loaded.items() if loaded.folder == where and k not in used]:
        _forget(_loaded.pop(key).module)


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
        except (Exception, SystemExit) as e:  # sys.exit() in a transform must not stop the daemon either
            return [self._failed(t, original, f"{type(e).__name__}: {e}")]
        if out is None:
            return []
        if isinstance(out, Reading):
            if _valid(out):
                return [out]
            checked = self._checked(t, original, out)
            return [] if checked is None else [checked]
        if isinstance(out, list | tuple) and all(isinstance(x, Reading) for x in out):
            if all(map(_valid, out)):
                return list(out)
            return [c for c in (x if _valid(x) else self._checked(t, original, x) for x in out) if c is not None]
        return [self._failed(t, original, f"returned {type(out).__name__}, expected a Reading, a list or None")]

    def _count(self, t: Transform, r: Reading, why: str) -> None:
        self.errors += 1
        if self.errors <= 10 or self.errors % 1000 == 0:
            log.warning("transform %s failed on %s/%s: %s (error #%d)", t.name, r.device, r.point, why, self.errors)

    def _failed(self, t: Transform, r: Reading, why: str) -> Reading:
        self._count(t, r, why)
        if r.quality != BAD:
            r.quality = UNCERTAIN
        r.error = f"transform {t.name}: {why}"
        return r

    def _checked(self, t: Transform, before: Reading, r: Reading) -> Reading | None:
        """A returned reading that failed the quick check. An int ts becomes a float and a str subclass a str
        (nothing wrong with either). Any other unusable field makes it a `bad` reading of its device/point whose
        error names the transform and the field; with an unusable device or point it is dropped. Both counted."""
        fixed: dict[str, Any] = {}
        wrong: list[str] = []
        for k, optional, key, expected in _FIELDS:
            v = getattr(r, k, _MISSING)
            try:
                fixed[k] = _ts(v) if k == "ts" else _text(v, optional, key)
                if (k == "ts" and fixed[k] is None) or (k == "quality" and fixed[k] not in _QUALITIES):
                    raise ValueError
            except ValueError:
                fixed[k] = _MISSING
                wrong.append(f"{k} {self._show(v)}, expected {expected}")
        if not wrong:  # nothing but representation: the same reading, in exact types
            r.device, r.point, r.ts = fixed["device"], fixed["point"], fixed["ts"]
            r.quality, r.error, r.unit = fixed["quality"], fixed["error"], fixed["unit"]
            return r
        why = "returned a reading with " + "; ".join(wrong)
        device, point = fixed["device"], fixed["point"]
        if device is _MISSING or point is _MISSING:
            self._count(t, before, why + "; dropped it")
            return None
        self._count(t, before, f"{why}; kept as a bad reading of {device}/{point}")
        ts = fixed["ts"] if fixed["ts"] is not _MISSING else _ts(before.ts)
        unit = fixed["unit"] if fixed["unit"] is not _MISSING else before.unit
        return Reading.bad(device, point, f"transform {t.name}: {why}", time.time() if ts is None else ts,
                           unit if type(unit) is str and _encodes(unit) else None)

    @staticmethod
    def _show(value: Any) -> str:
        return "missing" if value is _MISSING else _short.repr(value)
