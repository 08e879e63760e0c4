"""The `[[sink]] type = "mqtt"` keys, validated (pydantic only: the config loads without paho)."""

from __future__ import annotations

import re
import string
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.quantities import Duration
from sync.base import SinkConfig, check_login, check_no_credentials
from sync.defaults import (
    BACKOFF_MIN,
    INFLIGHT,
    MQTT_KEEPALIVE,
    MQTT_PORT,
    MQTT_RECONNECT_MAX,
    MQTT_STATUS_TOPIC,
    MQTT_TOPIC,
    MQTTS_PORT,
)
from sync.tls import TlsKeys

TOPIC_FIELDS = {"edge", "device"}
_WILDCARDS = re.compile(r"[+#]")


def _check_template(value: str, allowed: set[str]) -> str:
    if not value or _WILDCARDS.search(value):
        raise ValueError(f"expected a topic without + or # wildcards, found {value!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as e:
        raise ValueError(f"expected a topic template, found {value!r} ({e})") from None
    unknown = fields - allowed
    if unknown:
        raise ValueError(f"expected only {{{'}, {'.join(sorted(allowed))}}} placeholders, "
                         f"found {{{sorted(unknown)[0]}}}")
    return value


class MqttSinkConfig(SinkConfig, TlsKeys):
    """An MQTT broker: QoS 1 publishes of the contract's payload, acked by PUBACK."""

    type: Literal["mqtt"]
    url: str  # mqtt://host[:1883] or mqtts://host[:8883]
    topic: str = MQTT_TOPIC  # {edge} and {device}; with {device}, each message holds one device's readings
    qos: int = 1  # 1 only: this sink delivers at least once
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None  # default: edge-{edge}-{sink name}
    username: str | None = None
    password: str | None = None
    status_topic: str = MQTT_STATUS_TOPIC  # retained "online"/"offline" (the last will); "" to disable
    inflight: int = Field(default=INFLIGHT, ge=1, le=1000)  # messages sent and not yet durably acked
    keepalive: Duration = Field(default=MQTT_KEEPALIVE, ge=5)
    reconnect_min: Duration = Field(default=BACKOFF_MIN, gt=0)
    reconnect_max: Duration = Field(default=MQTT_RECONNECT_MAX, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"expected mqtt://host[:port] or mqtts://host[:port], found {value!r}")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError(f"expected a port 1-65535 in the url, found {value!r}") from None
        return check_no_credentials(value)

    @field_validator("qos")
    @classmethod
    def _qos(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"expected 1 (this sink delivers at least once: QoS 0 could lose readings and QoS 2 "
                             f"is not supported), found {value}")
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_template(value, TOPIC_FIELDS)

    @field_validator("status_topic")
    @classmethod
    def _status_topic(cls, value: str) -> str:
        return value and _check_template(value, {"edge"})

    @model_validator(mode="after")
    def _consistent(self) -> MqttSinkConfig:
        check_login(self.username, self.password)
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max: expected >= reconnect_min")
        self.check_secure_url(self.url, "mqtts")
        return self

    # -- derived --------------------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (MQTTS_PORT if self.tls else MQTT_PORT)

    @property
    def per_device(self) -> bool:
        return "{device}" in self.topic
