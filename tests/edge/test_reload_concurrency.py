"""Reloads against each other and against a stop: one reload at a time (SIGHUP, POST /v1/reload and PUT
/v1/config alike), a reload that sees the daemon stop starts nothing, a stop waits for the reload in progress,
settings that apply at a restart wait for them, and a disabled device takes no writes.

Real daemons in-process (store in tmp_path, simulator devices); a slow driver stop is injected by patching the
simulator driver's stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from edgeproc import write_config

import edge.daemon as daemon_module
from drivers.base import Driver, WriteError
from drivers.simulator.driver import SimulatorDriver
from edge.config import load_config
from edge.daemon import Daemon, DaemonStopping, ReloadFailed
from edge.store import Store

SLOW_STOP = 0.3  # s a patched driver stop takes: time enough for another reload to run meanwhile, were it let


def device(name: str = "a", scale: float = 1.0, extra: str = "") -> str:
    return (f'\n[[device]]\nname = "{name}"\ndriver = "simulator"\ninterval = "20ms"\n{extra}'
            f'[[device.point]]\nname = "c"\nsignal = "constant"\ncenter = 10.0\nscale = {scale}\n')


def http_sink(name: str, path: str = "x", extra: str = "") -> str:
    return f'\n[[sink]]\nname = "{name}"\ntype = "http"\nurl = "http://127.0.0.1:9/{path}"\n{extra}'  # nobody on 9


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(0.01)
    return value


class StopProbe:
    """The simulator driver's stop, watched: it notes each stop as it begins, then takes `delay` or waits
    for `gate`, then stops the driver."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.delay = 0.0
        self.gate: asyncio.Event | None = None
        self.on_enter: Callable[[Driver], None] | None = None


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> StopProbe:
    probe = StopProbe()
    original = SimulatorDriver.stop

    async def stop(driver: SimulatorDriver) -> None:
        probe.entered.append(driver.name)
        if probe.on_enter is not None:
            probe.on_enter(driver)
        if probe.delay:
            await asyncio.sleep(probe.delay)
        if probe.gate is not None:
            await asyncio.wait_for(probe.gate.wait(), 30)
        await original(driver)

    monkeypatch.setattr(SimulatorDriver, "stop", stop)
    return probe


@contextlib.asynccontextmanager
async def running(cfg: Path) -> AsyncIterator[Daemon]:
    d = Daemon(load_config(cfg, True))
    await d.start()
    try:
        yield d
    finally:
        await d.stop("test over")


@contextlib.asynccontextmanager
async def admin(d: Daemon) -> AsyncIterator[aiohttp.ClientSession]:
    """A client on the daemon's admin socket (no token)."""
    sock = d.config.admin_socket_path
    assert sock is not None
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, "http://edge" + path, json=body) as resp:
        return resp.status, await resp.json()


def last_value(d: Daemon) -> Any:
    assert d.store is not None
    found = d.store.read_sync(max(0, d.store.durable_seq - 1), 1)
    return found[0].value if found else None


def running_scale(d: Daemon) -> set[float]:
    """Device a's point scale as the config, the driver and the pipeline each have it."""
    return {d.config.devices[0].point[0].scale, d.runners["a"].driver.config.point[0].scale,
            d.pipeline.specs["a"]["c"].scale}


def supervised_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(("device:", "sink:")))


# -- one reload at a time -------------------------------------------------------------------------------------


async def test_a_second_reload_waits_for_the_first_and_applies_the_newer_file(tmp_path: Path,
                                                                             stops: StopProbe) -> None:
    cfg = write_config(tmp_path, device(scale=1.0))
    async with running(cfg) as d:
        stops.delay = SLOW_STOP
        cfg.write_text(cfg.read_text().replace("scale = 1.0", "scale = 2.0"))
        first = asyncio.ensure_future(d.reload())
        await eventually(lambda: stops.entered)  # the first reload is stopping the old device
        cfg.write_text(cfg.read_text().replace("scale = 2.0", "scale = 3.0"))
        second = asyncio.ensure_future(d.reload())
        assert await asyncio.gather(first, second) == [[], []]
        assert d.reloads == 2
        assert running_scale(d) == {3.0}
        task = d.supervisor.tasks["device:a"].task
        assert task is not None and not task.done()
        await eventually(lambda: last_value(d) == 30.0)  # center 10 x scale 3: the runner polls and stores


