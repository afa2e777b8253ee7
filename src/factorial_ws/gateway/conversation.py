"""What one connection decides, without I/O: the session's rules as a state machine.

As websockets' ``protocol.py`` is to its ``asyncio/`` layer, this module is to ``session.py``:
``Conversation.receive`` turns a frame into a request to carry out or the error that answers it
at once (rate limit, binary frame, invalid request, too many in flight), ``RefusalLog`` says
which refusals get a log line, and ``TaskLedger`` keeps what a cancel is decided from (the
tasks this connection created, its requests waiting for each task, its cancels in progress).
The session feeds it frames and Redis' answers, and sends and logs what it returns; every rule
here is tested in microseconds (tests/unit/gateway/test_conversation.py).

Reply order is the session's part (``order.py``): every frame takes a turn as it is read, and an
ack or an immediate refusal goes out once the earlier frames have had theirs; results do not
wait for their turn.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeGuard, TypeVar

from ..catalog import Catalog
from ..constants import INVALID_REQUEST, RATE_LIMITED, TASK_CANCELLED, TOO_MANY_IN_FLIGHT
from ..limits import TokenBucket
from ..protocol import (
    CancelRequest,
    FactorialRequest,
    Failure,
    ProtocolError,
    Request,
    RequestId,
    Returned,
    Success,
    TaskRequest,
    parse_request,
    queue_for,
    request_id_of,
)
from ..worker.stored_meta import Ending, Stored
from .cancel import CancelAction, cancel_action
from .messages import Call
from .stored_tasks import Snapshot

Submission = FactorialRequest | TaskRequest  # a request that sends a task
INTERNAL_ERROR: Final = "Internal error"
BINARY_FRAME: Final = INVALID_REQUEST + "binary frames are not supported; send JSON text"

# Every refused request is logged, but a connection that keeps sending bad or refused frames must
# not flood the log: this many lines in a row, then one a second; the next line written counts
# the ones left out. ("Rate limit exceeded" is not logged at all.)
REFUSALS_LOGGED_IN_A_ROW: Final = 10
REFUSALS_LOGGED_PER_S: Final = 1.0


@dataclass(frozen=True)
class Refusal:
    """A frame answered at once with an error, in its turn."""

    message: str
    task_id: str | None = None
    request_id: RequestId | None = None
    counted_as: str | None = None  # its label in requests_total; None: not counted there
    logged: bool = True  # whether it is worth a log line (held to a rate by RefusalLog)


class Conversation:
    """One connection's per-frame rules: each frame spends a token of the rate limit, is parsed
    and validated, and is refused past the in-flight cap."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        max_number: int,
        max_tasks_in_flight: int,
        # Limits
        rate_limit_per_s: float,
        rate_limit_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._max_number = max_number
        self._max_tasks_in_flight = max_tasks_in_flight
        self._bucket = TokenBucket(rate_limit_per_s, rate_limit_burst, clock)

    def receive(self, frame: str | bytes, in_flight: int) -> Request | Refusal:
        """The request the frame makes, or the refusal that answers it. ``in_flight``: the
        connection's requests not finished yet."""
        # Every frame spends a token, whatever it holds: a flood of binary or malformed frames
        # is held like any other. A flooding client must not flood the log: counted, not logged.
        if not self._bucket.take():
            return Refusal(RATE_LIMITED, request_id=request_id_of(frame), logged=False)
        if isinstance(frame, bytes):
            return Refusal(BINARY_FRAME, request_id=request_id_of(frame))
        try:
            request = parse_request(frame, max_number=self._max_number, catalog=self._catalog)
        except ProtocolError as exc:
            return Refusal(exc.message, request_id=exc.request_id, counted_as="invalid")
        if in_flight >= self._max_tasks_in_flight:
            task_id = None if isinstance(request, Submission) else request.task_id
            return Refusal(TOO_MANY_IN_FLIGHT, task_id, request.request_id, counted_as=label_of(request))
        return request


def label_of(request: Request) -> str:
    """A request's label in requests_total: its kind, or a catalog task's name."""
    if isinstance(request, FactorialRequest):
        return "factorial"
    if isinstance(request, TaskRequest):
        return request.entry.name
    return "cancel" if isinstance(request, CancelRequest) else "result"


def work_of(request: Submission) -> int | Call:
    """What a request asks to compute: factorial's number, or a catalog entry's call."""
    return request.number if isinstance(request, FactorialRequest) else Call.of(request.entry, request.params)


def queue_of(work: int | Call) -> str:
    return queue_for(work) if isinstance(work, int) else work.queue


def shares(work: int | Call, *, result_reuse: bool) -> bool:
    """Whether the request may reuse the task of an identical one (RESULT_REUSE for factorial,
    its catalog entry's share_results)."""
    return result_reuse if isinstance(work, int) else work.share_key is not None


def wait_limit_s(catalog: Catalog, catalog_task: str | None, hard_task_timeout_s: float) -> float:
    """How long a request waits for the task: a catalog entry's ``timeout``, else (factorial,
    or a task the catalog no longer has) HARD_TASK_TIMEOUT."""
    entry = None if catalog_task is None else catalog.get(catalog_task)
    return hard_task_timeout_s if entry is None else entry.timeout_s


def task_name(request: Submission) -> str | None:
    """A catalog task's name for its log lines (factorial's lines stay as they were: number=)."""
    return None if isinstance(request, FactorialRequest) else request.entry.name


def number_of(request: Submission) -> int | None:
    return request.number if isinstance(request, FactorialRequest) else None


