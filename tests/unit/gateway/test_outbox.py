"""The outbox's byte budget with a client that reads: results beyond the budget wait, and each
one let in counts against the budget until it is sent; a waiter that goes away gives its share
back. (Slow consumers, which never read, are the integration tests' test_big_results.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from factorial_ws.gateway.outbox import Message, Outbox
from support import UNIT_S

BUDGET_BYTES = 100
STEP_TIMEOUT_S = 5 * UNIT_S


@contextlib.asynccontextmanager
async def outbox_to_reader() -> AsyncIterator[tuple[Outbox, ClientConnection]]:
    """An outbox on the server side of a real WebSocket connection in this process, and the
    client side, which the test reads."""
    connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
    done = asyncio.get_running_loop().create_future()

    async def handle(connection: ServerConnection) -> None:
        await connections.put(connection)
        await done

    async with serve(handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/") as client:
            connection = await asyncio.wait_for(connections.get(), STEP_TIMEOUT_S)
            # A slow-consumer timeout no step of these tests comes near.
            outbox = Outbox(
                connection, budget_bytes=BUDGET_BYTES, slow_consumer_timeout_s=STEP_TIMEOUT_S, peer="test"
            )
            try:
                yield outbox, client
            finally:
                done.set_result(None)


@dataclass
class Results:
    """Results whose making the test holds and lets go one by one; it records which are being
    made (read from Redis, in the gateway), and the most bytes made at once."""

    made: list[int] = field(default_factory=list)
    making_bytes: int = 0
    peak_bytes: int = 0
    gates: dict[int, asyncio.Future[None]] = field(default_factory=dict)

    def maker(
        self, index: int, size: int, on_made: Callable[[], object] = lambda: None
    ) -> Callable[[], Awaitable[Message]]:
        gate = self.gates[index] = asyncio.get_running_loop().create_future()

        async def make() -> Message:
            self.made.append(index)
            self.making_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.making_bytes)
            try:
                await gate
            finally:
                self.making_bytes -= size
            on_made()
            return "x" * size

        return make

    def let_go(self, index: int) -> None:
        self.gates[index].set_result(None)


async def settled(tasks: list[asyncio.Task[None]], made: list[int], count: int) -> None:
    """Let the loop run a few turns, until ``count`` results are being made or ``tasks`` are done."""
    for _ in range(20):
        if len(made) >= count or all(task.done() for task in tasks):
            return
        await asyncio.sleep(0)


async def read(client: ClientConnection, count: int) -> list[int]:
    return [len(await asyncio.wait_for(client.recv(), STEP_TIMEOUT_S)) for _ in range(count)]


async def test_a_waiting_result_let_in_counts_against_the_budget_until_it_is_sent() -> None:
    results = Results()
    async with outbox_to_reader() as (outbox, client):
        sends = [asyncio.create_task(outbox.send_result(60, results.maker(i, 60))) for i in range(3)]
        await settled(sends, results.made, 1)
        assert results.made == [0]  # 60 of 100 bytes in use: the others wait

        results.let_go(0)
        assert await read(client, 1) == [60]  # the client reads, so a waiter is let in...
        await settled(sends, results.made, 3)
        assert results.made == [0, 1]  # ...one: the next 60 bytes would exceed the budget
        assert results.peak_bytes <= BUDGET_BYTES

        results.let_go(1)
        await settled(sends, results.made, 3)
        results.let_go(2)
        assert await read(client, 2) == [60, 60]
        await asyncio.wait_for(asyncio.gather(*sends), STEP_TIMEOUT_S)
        assert results.made == [0, 1, 2]

        # Every byte given back: a result as large as the whole budget goes at once.
        whole = asyncio.create_task(outbox.send_result(BUDGET_BYTES, results.maker(3, BUDGET_BYTES)))
        await settled([whole], results.made, 4)
        assert results.made[-1] == 3
        results.let_go(3)
        await asyncio.wait_for(whole, STEP_TIMEOUT_S)


async def test_a_waiter_that_goes_away_as_it_is_let_in_gives_its_share_back() -> None:
    results = Results()
    async with outbox_to_reader() as (outbox, client):
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Task[None]] = []
        # The waiter's connection closes in the very turn the budget is handed to it: the cancel
        # is queued before the wake-up that result 0's release queues.
        first = asyncio.create_task(
            outbox.send_result(60, results.maker(0, 60, on_made=lambda: loop.call_soon(waiting[0].cancel)))
        )
        waiting.append(asyncio.create_task(outbox.send_result(60, results.maker(1, 60))))
        await settled([first, *waiting], results.made, 2)
        assert results.made == [0]

        results.let_go(0)
        await asyncio.wait_for(first, STEP_TIMEOUT_S)
        await asyncio.gather(*waiting, return_exceptions=True)
        assert waiting[0].cancelled() and results.made == [0]

        # Its 60 bytes were given back: a result as large as the whole budget goes at once.
        whole = asyncio.create_task(outbox.send_result(BUDGET_BYTES, results.maker(2, BUDGET_BYTES)))
        await settled([whole], results.made, 2)
        assert results.made == [0, 2]
        results.let_go(2)
        await asyncio.wait_for(whole, STEP_TIMEOUT_S)
        assert await read(client, 2) == [60, BUDGET_BYTES]


async def test_a_waiter_cancelled_before_its_turn_is_skipped_for_the_next() -> None:
    results = Results()
    async with outbox_to_reader() as (outbox, client):
        sends = [asyncio.create_task(outbox.send_result(60, results.maker(i, 60))) for i in range(3)]
        await settled(sends, results.made, 1)
        sends[1].cancel()
        await asyncio.gather(sends[1], return_exceptions=True)

        results.let_go(0)
        await settled(sends, results.made, 2)
        assert results.made == [0, 2]
        results.let_go(2)
        await asyncio.wait_for(asyncio.gather(sends[0], sends[2]), STEP_TIMEOUT_S)
        assert await read(client, 2) == [60, 60]


async def test_a_waiter_cancelled_at_the_head_does_not_hold_back_a_smaller_one_behind_it() -> None:
    results = Results()
    async with outbox_to_reader() as (outbox, client):
        sends: list[asyncio.Task[None]] = []
        # The first result is sent, and its bytes given back, in the very turn the 60-byte
        # waiter at the head of the queue is cancelled: before that waiter has run again.
        sends.append(
            asyncio.create_task(outbox.send_result(50, results.maker(0, 50, lambda: sends[2].cancel())))
        )
        sends += [
            asyncio.create_task(outbox.send_result(size, results.maker(i, size)))
            for i, size in [(1, 50), (2, 60), (3, 40)]
        ]
        await settled(sends, results.made, 2)
        assert results.made == [0, 1]

        results.let_go(0)
        await settled(sends, results.made, 3)
        assert sends[2].cancelled()
        assert results.made == [0, 1, 3]  # 50 + 40 bytes fit the budget
        results.let_go(1)
        results.let_go(3)
        await asyncio.wait_for(asyncio.gather(sends[0], sends[1], sends[3]), STEP_TIMEOUT_S)
        assert sorted(await read(client, 3)) == [40, 50, 50]
