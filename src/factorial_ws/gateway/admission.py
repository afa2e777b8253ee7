"""How many requests of one gateway process talk to Redis at once; the others wait their turn.

Under a burst (thousands of clients submitting at once) the event loop is the bottleneck, not
Redis. Let every request start its Redis round trips at once and each of them waits in a long
queue (the pool's checkout, the pub/sub confirmations) until an internal timeout fires, and the
client is told "Service unavailable" although Redis answers. Admitted a few at a time, each
request's round trips are quick, and the rest wait here, at the door: their connection's next
frames wait too, so the client sees its acks come later (push-back). A request that cannot get
in within ``wait_s`` is refused with an honest "Server busy", which the client may retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ServerBusy(Exception):
    """No turn came within the admission wait: the gateway, not Redis, is the bottleneck."""


class Admission:
    def __init__(self, at_once: int, wait_s: float) -> None:
        self._slots = asyncio.Semaphore(at_once)
        self._wait_s = wait_s

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the slots for the block; raises ServerBusy if none frees up in time."""
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._wait_s)
            except TimeoutError:
                raise ServerBusy from None
        else:
            await self._slots.acquire()  # a free slot: taken at once, no timer on the hot path
        try:
            yield
        finally:
            self._slots.release()
