"""An in-process Modbus simulator (pymodbus server, TCP or RTU) whose registers change, for demos and tests.

Every unit has all four tables (`SIMULATOR_REGISTERS` each). Holding registers 0..5 are live:
0-1 a float32 sine, 2-3 a uint32 counter, 4 an int16 temperature ×10, 5 a status word whose bit 0
toggles every 10 s; coil 0 mirrors that bit. Everything else holds what was last written to it.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from typing import Any

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus import defaults

SINE_PERIOD = 60.0
"""Seconds per period of the simulated sine."""
STATUS_TOGGLE = 10.0
"""Seconds between flips of the simulated status bit."""
DEMO_INTERVAL = "1s"
"""Poll interval of the demo devices."""

_HOLDING_FC = (3, 6, 16, 22, 23)
_COIL_FC = (1, 5, 15)


class SimulatorServer:
    """A running simulator: `.port` (TCP; 0 for serial) and `await stop()`."""

    def __init__(self, server: ModbusTcpServer | ModbusSerialServer, port: int) -> None:
        self._server = server
        self.port = port

    async def stop(self) -> None:
        await self._server.shutdown()


def _live_registers(unit: int, started: float) -> dict[int, int]:
    """The changing holding registers of `unit` right now."""
    t = time.monotonic() - started
    sine = 10.0 * unit * math.sin(2 * math.pi * t / SINE_PERIOD)
    hi, lo = struct.unpack(">HH", struct.pack(">f", sine))
    counter = int(t * unit) & 0xFFFFFFFF
    temperature = round((20.0 + unit + 2.0 * math.sin(2 * math.pi * t / (SINE_PERIOD * 5))) * 10)
    running = int(t // STATUS_TOGGLE) % 2 == 0
    return {
        0: hi, 1: lo,
        2: counter >> 16, 3: counter & 0xFFFF,
        4: temperature & 0xFFFF,
        5: 0x0001 if running else 0x0000,
    }


def _device(unit: int, registers: int, started: float | None) -> SimDevice:
    def blocks(kind: DataType, value: Any) -> list[SimData]:
        return [SimData(0, count=registers, values=value, datatype=kind)]

    action = None
    if started is not None:

        async def action(
            function_code: int, start_address: int, address: int, count: int,
            current: list[int], set_values: Sequence[Any] | None,
        ) -> None:
            if set_values is not None:
                return None
            live = _live_registers(unit, started)
            if function_code in _HOLDING_FC:
                for reg, value in live.items():
                    current[reg - start_address] = value
            elif function_code in _COIL_FC:
                current[0] = (current[0] & ~1) | (live[5] & 1)
            return None

    return SimDevice(
        id=unit,
        simdata=(blocks(DataType.BITS, False), blocks(DataType.BITS, False),
                 blocks(DataType.REGISTERS, 0), blocks(DataType.REGISTERS, 0)),
        use_bit_addressing=True,  # bit n of the coil table is coil n (the non-bit mode misaddresses in 3.16)
        action=action,
    )


def simulated_units(
    units: Sequence[int], *, registers: int = defaults.SIMULATOR_REGISTERS, live: bool = True
) -> list[SimDevice]:
    """pymodbus device models for `units`; `live=False` gives plain memory (for benchmarks and tests)."""
    started = time.monotonic() if live else None
    return [_device(u, registers, started) for u in units]


async def start_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    units: tuple[int, ...] = (1, 2, 3),
    *,
    registers: int = defaults.SIMULATOR_REGISTERS,
    live: bool = True,
) -> SimulatorServer:
    """Start a Modbus TCP simulator serving `units`; port 0 picks a free port (see `.port`)."""
    server = ModbusTcpServer(simulated_units(units, registers=registers, live=live), address=(host, port))
    await server.serve_forever(background=True)
    sockets = getattr(server.transport, "sockets", None)
    bound = sockets[0].getsockname()[1] if sockets else port
    return SimulatorServer(server, bound)


async def start_serial_simulator(
    serial: str,
    *,
    baudrate: int = defaults.DEFAULT_BAUDRATE,
    units: tuple[int, ...] = (1, 2, 3),
    registers: int = defaults.SIMULATOR_REGISTERS,
    live: bool = True,
) -> SimulatorServer:
    """Start a Modbus RTU simulator on a serial port (e.g. one end of a socat pty pair)."""
    server = ModbusSerialServer(
        simulated_units(units, registers=registers, live=live), port=serial, baudrate=baudrate
    )
    await server.serve_forever(background=True)
    return SimulatorServer(server, 0)


def demo_devices(port: int, host: str = "127.0.0.1", units: tuple[int, ...] = (1, 2, 3)) -> list[dict[str, Any]]:
    """`[[device]]` tables (config-file shape) polling a simulator started with `start_simulator`."""
    devices: list[dict[str, Any]] = []
    for unit in units:
        devices.append({
            "name": f"plc{unit}",
            "driver": "modbus-tcp",
            "host": host,
            "port": port,
            "unit": unit,
            "interval": DEMO_INTERVAL,
            "point": [
                {"name": "sine", "table": "holding", "address": 0, "type": "float32", "unit": "V"},
                {"name": "counter", "table": "holding", "address": 2, "type": "uint32"},
                {"name": "temperature", "table": "holding", "address": 4, "type": "int16",
                 "scale": 0.1, "unit": "degC"},
                {"name": "running", "table": "holding", "address": 5, "type": "bool", "bit": 0},
                {"name": "setpoint", "table": "holding", "address": 10, "type": "uint16", "writable": True},
                {"name": "enable", "table": "coil", "address": 1, "writable": True},
            ],
        })
    return devices
