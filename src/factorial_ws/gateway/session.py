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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
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
    INVALID_REQUEST,
    RATE_LIMITED,
    SERVER_BUSY,
    SERVICE_UNAVAILABLE,
    TASK_CANCELLED,
    TASK_FAILED,
    TIMEOUT_ERROR,
    TOO_MANY_IN_FLIGHT,
    UNKNOWN_TASK_ID,
)
from ..limits import TokenBucket
from ..protocol import (
    CancelRequest,
    FactorialRequest,
    Failure,
    Pending,
    Progress,
    ProtocolError,
    RequestId,
    ResultRequest,
    Returned,
    Started,
    Success,
    TaskRequest,
    ack,
    error,
    new_task_id,
    outcome_reply,
    parse_request,
    pending,
    queue_for,
    request_id_of,
)
from ..protocol import cancelled as cancelled_reply
from ..protocol import progress as progress_reply
from ..protocol import queued as queued_reply
from ..protocol import started as started_reply
from ..worker.stored_meta import Ending, Stored
from . import metrics
from .admission import Admission, ServerBusy
from .big_results import BigResult, ResultCache
from .cancel import CancelAction, Canceller, cancel_action
from .deadlines import Deadlines
from .order import READ_AHEAD, ReplyOrder, Turn
from .outbox import Message, Outbox, OutputBudget
from .producer import Accepted, Call, Producer, Refused
from .progress import relay
from .results import ResultHub, Watch
from .stored_tasks import ServiceUnavailable, Unknown

logger = logging.getLogger(__name__)

Submission = FactorialRequest | TaskRequest  # a request that sends a task
INTERNAL_ERROR = "Internal error"
_META_OVERHEAD_BYTES: Final = 160  # Celery's meta around a result: status, task id, dates
TIMED_OUT: Final = Failure(TIMEOUT_ERROR)  # a wait that ran out
BINARY_FRAME = INVALID_REQUEST + "binary frames are not supported; send JSON text"

# Every refused request is logged, but a connection that keeps sending bad or refused frames must
# not flood the log: this many lines in a row, then one a second; the next line written counts
# the ones left out. ("Rate limit exceeded" is not logged at all.)
REFUSALS_LOGGED_IN_A_ROW = 10
_REFUSALS_LOGGED_PER_S = 1.0


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


@dataclass(eq=False)
class _Wait:
    """A request of this connection waiting for a task's outcome (what a cancel ends)."""

    request_id: RequestId | None
    waiting: bool = True  # False once the outcome is in and being sent


