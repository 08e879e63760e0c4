"""API tokens: a 0600 file of tokens, created with one random token on first run; constant-time checks."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("edge.api")

TOKEN_BYTES = 32


def load_or_create(path: Path) -> tuple[list[str], str | None]:
    """The tokens in the file, and the new token when the file was just created (to print once)."""
    created: str | None = None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        created = secrets.token_urlsafe(TOKEN_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# edge API tokens, one per line; clients send 'Authorization: Bearer <token>'\n")
            f.write(created + "\n")
            f.flush()
            os.fsync(f.fileno())  # a power cut right after first start must not leave an empty file
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        log.warning("created API token file %s; the token is printed once: %s", path, created)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("token file %s had mode %o; tightening to 0600", path, mode)
        os.chmod(path, 0o600)
    tokens = [line.strip() for line in path.read_text().splitlines()
              if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        log.error("token file %s holds no token: every authenticated request will be refused", path)
    return tokens, created


def first_token(path: Path) -> str | None:
    """The first full-scope token in the file (what `edge demo` prints and local tools use)."""
    try:
        for line in path.read_text().splitlines():
            line = line.strip()
            parsed = scoped(line) if line and not line.startswith("#") else None
            if parsed is not None and parsed[0].scope == FULL:
                return line
    except OSError:
        return None
    return None


FULL = "full"
PULL = "pull"  # a line `pull TOKEN`: reading, cursors, status; no config, reload, writes or dead-letter changes
CONSUMER_KEY = "consumer="  # `pull TOKEN consumer=NAME`: and of the cursors, only NAME's


@dataclass(frozen=True)
class Grant:
    """What a token may do: its scope and, for a pull token bound to one consumer, that consumer."""

    scope: str
    consumer: str | None = None

    def may_move(self, consumer: str) -> bool:
        """Whether this token may set or remove the cursor of `consumer`."""
        return self.consumer is None or self.consumer == consumer


def scoped(line: str) -> tuple[Grant, str] | None:
    """(grant, token) of one line of the tokens file; None for a `pull` line it cannot read."""
    head, _, rest = line.partition(" ")
    if head != PULL or not rest.strip():
        return Grant(FULL), line
    token, *options = rest.split()
    if not options:
        return Grant(PULL), token
    if len(options) == 1 and options[0].startswith(CONSUMER_KEY) and options[0] != CONSUMER_KEY:
        return Grant(PULL, options[0][len(CONSUMER_KEY):]), token
    return None


class TokenCheck:
    """Compares a presented bearer token with every known one in constant time; tells what it may do."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens: list[tuple[Grant, bytes]] = []
        for number, line in enumerate(tokens, 1):
            parsed = scoped(line)
            if parsed is None:  # never log the line itself: it holds a token
                log.error("tokens file: token %d is ignored: expected 'pull TOKEN' or 'pull TOKEN consumer=NAME'",
                          number)
                continue
            self._tokens.append((parsed[0], parsed[1].encode()))

    def grant(self, header: str | None) -> Grant | None:
        """The grant of a known token, None otherwise (every token is compared, whatever matches)."""
        scheme, _, credentials = (header or "").partition(" ")
        if scheme.lower() != "bearer":  # the scheme name is case-insensitive (RFC 9110 11.1)
            return None
        try:
            presented = credentials.strip().encode()
        except UnicodeEncodeError:  # the header's bytes were not UTF-8: no token looks like that
            return None
        found: Grant | None = None
        for grant, t in self._tokens:
            if hmac.compare_digest(presented, t):
                found = found or grant
        return found

    def scope(self, header: str | None) -> str | None:
        """FULL or PULL for a known token, None otherwise."""
        grant = self.grant(header)
        return grant.scope if grant else None
