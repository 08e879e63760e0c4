"""The shared scanner: one reference-counted BleakScanner per adapter for every advertisement device and lookup.

Adapters misbehave when several discovery sessions run at once, so devices never scan on their own: they
subscribe here. The scanner starts with the first subscriber and stops when the last one leaves.

`devices` (the BLEDevice GATT links connect to) keeps only addresses whose adverts some subscriber wanted, and
forgets an address not heard for DEVICE_FORGET_AFTER: phones and laptops nearby rotate random addresses every
~15 min, and keeping every address ever heard grew it by thousands of entries a day.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from drivers.ble.errors import BleUnavailable, explain
from drivers.ble.parsers import Advert

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

log = logging.getLogger("edge.drivers.ble")

SCANNER_START_TIMEOUT: Final = 10.0  # D-Bus + BlueZ must answer a StartDiscovery within this
SCANNER_STOP_TIMEOUT: Final = 5.0
DEVICE_FORGET_AFTER: Final = 600.0  # s: an address not heard for this long leaves `devices` (a GATT link finds it
# again with a scan); longer than a sensor's advert interval, shorter than a day of rotating phone addresses
DEVICE_PRUNE_EVERY: Final = 60.0  # s: how often adverts trigger forgetting the quiet addresses

AdvertCallback = Callable[[Advert], None]


@dataclass(frozen=True)
class AdvertFilter:
    """Which adverts a subscriber wants: by address, name glob and/or service UUID (all given must hold)."""

    address: str | None = None
    name: str | None = None
    service_uuid: str | None = None

    def matches(self, advert: Advert) -> bool:
        if self.address is not None and advert.address != self.address:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(advert.name or "", self.name):
            return False
        return self.service_uuid is None or self.service_uuid in advert.service_uuids \
            or self.service_uuid in advert.service_data


def to_advert(device: BLEDevice, data: AdvertisementData) -> Advert:
    """bleak's view of one advert as our `Advert`."""
    return Advert(
        address=device.address.upper(),
        name=data.local_name or device.name,
        rssi=data.rssi,
        manufacturer_data={int(k): bytes(v) for k, v in data.manufacturer_data.items()},
        service_data={k.lower(): bytes(v) for k, v in data.service_data.items()},
        service_uuids=tuple(u.lower() for u in data.service_uuids),
    )


class Subscription:
    """A subscriber's hold on the shared scanner; `close()` lets it go (the last one stops the scan)."""

    def __init__(self, scanner: SharedScanner, token: int) -> None:
        self._scanner = scanner
        self._token = token
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._scanner._unsubscribe(self._token)


