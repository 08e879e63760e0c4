"""The daemon: one asyncio loop running devices, the store, sinks and the API; reload and clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from drivers import registry as driver_registry
from drivers.base import DISABLED, DeviceConfig, Driver, WriteError
from edge import __version__
from edge.clock import ClockWatch
from edge.config import Config, ConfigError, load_config
from edge.device_runner import DeviceRunner
from edge.liveness import Liveness
from edge.pipeline import Pipeline, TransformError, TransformSet, load_transforms
from edge.store import Store
from edge.supervisor import Supervisor
from sync import registry as sink_registry
from sync.base import Sink, SinkConfig

log = logging.getLogger("edge.daemon")

STOP_TIMEOUT = 5.0  # SIGTERM to closed store, at most
TASK_STOP_TIMEOUT = 1.5
STORE_CLOSE_LAST = 0.5  # s the store still gets for its last commit when the stop is late already
SINK_CLOSE_TIMEOUT = 1.0
RELOAD_STOP_WAIT = 1.5  # s a stop waits for a reload in progress (within STOP_TIMEOUT) before it goes on


def load_transform_set(config: Config) -> TransformSet:
    specs = [(t.function, list(t.match)) for t in config.pipeline.transform]
    # Called with no specs too: that releases the modules of transforms taken out of the config.
    return load_transforms(config.transforms_path, specs)


def _modules(transforms: TransformSet) -> set[str]:
    return {str(getattr(t.fn, "__module__", "")) for t in transforms.transforms}


class ReloadRefused(Exception):
    """A valid config that a reload cannot apply; the message says why (a config problem)."""


class DaemonStopping(Exception):
    """A reload (or a start of a device or sink) asked for while the daemon stops: nothing more is started."""


class ReloadFailed(Exception):
    """A reload failed part-way through applying a valid config; `restart_needed` names what is left over."""


class Daemon:
    """Owns everything that runs. `await start()`, then `await wait_stopped()`; `stop()` from anywhere."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._boot = config  # what [store], [api], [discovery], edge.data_dir and edge.log_level stay at until restart
        self._data_dir = config.data_dir
        self.store: Store | None = None
        self.pipeline = Pipeline([])
        self.runners: dict[str, DeviceRunner] = {}
        self.sinks: dict[str, Sink] = {}
        self.supervisor = Supervisor(on_crash=self._on_crash)
        self.started_monotonic = time.monotonic()  # uptime must not jump when NTP steps the clock
        self._stopped = asyncio.Event()
        self._stopping = False
        self.stopped_cleanly = True  # False when the stop ran out of time or the store's last commit failed
        self.restart_needed: list[str] = []  # what the last reload could not apply (it waits for a restart)
        self._api: Any = None
        self._advertiser: Any = None  # edge.discovery.Advertiser when [discovery] advertise = true
        self.reloads = 0
        self.liveness: Liveness | None = None
        self.clock: ClockWatch | None = None
        self._started = False
        self._stop_requested: str | None = None
        self._reload_requested = False  # a SIGHUP came during start-up: start() reloads once it is done
        self._reload_pending = False  # a SIGHUP's reload waits for the lock: further SIGHUPs join it
        self._reload_lock = asyncio.Lock()  # one reload (or PUT /v1/config) at a time; stop() waits for it
        self._signal_tasks: set[asyncio.Future[Any]] = set()
        # What runs (or, disabled, is registered): the configs that reloads diff against, so that a reload that
        # failed part-way is finished by the next one.
        self._device_configs: dict[str, DeviceConfig] = {}
        self._sink_configs: dict[str, SinkConfig] = {}
        self._step = ""  # what the reload in progress is doing (for the message when it fails)

    # -- life cycle -----------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """Fixed at start: a changed edge.data_dir applies at the next restart (the store stays where it is)."""
        return self._data_dir

    async def start(self) -> None:
        cfg = self.config
        self._install_signals()  # first: a SIGTERM during start-up must still end in a clean stop
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Drivers that keep files (OPC-UA's PKI) resolve relative paths against the data dir.
        os.environ.setdefault("EDGE_DATA_DIR", str(self.data_dir))
        # Transforms first: one that does not import is a config error (TransformError), raised before the store
        # or anything else is open.
        transforms = load_transform_set(cfg)
        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(None, Store.open, self.data_dir, cfg.store.options())
        self.pipeline = Pipeline([], transforms)
        await self._drop_stale_sink_cursors()
        for dev in cfg.devices:
            self._start_device(dev)
        for sink_cfg in cfg.sinks:
            self._start_sink(sink_cfg)
        from edge.api.server import ApiServer

        self._api = ApiServer(self)
        await self._api.start()
        if cfg.discovery.advertise:
            from edge.discovery import Advertiser  # lazily: zeroconf is loaded only when advertising

            self._advertiser = Advertiser.for_daemon(self)
            await self._advertiser.start()
        self.liveness = Liveness(self.store)
        self.supervisor.spawn("liveness", self.liveness.run)
        self.clock = ClockWatch(self.store)
        self.supervisor.spawn("clock", self.clock.run)
        await self.store.add_event("started", f"edge {__version__} started with {len(cfg.devices)} devices, "
                                              f"{len(cfg.sinks)} sinks", {"pid": os.getpid()})
        log.info("edge %s running: %d devices, %d sinks, API on %s", __version__, len(cfg.devices),
                 len(cfg.sinks), self.api_url)
        self.liveness.ready(f"{len(cfg.devices)} devices, {len(cfg.sinks)} sinks, API on {self.api_url}")
        self._started = True
        if self._stop_requested:
            self._background(self.stop(self._stop_requested))
        elif self._reload_requested:
            self._reload_requested = False
            self._request_reload()
        # Everything loaded so far (modules, config models, drivers) lives as long as the process: move it out
        # of the cyclic GC's sight. Otherwise each full collection walks it all (~90k objects), which stalled
        # the loop for 150-250 ms every ~4 s at 25k readings/s and made every device overrun a poll.
        gc.collect()
        gc.freeze()

    @property
    def api_url(self) -> str:
        return self._api.url if self._api else ""

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_stop_signal, sig)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        except (NotImplementedError, RuntimeError):
            pass

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        if not self._started:
            self._stop_requested = f"signal {sig.name} during start-up"  # start() stops once it is done
            return
        self._background(self.stop(f"signal {sig.name}"))

    def _on_reload_signal(self) -> None:
        if self._stopping:
            log.warning("SIGHUP ignored: the daemon is stopping")
        elif not self._started:
            self._reload_requested = True  # start() reloads once it is done, as it stops for a stop signal
            log.info("SIGHUP during start-up: the config is reloaded once start-up is done")
        else:
            self._request_reload()

    def _request_reload(self) -> None:
        """A reload for a SIGHUP. SIGHUPs coalesce: while one reload waits for its turn, the next ones join it
        (it reads the file when it runs, so it applies what they would have)."""
        if self._reload_pending:
            log.info("SIGHUP: a reload is pending already")
            return
        self._reload_pending = True
        self._background(self._signal_reload())

    async def _signal_reload(self) -> None:
        try:
            await self._reload_lock.acquire()
        finally:
            self._reload_pending = False  # from its turn on (or if it never gets one), a SIGHUP needs a new reload
        try:
            problems = await self._reload_locked()
            if problems:
                log.error("SIGHUP: config reload refused: %s", "; ".join(problems))
        except DaemonStopping as e:
            log.warning("SIGHUP: %s", e)
        except ReloadFailed as e:
            log.error("SIGHUP: %s", e)
        except Exception:
            log.exception("SIGHUP: reload failed")
        finally:
            self._reload_lock.release()

    def _background(self, coro: Any) -> None:
        """Run a coroutine from a signal handler, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self, why: str = "stop requested") -> None:
        """Stop polling, stop sinks and API, flush and close the store; bounded by STOP_TIMEOUT."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("stopping (%s)", why)
        orderly = STOP_TIMEOUT - STORE_CLOSE_LAST  # the rest is for the store's last word when it is late
        deadline = asyncio.get_running_loop().time() + orderly
        try:
            await asyncio.wait_for(self._shutdown(why, deadline), orderly)
        except TimeoutError:
            self.stopped_cleanly = False
            log.error("shutdown exceeded %.1fs; readings not committed by now are lost", orderly)
            if self.store:  # a no-op when the store's close was started already (it goes on, on its own thread)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.store.aclose(timeout=STORE_CLOSE_LAST * 0.8), STORE_CLOSE_LAST)
        self._stopped.set()

    async def _shutdown(self, why: str, deadline: float) -> None:
        if self.liveness is not None:
            self.liveness.stopping()
        await self._wait_for_reload()
        await self.supervisor.stop_all(TASK_STOP_TIMEOUT)
        # Sinks close side by side, so that several of them cannot add up past STOP_TIMEOUT.
        closing = [(f"sink {s.name}", s.close()) for s in self.sinks.values()]
        results = await asyncio.gather(*(self._bounded(c) for _, c in closing), return_exceptions=True)
        for (what, _), result in zip(closing, results, strict=True):
            if isinstance(result, BaseException):
                log.error("closing %s failed: %s", what, result)
        if self._advertiser:
            await self._advertiser.stop()
        if self._api:
            await self._api.stop()
        if self.store:
            await self.store.add_event("stopped", f"edge stopped ({why})")
            left = deadline - asyncio.get_running_loop().time()
            if not await self.store.aclose(timeout=max(0.1, left - 0.1)):
                self.stopped_cleanly = False

    async def _wait_for_reload(self) -> None:
        """Let a reload in progress see that the daemon stops (it starts nothing more and ends at its next step),
        and the reloads waiting for their turn refuse, before everything is stopped; bounded by RELOAD_STOP_WAIT."""
        try:
            async with asyncio.timeout(RELOAD_STOP_WAIT):
                await self._reload_lock.acquire()
        except TimeoutError:
            log.warning("a reload still runs after %.1fs; stopping anyway (it starts nothing more)", RELOAD_STOP_WAIT)
            return
        self._reload_lock.release()  # those still queued see _stopping and refuse at once

    @staticmethod
    async def _bounded(coro: Any) -> None:
        async with asyncio.timeout(SINK_CLOSE_TIMEOUT):
            await coro

    # -- devices and sinks ----------------------------------------------------------------------------

    def _check_not_stopping(self) -> None:
        if self._stopping:
            raise DaemonStopping("the daemon is stopping: the reload was not applied")

    def _start_device(self, dev: DeviceConfig, driver: Driver | None = None) -> None:
        """Start a device's runner (a disabled one is only registered); it is in self.runners once it runs."""
        assert self.store is not None
        self._check_not_stopping()  # a task spawned now would outlive stop()'s stop_all
        driver = driver or driver_registry.create_driver(dev)
        runner = DeviceRunner(driver, self.pipeline, self.store)
        self.pipeline.add_device(dev)
        if dev.enabled:
            try:
                self.supervisor.spawn(f"device:{dev.name}", runner.run)
            except BaseException:
                self.pipeline.remove_device(dev.name)
                raise
        else:
            driver.status.state = DISABLED
        self.runners[dev.name] = runner
        self._device_configs[dev.name] = dev

    async def _stop_device(self, name: str) -> None:
        await self.supervisor.stop(f"device:{name}", TASK_STOP_TIMEOUT)
        self.runners.pop(name, None)
        self._device_configs.pop(name, None)
        self.pipeline.remove_device(name)

    def _create_sink(self, cfg: SinkConfig) -> Sink:
        sink: Sink = sink_registry.create_sink(cfg, edge_id=self.config.edge.id, store=self.store,
                                               data_dir=str(self.data_dir))
        return sink

    def _start_sink(self, cfg: SinkConfig, sink: Sink | None = None) -> None:
        assert self.store is not None
        self._check_not_stopping()  # a sink started now would never be closed: its last cursor never saved
        sink = sink or self._create_sink(cfg)
        if cfg.enabled:
            self.supervisor.spawn(f"sink:{cfg.name}", sink.run)
        self.sinks[cfg.name] = sink
        self._sink_configs[cfg.name] = cfg

    async def _stop_sink(self, name: str) -> None:
        await self.supervisor.stop(f"sink:{name}", TASK_STOP_TIMEOUT)
        self._sink_configs.pop(name, None)
        sink = self.sinks.pop(name, None)
        if sink:
            try:
                await asyncio.wait_for(sink.close(), SINK_CLOSE_TIMEOUT)
            except Exception:
                log.exception("sink %s close failed", name)

    async def _drop_stale_sink_cursors(self) -> None:
        """A sink removed from the config must not hold readings back forever."""
        assert self.store is not None
        names = {s.name for s in self.config.sinks}
        for name, c in self.store.cursors_sync().items():
            if c["kind"] == "sink" and name not in names:
                await self.store.drop_cursor(name)
                await self.store.add_event("cursor_removed", f"sink {name!r} is no longer configured; "
                                                             f"its cursor was removed", {"sink": name})

    async def _on_crash(self, task: str, error: BaseException, restarts: int) -> None:
        if self.store:
            await self.store.add_event("task_crashed", f"{task} crashed: {type(error).__name__}: {error}; "
                                                       f"restart #{restarts}", {"task": task})

    # -- operations -----------------------------------------------------------------------------------

    # Settings a reload does not apply: they keep their boot values until the next restart.
    RESTART_ONLY = ("[store]", "[api]", "[discovery]", "edge.data_dir", "edge.log_level")

    def _restart_only_changes(self, new: Config) -> list[str]:
        """What in `new` differs from the config the daemon started with, among what applies only at a restart."""
        boot = self._boot
        changed = {"[store]": new.store != boot.store, "[api]": new.api != boot.api,
                   "[discovery]": new.discovery != boot.discovery,
                   "edge.data_dir": new.edge.data_dir != boot.edge.data_dir,
                   "edge.log_level": new.edge.log_level != boot.edge.log_level}
        return [what for what in self.RESTART_ONLY if changed[what]]

    def _effective(self, new: Config) -> Config:
        """`new` as it runs: what applies only at a restart keeps its boot value."""
        boot = self._boot
        edge = new.edge.model_copy(update={"data_dir": boot.edge.data_dir, "log_level": boot.edge.log_level})
        return dataclasses.replace(new, edge=edge, store=boot.store, api=boot.api, discovery=boot.discovery)

    def prepare(self, new: Config, text: str | None = None) -> tuple[TransformSet, dict[str, Driver], dict[str, Sink]]:
        """What a reload to `new` needs before it touches what runs: its transforms (imported), and a driver or
        sink for every device or sink that differs from what runs (built: building one opens nothing). Raises
        ReloadRefused with the reason. `text`: new's source, for the line of a transform that does not load.
        Call it holding the reload lock (reload() and PUT /v1/config do): what runs must not change meanwhile."""
        from edge.config import transform_problem

        try:
            transforms = load_transform_set(new)
        except TransformError as e:
            raise ReloadRefused(str(transform_problem(new, e, text))) from e
        old = self._boot
        if new.edge.id != old.edge.id:  # receivers deduplicate on (edge, seq): one identity per run
            raise ReloadRefused(f"{new.source}: edge.id changed from {old.edge.id!r} to {new.edge.id!r}: the "
                                f"appliance's identity changes only with a restart (systemctl restart edge)")
        running_devices, running_sinks = self._device_configs, self._sink_configs
        try:
            drivers = {d.name: driver_registry.create_driver(d) for d in new.devices
                       if running_devices.get(d.name) != d}
            sinks = {s.name: self._create_sink(s) for s in new.sinks if running_sinks.get(s.name) != s}
        except Exception as e:
            raise ReloadRefused(new.scrub_secrets(
                f"{new.source}: a device or sink could not be created: {type(e).__name__}: {e}")) from e
        return transforms, drivers, sinks

    @contextlib.asynccontextmanager
    async def reloading(self) -> AsyncIterator[None]:
        """Hold the reload lock (one reload at a time); raises DaemonStopping when the daemon stops.

        PUT /v1/config holds it from its checks through writing the file to the reload (reload_locked())."""
        self._check_not_stopping()
        async with self._reload_lock:
            self._check_not_stopping()
            yield

    async def reload(self) -> list[str]:
        """Re-read the config file and apply device, sink and transform changes; buffered data is kept.

        Returns the problems when the new config is invalid (the running config then stays as it is). Raises
        DaemonStopping when the daemon stops (before or during the reload) and ReloadFailed when applying
        failed part-way (a reload_failed event and restart_needed say what). One reload at a time: a second
        one waits for the first.
        """
        async with self.reloading():
            return await self._reload_locked()

    async def reload_locked(self) -> list[str]:
        """reload() for a caller that holds the lock (`async with daemon.reloading()`)."""
        assert self._reload_lock.locked()
        return await self._reload_locked()

    async def _reload_locked(self) -> list[str]:
        assert self.store is not None
        self._check_not_stopping()
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, load_config, self.config.source, True)
            self._check_not_stopping()
            transforms, drivers, sinks = self.prepare(new)
        except ConfigError as e:
            problems = [str(p) for p in e.problems]
            await self.store.add_event("reload_failed", "config reload refused: " + "; ".join(problems))
            return problems
        except ReloadRefused as e:
            await self.store.add_event("reload_failed", f"config reload refused: {e}")
            return [str(e)]
        later = self._restart_only_changes(new)  # against the boot config: it stays true until a restart
        self.restart_needed = later
        if later:
            await self.store.add_event("reload_partial", f"{', '.join(later)} changes apply at the next restart",
                                       {"restart_needed": later})
        old_devices = dict(self._device_configs)
        new_devices = {d.name: d for d in new.devices}
        self.config = self._effective(new)
        try:
            await self._apply(new, transforms, drivers, sinks)
        except DaemonStopping:
            raise
        except Exception as e:
            await self._apply_failed(e)
        self.reloads += 1
        changed = sorted(n for n in old_devices.keys() | new_devices.keys()
                         if old_devices.get(n) != new_devices.get(n))
        await self.store.add_event("reloaded", f"config reloaded ({len(new.devices)} devices, {len(new.sinks)} sinks)",
                                   {"changed_devices": changed})
        return []

    async def _apply(self, new: Config, transforms: TransformSet, drivers: dict[str, Driver],
                     sinks: dict[str, Sink]) -> None:
        """Make what runs match `new`; raises DaemonStopping as soon as it sees the daemon stop."""
        self._step = "stopping changed devices"
        new_devices = {d.name: d for d in new.devices}
        new_sinks = {s.name: s for s in new.sinks}
        # Changed devices stop side by side: a slow driver stop does not hold the others up.
        await asyncio.gather(*(self._stop_device(name) for name, dev in list(self._device_configs.items())
                               if new_devices.get(name) != dev))
        self._check_not_stopping()
        # Only now: the old devices' last readings went through the transforms they were polled under.
        replaced = _modules(self.pipeline.transforms) - _modules(transforms)
        self.pipeline.transforms = transforms
        if replaced:
            # Modules loaded before start()'s gc.freeze() sit in the permanent generation, where the old
            # version of a changed transform would stay for good: one full collection (a pause of ~0.2 s at
            # 2,500 points) per reload that replaces a transform module.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        self._step = "starting devices"
        for name, driver in drivers.items():
            self._start_device(new_devices[name], driver)
        self._step = "stopping changed sinks"
        await asyncio.gather(*(self._stop_sink(name) for name, s in list(self._sink_configs.items())
                               if new_sinks.get(name) != s))
        self._check_not_stopping()
        self._step = "removing the cursors of removed sinks"
        await self._drop_stale_sink_cursors()
        self._check_not_stopping()
        self._step = "starting sinks"
        for name, sink in sinks.items():
            self._start_sink(new_sinks[name], sink)

    async def _apply_failed(self, e: Exception) -> None:
        """Say that the reload failed part-way and what is left over; the next reload picks up from what runs."""
        assert self.store is not None
        what = self.config.scrub_secrets(f"reload failed while {self._step}: {type(e).__name__}: {e}")
        log.error("%s", what, exc_info=e)
        devices, sinks = {d.name: d for d in self.config.devices}, {s.name: s for s in self.config.sinks}
        off = [*(f"device {n}" for n in sorted(devices.keys() | self._device_configs.keys())
                 if devices.get(n) != self._device_configs.get(n)),
               *(f"sink {n}" for n in sorted(sinks.keys() | self._sink_configs.keys())
                 if sinks.get(n) != self._sink_configs.get(n))]
        pending = f"{what}{'; not as configured: ' + ', '.join(off) if off else ''} (reload again, or restart)"
        self.restart_needed = [*self.restart_needed, pending]
        with contextlib.suppress(Exception):  # the store may be what failed
            await self.store.add_event("reload_failed", pending, {"restart_needed": self.restart_needed})
        raise ReloadFailed(pending) from e

    async def write(self, device: str, point: str, value: Any, source: str = "api") -> Any:
        """Write a value to a writable point; returns what was read back. Raises WriteError."""
        assert self.store is not None
        runner = self.runners.get(device)
        if runner is None:
            raise WriteError(f"no device named {device!r}")
        cfg = runner.driver.point_config(point)
        if not cfg.writable:
            raise WriteError(f"point {device}/{point} is not writable (set writable = true in its config)")
        if not runner.driver.config.enabled:  # its driver was never started: a write would open what nothing closes
            raise WriteError(f"device {device!r} is disabled (enabled = false): it takes no writes")
        try:
            result = await runner.driver.write(point, value)
        except WriteError as e:
            await self.store.add_event("write_failed", f"write {device}/{point} = {value!r} failed: {e}",
                                       {"device": device, "point": point, "value": value, "source": source})
            raise
        await self.store.add_event("write", f"{device}/{point} = {value!r} (read back {result!r}) by {source}",
                                   {"device": device, "point": point, "value": value, "read_back": result,
                                    "source": source})
        return result

    def devices_info(self) -> list[dict[str, Any]]:
        return [r.info() for r in self.runners.values()]

    def sinks_info(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, sink in self.sinks.items():
            try:
                stats = sink.stats()
            except Exception as e:
                stats = {"error": f"{type(e).__name__}: {e}"}
            task = self.supervisor.tasks.get(f"sink:{name}")
            out[name] = {"type": sink.config.type, **stats,
                         "restarts": task.restarts if task else 0}
        return out
