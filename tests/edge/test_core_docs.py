"""The core docs' examples work: the configuration example validates, the pull-API consumer runs live."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from edgeproc import EdgeProcess, write_config

from edge.config import parse_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def fenced(page: str, lang: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def test_configuration_example_is_valid() -> None:
    (example,) = fenced("configuration.md", "toml")
    cfg = parse_text(example, "docs/configuration.md")
    assert cfg.edge.id == "site-a" and cfg.store.max_bytes == 1024**3 and cfg.api.max_body == 64 * 1024
    assert cfg.devices[0].point[0].deadband == 0.05
    assert cfg.store.options().dead_letter_budget == 100 * 1024**2


def test_pull_api_consumer_example_runs_against_a_daemon(tmp_path: Path) -> None:
    (example,) = fenced("pull-api.md", "python")
    script = tmp_path / "consumer.py"
    script.write_text(example)
    edge = EdgeProcess(write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\ninterval = "20ms"\n'))
    edge.start()
    try:
        env = {**os.environ, "EDGE_URL": edge.url, "EDGE_TOKEN": edge.token, "PAGES": "3"}
        run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        stored, cursor = re.match(r"stored (\d+) readings up to seq (\d+)", run.stdout).groups()  # type: ignore[union-attr]
        assert int(stored) == int(cursor) > 0
        assert {"name": "historian", "kind": "consumer", "seq": int(cursor)}.items() <= next(
            c for c in edge.get("/v1/cursors")["cursors"] if c["name"] == "historian").items()
    finally:
        edge.stop()
