"""Hold: makes a race deterministic by holding the first call of a wrapped coroutine function until released."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[..., Awaitable[Any]]


class Hold:
    """Holds the first call of a wrapped method: `reached` is set there; it goes on once `go` is set."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    def _hold_once(self) -> bool:
        first = not self.reached.is_set()
        self.reached.set()
        return first

    def after(self, call: Call) -> Call:
        """The call is made (the peer has answered), then held before it returns."""

        async def held(*args: Any, **kwargs: Any) -> Any:
            result = await call(*args, **kwargs)
            if self._hold_once():
                await self.go.wait()
            return result

        return held

    def before(self, call: Call) -> Call:
        """Held before the call is made (for a bus or link: while this request holds its lock)."""

        async def held(*args: Any, **kwargs: Any) -> Any:
            if self._hold_once():
                await self.go.wait()
            return await call(*args, **kwargs)

        return held
