"""Discovery: probe unit ids on a Modbus TCP endpoint or serial line and list the ones that answer.

Each unit gets one read of a few holding and input registers with a short timeout; a unit that answers
with a Modbus exception still counts as present (it is there, it just lacks those registers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from drivers.modbus import defaults
from drivers.modbus.link import GATEWAY_NO_RESPONSE, ExceptionResponse, LinkError, ModbusLink, NoResponse


async def scan_tcp(host: str, port: int, units: list[int], timeout: float) -> list[dict[str, Any]]:
    """Units answering at host:port, each with what a read of its first registers returned.

    `timeout` is the wait per unit id. Raises ConnectionError when the endpoint cannot be reached.
    """
    return await _scan(ModbusLink.tcp(host, port), units, timeout, gap=0.0)


async def scan_serial(port: str, baudrate: int, units: list[int], timeout: float) -> list[dict[str, Any]]:
    """Units answering on a serial line (8N1 at `baudrate`), each with what a read of its first registers returned.

    `timeout` is the wait per unit id. Raises ConnectionError when the port cannot be opened.
    """
    link = ModbusLink.serial(
        port, baudrate=baudrate, parity=defaults.DEFAULT_PARITY,
        stopbits=defaults.DEFAULT_STOPBITS, bytesize=defaults.DEFAULT_BYTESIZE,
    )
    bits_per_char = 1 + defaults.DEFAULT_BYTESIZE + defaults.DEFAULT_STOPBITS
    gap = max(defaults.RTU_FIXED_GAP, defaults.RTU_GAP_CHARACTERS * bits_per_char / baudrate)
    return await _scan(link, units, timeout, gap=gap)


async def _scan(link: ModbusLink, units: Sequence[int], timeout: float, *, gap: float) -> list[dict[str, Any]]:
    try:
        await link.open(timeout)
    except LinkError as exc:
        raise ConnectionError(f"{link.name}: {exc}") from exc
    found: list[dict[str, Any]] = []
    try:
        for unit in units:
            entry = await _probe(link, unit, timeout, gap)
            if entry is not None:
                found.append(entry)
    finally:
        link.close()
    return found


async def _probe(link: ModbusLink, unit: int, timeout: float, gap: float) -> dict[str, Any] | None:
    """What unit `unit` answered to reads of its first holding and input registers, or None if silent."""
    entry: dict[str, Any] = {"unit": unit}
    for table in ("holding", "input"):
        if gap:
            await asyncio.sleep(gap)
        if not link.connected:
            await link.open(timeout)
        try:
            entry[table] = await link.read(table, unit, 0, defaults.DISCOVERY_REGISTERS, timeout)
        except NoResponse:
            if table == "holding":
                return None
            entry[table] = "no response"
        except ExceptionResponse as exc:
            if exc.code == GATEWAY_NO_RESPONSE and table == "holding":
                return None
            entry[table] = str(exc)
        except LinkError as exc:
            entry[table] = str(exc)
    return entry
