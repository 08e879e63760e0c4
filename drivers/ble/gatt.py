"""One GATT link: find the device through the shared scanner, connect within a slot, reconnect with backoff.

Whoever connects, uses or disconnects the link holds `GattLink.lock`, so a connection and the slot it holds are
given up together and never under an operation still connecting. A link closed for good (the device stopped)
connects no more and starts no GATT operation until reopened: one under way fails at its next step, and the
close then disconnects and gives the slot back, so nothing keeps a connection or a slot that no device owns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from drivers.ble.config import BleDevice
from drivers.ble.errors import BleUnavailable, explain
from drivers.ble.scanner import shared_scanner
from drivers.ble.slots import ConnectionSlots, connection_slots

if TYPE_CHECKING:
    from bleak import BleakClient

log = logging.getLogger("edge.drivers.ble")

RECONNECT_DELAY_MAX: Final = 60.0
DISCONNECT_TIMEOUT: Final = 5.0

NotifyCallback = Callable[[str, bytes], None]


class LinkDown(Exception):
    """The device is not connected now (and why); the caller reports bad readings and tries later."""


class Backoff:
    """Exponential delay between connection attempts, reset by a success."""

    def __init__(self, initial: float, maximum: float = RECONNECT_DELAY_MAX) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = 0.0
        self.next_attempt = 0.0

    def failed(self) -> None:
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        self.next_attempt = time.monotonic() + self.delay

    def succeeded(self) -> None:
        self.delay = 0.0
        self.next_attempt = 0.0

    def wait_left(self) -> float:
        return max(0.0, self.next_attempt - time.monotonic())


class GattLink:
    """The connection to one GATT device; holds one of its adapter's connection slots while connected."""

    def __init__(self, config: BleDevice, on_lost: Callable[[], None] | None = None) -> None:
        assert config.address is not None
        self.config = config
        self.address = config.address
        self.backoff = Backoff(config.reconnect_delay)
        self.last_error: str | None = None
        self.connects = 0
        self._on_lost = on_lost
        self._client: BleakClient | None = None
        self._slots: ConnectionSlots | None = None
        self._holds_slot = False
        self.closed: str | None = None  # why the link was closed for good (close()); None while usable
        self.lock = asyncio.Lock()  # one GATT operation at a time per device; held to connect or disconnect

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def slots(self) -> ConnectionSlots:
        if self._slots is None:
            self._slots = connection_slots(self.config.adapter, self.config.max_connections)
        return self._slots

    async def connect(self) -> None:
        """Be connected on return, or raise LinkDown saying why (and when the next attempt is). Hold `lock`."""
        self._raise_if_closed()
        if self.connected:
            return
        await self._drop()
        wait = self.backoff.wait_left()
        if wait > 0:
            raise LinkDown(f"reconnecting in {wait:.1f}s; last error: {self.last_error}")
        slots = self.slots
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await slots.acquire()
        except TimeoutError:
            raise LinkDown(f"waiting for a connection slot on {self.config.adapter or 'the default adapter'} "
                           f"({slots.in_use} of {slots.limit} in use, {slots.waiting} waiting)") from None
        self._holds_slot = True
        try:
            self._raise_if_closed()  # closed while this waited for the slot
            self._client = await self._open()
            if self.closed:  # closed while this connected: the connection goes at once
                await self._drop()
                self._raise_if_closed()
        except LinkDown:
            self._release()
            raise
        except BaseException as e:
            self._release()
            if isinstance(e, Exception):
                self.last_error = explain(e, self.config.adapter)
                self.backoff.failed()
                log.warning("ble: %s (%s): connect failed: %s", self.config.name, self.address, self.last_error)
                raise LinkDown(self.last_error) from e
            raise
        self.backoff.succeeded()
        self.connects += 1
        self.last_error = None
        log.info("ble: %s (%s) connected", self.config.name, self.address)

    async def _open(self) -> BleakClient:
        from bleak import BleakClient

        scanner = shared_scanner(self.config.adapter)
        device = scanner.devices.get(self.address)
        if device is None:
            device = await scanner.find(self.address, self.config.connect_timeout)
        client = BleakClient(device, disconnected_callback=self._lost, timeout=self.config.connect_timeout)
        try:
            await client.connect()
        except (BleUnavailable, TimeoutError):
            raise
        except Exception:
            scanner.devices.pop(self.address, None)  # BlueZ may have dropped it: look it up afresh next time
            raise
        return client

    def _lost(self, client: BleakClient) -> None:
        if client is not self._client:
            return
        log.warning("ble: %s (%s) disconnected", self.config.name, self.address)
        self._client = None
        self._release()
        self.last_error = "disconnected"
        if self._on_lost is not None:
            self._on_lost()

    def _release(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self.slots.release()

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(DISCONNECT_TIMEOUT):
                    await client.disconnect()
            except Exception as e:  # the link is being dropped anyway
                log.debug("ble: %s: disconnect failed: %s", self.config.name, e)
        self._release()

    async def disconnect(self) -> None:
        """Close the link and give the slot back. Hold `lock` (an operation under way could still be connecting)."""
        await self._drop()

    async def close(self, reason: str) -> None:
        """Close for good: refuse new operations at once (LinkDown(reason)), then, once the operation under way
        has let go of `lock`, disconnect and give the slot back."""
        self.closed = reason
        async with self.lock:
            await self._drop()

    def reopen(self) -> None:
        """Usable again after close() (the device is started again)."""
        self.closed = None

    def _raise_if_closed(self) -> None:
        if self.closed is not None:
            raise LinkDown(self.closed)

    def _client_or_raise(self) -> BleakClient:
        self._raise_if_closed()
        if self._client is None or not self._client.is_connected:
            raise LinkDown(self.last_error or "not connected")
        return self._client

    async def read(self, uuid: str) -> bytes:
        client = self._client_or_raise()
        async with asyncio.timeout(self.config.timeout):
            return bytes(await client.read_gatt_char(uuid))

    def properties(self, uuid: str) -> list[str]:
        """The characteristic's flags (read, write, write-without-response, notify, …); [] if unknown."""
        client = self._client_or_raise()
        char = client.services.get_characteristic(uuid)
        return list(char.properties) if char is not None else []

    async def write(self, uuid: str, data: bytes) -> None:
        client = self._client_or_raise()
        response = "write" in self.properties(uuid)
        async with asyncio.timeout(self.config.timeout):
            await client.write_gatt_char(uuid, data, response=response)

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        client = self._client_or_raise()

        def received(_char: Any, data: bytearray) -> None:
            callback(uuid, bytes(data))

        async with asyncio.timeout(self.config.timeout):
            await client.start_notify(uuid, received)
