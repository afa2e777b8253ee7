"""The pace of the result hub's reconnection attempts: a delay that grows while they fail, which
a request that needs the connection may cut short; without Redis, so that it is tested alone."""

from __future__ import annotations

import asyncio
import contextlib

_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# While the connection is down, a request cuts the backoff short (at most one attempt per
# _DELAYS_S[0]) and waits up to this for that attempt: a Redis that is back serves the request,
# one that refuses connections is known within milliseconds.
_ATTEMPT_WAIT_S = 1.0


class Backoff:
    def __init__(self) -> None:
        self._failures = 0  # attempts failed in a row
        self._wake = asyncio.Event()  # a request asks for a reconnection attempt now
        self._attempt: asyncio.Future[None] | None = None  # the next attempt, once it ends

    async def attempt_now(self) -> None:
        """Ask for a reconnection attempt without waiting out the backoff, and wait (bounded)
        for it to end. Without this, requests that came after a restarted Redis answered were
        refused until the hub's next attempt, up to 2 s later."""
        if self._attempt is None:
            self._attempt = asyncio.get_running_loop().create_future()
        attempt = self._attempt
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(attempt), _ATTEMPT_WAIT_S)

    def attempt_ended(self) -> None:
        """An attempt connected, or failed: whoever waits for it (``attempt_now``) goes on."""
        attempt, self._attempt = self._attempt, None
        if attempt is not None and not attempt.done():
            attempt.set_result(None)

    def reset(self) -> None:
        """Connected again: the next loss starts from the shortest delay."""
        self._failures = 0

    async def sleep(self) -> None:
        """Sleep before the next attempt, longer the more have failed in a row, or less when a
        request asks for one (but at least the shortest delay, so a flood of requests cannot make
        a flood of attempts)."""
        delay_s = _DELAYS_S[min(self._failures, len(_DELAYS_S) - 1)]
        self._failures += 1
        shortest_s = min(delay_s, _DELAYS_S[0])
        await asyncio.sleep(shortest_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay_s - shortest_s)
        self._wake.clear()