async def test_sighups_coalesce_into_one_reload_while_one_runs(tmp_path: Path, stops: StopProbe,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.daemon")
    cfg = write_config(tmp_path, device(scale=1.0))
    async with running(cfg) as d:
        stops.gate = asyncio.Event()
        cfg.write_text(cfg.read_text().replace("scale = 1.0", "scale = 2.0"))
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: stops.entered)  # that reload holds, in the old device's stop
        cfg.write_text(cfg.read_text().replace("scale = 2.0", "scale = 3.0"))
        for _ in range(5):
            os.kill(os.getpid(), signal.SIGHUP)
        # The first of the five queues a reload; the other four join it.
        await eventually(lambda: sum("a reload is pending already" in r.getMessage() for r in caplog.records) == 4)
        stops.gate.set()
        await eventually(lambda: d.reloads == 2)
        assert await d.reload() == []  # behind anything still queued
        assert d.reloads == 3
        assert running_scale(d) == {3.0}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_sighup_during_start_up_reloads_once_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.daemon")
    cfg = write_config(tmp_path, device("a"))
    opening, go_on = threading.Event(), threading.Event()
    real_open = Store.open

    def slow_open(*args: Any) -> Store:
        opening.set()
        assert go_on.wait(30)
        return real_open(*args)

    monkeypatch.setattr(Store, "open", slow_open)
    d = Daemon(load_config(cfg, True))
    starting = asyncio.ensure_future(d.start())
    try:
        assert await asyncio.get_running_loop().run_in_executor(None, opening.wait, 30)  # start-up is under way
        cfg.write_text(cfg.read_text() + device("b"))
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: any("SIGHUP" in r.getMessage() for r in caplog.records))
        go_on.set()
        await starting
        await eventually(lambda: "b" in d.runners)
        assert d.reloads == 1
    finally:
        go_on.set()
        await starting
        await d.stop("test over")


async def test_put_config_holds_the_reload_lock_from_the_file_to_the_reload(tmp_path: Path,
                                                                          stops: StopProbe) -> None:
    cfg = write_config(tmp_path, device(scale=1.0))
    base = cfg.read_text()
    texts = [base.replace("scale = 1.0", "scale = 2.0"), base.replace("scale = 1.0", "scale = 3.0")]
    async with running(cfg) as d, admin(d) as http:
        stops.delay = SLOW_STOP
        first = asyncio.ensure_future(call(http, "PUT", "/v1/config", {"text": texts[0]}))
        await eventually(lambda: stops.entered)  # the first PUT's reload is stopping the old device
        second = asyncio.ensure_future(call(http, "PUT", "/v1/config", {"text": texts[1]}))
        answers = await asyncio.gather(first, second)
        assert [status for status, _ in answers] == [200, 200], answers
        assert all(body["reloaded"] for _, body in answers)
        assert cfg.read_text() == texts[1]
        assert cfg.with_name("edge.toml.bak").read_text() == texts[0]
        assert running_scale(d) == {3.0}
        await eventually(lambda: last_value(d) == 30.0)


