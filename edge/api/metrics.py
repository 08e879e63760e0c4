"""/metrics in Prometheus text format, built from live state at scrape time (no per-reading cost)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from edge.daemon import Daemon


class _Snapshot(Collector):
    def __init__(self, daemon: Daemon, store: dict[str, Any]) -> None:
        self.d = daemon
        self.s = store

    def collect(self) -> Iterator[Metric]:
        s, c = self.s, self.s["counters"]
        yield CounterMetricFamily("edge_readings_in", "Readings stored", value=c.get("readings_in", 0))
        dropped = CounterMetricFamily("edge_readings_dropped", "Readings dropped by retention or a full store",
                                      labels=["reason"])
        for key, value in sorted(c.items()):
            if key.startswith("dropped_"):
                dropped.add_metric([key[len("dropped_"):]], value)
        dropped.add_metric(["rejected_full"], c.get("rejected_full", 0))
        yield dropped
        yield GaugeMetricFamily("edge_store_bytes", "Store files size", value=s["bytes"])
        yield GaugeMetricFamily("edge_store_max_bytes", "Configured store.max_bytes", value=s["max_bytes"])
        yield GaugeMetricFamily("edge_store_readings", "Readings held in the store", value=s["readings"])
        yield GaugeMetricFamily("edge_store_last_seq", "Newest durable seq", value=s["last_seq"])
        yield GaugeMetricFamily("edge_store_full", "1 while the store is full", value=1 if s["full"] else 0)
        yield GaugeMetricFamily("edge_store_pending", "Readings waiting for the writer", value=s["pending"])
        backlog = GaugeMetricFamily("edge_backlog_readings", "Readings a sink or consumer has not acknowledged",
                                    labels=["name", "kind"])
        for name, cur in sorted(s["cursors"].items()):
            backlog.add_metric([name, cur["kind"]], cur["backlog"])
        yield backlog
        dead = s["dead_letters"]
        yield GaugeMetricFamily("edge_dead_letters", "Dead-lettered batches", value=dead["batches"])
        yield GaugeMetricFamily("edge_dead_letter_bytes", "Bytes the dead letters take in the store",
                                value=dead["bytes"])
        yield GaugeMetricFamily("edge_dead_letter_max_bytes", "The dead letters' budget (store.dead_letter_max_bytes)",
                                value=dead["max_bytes"])
        yield CounterMetricFamily("edge_dead_letters_dropped", "Oldest dead letters dropped beyond their budget",
                                  value=c.get("dead_letters_dropped", 0))
        yield CounterMetricFamily("edge_dead_letter_readings_dropped", "Readings in the dead letters dropped",
                                  value=c.get("dead_letter_readings_dropped", 0))
        polls = CounterMetricFamily("edge_device_polls", "Completed polls", labels=["device"])
        errors = CounterMetricFamily("edge_device_poll_errors", "Polls with an error", labels=["device"])
        overruns = CounterMetricFamily("edge_device_overruns", "Poll ticks skipped", labels=["device"])
        up = GaugeMetricFamily("edge_device_up", "1 when the device state is up", labels=["device", "state"])
        for name, r in sorted(self.d.runners.items()):
            st = r.driver.status
            polls.add_metric([name], st.polls)
            errors.add_metric([name], st.poll_errors)
            overruns.add_metric([name], st.overruns)
            up.add_metric([name, st.state], 1 if st.state == "up" else 0)
        yield polls
        yield errors
        yield overruns
        yield up
        sink_families: dict[str, GaugeMetricFamily] = {}
        for name, info in sorted(self.d.sinks_info().items()):
            for key, value in info.items():
                if isinstance(value, bool):
                    value = int(value)
                if isinstance(value, int | float):
                    fam = sink_families.setdefault(key, GaugeMetricFamily(f"edge_sink_{key}", f"Sink {key}",
                                                                          labels=["sink"]))
                    fam.add_metric([name], float(value))
        yield from sink_families.values()


def render(daemon: Daemon, store_stats: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(daemon, store_stats))
    return generate_latest(registry)
