"""Requests of one connection handled together, answered in the order they came.

A client without request ids matches acks (and a request's immediate refusal) by position, so
those replies must go in request order. Handling one request at a time keeps the order but makes
every request of a connection wait for the previous one's round trips to Redis; then the Redis
commands of a busy connection can never share a batch (batching.py). So a session reads ahead:
each request takes a ``Turn`` in read order, does its work concurrently with the others, and
sends its ordered replies once the requests before it have sent theirs.
"""

from __future__ import annotations

import asyncio
from typing import Final

# Requests of one connection read ahead of their answers; past this, reading waits (push-back).
READ_AHEAD: Final = 64


class Turn:
    """One request's place in the order of replies: ``come`` waits for the earlier requests to
    have replied; ``end`` (always called, even on failure) lets the next request reply."""

    __slots__ = ("_mine", "_previous")

    def __init__(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._previous = previous
        self._mine = mine

    @property
    def now(self) -> bool:
        """Whether every earlier request has replied already."""
        return self._previous is None or self._previous.done()

    async def come(self) -> None:
        if self._previous is not None and not self._previous.done():
            # Shielded: a cancelled waiter must not cancel the earlier request's future.
            await asyncio.shield(self._previous)

    def end(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)


class ReplyOrder:
    """The turns of one connection, and how many are still unanswered."""

    def __init__(self, read_ahead: int) -> None:
        self._read_ahead = read_ahead
        self._last: asyncio.Future[None] | None = None
        self._unanswered = 0
        self._room: asyncio.Future[None] | None = None

    def next_turn(self) -> Turn:
        """The turn after every turn given so far."""
        mine = asyncio.get_running_loop().create_future()
        turn = Turn(self._last, mine)
        self._last = mine
        self._unanswered += 1
        mine.add_done_callback(self._answered)
        return turn

    @property
    def unanswered(self) -> int:
        return self._unanswered

    async def room(self) -> None:
        """Return once fewer than ``read_ahead`` turns are unanswered."""
        while self._unanswered >= self._read_ahead:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def _answered(self, _: asyncio.Future[None]) -> None:
        self._unanswered -= 1
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
