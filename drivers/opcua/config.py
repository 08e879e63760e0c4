"""Config keys of an OPC-UA device and its points (`driver = "opcua"`); pydantic only, no asyncua import."""

from __future__ import annotations

import re
import uuid
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.base import DeviceConfig, PointConfig
from drivers.opcua.paths import DEFAULT_PKI_DIR
from edge.quantities import Duration

SECURITY_POLICIES = ("Basic256Sha256", "Aes128_Sha256_RsaOaep")
SECURITY_MODES = ("Sign", "SignAndEncrypt")

DEFAULT_KEEPALIVE_COUNT = 10
"""Publishing intervals without data after which the server sends a keep-alive."""
DEFAULT_SESSION_TIMEOUT = 60.0
"""Requested session timeout: an orphaned session (network cut) is dropped by the server after this."""
DEFAULT_WATCHDOG_INTERVAL = 1.0
"""How often the session is probed (a read of the server state) and the subscription checked."""
DEFAULT_RECONNECT_MAX = 5.0
"""Reconnect backoff starts at `RECONNECT_INITIAL` in the driver and doubles up to this."""

MAX_NAMESPACE_INDEX = 0xFFFF  # UInt16 in the binary encoding
MAX_NUMERIC_ID = 0xFFFFFFFF  # UInt32
_NODE_ID_RE = re.compile(r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$", re.DOTALL)
_BROWSE_ELEMENT_RE = re.compile(r"^(\d+:)?[^/]+$")

POLL_DRIVER = "drivers.opcua.driver:OpcuaPollDriver"
SUBSCRIBE_DRIVER = "drivers.opcua.driver:OpcuaSubscribeDriver"


class OpcuaPoint(PointConfig):
    """One variable, addressed by `node` (a node id string) or `browse_path` (from the Objects folder)."""

    node: str | None = None
    browse_path: str | None = None
    sampling_interval: Duration | None = None  # None: the server samples at the publishing interval
    queue_size: int = Field(default=1, ge=1)
    deadband_type: Literal["none", "absolute", "percent"] = "none"
    server_deadband: float = Field(default=0.0, ge=0.0)

    @field_validator("node")
    @classmethod
    def _node_id_syntax(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _NODE_ID_RE.match(v)
        if not m:
            raise ValueError(f"expected a node id like 'ns=2;s=Line1.Temp' or 'ns=3;i=1001', found {v!r}")
        # within what the binary encoding can carry: else every request with it fails, on every poll
        namespace, identifier = m.group(1) or "", m.group(2)
        if namespace.startswith("ns=") and int(namespace[3:-1]) > MAX_NAMESPACE_INDEX:
            raise ValueError(f"expected a namespace index 0..{MAX_NAMESPACE_INDEX}, found {v!r}")
        if identifier.startswith("i=") and int(identifier[2:]) > MAX_NUMERIC_ID:
            raise ValueError(f"expected a numeric identifier 0..{MAX_NUMERIC_ID}, found {v!r}")
        if identifier.startswith("g="):
            try:
                uuid.UUID(identifier[2:])
            except ValueError:
                raise ValueError(f"expected a GUID like 09087e75-8e5e-499b-954f-f2a9603db28a, found {v!r}") from None
        return v

    @field_validator("browse_path")
    @classmethod
    def _browse_path_syntax(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.strip("/").split("/")
        if not parts or not all(_BROWSE_ELEMENT_RE.match(p) for p in parts):
            raise ValueError(f"expected a browse path like '2:Line1/2:Temp' (from Objects), found {v!r}")
        return v

    @model_validator(mode="after")
    def _one_address(self) -> OpcuaPoint:
        if (self.node is None) == (self.browse_path is None):
            raise ValueError("expected exactly one of 'node' or 'browse_path'")
        if self.deadband_type == "none" and self.server_deadband > 0:
            raise ValueError("server_deadband needs deadband_type = 'absolute' or 'percent'")
        if self.deadband_type == "percent" and self.server_deadband > 100:
            raise ValueError(f"expected a percent server_deadband <= 100, found {self.server_deadband}")
        return self

    @property
    def address(self) -> str:
        """The configured address, for messages."""
        return self.node if self.node is not None else f"browse path {self.browse_path}"


class OpcuaDevice(DeviceConfig):
    """An OPC-UA server. `interval` is the poll period, or the publishing interval in subscribe mode."""

    driver: Literal["opcua"] = "opcua"
    url: str
    mode: Literal["subscribe", "poll"] = "subscribe"
    security: str = "None"
    username: str | None = None
    password: str | None = None
    user_certificate: str | None = None  # certificate user token: PEM/DER path, relative to pki_dir
    user_private_key: str | None = None
    pki_dir: str = DEFAULT_PKI_DIR  # relative: against $EDGE_DATA_DIR, else the working directory
    application_uri: str | None = None  # default: urn:<hostname>:edge
    timestamp: Literal["source", "server", "local"] = "source"
    timestamp_fallback: Literal["server", "local"] = "server"
    keepalive_count: int = Field(default=DEFAULT_KEEPALIVE_COUNT, ge=1)
    session_timeout: Duration = Field(default=DEFAULT_SESSION_TIMEOUT, gt=0)
    watchdog_interval: Duration = Field(default=DEFAULT_WATCHDOG_INTERVAL, gt=0)
    reconnect_max: Duration = Field(default=DEFAULT_RECONNECT_MAX, gt=0)
    point: list[OpcuaPoint] = Field(default_factory=list)  # type: ignore[assignment]

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"expected an opc.tcp:// URL, found {v!r}")
        host = v[len("opc.tcp://") :].partition("/")[0]
        if "@" in host:  # asyncua would log in with it, and the url is in every log line about the session
            raise ValueError(f"expected no credentials in the url, found some in 'opc.tcp://{host.rpartition('@')[2]}' "
                             "(with the user part hidden): use the username and password keys")
        return v

    @field_validator("security")
    @classmethod
    def _security_syntax(cls, v: str) -> str:
        parse_security(v)
        return v

    @model_validator(mode="after")
    def _one_user_token(self) -> OpcuaDevice:
        if (self.password is not None) and self.username is None:
            raise ValueError("password needs username")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("user_certificate and user_private_key go together")
        if self.username is not None and self.user_certificate is not None:
            raise ValueError("expected one user token: username/password or user_certificate, not both")
        return self

    @property
    def driver_class(self) -> str:
        """The Driver class for this device: a push driver in subscribe mode, a poll driver otherwise."""
        return SUBSCRIBE_DRIVER if self.mode == "subscribe" else POLL_DRIVER

    @property
    def security_policy(self) -> tuple[str, str] | None:
        """(policy, mode), or None for no security."""
        return parse_security(self.security)


def parse_security(text: str) -> tuple[str, str] | None:
    """'None' → None; 'Basic256Sha256,SignAndEncrypt' → ('Basic256Sha256', 'SignAndEncrypt'); ValueError."""
    if text.strip() == "None":
        return None
    policy, _, mode = (p.strip() for p in text.partition(","))
    if policy not in SECURITY_POLICIES or mode not in SECURITY_MODES:
        raise ValueError(
            f"expected 'None' or '<policy>,<mode>' with policy in {', '.join(SECURITY_POLICIES)} "
            f"and mode in {', '.join(SECURITY_MODES)}, found {text!r}"
        )
    return policy, mode