async def test_a_reload_that_fails_part_way_says_so_and_the_next_one_finishes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path, device("a") + http_sink("h", "x") + http_sink("g", "y"))
    async with running(cfg) as d, admin(d) as http:
        assert d.store is not None
        await d.store.set_cursor("g", 0, "sink")
        # h changes (it is stopped, then started anew); g goes (its cursor is removed): the removal fails.
        cfg.write_text(cfg.read_text().replace("/x", "/x2").replace(http_sink("g", "y"), ""))

        async def broken_drop(name: str) -> bool:
            raise OSError("disk I/O error")

        monkeypatch.setattr(d.store, "drop_cursor", broken_drop)
        status, body = await call(http, "POST", "/v1/reload")
        assert status == 500 and body["reloaded"] is False, body
        [left] = body["restart_needed"]
        assert "reload failed while removing the cursors of removed sinks: OSError: disk I/O error" in left
        assert "not as configured: sink h" in left
        assert d.restart_needed == [left]
        store = d.store
        [event] = await eventually(lambda: store.events_sync(kind="reload_failed"))
        assert event.message == left
        with pytest.raises(ReloadFailed):
            await d.reload()  # the same again, straight
        # Once the store works again, a reload finishes what the failed one left: h runs with its new url.
        monkeypatch.undo()
        assert await d.reload() == []
        assert d.restart_needed == []
        assert d.sinks["h"].config.url.endswith("/x2")  # type: ignore[attr-defined]
        task = d.supervisor.tasks["sink:h"].task
        assert task is not None and not task.done()
        assert "g" not in d.store.cursors_sync()


# -- reload and stop ------------------------------------------------------------------------------------------


async def test_a_stop_during_a_reload_waits_for_it_and_leaves_nothing_running(tmp_path: Path,
                                                                              stops: StopProbe) -> None:
    cfg = write_config(tmp_path, device("a") + http_sink("h"))
    d = Daemon(load_config(cfg, True))
    await d.start()
    stops.delay = SLOW_STOP
    cfg.write_text(cfg.read_text().replace('interval = "20ms"', 'interval = "30ms"') + device("b")
                   + http_sink("h2", "y"))
    reload = asyncio.ensure_future(d.reload())
    await eventually(lambda: stops.entered)  # the reload is stopping the old device a
    await d.stop("test")
    with pytest.raises(DaemonStopping):
        await reload
    assert d.stopped_cleanly
    assert not d.supervisor.tasks and supervised_tasks() == []
    assert "b" not in d.runners and "h2" not in d.sinks  # nothing was started after the stop began


async def test_a_reload_during_a_stop_is_refused(tmp_path: Path, stops: StopProbe) -> None:
    cfg = write_config(tmp_path, device("a") + http_sink("h"))
    d = Daemon(load_config(cfg, True))
    await d.start()
    stops.delay = SLOW_STOP
    before = cfg.read_text()
    changed = before.replace('interval = "20ms"', 'interval = "30ms"') + device("b") + http_sink("h2", "y")
    cfg.write_text(changed)
    async with admin(d) as http:
        stopping = asyncio.ensure_future(d.stop("test"))
        await eventually(lambda: stops.entered)  # the stop is stopping the devices; the API still answers
        with pytest.raises(DaemonStopping):
            await d.reload()
        status, body = await call(http, "POST", "/v1/reload")
        assert status == 409 and "stopping" in body["error"], body
        status, body = await call(http, "PUT", "/v1/config", {"text": before})
        assert status == 409 and "the config file was not changed" in body["error"], body
        await stopping
    assert cfg.read_text() == changed
    assert d.stopped_cleanly
    assert not d.supervisor.tasks and supervised_tasks() == []
    assert "b" not in d.runners and "h2" not in d.sinks


# -- what applies at the next restart -------------------------------------------------------------------------


