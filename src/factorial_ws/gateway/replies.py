"""What one connection sends, through its outbox: a task's outcome (small ones at once, a large
factorial read once per process, a large catalog result read whole), the states a request with
progress hears while it waits, and counted errors. The session decides when; this says how.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import logs
from ..constants import SERVICE_UNAVAILABLE, TASK_FAILED, UNKNOWN_TASK_ID
from ..protocol import Failure, Progress, RequestId, Returned, Success, error, outcome_reply
from ..protocol import progress as progress_reply
from ..protocol import started as started_reply
from ..worker.stored_meta import Ending, Stored
from . import metrics
from .big_results import BigResult, ResultCache
from .outbox import Message, Outbox
from .progress import relay
from .results import ResultHub, Watch
from .stored_tasks import ServiceUnavailable

# Its lines are the session's (docs/operations.md shows them under that name).
logger = logging.getLogger("factorial_ws.gateway.session")


class Replies:
    """One connection's replies."""

    def __init__(self, outbox: Outbox, hub: ResultHub, results: ResultCache, *, peer: str) -> None:
        self._outbox = outbox
        self._hub = hub
        self._results = results
        self._peer = peer

    async def send(self, text: str) -> None:
        await self._outbox.send(text)

    async def error(
        self, message: str, task_id: str | None = None, request_id: RequestId | None = None
    ) -> None:
        await self.send(counted_error(message, task_id, request_id))

    async def outcome(self, task_id: str, outcome: Ending, request_id: RequestId | None) -> None:
        if isinstance(outcome, Stored) and outcome.catalog_task is not None:
            await self._catalog_result(task_id, outcome.catalog_task, outcome.size, request_id)
        elif isinstance(outcome, Stored):
            await self._outbox.send_result(
                outcome.size, lambda: self._stored_reply(task_id, request_id), shared_key=task_id
            )
        elif isinstance(outcome, Success | Returned):
            reply = outcome_reply(task_id, outcome, request_id)
            await self._outbox.send_result(len(reply), lambda: _ready(reply))
        else:
            await self.error(outcome.message, task_id, request_id)

    async def started(self, watch: Watch, request_id: RequestId | None) -> None:
        """``started`` once a worker starts the task (nothing if it ends first)."""
        assert watch.started is not None
        either: list[asyncio.Future[Any]] = [watch.started, watch.outcome]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        # A worker publishes STARTED before the result, so both may be in: started goes first.
        if watch.started.done():
            await self.send(started_reply(watch.task_id, request_id))

    async def progress(self, watch: Watch, request_id: RequestId | None, interval_s: float) -> None:
        """The task's own states until it ends, the latest at most one an ``interval_s``."""
        assert watch.progress is not None

        async def send(state: Progress) -> None:
            await self.send(progress_reply(watch.task_id, state.state, state.info_json, request_id))

        await relay(watch.progress, watch.outcome, send, interval_s)

    async def _catalog_result(
        self, task_id: str, catalog_task: str, size: int, request_id: RequestId | None
    ) -> None:
        """A catalog task's large result: read whole (once per request: such results are rare,
        and bounded by their entry's max_result_bytes), then sent within the output budget."""

        async def reply() -> Message:
            try:
                result = await self._hub.stored.read_catalog_result(task_id, catalog_task)
            except ServiceUnavailable:
                result = Failure(SERVICE_UNAVAILABLE)
            if isinstance(result, Returned):
                return outcome_reply(task_id, result, request_id)
            message = UNKNOWN_TASK_ID if result is None else getattr(result, "message", TASK_FAILED)
            return counted_error(message, task_id, request_id)

        await self._outbox.send_result(size, reply)

    async def _stored_reply(self, task_id: str, request_id: RequestId | None) -> Message:
        """The reply for a large stored result, read once per process (big_results)."""
        try:
            result = await self._results.get(task_id)
        except ServiceUnavailable:
            result = Failure(SERVICE_UNAVAILABLE)
        if isinstance(result, BigResult):
            return result.reply(task_id, request_id)
        if isinstance(result, Success | Returned):
            return outcome_reply(task_id, result, request_id)
        message = UNKNOWN_TASK_ID if result is None else result.message  # None: expired meanwhile
        logs.event(logger, "error", task_id=task_id, peer=self._peer, detail=message)
        return counted_error(message, task_id, request_id)


def counted_error(message: str, task_id: str | None, request_id: RequestId | None) -> str:
    metrics.errors_total.labels(metrics.error_label(message)).inc()
    return error(message, task_id, request_id)


async def _ready(message: Message) -> Message:
    return message
