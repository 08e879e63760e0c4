"""A small client for the admin API: over the local Unix socket, or a URL with a token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

TIMEOUT = 30.0


class ApiError(Exception):
    """The daemon answered with an error (status and its JSON message)."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body  # the whole JSON answer, e.g. {"error": ..., "problems": [...]} from PUT /v1/config


class AdminClient:
    """`request(method, path, body)` against a running daemon; raises ApiError or OSError."""

    def __init__(self, url: str | None = None, token: str | None = None, socket: Path | None = None) -> None:
        self.url = (url or "http://localhost").rstrip("/")
        self.token = token
        self.socket = socket

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        connector = aiohttp.UnixConnector(path=str(self.socket)) if self.socket else None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(TIMEOUT)) as s:
            async with s.request(method, self.url + path, json=body, headers=headers) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else None
                except json.JSONDecodeError:
                    data = text
                if resp.status >= 400:
                    msg = data.get("error", text) if isinstance(data, dict) else text
                    raise ApiError(resp.status, str(msg), data)
                return data

    def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return asyncio.run(self.arequest(method, path, body))
        except aiohttp.ClientConnectionError as e:
            raise OSError(f"cannot reach the daemon at {self.socket or self.url}: {e}") from e
