"""The `edge` command line: run, demo, check, write, discover, store and dead-letter tools.

Exit codes: 0 ok, 1 user error (bad config, bad arguments), 2 runtime failure.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import json
import sys
import urllib.parse
from typing import Any, NoReturn

import click

from edge import __version__

EXIT_USER = 1
EXIT_RUNTIME = 2

# `edge discover` defaults per kind of scan (seconds)
ZEROCONF_TIMEOUT = 3.0
MODBUS_PROBE_TIMEOUT = 0.3  # per unit id: 247 silent ids take about a minute and a quarter
OPCUA_BROWSE_TIMEOUT = 10.0
BLE_SCAN_TIMEOUT = 5.0
DEAD_LETTERS_PAGE = 1000  # dead letters asked of the daemon per request when listing or replaying all


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
    click.echo(f"edge: {message}", err=True)
    sys.exit(code)


# Commands that live beside their feature, imported only when used so that `edge run` stays lean.
LAZY_COMMANDS = {
    "keys": "edge.security_cli:keys",
    "secrets": "edge.security_cli:secrets",
    "verify": "edge.security_cli:verify",
    "opcua": "drivers.opcua.cli:opcua",
}


class LazyGroup(click.Group):
    """A click group whose LAZY_COMMANDS are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge")
def cli() -> None:
    """edge: poll field devices, store readings safely, deliver them at least once."""


config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                             default=None, help="config file (default: $EDGE_CONFIG, then /etc/edge/edge.toml)")


def _load(config_path: str | None, secrets: bool = False) -> Any:
    """The config, or exit 1 with its problems. secrets=False (tools that need no secret) falls back to
    resolving them when the file is valid only with its `secret:NAME` values put in (e.g. a secret URL)."""
    from edge.config import ConfigError, load_config

    try:
        return load_config(config_path, secrets)
    except ConfigError as e:
        error = e
    if not secrets:
        try:
            return load_config(config_path, True)
        except ConfigError as e:
            error = e  # the daemon's view: a secret that cannot be read is named as such
    for p in error.problems:
        click.echo(str(p), err=True)
    sys.exit(EXIT_USER)


@cli.command()
@config_option
def check(config_path: str | None) -> None:
    """Validate a config file as the daemon would run it (secrets resolved, transforms loaded).

    Every problem is printed as FILE:LINE: key.path: message.
    """
    from edge.config import ConfigError, default_path, load_config, transform_problem
    from edge.daemon import load_transform_set
    from edge.pipeline import TransformError

    path = config_path or default_path()
    try:
        cfg = load_config(path, secrets=True)
        load_transform_set(cfg)
    except ConfigError as e:
        for p in e.problems:
            click.echo(str(p))
        sys.exit(EXIT_USER)
    except TransformError as e:
        click.echo(str(transform_problem(cfg, e)))
        sys.exit(EXIT_USER)
    click.echo(f"{path}: ok ({len(cfg.devices)} devices, {len(cfg.sinks)} sinks)")


@cli.command()
@config_option
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def run(config_path: str | None, log_level: str | None) -> None:
    """Run the daemon on a config file until SIGTERM/SIGINT."""
    import faulthandler

    from edge import logs

    faulthandler.enable()  # a watchdog's SIGABRT (or a crash in C) prints every thread's stack to the journal
    cfg = _load(config_path, secrets=True)
    logs.setup(log_level or cfg.edge.log_level)
    sys.exit(asyncio.run(_run_daemon(cfg)))


async def _run_daemon(cfg: Any, announce: Any = None) -> int:
    from edge.daemon import Daemon
    from edge.pipeline import TransformError
    from edge.store import StoreLocked

    daemon = Daemon(cfg)
    try:
        await daemon.start()
    except TransformError as e:  # a config error, like those _load prints: FILE:LINE: key.path: message
        from edge.config import transform_problem

        click.echo(str(transform_problem(cfg, e)), err=True)
        if daemon.store is not None:
            await daemon.stop("start-up failed")
        return EXIT_USER
    except StoreLocked as e:
        click.echo(f"edge: {e}", err=True)
        return EXIT_RUNTIME
    except OSError as e:
        click.echo(f"edge: cannot start: {e}", err=True)
        await daemon.stop("start-up failed")
        return EXIT_RUNTIME
    if announce is not None:
        announce(daemon)
    await daemon.wait_stopped()
    if not daemon.stopped_cleanly:  # out of time, or the store's last commit failed: not a clean stop
        click.echo("edge: stopped, but readings not yet committed were lost (see the log)", err=True)
        return EXIT_RUNTIME
    return 0


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="where the store, config and token live (default: a new temporary folder)")
@click.option("--listen", default="127.0.0.1:8470", show_default=True, help="API address HOST:PORT (port 0 = any)")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning")
def demo(data_dir: str | None, listen: str, log_level: str) -> None:
    """The daemon on an embedded default: simulated devices, local store, pull API. Ctrl-C stops it."""
    from edge import demo as demo_mod
    from edge import logs

    logs.setup(log_level)
    try:
        sys.exit(asyncio.run(demo_mod.run_demo(data_dir, listen)))
    except KeyboardInterrupt:
        sys.exit(0)


