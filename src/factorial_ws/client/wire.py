"""The client's side of the protocol, without I/O: request frames, reply parsing, and what one
request does with each reply (wait, finish, fail, or ask again by task id).

A request is asked once per connection. Asking again is always a lookup by task id once the
gateway has acked it (a factorial that was never acked is sent again as a factorial):

- after the connection dropped (the new connection knows nothing of the old one's requests);
- after ``Timeout error`` on an ask the gateway had confirmed it waits for (the ack of a
  factorial, or ``pending`` for a lookup): the gateway only stopped waiting after
  ``HARD_TASK_TIMEOUT``, the task goes on. A ``Timeout error`` without that confirmation is the
  task's own outcome (it ran past its time limit), so it is final;
- after ``Service unavailable``, ``Server busy`` or ``Too many tasks in flight`` on an ask the
  library made by itself, later (the caller's own first ask raises them);
- after ``Rate limit exceeded``, later, whoever asked: the gateway did not serve the frame.

A request made with ``progress`` asks for it on every ask and records what it hears as its
``state``: ``pending`` (acked), ``queued`` (with ``ahead``), ``started``, ``progress`` (a
catalog task's own state, in ``info``), then ``done``, ``error`` or ``cancelled``. A catalog
task's request (``call``: its ``type`` and parameters) ends with the success frame itself, whose
``result`` is any JSON value (``call_result``). A cancel is a request too, asked again after a
drop like the others (cancelling twice is harmless; but the new connection did not create the
task, so it then ends only this client's waits and the computation goes on); it ends
``cancelled``, or ``finished`` when the gateway answered with the task's own outcome (the task
had ended first).
"""

from __future__ import annotations

import enum
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

from ..constants import (
    DEFAULT_MAX_NUMBER,
    HARD_QUEUE_FULL,
    INVALID_REQUEST,
    RATE_LIMITED,
    SERVER_BUSY,
    SERVICE_UNAVAILABLE,
    STORAGE_FULL,
    STORAGE_NEARLY_FULL,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_REVOKED,
    TIMEOUT_ERROR,
    TOO_MANY_IN_FLIGHT,
    WORKER_LOST,
)
from .errors import FactorialWSError, TaskCancelled, error_for

# Errors that say "not now" rather than "never": a task the library re-asks for by itself is
# asked again after a delay instead of failing.
TRANSIENT_ERRORS: Final = frozenset(
    {SERVICE_UNAVAILABLE, SERVER_BUSY, HARD_QUEUE_FULL, STORAGE_NEARLY_FULL, RATE_LIMITED, TOO_MANY_IN_FLIGHT}
)
# Errors that are a task's own outcome: the answer to a cancel of a task that had ended.
OUTCOME_ERRORS: Final = frozenset(
    {TASK_FAILED, WORKER_LOST, STORAGE_FULL, TIMEOUT_ERROR, TASK_REVOKED, TASK_CANCELLED}
)
# States a request ends in.
FINAL_STATES: Final = frozenset({"done", "error", "cancelled"})


def factorial_digits_at_most(number: int) -> int:
    """How many decimal digits ``number``! has, from lgamma (the float may be off by one at a
    power of ten, so one more)."""
    return int(math.lgamma(number + 1) / math.log(10)) + 2


# The largest reply a gateway of the default MAX_NUMBER sends: the success of 1000000!, its
# digits in a JSON envelope of a few hundred bytes (a task id, a request id).
MAX_REPLY_BYTES: Final = factorial_digits_at_most(DEFAULT_MAX_NUMBER) + 4096

# int() of a decimal string is quadratic in CPython 3.11 and refuses more than 4300 digits by
# default (sys.set_int_max_str_digits); GMP converts 5.5 million digits in well under a second.
_INT_DIGITS_LIMIT: Final = 4000


def factorial_frame(number: int, request_id: int, *, progress: bool = False) -> str:
    return _frame({"type": "factorial", "number": number, "id": request_id}, progress)


def lookup_frame(task_id: str, request_id: int, *, progress: bool = False) -> str:
    return _frame({"type": "result", "task_id": task_id, "id": request_id}, progress)


def call_frame(fields: dict[str, Any], request_id: int, *, progress: bool = False) -> str:
    """A catalog task's request: its ``type`` and parameters."""
    return _frame({**fields, "id": request_id}, progress)


