"""docs/config-reference.md is generated from the config models; it must match them."""

from __future__ import annotations

from pathlib import Path

from edge.config.reference import render

DOC = Path(__file__).resolve().parents[3] / "docs" / "config-reference.md"


def test_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "run: python -m edge.config.reference > docs/config-reference.md"


def test_reference_lists_every_driver_and_key() -> None:
    text = render()
    for heading in ('driver = "simulator"', 'driver = "modbus-tcp"', "[store]", "[api]"):
        assert heading in text
    assert "| `commit_interval` | duration | `\"100ms\"` |" in text
