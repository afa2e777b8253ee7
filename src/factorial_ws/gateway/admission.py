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
from collections import deque

from .deadlines import Deadlines


class ServerBusy(Exception):
    """No turn came within the admission wait: the gateway, not Redis, is the bottleneck."""


class Admission:
    """``async with admission.turn():`` holds one of the slots for the block, first come first
    served; raises ServerBusy if none frees up within ``wait_s`` (give or take a second: waits
    share the timers of ``deadlines``). A class rather than a semaphore under ``asyncio.timeout``:
    this is on every request's path, and a timer per waiting request cost more than the wait."""

    def __init__(self, at_once: int, wait_s: float, deadlines: Deadlines | None = None) -> None:
        self._free = at_once
        self._waiters: deque[asyncio.Future[bool]] = deque()  # True: granted a slot
        self._wait_s = wait_s
        self._deadlines = deadlines or Deadlines()

    def turn(self) -> Admission:
        return self

    async def __aenter__(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._deadlines.expire(waiter, self._wait_s, False)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release()  # granted just as this was cancelled: give it back
            raise
        if not granted:
            raise ServerBusy

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # not timed out, not cancelled
                waiter.set_result(True)
                return
        self._free += 1
