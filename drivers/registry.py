"""Which drivers exist: `driver = "…"` name → its config model and its Driver class, imported lazily.

Config models are light (pydantic only); driver classes may import heavy protocol libraries, so they are
loaded only when a device of that kind is configured. A new protocol adds one line here and nothing in `edge/`.
"""

from __future__ import annotations

import importlib
from typing import Any

from drivers.base import DeviceConfig, Driver

# driver name -> ("module:ConfigClass", "module:DriverClass")
DRIVERS: dict[str, tuple[str, str]] = {
    "simulator": ("drivers.simulator.config:SimulatorDevice", "drivers.simulator.driver:SimulatorDriver"),
    "modbus-tcp": ("drivers.modbus.config:ModbusTcpDevice", "drivers.modbus.driver:ModbusDriver"),
    "modbus-rtu": ("drivers.modbus.config:ModbusRtuDevice", "drivers.modbus.driver:ModbusDriver"),
    # the DriverClass is the default; OpcuaDevice.driver_class picks poll or subscribe by mode
    "opcua": ("drivers.opcua.config:OpcuaDevice", "drivers.opcua.driver:OpcuaSubscribeDriver"),
    # BleDevice.driver_class picks advertisement (push), GATT notify (push) or GATT poll by mode
    "ble": ("drivers.ble.config:BleDevice", "drivers.ble.driver:BleAdvertisementDriver"),
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_models() -> list[type[DeviceConfig]]:
    """Every registered device config model (for the config's discriminated union)."""
    return [_load(cfg) for cfg, _ in DRIVERS.values()]


def create_driver(config: DeviceConfig) -> Driver:
    """A driver instance for a validated device config.

    A config model may name its Driver class itself (a `driver_class` attribute, "module:Class"), for
    drivers whose class depends on the config, e.g. a push and a poll class behind one driver name.
    """
    cls: type[Driver] = _load(getattr(config, "driver_class", None) or DRIVERS[config.driver][1])
    return cls(config)