class Session:
    def __init__(self, connection: ServerConnection, services: Services) -> None:
        self._connection = connection
        self._services = services
        self._config = services.config
        self._bucket = TokenBucket(self._config.rate_limit_per_s, self._config.rate_limit_burst)
        self._waits: set[asyncio.Task[None]] = set()
        self._submitting: set[asyncio.Task[None]] = set()  # of _waits: not acked yet
        self._closed = False
        # By task id: the requests waiting for it, by the asyncio task that waits.
        self._waiting_for: dict[str, dict[asyncio.Task[Any], _Wait]] = {}
        # The tasks this connection created and that may still run: only it may revoke them.
        self._created: set[str] = set()
        self._cancels: Counter[str] = Counter()  # by task id: this connection's cancels in progress
        self._peer = _peer(connection)
        self._host = _host(connection)  # the client address, which the budgets count by
        self._outbox = Outbox(
            connection,
            budget_bytes=self._config.max_output_bytes,
            slow_consumer_timeout_s=self._config.slow_consumer_timeout_s,
            peer=self._peer,
            process_budget=services.output_budget,
            min_bytes_per_s=self._config.min_output_bytes_per_s,
        )
        self._refusal_log = TokenBucket(_REFUSALS_LOGGED_PER_S, REFUSALS_LOGGED_IN_A_ROW)
        self._refusals_unlogged = 0
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
            for wait in self._waits - self._submitting:
                wait.cancel()
            logs.access(logger, "disconnect", peer=self._peer, detail=len(self._waits) or None)

    # --- requests ---

    async def _on_frame(self, frame: str | bytes) -> None:
        # Every frame spends a token, whatever it holds: a flood of binary or malformed frames
        # is held like any other.
        if not self._bucket.take():
            # Counted in the metrics, not logged: a flooding client must not flood the log.
            await self._error_in_order(RATE_LIMITED, None, request_id_of(frame))
            return
        if isinstance(frame, bytes):
            self._log_refusal(BINARY_FRAME)
            await self._error_in_order(BINARY_FRAME, None, request_id_of(frame))
            return
        try:
            request = parse_request(frame, max_number=self._config.max_number, catalog=self._services.catalog)
        except ProtocolError as exc:
            metrics.requests_total.labels("invalid").inc()
            self._log_refusal(exc.message)
            await self._error_in_order(exc.message, None, exc.request_id)
            return
        if isinstance(request, FactorialRequest):
            metrics.requests_total.labels("factorial").inc()
        elif isinstance(request, TaskRequest):
            metrics.requests_total.labels(request.entry.name).inc()
        elif isinstance(request, CancelRequest):
            metrics.requests_total.labels("cancel").inc()
        else:
            metrics.requests_total.labels("result").inc()
        if len(self._waits) >= self._config.max_tasks_in_flight:
            task_id = None if isinstance(request, Submission) else request.task_id
            self._log_refusal(TOO_MANY_IN_FLIGHT, task_id)
            await self._error_in_order(TOO_MANY_IN_FLIGHT, task_id, request.request_id)
            return
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
            work = request.number if isinstance(request, FactorialRequest) else _call(request)
            queue = queue_for(work) if isinstance(work, int) else work.queue
            try:
                async with self._services.admission.turn():
                    answer = await self._enqueue(new_task_id(), queue, work, request.progress)
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
                self._created.add(accepted.task_id)
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
            task=_task_name(request),
            number=_number(request),
            queue=queue,
            detail="reused" if accepted.reused else None,
        )
        await self._send(ack(accepted.task_id, request.request_id))
        if accepted.ahead is not None:
            await self._send(queued_reply(accepted.task_id, accepted.ahead, request.request_id))

    async def _enqueue(
        self, task_id: str, queue: str, work: int | Call, progress: bool
    ) -> tuple[Accepted, Watch] | Refused:
        """Send ``number!`` (or a catalog task's call) as ``task_id``, or find the task that
        already computes it (the producer's rules may also refuse); with a watch on the task
        that answers."""
        catalog_task = work.name if isinstance(work, Call) else None
        shared = self._config.result_reuse if isinstance(work, int) else work.share_key is not None
        try:
            if shared:
                # The answer may be a task that exists, even one that ended: watched afterwards,
                # and read once (_watch), which also covers a new task that ends before the
                # SUBSCRIBE. A process already subscribed to that task needs no round trip.
                accepted = await self._produce(task_id, queue, work, progress)
                if isinstance(accepted, Refused):
                    return accepted
                return accepted, await self._watch(accepted.task_id, progress, catalog_task)
            return await self._send_new(task_id, queue, work, progress)
        except (aioredis.RedisError, OSError):
            raise ServiceUnavailable from None

    async def _produce(
        self, task_id: str, queue: str, work: int | Call, progress: bool
    ) -> Accepted | Refused:
        producer = self._services.producer
        if isinstance(work, Call):
            return await producer.submit_call(task_id, work, self._host, progress=progress)
        return await producer.submit(task_id, queue, work, self._host, progress=progress)

    async def _send_new(
        self, task_id: str, queue: str, work: int | Call, progress: bool
    ) -> tuple[Accepted, Watch] | Refused:
        """Every task is new: subscribed before it is sent, its result cannot be published unseen."""
        hub = self._services.hub
        catalog_task = work.name if isinstance(work, Call) else None
        watch = await hub.subscribe(task_id, progress=progress, catalog_task=catalog_task)
        try:
            accepted = await self._produce(task_id, queue, work, progress)
        except BaseException:
            await hub.release(watch)
            raise
        if isinstance(accepted, Refused):
            await hub.release(watch)
            return accepted
        return accepted, watch

    async def _watch(self, task_id: str, progress: bool, catalog_task: str | None = None) -> Watch:
        """Wait for a task that may have ended (or started) already: subscribe, then read it
        once, now that the subscription is in force. Pair with ``hub.release``."""
        hub = self._services.hub
        watch = await hub.subscribe(task_id, progress=progress, catalog_task=catalog_task)
        try:
            snapshot = await hub.snapshot(task_id)
        except BaseException:
            await hub.release(watch)
            raise
        if isinstance(snapshot, Success | Returned | Failure | Stored) and not watch.outcome.done():
            watch.outcome.set_result(snapshot)
        if isinstance(snapshot, Started) and watch.started is not None and not watch.started.done():
            watch.started.set_result(None)  # started before we subscribed: say so at once
        return watch

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
            self._created.discard(watch.task_id)  # it ended: nothing left to revoke
        if isinstance(outcome, Success | Returned | Stored):
            metrics.result_seconds.labels(queue).observe(duration_s)
        self._log_outcome(watch.task_id, outcome, _number(request), queue, duration_s)
        await self._send_outcome(watch.task_id, outcome, request.request_id)

    async def _charge_stored(self, outcome: Ending) -> None:
        if isinstance(outcome, Returned):
            size = len(outcome.json_text) + _META_OVERHEAD_BYTES
        elif isinstance(outcome, Stored):
            size = outcome.size
        elif isinstance(outcome, Failure) and outcome.stored_bytes:
            size = outcome.stored_bytes  # too large to read, but stored all the same
        else:
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
                found = await self._outcome_or_watch(task_id, request.progress)
        except (ServiceUnavailable, ServerBusy) as exc:
            await self._refuse(_refusal(exc), task_id, request_id)
            return
        outcome: Ending
        if isinstance(found, Watch):
            try:
                await self._send(pending(task_id, request_id))
                outcome = await self._outcome(found, request_id)
            finally:
                await self._services.hub.release(found)
        else:
            outcome = Failure(UNKNOWN_TASK_ID) if isinstance(found, Unknown) else found
        self._log_outcome(task_id, outcome, None, None, time.monotonic() - started)
        await self._send_outcome(task_id, outcome, request_id)

    async def _outcome_or_watch(self, task_id: str, progress: bool) -> Ending | Unknown | Watch:
        """The task's outcome if it has one (Unknown if no such task), else a watch on it."""
        hub = self._services.hub
        snapshot, catalog_task = await hub.look(task_id)
        if not isinstance(snapshot, Pending | Started):
            return snapshot
        # It may end between that read and the SUBSCRIBE: _watch reads it again.
        watch = await self._watch(task_id, progress, catalog_task)
        if watch.outcome.done():
            await hub.release(watch)
            return watch.outcome.result()
        return watch

    async def _outcome(self, watch: Watch, request_id: RequestId | None) -> Ending:
        """The task's outcome, or ``Timeout error`` when it did not come within the wait limit.
        Meanwhile the request is one a cancel of the task ends, and hears ``started`` if it
        asked."""
        wait = self._track(watch.task_id, request_id)
        self._services.deadlines.expire(watch.outcome, self._wait_limit_s(watch), TIMED_OUT)
        try:
            if watch.started is not None:
                await self._report_started(watch, request_id)
            if watch.progress is not None:
                await self._report_progress(watch, request_id)
            outcome = await watch.outcome
        finally:
            wait.waiting = False
        return await self._services.hub.named(watch.task_id, outcome)

    def _wait_limit_s(self, watch: Watch) -> float:
        """How long a request waits for the task: a catalog entry's ``timeout``, else (factorial,
        or a task the catalog no longer has) HARD_TASK_TIMEOUT."""
        entry = None if watch.catalog_task is None else self._services.catalog.get(watch.catalog_task)
        return self._config.hard_task_timeout_s if entry is None else entry.timeout_s

    async def _report_started(self, watch: Watch, request_id: RequestId | None) -> None:
        assert watch.started is not None
        either: list[asyncio.Future[Any]] = [watch.started, watch.outcome]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        # A worker publishes STARTED before the result, so both may be in: started goes first.
        if watch.started.done():
            await self._send(started_reply(watch.task_id, request_id))

    async def _report_progress(self, watch: Watch, request_id: RequestId | None) -> None:
        """The task's own states until it ends, the latest at most PROGRESS_PER_S a second."""
        assert watch.progress is not None

        async def send(state: Progress) -> None:
            await self._send(progress_reply(watch.task_id, state.state, state.info_json, request_id))

        await relay(watch.progress, watch.outcome, send, 1.0 / self._config.progress_per_s)

    def _track(self, task_id: str, request_id: RequestId | None) -> _Wait:
        """Register the current asyncio task as a request waiting for ``task_id``, until it ends."""
        task = asyncio.current_task()
        assert task is not None
        waits = self._waiting_for.setdefault(task_id, {})
        wait = waits[task] = _Wait(request_id)

        def forget(_: object) -> None:
            waits.pop(task, None)
            if not waits and self._waiting_for.get(task_id) is waits:
                del self._waiting_for[task_id]

        task.add_done_callback(forget)
        return wait

    # --- cancel ---

    async def _cancel(self, request: CancelRequest) -> None:
        task_id, request_id = request.task_id, request.request_id
        logs.access(logger, "request", task_id=task_id, detail="cancel")
        self._cancels[task_id] += 1
        try:
            answer = await self._take_back(task_id, request_id)
        except (ServiceUnavailable, ServerBusy) as exc:
            await self._refuse(_refusal(exc), task_id, request_id)
            return
        except (aioredis.RedisError, OSError):
            await self._refuse(SERVICE_UNAVAILABLE, task_id, request_id)
            return
        finally:
            self._cancels[task_id] -= 1
            if not self._cancels[task_id]:
                del self._cancels[task_id]
        if isinstance(answer, str):
            await self._send(answer)
        elif answer is not None:
            logs.event(logger, "error", task_id=task_id, detail="cancel: the task had ended")
            await self._send_outcome(task_id, answer, request_id)  # its outcome instead

    async def _take_back(self, task_id: str, request_id: RequestId | None) -> str | Ending | None:
        """Carry out the cancel rule (``cancel_action``): the cancel's reply, the task's
        outcome when it had ended first, or None when the reply was sent already."""
        async with self._services.admission.turn():
            snapshot = await self._services.hub.snapshot(task_id)
            if isinstance(snapshot, Unknown):
                await self._refuse(UNKNOWN_TASK_ID, task_id, request_id)
                return None
            action, first = None, False
            if isinstance(snapshot, Pending | Started):
                action = await self._cancel_action(task_id)
                if action is CancelAction.REVOKE:
                    first = await self._services.canceller.record(task_id)
        if action is not None and action.refusal is not None:
            await self._refuse(action.refusal, task_id, request_id)
            return None
        if action is CancelAction.REVOKE:
            # Out of the admission slot: workers may take seconds to answer, others need it.
            snapshot = await self._revoke(task_id, first)
        if isinstance(snapshot, Success | Returned | Stored) or (
            isinstance(snapshot, Failure) and snapshot.message != TASK_CANCELLED
        ):
            return snapshot
        # Cancelled, or still running for others: this connection stops waiting either way.
        await self._end_waits(task_id)
        logs.event(logger, "cancelled", task_id=task_id)
        return cancelled_reply(task_id, request_id)

    async def _cancel_action(self, task_id: str) -> CancelAction:
        """What this connection's cancel of a task still queued or running does."""
        created = task_id in self._created
        waits_here = bool(self._waiting_for.get(task_id))
        others_wait = created and await self._others_wait(task_id)  # asked of the creator only
        return cancel_action(created=created, waits_here=waits_here, others_wait=others_wait)

    async def _others_wait(self, task_id: str) -> bool:
        """Whether requests other than this connection's wait for the task, in this process or
        in any other gateway process of this Redis."""
        hub = self._services.hub
        own = sum(wait.waiting for wait in self._waiting_for.get(task_id, {}).values())
        return hub.local_waiters(task_id) > own or await hub.waiters_elsewhere(task_id) > 0

    async def _revoke(self, task_id: str, first: bool) -> Ending | Pending | Started | Unknown:
        """Stop the task whose cancel was recorded (``first``: by this cancel); how it ended (a
        result if it ended first)."""
        canceller, hub = self._services.canceller, self._services.hub
        await canceller.revoke(task_id, first=first)
        snapshot = await hub.snapshot(task_id)
        if isinstance(snapshot, Pending | Started):
            # No live worker marked it (none runs, or none answered): it will never run, since
            # every worker drops it when it comes. Say so to lookups and waiters now.
            await canceller.mark_revoked(task_id)
            snapshot = await hub.snapshot(task_id)
        if self._cancels[task_id] == 1:
            # Revoked: nothing left to revoke. (Another cancel of it in progress may have read
            # it as queued: until that one ends, this connection still counts as its creator.)
            self._created.discard(task_id)
        return snapshot

    async def _end_waits(self, task_id: str) -> None:
        """This connection's requests waiting for the task end with ``Task cancelled``; those
        whose outcome is already in finish sending it first."""
        waits = dict(self._waiting_for.get(task_id, {}))
        for task, wait in waits.items():
            if wait.waiting and task is not asyncio.current_task():
                task.cancel()
                await self._error(TASK_CANCELLED, task_id, wait.request_id)
        sending = [task for task, wait in waits.items() if not wait.waiting]
        if sending:
            await asyncio.wait(sending)

    # --- replies ---

    async def _send_outcome(self, task_id: str, outcome: Ending, request_id: RequestId | None) -> None:
        if isinstance(outcome, Stored) and outcome.catalog_task is not None:
            await self._send_catalog_result(task_id, outcome.catalog_task, outcome.size, request_id)
        elif isinstance(outcome, Stored):
            await self._outbox.send_result(
                outcome.size, lambda: self._stored_reply(task_id, request_id), shared_key=task_id
            )
        elif isinstance(outcome, Success | Returned):
            reply = outcome_reply(task_id, outcome, request_id)
            await self._outbox.send_result(len(reply), lambda: _ready(reply))
        else:
            await self._error(outcome.message, task_id, request_id)

    async def _send_catalog_result(
        self, task_id: str, catalog_task: str, size: int, request_id: RequestId | None
    ) -> None:
        """A catalog task's large result: read whole (once per request: such results are rare,
        and bounded by their entry's max_result_bytes), then sent within the output budget."""

        async def reply() -> Message:
            try:
                result = await self._services.hub.read_catalog_result(task_id, catalog_task)
            except ServiceUnavailable:
                result = Failure(SERVICE_UNAVAILABLE)
            if isinstance(result, Returned):
                return outcome_reply(task_id, result, request_id)
            message = UNKNOWN_TASK_ID if result is None else getattr(result, "message", TASK_FAILED)
            return _counted_error(message, task_id, request_id)

        await self._outbox.send_result(size, reply)

    async def _stored_reply(self, task_id: str, request_id: RequestId | None) -> Message:
        """The reply for a large stored result, read once per process (big_results)."""
        try:
            result = await self._services.results.get(task_id)
        except ServiceUnavailable:
            result = Failure(SERVICE_UNAVAILABLE)
        if isinstance(result, BigResult):
            return result.reply(task_id, request_id)
        if isinstance(result, Success | Returned):
            return outcome_reply(task_id, result, request_id)
        message = UNKNOWN_TASK_ID if result is None else result.message  # None: expired meanwhile
        logs.event(logger, "error", task_id=task_id, peer=self._peer, detail=message)
        return _counted_error(message, task_id, request_id)

    async def _refuse(self, message: str, task_id: str | None, request_id: RequestId | None) -> None:
        self._log_refusal(message, task_id)
        await self._error(message, task_id, request_id)

    async def _error(
        self, message: str, task_id: str | None = None, request_id: RequestId | None = None
    ) -> None:
        await self._send(_counted_error(message, task_id, request_id))

    async def _error_in_order(self, message: str, task_id: str | None, request_id: RequestId | None) -> None:
        """An error that answers a request at once, after the replies owed to earlier requests."""
        turn = self._order.next_turn()
        if turn.now:
            try:
                await self._error(message, task_id, request_id)
            finally:
                turn.end()
            return

        async def after_the_others() -> None:
            try:
                await turn.come()
                await self._error(message, task_id, request_id)
            finally:
                turn.end()

        self._spawn(after_the_others(), request_id)

    async def _send(self, text: str) -> None:
        await self._outbox.send(text)

    def _log_refusal(self, detail: str, task_id: str | None = None) -> None:
        """One `error` line for a refused request, held to a rate per connection."""
        if not self._refusal_log.take():
            self._refusals_unlogged += 1
            return
        suppressed, self._refusals_unlogged = self._refusals_unlogged, 0
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
        self._waits.add(task)
        task.add_done_callback(self._waits.discard)
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
            await self._error(INTERNAL_ERROR, request_id=request_id)


def _call(request: TaskRequest) -> Call:
    return Call.of(request.entry, request.params)


def _task_name(request: Submission) -> str | None:
    """A catalog task's name for its log lines (factorial's lines stay as they were: number=)."""
    return None if isinstance(request, FactorialRequest) else request.entry.name


def _number(request: Submission) -> int | None:
    return request.number if isinstance(request, FactorialRequest) else None


def _refusal(exc: ServiceUnavailable | ServerBusy) -> str:
    return SERVER_BUSY if isinstance(exc, ServerBusy) else SERVICE_UNAVAILABLE


def _counted_error(message: str, task_id: str | None, request_id: RequestId | None) -> str:
    metrics.errors_total.labels(metrics.error_label(message)).inc()
    return error(message, task_id, request_id)


async def _ready(message: Message) -> Message:
    return message


def _host(connection: ServerConnection) -> str:
    try:
        return str(connection.remote_address[0])
    except (TypeError, IndexError):
        return "?"


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"
