"""What one connection sends, held to byte budgets and deadlines.

websockets' ``send`` waits while the socket is full, but whatever waits to be sent stays in the
gateway's memory. So results are budgeted twice before they are made (read from Redis,
streamed): per connection, the bytes of results it is sending stay within
``WS_MAX_OUTPUT_BYTES``; per process, the distinct results all its connections are sending stay
within ``WS_MAX_OUTPUT_BYTES_PER_PROCESS`` (``OutputBudget``: a result that several connections
send counts once, as the process holds it once). A result without room waits, unread, in order.

A client that does not read is a slow consumer once a send has made no progress for
``WS_SLOW_CONSUMER_TIMEOUT``, or a result has taken longer than that plus its size at
``WS_MIN_OUTPUT_RATE`` (a client that takes a fragment now and then would otherwise hold its
share of the budgets for ever): its connection is closed (1008, "slow consumer"). Its tasks are
not affected, and their results can be looked up by id. Waiting for room is never held against a
connection: the sends ahead of it are the ones bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from .. import logs
from . import metrics

logger = logging.getLogger(__name__)

SLOW_CONSUMER: Final = "slow consumer"  # the close reason
# A slow consumer does not read our close frame either: its TCP connection is cut after this.
_CLOSE_GRACE_S: Final = 2.0

Fragments = Iterable[bytes | memoryview]
Message = str | Fragments  # a text frame, or a text message sent in fragments


class OutputBudget:
    """The bytes of results one gateway process is making or sending, over all its connections.

    A result named by a ``key`` (its task id) counts once however many connections send it: the
    process holds its bytes once (``big_results``). Others count each time. A result waits, in
    order of asking, while the budget has no room for it; one larger than the whole budget still
    goes, alone."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit_bytes = limit_bytes
        self._in_use = 0
        self._held: dict[str, list[int]] = {}  # key -> [size, senders]
        self._waiters: deque[tuple[int, str | None, asyncio.Future[None]]] = deque()

    @property
    def in_use_bytes(self) -> int:
        return self._in_use

    async def acquire(self, size: int, key: str | None = None) -> None:
        if (key is not None and key in self._held) or (not self._waiters and self._fits(size)):
            self._take(size, key)
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, key, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(size, key)  # granted just as this was cancelled: give it back
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def release(self, size: int, key: str | None = None) -> None:
        if key is not None and key in self._held:
            held = self._held[key]
            held[1] -= 1
            if held[1] > 0:
                return  # other connections still send it
            del self._held[key]
            size = held[0]
        self._in_use -= size
        while self._waiters:
            size, key, waiter = self._waiters[0]
            # A cancelled wait leaves the queue only once it runs again: it must not hold back
            # the ones behind it meanwhile.
            if not waiter.done() and not (key is not None and key in self._held) and not self._fits(size):
                break
            self._waiters.popleft()
            if not waiter.done():
                self._take(size, key)
                waiter.set_result(None)

    def _fits(self, size: int) -> bool:
        return self._in_use == 0 or self._in_use + size <= self._limit_bytes

    def _take(self, size: int, key: str | None) -> None:
        if key is None:
            self._in_use += size
        elif key in self._held:
            self._held[key][1] += 1
        else:
            self._held[key] = [size, 1]
            self._in_use += size


