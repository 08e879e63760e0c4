"""The one module that touches pymodbus: a connection (TCP socket or serial port), one request at a time.

pymodbus' own retries, reconnect loop and "close after N silent requests" are switched off: the bus
(`drivers.modbus.bus`) owns those decisions. Failures come out as the `LinkError` family below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

# pymodbus logs every timeout at ERROR with frame dumps; the driver reports failures itself, once.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class _UndecodableAnswers(logging.Filter):
    """asyncio logs a traceback ("Fatal error: protocol.data_received() call failed") each time pymodbus cannot
    decode an answer and drops the connection: on a site with a garbling gateway, on every poll. The link
    reports it itself, in the reading's error and the bus log, so these records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ModbusException) and str(record.msg).startswith("Fatal error: protocol."))


logging.getLogger("asyncio").addFilter(_UndecodableAnswers())

_NEVER_DISCONNECT = 2**31
"""Silent requests after which pymodbus would close the connection by itself: effectively never."""

EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
GATEWAY_NO_RESPONSE = 11
LATE_ANSWER_ROUNDS = 3  # quiet windows waited at most for a serial line to fall silent after a timeout
READ_FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
BITS_PER_BYTE = 8


class LinkError(Exception):
    """A request failed; the message is what a user sees in the `error` of a bad reading."""


class NotConnected(LinkError):
    """The connection could not be opened or was lost."""


class NoResponse(LinkError):
    """The unit did not answer in time (or answered with frames that did not check out)."""


class ExceptionResponse(LinkError):
    """The unit answered with a Modbus exception code."""

    def __init__(self, code: int, what: str) -> None:
        self.code = code
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) {what}")


