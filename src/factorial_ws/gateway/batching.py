"""Many requests' Redis commands, one round trip: what arrives in one event-loop turn goes together.

A round trip to Redis costs the gateway far more CPU than the command itself (a pool checkout, a
syscall each way, a parse), and a pipeline of 200 commands costs little more than a pipeline of
one. So callers do not talk to Redis themselves: each ``await batcher.call(item)``, and once per
event-loop turn the batcher hands every item submitted meanwhile to ``run``, in one batch, in the
order they came. A request alone still goes at once (its batch is of one, sent on the next turn);
under load, batches grow by themselves, with no timer and no waiting for company.

Each caller gets its own item's answer: ``run`` returns one answer per item, and an answer that is
an exception is raised to that caller alone (one failing command fails one request). When ``run``
itself raises (Redis went away mid-batch), every caller of the batch gets that exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# The most items one batch carries; more in one turn make several batches, sent concurrently.
MAX_BATCH = 500

Run = Callable[[list[Item]], Awaitable[Sequence[Answer | BaseException]]]


class Batcher(Generic[Item, Answer]):
    def __init__(self, run: Run[Item, Answer], *, max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._flush_scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def call(self, item: Item) -> Answer:
        """``item``'s answer, from the next batch."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((item, answer))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await answer

    @property
    def in_flight(self) -> int:
        """Batches sent and not answered yet."""
        return len(self._running)

    async def close(self) -> None:
        """Stop the batches in flight; their callers get CancelledError."""
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running)

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, []
        # A caller cancelled before its turn (its connection closed, say) needs no command.
        waiting = [entry for entry in waiting if not entry[1].done()]
        for start in range(0, len(waiting), self._max_batch):
            task = asyncio.create_task(self._answer(waiting[start : start + self._max_batch]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._run([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(answers)} answers")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue  # its caller went away meanwhile
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
