"""Zeroconf (mDNS/DNS-SD): the daemon's `_edge._tcp` advertisement and a browser for edge, Modbus and OPC-UA services.

Both stay on the interfaces they are given; a daemon listening on 127.0.0.1 only ever multicasts on loopback.
python-zeroconf is imported here only, so a daemon with `advertise = false` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

if TYPE_CHECKING:
    from edge.daemon import Daemon

log = logging.getLogger("edge.discovery")

EDGE_SERVICE = "_edge._tcp.local."
MODBUS_SERVICE = "_modbus._tcp.local."
OPCUA_SERVICE = "_opcua-tcp._tcp.local."
BROWSE_SERVICES = (EDGE_SERVICE, MODBUS_SERVICE, OPCUA_SERVICE)
API_PATH = "/v1"

RESOLVE_TIMEOUT_MS = 1500  # per found service, after the browse window
UNREGISTER_TIMEOUT = 1.0  # goodbye packets on stop, at most
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})

Interfaces = list[str] | InterfaceChoice


def resolve_interfaces(names: list[str]) -> list[str]:
    """IPv4 addresses for a list of interface addresses or names ("10.0.0.2", "eth0"); ValueError if unknown."""
    import ifaddr

    out: list[str] = []
    adapters = None
    for name in names:
        try:
            ipaddress.ip_address(name)
            out.append(name)
            continue
        except ValueError:
            pass
        adapters = adapters if adapters is not None else ifaddr.get_adapters()
        found = [ip.ip for a in adapters if name in (a.name, a.nice_name) for ip in a.ips if isinstance(ip.ip, str)]
        if not found:
            raise ValueError(f"no network interface or address {name!r}")
        out.extend(found)
    return list(dict.fromkeys(out))


def interfaces_for(listen_host: str, configured: list[str]) -> Interfaces:
    """Where to announce and browse: the configured addresses (or interface names), else the API's listen address.

    A wildcard listen address means every interface; a host name is resolved to its IPv4 address.
    """
    if configured:
        return resolve_interfaces(list(configured))
    host = listen_host.strip("[]")
    if host in WILDCARD_HOSTS:
        return InterfaceChoice.All
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        return [socket.gethostbyname(host)]


def _addresses(interfaces: Interfaces) -> list[str]:
    """IPv4 addresses to put in the advertisement's A records."""
    if isinstance(interfaces, list):
        return [a for a in interfaces if ipaddress.ip_address(a).version == 4]
    from zeroconf import get_all_addresses

    return [a for a in get_all_addresses() if not a.startswith("127.")]


def _zeroconf(interfaces: Interfaces) -> AsyncZeroconf:
    return AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)


