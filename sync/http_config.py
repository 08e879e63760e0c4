"""The `[[sink]] type = "http"` keys, validated (pydantic only: the config loads without aiohttp)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.quantities import Duration
from sync.base import SinkConfig, check_login, check_no_credentials
from sync.defaults import BACKOFF_MIN, HTTP_RETRY_AFTER_MAX, HTTP_RETRY_MAX, HTTP_TIMEOUT, INFLIGHT
from sync.tls import TlsKeys


class HttpSinkConfig(SinkConfig, TlsKeys):
    """An HTTP(S) endpoint: one POST per batch, in order, acked by a 2xx response."""

    type: Literal["http"]
    url: str  # http:// or https://
    gzip: bool = False  # Content-Encoding: gzip
    token: str | None = None  # Authorization: Bearer <token>
    username: str | None = None  # basic auth (not together with token)
    password: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # extra request headers
    timeout: Duration = Field(default=HTTP_TIMEOUT, gt=0)
    inflight: int = Field(default=INFLIGHT, ge=1, le=1000)  # batches acked and not yet durable in the cursor
    retry_min: Duration = Field(default=BACKOFF_MIN, gt=0)
    retry_max: Duration = Field(default=HTTP_RETRY_MAX, gt=0)
    retry_after_max: Duration = Field(default=HTTP_RETRY_AFTER_MAX, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http://host/path or https://host/path, found {value!r}")
        return check_no_credentials(value)

    @model_validator(mode="after")
    def _consistent(self) -> HttpSinkConfig:
        if self.token and (self.username or self.password):
            raise ValueError("token: expected either token (bearer) or username/password (basic), found both")
        check_login(self.username, self.password)
        if self.retry_max < self.retry_min:
            raise ValueError("retry_max: expected >= retry_min")
        self.check_secure_url(self.url, "https")
        return self
