"""`edge tui`: pick the daemon connection (admin socket, or URL and token) and run the app."""

from __future__ import annotations

from pathlib import Path

from edge.client import AdminClient
from tui.app import EdgeApp


def run_tui(client: AdminClient, report_dir: Path | None = None) -> int:
    """Run the TUI until the technician quits; the exit code for the shell."""
    target = str(client.socket) if client.socket else client.url
    EdgeApp(client, target=target, report_dir=report_dir).run()
    return 0