def _host_name(edge_id: str, port: int) -> str:
    """The mDNS host name behind the service: unique per machine and port, not just the id, so that two
    appliances given the same id (a cloned image) do not merge their addresses under one name."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()[:8]
    except OSError:
        machine = ""
    label = f"{edge_id[:40]}-{machine or secrets.token_hex(4)}-{port}"
    return f"{label}.local."


class Advertiser:
    """Announces one edge appliance as `<id>._edge._tcp.local.` (TXT: id, version, api; never a token).

    Args:
        edge_id: the appliance id (the instance name and TXT `id`).
        version: the software version (TXT `version`).
        port: the API's TCP port.
        interfaces: the addresses to announce on (or InterfaceChoice.All).
    """

    def __init__(self, *, edge_id: str, version: str, port: int, interfaces: Interfaces) -> None:
        self.interfaces = interfaces
        self.info = AsyncServiceInfo(
            EDGE_SERVICE, f"{edge_id}.{EDGE_SERVICE}",
            addresses=[socket.inet_aton(a) for a in _addresses(interfaces)],
            port=port,
            properties={"id": edge_id, "version": version, "api": API_PATH},
            server=_host_name(edge_id, port),
        )
        self._zc: AsyncZeroconf | None = None
        self.problem: str | None = None  # why it is not advertising, if it is not
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_daemon(cls, daemon: Daemon) -> Advertiser:
        """The daemon's advertiser; one that stays silent (and says why in the log) if the interfaces are wrong."""
        from edge import __version__

        cfg = daemon.config
        port = daemon._api.port if daemon._api else cfg.api.port
        try:
            interfaces = interfaces_for(cfg.api.host, list(cfg.discovery.interfaces))
        except (OSError, ValueError) as e:
            advertiser = cls(edge_id=cfg.edge.id, version=__version__, port=port, interfaces=[])
            advertiser.problem = f"discovery.interfaces: {e}"
            return advertiser
        return cls(edge_id=cfg.edge.id, version=__version__, port=port, interfaces=interfaces)

    async def start(self) -> None:
        """Begin announcing in the background (probing takes a second or two; start-up does not wait)."""
        if self.problem or not self.interfaces:
            log.warning("zeroconf advertisement off: %s", self.problem or "no interface to announce on")
            return
        try:
            self._zc = _zeroconf(self.interfaces)
        except OSError as e:
            log.warning("zeroconf advertisement off: cannot open mDNS sockets on %s: %s", self.interfaces, e)
            return
        self._task = asyncio.ensure_future(self._register())

    async def _register(self) -> None:
        assert self._zc is not None
        try:
            await (await self._zc.async_register_service(self.info, allow_name_change=True))
            log.info("advertising %s on %s port %d", self.info.name, self.interfaces, self.info.port)
        except Exception:
            log.exception("zeroconf advertisement of %s failed", self.info.name)

    @property
    def name(self) -> str:
        """The instance name in use (it may have changed if another appliance had the same id)."""
        return self.info.name

    async def stop(self) -> None:
        """Say goodbye (bounded by UNREGISTER_TIMEOUT) and close the sockets."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task})  # unlike awaiting it, keeps a cancellation of stop() itself
            else:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(UNREGISTER_TIMEOUT):
                        await (await zc.async_unregister_service(self.info))
        finally:
            with contextlib.suppress(Exception):
                await zc.async_close()


def _service_label(service_type: str) -> str:
    return service_type.removesuffix(".local.")


def _describe(info: AsyncServiceInfo, service_type: str) -> dict[str, Any]:
    txt = {(k.decode(errors="replace") if isinstance(k, bytes) else str(k)):
           (v.decode(errors="replace") if isinstance(v, bytes) else v)
           for k, v in (info.properties or {}).items()}
    addresses = info.parsed_addresses(IPVersion.V4Only)
    return {
        "service": _service_label(service_type),
        "name": info.name.removesuffix("." + service_type),
        "address": addresses[0] if addresses else "",
        "port": info.port,
        "txt": txt,
    }


async def browse(timeout: float, interfaces: list[str],
                 on_found: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Services of the edge, Modbus and OPC-UA kinds seen within `timeout` seconds, resolved.

    `interfaces` are addresses to browse on; empty means every interface. Each result has service, name,
    address, port and txt. `on_found` is called with each result as soon as it is resolved.
    """
    zc = _zeroconf(resolve_interfaces(list(interfaces)) if interfaces else InterfaceChoice.All)
    seen: dict[tuple[str, str], asyncio.Task[dict[str, Any] | None]] = {}

    async def resolve(service_type: str, name: str) -> dict[str, Any] | None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
            return None
        found = _describe(info, service_type)
        if on_found is not None:
            on_found(found)
        return found

    def changed(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        key = (service_type, name)
        if state_change is ServiceStateChange.Added and key not in seen:
            seen[key] = asyncio.ensure_future(resolve(service_type, name))

    browser = AsyncServiceBrowser(zc.zeroconf, list(BROWSE_SERVICES), handlers=[changed])
    try:
        await asyncio.sleep(timeout)
        results = await asyncio.gather(*seen.values(), return_exceptions=True)
    finally:
        pending = [t for t in seen.values() if not t.done()]  # cancelled mid-browse: the lookups end too
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await browser.async_cancel()
        await zc.async_close()
    out = [r for r in results if isinstance(r, dict)]
    return sorted(out, key=lambda r: (r["service"], r["name"]))
