"""The API server: one aiohttp app on the TCP listen address (token required) and the admin Unix socket."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api import tokens
from edge.api.handlers import DAEMON, LOCAL_ADMIN, SIGNER, BadParameter, error, routes

if TYPE_CHECKING:
    from edge.daemon import Daemon

log = logging.getLogger("edge.api")

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})
# What a `pull` token may not do: change or reveal configuration, control devices, drop data.
FULL_SCOPE_ROUTES = frozenset({
    ("GET", "/v1/config"), ("PUT", "/v1/config"), ("POST", "/v1/reload"),
    ("POST", "/v1/devices/{device}/points/{point}"), ("POST", "/v1/devices/{device}/read"),
    ("POST", "/v1/dead-letters/{id}/replay"), ("DELETE", "/v1/dead-letters/{id}"),
})
# What a pull token bound to one consumer (`pull TOKEN consumer=NAME`) may do only to that consumer's cursor.
CURSOR_ROUTES = frozenset({("PUT", "/v1/cursors/{consumer}"), ("DELETE", "/v1/cursors/{consumer}")})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_admin_socket(request: web.Request) -> bool:
    """Requests that came through the Unix admin socket (mode 0600: only root and the owner can connect)."""
    transport = request.transport
    if transport is None:
        return False
    sockname = transport.get_extra_info("sockname")
    return isinstance(sockname, str | bytes)


def build_app(daemon: Daemon, check: tokens.TokenCheck) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_admin_socket(request):
            request[LOCAL_ADMIN] = True
        elif request.path not in PUBLIC_PATHS:
            grant = check.grant(request.headers.get("Authorization"))
            if grant is None:
                resp = error(401, "missing or invalid token: send 'Authorization: Bearer <token>'")
                resp.headers["WWW-Authenticate"] = "Bearer"
                return resp
            route = request.match_info.route.resource
            where = (request.method, route.canonical) if route is not None else None
            if grant.scope == tokens.PULL and where in FULL_SCOPE_ROUTES:
                return error(403, "this token has the pull scope: it may read, not configure or control")
            if where in CURSOR_ROUTES and not grant.may_move(request.match_info.get("consumer", "")):
                return error(403, f"this token may move only the cursor of consumer {grant.consumer!r}", "consumer")
        try:
            return await handler(request)
        except BadParameter as e:
            return error(400, str(e), e.parameter)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body: expected at most {daemon.config.api.max_body} bytes")
        except web.HTTPException as e:
            if e.status >= 400:
                resp = error(e.status, e.reason)
                for header in ("Allow", "Retry-After"):
                    if header in e.headers:
                        resp.headers[header] = e.headers[header]
                return resp
            raise
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return error(500, "internal error (logged on the appliance)")

    app = web.Application(middlewares=[guard], client_max_size=daemon.config.api.max_body)
    app[DAEMON] = daemon
    app.add_routes(routes)
    return app


class ApiServer:
    """Starts and stops the TCP site and the admin socket site."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.token: str | None = None

    @property
    def url(self) -> str:
        host = self.daemon.config.api.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        cfg = self.daemon.config
        known, created = tokens.load_or_create(cfg.tokens_path)
        self.token = created or (known[0] if known else None)
        app = build_app(self.daemon, tokens.TokenCheck(known))
        if cfg.api.sign:
            app[SIGNER] = self._signer()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.api.host, cfg.api.port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else cfg.api.port
        sock_path = cfg.admin_socket_path
        if sock_path is not None:
            if sock_path.exists() or sock_path.is_symlink():
                sock_path.unlink()
            old_umask = os.umask(0o177)
            try:
                await web.UnixSite(self.runner, str(sock_path)).start()
            finally:
                os.umask(old_umask)
            os.chmod(sock_path, 0o600)
        log.info("API listening on %s (admin socket %s)", self.url, sock_path)

    def _signer(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """sign_payload bound to the appliance's key; a missing key stops start-up with a clear error."""
        from edge.identity import payload_signer

        return payload_signer(self.daemon.data_dir, "api.sign")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        sock_path = self.daemon.config.admin_socket_path
        if sock_path is not None and sock_path.exists():
            try:
                sock_path.unlink()
            except OSError:
                pass
