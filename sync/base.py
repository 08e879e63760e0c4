"""The sink interface: a sink reads durable readings after its own cursor, delivers them, and acks."""

from __future__ import annotations

import abc
import fnmatch
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from drivers.base import Name
from edge.quantities import ByteSize, Duration

if TYPE_CHECKING:
    from edge.reading import Reading
    from edge.store import DeadLetter, Store


def check_no_credentials(url: str) -> str:
    """The url, refused when it carries user:password (logged and shown with every connection error)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        safe = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise ValueError(f"expected no credentials in the url, found some in {safe!r} (with the user part "
                         "hidden): use the username and password keys")
    return url


def check_login(username: str | None, password: str | None) -> None:
    """A password needs its username."""
    if password is not None and username is None:
        raise ValueError("password: expected together with username, found password alone")


class SinkConfig(BaseModel):
    """Keys every sink has. Sink types subclass it with `type: Literal[...]` and their own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    type: str
    enabled: bool = True
    batch_max: int = Field(default=500, ge=1, le=10_000)
    # device/point globs, e.g. ["plc1/*", "*/temperature"]; empty = everything
    filter: list[str] = Field(default_factory=list)
    max_rate: float | None = Field(default=None, gt=0)  # readings/s
    max_bytes_per_s: ByteSize | None = None
    max_age: Duration | None = None  # readings older than this are not sent (counted as expired)
    sign: bool = False  # add an Ed25519 "sig" to every payload (`edge keys init` first; docs/security.md)

    def matches(self, reading: Reading) -> bool:
        if not self.filter:
            return True
        key = f"{reading.device}/{reading.point}"
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.filter)


class Sink(abc.ABC):
    """One delivery destination with its own durable cursor (named after the sink) in the store.

    The daemon constructs it with `create_sink(config, edge_id=..., store=..., data_dir=...)`, runs
    `run()` as a supervised task (restarted with backoff if it raises), reads `stats()` for /v1/stats,
    /metrics and the TUI, and calls `close()` on shutdown or reload.
    """

    def __init__(self, config: SinkConfig, *, edge_id: str, store: Store, data_dir: str, **_: Any) -> None:
        self.config = config
        self.edge_id = edge_id
        self.store = store
        self.data_dir = data_dir

    @property
    def name(self) -> str:
        return self.config.name

    @abc.abstractmethod
    async def run(self) -> None:
        """Deliver from the cursor onward until cancelled."""

    async def replay(self, dead_letter: DeadLetter) -> None:
        """Deliver one dead-lettered batch again (its stored payload); raise with a clear message on failure."""
        raise NotImplementedError(f"sink type {self.config.type!r} cannot replay dead letters")

    def stats(self) -> dict[str, Any]:
        """connected, backlog, oldest unsent age, last ack time, rate, retries, dead letters…"""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop delivering and release connections."""
