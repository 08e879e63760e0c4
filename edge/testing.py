"""Unit-test your transforms without a daemon: `run_transform` (plain function) and the `edge_transform` fixture.

    from edge.testing import reading, run_transform

    def test_f_to_c():
        out = run_transform("transforms/units.py", "f_to_c", reading("plc1", "temp", 212.0))
        assert out[0].value == 100.0

Registered as a pytest plugin (entry point `edge_transforms`), so the fixture needs no import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.pipeline.transforms import Transform, TransformSet, load_transforms
from edge.reading import GOOD, Reading

__all__ = ["edge_transform", "reading", "run_transform"]


def reading(device: str = "dev", point: str = "point", value: Any = 0.0, *, quality: str = GOOD,
            unit: str | None = None, ts: float = 1_700_000_000.0, error: str | None = None) -> Reading:
    """A reading as the pipeline hands it to transforms (fixed timestamp by default, for stable tests)."""
    return Reading(device, point, value, ts, quality, error, unit)


def run_transform(file: str | os.PathLike[str] | Callable[[Reading], Any], function: str | None = None,
                  *readings: Reading) -> list[Reading]:
    """Apply a transform exactly as the daemon does (errors → `uncertain`) and return what it emits.

    Each call imports the file afresh, so module state (a dict of last values...) starts empty in every call.

    `file` is the transform file and `function` its function name; or pass the function itself as `file`
    and the readings after it (`run_transform(f_to_c, None, r)`).
    """
    if callable(file):
        tset = TransformSet([Transform(getattr(file, "__name__", "transform"), file, ("*",))])
    else:
        path = Path(file)
        if function is None:
            raise ValueError("name the function to run, e.g. run_transform('transforms/units.py', 'f_to_c', r)")
        tset = load_transforms(path.parent, [(f"{path.stem}.{function}", ["*"])], fresh=True)
    out: list[Reading] = []
    for r in readings:
        out.extend(tset.apply(r))
    return out


@pytest.fixture
def edge_transform() -> Callable[..., list[Reading]]:
    """The `run_transform` function, as a fixture."""
    return run_transform