async def test_restart_only_settings_keep_their_boot_values_and_stay_named_until_a_restart(tmp_path: Path) -> None:
    from edge.identity import init_keys

    first, second = tmp_path / "data", tmp_path / "data-new"
    cfg = write_config(tmp_path, device("a"), data_dir=first)
    init_keys(first, "test")
    boot = cfg.read_text()
    async with running(cfg) as d, admin(d) as http:
        # data_dir, [store] and [api] change: documented to apply at the next restart.
        cfg.write_text(boot.replace(str(first), str(second)).replace("[store]\n", '[store]\nmax_bytes = "50MB"\n')
                       .replace("[api]\n", '[api]\nmax_limit = 5\nadmin_socket = "other.sock"\n'))
        assert await d.reload() == []
        assert d.restart_needed == ["[store]", "[api]", "edge.data_dir"]
        # A second reload (a signing sink added) still names them: nothing of them applied yet.
        cfg.write_text(cfg.read_text() + http_sink("h", extra="sign = true\n"))
        assert await d.reload() == []
        assert d.restart_needed == ["[store]", "[api]", "edge.data_dir"]
        assert d.data_dir == first and d.config.data_dir == first and not second.exists()
        assert d.config.api.max_limit == 10_000 and d.config.admin_socket_path == first / "admin.sock"
        status, page = await call(http, "GET", "/v1/readings?limit=100")
        assert status == 200, page
        # The new sink signs with the key in the data dir the store is in.
        assert d.sinks["h"].data_dir == str(first)
        error = await eventually(lambda: d.sinks_info()["h"].get("last_error"))
        assert "connection refused" in error and "signing" not in error
        # Back to the boot values: nothing waits for a restart any more.
        cfg.write_text(boot + http_sink("h", extra="sign = true\n"))
        assert await d.reload() == []
        assert d.restart_needed == []
    assert not (first / "admin.sock").exists()  # the stop removed the socket the daemon listened on


# -- stopping devices, transforms --------------------------------------------------------------------------------


async def test_transforms_change_only_after_the_old_devices_stopped(tmp_path: Path, stops: StopProbe) -> None:
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "t.py").write_text("def old(r):\n    return r\n\ndef new(r):\n    return r\n")
    cfg = write_config(tmp_path, '[[pipeline.transform]]\nfunction = "t.old"\n' + device("a"))
    async with running(cfg) as d:
        old = d.pipeline.transforms
        seen: list[object] = []
        stops.on_enter = lambda driver: seen.append(d.pipeline.transforms)
        cfg.write_text(cfg.read_text().replace('interval = "20ms"', 'interval = "30ms"').replace("t.old", "t.new"))
        assert await d.reload() == []
        assert seen == [old]  # the old device's last poll went through the transforms it was polled under
        assert d.pipeline.transforms is not old and d.pipeline.transforms


async def test_changed_devices_stop_side_by_side(tmp_path: Path, stops: StopProbe,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Each device's stop waits until both have begun: one at a time, the first would wait for the second for good.
    monkeypatch.setattr(daemon_module, "TASK_STOP_TIMEOUT", 30.0)
    cfg = write_config(tmp_path, device("a") + device("b"))
    async with running(cfg) as d:
        both = stops.gate = asyncio.Event()

        def entered(driver: Driver) -> None:
            if {"a", "b"} <= set(stops.entered):
                both.set()

        stops.on_enter = entered
        cfg.write_text(cfg.read_text().replace('interval = "20ms"', 'interval = "30ms"'))
        assert await asyncio.wait_for(d.reload(), 10) == []
        assert sorted(stops.entered) == ["a", "b"]
        assert {r.driver.config.interval for r in d.runners.values()} == {0.03}


# -- writes -----------------------------------------------------------------------------------------------------


async def test_a_write_to_a_disabled_device_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    real_write = SimulatorDriver.write

    async def write(driver: SimulatorDriver, point: str, value: object) -> object:
        writes.append(driver.name)
        return await real_write(driver, point, value)

    monkeypatch.setattr(SimulatorDriver, "write", write)
    body = device("off", extra="enabled = false\n") + "writable = true\n" + device("on") + "writable = true\n"
    cfg = write_config(tmp_path, body)
    async with running(cfg) as d, admin(d) as http:
        with pytest.raises(WriteError, match="device 'off' is disabled"):
            await d.write("off", "c", 1.0)
        status, answer = await call(http, "POST", "/v1/devices/off/points/c", {"value": 1.0})
        assert status == 409 and "disabled" in answer["error"], answer
        assert await d.write("on", "c", 2.0) == 2.0
        assert writes == ["on"]  # the disabled device's driver, never started, was never written to
