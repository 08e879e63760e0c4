"""docs/ble.md: every TOML example is a valid config, and the field lists match the parsers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers.ble.config import BleDevice
from drivers.ble.parsers import bthome, ruuvi
from drivers.registry import create_driver
from edge.config.loader import parse_text

DOC = Path(__file__).resolve().parents[3] / "docs" / "ble.md"
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[f"example{i}" for i in range(len(TOML_BLOCKS))])
def test_doc_example_is_a_valid_config(block: str) -> None:
    config = parse_text('[edge]\nid = "docs"\n' + block, "<string>")
    (device,) = config.devices
    assert isinstance(device, BleDevice)
    assert create_driver(device).name == device.name


def test_doc_lists_every_bthome_and_ruuvi_field() -> None:
    text = DOC.read_text()
    for name in bthome.FIELD_NAMES | ruuvi.FIELD_NAMES:
        assert re.search(rf"\b{name}\b", text), name
