"""A task's own states (``update_state``), passed on to a client that asked for progress without
letting a chatty task flood it: at most one message per interval per wait, the latest state
winning over those that came in between."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    """The newest of a stream of values: ``put`` never waits and replaces a value not taken yet;
    ``take`` waits for a value put since the last take."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._fresh = asyncio.Event()

    def put(self, value: T) -> None:
        self._value = value
        self._fresh.set()

    async def take(self) -> T:
        await self._fresh.wait()
        self._fresh.clear()
        value = self._value
        assert value is not None
        return value


async def relay(
    latest: Latest[T], ended: asyncio.Future[Any], send: Callable[[T], Awaitable[None]], interval_s: float
) -> None:
    """Send each newest value, at most one per ``interval_s``, until ``ended`` is done (a state
    that comes after the task ended is dropped: the result says more)."""
    while not ended.done():
        taking = asyncio.ensure_future(latest.take())
        try:
            await asyncio.wait([taking, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # The task ended, or this wait was cancelled (asyncio.wait leaves ``taking`` running).
            taking.cancel()
        if ended.done():
            return
        await send(taking.result())
        await asyncio.wait([ended], timeout=interval_s)
