"""The shell examples of docs/admin-api.md, run in order against `edge demo` through its admin socket."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "admin-api.md"
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def shell_blocks() -> list[str]:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    return [b for b in blocks if "curl" in b]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_admin_api_examples_work(demo: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DATA": str(demo), "SOCK": str(demo / "admin.sock")}
    outputs = []
    for block in shell_blocks():
        run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, (block, run.stderr)
        assert "internal error" not in run.stdout, (block, run.stdout)
        outputs.append(run.stdout)
    everything = "\n".join(outputs)
    assert '"status": "ok"' in everything and '"devices": [' in everything
    assert '"point": "test"' in everything, "the ad-hoc test read answered"
    assert '"read_back": 45.5' in everything, "the write answered"
    assert '"problems": [' in everything and "edge.id" in everything, "the invalid config was refused"
    assert '"reloaded": true' in everything
    assert "no dead letter with id 1" in everything
    assert "edge_" in everything, "metrics"
    config = tomllib.loads((demo / "edge.toml").read_text())
    assert {d["name"]: d["interval"] for d in config["device"]}["sim-boiler"] == "2s"
    assert (demo / "edge.toml.bak").exists()