class ModbusLink:
    """One pymodbus async client; each call has its own timeout. Not concurrency-safe: the bus serializes."""

    def __init__(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, name: str) -> None:
        self._client = client
        self.name = name
        self._rx = b""
        self._rx_bytes = 0  # every byte received, counted (to tell when a line has fallen silent)
        # RTU frames carry no transaction id: after a timeout the unit's late answer would pass for the answer
        # to the next request of the same size. Until the line has been quiet for a while, it is suspect.
        self._serial = isinstance(client, AsyncModbusSerialClient)
        self._late_answer_possible = False
        client.set_max_no_responses(_NEVER_DISCONNECT)

    @classmethod
    def tcp(cls, host: str, port: int) -> ModbusLink:
        link = cls.__new__(cls)
        client = AsyncModbusTcpClient(
            host, port=port, retries=0, reconnect_delay=0, reconnect_delay_max=0,
            trace_packet=link._trace_packet, trace_connect=link._trace_connect,
        )
        cls.__init__(link, client, f"tcp://{host}:{port}")
        return link

    @classmethod
    def serial(cls, port: str, *, baudrate: int, parity: str, stopbits: int, bytesize: int) -> ModbusLink:
        link = cls.__new__(cls)
        client = AsyncModbusSerialClient(
            port, framer=FramerType.RTU, baudrate=baudrate, parity=parity, stopbits=stopbits,
            bytesize=bytesize, retries=0, reconnect_delay=0, reconnect_delay_max=0,
            trace_packet=link._trace_packet, trace_connect=link._trace_connect,
        )
        cls.__init__(link, client, f"rtu://{port}")
        return link

    # -- pymodbus hooks --------------------------------------------------------------------------------
    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        self._rx = b"" if sending else data
        if not sending:
            self._rx_bytes += len(data)
        return data

    def _trace_connect(self, connected: bool) -> None:
        if not connected:
            # Wake a request waiting for an answer that can no longer come, instead of letting it time out.
            future = getattr(self._client.ctx, "response_future", None)
            if future is not None and not future.done():
                future.set_exception(ConnectionException("connection lost"))

    # -- connection ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def open(self, timeout: float) -> None:
        """Open the socket/port; raises NotConnected."""
        self._client.ctx.comm_params.timeout_connect = timeout
        try:
            ok = await self._client.connect()
        except (OSError, ModbusException) as exc:
            raise NotConnected(f"cannot connect: {exc}") from exc
        if not ok:
            raise NotConnected(f"cannot connect: refused, unreachable or no answer within {timeout:g}s")

    def close(self) -> None:
        self._client.close()

    # -- requests --------------------------------------------------------------------------------------
    async def read(self, table: str, unit: int, address: int, count: int, timeout: float) -> list[Any]:
        """Registers (ints) or bits (bools) of one table."""
        c = self._client
        call = {
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
            "coil": c.read_coils,
            "discrete": c.read_discrete_inputs,
        }[table]
        what = f"reading {table} {address}..{address + count - 1} of unit {unit}"
        response = await self._execute(lambda: call(address, count=count, device_id=unit), timeout, what)
        # A late answer to an earlier request (RTU has no transaction id) must not pass for this one.
        if response.function_code != READ_FUNCTION_CODES[table]:
            raise NoResponse(f"mismatched response {what}: function code {response.function_code}")
        if table in ("coil", "discrete"):
            values: list[Any] = response.bits
            ok = count <= len(values) < count + BITS_PER_BYTE
        else:
            values = response.registers
            ok = len(values) == count
        if not ok:
            raise NoResponse(f"mismatched response {what}: {len(values)} values for {count}")
        return values[:count]

    async def write_registers(self, unit: int, address: int, values: Sequence[int], timeout: float) -> None:
        """FC 6 for one register, FC 16 for several."""
        what = f"writing holding {address}..{address + len(values) - 1} of unit {unit}"
        if len(values) == 1:
            await self._execute(
                lambda: self._client.write_register(address, values[0], device_id=unit), timeout, what
            )
        else:
            await self._execute(
                lambda: self._client.write_registers(address, list(values), device_id=unit), timeout, what
            )

    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        """FC 5."""
        what = f"writing coil {address} of unit {unit}"
        await self._execute(lambda: self._client.write_coil(address, value, device_id=unit), timeout, what)

    async def _wait_for_silence(self, window: float) -> None:
        """After a timeout on a serial line: wait until no byte arrived for `window` (pymodbus drops frames
        that come while no request waits), so a late answer is not taken for the next request's."""
        for _ in range(LATE_ANSWER_ROUNDS):
            seen = self._rx_bytes
            await asyncio.sleep(window)
            if self._rx_bytes == seen:
                self._late_answer_possible = False
                return

    async def _execute(self, request: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
        if self._late_answer_possible:
            await self._wait_for_silence(timeout)
        self._client.ctx.comm_params.timeout_connect = timeout
        self._rx = b""
        try:
            response = await request()
        except ConnectionException as exc:
            if self._rx:  # pymodbus closes the connection on an answer it cannot decode
                raise NotConnected(f"connection to {self.name} closed after an answer that cannot be decoded "
                                   f"{what} ({len(self._rx)} bytes: {self._rx[:16].hex()})") from exc
            raise NotConnected(f"connection to {self.name} lost {what}") from exc
        except ModbusIOException as exc:
            self._late_answer_possible = self._serial
            if self._rx:
                detail = str(exc)
                why = ("not this request's answer: " + detail[detail.index("request uses"):].rstrip(". ")
                       if "request uses" in detail
                       else "CRC or framing error" if self._serial
                       else "wrong unit, transaction or protocol id, or bad framing")
                raise NoResponse(
                    f"no valid response {what} within {timeout:g}s: received {len(self._rx)} bytes "
                    f"that do not form a valid answer ({why}): {self._rx[:16].hex()}"
                ) from exc
            raise NoResponse(f"no response {what} within {timeout:g}s") from exc
        except ModbusException as exc:
            raise LinkError(f"{what}: {exc}") from exc
        if response.isError():
            raise ExceptionResponse(int(getattr(response, "exception_code", 0)), what)
        return response
