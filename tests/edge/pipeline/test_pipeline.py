"""Pipeline: scale/offset, deadband (bad always passes), transforms (change, fan out, drop, fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.simulator.config import SimulatorDevice, SimulatorPoint
from edge.pipeline import Pipeline, load_transforms
from edge.reading import BAD, GOOD, UNCERTAIN, Reading
from edge.testing import reading, run_transform


def device(**point_keys: object) -> SimulatorDevice:
    return SimulatorDevice(name="d", driver="simulator", point=[SimulatorPoint(name="p", **point_keys)])  # type: ignore[arg-type]


def test_scale_offset_and_unit() -> None:
    pipe = Pipeline([device(scale=0.1, offset=-40.0, unit="degC")])
    out = pipe.process([Reading("d", "p", 650)])
    assert out[0].value == 25.0 and out[0].unit == "degC"


def test_bad_readings_are_not_scaled_and_always_pass_deadband() -> None:
    pipe = Pipeline([device(scale=2.0, deadband=5.0)])
    values = [pipe.process([r]) for r in (Reading("d", "p", 10), Reading.bad("d", "p", "timeout"),
                                          Reading.bad("d", "p", "timeout"), Reading("d", "p", 10))]
    assert [len(v) for v in values] == [1, 1, 1, 1]
    assert values[1][0].quality == BAD and values[1][0].value is None


def test_deadband_suppresses_small_changes_relative_to_last_reported() -> None:
    pipe = Pipeline([device(deadband=1.0)])
    sent = [r.value for v in (10.0, 10.5, 10.9, 11.1, 11.5, 12.2, 9.0) for r in pipe.process([Reading("d", "p", v)])]
    assert sent == [10.0, 11.1, 12.2, 9.0]
    assert pipe.suppressed == 3


def test_transform_change_fanout_drop(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(
        "def f_to_c(r):\n    r.value = round((r.value - 32) * 5 / 9, 3)\n    r.unit = 'degC'\n    return r\n"
        "def split(r):\n    return [r, r.replace(point=r.point + '_copy')]\n"
        "def drop_negative(r):\n    return None if r.value < 0 else r\n"
    )
    tset = load_transforms(tmp_path, [("t.f_to_c", ["d/temp"]), ("t.split", ["d/*"]), ("t.drop_negative", ["*"])])
    pipe = Pipeline([], tset)
    out = pipe.process([Reading("d", "temp", 212.0), Reading("d", "other", -5.0), Reading("x", "y", 3.0)])
    assert [(r.device, r.point, r.value, r.unit) for r in out] == [
        ("d", "temp", 100.0, "degC"), ("d", "temp_copy", 100.0, "degC"), ("x", "y", 3.0, None)]


def test_transform_error_marks_uncertain_and_keeps_the_reading(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("def boom(r):\n    raise ValueError('nope')\ndef wrong(r):\n    return 42\n")
    out = run_transform(tmp_path / "t.py", "boom", reading(value=1.0))
    assert out[0].quality == UNCERTAIN and out[0].value == 1.0
    assert "ValueError: nope" in (out[0].error or "")
    out = run_transform(tmp_path / "t.py", "wrong", reading(value=1.0))
    assert out[0].quality == UNCERTAIN and "returned int" in (out[0].error or "")


def test_run_transform_accepts_a_function() -> None:
    def double(r: Reading) -> Reading:
        r.value *= 2
        return r

    assert run_transform(double, None, reading(value=2.5))[0].value == 5.0
    assert run_transform(double, None, reading(value=2.5))[0].quality == GOOD


def test_edge_transform_fixture_is_registered(edge_transform) -> None:  # type: ignore[no-untyped-def]
    assert edge_transform is run_transform


def test_deadband_on_a_point_whose_value_changes_type_never_raises() -> None:
    pipe = Pipeline([device(deadband=1.0)])
    values = ("warming up", 10.0, 10.5, "fault", True, 12.0)
    sent = [r.value for v in values for r in pipe.process([Reading("d", "p", v)])]
    assert sent == ["warming up", 10.0, "fault", True, 12.0]


@pytest.mark.parametrize("change", [{"offset": 0.4}, {"scale": 1.01}, {"unit": "degF"}, {"deadband": 0.6},
                                    {"signal": "constant"}], ids=lambda c: next(iter(c)))
def test_a_change_to_how_a_value_is_made_clears_its_deadband_memory(change: dict[str, object]) -> None:
    """With the memory kept, a steady raw 20.0 after a calibration change (offset 0 -> 0.4) stored nothing: the
    store kept 20.0 while the point read 20.4."""
    pipe = Pipeline([device(deadband=0.5, unit="degC")])
    assert [r.value for r in pipe.process([Reading("d", "p", 20.0)])] == [20.0]
    pipe.add_device(device(**{"deadband": 0.5, "unit": "degC", **change}))  # what a reload does with the device
    out = pipe.process([Reading("d", "p", 20.0)])
    assert len(out) == 1 and pipe.suppressed == 0
    assert pipe.process([Reading("d", "p", 20.0)]) == [] and pipe.suppressed == 1  # the deadband works on


def test_a_device_change_of_where_values_come_from_clears_the_deadband_memory() -> None:
    pipe = Pipeline([device(deadband=0.5)])
    pipe.process([Reading("d", "p", 20.0)])
    reseeded = SimulatorDevice(name="d", driver="simulator", seed=7, point=[SimulatorPoint(name="p", deadband=0.5)])
    pipe.add_device(reseeded)
    assert len(pipe.process([Reading("d", "p", 20.0)])) == 1


def test_a_change_that_makes_no_value_keeps_the_deadband_memory() -> None:
    pipe = Pipeline([device(deadband=0.5, offset=1.0)])
    pipe.process([Reading("d", "p", 20.0)])
    changed = SimulatorDevice(name="d", driver="simulator", interval=5.0, timeout=2.0, enabled=False,
                              point=[SimulatorPoint(name="p", deadband=0.5, offset=1.0, writable=True),
                                     SimulatorPoint(name="q")])
    pipe.add_device(changed)
    assert pipe.process([Reading("d", "p", 20.0)]) == [] and pipe.suppressed == 1


def test_changed_transforms_clear_the_deadband_memory_unchanged_ones_do_not(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("def double(r):\n    r.value *= 2\n    return r\n")
    pipe = Pipeline([device(deadband=0.5)])
    assert [r.value for r in pipe.process([Reading("d", "p", 20.0)])] == [20.0]
    pipe.transforms = load_transforms(tmp_path, [("t.double", ["*"])])  # a reload adding a transform
    assert [r.value for r in pipe.process([Reading("d", "p", 20.0)])] == [40.0]  # not 20.0 kept in the store
    pipe.transforms = load_transforms(tmp_path, [("t.double", ["*"])])  # a reload that changed nothing here
    assert pipe.process([Reading("d", "p", 20.0)]) == [] and pipe.suppressed == 1
