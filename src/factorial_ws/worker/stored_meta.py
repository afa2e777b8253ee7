"""Celery's stored task meta, read into what clients hear; without I/O.

The reader of what ``result_backend`` writes: Celery's Redis backend stores each state of a task
under ``celery-task-meta-<id>`` as JSON, and ours also publishes a note per state (the meta
itself when small, its size when large). A factorial's meta (``read_note``,
``outcome_from_meta``) carries digits; a catalog task's (``catalog_state``), stored by the
user's stock Celery workers, carries any JSON value, passed on as it was stored. Either way,
exception details stay inside: a client learns that a task failed, never the traceback; a
catalog task's failure names the exception's type, and its message only when the operator asks
for messages (TASK_ERROR_MESSAGES), since a message may hold what a client must not see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ..constants import (
    RESULT_TOO_LARGE,
    STORAGE_FULL,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_REVOKED,
    TIMEOUT_ERROR,
    WORKER_LOST,
)
from ..protocol import Failure, Outcome, Pending, Progress, Returned, Started, Success
from .result_backend import stored_size

_TIMEOUT_EXCEPTIONS: Final = frozenset({"TimeLimitExceeded", "SoftTimeLimitExceeded"})
_PENDING_STATES: Final = frozenset({"PENDING", "RECEIVED", "RETRY"})
_MAX_MESSAGE_CHARS: Final = 200  # of an exception's message, when messages are shown


@dataclass(frozen=True)
class Stored:
    """A result too large to carry around: ``size`` bytes of meta stored in Redis, read when it
    is sent (``big_results``)."""

    size: int
    catalog_task: str | None = None  # read with ``StoredTasks.read_catalog_result``


Ending = Outcome | Stored  # how a task ended, as far as the gateway reads it
CatalogState = Returned | Failure | Pending | Started | Progress
_State = TypeVar("_State", bound=Ending | Pending | Started)


# --- a factorial's meta ----------------------------------------------------------------------


def read_note(note: bytes | str) -> Ending | Pending | Started:
    """What a worker's note (or ``stored_tasks.read_notes``) says about a task."""
    size = stored_size(note)
    return Stored(size) if size is not None else outcome_from_meta(note)


def outcome_from_meta(raw: bytes | str) -> Outcome | Pending | Started:
    """Read Celery's stored task meta (JSON) into an outcome. Exception details stay inside:
    a client learns that a task failed, never the traceback."""
    try:
        meta = json.loads(raw)
        status = meta["status"]
    except (ValueError, TypeError, KeyError):
        return Failure(TASK_FAILED)
    if status == "STARTED":
        return Started()
    if status in _PENDING_STATES:
        return Pending()
    if status == "SUCCESS":
        result = meta.get("result")
        if isinstance(result, str) and result.isascii() and result.isdigit():
            return Success(result)
        return Failure(TASK_FAILED)
    if status == "REVOKED":
        # Discarded unstarted past its expiry (TASK_EXPIRES): nobody got it computed in time.
        return Failure(TIMEOUT_ERROR if _expired(meta.get("result")) else TASK_REVOKED)
    return Failure(_failure_message(meta.get("result")))


def without_progress(state: Ending | Pending | Started | Progress) -> Ending | Pending | Started:
    """A task in a state of its own is running, as far as a snapshot goes."""
    return Started() if isinstance(state, Progress) else state


def cancelled_if_marked(outcome: _State, marked: bool) -> _State | Failure:
    """A revoked task that a client cancelled (``marked``: the canceller left its marker) is
    ``Task cancelled`` rather than ``Task revoked``: Celery's stored state is REVOKED either way."""
    return Failure(TASK_CANCELLED) if marked and outcome == Failure(TASK_REVOKED) else outcome


def _expired(result: Any) -> bool:
    return isinstance(result, dict) and result.get("exc_message") in (["expired"], "expired")


def _failure_message(result: Any) -> str:
    exc_type = result.get("exc_type") if isinstance(result, dict) else None
    if exc_type in _TIMEOUT_EXCEPTIONS:
        return TIMEOUT_ERROR
    if exc_type == "AttemptsExhausted":
        return WORKER_LOST
    if exc_type == "StorageFull":  # announced, not stored (result_backend.py)
        return STORAGE_FULL
    return TASK_FAILED


# --- a catalog task's meta -------------------------------------------------------------------
# Stock workers store STARTED (with ``task_track_started``), the task's own states
# (``update_state``, such as celery-progress's PROGRESS), then SUCCESS or FAILURE.


def catalog_state(raw: bytes | str, *, max_result_bytes: int, error_messages: bool = False) -> CatalogState:
    """What a stored (or published) meta says about a catalog task."""
    if len(raw) > max_result_bytes:
        return Failure(RESULT_TOO_LARGE, len(raw))  # not even parsed: its size is the problem
    try:
        meta = json.loads(raw)
        status = meta["status"]
    except (ValueError, TypeError, KeyError):
        return Failure(TASK_FAILED)
    if not isinstance(status, str):
        return Failure(TASK_FAILED)
    return _state(status, meta.get("result"), error_messages)


def _state(status: str, result: Any, error_messages: bool) -> CatalogState:
    if status == "SUCCESS":
        return Returned(json.dumps(result))
    if status == "STARTED":
        return Started()
    if status in _PENDING_STATES:
        return Pending()
    if status == "REVOKED":
        return Failure(TIMEOUT_ERROR if _expired(result) else TASK_REVOKED)
    if status == "FAILURE":
        return Failure(failure_message(result, error_messages))
    # A state of the task's own: the task goes on.
    return Progress(status, json.dumps(result))


def failure_message(result: Any, error_messages: bool) -> str:
    """``Task failed: <exception type>``, and its message when the operator allows it."""
    exc_type = result.get("exc_type") if isinstance(result, dict) else None
    if not isinstance(exc_type, str) or not exc_type:
        return TASK_FAILED
    if exc_type in _TIMEOUT_EXCEPTIONS:
        return TIMEOUT_ERROR
    if exc_type == "AttemptsExhausted":
        return WORKER_LOST
    message = f"{TASK_FAILED}: {exc_type}"
    if error_messages:
        detail = _exception_text(result.get("exc_message"))
        if detail:
            message += f": {detail[:_MAX_MESSAGE_CHARS]}"
    return message


def _exception_text(exc_message: Any) -> str:
    """Celery stores an exception's arguments (a list), or its text."""
    if isinstance(exc_message, list | tuple):
        return ", ".join(str(arg) for arg in exc_message)
    return "" if exc_message is None else str(exc_message)
