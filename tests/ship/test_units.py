"""systemd units: `systemd-analyze verify` with no output at all, and the hardening keeps devices reachable."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
UNIT_FILES = sorted(UNITS.glob("*.service"))
MAX_EXPOSURE = 3.0
VERIFY_TIMEOUT_S = 60
# The executables the units start, made to exist (in a private mount namespace) so verify can check them.
FAKE_EXECUTABLES = ["/opt/edge/venv/bin/edge", "/opt/edge/lib/edge-firstboot"]

pytestmark = [
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                       reason="needs root and unshare for a private /opt"),
]


def _in_private_opt(command: str) -> subprocess.CompletedProcess[str]:
    """Run command with a private tmpfs /opt holding stand-ins for the units' executables."""
    setup = " && ".join(f"mkdir -p {Path(p).parent} && printf '#!/bin/sh\\n' > {p} && chmod +x {p}"
                        for p in FAKE_EXECUTABLES)
    script = f"mount -t tmpfs tmpfs /opt && {setup} && {command}"
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S)


def _verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return _in_private_opt("systemd-analyze verify " + " ".join(str(p) for p in paths))


def test_units_verify_without_any_output() -> None:
    assert {p.name for p in UNIT_FILES} == {"edge.service", "edge-firstboot.service"}
    r = _verify(UNIT_FILES)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""


def test_verify_catches_a_typo_only_on_stderr(tmp_path: Path) -> None:
    """The reason the test above insists on empty stderr: an unknown key is only a warning, rc 0."""
    bad = tmp_path / "edge.service"
    bad.write_text((UNITS / "edge.service").read_text().replace("Restart=on-failure", "Restrt=on-failure"))
    r = _verify([bad])
    assert r.returncode == 0
    assert "Restrt" in r.stderr


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Service"]


def test_edge_service_contract() -> None:
    s = _service("edge.service")
    assert s["Type"] == "notify"
    assert s["Restart"] == "on-failure"
    assert s["ExecStart"] == "/opt/edge/venv/bin/edge run -c /etc/edge/edge.toml"
    assert re.fullmatch(r"\d+s", s["WatchdogSec"])
    assert s["User"] == "edge" and s["SupplementaryGroups"].split() == ["dialout", "bluetooth"]
    assert s["StateDirectory"] == "edge" and s["ConfigurationDirectory"] == "edge"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == "yes"
    assert s["ProtectSystem"] == "strict"
    # These would cut off serial adapters or BLE: a device filter, a private /dev, no AF_UNIX (D-Bus).
    for forbidden in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "PrivateUsers"):
        assert forbidden not in s
    families = s["RestrictAddressFamilies"].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


def test_exposure_score_stays_low() -> None:
    r = _in_private_opt(f"systemd-analyze security --offline=true {UNITS / 'edge.service'}")
    m = re.search(r"Overall exposure level for edge.service: ([\d.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE
