"""The config file's typed shape (pydantic): sections, their keys and defaults. See CONTRACT.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.base import Name
from edge.quantities import ByteSize, Duration
from edge.store.options import StoreOptions

_DEFAULT_STORE = StoreOptions()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EdgeSection(Section):
    id: Name
    data_dir: str = "/var/lib/edge"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StoreSection(Section):
    max_bytes: ByteSize = _DEFAULT_STORE.max_bytes
    max_age: Duration = _DEFAULT_STORE.max_age
    full_policy: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    commit_interval: Duration = Field(default=_DEFAULT_STORE.commit_interval, gt=0, le=10)
    max_pending: int = Field(default=_DEFAULT_STORE.max_pending, ge=1000)
    # the dead letters' own budget, apart from max_bytes; unset: 10 % of max_bytes (see docs/store.md)
    dead_letter_max_bytes: ByteSize | None = Field(default=None,
                                                   json_schema_extra={"default_doc": "10 % of `max_bytes`"})

    @field_validator("dead_letter_max_bytes")
    @classmethod
    def _dead_letter_budget(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:  # 0 would read as "no limit" (as max_age = 0 does): there is none
            raise ValueError("expected a size above 0 such as '64MiB' (dead letters always have a budget; "
                             "leave the key out for 10 % of max_bytes)")
        return v

    def options(self) -> StoreOptions:
        return StoreOptions(
            max_bytes=self.max_bytes, max_age=self.max_age, full_policy=self.full_policy,
            commit_interval=self.commit_interval, max_pending=self.max_pending,
            dead_letter_max_bytes=self.dead_letter_max_bytes,
        )


class SecretsSection(Section):
    key_file: str | None = None  # the key that decrypts `secret:NAME` values; default <data_dir>/secrets.key


class ApiSection(Section):
    listen: str = "127.0.0.1:8470"
    tokens_file: str = "tokens"
    admin_socket: str = "admin.sock"  # relative to data_dir; mode 0600; "" disables it
    max_limit: int = Field(default=10_000, ge=1)
    max_body: ByteSize = 64 * 1024
    sign: bool = False  # sign every /v1/readings page with the appliance's Ed25519 key (edge keys init)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT such as '127.0.0.1:8470', found {v!r}")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class DiscoverySection(Section):
    advertise: bool = True
    interfaces: list[str] = Field(default_factory=list)


class TransformSpec(Section):
    function: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
    match: list[str] = Field(default_factory=lambda: ["*"])  # "device/point" globs


class PipelineSection(Section):
    transforms_dir: str = "transforms"  # relative to the config file's folder
    transform: list[TransformSpec] = Field(default_factory=list)


def resolve(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)
