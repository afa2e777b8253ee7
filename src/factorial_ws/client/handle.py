"""``TaskHandle``: a submitted factorial as its caller holds it, and ``Pending``, the request
behind it as the connection tracks it (futures the reader resolves, an event at each state)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .wire import FINAL_STATES, Request

if TYPE_CHECKING:
    from .api import Client

ResultT = TypeVar("ResultT")  # int or str for a factorial, any JSON value for a catalog task


class Pending:
    """A request of a caller, as the connection tracks it."""

    def __init__(self, request: Request) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.accepted: asyncio.Future[str] = loop.create_future()  # the task id
        self.outcome: asyncio.Future[str] = loop.create_future()  # the digits (a cancel's outcome)
        self.changed = asyncio.Event()  # set, and replaced, at each new state of the request
        self.request_id = -1  # of the current ask
        self.generation = -1  # the connection the current ask went out on
        self.frame_bytes = 0  # the size of the current ask's frame
        self.retry_since: float | None = None  # first "not now" error of a run of them
        self.retries = 0
        if request.task_id is not None:
            self.accepted.set_result(request.task_id)

    def notify(self) -> None:
        """Wake whoever waits for the request's next state."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class TaskHandle(Generic[ResultT]):
    """A submitted factorial: ``task_id`` at once, the result when awaited.

        handle = await client.submit(1000000, progress=True)
        print(handle.task_id)
        async for state in handle.states():   # pending, queued, started, done
            print(state, handle.ahead)
        n = await handle          # or: await handle.result()

    Awaiting may be cancelled (``asyncio.timeout``) and started again: the request goes on.
    ``await handle.cancel()`` takes the task back (see ``Client.cancel``); awaiting the handle
    then raises ``TaskCancelled``.

    ``state``: ``pending`` once acked; with ``progress=True`` also ``queued`` (``ahead``: tasks
    that were before it in its queue when it was sent) and ``started`` (a worker runs it); in
    the end ``done``, ``error`` or ``cancelled``. Without ``progress`` the gateway sends no
    states between the ack and the result.
    """

    def __init__(self, client: Client, pending: Pending, convert: Callable[[str], ResultT]) -> None:
        self._client = client
        self._pending = pending
        self._convert: Callable[[str], ResultT] = convert

    @property
    def task_id(self) -> str:
        return self._pending.accepted.result()

    @property
    def number(self) -> int | None:
        return self._pending.request.number

    @property
    def state(self) -> str:
        return self._pending.request.state

    @property
    def info(self) -> Any:
        """A catalog task's latest own state's meta (``progress``), e.g. {"current": 3, "total": 10}."""
        return self._pending.request.info

    @property
    def ahead(self) -> int | None:
        """From the ``queued`` reply: tasks ahead of this one in its queue when it was sent."""
        return self._pending.request.ahead

    async def states(self) -> AsyncIterator[str]:
        """Every state of the request, from the first, as it comes; ends with the final one."""
        seen = 0
        while True:
            changed = self._pending.changed
            history = self._pending.request.history
            while seen < len(history):
                seen += 1
                yield history[seen - 1]
            if self.state in FINAL_STATES:
                return
            await changed.wait()

    async def cancel(self) -> bool:
        """Take the task back: True once cancelled, False if it had ended first."""
        return await self._client.cancel(self.task_id)

    def done(self) -> bool:
        return self._pending.outcome.done()

    async def result(self) -> ResultT:
        # Shielded: a caller's timeout must not cancel the future that other awaits share.
        return self._convert(await asyncio.shield(self._pending.outcome))

    def __await__(self) -> Generator[Any, None, ResultT]:
        return self.result().__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "waiting"
        return f"<TaskHandle {self.task_id} {state}>"
