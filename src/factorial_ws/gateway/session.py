"""One client connection: read requests in order, answer each, push results as tasks end.

Acks are sent in request order (a client without request ids matches them by position); each
waiting task then lives in its own asyncio task, so results come back in whatever order the
workers finish them. A request with progress also hears ``queued`` right after its ack (when it
created the task) and ``started`` when a worker starts it. A cancel ends this connection's waits
for the task (each with ``Task cancelled``) before its own reply, and revokes the task only if
this connection created it and nobody else waits for it (the rule: ``cancel.cancel_action``).

A catalog task is served the same way (``TaskRequest``: its entry makes a ``Call`` of the
parameters); a client that asked for progress also hears the task's own states, at most
PROGRESS_PER_S a second (``progress.relay``).

The decisions are conversation.py's (what a frame makes, what a cancel does) and the Redis race
sequences task.py's (``StoredTask``); this module feeds them frames and Redis' answers, and
sends and logs what they return.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .. import logs
from ..catalog import Catalog
from ..config import Config
from ..constants import (
    SERVER_BUSY,
    SERVICE_UNAVAILABLE,
    TASK_CANCELLED,
    TIMEOUT_ERROR,
    UNKNOWN_TASK_ID,
)
from ..protocol import (
    CancelRequest,
    Failure,
    RequestId,
    ResultRequest,
    Returned,
    Success,
    ack,
    new_task_id,
    pending,
    request_id_of,
)
from ..protocol import cancelled as cancelled_reply
from ..protocol import queued as queued_reply
from ..worker.stored_meta import Ending, Stored
from . import metrics
from .admission import Admission, ServerBusy
from .big_results import ResultCache
from .cancel import CancelAction, Canceller
from .conversation import (
    INTERNAL_ERROR,
    Conversation,
    Refusal,
    RefusalLog,
    Submission,
    TaskLedger,
    WaitingRequest,
    ended_first,
    host_of,
    label_of,
    number_of,
    peer_of,
    queue_of,
    shares,
    stored_bytes,
    task_name,
    wait_limit_s,
    work_of,
)
from .deadlines import Deadlines
from .order import READ_AHEAD, ReplyOrder, Turn
from .outbox import Outbox, OutputBudget
from .producer import Accepted, Producer, Refused
from .replies import Replies
from .results import ResultHub, Watch
from .stored_tasks import ServiceUnavailable, Unknown
from .task import StoredTask

logger = logging.getLogger(__name__)

TIMED_OUT: Final = Failure(TIMEOUT_ERROR)  # a wait that ran out


@dataclass(frozen=True)
class Services:
    """What every session of a gateway process shares."""

    config: Config
    producer: Producer
    hub: ResultHub
    admission: Admission
    results: ResultCache
    canceller: Canceller
    deadlines: Deadlines
    output_budget: OutputBudget  # WS_MAX_OUTPUT_BYTES_PER_PROCESS
    catalog: Catalog


class Session:
    def __init__(self, connection: ServerConnection, services: Services) -> None:
        self._connection = connection
        self._services = services
        self._config = services.config
        self._conversation = Conversation(
            catalog=services.catalog,
            max_number=self._config.max_number,
            max_tasks_in_flight=self._config.max_tasks_in_flight,
            rate_limit_per_s=self._config.rate_limit_per_s,
            rate_limit_burst=self._config.rate_limit_burst,
        )
        self._request_tasks: set[asyncio.Task[None]] = set()  # one asyncio task a request in flight
        self._submitting: set[asyncio.Task[None]] = set()  # of _request_tasks: not acked yet
        self._closed = False
        # The tasks it created, its requests waiting for each (by asyncio task), its cancels.
        self._ledger: TaskLedger[asyncio.Task[Any]] = TaskLedger()
        self._peer = peer_of(connection.remote_address)
        self._host = host_of(connection.remote_address)  # the client address, which the budgets count by
        self._outbox = Outbox(
            connection,
            budget_bytes=self._config.max_output_bytes,
            slow_consumer_timeout_s=self._config.slow_consumer_timeout_s,
            peer=self._peer,
            process_budget=services.output_budget,
            min_bytes_per_s=self._config.min_output_bytes_per_s,
        )
        self._replies = Replies(self._outbox, services.hub, services.results, peer=self._peer)
        self._refusal_log = RefusalLog()
        self._order = ReplyOrder(READ_AHEAD)

    async def run(self) -> None:
        logs.access(logger, "connect", peer=self._peer)
        metrics.connections_open.inc()
        try:
            async for frame in self._connection:
                await self._guarded(self._on_frame(frame), frame=frame)
                # The requests read ahead are handled together (their Redis commands share a
                # batch); past READ_AHEAD unanswered ones, the next frame waits (push-back).
                await self._order.room()
        except ConnectionClosed:
            pass
        finally:
            metrics.connections_open.dec()
            self._closed = True
            # Requests still being submitted finish that (a client that submits and leaves
            # still gets its tasks run, as when requests were handled one by one); the waits
            # for results end now.
            for request_task in self._request_tasks - self._submitting:
                request_task.cancel()
            logs.access(logger, "disconnect", peer=self._peer, detail=len(self._request_tasks) or None)

    # --- requests ---

    async def _on_frame(self, frame: str | bytes) -> None:
        request = self._conversation.receive(frame, in_flight=len(self._request_tasks))
        if isinstance(request, Refusal):
            if request.counted_as is not None:
                metrics.requests_total.labels(request.counted_as).inc()
            if request.logged:
                self._log_refusal(request.message, request.task_id)
            await self._error_in_order(request.message, request.task_id, request.request_id)
            return
        metrics.requests_total.labels(label_of(request)).inc()
        if isinstance(request, Submission):
            task = self._spawn(self._submit(request, self._order.next_turn()), request.request_id)
            self._submitting.add(task)
        elif isinstance(request, CancelRequest):
            self._spawn(self._cancel(request), request.request_id)
        elif isinstance(request, ResultRequest):
            self._spawn(self._look_up(request), request.request_id)

    async def _submit(self, request: Submission, turn: Turn) -> None:
        """Send the task, then, in request order, its ack; then wait for and send its result."""
        started = time.monotonic()
        try:
            work = work_of(request)
            queue = queue_of(work)
            try:
                async with self._services.admission.turn():
                    answer = await self._task(new_task_id()).enqueue(
                        queue,
                        work,
                        self._host,
                        progress=request.progress,
                        shared=shares(work, result_reuse=self._config.result_reuse),
                    )
            except (ServiceUnavailable, ServerBusy) as exc:
                await turn.come()
                await self._refuse(_refusal(exc), None, request.request_id)
                return
            await turn.come()
            if isinstance(answer, Refused):
                await self._refuse(answer.message, None, request.request_id)
                return
            accepted, watch = answer
            if not accepted.reused:
                self._ledger.created(accepted.task_id)
            try:
                await self._acknowledge(accepted, request, queue)
            except BaseException:
                await self._services.hub.release(watch)
                raise
        finally:
            turn.end()
            task = asyncio.current_task()
            assert task is not None
            self._submitting.discard(task)
        if self._closed:
            await self._services.hub.release(watch)  # acked to nobody: the task runs all the same
            return
        # A stock worker stores a catalog task's result without charging anyone: the request
        # that created the task charges it to its address when the result comes.
        charge = accepted.state == "created" and watch.catalog_task is not None
        await self._deliver(watch, request, queue, started, charge=charge)

    async def _acknowledge(self, accepted: Accepted, request: Submission, queue: str) -> None:
        counter = metrics.tasks_reused_total if accepted.reused else metrics.tasks_submitted_total
        counter.labels(queue).inc()
        logs.access(
            logger,
            "request",
            task_id=accepted.task_id,
            task=task_name(request),
            number=number_of(request),
            queue=queue,
            detail="reused" if accepted.reused else None,
        )
        await self._replies.send(ack(accepted.task_id, request.request_id))
        if accepted.ahead is not None:
            await self._replies.send(queued_reply(accepted.task_id, accepted.ahead, request.request_id))

    def _task(self, task_id: str) -> StoredTask:
        services = self._services
        return StoredTask(task_id, services.hub, services.producer, services.canceller)

    async def _deliver(
        self, watch: Watch, request: Submission, queue: str, started: float, *, charge: bool = False
    ) -> None:
        try:
            outcome = await self._outcome(watch, request.request_id)
        finally:
            await self._services.hub.release(watch)
        if charge:
            await self._charge_stored(outcome)
        duration_s = time.monotonic() - started
        if outcome is not TIMED_OUT:
            self._ledger.ended(watch.task_id)
        if isinstance(outcome, Success | Returned | Stored):
            metrics.result_seconds.labels(queue).observe(duration_s)
        self._log_outcome(watch.task_id, outcome, number_of(request), queue, duration_s)
        await self._replies.outcome(watch.task_id, outcome, request.request_id)

    async def _charge_stored(self, outcome: Ending) -> None:
        size = stored_bytes(outcome)
        if size is None:
            return
        try:
            await self._services.producer.charge_stored(self._host, size)
        except (aioredis.RedisError, OSError) as exc:  # the result is sent all the same
            logs.event(logger, "error", peer=self._peer, detail=f"stored bytes not charged: {exc}")

    async def _look_up(self, request: ResultRequest) -> None:
        task_id, request_id = request.task_id, request.request_id
        started = time.monotonic()
        logs.access(logger, "request", task_id=task_id, detail="lookup")
        try:
            async with self._services.admission.turn():
                found = await self._task(task_id).outcome_or_watch(request.progress)
        except (ServiceUnavailable, ServerBusy) as exc:
            await self._refuse(_refusal(exc), task_id, request_id)
            return
        outcome: Ending
        if isinstance(found, Watch):
            try:
                await self._replies.send(pending(task_id, request_id))
                outcome = await self._outcome(found, request_id)
            finally:
                await self._services.hub.release(found)
        else:
            outcome = Failure(UNKNOWN_TASK_ID) if isinstance(found, Unknown) else found
        self._log_outcome(task_id, outcome, None, None, time.monotonic() - started)
        await self._replies.outcome(task_id, outcome, request_id)

    async def _outcome(self, watch: Watch, request_id: RequestId | None) -> Ending:
        """The task's outcome, or ``Timeout error`` when it did not come within the wait limit.
        Meanwhile the request is one a cancel of the task ends, and hears ``started`` if it
        asked."""
        waiting_request = self._register_waiting(watch.task_id, request_id)
        limit_s = wait_limit_s(self._services.catalog, watch.catalog_task, self._config.hard_task_timeout_s)
        self._services.deadlines.expire(watch.outcome, limit_s, TIMED_OUT)
        try:
            if watch.started is not None:
                await self._replies.started(watch, request_id)
            if watch.progress is not None:
                await self._replies.progress(watch, request_id, 1.0 / self._config.progress_per_s)
            outcome = await watch.outcome
        finally:
            waiting_request.sending_outcome = True
        return await self._services.hub.stored.revoked_as_cancelled(watch.task_id, outcome)

    def _register_waiting(self, task_id: str, request_id: RequestId | None) -> WaitingRequest:
        """Register the current asyncio task as a request waiting for ``task_id``, until it ends."""
        request_task = asyncio.current_task()
        assert request_task is not None
        request_task.add_done_callback(lambda _: self._ledger.remove_waiting(task_id, request_task))
        return self._ledger.add_waiting(task_id, request_task, request_id)

    # --- cancel ---

    async def _cancel(self, request: CancelRequest) -> None:
        task_id, request_id = request.task_id, request.request_id
        logs.access(logger, "request", task_id=task_id, detail="cancel")
        self._ledger.cancel_began(task_id)
        try:
            answer = await self._task(task_id).take_back(self._ledger, self._services.admission)
        except (ServiceUnavailable, ServerBusy) as exc:
            await self._refuse(_refusal(exc), task_id, request_id)
            return
        except (aioredis.RedisError, OSError):
            await self._refuse(SERVICE_UNAVAILABLE, task_id, request_id)
            return
        finally:
            self._ledger.cancel_ended(task_id)
        if isinstance(answer, Unknown):
            await self._refuse(UNKNOWN_TASK_ID, task_id, request_id)
        elif isinstance(answer, CancelAction):
            assert answer.refusal is not None
            await self._refuse(answer.refusal, task_id, request_id)
        elif ended_first(answer):
            logs.event(logger, "error", task_id=task_id, detail="cancel: the task had ended")
            await self._replies.outcome(task_id, answer, request_id)  # its outcome instead
        else:
            # Cancelled, or still running for others: this connection stops waiting either way.
            await self._end_waiting_requests(task_id)
            logs.event(logger, "cancelled", task_id=task_id)
            await self._replies.send(cancelled_reply(task_id, request_id))

    async def _end_waiting_requests(self, task_id: str) -> None:
        """This connection's requests waiting for the task end with ``Task cancelled``; those
        whose outcome is already in finish sending it first."""
        waiting_requests = self._ledger.waiting_requests(task_id)
        for request_task, request in waiting_requests.items():
            if not request.sending_outcome and request_task is not asyncio.current_task():
                request_task.cancel()
                await self._replies.error(TASK_CANCELLED, task_id, request.request_id)
        sending = [task for task, request in waiting_requests.items() if request.sending_outcome]
        if sending:
            await asyncio.wait(sending)

    # --- replies ---

    async def _refuse(self, message: str, task_id: str | None, request_id: RequestId | None) -> None:
        self._log_refusal(message, task_id)
        await self._replies.error(message, task_id, request_id)

    async def _error_in_order(self, message: str, task_id: str | None, request_id: RequestId | None) -> None:
        """An error that answers a request at once, after the replies owed to earlier requests."""
        turn = self._order.next_turn()
        if turn.now:
            try:
                await self._replies.error(message, task_id, request_id)
            finally:
                turn.end()
            return

        async def after_the_others() -> None:
            try:
                await turn.come()
                await self._replies.error(message, task_id, request_id)
            finally:
                turn.end()

        self._spawn(after_the_others(), request_id)

    def _log_refusal(self, detail: str, task_id: str | None = None) -> None:
        """One `error` line for a refused request, held to a rate per connection."""
        suppressed = self._refusal_log.line()
        if suppressed is None:
            return
        logs.event(
            logger, "error", peer=self._peer, task_id=task_id, suppressed=suppressed or None, detail=detail
        )

    def _log_outcome(
        self,
        task_id: str,
        outcome: Ending,
        number: int | None,
        queue: str | None,
        duration_s: float,
    ) -> None:
        if isinstance(outcome, Success | Returned | Stored):
            name, detail = "result", None
        else:
            name, detail = "error", outcome.message
        log = logs.access if name == "result" else logs.event  # an error is always logged
        log(
            logger,
            name,
            task_id=task_id,
            number=number,
            queue=queue,
            duration_ms=round(duration_s * 1000, 1),
            detail=detail,
        )

    # --- isolation ---

    def _spawn(self, work: Coroutine[Any, Any, None], request_id: RequestId | None) -> asyncio.Task[None]:
        task = asyncio.create_task(self._guarded(work, request_id=request_id))
        self._request_tasks.add(task)
        task.add_done_callback(self._request_tasks.discard)
        return task

    async def _guarded(
        self,
        work: Coroutine[Any, Any, None],
        *,
        request_id: RequestId | None = None,
        frame: str | bytes | None = None,
    ) -> None:
        """A bug in one request is logged and answered, with the request's id (read from the
        frame if need be); it never ends the connection."""
        try:
            await work
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception:
            logger.exception("request failed")
            if frame is not None:
                request_id = request_id_of(frame)
            await self._replies.error(INTERNAL_ERROR, request_id=request_id)


def _refusal(exc: ServiceUnavailable | ServerBusy) -> str:
    return SERVER_BUSY if isinstance(exc, ServerBusy) else SERVICE_UNAVAILABLE
