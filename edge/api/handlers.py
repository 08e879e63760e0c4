"""Request handlers of the pull API and the admin API; every error is JSON naming what was wrong."""

from __future__ import annotations

import asyncio
import json
import math
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from drivers.base import WriteError
from edge import __version__
from edge.files import PRIVATE_FILE_MODE, write_private
from edge.reading import Reading

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge.daemon import Daemon
    from edge.store import Store

DEFAULT_LIMIT = 500
DEAD_LETTERS_PAGE = 1000  # dead letters per GET /v1/dead-letters page, unless limit= says otherwise
DEAD_LETTERS_PAGE_MAX = 10_000
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # used with fullmatch: "$" would let a final newline in
MAX_SEQ = 2**63 - 1

routes = web.RouteTableDef()

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
SIGNER: web.AppKey[Callable[[dict[str, Any]], dict[str, Any]]] = web.AppKey("signer")
LOCAL_ADMIN: web.RequestKey[bool] = web.RequestKey("local_admin")  # the request came through the admin socket


def daemon_of(request: web.Request) -> Daemon:
    return request.app[DAEMON]


def store_of(request: web.Request) -> Store:
    store = daemon_of(request).store
    assert store is not None
    return store


def error(status: int, message: str, parameter: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if parameter:
        body["parameter"] = parameter
    return web.json_response(body, status=status)


class BadParameter(Exception):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):  # int() would also take "+1", " 1", "1_0" and non-ASCII digits
        raise BadParameter(name, f"{name}: expected an integer, found {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadParameter(name, f"{name}: expected {lo}..{hi}, found {value}")
    return value


def name_param(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not NAME_RE.fullmatch(value):
        raise BadParameter(name, f"{name}: expected a name matching [A-Za-z0-9._-]{{1,64}}, found {value[:70]!r}")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):  # bad JSON or UTF-8, unknown charset, absurd nesting
        raise BadParameter("body", "body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise BadParameter("body", "body: expected a JSON object")
    return body


def page_bytes(edge_id: str, readings: list[Reading], after: int, sign: Any = None) -> bytes:
    """The contract's page shape, encoded (runs on a reader thread for big pages)."""
    page: dict[str, Any] = {
        "edge": edge_id,
        "readings": [r.to_dict() for r in readings],
        "next": readings[-1].seq if readings else after,
    }
    if sign is not None:
        page = sign(page)
    return json.dumps(page, separators=(",", ":"), allow_nan=False, default=str).encode()


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    d = daemon_of(request)
    return web.json_response({"status": "ok", "edge": d.config.edge.id, "version": __version__})


@routes.get("/v1/readings")
async def readings(request: web.Request) -> web.Response:
    d = daemon_of(request)
    after = int_param(request, "after", 0, 0, MAX_SEQ)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, d.config.api.max_limit)
    edge_id = d.config.edge.id
    signer = request.app.get(SIGNER)

    def read(store: Store) -> bytes:
        return page_bytes(edge_id, store.read_sync(after, limit), after, signer)

    body = await store_of(request).run_read(read)
    return web.Response(body=body, content_type="application/json")


@routes.get("/v1/cursors")
async def list_cursors(request: web.Request) -> web.Response:
    store = store_of(request)
    cursors = await store.run_read(lambda s: s.cursors_sync())
    durable = store.durable_seq
    return web.json_response({"cursors": [
        {"name": n, "kind": c["kind"], "seq": c["seq"], "backlog": max(0, durable - c["seq"])}
        for n, c in sorted(cursors.items())
    ]})


@routes.put("/v1/cursors/{consumer}")
async def put_cursor(request: web.Request) -> web.Response:
    name = name_param(request, "consumer")
    body = await json_body(request)
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise BadParameter("seq", f"seq: expected an integer >= 0, found {json.dumps(seq)[:40]}")
    store = store_of(request)
    if seq > store.durable_seq:
        return error(409, f"seq: expected at most the newest seq {store.durable_seq}, found {seq}", "seq")
    if name in daemon_of(request).sinks:
        raise BadParameter("consumer", f"consumer: {name!r} is a sink's cursor; pick another consumer name")
    stored = await store.set_cursor(name, seq, "consumer")
    return web.json_response({"consumer": name, "seq": stored})


@routes.delete("/v1/cursors/{consumer}")
async def delete_cursor(request: web.Request) -> web.Response:
    name = name_param(request, "consumer")
    if name in daemon_of(request).sinks:
        raise BadParameter("consumer", f"consumer: {name!r} is a sink's cursor and cannot be removed here")
    removed = await store_of(request).drop_cursor(name)
    if not removed:
        return error(404, f"no consumer named {name!r}", "consumer")
    return web.json_response({"consumer": name, "removed": True})


@routes.get("/v1/devices")
async def devices(request: web.Request) -> web.Response:
    return web.json_response({"devices": daemon_of(request).devices_info()}, dumps=_dumps)


@routes.post("/v1/devices/{device}/points/{point}")
async def write_point(request: web.Request) -> web.Response:
    device = name_param(request, "device")
    point = name_param(request, "point")
    body = await json_body(request)
    if "value" not in body:
        raise BadParameter("value", "value: expected a value to write, found nothing")
    value = body["value"]
    if not isinstance(value, int | float | bool | str) or (isinstance(value, float) and not math.isfinite(value)):
        raise BadParameter("value", f"value: expected a number, bool or string, found {json.dumps(value)[:40]}")
    d = daemon_of(request)
    if device not in d.runners:
        return error(404, f"no device named {device!r}", "device")
    try:
        result = await d.write(device, point, value, source=_who(request))
    except WriteError as e:
        status = 404 if "has no point" in str(e) else (403 if "not writable" in str(e) else 409)
        return error(status, str(e), "point" if status != 409 else None)
    return web.json_response({"device": device, "point": point, "written": value, "read_back": result},
                             dumps=_dumps)


READ_NOW_TIMEOUT = 10.0  # a test read that takes longer is answered with 409


@routes.post("/v1/devices/{device}/read")
async def read_now(request: web.Request) -> web.Response:
    """Read a device now (nothing is stored): its configured points, or one ad-hoc point given in the body."""
    from pydantic import ValidationError

    from drivers import registry as driver_registry

    device = name_param(request, "device")
    body = await json_body(request) if await request.read() else {}
    spec = body.get("point")
    if spec is not None and not isinstance(spec, dict):
        raise BadParameter("point", "point: expected an object of point keys, e.g. {\"table\": \"holding\"}")
    runner = daemon_of(request).runners.get(device)
    if runner is None:
        return error(404, f"no device named {device!r}", "device")
    try:
        if spec is None:
            found = await asyncio.wait_for(runner.driver.poll(), READ_NOW_TIMEOUT)
        else:
            cfg = runner.driver.config
            try:
                ad_hoc = type(cfg).model_validate({**cfg.model_dump(), "point": [{"name": "test", **spec}]})
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise BadParameter("point", f"point: {where}: {first['msg']}") from None
            driver = driver_registry.create_driver(ad_hoc)
            await driver.start()
            try:
                found = await asyncio.wait_for(driver.poll(), READ_NOW_TIMEOUT)
            finally:
                await driver.stop()
    except TimeoutError:
        return error(409, f"device {device!r} did not answer within {READ_NOW_TIMEOUT:.0f}s")
    except (OSError, RuntimeError, ValueError) as e:
        return error(409, f"reading {device!r} failed: {type(e).__name__}: {e}")
    return web.json_response({"device": device, "readings": [r.to_dict() for r in found]}, dumps=_dumps)


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.Response:
    d = daemon_of(request)
    store_stats = await store_of(request).run_read(lambda s: s.stats_sync())
    return web.json_response(stats_document(d, store_stats), dumps=_dumps)


def stats_document(d: Daemon, store_stats: dict[str, Any]) -> dict[str, Any]:
    devices = d.devices_info()
    return {
        "edge": d.config.edge.id,
        "version": __version__,
        "uptime_s": round(time.monotonic() - d.started_monotonic, 3),
        "store": store_stats,
        "sinks": d.sinks_info(),
        "consumers": {n: c for n, c in store_stats["cursors"].items() if c["kind"] == "consumer"},
        "dead_letters": store_stats["dead_letters"],
        "devices": {x["name"]: x["status"] | {"readings": x["readings"]}
                    for x in devices},
        "pipeline": {"suppressed_by_deadband": d.pipeline.suppressed,
                     "transform_errors": d.pipeline.transforms.errors},
        "reloads": d.reloads,
    }


@routes.get("/v1/events")
async def events(request: web.Request) -> web.Response:
    after = int_param(request, "after", 0, 0, MAX_SEQ)
    limit = int_param(request, "limit", 100, 1, 1000)
    kind = request.query.get("kind")
    found = await store_of(request).run_read(lambda s: s.events_sync(after, limit, kind))
    return web.json_response({"events": [e.to_dict() for e in found]}, dumps=_dumps)


@routes.get("/v1/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    """A page of dead letters (no payloads), oldest first: `next` is the `after` for the following page."""
    sink = request.query.get("sink")
    after = int_param(request, "after", 0, 0, MAX_SEQ)
    limit = int_param(request, "limit", DEAD_LETTERS_PAGE, 1, DEAD_LETTERS_PAGE_MAX)
    found = await store_of(request).run_read(lambda s: s.dead_letters_sync(sink, after=after, limit=limit,
                                                                           payloads=False))
    return web.json_response({"dead_letters": [x.to_dict() for x in found],
                              "next": found[-1].id if found else after})


@routes.post("/v1/dead-letters/{id}/replay")
async def replay_dead_letter(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or int(raw) > MAX_SEQ:
        raise BadParameter("id", f"id: expected a dead letter id (integer), found {raw[:40]!r}")
    ident = int(raw)
    store = store_of(request)
    found = await store.run_read(lambda s: s.dead_letters_sync(None, ident))
    if not found:
        return error(404, f"no dead letter with id {ident}", "id")
    letter = found[0]
    sink = daemon_of(request).sinks.get(letter.sink)
    if sink is None:
        return error(409, f"sink {letter.sink!r} is not configured; cannot replay")
    try:
        await sink.replay(letter)
    except Exception as e:
        return error(502, f"replay through sink {letter.sink!r} failed: {e}")
    await store.delete_dead_letter(ident)
    await store.add_event("dead_letter_replayed", f"dead letter {ident} ({letter.count} readings) replayed "
                                                  f"through {letter.sink}", {"id": ident, "sink": letter.sink})
    return web.json_response({"id": ident, "replayed": True})


@routes.delete("/v1/dead-letters/{id}")
async def delete_dead_letter(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or int(raw) > MAX_SEQ:
        raise BadParameter("id", f"id: expected a dead letter id (integer), found {raw[:40]!r}")
    if not await store_of(request).delete_dead_letter(int(raw)):
        return error(404, f"no dead letter with id {raw}", "id")
    return web.json_response({"id": int(raw), "deleted": True})


@routes.post("/v1/reload")
async def reload(request: web.Request) -> web.Response:
    from edge.daemon import DaemonStopping, ReloadFailed

    d = daemon_of(request)
    try:
        problems = await d.reload()  # waits for a reload or PUT /v1/config in progress
    except DaemonStopping as e:
        return error(409, str(e))
    except ReloadFailed as e:
        return _reload_failed(d, e)
    if problems:
        return web.json_response({"error": "reload refused: " + "; ".join(problems), "reloaded": False,
                                  "problems": problems}, status=422)
    return web.json_response({"reloaded": True, "restart_needed": d.restart_needed})


def _reload_failed(d: Daemon, e: Exception) -> web.Response:
    """500: the config was valid but applying it failed part-way (restart_needed says what is left over)."""
    return web.json_response({"error": str(e), "reloaded": False, "restart_needed": d.restart_needed}, status=500)


@routes.get("/v1/config")
async def config(request: web.Request) -> web.Response:
    d = daemon_of(request)
    try:
        text = d.config.source.read_text(encoding="utf-8")
    except OSError as e:
        return error(409, f"config file unreadable: {e}")
    return web.json_response({"path": str(d.config.source), "text": text})


@routes.put("/v1/config")
async def put_config(request: web.Request) -> web.Response:
    """Replace the config file (validated first, previous file kept as .bak), then reload.

    Everything the reload checks is checked before the file is touched: the text, its secrets, its transforms
    (imported) and its new devices and sinks (built). A config the reload would refuse is refused with 422 and
    the file stays as it was, so that the next restart does not fail on it.
    """
    from edge.config import ConfigError, parse_text

    body = await json_body(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise BadParameter("text", "text: expected the config file's new text as a string")
    d = daemon_of(request)
    path = d.config.source
    try:
        new = await asyncio.get_running_loop().run_in_executor(None, parse_text, text, str(path), True)
    except ConfigError as e:
        problems = [str(p) for p in e.problems]
        return web.json_response({"error": "config refused: " + "; ".join(problems), "problems": problems},
                                 status=422)
    from edge.daemon import DaemonStopping, ReloadFailed, ReloadRefused

    written = False
    try:
        # One config change at a time, from the checks through the file to the reload: two PUTs (or a PUT and a
        # SIGHUP) cannot interleave, and the reload applies the file this request wrote.
        async with d.reloading():
            try:
                d.prepare(new, text)  # what the reload would refuse, refused before the file is touched
            except ReloadRefused as e:
                return web.json_response({"error": f"config refused: {e}", "problems": [str(e)]}, status=422)
            await asyncio.get_running_loop().run_in_executor(None, _replace_file, path, text)
            written = True
            problems = await d.reload_locked()
    except DaemonStopping as e:
        what = "was replaced: it applies at the next start" if written else "was not changed"
        return error(409, f"{e}; the config file {what}")
    except ReloadFailed as e:
        return _reload_failed(d, e)
    if problems:
        return web.json_response({"error": "reload refused: " + "; ".join(problems), "problems": problems},
                                 status=422)
    return web.json_response({"path": str(path), "reloaded": True, "restart_needed": d.restart_needed})


def _replace_file(path: Path, text: str) -> None:
    """Replace the file atomically and durably, keeping the previous one as FILE.bak.

    Each writer has a temporary file of its own in the same directory (no two writers share one), which is
    synced before it takes the file's place; the directory is synced after, so that a power cut cannot undo
    a replacement that was answered. The new file keeps the old one's mode and, where allowed, owner.
    """
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    mode = stat.S_IMODE(old.st_mode) if old is not None else PRIVATE_FILE_MODE  # 0600: it may hold passwords
    if old is not None:
        write_private(path.with_name(path.name + ".bak"), path.read_bytes(), owner_like=path, mode=mode)
    write_private(path, text.encode("utf-8"), owner_like=path, mode=mode)


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from edge.api.openapi import document

    return web.json_response(document())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    from edge.api.metrics import render

    d = daemon_of(request)
    store_stats = await store_of(request).run_read(lambda s: s.stats_sync())
    return web.Response(body=render(d, store_stats), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Format": "prometheus-0.0.4"})


def _who(request: web.Request) -> str:
    return "admin-socket" if request.get(LOCAL_ADMIN) else f"api {request.remote or '?'}"


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_clean(obj), default=str)


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: send null."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