def host_of(remote_address: Any) -> str:
    """The client's address, which the budgets count by."""
    try:
        return str(remote_address[0])
    except (TypeError, IndexError):
        return "?"


def peer_of(remote_address: Any) -> str:
    """The client's address and port, for the log."""
    try:
        host, port = remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"


class RefusalLog:
    """Which refusals of one connection get their log line: ``REFUSALS_LOGGED_IN_A_ROW`` in a
    row, then ``REFUSALS_LOGGED_PER_S``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = TokenBucket(REFUSALS_LOGGED_PER_S, REFUSALS_LOGGED_IN_A_ROW, clock)
        self._left_out = 0

    def line(self) -> int | None:
        """None when this refusal is left out of the log; else how many were left out since the
        last line written (which that line reports)."""
        if not self._bucket.take():
            self._left_out += 1
            return None
        left_out, self._left_out = self._left_out, 0
        return left_out


@dataclass(eq=False)
class WaitingRequest:
    """A request of this connection waiting for a task's outcome: what a cancel ends."""

    request_id: RequestId | None
    sending_outcome: bool = False  # its outcome is in and being sent: a cancel lets it finish


Waiter = TypeVar("Waiter", bound=Hashable)  # what runs a waiting request (the session's asyncio task)


class TaskLedger(Generic[Waiter]):
    """What a cancel of a task is decided from: whether this connection created it and may
    still revoke it, which of its requests wait for it (by the ``Waiter`` running each), and
    how many of its cancels of it are in progress."""

    def __init__(self) -> None:
        self._created: set[str] = set()
        self._waiting_requests: dict[str, dict[Waiter, WaitingRequest]] = {}  # by task id
        self._cancels: Counter[str] = Counter()  # by task id

    # --- what the session tells it ---

    def created(self, task_id: str) -> None:
        """This connection's request made the task (not a reuse): only it may revoke it."""
        self._created.add(task_id)

    def ended(self, task_id: str) -> None:
        """The task ended: nothing left to revoke."""
        self._created.discard(task_id)

    def add_waiting(self, task_id: str, waiter: Waiter, request_id: RequestId | None) -> WaitingRequest:
        """``waiter`` runs a request waiting for the task, until ``remove_waiting``."""
        waiting = self._waiting_requests.setdefault(task_id, {})
        request = waiting[waiter] = WaitingRequest(request_id)
        return request

    def remove_waiting(self, task_id: str, waiter: Waiter) -> None:
        waiting = self._waiting_requests.get(task_id)
        if waiting is None:
            return
        waiting.pop(waiter, None)
        if not waiting:
            del self._waiting_requests[task_id]

    def cancel_began(self, task_id: str) -> None:
        self._cancels[task_id] += 1

    def cancel_ended(self, task_id: str) -> None:
        self._cancels[task_id] -= 1
        if not self._cancels[task_id]:
            del self._cancels[task_id]

    def revoked(self, task_id: str) -> None:
        """A cancel of this connection revoked the task: nothing left to revoke. But another
        cancel of it in progress may have read it as queued: until that one ends, this
        connection still counts as its creator."""
        if self._cancels[task_id] == 1:
            self._created.discard(task_id)

    # --- what it answers ---

    def waiting_requests(self, task_id: str) -> dict[Waiter, WaitingRequest]:
        """This connection's requests waiting for the task (a copy: a cancel ends them)."""
        return dict(self._waiting_requests.get(task_id, {}))

    def facts(self, task_id: str) -> CancelFacts:
        """What a cancel of the task is decided from, as of now."""
        return CancelFacts(
            created=task_id in self._created,
            waits_here=bool(self._waiting_requests.get(task_id)),
            still_waiting=sum(
                not request.sending_outcome for request in self._waiting_requests.get(task_id, {}).values()
            ),
        )


@dataclass(frozen=True)
class CancelFacts:
    """What a connection knows of a task when it decides its cancel of it."""

    created: bool  # it created the task, which may still run
    waits_here: bool  # requests of its own wait for the task
    # Those of its requests whose outcome is not in yet: the result hub counts them among the
    # task's waiters, so only more than these means that others wait.
    still_waiting: int

    def action(self, *, others_wait: bool) -> CancelAction:
        """What the cancel of a task still queued or running does (the rule:
        ``cancel.cancel_action``); ``others_wait`` is asked of a creator only."""
        return cancel_action(created=self.created, waits_here=self.waits_here, others_wait=others_wait)


def ended_first(snapshot: Snapshot) -> TypeGuard[Ending]:
    """Whether a cancelled task had ended on its own before the cancel: its outcome is the
    cancel's reply then. (Pending or Started left: it runs on for others, and this connection
    stops waiting.)"""
    if isinstance(snapshot, Failure):
        return snapshot.message != TASK_CANCELLED
    return isinstance(snapshot, Success | Returned | Stored)


_META_OVERHEAD_BYTES: Final = 160  # Celery's meta around a result: status, task id, dates


def stored_bytes(outcome: Snapshot) -> int | None:
    """What a catalog task's result costs its creator's stored-bytes budget (a stock worker
    charges nobody); None: nothing stored."""
    if isinstance(outcome, Returned):
        return len(outcome.json_text) + _META_OVERHEAD_BYTES
    if isinstance(outcome, Stored):
        return outcome.size
    if isinstance(outcome, Failure) and outcome.stored_bytes:
        return outcome.stored_bytes  # too large to read, but stored all the same
    return None
