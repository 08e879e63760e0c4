"""Dead letters are listed page by page without their payloads; the CLI and the API get all of them, and
inspecting a store that does not exist creates none."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from edgeproc import EdgeProcess, write_config

from edge.store import Store, StoreOptions

PAYLOAD = b'{"edge":"test","readings":[]}' + b" " * 60_000  # about a real message's size
BUDGET = "1GiB"  # the dead letters' budget: room for all of them (2,300 of these take ~140 MiB)


def fill_dead_letters(data: Path, n: int) -> None:
    async def add() -> None:
        store = Store.open(data, StoreOptions(dead_letter_max_bytes=1024**3))
        try:
            await asyncio.gather(*(  # queued together: a few commits, not one per dead letter
                store.add_dead_letter("cloud" if i % 2 else "erp", i * 10 + 1, i * 10 + 10, 10, "HTTP 400", PAYLOAD)
                for i in range(n)))
            await store.flush()
        finally:
            await store.aclose()

    asyncio.run(add())


def test_pages_by_id_with_and_without_payloads(tmp_path: Path) -> None:
    fill_dead_letters(tmp_path, 25)
    store = Store.open(tmp_path, StoreOptions())
    try:
        first = store.dead_letters_sync(limit=10, payloads=False)
        assert [x.id for x in first] == list(range(1, 11)) and all(x.payload == b"" for x in first)
        rest = store.dead_letters_sync(after=first[-1].id, payloads=False)
        assert [x.id for x in rest] == list(range(11, 26))
        assert [x.id for x in store.dead_letters_sync("cloud", after=10, limit=3)] == [12, 14, 16]
        [one] = store.dead_letters_sync(ident=7)
        assert one.payload == PAYLOAD  # replay needs it
    finally:
        store.close()


def test_cli_lists_every_dead_letter_of_a_running_daemon_across_pages(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", store=f'dead_letter_max_bytes = "{BUDGET}"')
    fill_dead_letters(tmp_path / "data", 2_300)  # more than two of the CLI's pages
    edge = EdgeProcess(config).start()
    try:
        page = edge.get("/v1/dead-letters?limit=2")
        assert [x["id"] for x in page["dead_letters"]] == [1, 2] and page["next"] == 2
        assert "payload" not in page["dead_letters"][0]
        assert [x["id"] for x in edge.get("/v1/dead-letters?after=2299")["dead_letters"]] == [2300]
        run = subprocess.run([sys.executable, "-m", "edge", "dead-letters", "list", "--json", "-c", str(config)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert [x["id"] for x in json.loads(run.stdout)] == list(range(1, 2_301))
        run = subprocess.run([sys.executable, "-m", "edge", "dead-letters", "list", "--json", "--sink", "erp",
                              "-c", str(config)], capture_output=True, text=True, timeout=60)
        assert [x["id"] for x in json.loads(run.stdout)] == list(range(1, 2_301, 2))
    finally:
        assert edge.stop() == 0


def test_inspecting_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", data_dir=tmp_path / "never-run")
    for args in (["store", "stats"], ["dead-letters", "list"]):
        run = subprocess.run([sys.executable, "-m", "edge", *args, "-c", str(config)], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 1 and "no store in" in run.stderr, run.stderr
    assert not (tmp_path / "never-run").exists()
