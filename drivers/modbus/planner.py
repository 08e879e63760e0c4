"""The request planner: a device's points coalesced into the fewest reads, computed once per config.

Per table, points sorted by address are packed greedily into one read while the read stays within the
size limit and no run of unused registers inside it is longer than `max_gap`. A point is never split
across two reads. Greedy packing is optimal here: any sub-run of a valid read is itself valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.modbus import defaults
from drivers.modbus.codec import Decoder, decoder_for
from drivers.modbus.config import BIT_TABLES, ModbusDevice, ModbusPoint

TABLE_ORDER: tuple[str, ...] = ("holding", "input", "coil", "discrete")


@dataclass(frozen=True, slots=True)
class PlannedPoint:
    """A point inside a read: its offset (registers or bits) from the read's first address."""

    point: ModbusPoint
    offset: int
    decode: Decoder | None  # None on bit tables


@dataclass(frozen=True, slots=True)
class Read:
    """One request: `count` registers or bits of `table` from `address`, and the points they carry."""

    table: str
    address: int
    count: int
    points: tuple[PlannedPoint, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def describe(self) -> str:
        return f"{self.table} {self.address}..{self.end - 1}"


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """All reads of one poll cycle, in a stable order (by table, then address)."""

    reads: tuple[Read, ...]

    @property
    def point_count(self) -> int:
        return sum(len(r.points) for r in self.reads)


def plan_reads(
    points: Sequence[ModbusPoint],
    *,
    max_gap: int = defaults.DEFAULT_MAX_GAP,
    max_registers: int = defaults.MAX_REGISTERS_PER_READ,
    max_bits: int = defaults.MAX_BITS_PER_READ,
    one_request_per_point: bool = False,
) -> ReadPlan:
    """The fewest reads covering every point, within the limits; see the module docstring."""
    reads: list[Read] = []
    for table in TABLE_ORDER:
        in_table = sorted((p for p in points if p.table == table), key=lambda p: (p.address, p.registers))
        if not in_table:
            continue
        limit = min(max_bits, defaults.MAX_BITS_PER_READ) if table in BIT_TABLES else min(
            max_registers, defaults.MAX_REGISTERS_PER_READ
        )
        group: list[ModbusPoint] = []
        start = end = 0
        for p in in_table:
            p_end = p.address + p.registers
            if group and (
                one_request_per_point
                or p.address - end > max_gap
                or max(end, p_end) - start > limit
            ):
                reads.append(_read(table, start, end, group))
                group = []
            if not group:
                start, end = p.address, p_end
            else:
                end = max(end, p_end)
            group.append(p)
        reads.append(_read(table, start, end, group))
    return ReadPlan(tuple(reads))


def _read(table: str, start: int, end: int, group: list[ModbusPoint]) -> Read:
    bits = table in BIT_TABLES
    planned = tuple(
        PlannedPoint(p, p.address - start, None if bits else decoder_for(p)) for p in group
    )
    return Read(table, start, end - start, planned)


def plan_for(device: ModbusDevice) -> ReadPlan:
    """The plan for a Modbus device config."""
    return plan_reads(
        device.point,
        max_gap=device.max_gap,
        max_registers=device.max_registers_per_read,
        max_bits=device.max_bits_per_read,
        one_request_per_point=device.one_request_per_point,
    )
