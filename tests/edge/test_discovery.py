"""Zeroconf on loopback: the daemon's `_edge._tcp` advertisement, `edge discover`, a plain browser elsewhere."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from edge.config import load_config
from edge.daemon import Daemon
from edge.discovery import interfaces_for

LOOPBACK = "127.0.0.1"
BROWSE_SECONDS = 2.5
EDGE_BIN = Path(sys.executable).with_name("edge")

PLAIN_BROWSER = textwrap.dedent("""
    import json, sys, time
    from zeroconf import IPVersion, ServiceBrowser, Zeroconf
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    names = []
    ServiceBrowser(zc, "_edge._tcp.local.", handlers=[lambda zeroconf, service_type, name, state_change:
                                                      names.append(name)])
    time.sleep(float(sys.argv[1]))
    found = []
    for name in set(names):
        info = zc.get_service_info("_edge._tcp.local.", name, timeout=1500)
        if info:
            found.append({"name": name, "port": info.port,
                          "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}})
    zc.close()
    print(json.dumps(found))
""")


def write_config(folder: Path, *, advertise: bool, edge_id: str = "disco-test") -> Path:
    path = folder / "edge.toml"
    path.write_text(textwrap.dedent(f"""
        [edge]
        id = "{edge_id}"
        data_dir = "{folder}"
        [api]
        listen = "127.0.0.1:0"
        [discovery]
        advertise = {str(advertise).lower()}
        [[device]]
        name = "sim"
        driver = "simulator"
    """), encoding="utf-8")
    return path


@pytest.fixture
async def advertising_daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(load_config(write_config(tmp_path, advertise=True)))
    await daemon.start()
    yield daemon
    await daemon.stop("test over")


@pytest.fixture
async def modbus_service() -> AsyncIterator[str]:
    """A `_modbus._tcp` gateway announced on loopback, the way a Modbus gateway with mDNS does it."""
    zc = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo("_modbus._tcp.local.", "gw-plc-1._modbus._tcp.local.",
                            addresses=[socket.inet_aton(LOOPBACK)], port=5020, properties={"unit": "1"},
                            server="gw-plc-1.local.")
    await (await zc.async_register_service(info))
    yield "gw-plc-1"
    await zc.async_unregister_all_services()
    await zc.async_close()


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_edge_discover_and_a_plain_browser_find_the_daemon_and_a_modbus_gateway(
        advertising_daemon: Daemon, modbus_service: str) -> None:
    port = advertising_daemon._api.port
    discover, plain = await asyncio.gather(
        run(str(EDGE_BIN), "discover", "--interface", LOOPBACK, "--timeout", str(BROWSE_SECONDS), "--json"),
        run(sys.executable, "-c", PLAIN_BROWSER, str(BROWSE_SECONDS)),
    )
    assert discover[0] == 0, discover[2]
    found = json.loads(discover[1])
    edge = [f for f in found if f["service"] == "_edge._tcp"]
    assert [(f["name"], f["address"], f["port"]) for f in edge] == [("disco-test", LOOPBACK, port)]
    assert edge[0]["txt"] == {"id": "disco-test", "version": "0.1.0", "api": "/v1"}
    modbus = [f for f in found if f["service"] == "_modbus._tcp"]
    assert [(f["name"], f["port"], f["txt"]) for f in modbus] == [(modbus_service, 5020, {"unit": "1"})]

    assert plain[0] == 0, plain[2]
    seen = json.loads(plain[1])
    assert [(s["name"], s["port"]) for s in seen] == [("disco-test._edge._tcp.local.", port)]
    token = advertising_daemon._api.token
    assert all(token not in v for v in seen[0]["txt"].values()), "the token must never be advertised"


async def test_edge_discover_prints_one_line_per_service(modbus_service: str) -> None:
    code, out, err = await run(str(EDGE_BIN), "discover", "--interface", LOOPBACK, "--timeout", "1.5")
    assert code == 0, err
    assert "service=_modbus._tcp  name=gw-plc-1  address=127.0.0.1  port=5020" in out


async def test_advertise_false_starts_no_advertiser(tmp_path: Path) -> None:
    daemon = Daemon(load_config(write_config(tmp_path, advertise=False)))
    await daemon.start()
    try:
        assert daemon._advertiser is None
    finally:
        await daemon.stop("test over")


async def test_advertise_false_never_loads_zeroconf(tmp_path: Path) -> None:
    """Idle memory: a daemon that does not advertise does not even import python-zeroconf."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from edge.config import load_config
        from edge.daemon import Daemon
        async def main():
            daemon = Daemon(load_config({str(write_config(tmp_path, advertise=False))!r}))
            await daemon.start()
            await daemon.stop()
            print("zeroconf" in sys.modules)
        asyncio.run(main())
    """)
    code, out, err = await run(sys.executable, "-c", script)
    assert code == 0, err
    assert out.strip() == "False"


def test_interfaces_follow_the_api_listen_address_unless_configured() -> None:
    assert interfaces_for("127.0.0.1", []) == ["127.0.0.1"]
    assert interfaces_for("localhost", []) == ["127.0.0.1"]
    assert interfaces_for("0.0.0.0", []) is InterfaceChoice.All
    assert interfaces_for("127.0.0.1", ["10.200.0.1"]) == ["10.200.0.1"]
    assert interfaces_for("0.0.0.0", ["lo"]) == ["127.0.0.1"], "interface names work too"


async def test_an_unknown_interface_leaves_the_daemon_running_without_advertising(tmp_path: Path) -> None:
    path = write_config(tmp_path, advertise=True)
    path.write_text(path.read_text().replace("advertise = true", 'advertise = true\ninterfaces = ["nosuch0"]'))
    daemon = Daemon(load_config(path))
    await daemon.start()
    try:
        assert daemon._advertiser.problem == "discovery.interfaces: no network interface or address 'nosuch0'"
        assert daemon._advertiser._zc is None
    finally:
        await daemon.stop("test over")


async def test_edge_discover_names_an_unknown_interface() -> None:
    code, _, err = await run(str(EDGE_BIN), "discover", "--interface", "nosuch0", "--timeout", "0.5")
    assert code == 1 and "no network interface or address 'nosuch0'" in err  # a bad argument: user error


async def test_a_cancelled_browse_leaves_no_resolution_running(modbus_service: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping a scan (the TUI quitting mid-scan) ends the lookups it started, not only the browser."""
    from edge import discovery

    resolving, ended = asyncio.Event(), asyncio.Event()

    async def slow_request(self: AsyncServiceInfo, zc: object, timeout: float) -> bool:
        resolving.set()
        try:
            await asyncio.sleep(60)  # a service that does not answer its SRV/TXT queries
        finally:
            ended.set()
        return False

    monkeypatch.setattr(discovery.AsyncServiceInfo, "async_request", slow_request)
    scan = asyncio.create_task(discovery.browse(60, [LOOPBACK]))
    await asyncio.wait_for(resolving.wait(), 10)
    scan.cancel()
    with pytest.raises(asyncio.CancelledError):
        await scan
    await asyncio.wait_for(ended.wait(), 5)


async def test_stopping_the_advertiser_keeps_a_cancellation(tmp_path: Path) -> None:
    """A daemon stop that is itself cut short (its 5 s bound) must not be swallowed by the advertiser's stop."""
    from edge import discovery

    advertiser = discovery.Advertiser(edge_id="x", version="0", port=1, interfaces=[LOOPBACK])
    advertiser._zc = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)

    async def slow_registration() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.5)  # probing takes its time to wind down

    advertiser._task = asyncio.ensure_future(slow_registration())
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(advertiser.stop())
    await asyncio.sleep(0.1)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


