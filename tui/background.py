"""Admin API requests a key press starts run in Textual workers, so a slow or hung daemon never blocks the UI.

A handler that awaited the daemon itself held a Textual message loop (the app's, for a key binding) until the
client's timeout: no other key, not even quit, was handled meanwhile. `start` runs the request in a worker
instead, and the job shows the answer or the error when it arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from textual.dom import DOMNode
from textual.worker import Worker

log = logging.getLogger("edge.tui")


def busy(node: DOMNode, group: str) -> bool:
    """Whether a worker of `group` started on `node` is still pending or running."""
    return any(w.node is node and w.group == group and not w.is_finished for w in node.app.workers)


def start(node: DOMNode, group: str, job: Callable[[], Awaitable[None]], *, replace: bool,
          what: str) -> Worker[None] | None:
    """Run `job()` in a worker of `group` on `node` (the node's removal cancels it).

    Args:
        replace: True: a new start cancels the group's running job (the newest request wins).
            False: a start while one runs is ignored and returns None (the running one answers).
        what: the job in a few words, for the log and for the message an unexpected error shows.

    The job shows its own results and the errors it expects (DaemonError); anything else it raises is
    logged and shown as an error notification: a worker's exception never ends the technician's session.
    """
    if not replace and busy(node, group):
        return None

    async def guarded() -> None:
        try:
            await job()
        except Exception as e:
            log.exception("%s failed", what)
            node.app.notify(f"{what} failed: {type(e).__name__}: {e}", severity="error", markup=False)

    return node.run_worker(guarded(), name=what, group=group, exclusive=replace, exit_on_error=False)
