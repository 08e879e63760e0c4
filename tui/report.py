"""The site handover report: devices, points and last values, sinks, store and versions, as Markdown."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tui import format as fmt

LIBRARIES = ("pymodbus", "asyncua", "bleak", "dbus-fast", "aiomqtt", "aiohttp", "zeroconf", "textual")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def site_report(health: dict[str, Any], devices: list[dict[str, Any]], stats: dict[str, Any],
                now: float, config_path: str | None = None, versions: list[str] | None = None) -> str:
    """The report's Markdown text for the daemon state given (times relative to `now`)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    edge_id = health.get("edge") or stats.get("edge") or "?"
    store = stats.get("store") or {}
    out = [f"# Site report: {edge_id}", "",
           f"- written: {stamp}",
           f"- edge version: {health.get('version') or stats.get('version') or '?'}",
           f"- uptime: {fmt.duration(stats.get('uptime_s'))}",
           f"- config file: {config_path or '?'}",
           f"- config reloads since start: {stats.get('reloads', 0)}", "",
           "## Devices", ""]
    out += _table(["device", "driver", "state", "interval", "last poll", "polls", "errors", "last error"], [
        [d["name"], d.get("driver", ""), d["status"]["state"], f"{d.get('interval', '')}s",
         fmt.ago(d["status"].get("last_poll"), now), str(d["status"].get("polls", 0)),
         str(d["status"].get("poll_errors", 0)), d["status"].get("last_error") or ""]
        for d in devices])
    for d in devices:
        out += ["", f"### {d['name']}", ""]
        out += _table(["point", "value", "unit", "quality", "read at"], [
            [point, fmt.value(r.get("value")), r.get("unit") or "",
             r.get("quality", "") + (f": {r['error']}" if r.get("error") else ""), r.get("ts", "")]
            for point, r in (d.get("points") or {}).items()])
    out += ["", "## Sinks", ""]
    sinks = stats.get("sinks") or {}
    if sinks:
        out += _table(["sink", "type", "connected", "backlog", "oldest unsent", "last ack", "last error"], [
            [name, s.get("type", ""), str(s.get("connected", "?")).lower(), str(s.get("backlog_readings", "?")),
             fmt.duration(s.get("oldest_unsent_age_s")), fmt.ago(s.get("last_ack"), now), s.get("last_error") or ""]
            for name, s in sinks.items()])
    else:
        out.append("No sinks configured (readings are served by the pull API only).")
    dead = stats.get("dead_letters") or {}
    out += ["", "## Store", "",
            f"- size: {fmt.size(store.get('bytes'))} of {fmt.size(store.get('max_bytes'))}",
            f"- readings held: {store.get('readings', 0)} (seq {store.get('first_seq')}..{store.get('last_seq')})",
            f"- dead letters: {dead.get('batches', 0)} batches, {dead.get('readings', 0)} readings", "",
            "## Versions", "",
            f"- edge (the daemon): {health.get('version') or stats.get('version') or '?'}",
            f"- libraries where this report was written: {', '.join(versions or library_versions())}", ""]
    return "\n".join(out)


def library_versions() -> list[str]:
    """`name version` of the protocol and UI libraries installed where the report is written."""
    out = [f"python {platform.python_version()}"]
    for name in LIBRARIES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def report_path(folder: Path, edge_id: str, now: float) -> Path:
    """`edge-report-<id>-<UTC time>.md` in `folder`."""
    return folder / f"edge-report-{edge_id}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}.md"


def write_report(folder: Path, text: str, edge_id: str, now: float) -> Path:
    """Write the report and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = report_path(folder, edge_id, now)
    path.write_text(text, encoding="utf-8")
    return path