def call_fields(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``{"type": name, **params}``; ValueError for a parameter named like a protocol field."""
    reserved = {"type", "id", "progress"} & params.keys()
    if reserved:
        raise ValueError(f"{INVALID_REQUEST}{sorted(reserved)[0]!r} is a protocol field, not a parameter")
    return {"type": name, **params}


def call_result(frame: str) -> Any:
    """The result of a catalog task's success frame: any JSON value, parsed as JSON parses it."""
    return json.loads(frame)["result"]


def cancel_frame(task_id: str, request_id: int) -> str:
    return json.dumps({"type": "cancel", "task_id": task_id, "id": request_id})


def _frame(fields: dict[str, Any], progress: bool) -> str:
    if progress:
        fields["progress"] = True
    return json.dumps(fields)


@dataclass(frozen=True)
class Reply:
    """One message from the gateway. ``result`` holds a success's digits (as text: they are
    never parsed as an int here) or an error's message; ``request_id`` is the echoed ``id`` as
    text, whatever its JSON type."""

    type: str
    task_id: str | None = None
    request_id: str | None = None
    result: str | None = None
    ahead: int | None = None  # of a "queued" reply
    state: str | None = None  # of a "progress" reply
    # The reply as it came (a catalog task's result and info are read from it).
    frame: str = field(default="", compare=False, repr=False)


def parse_reply(frame: str) -> Reply:
    """Read a reply frame; ValueError if it is not a JSON object. Integers stay text
    (``parse_int=str``): parsing millions of digits into an int here would be quadratic."""
    data = json.loads(frame, parse_int=str)
    if not isinstance(data, dict):
        raise ValueError("a reply is a JSON object")
    return Reply(
        type=_text(data.get("type")) or "",
        task_id=_text(data.get("task_id")),
        request_id=_text(data.get("id")),
        result=_text(data.get("result")),
        ahead=_count(data.get("ahead")),
        state=_text(data.get("state")),
        frame=frame,
    )


def _count(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 19 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_outcome(message: str | None) -> bool:
    """An error that is a task's own outcome (a catalog task's failure names its exception)."""
    return message in OUTCOME_ERRORS or (message or "").startswith(TASK_FAILED + ": ")


def digits_to_int(digits: str) -> int:
    """The exact integer of a decimal string of any length, in quasi-linear time, without
    touching the process-wide ``sys.set_int_max_str_digits``."""
    if len(digits) <= _INT_DIGITS_LIMIT:
        return int(digits)
    import gmpy2  # imported when first needed: it costs about 0.1 s

    return int(gmpy2.mpz(digits))


def backoff_delay_s(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before reconnection attempt ``attempt`` (0, 1, …): doubling from ``initial_s`` up
    to ``max_s``, then a random half of it taken off, so that thousands of clients dropped by
    one gateway restart do not all come back in the same instant."""
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 32))
    return ceiling * (rng or random).uniform(0.5, 1.0)


# --- one request -----------------------------------------------------------------------------


class Step(enum.Enum):
    """What the I/O layer does after a reply."""

    ACKED = "acked"  # the task id is known now; keep waiting for the result
    PROGRESS = "progress"  # a new ``state`` (queued, started); keep waiting
    WAIT = "wait"  # nothing to do
    DONE = "done"  # the result is in ``Request.digits`` (a cancel's in ``cancel_outcome``)
    FAILED = "failed"  # the exception is in ``Request.error``
    ASK_AGAIN = "ask again"  # look the task up again now
    ASK_LATER = "ask later"  # look the task up again after a delay (``error`` if not)


class Request:
    """The state of one request of a caller: a factorial (``number``), a lookup (``task_id``) or
    a cancel (``cancel``, the task id)."""

    def __init__(
        self,
        *,
        number: int | None = None,
        task_id: str | None = None,
        cancel: str | None = None,
        call: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        if [number, task_id, cancel, call].count(None) != 3:
            raise ValueError("a request is a factorial (number), a call, a lookup (task_id) or a cancel")
        self.number = number
        self.call = call  # a catalog task's type and parameters
        self.info: Any = None  # the latest own state's meta, of a call with progress
        self.task_id = task_id if cancel is None else cancel
        self.is_cancel = cancel is not None
        self.progress = progress and not self.is_cancel
        self.digits: str | None = None
        self.error: FactorialWSError | None = None
        self.cancel_outcome: str | None = None  # "cancelled" or "finished"
        # Pending once the gateway has the task: a lookup's task id is known from the start.
        self.state = "sent" if task_id is None else "pending"
        self.history: list[str] = [] if task_id is None else ["pending"]
        self.ahead: int | None = None
        # The gateway has confirmed it waits for the task on the current ask (ack or pending).
        self.confirmed = False
        # The current ask is the library's own (after a drop or a wait that timed out).
        self.retry = False
        self.asks = 0

    def frame(self, request_id: int) -> str:
        """The frame of the next ask: a factorial until the gateway acked one, then lookups."""
        self.confirmed = False
        self.retry = self.asks > 0
        self.asks += 1
        if self.task_id is None and self.call is not None:
            return call_frame(self.call, request_id, progress=self.progress)
        if self.task_id is None:
            assert self.number is not None
            return factorial_frame(self.number, request_id, progress=self.progress)
        if self.is_cancel:
            return cancel_frame(self.task_id, request_id)
        return lookup_frame(self.task_id, request_id, progress=self.progress)

    def on_reply(self, reply: Reply) -> Step:
        if self.is_cancel:
            return self._on_cancel_reply(reply)
        if reply.type == "result" and reply.task_id is not None and self.task_id is None:
            self.task_id = reply.task_id
            self.confirmed = True
            self._enter("pending")
            return Step.ACKED
        if reply.type == "pending":
            self.confirmed = True
            return Step.WAIT
        if reply.type == "queued" and self.state == "pending":
            self.ahead = reply.ahead
            self._enter("queued")
            return Step.PROGRESS
        if reply.type == "started" and self.state in ("pending", "queued"):
            self._enter("started")
            return Step.PROGRESS
        if reply.type == "progress" and self.state not in FINAL_STATES:
            self.info = json.loads(reply.frame).get("info")
            self._enter("progress")
            return Step.PROGRESS
        if reply.type == "success" and self.call is not None:
            self.digits = reply.frame  # read by call_result
            self._enter("done")
            return Step.DONE
        if reply.type == "success":
            return self._success(reply.result)
        if reply.type == "error":
            return self._error(reply.result or "", reply.task_id)
        return Step.WAIT  # a reply type this version does not know: keep waiting

    def fail(self, error: FactorialWSError) -> None:
        """End the request with ``error`` (from the reply, or the connection's own)."""
        self.error = error
        self._enter("cancelled" if isinstance(error, TaskCancelled) else "error")

    def _enter(self, state: str) -> None:
        if self.state not in FINAL_STATES:
            self.state = state
            self.history.append(state)

    def _on_cancel_reply(self, reply: Reply) -> Step:
        if reply.type == "cancelled":
            self.cancel_outcome = "cancelled"
        elif reply.type == "success" or (reply.type == "error" and _is_outcome(reply.result)):
            self.cancel_outcome = "finished"  # it ended before the cancel: its outcome came instead
        elif reply.type == "error":
            return self._error(reply.result or "", reply.task_id)
        else:
            return Step.WAIT
        return Step.DONE

    def _success(self, digits: str | None) -> Step:
        if digits is None or not (digits.isascii() and digits.isdigit()):
            self.fail(FactorialWSError("malformed success reply: 'result' is not an integer", self.task_id))
            return Step.FAILED
        self.digits = digits
        self._enter("done")
        return Step.DONE

    def _error(self, message: str, task_id: str | None) -> Step:
        if message == TIMEOUT_ERROR and self.confirmed:
            return Step.ASK_AGAIN  # the gateway stopped waiting; the task goes on
        error = error_for(message, task_id or self.task_id)
        if message == RATE_LIMITED or (
            message in TRANSIENT_ERRORS and self.retry and self.task_id is not None
        ):
            # Rate limit exceeded: the gateway did not serve the frame (a factorial it refused
            # was not submitted), so asking again later is always safe: the library's pacing
            # fell short, not the caller.
            self.error = error  # raised if the library gives up asking
            return Step.ASK_LATER
        self.fail(error)
        return Step.FAILED
