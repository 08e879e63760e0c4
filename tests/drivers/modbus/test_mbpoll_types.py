"""Every type × word order × byte order against an independent implementation: Debian's mbpoll (libmodbus)
writes the raw registers and the driver reads them; the driver writes and mbpoll reads the raw registers;
and mbpoll's own 32-bit int/float encodings (word order little by default, big with -B) are read back."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from drivers.modbus.config import ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simserver import SimulatorServer
from edge.reading import GOOD

from .peers import mbpoll, mbpoll_read_hex, mbpoll_write_registers

UNIT = 4
BASE = 100
SLOT = 4  # registers per case: the largest fixed type (64-bit) and the test strings
ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
CASES: dict[str, tuple[str, Any]] = {  # type -> (struct format of the big-endian value, test value)
    "int16": (">h", -12345),
    "uint16": (">H", 0xBEEF),
    "int32": (">i", -123456789),
    "uint32": (">I", 0xDEADBEEF),
    "int64": (">q", -1234567890123456789),
    "uint64": (">Q", 0xFEDCBA9876543210),
    "float32": (">f", -1234.5),
    "float64": (">d", 3.14159265358979),
    "string": ("", "Modbus!"),
    "bool": ("", True),  # bit 9 of a register
}


def wire_registers(kind: str, word: str, byte: str) -> list[int]:
    """The reference register image, written out independently of the driver's codec."""
    fmt, value = CASES[kind]
    if kind == "string":
        data = value.encode().ljust(SLOT * 2, b"\0")
    elif kind == "bool":
        data = (1 << 9).to_bytes(2, "big")
    else:
        data = struct.pack(fmt, value)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if word == "little":
        words.reverse()
    if byte == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def points() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, (kind, (word, byte)) in enumerate((k, o) for k in CASES for o in ORDERS):
        p: dict[str, Any] = {"name": f"{kind}-{word}-{byte}", "address": BASE + i * SLOT, "type": kind,
                             "word_order": word, "byte_order": byte, "writable": True}
        if kind == "string":
            p["length"] = SLOT
        if kind == "bool":
            p["bit"] = 9
        out.append(p)
    return out


def image() -> list[int]:
    regs: list[int] = []
    for kind in CASES:
        for word, byte in ORDERS:
            case = wire_registers(kind, word, byte)
            regs += case + [0] * (SLOT - len(case))
    return regs


def driver(port: int, pts: list[dict[str, Any]]) -> ModbusDriver:
    return ModbusDriver(ModbusTcpDevice(name="types", driver="modbus-tcp", host="127.0.0.1", port=port,
                                        unit=UNIT, timeout=1.0, point=pts))  # type: ignore[arg-type]


async def test_driver_reads_what_mbpoll_wrote(sim: SimulatorServer) -> None:
    await mbpoll_write_registers(sim.port, UNIT, BASE, image())
    d = driver(sim.port, points())
    await d.start()
    try:
        readings = {r.point: r for r in await d.poll()}
    finally:
        await d.stop()
    assert len(d.plan.reads) == 2  # 160 registers with no gaps: 125 + 35
    for name, r in readings.items():
        kind = name.split("-")[0]
        expected = CASES[kind][1]
        assert r.quality == GOOD, (name, r.error)
        assert r.value == (pytest.approx(expected) if kind.startswith("float") else expected), name


async def test_mbpoll_reads_what_the_driver_wrote(sim: SimulatorServer) -> None:
    d = driver(sim.port, points())
    await d.start()
    try:
        for p in points():
            kind = p["type"]
            back = await d.write(p["name"], CASES[kind][1])
            assert back == (pytest.approx(CASES[kind][1]) if kind.startswith("float") else CASES[kind][1])
    finally:
        await d.stop()
    raw = await mbpoll_read_hex(sim.port, UNIT, BASE, 120) + await mbpoll_read_hex(sim.port, UNIT, BASE + 120, 40)
    assert raw == image()


@pytest.mark.parametrize("big_words", [False, True])
async def test_mbpoll_32bit_encodings(sim: SimulatorServer, big_words: bool) -> None:
    """libmodbus' own float/int layout: CDAB by default (word order little), ABCD with -B."""
    order = ["-B"] if big_words else []
    await mbpoll(sim.port, UNIT, ["-r", "300", "-t", "4:float", *order], [-1234.5])
    await mbpoll(sim.port, UNIT, ["-r", "302", "-t", "4:int", *order], [-123456789])
    word = "big" if big_words else "little"
    d = driver(sim.port, [
        {"name": "f", "address": 300, "type": "float32", "word_order": word, "writable": True},
        {"name": "i", "address": 302, "type": "int32", "word_order": word, "writable": True},
    ])
    await d.start()
    try:
        readings = {r.point: r.value for r in await d.poll()}
        assert readings == {"f": -1234.5, "i": -123456789}
        await d.write("f", 98.25)
        await d.write("i", 7654321)
    finally:
        await d.stop()
    out = await mbpoll(sim.port, UNIT, ["-r", "300", "-c", "1", "-t", "4:float", *order])
    assert "98.25" in out
    out = await mbpoll(sim.port, UNIT, ["-r", "302", "-c", "1", "-t", "4:int", *order])
    assert "7654321" in out