class Outbox:
    def __init__(
        self,
        connection: ServerConnection,
        *,
        budget_bytes: int,
        slow_consumer_timeout_s: float,
        peer: str,
        process_budget: OutputBudget | None = None,
        min_bytes_per_s: float | None = None,
    ) -> None:
        self._connection = connection
        self._budget_bytes = budget_bytes
        self._timeout_s = slow_consumer_timeout_s
        self._peer = peer
        self._process_budget = process_budget
        self._min_bytes_per_s = min_bytes_per_s
        self._rate_bound = False  # the message being sent is due by its minimum rate, not progress
        self._in_use = 0  # bytes of results being made or sent
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._dropped = False
        self._flush_scheduled = False

    async def send(self, message: Message, size: int = 0) -> None:
        """Send a message (ack, pending, error: not budgeted; a result of ``size`` bytes through
        ``send_result``). Returns quietly when the connection is closed or gets closed as a slow
        consumer meanwhile."""
        if self._dropped:
            return
        if isinstance(message, str) and self._queue_frame(message):
            return
        try:
            async with asyncio.timeout(self._timeout_s) as deadline:
                if isinstance(message, str):
                    await self._connection.send(message)
                else:
                    await self._connection.send(self._progressing(message, deadline, size), text=True)
        except TimeoutError:
            self._drop(self._why_late(size))
        except ConnectionClosed:
            pass

    async def send_result(
        self, size: int, make: Callable[[], Awaitable[Message]], *, shared_key: str | None = None
    ) -> None:
        """Send a result of about ``size`` bytes once both budgets have room for it; ``make``
        builds the message (reading the result from Redis, say) only then. ``shared_key``
        names a result the process holds once for every connection that sends it."""
        if not await self._reserve(size):
            return
        try:
            if self._process_budget is not None:
                await self._process_budget.acquire(size, shared_key)
            try:
                if not self._dropped:  # while it waited for the process budget
                    await self.send(await make(), size)
            finally:
                if self._process_budget is not None:
                    self._process_budget.release(size, shared_key)
        finally:
            self._release(size)

    def _queue_frame(self, text: str) -> bool:
        """Queue a text frame to leave with the others of this event-loop turn, in one write,
        when the socket takes it without waiting (websockets waits only while the transport has
        paused writing). Else False: ``send`` then goes the way that waits, with its deadline.
        Acks and results of a busy connection come many a turn: a syscall each, and a deadline
        each, were most of a small reply's cost."""
        connection = self._connection
        if (
            connection.paused
            or connection.send_in_progress is not None
            or connection.protocol.state is not State.OPEN
        ):
            return False
        connection.protocol.send_text(text.encode())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        connection = self._connection
        # What websockets' own writes (a pong, another send) did not take with them already.
        chunks = connection.protocol.data_to_send()
        if not chunks or connection.transport.is_closing():
            return
        if all(chunks):
            connection.transport.write(b"".join(chunks))
        else:  # an end of stream after a close frame: websockets knows how to write it
            for chunk in chunks:
                connection.protocol.writes.append(chunk)
            connection.send_data()

    # --- the budget ---

    async def _reserve(self, size: int) -> bool:
        if self._dropped:
            return False
        if not self._waiters and self._fits(size):
            self._in_use += size
            return True
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        # No deadline of its own: the sends ahead of it have theirs (a slow consumer is dropped
        # by those, which wakes this), and waiting behind the process budget is no fault of
        # this client.
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and not self._dropped:
                self._release(size)  # granted just as this was cancelled: give it back
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
        return not self._dropped

    def _fits(self, size: int) -> bool:
        # A result larger than the whole budget still goes, alone.
        return self._in_use == 0 or self._in_use + size <= self._budget_bytes

    def _release(self, size: int) -> None:
        self._in_use -= size
        # A cancelled waiter (done) is skipped, whatever its size, as in OutputBudget.release.
        while self._waiters and (self._waiters[0][1].done() or self._fits(self._waiters[0][0])):
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += size
                waiter.set_result(None)

    def _why_late(self, size: int) -> str:
        if self._rate_bound:
            rate = f"{self._min_bytes_per_s:g} bytes/s"
            return f"a result of {size} bytes not sent within {self._timeout_s:g} s plus its size at {rate}"
        return f"a reply made no progress for {self._timeout_s:g} s"

    def _progressing(
        self, fragments: Fragments, deadline: asyncio.Timeout, size: int
    ) -> Iterator[bytes | memoryview]:
        """The fragments; websockets takes the next one once the socket took the previous one,
        so each one taken moves the deadline, but never past the whole message's: its size at
        the minimum rate, after the slow-consumer timeout."""
        loop = asyncio.get_running_loop()
        last_s = float("inf")
        if self._min_bytes_per_s is not None:
            last_s = loop.time() + self._timeout_s + size / self._min_bytes_per_s
        for fragment in fragments:
            next_s = loop.time() + self._timeout_s
            self._rate_bound = last_s < next_s
            deadline.reschedule(min(next_s, last_s))
            yield fragment
        self._rate_bound = False

    # --- slow consumers ---

    def _drop(self, detail: str) -> None:
        if self._dropped:
            return
        self._dropped = True
        metrics.slow_consumers_total.inc()
        logs.event(logger, "slow_consumer", peer=self._peer, detail=detail)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        # websockets' close() would wait for the socket to drain, which a client that does not
        # read never lets happen (and would replace the code with 1011 in the middle of a
        # fragmented message): send the close frame after what is queued, then cut the TCP
        # connection if the client has not read its way to it within the grace.
        connection = self._connection
        with contextlib.suppress(Exception):
            connection.protocol.fail(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER)
            connection.send_data()
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_S, connection.transport.abort)
