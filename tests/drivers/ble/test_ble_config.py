"""BLE config: keys by mode and format, normalisation, the driver class per mode, and `edge check` messages."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from edge.config.loader import ConfigError, parse_text

from .helpers import ble_device


def test_defaults_and_normalisation() -> None:
    dev = ble_device(address="cb-b8-33-4c-88-4f", format="ruuvi")
    assert dev.address == "CB:B8:33:4C:88:4F"
    assert dev.mode == "advertisement" and dev.stale_after == 300.0 and dev.max_connections == 3
    assert dev.driver_class == "drivers.ble.driver:BleAdvertisementDriver"
    gatt = ble_device(mode="gatt", address="AA:BB:CC:DD:EE:01", point=[{"name": "t", "uuid": "2A6E", "type": "int16"}])
    assert gatt.point[0].uuid == "00002a6e-0000-1000-8000-00805f9b34fb"
    assert gatt.driver_class == "drivers.ble.driver:BleGattPollDriver"
    notify = ble_device(mode="gatt", address="AA:BB:CC:DD:EE:01",
                        point=[{"name": "t", "uuid": "2a6e", "type": "int16", "notify": True}])
    assert notify.driver_class == "drivers.ble.driver:BleGattNotifyDriver"


@pytest.mark.parametrize(("keys", "message"), [
    ({"address": "AA:BB"}, "expected a Bluetooth address"),
    ({"address": "AA:BB:CC:DD:EE:FF"}, "format: expected bthome | ruuvi | raw"),
    ({"format": "ruuvi"}, "expected an address (or match_name"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "ruuvi", "point": [{"name": "temprature"}]},
     "expected a ruuvi field"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "ruuvi", "bindkey": "00" * 16}, "only for format = 'bthome'"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "bthome", "bindkey": "xyz"}, "should match pattern"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "raw", "point": [{"name": "v", "type": "uint8"}]},
     "expected source"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "raw",
      "point": [{"name": "v", "type": "uint8", "source": "service_data", "company_id": 1}]}, "company_id: only"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "bthome", "point": [{"name": "t", "field": "temperature",
                                                                      "writable": True}]}, "cannot be written"),
    ({"mode": "gatt", "point": [{"name": "t", "uuid": "2a6e", "type": "int16"}]}, "address: expected"),
    ({"mode": "gatt", "address": "AA:BB:CC:DD:EE:FF", "point": [{"name": "t", "uuid": "2a6e"}]},
     "expected uuid and type"),
    ({"mode": "gatt", "address": "AA:BB:CC:DD:EE:FF", "point": [{"name": "t", "uuid": "xyz", "type": "int8"}]},
     "expected a UUID"),
    ({"mode": "gatt", "address": "AA:BB:CC:DD:EE:FF", "adapter": "bt0"}, "should match pattern"),
    ({"address": "AA:BB:CC:DD:EE:FF", "format": "ruuvi", "colour": "red"}, "Extra inputs"),
])
def test_invalid_configs_say_what_is_wrong(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ble_device(**keys)


def test_repeated_bthome_fields_and_rssi_are_accepted() -> None:
    dev = ble_device(address="AA:BB:CC:DD:EE:FF", format="bthome",
                     point=[{"name": "t2", "field": "temperature_2"}, {"name": "rssi"}])
    assert [p.source_field for p in dev.point] == ["temperature_2", "rssi"]


def test_edge_check_reports_ble_problems_with_lines() -> None:
    text = '[edge]\nid = "a"\n[[device]]\nname = "s"\ndriver = "ble"\nmode = "gatt"\naddress = "nope"\n'
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "edge.toml")
    assert "expected a Bluetooth address like 'AA:BB:CC:DD:EE:FF', found 'nope'" in str(caught.value)
