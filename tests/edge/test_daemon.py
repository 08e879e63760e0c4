"""The daemon as a process: schedule without drift or pile-up, supervision, clean stop, reload keeps data."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from edgeproc import EdgeProcess, wait_until, write_config


def test_sigterm_flushes_and_exits_within_5s(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\ninterval = "10ms"\npoints = 50\n',
                       store='commit_interval = "2s"\n')
    edge = EdgeProcess(cfg).start()
    wait_until(lambda: edge.get("/v1/devices")["devices"][0]["status"]["polls"] > 20)
    polled = edge.get("/v1/devices")["devices"][0]["readings"]
    started = time.monotonic()
    assert edge.stop() == 0
    assert time.monotonic() - started < 5.0
    # Everything the pipeline had handed to the store before the stop is durable afterwards.
    from edge.store import Store

    store = Store.open(edge.data_dir)
    try:
        assert store.durable_seq >= polled
        assert [e.kind for e in store.events_sync()][-1] == "stopped"
    finally:
        store.close()


def test_slow_polls_skip_ticks_and_count_overruns(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[device]]\nname = "slow"\ndriver = "simulator"\ninterval = "100ms"\n'
                                 'poll_delay = "250ms"\n')
    edge = EdgeProcess(cfg).start()
    try:
        time.sleep(2.0)
        status = edge.get("/v1/devices")["devices"][0]["status"]
        # 250 ms polls on a 100 ms schedule: each poll misses 2 ticks; no queue of late polls builds up.
        assert 5 <= status["polls"] <= 9, status
        assert status["overruns"] >= 2 * (status["polls"] - 1), status
    finally:
        edge.stop()


def test_crashing_driver_is_restarted_and_others_continue(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[device]]\nname = "crashy"\ndriver = "simulator"\ninterval = "20ms"\n'
                                 'crash_every = 5\n\n[[device]]\nname = "steady"\ndriver = "simulator"\n'
                                 'interval = "20ms"\n')
    edge = EdgeProcess(cfg).start()
    try:
        crashes = wait_until(lambda: edge.get("/v1/events?kind=task_crashed")["events"])
        assert "device:crashy crashed: RuntimeError: simulated driver crash" in crashes[0]["message"]
        bad = wait_until(lambda: [r for r in edge.all_readings() if r["device"] == "crashy" and r["quality"] == "bad"])
        assert "driver crashed" in bad[0]["error"]
        steady = wait_until(lambda: [d["status"] for d in edge.get("/v1/devices")["devices"]
                                     if d["name"] == "steady" and d["status"]["polls"] > 20])[0]
        assert steady["state"] == "up" and steady["poll_errors"] == 0
    finally:
        edge.stop()


def test_sighup_reload_keeps_buffered_data(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\ninterval = "10ms"\n',
                       store='commit_interval = "500ms"\n')
    edge = EdgeProcess(cfg).start()
    try:
        wait_until(lambda: edge.get("/v1/stats")["store"]["last_seq"] > 50)
        cfg.write_text(cfg.read_text() + '\n[[device]]\nname = "b"\ndriver = "simulator"\ninterval = "10ms"\n')
        assert edge.proc is not None
        os.kill(edge.proc.pid, signal.SIGHUP)
        wait_until(lambda: edge.get("/v1/events?kind=reloaded")["events"])
        wait_until(lambda: any(r["device"] == "b" for r in edge.all_readings()))
        seqs = [r["seq"] for r in edge.all_readings()]
        assert seqs == list(range(1, len(seqs) + 1))
        devices = {d["name"]: d for d in edge.get("/v1/devices")["devices"]}
        assert devices["a"]["status"]["polls"] > 5 and "b" in devices
    finally:
        edge.stop()


def test_second_daemon_on_the_same_store_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\n')
    edge = EdgeProcess(cfg).start()
    try:
        other = write_config(tmp_path / "other", "", data_dir=edge.data_dir)
        import subprocess
        import sys

        run = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(other)], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2 and "in use by another process" in run.stderr
    finally:
        edge.stop()


def test_a_stuck_store_applies_backpressure_not_unbounded_memory(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\ninterval = "5ms"\npoints = 200\n',
                       store="max_pending = 2000\n")
    edge = EdgeProcess(cfg, env={"EDGE_DEBUG_STALL_AFTER": "1"}).start()
    try:
        wait_until(lambda: "blocking the store writer" in edge.log.read_text())
        wait_until(lambda: edge.get("/v1/stats")["store"]["pending"] >= 2000)  # append() waits from here on
        first = edge.get("/v1/stats")
        time.sleep(1.0)
        second = edge.get("/v1/stats")  # the API still answers while the writer is stuck
        assert first["store"]["pending"] <= 2000 + 200
        assert second["store"]["pending"] == first["store"]["pending"]
        assert second["devices"]["a"]["polls"] == first["devices"]["a"]["polls"]  # the poller waits
    finally:
        edge.kill()


def test_a_transform_that_does_not_import_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """A config error (exit 1) naming the transform file and the problem, before the store is opened."""
    import subprocess
    import sys

    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "broken.py").write_text("import nonexistent_mod\n")
    cfg = write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\n\n'
                                 '[[pipeline.transform]]\nfunction = "broken.f"\n')
    run = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1, run
    line = cfg.read_text().splitlines().index('function = "broken.f"') + 1
    assert run.stderr.splitlines() == [f"{cfg}:{line}: pipeline.transform[0].function: "
                                       f"{tmp_path / 'transforms' / 'broken.py'}: failed to import: "
                                       "ModuleNotFoundError: No module named 'nonexistent_mod'"], run.stderr
    assert not (tmp_path / "data" / "store.sqlite").exists()  # nothing was opened, so nothing is left open
    # Once the file imports, the same config runs.
    (tmp_path / "transforms" / "broken.py").write_text("def f(r):\n    return r\n")
    edge = EdgeProcess(cfg).start()
    try:
        wait_until(lambda: edge.all_readings())
    finally:
        assert edge.stop() == 0