async def test_two_appliances_with_the_same_id_are_both_found_at_their_own_ports() -> None:
    """A cloned image: same id. The service names differ (zeroconf renames one) and, since the mDNS host
    names differ too, neither appliance's address is merged into the other's."""
    from edge.discovery import Advertiser, browse

    a = Advertiser(edge_id="twin", version="0", port=18471, interfaces=[LOOPBACK])
    b = Advertiser(edge_id="twin", version="0", port=18472, interfaces=[LOOPBACK])
    await a.start()
    assert a._task is not None
    await a._task  # a is on the network (probed, announced) before its clone starts: as when a cloned card boots
    # next to a running appliance. Started in the same instant, both probe at once and python-zeroconf can let
    # both keep the name (CI saw one answer, 1 run in ~10): a tie-break we do not control; see the closing note.
    await b.start()
    try:
        assert a.info.server != b.info.server
        found: list[tuple[str, str, int]] = []
        for _ in range(5):
            # Which of the two zeroconf renames is a race: order by port, not by name.
            found = sorted(((f["name"], f["address"], f["port"]) for f in await browse(BROWSE_SECONDS, [LOOPBACK])
                            if f["service"] == "_edge._tcp" and f["txt"].get("id") == "twin"),
                           key=lambda found_one: found_one[2])
            if len(found) == 2:
                break
        assert [(addr, port) for _, addr, port in found] == [(LOOPBACK, 18471), (LOOPBACK, 18472)], found
        assert len({name for name, _, _ in found}) == 2
    finally:
        await a.stop()
        await b.stop()
