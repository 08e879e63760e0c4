"""Waiting with a timeout without `asyncio.wait_for`, which on Python 3.11 can swallow a cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_done(fut: asyncio.Future[Any], timeout: float) -> bool:
    """Wait until fut is done or timeout seconds passed; whether it is done. Cancelling the caller cancels fut."""
    if fut.done():
        return True
    try:
        done, _ = await asyncio.wait({fut}, timeout=max(0.0, timeout))
    except asyncio.CancelledError:
        fut.cancel()  # asyncio.wait() itself leaves it running
        raise
    return bool(done)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until the event is set or timeout seconds passed; whether it is set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, timeout))
    finally:
        waiter.cancel()
    return event.is_set()