@cli.command()
@config_option
@click.argument("device")
@click.argument("point")
@click.argument("value")
def write(config_path: str | None, device: str, point: str, value: str) -> None:
    """Write VALUE to a writable POINT of DEVICE through the running daemon (audited)."""
    parsed: Any = _parse_value(value)
    client = _admin_client(config_path)
    path = f"/v1/devices/{urllib.parse.quote(device, safe='')}/points/{urllib.parse.quote(point, safe='')}"
    result = _call(client, "POST", path, {"value": parsed})
    click.echo(f"{device}/{point} = {json.dumps(result['written'])} (read back {json.dumps(result['read_back'])})")


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "on"):
        return True
    if low in ("false", "off"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _admin_client(config_path: str | None, url: str | None = None, token: str | None = None) -> Any:
    from edge.client import AdminClient

    if url:
        return AdminClient(url=url, token=token)
    cfg = _load(config_path)
    sock = cfg.admin_socket_path
    if sock is None or not sock.exists():
        from edge.api.tokens import first_token

        host = f"[{cfg.api.host}]" if ":" in cfg.api.host else cfg.api.host  # an IPv6 address
        return AdminClient(url=f"http://{host}:{cfg.api.port}", token=first_token(cfg.tokens_path))
    return AdminClient(socket=sock)


def _call(client: Any, method: str, path: str, body: Any = None) -> Any:
    from edge.client import ApiError

    try:
        return client.request(method, path, body)
    except ApiError as e:
        fail(e.message, EXIT_USER if 400 <= e.status < 500 else EXIT_RUNTIME)
    except OSError as e:
        fail(str(e), EXIT_RUNTIME)


def _store_readonly(config_path: str | None) -> Any:
    """The store itself when no daemon holds it; None when a daemon is running (use its API)."""
    from edge.store import Store, StoreLocked
    from edge.store.store import DB_NAME

    cfg = _load(config_path)
    if not (cfg.data_dir / DB_NAME).exists():  # inspecting must not create a store (as root, one the daemon can't open)
        fail(f"no store in {cfg.data_dir} (data_dir): the daemon has not run with this config yet", EXIT_USER)
    try:
        return Store.open(cfg.data_dir, cfg.store.options())
    except StoreLocked:
        return None


@cli.group()
def store() -> None:
    """Inspect the store."""


@store.command("stats")
@config_option
def store_stats(config_path: str | None) -> None:
    """Size, seq range, counters and cursor backlogs (JSON)."""
    st = _store_readonly(config_path)
    if st is None:
        data = _call(_admin_client(config_path), "GET", "/v1/stats")["store"]
    else:
        try:
            data = st.stats_sync()
        finally:
            st.close()
    click.echo(json.dumps(data, indent=2))


@cli.group("dead-letters")
def dead_letters() -> None:
    """List and replay batches a sink could not deliver."""


@dead_letters.command("list")
@config_option
@click.option("--sink", default=None, help="only this sink's")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
def dead_letters_list(config_path: str | None, sink: str | None, as_json: bool) -> None:
    """Every dead-lettered batch: id, sink, seq range, count, error."""
    st = _store_readonly(config_path)
    if st is None:
        letters = _all_dead_letters(_admin_client(config_path), sink)
    else:
        try:
            letters = [x.to_dict() for x in st.dead_letters_sync(sink, payloads=False)]
        finally:
            st.close()
    if as_json:
        click.echo(json.dumps(letters, indent=2))
        return
    if not letters:
        click.echo("no dead letters")
    for x in letters:
        click.echo(f"{x['id']}\t{x['sink']}\tseq {x['first_seq']}..{x['last_seq']}\t{x['count']} readings\t"
                   f"{x['ts']}\t{x['error']}")


def _all_dead_letters(client: Any, sink: str | None) -> list[dict[str, Any]]:
    """Every dead letter the daemon holds, page by page."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        query = {"after": str(after), "limit": str(DEAD_LETTERS_PAGE)} | ({"sink": sink} if sink else {})
        page = _call(client, "GET", "/v1/dead-letters?" + urllib.parse.urlencode(query))
        out += page["dead_letters"]
        if len(page["dead_letters"]) < DEAD_LETTERS_PAGE:
            return out
        after = page["next"]


@dead_letters.command("replay")
@config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="replay every dead letter")
def dead_letters_replay(config_path: str | None, ids: tuple[int, ...], replay_all: bool) -> None:
    """Deliver dead letters again through their sinks (the daemon must be running)."""
    client = _admin_client(config_path)
    if replay_all:
        ids = tuple(x["id"] for x in _all_dead_letters(client, None))
    if not ids:
        fail("name dead letter ids to replay, or --all")
    for ident in ids:
        _call(client, "POST", f"/v1/dead-letters/{ident}/replay")
        click.echo(f"replayed {ident}")


@cli.command()
@click.option("--timeout", type=float, default=None,
              help="seconds to listen (zeroconf 3, BLE 5), per unit id probed (Modbus 0.3), or to browse (OPC-UA 10)")
@click.option("--interface", "interfaces", multiple=True, help="address of an interface to browse on (repeatable)")
@click.option("--modbus-tcp", "modbus_tcp", default=None, metavar="HOST[:PORT]", help="scan Modbus unit ids on a host")
@click.option("--serial", default=None, metavar="PORT", help="scan Modbus RTU unit ids on a serial port")
@click.option("--baudrate", type=int, default=9600, show_default=True)
@click.option("--units", default="1-247", show_default=True, help="unit ids to probe, e.g. 1-10,17")
@click.option("--opcua", default=None, metavar="URL", help="browse an OPC-UA server's address space")
@click.option("--ble", is_flag=True, help="scan for BLE devices")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
def discover(timeout: float | None, interfaces: tuple[str, ...], modbus_tcp: str | None, serial: str | None,
             baudrate: int, units: str, opcua: str | None, ble: bool, as_json: bool) -> None:
    """Find devices: zeroconf services by default, or the scan asked for."""
    try:
        unit_ids = _parse_units(units)
    except ValueError as e:
        fail(f"--units: {e}")
    found: list[dict[str, Any]]
    try:
        if modbus_tcp:
            mb = importlib.import_module("drivers.modbus.discover")
            host, _, port = modbus_tcp.rpartition(":") if ":" in modbus_tcp else (modbus_tcp, "", "")
            if port and not port.isdigit():
                fail(f"--modbus-tcp: expected HOST[:PORT], found {modbus_tcp!r}")
            found = asyncio.run(mb.scan_tcp(host, int(port or 502), unit_ids, timeout or MODBUS_PROBE_TIMEOUT))
        elif serial:
            mb = importlib.import_module("drivers.modbus.discover")
            found = asyncio.run(mb.scan_serial(serial, baudrate, unit_ids, timeout or MODBUS_PROBE_TIMEOUT))
        elif opcua:
            ua = importlib.import_module("drivers.opcua.discover")
            found = asyncio.run(ua.browse(opcua, timeout or OPCUA_BROWSE_TIMEOUT))
        elif ble:
            bt = importlib.import_module("drivers.ble.discover")
            found = asyncio.run(bt.scan(timeout or BLE_SCAN_TIMEOUT))
        else:
            discovery = importlib.import_module("edge.discovery")
            found = asyncio.run(discovery.browse(timeout or ZEROCONF_TIMEOUT, list(interfaces)))
    except ImportError as e:
        fail(f"this kind of discovery is not available in this build ({e.name})", EXIT_RUNTIME)
    except OSError as e:  # the network, the bus or the peer failed: a runtime failure
        if interfaces and e.errno in (errno.ENODEV, errno.EADDRNOTAVAIL):  # unless the user named a wrong address
            fail(f"--interface {', '.join(interfaces)}: not an address of this machine's interfaces ({e})")
        fail(str(e), EXIT_RUNTIME)
    except ValueError as e:  # what was asked cannot be done as given (an unknown interface, a bad port): user error
        fail(str(e), EXIT_USER)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    if not found:
        click.echo("nothing found")
    for item in found:
        click.echo("  ".join(f"{k}={v}" for k, v in item.items()))


@cli.command()
@config_option
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False), default=None,
              help="the daemon's admin socket (default: admin.sock in the config's data_dir)")
@click.option("--url", default=None, help="a daemon's API URL instead of the local admin socket")
@click.option("--token", envvar="EDGE_TOKEN", default=None, help="API token for --url (or $EDGE_TOKEN)")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="where the r key writes the site report (default: the current folder)")
def tui(config_path: str | None, socket_path: str | None, url: str | None, token: str | None,
        report_dir: str | None) -> None:
    """The technician's terminal UI, attached to the running daemon."""
    from pathlib import Path

    from edge.client import AdminClient
    from tui.main import run_tui  # Textual is imported only here

    if url and not token:
        fail("--url needs --token (or $EDGE_TOKEN)")
    client = AdminClient(socket=Path(socket_path)) if socket_path else _admin_client(config_path, url, token)
    if client.socket is not None and not Path(client.socket).exists():
        fail(f"no admin socket at {client.socket}: is the daemon running?", EXIT_RUNTIME)
    sys.exit(run_tui(client, Path(report_dir) if report_dir else None))


def _parse_units(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"expected unit ids like 1-10,17, found {text!r}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if not 0 <= a <= b <= 255:
            raise ValueError(f"expected unit ids within 0..255, found {part!r}")
        out.extend(range(a, b + 1))
    return out




def main() -> None:
    """Console-script entry: click usage errors exit 1 (user error), not click's default 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_USER)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USER)
    except KeyboardInterrupt:
        sys.exit(0)
