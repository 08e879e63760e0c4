"""Which sinks exist: `type = "…"` name → its config model and its Sink class, imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

# sink type -> ("module:ConfigClass", "module:SinkClass")
SINKS: dict[str, tuple[str, str]] = {
    "mqtt": ("sync.mqtt_config:MqttSinkConfig", "sync.mqtt:MqttSink"),
    "http": ("sync.http_config:HttpSinkConfig", "sync.http:HttpSink"),
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_models() -> list[type[Any]]:
    """Every registered sink config model (for the config's discriminated union)."""
    return [_load(cfg) for cfg, _ in SINKS.values()]


def create_sink(config: Any, **kwargs: Any) -> Any:
    """A sink instance for a validated sink config."""
    return _load(SINKS[config.type][1])(config, **kwargs)
