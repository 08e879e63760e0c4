"""Config validation: the keys of CONTRACT.md plus the planner/bus keys, and the cross-field rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.modbus.config import ModbusRtuDevice, ModbusTcpDevice


def tcp(**points: dict[str, object]) -> dict[str, object]:
    return {"name": "plc", "driver": "modbus-tcp", "host": "127.0.0.1",
            "point": [{"name": k, **v} for k, v in points.items()]}


def error_of(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as info:
        ModbusTcpDevice(**data)
    return str(info.value)


def test_contract_example_is_valid() -> None:
    dev = ModbusTcpDevice(**tcp(temperature={
        "table": "holding", "address": 0, "type": "float32", "word_order": "big", "byte_order": "big",
        "writable": False, "scale": 1.0, "offset": 0.0, "unit": "degC", "deadband": 0.0,
    }), port=502, unit=1, interval="1s")
    assert dev.interval == 1.0 and dev.max_gap == 8 and dev.max_registers_per_read == 125
    assert dev.bus_key == "tcp://127.0.0.1:502"


def test_bit_tables_default_to_bool() -> None:
    dev = ModbusTcpDevice(**tcp(run={"table": "coil", "address": 3}))
    assert dev.point[0].type == "bool"


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"table": "holding", "address": 0, "type": "string"}, "expected the number of registers"),
        ({"table": "holding", "address": 0, "type": "int16", "length": 2}, "expected 0 (only strings"),
        ({"table": "holding", "address": 0, "type": "int16", "bit": 3}, "bit: expected only with type = bool"),
        ({"table": "coil", "address": 0, "type": "bool", "bit": 3}, "bit: expected only with type = bool"),
        ({"table": "coil", "address": 0, "type": "int16"}, "type: expected bool on a coil table"),
        ({"table": "input", "address": 0, "writable": True}, "writable: expected false on a read-only input"),
        ({"table": "holding", "address": 65535, "type": "float32"}, "address: expected the point to end"),
        ({"table": "holding", "address": 0, "type": "float16"}, "type"),
        ({"table": "holding", "address": 0, "scale": 0}, "scale: expected a non-zero"),
    ],
)
def test_bad_points_are_refused_with_expected_found(point: dict[str, object], message: str) -> None:
    assert message in error_of(tcp(p=point))


def test_string_longer_than_a_read_is_refused() -> None:
    data = tcp(s={"address": 0, "type": "string", "length": 20})
    assert "expected at most max_registers_per_read (10) registers, found 20" in error_of(
        {**data, "max_registers_per_read": 10}
    )


def test_unknown_keys_are_refused() -> None:
    assert "extra" in error_of({**tcp(), "baud": 9600}).lower()


def test_rtu_frame_gap() -> None:
    slow = ModbusRtuDevice(name="m", driver="modbus-rtu", serial="/dev/ttyUSB0", baudrate=9600, parity="E")
    assert slow.frame_gap == pytest.approx(3.5 * 11 / 9600)
    fast = ModbusRtuDevice(name="m", driver="modbus-rtu", serial="/dev/ttyUSB0", baudrate=115200)
    assert fast.frame_gap == pytest.approx(0.00175)
    assert slow.bus_key == "rtu:///dev/ttyUSB0"
    with pytest.raises(ValidationError, match="unit"):
        ModbusRtuDevice(name="m", driver="modbus-rtu", serial="/dev/ttyUSB0", unit=0)
