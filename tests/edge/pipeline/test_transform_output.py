"""What a transform returns is checked before it reaches the store: a field the store cannot take (quality
"Good", ts None or text, device None...) makes that one reading bad (or dropped), counted and logged, and never
costs the other readings of the store's shared batch. sys.exit() in a transform does not stop the daemon."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.simulator.config import SimulatorDevice, SimulatorPoint
from edge.pipeline import Pipeline, TransformSet, load_transforms
from edge.pipeline.transforms import Transform
from edge.reading import BAD, GOOD, UNCERTAIN, Reading
from edge.store import Store, StoreOptions
from edge.testing import reading

TS = 1_700_000_000.0


def setter(field: str, value: Any) -> Transform:
    def f(r: Reading) -> Reading:
        setattr(r, field, value)
        return r

    return Transform(f"t.set_{field}", f, ("*",))


def run(t: Transform, r: Reading) -> tuple[TransformSet, list[Reading]]:
    tset = TransformSet([t])
    return tset, tset.apply(r)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store.open(tmp_path / "data", StoreOptions(commit_interval=30.0))  # one batch until flushed
    yield st
    st.close()


BAD_FIELDS = [
    ("quality", "Good", "quality 'Good', expected 'good', 'uncertain' or 'bad'"),
    ("quality", None, "quality None, expected 'good'"),
    ("ts", None, "ts None, expected seconds since the epoch"),
    ("ts", "2024-01-01T00:00:00Z", "ts '2024-01-01T00:00:00Z', expected seconds since the epoch"),
    ("ts", float("nan"), "ts nan, expected"),
    ("ts", float("inf"), "ts inf, expected"),
    ("ts", TS * 1000, "ts 1700000000000.0, expected"),  # milliseconds: year 55,000
    ("ts", True, "ts True, expected"),
    ("error", 5, "error 5, expected None or a str"),
    ("unit", ["degC"], "unit ['degC'], expected None or a str"),
    ("unit", "deg\udcff", "unit 'deg\\udcff', expected None or a str that UTF-8 can encode"),
]


@pytest.mark.parametrize(("field", "value", "why"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_a_field_the_store_cannot_take_makes_a_bad_reading_naming_transform_and_field(
        field: str, value: Any, why: str, caplog: pytest.LogCaptureFixture) -> None:
    tset, out = run(setter(field, value), reading("plc", "temp", 21.5, unit="degC"))
    assert len(out) == 1
    r = out[0]
    assert (r.device, r.point, r.value, r.quality) == ("plc", "temp", None, BAD)
    assert r.error is not None and r.error.startswith("transform t.set_" + field + ": returned a reading with ")
    assert why in r.error
    assert type(r.ts) is float and r.ts == TS  # a bad ts falls back to the one the reading came with
    assert r.unit == "degC"  # and so does a bad unit
    assert tset.errors == 1
    assert f"transform t.set_{field} failed on plc/temp" in caplog.text and "kept as a bad reading" in caplog.text


@pytest.mark.parametrize(("field", "value"), [("device", None), ("device", ""), ("point", 7),
                                              ("device", "plc\udcff"), ("point", "")])
def test_an_unusable_device_or_point_drops_the_reading_counted_and_logged(
        field: str, value: Any, caplog: pytest.LogCaptureFixture) -> None:
    tset, out = run(setter(field, value), reading("plc", "temp", 21.5))
    assert out == []
    assert tset.errors == 1
    assert f"transform t.set_{field} failed on plc/temp: returned a reading with {field} " in caplog.text
    assert "dropped it" in caplog.text


class Names(enum.StrEnum):
    GOOD = "good"
    PLC = "plc"


def test_harmless_differences_are_repaired_and_not_counted() -> None:
    def fix(r: Reading) -> Reading:
        r.ts, r.quality, r.device = 1_700_000_000, Names.GOOD, Names.PLC
        return r

    tset, out = run(Transform("t.fix", fix, ("*",)), reading("x", "temp", 1.0))
    assert [(r.device, r.ts, r.quality) for r in out] == [("plc", TS, GOOD)]
    assert type(out[0].ts) is float and type(out[0].quality) is str and type(out[0].device) is str
    assert tset.errors == 0


def test_fan_out_keeps_the_good_readings_and_marks_the_bad_one() -> None:
    def split(r: Reading) -> list[Reading]:
        return [r, r.replace(point="copy", quality="GOOD"), r.replace(point=None), r.replace(point="late", ts=TS)]

    tset, out = run(Transform("t.split", split, ("*",)), reading("plc", "temp", 1.0))
    assert [(r.point, r.value, r.quality) for r in out] == [("temp", 1.0, GOOD), ("copy", None, BAD),
                                                             ("late", 1.0, GOOD)]
    assert tset.errors == 2


def test_valid_readings_pass_through_as_the_same_objects() -> None:
    r = reading("plc", "temp", 1.0, unit="°C", error="note")
    tset, out = run(Transform("t.same", lambda x: x, ("*",)), r)
    assert out[0] is r and tset.errors == 0


def test_system_exit_in_a_transform_marks_uncertain_but_keyboard_interrupt_still_stops() -> None:
    def leave(r: Reading) -> Reading:
        raise SystemExit(3)

    tset, out = run(Transform("t.leave", leave, ("*",)), reading(value=2.0))
    assert (out[0].value, out[0].quality, out[0].error) == (2.0, UNCERTAIN, "transform t.leave: SystemExit: 3")
    assert tset.errors == 1

    def interrupt(r: Reading) -> Reading:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(Transform("t.interrupt", interrupt, ("*",)), reading())


def test_logging_stays_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    tset = TransformSet([setter("quality", "Good")])
    with caplog.at_level(logging.WARNING, "edge.pipeline"):
        for _ in range(50):
            tset.apply(reading())
    assert tset.errors == 50
    assert len([m for m in caplog.messages if "quality 'Good'" in m]) == 10


def sim(name: str) -> SimulatorDevice:
    return SimulatorDevice(name=name, driver="simulator", point=[SimulatorPoint(name="temp")])


@pytest.mark.parametrize("body", ["r.quality = 'Good'", "r.ts = None", "r.ts = '2024-01-01T00:00:00Z'",
                                  "r.device = None"])
def test_one_devices_bad_output_costs_no_other_devices_readings_in_the_batch(
        tmp_path: Path, store: Store, body: str) -> None:
    (tmp_path / "t.py").write_text(f"def broken(r):\n    {body}\n    return r\n")
    pipe = Pipeline([sim("a"), sim("b")], load_transforms(tmp_path, [("t.broken", ["a/*"])]))
    commits = store.commits
    for device in ("a", "b"):  # as the daemon does: one append per device's poll, committed together
        store.append_nowait(pipe.process([Reading(device, "temp", 21.5, TS)], device))
    store.flush_sync()
    assert store.commits == commits + 1
    stored = {r.device: r for r in store.read_sync(0, 100)}
    assert (stored["b"].value, stored["b"].quality, stored["b"].ts) == (21.5, GOOD, TS)
    assert pipe.transforms.errors == 1
    if body == "r.device = None":
        assert set(stored) == {"b"}  # dropped, and counted
    else:
        assert stored["a"].quality == BAD and stored["a"].value is None
        assert (stored["a"].error or "").startswith("transform t.broken: returned a reading with ")
    for r in store.read_sync(0, 100):
        r.to_dict()  # what GET /v1/readings serves: every stored reading renders
