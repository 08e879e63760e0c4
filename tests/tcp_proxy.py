"""A TCP proxy for link faults: `cut()` a dead network (connections stay open, bytes vanish both ways),
`reset()` a flap (every connection through it closed at once, new ones work)."""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 65536


class BlackholeProxy:
    """Forwards 127.0.0.1:<port> to an upstream port; `cut()` silently drops all traffic, `heal()` restores it.

    On heal, the connections that lived through the cut are closed (as TCP would eventually do), new ones work.
    While nothing listens on the upstream port, each connection is accepted and closed at once (a gateway at
    its connection limit); `accepted` counts the connections taken.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cut_off = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            if not self.cut_off:
                writer.write(data)
                await writer.drain()
        writer.close()

    def cut(self) -> None:
        self.cut_off = True

    def heal(self) -> None:
        self.reset()
        self.cut_off = False

    def reset(self) -> None:
        """Close every connection that goes through the proxy now, both sides (a link flap)."""
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def stop(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
