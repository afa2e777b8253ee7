"""What one connection sends, held to a byte budget and a deadline.

websockets' ``send`` waits while the socket is full, but whatever waits to be sent stays in the
gateway's memory. So results are budgeted per connection: a result is made (read from Redis,
streamed) only while the bytes of results this connection is sending stay within
``WS_MAX_OUTPUT_BYTES``; the others wait. A client that does not read is a slow consumer once a
result has waited ``WS_SLOW_CONSUMER_TIMEOUT`` for the budget, or a send has made no progress for
that long: its connection is closed (1008, "slow consumer"). Its tasks are not affected, and
their results can be looked up by id.
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

from .. import logs, metrics

logger = logging.getLogger(__name__)

SLOW_CONSUMER: Final = "slow consumer"  # the close reason
# A slow consumer does not read our close frame either: its TCP connection is cut after this.
_CLOSE_GRACE_S: Final = 2.0

Fragments = Iterable[bytes | memoryview]
Message = str | Fragments  # a text frame, or a text message sent in fragments


class Outbox:
    def __init__(
        self, connection: ServerConnection, *, budget_bytes: int, slow_consumer_timeout_s: float, peer: str
    ) -> None:
        self._connection = connection
        self._budget_bytes = budget_bytes
        self._timeout_s = slow_consumer_timeout_s
        self._peer = peer
        self._in_use = 0  # bytes of results being made or sent
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._dropped = False
        self._flush_scheduled = False

    async def send(self, message: Message) -> None:
        """Send a message that is not budgeted (ack, pending, error). Returns quietly when the
        connection is closed or gets closed as a slow consumer meanwhile."""
        if self._dropped:
            return
        if isinstance(message, str) and self._queue_frame(message):
            return
        try:
            async with asyncio.timeout(self._timeout_s) as deadline:
                if isinstance(message, str):
                    await self._connection.send(message)
                else:
                    await self._connection.send(self._progressing(message, deadline), text=True)
        except TimeoutError:
            self._drop("a reply made no progress")
        except ConnectionClosed:
            pass

    async def send_result(self, size: int, make: Callable[[], Awaitable[Message]]) -> None:
        """Send a result of about ``size`` bytes once the budget has room for it; ``make``
        builds the message (reading the result from Redis, say) only then."""
        if not await self._reserve(size):
            return
        try:
            await self.send(await make())
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
        try:
            async with asyncio.timeout(self._timeout_s):
                await waiter
        except TimeoutError:
            self._drop(f"{self._in_use} bytes of results unread, {size} more waiting")
            return False
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
        while self._waiters and self._fits(self._waiters[0][0]):
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += size
                waiter.set_result(None)

    def _progressing(self, fragments: Fragments, deadline: asyncio.Timeout) -> Iterator[bytes | memoryview]:
        """The fragments; websockets takes the next one once the socket took the previous one,
        so each one taken moves the deadline."""
        loop = asyncio.get_running_loop()
        for fragment in fragments:
            deadline.reschedule(loop.time() + self._timeout_s)
            yield fragment

    # --- slow consumers ---

    def _drop(self, detail: str) -> None:
        if self._dropped:
            return
        self._dropped = True
        metrics.slow_consumers_total.inc()
        logs.event(logger, "slow_consumer", peer=self._peer, detail=f"{detail} for {self._timeout_s:g} s")
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