class SharedScanner:
    """One BleakScanner for one adapter, fanning adverts out to subscribers."""

    def __init__(self, adapter: str | None) -> None:
        self.adapter = adapter
        self.devices: dict[str, BLEDevice] = {}  # last BLEDevice seen per wanted address: what GATT links connect to
        self._heard: dict[str, float] = {}  # when each address in `devices` was last heard (monotonic)
        self._pruned_at = time.monotonic()
        self._subscribers: dict[int, tuple[AdvertFilter, AdvertCallback]] = {}
        self._next_token = 0
        self._scanner: Any = None
        self._lock = asyncio.Lock()
        self.last_advert = time.monotonic()  # when any advert (for anyone) last arrived

    @property
    def running(self) -> bool:
        return self._scanner is not None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, callback: AdvertCallback, where: AdvertFilter | None = None) -> Subscription:
        """Receive matching adverts until the subscription is closed. Raises BleUnavailable."""
        async with self._lock:
            self._next_token += 1
            token = self._next_token
            self._subscribers[token] = (where or AdvertFilter(), callback)
            if self._scanner is None:
                try:
                    await self._start()
                except BaseException:
                    del self._subscribers[token]
                    raise
        return Subscription(self, token)

    async def find(self, address: str, timeout: float) -> BLEDevice:
        """The BLEDevice for an address, waiting for its next advert. Raises TimeoutError, BleUnavailable."""
        found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

        def seen(advert: Advert) -> None:
            if not found.done() and advert.address in self.devices:
                found.set_result(self.devices[advert.address])

        sub = await self.subscribe(seen, AdvertFilter(address=address))
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            raise TimeoutError(f"{address} not seen by the scanner within {timeout:g}s") from None
        finally:
            await sub.close()

    async def restart_if_silent(self, silence: float) -> None:
        """Restart the scan when no advert at all came for `silence` s (BlueZ or D-Bus restarted under us).

        Raises BleUnavailable when it cannot be started again; the next call tries again.
        """
        async with self._lock:
            if not self._subscribers or time.monotonic() - self.last_advert < silence:
                return
            log.warning("ble: no adverts on %s for %.0fs: restarting the scan", self.adapter or "default", silence)
            await self._stop()
            self.last_advert = time.monotonic()
            await self._start()

    async def _unsubscribe(self, token: int) -> None:
        async with self._lock:
            self._subscribers.pop(token, None)
            if not self._subscribers:
                await self._stop()

    async def _stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            async with asyncio.timeout(SCANNER_STOP_TIMEOUT):
                await scanner.stop()
        except Exception as e:  # stopping is best effort: the bus or BlueZ may already be gone
            log.debug("ble: stopping the scanner on %s failed: %s", self.adapter or "default", e)

    async def _start(self) -> None:
        from bleak import BleakScanner

        # DuplicateData: report every advert, not only changed ones, so a sensor sending a constant payload
        # with a steady RSSI is still heard (staleness depends on it).
        bluez: dict[str, Any] = {"filters": {"DuplicateData": True}}
        if self.adapter is not None:
            bluez["adapter"] = self.adapter
        scanner = BleakScanner(detection_callback=self._on_advert, bluez=bluez)  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(SCANNER_START_TIMEOUT):
                await scanner.start()
        except TimeoutError as e:
            raise BleUnavailable(f"BlueZ did not start scanning within {SCANNER_START_TIMEOUT:g}s "
                                 f"on {self.adapter or 'the default adapter'}") from e
        except Exception as e:
            raise BleUnavailable(explain(e, self.adapter)) from e
        self._scanner = scanner
        log.info("ble: scanning on %s", self.adapter or "the default adapter")

    def _on_advert(self, device: BLEDevice, data: AdvertisementData) -> None:
        advert = to_advert(device, data)
        now = self.last_advert = time.monotonic()
        wanted = [callback for where, callback in list(self._subscribers.values()) if where.matches(advert)]
        if wanted:  # before the callbacks: find() reads it from there
            self.devices[advert.address] = device
            self._heard[advert.address] = now
        if now - self._pruned_at >= DEVICE_PRUNE_EVERY:
            self._forget_quiet(now)
        for callback in wanted:
            try:
                callback(advert)
            except Exception:  # one subscriber's bug must not stop the others
                log.exception("ble: advert subscriber failed for %s", advert.address)

    def _forget_quiet(self, now: float) -> None:
        """Drop the addresses not heard for DEVICE_FORGET_AFTER (also those a GATT link dropped already)."""
        self._pruned_at = now
        cutoff = now - DEVICE_FORGET_AFTER
        for address in [a for a, heard in self._heard.items() if heard < cutoff or a not in self.devices]:
            del self._heard[address]
            self.devices.pop(address, None)


_scanners: dict[tuple[asyncio.AbstractEventLoop, str | None], SharedScanner] = {}


def shared_scanner(adapter: str | None = None) -> SharedScanner:
    """The scanner of this adapter for the running event loop (bleak's BlueZ state is per loop, too)."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _scanners if k[0].is_closed()]:
        del _scanners[key]
    key = (loop, adapter)
    if key not in _scanners:
        _scanners[key] = SharedScanner(adapter)
    return _scanners[key]
