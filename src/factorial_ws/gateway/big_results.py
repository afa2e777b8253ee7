"""Large results, read from Redis once per gateway process and shared by every connection.

A stored 1000000! is a 5.5 MB meta. Parsing it with ``json.loads``, copying the digits into a
reply string and handing that to websockets cost three copies and about 90 ms of event loop per
reply. Here the meta's bytes are read with one GET, however many connections wait for the task
or look it up at the same moment; the digits are found in place (their byte span) rather than
parsed; and each reply is sent as a text message in fragments that are slices of those same
bytes, so a reply costs a connection one fragment of memory at a time, not a copy of the result.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

from ..protocol import Outcome, Pending, RequestId, Started, success_around
from ..worker.stored_meta import outcome_from_meta
from .stored_tasks import ServiceUnavailable, result_key

# Fragments of a streamed reply: websockets sends one, waits for the socket to take it, then
# takes the next, so this is what a reply holds of a connection's memory at a time.
FRAGMENT_BYTES: Final = 64 * 1024

# How Celery's JSON backend writes a success meta: the status first, then the result string.
_SUCCESS_HEAD: Final = re.compile(rb'\{"status": "SUCCESS", "result": "')
_DIGITS: Final = re.compile(rb"[0-9]+")


@dataclass(eq=False, slots=True, weakref_slot=True)
class BigResult:
    """A stored success meta and where its digits are in it."""

    meta: bytes
    start: int
    end: int

    @property
    def size(self) -> int:
        return len(self.meta)

    def reply(self, task_id: str, request_id: RequestId | None) -> Iterator[bytes | memoryview]:
        """The ``success`` reply as fragments: its head, slices of the digits, its tail."""
        head, tail = success_around(task_id, request_id)
        yield head.encode()
        view = memoryview(self.meta)
        for offset in range(self.start, self.end, FRAGMENT_BYTES):
            yield view[offset : min(offset + FRAGMENT_BYTES, self.end)]
        yield tail.encode()


def big_result(meta: bytes) -> BigResult | None:
    """The meta as a BigResult when it is a success whose result is a string of digits; None
    for anything else (a failure, or a meta written some other way: parse it as JSON then)."""
    head = _SUCCESS_HEAD.match(meta)
    if head is None:
        return None
    start = head.end()
    end = meta.find(b'"', start)
    # Matched in place: a slice would copy the digits (megabytes) for the check alone.
    if end <= start or _DIGITS.fullmatch(meta, start, end) is None:
        return None
    return BigResult(meta, start, end)


# Reads of large results at once. A read briefly holds a second copy of its result (the Redis
# client's buffer), which the output budgets do not count: this bounds those copies.
READS_AT_ONCE: Final = 4


class ResultCache:
    """Large results of one gateway process, each read from Redis once while anyone uses it.

    An entry lives as long as a connection holds it (it is weakly referenced here): the memory
    of large results is what the connections are sending, which their budgets bound, plus the
    reads under way (``READS_AT_ONCE``).
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._reading = asyncio.Semaphore(READS_AT_ONCE)
        self._held: weakref.WeakValueDictionary[str, BigResult] = weakref.WeakValueDictionary()
        self._reads: dict[str, asyncio.Future[BigResult | Outcome | None]] = {}

    async def get(self, task_id: str) -> BigResult | Outcome | None:
        """The task's stored result: a BigResult, or for a meta that is not a big success its
        outcome parsed the usual way, or None when nothing is stored (any more)."""
        held = self._held.get(task_id)
        if held is not None:
            return held
        read = self._reads.get(task_id)
        if read is None:
            # One read per task however many ask at once; each waiter is shielded from the
            # others' cancellation.
            read = self._reads[task_id] = asyncio.ensure_future(self._read(task_id))
            read.add_done_callback(lambda _: self._reads.pop(task_id, None))
        return await asyncio.shield(read)

    async def _read(self, task_id: str) -> BigResult | Outcome | None:
        try:
            async with self._reading:
                meta = await self._client.get(result_key(task_id))
        except aioredis.RedisError:
            raise ServiceUnavailable from None
        if meta is None:
            return None
        result = big_result(meta if isinstance(meta, bytes) else meta.encode())
        if result is None:
            outcome = outcome_from_meta(meta)
            return None if isinstance(outcome, Pending | Started) else outcome
        self._held[task_id] = result
        return result
