"""The HTTP sink: one POST per batch, in order; 2xx acks, 3xx/429/5xx/network errors retry, other 4xx dead-letter."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from sync.defaults import HTTP_ERROR_BODY_MAX
from sync.delivery import DeliverySink
from sync.http_config import HttpSinkConfig
from sync.outage import describe_error
from sync.pacing import Backoff
from sync.tls import ssl_context
from sync.window import AckWindow, OutMessage

if TYPE_CHECKING:
    from edge.store import DeadLetter, Store

log = logging.getLogger("edge.sync")

GZIP_LEVEL = 6
PAYLOAD_TOO_LARGE = 413  # split and sent again; only a single reading that is too large is dead-lettered
RETRY_STATUSES = frozenset({408, 425, 429})  # and every 5xx, and every 3xx (the url needs fixing)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit alone: "²" is a digit float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpSink(DeliverySink):
    """POSTs the contract's payload to a URL; one request at a time, so batches arrive in seq order."""

    config: HttpSinkConfig

    def __init__(self, config: HttpSinkConfig, *, edge_id: str, store: Store, data_dir: str, **kw: Any) -> None:
        super().__init__(config, edge_id=edge_id, store=store, data_dir=data_dir, **kw)
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- the HTTP client ------------------------------------------------------------------------------

    def _headers(self, first_seq: int, last_seq: int) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Idempotency-Key": f"{self.edge_id}-{first_seq}-{last_seq}",
             **self.config.headers}
        if self.config.token:
            h["Authorization"] = f"Bearer {self.config.token}"
        if self.config.gzip:
            h["Content-Encoding"] = "gzip"
        return h

    def _new_session(self) -> aiohttp.ClientSession:
        cfg = self.config
        if urlsplit(cfg.url).scheme == "https" and self._ssl is None:  # the scheme is case-insensitive
            self._ssl = ssl_context(cfg, cfg.name)
        auth = aiohttp.BasicAuth(cfg.username, cfg.password or "") if cfg.username is not None else None
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.timeout), auth=auth,
                                     connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else True))

    async def _post(self, session: aiohttp.ClientSession, payload: bytes, first_seq: int,
                    last_seq: int) -> tuple[int, str, float | None]:
        """One POST: (status, short body text, Retry-After seconds)."""
        body = gzip.compress(payload, GZIP_LEVEL) if self.config.gzip else payload
        # Redirects are not followed: on a 301/302/303 aiohttp repeats the request as a GET without the body,
        # and that GET's 2xx would ack readings that were never delivered.
        async with session.post(self.config.url, data=body, headers=self._headers(first_seq, last_seq),
                                allow_redirects=False) as resp:
            text = ""
            if 300 <= resp.status < 400:
                text = (f"redirected to {resp.headers.get('Location', '?')} (redirects are not followed: "
                        "set url to the endpoint itself)")
            elif resp.status >= 300:
                text = (await resp.text(errors="replace"))[:HTTP_ERROR_BODY_MAX]
            else:
                await resp.read()
            return resp.status, text, retry_after(resp.headers.get("Retry-After"))

    # -- delivering -----------------------------------------------------------------------------------

    async def _deliver(self, window: AckWindow) -> None:
        session = self._new_session()
        self._session = session
        try:
            while not self.stopping:
                chunk = await self.next_chunk()
                await window.wait_room(len(chunk.messages))
                for i, m in enumerate(chunk.messages):
                    await self.pacer.take(m.count, len(m.payload))
                    window.add(m, chunk.covered_after(i))
                    await self._send(session, window, m)
                window.skip_to(chunk.taken)
        finally:
            self._session = None
            await session.close()

    async def _send(self, session: aiohttp.ClientSession, window: AckWindow, m: OutMessage) -> None:
        """POST until a 2xx (ack) or a refusal (dead letter); wait with backoff or Retry-After in between."""
        cfg = self.config
        backoff = Backoff(cfg.retry_min, cfg.retry_max)
        what = f"POST {cfg.url} (seq {m.first_seq}..{m.last_seq})"
        while not self.stopping:
            m.attempts += 1
            try:
                status, text, after = await self._post(session, m.payload, m.first_seq, m.last_seq)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                self.connected = False
                self.retries += 1
                self.outage.failed(what, describe_error(e))
                await asyncio.sleep(backoff.next())
                continue
            if not self.connected and not self.outage.failures:
                log.info("sink %s: %s answers (HTTP %d)", self.name, cfg.url, status)
            self.connected = True
            if 200 <= status < 300:
                self.outage.recovered(f"POST {cfg.url}")
                self.acked(window, m)
                return
            if status in RETRY_STATUSES or status >= 500 or 300 <= status < 400:  # a redirect: fix the url
                self.retries += 1
                delay = backoff.next()  # at least this: "Retry-After: 0" (or a date already past, on a
                if after is not None:  # clock that runs ahead) must not make a tight loop against a busy server
                    delay = max(delay, min(after, cfg.retry_after_max))
                self.outage.failed(what, f"HTTP {status}{': ' + text if text else ''} (next try in {delay:.1f} s)")
                await asyncio.sleep(delay)
                continue
            self.outage.recovered(f"POST {cfg.url}")
            if status == PAYLOAD_TOO_LARGE and m.count > 1 and m.readings is not None:
                # the receiver limits its body size: send the same readings in halves (again if need be)
                parts = self.fit(m, len(m.payload) - 1)
                log.warning("sink %s: %s answered 413 to %d bytes: sending seq %d..%d in %d smaller messages "
                            "(a lower batch_max avoids this)", self.name, cfg.url, len(m.payload), m.first_seq,
                            m.last_seq, len(parts))
                window.replace(m, parts)
                for part in parts:
                    await self._send(session, window, part)
                return
            await self.dead_letter(window, m, f"HTTP {status}{': ' + text if text else ''}")
            return

    # -- replay and close -----------------------------------------------------------------------------

    async def replay(self, dead_letter: DeadLetter) -> None:
        """POST a dead letter's stored payload once more (the caller removes it from the table on success)."""
        session = self._session
        own = session is None
        if session is None:
            session = self._new_session()
        try:
            status, text, _ = await self._post(session, dead_letter.payload, dead_letter.first_seq,
                                               dead_letter.last_seq)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise RuntimeError(f"sink {self.name}: replay of dead letter {dead_letter.id} failed: "
                               f"{describe_error(e)}") from e
        finally:
            if own:
                await session.close()
        if not 200 <= status < 300:
            raise RuntimeError(f"sink {self.name}: replay of dead letter {dead_letter.id} got HTTP {status}"
                               f"{': ' + text if text else ''}")
        self.replayed(dead_letter)
