"""Planner properties (hypothesis): every point is inside exactly one planned read that covers all its
registers, no read exceeds the limits or bridges more than max_gap unused registers, and the number of
reads is minimal (checked against an exhaustive dynamic program)."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.config import ModbusPoint
from drivers.modbus.planner import plan_reads

SIZES = {"uint16": 1, "int32": 2, "float32": 2, "int64": 4, "float64": 4}


@st.composite
def point_sets(draw: st.DrawFn, disjoint: bool) -> list[ModbusPoint]:
    """Random points on the holding/input/coil tables; `disjoint` keeps register ranges apart."""
    points: list[ModbusPoint] = []
    taken: dict[str, set[int]] = {}
    for i in range(draw(st.integers(1, 40))):
        table = draw(st.sampled_from(["holding", "input", "coil"]))
        kind = "bool" if table == "coil" else draw(st.sampled_from([*SIZES, "string"]))
        length = draw(st.integers(1, 30)) if kind == "string" else 0
        size = 1 if table == "coil" else (length or SIZES[kind])
        address = draw(st.integers(0, 600))
        span = set(range(address, address + size))
        if disjoint and span & taken.setdefault(table, set()):
            continue
        taken.setdefault(table, set()).update(span)
        points.append(ModbusPoint(name=f"p{i}", table=table, address=address, type=kind, length=length))  # type: ignore[arg-type]
    return points


def span(p: ModbusPoint) -> tuple[int, int]:
    return p.address, p.address + p.registers


limits = st.tuples(st.integers(0, 20), st.integers(4, 125), st.integers(1, 2000))


@settings(max_examples=150, deadline=None)
@given(points=point_sets(disjoint=False), lim=limits)
def test_reads_cover_every_point_within_limits(points: list[ModbusPoint], lim: tuple[int, int, int]) -> None:
    max_gap, max_registers, max_bits = lim
    max_registers = max(max_registers, max((p.registers for p in points if p.table != "coil"), default=1))
    plan = plan_reads(points, max_gap=max_gap, max_registers=max_registers, max_bits=max_bits)
    assigned = [pp.point.name for r in plan.reads for pp in r.points]
    assert sorted(assigned) == sorted(p.name for p in points)  # each point in exactly one read
    for read in plan.reads:
        assert read.count <= (max_bits if read.table == "coil" else max_registers)
        assert read.count <= (2000 if read.table == "coil" else 125)
        used: set[int] = set()
        for pp in read.points:
            start, end = span(pp.point)
            assert pp.point.table == read.table
            assert read.address <= start and end <= read.end  # the whole point is in this read
            assert pp.offset == start - read.address
            used.update(range(start, end))
        assert read.address in used and read.end - 1 in used  # no useless edges
        gap = 0
        for reg in range(read.address, read.end):
            gap = 0 if reg in used else gap + 1
            assert gap <= max_gap


def minimal_reads(points: list[ModbusPoint], max_gap: int, limit: int) -> int:
    """The fewest valid reads for disjoint points of one table, by exhaustive DP over sorted splits."""
    ps = sorted(points, key=lambda p: p.address)

    def valid(i: int, j: int) -> bool:  # points i..j-1 as one read
        if ps[j - 1].address + ps[j - 1].registers - ps[i].address > limit:
            return False
        return all(ps[k + 1].address - (ps[k].address + ps[k].registers) <= max_gap for k in range(i, j - 1))

    @cache
    def best(i: int) -> int:
        if i == len(ps):
            return 0
        return min(1 + best(j) for j in range(i + 1, len(ps) + 1) if valid(i, j))

    return best(0)


@settings(max_examples=150, deadline=None)
@given(points=point_sets(disjoint=True), max_gap=st.integers(0, 20), max_registers=st.integers(30, 125))
def test_number_of_reads_is_minimal(points: list[ModbusPoint], max_gap: int, max_registers: int) -> None:
    plan = plan_reads(points, max_gap=max_gap, max_registers=max_registers)
    for table in ("holding", "input", "coil"):
        in_table = [p for p in points if p.table == table]
        limit = 2000 if table == "coil" else max_registers
        planned = [r for r in plan.reads if r.table == table]
        assert len(planned) == (minimal_reads(in_table, max_gap, limit) if in_table else 0)


def test_one_request_per_point_and_gaps() -> None:
    pts = [ModbusPoint(name=f"p{a}", address=a) for a in (0, 1, 2, 20, 29, 40)]
    assert [(r.address, r.count) for r in plan_reads(pts).reads] == [(0, 3), (20, 10), (40, 1)]
    assert [(r.address, r.count) for r in plan_reads(pts, max_gap=0).reads] == [(0, 3), (20, 1), (29, 1), (40, 1)]
    assert len(plan_reads(pts, one_request_per_point=True).reads) == 6
    assert [(r.address, r.count) for r in plan_reads(pts, max_gap=100, max_registers=30).reads] == [(0, 30), (40, 1)]


def test_a_thousand_registers_make_eight_reads() -> None:
    pts = [ModbusPoint(name=f"r{a}", address=a) for a in range(1000)]
    assert [r.count for r in plan_reads(pts).reads] == [125] * 8
