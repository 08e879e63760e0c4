"""The config keys of `modbus-tcp` and `modbus-rtu` devices and their points (pydantic only, no pymodbus)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from drivers.base import DeviceConfig, PointConfig
from drivers.modbus import defaults
from edge.quantities import Duration

Table = Literal["holding", "input", "coil", "discrete"]
ValueType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
Order = Literal["big", "little"]

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})
WRITABLE_TABLES: frozenset[str] = frozenset({"holding", "coil"})

TYPE_REGISTERS: dict[str, int] = {
    "bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}
"""Registers each fixed-size type occupies; strings take `length`."""


class ModbusPoint(PointConfig):
    """One value in a Modbus table: where it is and how its registers (or bit) decode."""

    table: Table = "holding"
    address: int = Field(ge=0, le=defaults.MAX_ADDRESS)
    type: ValueType = "uint16"
    word_order: Order = "big"
    byte_order: Order = "big"
    length: int = Field(default=0, ge=0)
    bit: int | None = Field(default=None, ge=0, le=defaults.REGISTER_BITS - 1)

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        """Coils and discrete inputs are bools unless said otherwise."""
        if isinstance(data, dict) and "type" not in data and data.get("table") in BIT_TABLES:
            return {**data, "type": "bool"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.table in BIT_TABLES and self.type != "bool":
            raise ValueError(f"type: expected bool on a {self.table} table, found {self.type}")
        if self.bit is not None and (self.table in BIT_TABLES or self.type != "bool"):
            raise ValueError(
                f"bit: expected only with type = bool on a holding or input table, "
                f"found bit = {self.bit} with type = {self.type} on a {self.table} table"
            )
        if self.type == "string" and self.length == 0:
            raise ValueError("length: expected the number of registers (> 0) for type = string, found 0")
        if self.type != "string" and self.length != 0:
            raise ValueError(f"length: expected 0 (only strings have a length), found {self.length}")
        if self.writable and self.table not in WRITABLE_TABLES:
            raise ValueError(f"writable: expected false on a read-only {self.table} table, found true")
        if self.address + self.registers > defaults.MAX_ADDRESS + 1:
            raise ValueError(
                f"address: expected the point to end at or before {defaults.MAX_ADDRESS}, "
                f"found {self.address} + {self.registers} registers"
            )
        if self.scale == 0:
            raise ValueError("scale: expected a non-zero factor, found 0")
        return self

    @property
    def registers(self) -> int:
        """How many registers (or bits, on coil/discrete tables) the point spans."""
        if self.table in BIT_TABLES:
            return 1
        return self.length if self.type == "string" else TYPE_REGISTERS[self.type]


class ModbusDevice(DeviceConfig):
    """Keys shared by Modbus TCP and RTU devices: unit, retries, planner limits and pacing."""

    unit: int = Field(default=defaults.DEFAULT_UNIT, ge=0, le=defaults.MAX_TCP_UNIT)
    retries: int = Field(default=defaults.DEFAULT_RETRIES, ge=0, le=defaults.MAX_RETRIES)
    max_gap: int = Field(default=defaults.DEFAULT_MAX_GAP, ge=0)
    max_registers_per_read: int = Field(
        default=defaults.MAX_REGISTERS_PER_READ, ge=1, le=defaults.MAX_REGISTERS_PER_READ
    )
    max_bits_per_read: int = Field(default=defaults.MAX_BITS_PER_READ, ge=1, le=defaults.MAX_BITS_PER_READ)
    one_request_per_point: bool = False
    pause_between_requests: Duration = defaults.DEFAULT_PAUSE_BETWEEN_REQUESTS
    backoff_initial: Duration = Field(default=defaults.DEFAULT_BACKOFF_INITIAL, gt=0)
    backoff_max: Duration = Field(default=defaults.DEFAULT_BACKOFF_MAX, gt=0)
    point: list[ModbusPoint] = Field(default_factory=list)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _points_fit_one_read(self) -> ModbusDevice:
        for i, p in enumerate(self.point):
            if p.table in REGISTER_TABLES and p.registers > self.max_registers_per_read:
                raise ValueError(
                    f"point[{i}].length: expected at most max_registers_per_read "
                    f"({self.max_registers_per_read}) registers, found {p.registers}"
                )
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max: expected at least backoff_initial ({self.backoff_initial}s), "
                f"found {self.backoff_max}s"
            )
        return self

    @property
    def bus_key(self) -> str:
        """The bus this device talks on: devices with the same key share one connection and one queue."""
        raise NotImplementedError


class ModbusTcpDevice(ModbusDevice):
    """A unit reached over Modbus TCP (directly, or behind a TCP→RTU gateway)."""

    driver: Literal["modbus-tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=defaults.DEFAULT_TCP_PORT, ge=1, le=65535)

    @property
    def bus_key(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class ModbusRtuDevice(ModbusDevice):
    """A unit on an RS-485/RS-232 serial line speaking Modbus RTU."""

    driver: Literal["modbus-rtu"]
    unit: int = Field(default=defaults.DEFAULT_UNIT, ge=1, le=defaults.MAX_RTU_UNIT)
    serial: str = Field(min_length=1)
    baudrate: int = Field(default=defaults.DEFAULT_BAUDRATE, gt=0)
    parity: Literal["N", "E", "O"] = defaults.DEFAULT_PARITY
    stopbits: Literal[1, 2] = defaults.DEFAULT_STOPBITS
    bytesize: Literal[7, 8] = defaults.DEFAULT_BYTESIZE

    @property
    def bus_key(self) -> str:
        return f"rtu://{self.serial}"

    @property
    def frame_gap(self) -> float:
        """The RTU inter-frame silence (t3.5) in seconds at this line's settings."""
        if self.baudrate > defaults.RTU_FIXED_GAP_ABOVE_BAUD:
            return defaults.RTU_FIXED_GAP
        bits_per_char = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return defaults.RTU_GAP_CHARACTERS * bits_per_char / self.baudrate
